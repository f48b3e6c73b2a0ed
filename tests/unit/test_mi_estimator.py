"""The estimator fixes of issue 22: probe rows disjoint from the prompt's rows, a shuffled-
label control drawn per piece with its pooled null distribution, paired-bootstrap
differences between conditions, and the probe-seed defaults. The probe rows on real TREC
are checked in tests/integration/test_mi_estimator_real_data.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lpt_probe.analysis.mi.compare import condition_differences, effects_table, pooled_rows
from lpt_probe.analysis.mi.study import MIConfig
from lpt_probe.analysis.engine.pieces import PieceJob, ProbeFactory, fit_piece, permutation_seed
from lpt_probe.data.sources import Example, Split, TaskData, probe_splits
from lpt_probe.data.tasks import get_task
from lpt_probe.probing import pooled_null


# -- probe rows ---------------------------------------------------------------------------
def _task_data(n_train=60, n_dev=30, n_test=20):
    rng = np.random.default_rng(0)
    ex = lambda split, i: Example(f"{split}:{i}", (f"{split} text {i}",), int(rng.integers(0, 2)))  # noqa: E731
    return TaskData(get_task("sst2"), Split("train", [ex("train", i) for i in range(n_train)]),
                    Split("dev", [ex("dev", i) for i in range(n_dev)]),
                    Split("test", [ex("test", i) for i in range(n_test)]), "local")


def test_probe_splits_keep_a_rare_class_in_probe_train():
    """A stratified cap can round a rare class away; probe-train then gets one row of it (a
    class only in test would be refused by the estimate)."""
    rows = [Example(f"train:{i}", (f"t{i}",), 1 if i < 2 else 0) for i in range(60)]
    full = TaskData(get_task("sst2"), Split("train", rows[:50]), Split("dev", rows[50:]),
                    Split("test", [Example("test:0", ("x",), 1), Example("test:1", ("y",), 0)]), "local")
    train, dev, facts = probe_splits(full, [], dev_size=10, train_max=10)
    assert 1 in {e.label for e in train} and facts["classes_topped_up"] == ["positive"]
    assert not set(train.ids) & set(dev.ids) and len(train) == 11


def test_probe_splits_set_the_prompt_rows_aside():
    full = _task_data()
    prompt_rows = [f"train:{i}" for i in range(10)] + [f"dev:{i}" for i in range(5)]
    train, dev, facts = probe_splits(full, prompt_rows, dev_size=20, train_max=40)
    ids = set(train.ids) | set(dev.ids)
    assert not ids & set(prompt_rows)
    assert not set(train.ids) & set(dev.ids)
    assert len(dev) == 20 and len(train) == 40  # 90 - 15 = 75 rows: 20 dev, 55 capped to 40
    assert facts == {"non_test_rows": 90, "excluded_prompt_rows": 15, "probe_dev": 20, "probe_train": 40,
                     "probe_train_pool": 55, "probe_dev_size_asked": 20, "split_seed": 42, "classes_topped_up": []}
    # deterministic, and a dev larger than a third of what is left is capped
    assert probe_splits(full, prompt_rows, dev_size=20, train_max=40)[0].ids == train.ids
    assert len(probe_splits(full, prompt_rows, dev_size=500)[1]) == 75 // 3
    with pytest.raises(ValueError, match=r"only 2 non-test rows are left.*--shots"):
        probe_splits(full, [e.id for e in (*full.train, *full.dev)][:-2])


# -- shuffled-label control ---------------------------------------------------------------------
def _job(key, tmp_path, rng, permutations=2):
    X = {s: rng.standard_normal((n, 4)) for s, n in (("train", 80), ("dev", 40), ("test", 40))}
    y = {s: rng.integers(0, 2, len(X[s])) for s in X}
    paths = {k: tmp_path / f"{key[:6]}.{k}.csv" for k in ("mi", "mdl", "pvi")} | {"done": tmp_path / f"{key[:6]}.json"}
    return PieceJob(key=key, paths=paths, sidecar={}, layer=1, probe="linear", representation="mask", n_classes=2,
                    probe_seeds=(0, 1), bootstrap=20, controls=True, permutations=permutations, mdl=False,
                    test_ids=[str(i) for i in range(40)], X=X, y=y, factory=ProbeFactory("linear", 2, {}))


def test_each_piece_draws_its_own_permutations(tmp_path):
    """Two pieces on the SAME arrays but with different keys use different label
    permutations (the old code used seeds 0, 1, 2 for every row); the seeds are recorded,
    and PVI is written for every probe seed."""
    key_a, key_b = "a" * 64, "b" * 64
    assert permutation_seed(key_a) != permutation_seed(key_b)
    job_a = _job(key_a, tmp_path, np.random.default_rng(0))
    job_b = _job(key_b, tmp_path, np.random.default_rng(0))
    fit_piece(job_a), fit_piece(job_b)
    ctrl = [pd.read_csv(j.paths["mi"]).query("control == 'shuffled_labels'") for j in (job_a, job_b)]
    seeds = [c["permutation_seeds"].iloc[0] for c in ctrl]
    assert seeds[0] == f"{permutation_seed(key_a)},{permutation_seed(key_a) + 1}" and seeds[0] != seeds[1]
    draws = [json.loads(c["control_draws_bits"].iloc[0]) for c in ctrl]
    assert len(draws[0]) == 2 and draws[0] != draws[1]
    pvi = pd.read_csv(job_a.paths["pvi"])
    assert sorted(pvi["probe_seed"].unique()) == [0, 1] and len(pvi) == 80


def test_pooled_null_pools_single_draws():
    rows = pd.DataFrame({"mi_bits": [0.01, -0.02], "control_draws_bits": ["[0.0, 0.02]", "[-0.03, -0.01]"]})
    null = pooled_null(rows)
    assert null["n_draws"] == 4 and null["mean"] == pytest.approx(-0.005) and null["max_abs"] == pytest.approx(0.03)
    assert null["low"] < -0.02 < 0.01 < null["high"]
    assert pooled_null(rows[["mi_bits"]])["n_draws"] == 2  # tables without single draws: the rows
    with pytest.raises(ValueError, match="controls on"):
        pooled_null(pd.DataFrame())


# -- differences between conditions ---------------------------------------------------------
def _pvi_table(shift_by_seed, n=400, seed=0):
    """frozen and a PL-2 prompt at hidden states 0..2; the prompt's PVI at hidden state 2 is
    the frozen one plus ``shift`` plus example noise (a prompt's rows below PL equal frozen)."""
    rng = np.random.default_rng(seed)
    base = {j: rng.normal(0.5, 1.0, n) for j in range(3)}
    rows = []
    for j in range(3):
        for ps in (0, 1):
            rows += [{"method": "frozen", "prompt_layer": 0, "seed": 0, "layer": j, "probe_seed": ps,
                      "example_id": i, "pvi_bits": v} for i, v in enumerate(base[j])]
    for s, shift in shift_by_seed.items():
        for j in range(3):
            vals = base[j] + (shift + rng.normal(0, 0.3, n) if j == 2 else 0)
            for ps in (0, 1):
                rows += [{"method": "lpt", "prompt_layer": 2, "seed": s, "layer": j, "probe_seed": ps,
                          "example_id": i, "pvi_bits": v} for i, v in enumerate(vals)]
    return pd.DataFrame(rows).assign(task="t", model="m", probe="linear", representation="mask")


def test_condition_differences_are_paired_and_mark_effects():
    diff = condition_differences(_pvi_table({13: 0.2, 21: 0.25, 42: 0.15}), bootstrap=300)
    pooled = diff[diff["seed"].isna()].set_index("layer")
    assert pooled.loc[2, "diff_bits"] == pytest.approx(0.2, abs=0.03)
    assert pooled.loc[2, "effect"] and pooled.loc[2, "n_seeds"] == 3 and pooled.loc[2, "n_probe_seeds"] == 2
    assert pooled.loc[2, "ci_low"] > 0.1 and pooled.loc[2, "ci_high"] < 0.3  # paired: the example noise (sd 1) cancels
    assert (pooled.loc[[0, 1], "diff_bits"] == 0).all() and not pooled.loc[[0, 1], "effect"].any()
    per_seed = diff[diff["seed"].notna()]
    assert len(per_seed) == 9 and per_seed["effect"].sum() == 3  # hidden state 2 of each seed
    lines = effects_table(diff).splitlines()  # header, "layer", then hidden states 0, 1, 2
    assert [ln.split()[0] for ln in lines[2:]] == ["0", "1", "2"]
    assert [ln.rstrip().endswith("*") for ln in lines[2:]] == [False, False, True]


def test_seeds_that_disagree_are_not_an_effect():
    diff = condition_differences(_pvi_table({13: 0.3, 21: -0.05}), bootstrap=300)
    row = diff[diff["seed"].isna() & (diff["layer"] == 2)].iloc[0]
    assert row["ci_low"] > 0 and not row["effect"]  # the interval excludes 0, one seed points the other way
    assert row["seed_std_bits"] == pytest.approx(np.std([0.3, -0.05], ddof=1), abs=0.05)


def test_probe_seed_defaults_follow_the_probe():
    assert MIConfig(probe="linear").mi.probe_seeds == (0,)
    assert MIConfig(probe="mlp").mi.probe_seeds == (0, 1, 2)
    assert MIConfig(probe="transformer").mi.probe_seeds == (0, 1, 2)
    assert MIConfig(probe="mlp", probe_seeds=(5,)).mi.probe_seeds == (5,)
    # a linear probe with a dev split does not depend on its seed: three seeds would be one fit three times
    from lpt_probe.probing import LinearProbe

    rng = np.random.default_rng(0)
    X, y, Xd, yd = rng.standard_normal((100, 5)), rng.integers(0, 2, 100), rng.standard_normal((50, 5)), \
        rng.integers(0, 2, 50)
    p0 = LinearProbe(2, seed=0).fit(X, y, X_dev=Xd, y_dev=yd).predict_proba(Xd)
    p1 = LinearProbe(2, seed=1).fit(X, y, X_dev=Xd, y_dev=yd).predict_proba(Xd)
    assert np.array_equal(p0, p1)


def test_pooled_null_counts_a_shared_piece_once():
    """A late prompt's hidden states below its prompt layer are the frozen model's piece: its
    rows repeat that piece's draws, which the pooled null counts once."""
    frozen = {"layer": 1, "mi_bits": 0.01, "control_draws_bits": "[0.0, 0.02]"}
    rows = pd.DataFrame([frozen, dict(frozen), {"layer": 2, "mi_bits": -0.02, "control_draws_bits": "[-0.03, -0.01]"}])
    assert pooled_null(rows)["n_draws"] == 4


def test_one_prompt_seed_gives_one_difference_row_per_hidden_state():
    """With one prompt seed the pooled row would repeat the seed's: there is only the seed's
    row (issue 33), and it is the row the printed table quotes."""
    diff = condition_differences(_pvi_table({13: 0.2}), bootstrap=300)
    assert len(diff) == 3 and diff["seed"].tolist() == [13, 13, 13] and (diff["n_seeds"] == 1).all()
    assert pooled_rows(diff).equals(diff)
    assert [ln.rstrip().endswith("*") for ln in effects_table(diff).splitlines()[2:]] == [False, False, True]
    several = condition_differences(_pvi_table({13: 0.2, 21: 0.25}), bootstrap=300)
    assert len(several) == 9 and pooled_rows(several)["seed"].isna().all() and len(pooled_rows(several)) == 3
