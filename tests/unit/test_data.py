"""The data layer without the real files: the split helper, the custom CSV/JSONL/YAML
source and every input error, on synthetic files. The local loaders, the few-shot protocol
and fingerprints on the real files are in tests/integration/test_data_local.py."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

import numpy as np
import pytest

from lpt_probe.data import (
    Example,
    Split,
    TaskData,
    load_custom_task,
    load_task,
    stratified_split,
)
from lpt_probe.data.tasks import get_task


def _assert_disjoint(data, by_text=True):
    ids = [set(s.ids) for s in data.splits()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    if by_text:
        texts = [{e.texts for e in s} for s in data.splits()]
        assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


def test_stratified_split_unit():
    exs = [Example(str(i), (f"t{i}",), int(i % 10 < 3)) for i in range(100)]  # 70 : 30
    chosen, rest = stratified_split(exs, 10, np.random.default_rng(0))
    assert Counter(e.label for e in chosen) == {0: 7, 1: 3}
    assert len(rest) == 90 and not ({e.id for e in chosen} & {e.id for e in rest})
    again, _ = stratified_split(exs, 10, np.random.default_rng(0))
    other, _ = stratified_split(exs, 10, np.random.default_rng(1))
    assert [e.id for e in again] == [e.id for e in chosen] != [e.id for e in other]
    with pytest.raises(ValueError, match="cannot draw"):
        stratified_split(exs, 101, np.random.default_rng(0))


# --- custom source -------------------------------------------------------------------------
def _write_csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _toy_rows(n, offset=0):
    return [f"sentence number {i + offset},{'pos' if i % 2 else 'neg'}" for i in range(n)]


def test_custom_csv_with_arguments(tmp_path):
    train = _write_csv(tmp_path / "train.csv", _toy_rows(40) + ['"",pos'])
    test = _write_csv(tmp_path / "test.csv", _toy_rows(10, 100))
    spec, d = load_custom_task(train, test=str(test), text_columns=["text"],
                               labels=["neg", "pos"], mlm_template="{text_a} It was {mask} .",
                               clm_template="{text_a} It was", dev_size=8)
    assert spec.name == "train" and spec.mlm_label_words == ("neg", "pos")
    assert (len(d.train), len(d.dev), len(d.test)) == (32, 8, 10)
    assert d.skipped == {"empty_text": ["train.csv:42"]} and d.source == "custom"
    _assert_disjoint(d)


def test_few_shot_dev_never_repeats_a_training_text(tmp_path):
    rows = _toy_rows(20) * 2  # every text twice, under two ids
    train = _write_csv(tmp_path / "train.csv", rows)
    test = _write_csv(tmp_path / "test.csv", _toy_rows(4, 100))
    args = dict(test=str(test), text_columns=["text"], labels=["neg", "pos"],
                mlm_template="{text_a} {mask}", clm_template="{text_a} is")
    for seed in (13, 21, 42, 87):
        _, d = load_custom_task(train, shots=10, dev_size=10, data_seed=seed, **args)
        assert not ({e.texts for e in d.train} & {e.texts for e in d.dev})
        assert d.info["text_overlap"]["train&dev"] == 0


def test_custom_yaml_jsonl_pair_task(tmp_path):
    def jsonl(name, n, off=0):
        rows = [{"premise": f"p{i + off}", "hypothesis": f"h{i}", "gold": i % 2}
                for i in range(n)]
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    jsonl("train.jsonl", 30), jsonl("dev.jsonl", 6, 100), jsonl("test.jsonl", 8, 200)
    (tmp_path / "task.yaml").write_text(
        "name: toy_nli\ntrain: train.jsonl\ndev: dev.jsonl\ntest: test.jsonl\n"
        "text_columns: [premise, hypothesis]\nlabel_column: gold\nlabels: ['0', '1']\n"
        "mlm_template: '{text_a} ? {mask} , {text_b}'\nmlm_label_words: [Yes, No]\n"
        "clm_template: '{text_a} question: {text_b} answer:'\nclm_label_words: [yes, no]\n"
        "metric: acc_f1\n")
    spec, d = load_custom_task(tmp_path / "task.yaml", shots=10, data_seed=13)
    assert spec.text_fields == ("text_a", "text_b") and spec.metric.value == "acc_f1"
    assert (len(d.train), len(d.dev), len(d.test)) == (10, 6, 8)  # the dev file is the dev set
    assert d.test.examples[0].texts == ("p200", "h0")
    assert load_task(tmp_path / "task.yaml", source="custom", shots=10).fingerprints() == \
        d.fingerprints()


def test_custom_errors(tmp_path):
    train = _write_csv(tmp_path / "train.csv", _toy_rows(20))
    args = dict(text_columns=["text"], labels=["neg", "pos"], mlm_template="{text_a} {mask}",
                clm_template="{text_a} is")
    with pytest.raises(ValueError, match=r"missing \['test'\]"):
        load_custom_task(train, **args)
    bad = _write_csv(tmp_path / "bad.csv", _toy_rows(3) + ["one,two,three"])
    with pytest.raises(ValueError, match=r"bad\.csv:5: malformed row"):
        load_custom_task(train, test=str(bad), **args)
    odd = _write_csv(tmp_path / "odd.csv", _toy_rows(3) + ["fine text,maybe"])
    with pytest.raises(ValueError, match=r"odd\.csv:5: label 'maybe'"):
        load_custom_task(train, test=str(odd), **args)
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": "neg"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: malformed JSON"):
        load_custom_task(train, test=str(tmp_path / "broken.jsonl"), **args)
    with pytest.raises(ValueError, match=r"lacks columns \['sentence'\]"):
        load_custom_task(train, test=str(train), **{**args, "text_columns": ["sentence"]})
    with pytest.raises(TypeError, match="unknown custom-task keys"):
        load_custom_task(train, tset="x", **args)
    (tmp_path / "x.yaml").write_text("train: train.csv\nfoo: 1\n")
    with pytest.raises(ValueError, match="keys from"):
        load_custom_task(tmp_path / "x.yaml")


# --- errors on the registered tasks --------------------------------------------------------
def _rte_dir(tmp_path, train_lines, dev_lines=None):
    folder = tmp_path / "rte"
    folder.mkdir()
    header = "index\tsentence1\tsentence2\tlabel"
    dev_lines = dev_lines or ["0\tA man sleeps.\tA man rests.\tentailment",
                              "1\tA cat.\tA dog.\tnot_entailment"]
    (folder / "train.tsv").write_text("\n".join([header, *train_lines]) + "\n")
    (folder / "dev.tsv").write_text("\n".join([header, *dev_lines]) + "\n")
    return tmp_path


def test_missing_file_names_path_and_flag(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_task("rte", data_dir=tmp_path)
    assert str(tmp_path / "rte" / "train.tsv") in str(err.value)
    assert "--data-dir" in str(err.value)
    with pytest.raises(ValueError, match="needs data_dir"):
        load_task("rte", source="local")
    with pytest.raises(ValueError, match="source='web'"):
        load_task("rte", source="web")
    with pytest.raises(KeyError, match="known tasks"):
        load_task("cola", data_dir=tmp_path)


def test_malformed_tsv_line_names_path_and_line(tmp_path):
    d = _rte_dir(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\textra\tentailment"])
    with pytest.raises(ValueError, match=r"train\.tsv:3: malformed line"):
        load_task("rte", data_dir=d)


def test_unknown_label_names_value_path_and_line(tmp_path):
    d = _rte_dir(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\tcontradiction"])
    with pytest.raises(ValueError, match=r"train\.tsv:3: label 'contradiction'"):
        load_task("rte", data_dir=d)


def test_trec_errors(tmp_path):
    folder = tmp_path / "trec"
    folder.mkdir()
    (folder / "TREC_10.label").write_text("NUM:dist How far ?\n")
    (folder / "train_5500.label").write_text("NUM:count How many ?\nno colon here\n")
    with pytest.raises(ValueError, match=r"train_5500\.label:2: malformed line"):
        load_task("trec", data_dir=tmp_path)
    (folder / "train_5500.label").write_text("NUM:count How many ?\nFOO:bar What ?\n")
    with pytest.raises(ValueError, match=r"train_5500\.label:2: label 'FOO'"):
        load_task("trec", data_dir=tmp_path)


def test_empty_split_and_empty_text(tmp_path, caplog):
    d = _rte_dir(tmp_path, ["0\t\tb\tentailment"])  # the only train row has no text
    with pytest.raises(ValueError, match="no examples"):
        load_task("rte", data_dir=d)
    rows = [f"{i}\tpremise {i}\thyp {i}\t{'entailment' if i % 2 else 'not_entailment'}"
            for i in range(12)] + ["12\tpremise\t\tentailment"]
    shutil.rmtree(tmp_path / "rte")
    d = _rte_dir(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="lpt_probe.data"):
        data = load_task("rte", data_dir=d, dev_size=4)
    assert data.skipped == {"empty_text": ["train.tsv:14"]} and "train.tsv:14" in caplog.text
    assert len(data.train) + len(data.dev) == 12
    with pytest.raises(ValueError, match="split is empty"):
        TaskData(get_task("rte"), data.train, Split("dev", ()), data.test, "local")


def test_hub_source_maps_labels_by_name(monkeypatch):
    datasets = pytest.importorskip("datasets")
    # CogComp/trec stores coarse labels as a ClassLabel in the order ABBR ENTY DESC HUM LOC NUM
    feats = datasets.Features({"text": datasets.Value("string"),
                               "coarse_label": datasets.ClassLabel(
                                   names=["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])})
    rows = {"train": {"text": [f"q{i} ?" for i in range(60)] + [""],
                      "coarse_label": [i % 6 for i in range(61)]},
            "test": {"text": ["What is DESC ?", "Who ?"], "coarse_label": [2, 3]}}
    calls = []

    def fake_load(path, config=None, split=None):
        calls.append((path, config, split))
        return datasets.Dataset.from_dict(rows[split], features=feats)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    d = load_task("trec", dev_size=6)
    assert calls == [("CogComp/trec", None, "train"), ("CogComp/trec", None, "test")]
    names = get_task("trec").label_names
    assert [names[e.label] for e in d.test] == ["DESC", "HUM"]  # not ENTY / DESC by index
    assert d.source == "hub" and d.skipped == {"empty_text": ["train:60"]}
    assert (len(d.train), len(d.dev)) == (54, 6)


def test_overlap_is_matched_case_and_space_insensitively():
    """"What are the Twin Cities ?" and "What are the twin cities ?" are one text to an
    uncased model: --drop-overlap removes such a training row too."""
    from lpt_probe.data.sources import same_text

    assert same_text(("What are the Twin Cities ?",)) == same_text(("what are the  twin cities ?",))
    assert same_text(("a", "B")) != same_text(("a", "C"))


