"""The task registry: the ten paper tasks, lookup, registration and spec validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lpt_probe.data.tasks import (
    HubSource,
    LocalSource,
    Metric,
    Protocol,
    TaskSpec,
    get_task,
    list_tasks,
    register_task,
)

PAPER_TASKS = ["mnli", "mpqa", "mr", "mrpc", "qnli", "qqp", "rte", "sst2", "subj", "trec"]


def _spec(**kw) -> TaskSpec:
    base = dict(name="toy", text_fields=("text_a",), label_names=("neg", "pos"),
                mlm_template="{text_a} It was {mask} .", mlm_label_words=("bad", "good"),
                clm_template="{text_a} It was", clm_label_words=("bad", "good"),
                metric="accuracy", protocol="custom",
                local=LocalSource("csv", ("",), ("train.csv",), ("test.csv",),
                                  text_columns=("text",)))
    base.update(kw)
    return TaskSpec(**base)


def test_the_ten_paper_tasks_are_registered():
    assert list_tasks() == PAPER_TASKS


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_each_spec_is_consistent_and_json_able(name):
    spec = get_task(name)
    assert spec.name == name
    assert len(spec.mlm_label_words) == len(spec.clm_label_words) == spec.num_labels
    assert spec.hub is not None and spec.local is not None
    assert len(spec.hub.text_columns) == len(spec.text_fields)
    d = spec.to_dict()
    assert json.loads(json.dumps(d))["protocol"] == spec.protocol.value
    assert "{mask}" not in spec.clm_template and spec.mlm_template.count("{mask}") == 1


def test_paper_templates_and_words():
    # the authors' templates (xyltt/LPT encoder-only/data/process.py)
    assert get_task("sst2").mlm_template == "{text_a} . It was {mask} ."
    assert get_task("subj").mlm_template == "{text_a} . It was {mask} ."
    assert get_task("sst2").mlm_label_words == ("terrible", "great")
    assert get_task("subj").mlm_label_words == ("subjective", "objective")
    trec = get_task("trec")
    assert trec.label_names == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert trec.mlm_template == "{mask} : {text_a}"
    assert dict(zip(trec.label_names, trec.mlm_label_words))["ABBR"] == "Expression"
    assert get_task("mnli").mlm_label_words == ("Yes", "Maybe", "No")
    assert get_task("mnli").hub.test_splits == ("validation_matched",)
    assert get_task("mrpc").mlm_template == "{text_a} ? {mask} , {text_b}"
    assert get_task("qqp").mlm_template == "{text_a} {mask} , {text_b}"
    assert get_task("rte").mlm_template == "{text_a} ? {mask} , {text_b}"
    assert get_task("mrpc").mlm_label_words == ("No", "Yes")
    assert get_task("rte").clm_template == "{text_a} {text_b} They are"
    assert get_task("rte").clm_label_words == ("Yes", "No")
    assert get_task("trec").clm_template == "{text_a} It was"
    assert {get_task(t).metric for t in ("mrpc", "qqp")} == {Metric.ACC_F1}
    assert get_task("rte").metric is Metric.ACCURACY
    assert get_task("subj").protocol is Protocol.SAMPLE_TEST
    assert get_task("trec").hub.label_column == "coarse_label"


def test_lookup_is_case_insensitive():
    assert get_task("RTE") is get_task("rte")
    assert get_task("SST-2") is get_task("sst2")
    assert get_task(get_task("mr")) is get_task("mr")


def test_unknown_task_names_it_and_lists_known():
    with pytest.raises(KeyError) as err:
        get_task("sst5")
    msg = str(err.value)
    assert "'sst5'" in msg and "rte" in msg and "trec" in msg
    with pytest.raises(ValueError):  # also a ValueError
        get_task("nope")


def test_register_task_round_trip_and_no_silent_overwrite(monkeypatch):
    import lpt_probe.data.tasks as tasks

    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    spec = register_task(_spec(name="My_Toy"))
    assert get_task("my-toy") is spec and "My_Toy" in list_tasks()
    with pytest.raises(ValueError, match="already registered"):
        register_task(_spec(name="my_toy"))
    assert register_task(_spec(name="my_toy", metric="acc_f1"), overwrite=True).metric is \
        Metric.ACC_F1


@pytest.mark.parametrize("change, match", [
    (dict(mlm_template="{text_a} It was ."), "exactly one"),
    (dict(mlm_template="{text_a} {mask} {mask}"), "exactly one"),
    (dict(mlm_template="{text_b} {mask}"), "unknown placeholders"),
    (dict(clm_template="{text_a} It was {mask}"), "unknown placeholders"),
    (dict(clm_template="{text_a} It was "), "whitespace"),
    (dict(mlm_label_words=("bad",)), "one per label"),
    (dict(clm_label_words=("good", "good")), "distinct"),
    (dict(clm_label_words=("very bad", "good")), "distinct single words"),
    (dict(label_names=("x", "x")), "distinct"),
    (dict(text_fields=("text_b",)), "text_fields"),
    (dict(metric="f1"), "metric='f1'"),
    (dict(protocol="random"), "protocol='random'"),
    (dict(label_names=("a", "b", "c"), mlm_label_words=("x", "y", "z"),
          clm_label_words=("x", "y", "z"), metric="acc_f1"), "needs 2 labels"),
    (dict(local=None), "hub or a local"),
    (dict(mlm_label_words=(True, "good")), "must hold strings"),
])
def test_bad_specs_are_refused_with_a_reason(change, match):
    with pytest.raises(ValueError, match=match):
        _spec(**change)


def test_specs_are_frozen_and_sources_validate():
    spec = _spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"
    with pytest.raises(ValueError, match="format"):
        LocalSource("xml", ("",), ("a.xml",))
    with pytest.raises(ValueError, match="one value per label"):
        _spec(hub=HubSource("x/y", None, ("train",), ("test",), ("text",),
                            label_values=("0", "1", "2")))
    with pytest.raises(ValueError, match="one file per label"):
        _spec(local=LocalSource("lines", ("",), ("only_one.txt",)))
