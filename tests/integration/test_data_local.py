"""The data layer on the real files in ../shared/data: the local loaders (counts as
../shared/data/README.md states), the few-shot protocol and fingerprints. The custom source,
the split helpers and every input error are checked on synthetic files in
tests/unit/test_data.py."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

import pytest
from test_data import _assert_disjoint

from lpt_probe.data import Example, Split, load_task
from lpt_probe.data.tasks import get_task
from lpt_probe.store import fingerprint


def _label_counts(split, task):
    names = get_task(task).label_names
    return {names[k]: v for k, v in split.label_counts().items()}


# --- local loaders against the real files (counts as ../shared/data/README.md states) ---
def test_rte_local_counts_and_labels(data_dir):
    d = load_task("rte", data_dir=data_dir, dev_size=100)
    assert len(d.test) == 277  # GLUE dev serves as test
    assert _label_counts(d.test, "rte") == {"entailment": 146, "not_entailment": 131}
    pool = d.train.examples + d.dev.examples
    assert len(pool) == 2490
    assert Counter(e.label for e in pool) == {0: 1249, 1: 1241}
    assert len(d.dev) == 100 and len(d.train) == 2390
    assert d.test.examples[0].texts[1] == "Christopher Reeve had an accident."
    assert d.info["protocol"] == "glue" and d.source == "local" and d.skipped == {}
    _assert_disjoint(d, by_text=False)


def test_trec_local_counts_and_coarse_labels(data_dir):
    d = load_task("trec", data_dir=data_dir)
    assert len(d.test) == 500 and len(d.train) + len(d.dev) == 5452
    assert set(d.train.label_counts()) == set(range(6))
    assert set(d.test.label_counts()) == set(range(6))
    first = d.test.examples[0]  # "NUM:dist How far is it from Denver to Aspen ?"
    assert first.texts == ("How far is it from Denver to Aspen ?",)
    assert get_task("trec").label_names[first.label] == "NUM"
    by_id = {e.id: e for e in d.train.examples + d.dev.examples}
    assert "sister\u00f0city" in by_id["train_5500.label:66"].texts[0]  # byte 0xF0, Latin-1
    _assert_disjoint(d, by_text=False)


def test_subj_sample_test_protocol(data_dir):
    d = load_task("subj", data_dir=data_dir)
    assert (len(d.train), len(d.dev), len(d.test)) == (7000, 1000, 2000)
    assert _label_counts(d.test, "subj") == {"subjective": 1000, "objective": 1000}
    assert _label_counts(d.dev, "subj") == {"subjective": 500, "objective": 500}
    assert d.info["split_seed"] == 42
    _assert_disjoint(d)
    again = load_task("subj", data_dir=data_dir, data_seed=87)  # full data: seed-independent
    assert again.fingerprints() == d.fingerprints()


def test_mr_local(data_dir):
    d = load_task("mr", data_dir=data_dir)
    assert (len(d.train), len(d.dev), len(d.test)) == (10662 - 3000, 1000, 2000)
    assert _label_counts(d.test, "mr") == {"negative": 1000, "positive": 1000}
    _assert_disjoint(d)


def test_mpqa_local_skips_and_records_empty_lines(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="lpt_probe.data"):
        d = load_task("mpqa", data_dir=data_dir)
    # 3,312 + 7,294 lines, three of them empty (mpqa.pos:3312, mpqa.neg:6415 and :7294)
    assert sorted(d.skipped["empty_text"]) == ["mpqa.neg:6415", "mpqa.neg:7294", "mpqa.pos:3312"]
    assert "skipped 3 rows with empty text" in caplog.text
    assert len(d.train) + len(d.dev) + len(d.test) == 3311 + 7292
    assert len(d.test) == 2000
    # stratified: the test set keeps the 3311 : 7292 share (largest remainder)
    assert _label_counts(d.test, "mpqa") == {"negative": 1375, "positive": 625}
    _assert_disjoint(d, by_text=False)  # MPQA repeats phrases; overlap is counted instead
    assert d.info["text_overlap"]["train&test"] > 0
    assert json.loads(json.dumps(d.to_meta()))["skipped"]["empty_text"]


# --- few-shot protocol -----------------------------------------------------------------
@pytest.mark.parametrize("task", ["rte", "trec", "subj"])
def test_few_shot_sizes_disjoint_deterministic(data_dir, task):
    a = load_task(task, data_dir=data_dir, shots=100, data_seed=13)
    b = load_task(task, data_dir=data_dir, shots=100, data_seed=13)
    c = load_task(task, data_dir=data_dir, shots=100, data_seed=21)
    full = load_task(task, data_dir=data_dir)
    assert (len(a.train), len(a.dev)) == (100, 1000)
    assert a.fingerprints() == b.fingerprints()
    assert a.train.fingerprint != c.train.fingerprint and a.dev.fingerprint != c.dev.fingerprint
    assert a.test.fingerprint == c.test.fingerprint == full.test.fingerprint  # protocol's test
    _assert_disjoint(a, by_text=False)
    assert not ({e.texts for e in a.train} & {e.texts for e in a.dev})  # by text, too
    pool = set(full.train.ids) | set(full.dev.ids)
    assert set(a.train.ids) <= pool and set(a.dev.ids) <= pool


def test_few_shot_is_stratified(data_dir):
    d = load_task("trec", data_dir=data_dir, shots=500, data_seed=42)
    pool = load_task("trec", data_dir=data_dir)
    counts = Counter(e.label for e in pool.train.examples + pool.dev.examples)
    for label, n in d.train.label_counts().items():
        assert abs(n - 500 * counts[label] / 5452) < 1  # proportional, largest remainder
    assert sum(d.train.label_counts().values()) == 500


def test_too_many_shots_and_caps(data_dir):
    with pytest.raises(ValueError, match="cannot draw"):
        load_task("rte", data_dir=data_dir, shots=2000)  # leaves 490 < dev_size 1000
    d = load_task("rte", data_dir=data_dir, max_examples=50)
    assert [len(s) for s in d.splits()] == [50, 50, 50]
    with pytest.raises(ValueError, match="shots=0"):
        load_task("rte", data_dir=data_dir, shots=0)


# --- fingerprints ------------------------------------------------------------------------
def test_fingerprints_follow_the_data(tmp_path, data_dir):
    shutil.copytree(data_dir / "mr", tmp_path / "mr")
    before = load_task("mr", data_dir=tmp_path)
    path = tmp_path / "mr" / "rt-polarity.pos"
    path.chmod(0o644)
    lines = path.read_text(encoding="latin-1").split("\n")
    lines[0] = "an edited review ."  # same ids, different text
    path.write_text("\n".join(lines), encoding="latin-1")
    after = load_task("mr", data_dir=tmp_path)
    assert before.fingerprints() != after.fingerprints()
    split = Split("x", (Example("a", ("t",), 0),))
    assert split.fingerprint == fingerprint(["a\x1f0\x1ft"])
    with pytest.raises(ValueError, match="does not match"):
        Split("x", split.examples, fingerprint="0" * 16)


def test_a_test_reading_the_real_data_is_marked_integration(request, data_dir):
    """tests/conftest.py marks every test that uses the ``data_dir`` fixture: ``-m "not
    integration"`` leaves out exactly the tests that need ../shared/data."""
    assert request.node.get_closest_marker("integration") is not None
