"""The Section 4 verdict engine (``lpt_probe.analysis.section4.verdicts``, ``contrasts``) on synthetic studies built
to give each verdict: yes, no, inconclusive and not informative; the hierarchical
bootstrap, Holm's correction, the learned gate and the coherence null on their own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpt_probe.analysis.section4.contrasts import (CoherenceStat, MeanStat, coherence_null, holm, learned_gate,
                                          replicate_statistics)
from lpt_probe.analysis.section4.verdicts import CONTRASTS, StudyExamples, anytime_dev, decide, judge, paper_layers

L = 6  # paper layers 1, 4, 6


def grams_with(coherence: float, n: int, seed: int, dim: int = 64) -> np.ndarray:
    """The Gram matrix of n gradients sharing one direction with weight ``coherence`` (0 = noise)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim)
    g = np.sqrt(coherence) * shared / np.linalg.norm(shared) * np.sqrt(dim) + rng.normal(size=(n, dim))
    return g @ g.T


def study(acc=None, pvi=None, drop=None, coh=None, seeds=(13, 21, 42), n=400, majority=0.5, seed=0) -> StudyExamples:
    """A synthetic study: per paper layer the test accuracy, the dev accuracy (same as test),
    the mean PVI at the top, the log-prob drop and the signal's coherence."""
    acc = acc or {1: 0.70, 4: 0.85, 6: 0.70}
    pvi = pvi or {1: 0.20, 4: 0.40, 6: 0.20}
    drop = drop or {1: 0.60, 4: 0.30, 6: 0.05}
    coh = coh or {1: 0.00, 4: 0.30, 6: 0.60}
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) < majority * n).astype(int)  # the first `majority` share is class 1, the majority
    is_major = labels == 1
    tc, dev, pv, infl, grams = [], [], [], [], {}
    for k in (1, 4, 6):
        for s in seeds:
            correct = (rng.random(n) < acc[k]).astype(int)
            tc.append(pd.DataFrame({"prompt_layer": k, "seed": s, "example": np.arange(n), "correct": correct}))
            dev.append(pd.DataFrame({"prompt_layer": k, "seed": s, "example": np.arange(n),
                                     "value": (rng.random(n) < acc[k]).astype(float)}))
            for p in (0, 1):
                pv.append(pd.DataFrame({"prompt_layer": k, "seed": s, "probe_seed": p, "example_id": np.arange(n),
                                        "pvi_bits": pvi[k] + rng.normal(0, 0.5, n)}))
            infl.append(pd.DataFrame({"prompt_layer": k, "seed": s, "checkpoint": "trained",
                                      "quantity": "logprob_drop_from", "position": "prediction", "layer": k,
                                      "example": np.arange(n), "value": drop[k] + rng.normal(0, 0.3, n)}))
            infl.append(pd.DataFrame({"prompt_layer": k, "seed": s, "checkpoint": "init",
                                      "quantity": "grad_x_state_norm", "position": "prompt", "layer": k - 1,
                                      "example": np.arange(n), "value": 1.0 + k + rng.normal(0, 0.3, n)}))
            grams[f"pl{k}-s{s}-init"] = grams_with(coh[k], n, seed=100_000 * seed + 1000 * k + s)
    return StudyExamples(L, pd.concat(tc), is_major, pd.concat(dev), pd.concat(pv), pd.concat(infl), grams)


def verdicts(ex: StudyExamples) -> dict[str, str]:
    claims, _, _, _ = judge(ex, bootstrap=400)
    return dict(zip(claims["claim"], claims["verdict"]))


def test_paper_shapes_give_yes_for_every_claim():
    claims, table, gate, floor = judge(study(), bootstrap=400)
    assert dict(zip(claims["claim"], claims["verdict"])) == {c: "yes" for c in CONTRASTS}
    assert gate["learned"].all() and floor["L"]["p"] < 0.05
    tested = table[table["tested"]]
    assert len(tested) == 2 * len(CONTRASTS) and (tested["p_holm"] >= tested["p"]).all()
    assert set(tested["contrast"]) == {"PL4 - PL1", "PL4 - PL6", "PL1 - PL4", "PL6 - PL4"}


def test_the_opposite_shapes_give_no():
    ex = study(acc={1: 0.90, 4: 0.70, 6: 0.90}, pvi={1: 0.5, 4: 0.1, 6: 0.5}, drop={1: 0.0, 4: 0.3, 6: 0.6},
               coh={1: 0.6, 4: 0.3, 6: 0.0})
    v = verdicts(ex)
    assert v == {"accuracy": "no", "convergence": "no", "information": "no", "influence": "no", "signal": "no"}


def test_equal_layers_are_inconclusive_not_no():
    ex = study(acc={1: 0.75, 4: 0.75, 6: 0.75}, pvi={1: 0.3, 4: 0.3, 6: 0.3}, n=150, seeds=(13, 21))
    v = verdicts(ex)
    assert v["accuracy"] == "inconclusive" and v["information"] == "inconclusive"


def test_a_prompt_at_the_majority_rate_makes_the_trained_claims_not_informative():
    ex = study(acc={1: 0.50, 4: 0.85, 6: 0.70})  # PL 1 never beat the majority class (0.5)
    claims, _, gate, _ = judge(ex, bootstrap=400)
    v = dict(zip(claims["claim"], claims["verdict"]))
    assert {v[c] for c in ("accuracy", "convergence", "information", "influence")} == {"not informative"}
    assert v["signal"] == "yes"  # the untrained prompts' claim does not need learning
    assert "PL 1" in claims.set_index("claim").loc["accuracy", "reason"]
    assert dict(zip(gate["prompt_layer"], gate["learned"])) == {1: False, 4: True, 6: True}


def test_a_signal_at_its_noise_floor_is_not_informative():
    """Pure-noise gradients (the floor test has level 5%: most draws, not every one, pass)."""
    got = [verdicts(study(coh={1: 0.0, 4: 0.0, 6: 0.0}, seed=s, n=150, seeds=(13,)))["signal"] for s in range(1, 6)]
    assert got.count("not informative") >= 4


def test_a_missing_paper_layer_makes_its_claims_not_informative():
    ex = study()
    ex.pvi = ex.pvi[ex.pvi["prompt_layer"] != 4]
    claims, _, _, _ = judge(ex, bootstrap=200)
    row = claims.set_index("claim").loc["information"]
    assert row["verdict"] == "not informative" and "PL 4" in row["reason"]


def test_decide_and_holm():
    assert decide(["paper", "paper"]) == "yes" and decide(["paper", "other"]) == "no"
    assert decide(["paper", "undecided"]) == "inconclusive" and decide([]) == "inconclusive"
    adj = holm(np.array([0.01, 0.04, 0.03]))
    assert np.allclose(adj, [0.03, 0.06, 0.06])


def test_hierarchical_bootstrap_counts_seed_variance():
    """Two seeds far apart: the interval over seeds and examples is wider than over examples alone."""
    rng = np.random.default_rng(0)
    n = 300
    spread = MeanStat(np.stack([rng.normal(0.0, 1, n), rng.normal(1.0, 1, n)]))
    pooled = MeanStat(spread.values.mean(axis=0, keepdims=True)[:, 0])
    r = replicate_statistics({"spread": spread, "pooled": pooled}, bootstrap=1000)
    assert np.std(r["spread"]) > 1.5 * np.std(r["pooled"])
    assert abs(np.mean(r["spread"]) - spread.point()) < 0.05


def test_bootstrap_refuses_unpaired_examples():
    with pytest.raises(ValueError, match="different numbers of examples"):
        replicate_statistics({"a": MeanStat(np.zeros((1, 5))), "b": MeanStat(np.zeros((1, 6)))})


def test_coherence_null_sits_at_one_over_n():
    n = 200
    obs, null = coherence_null(np.stack([grams_with(0.0, n, 1)]), draws=2000)
    assert abs(null.mean() - 1 / n) < 0.2 / n
    strong, null2 = coherence_null(np.stack([grams_with(0.5, n, 2)]), draws=500)
    assert strong > np.quantile(null2, 0.99) and CoherenceStat(np.stack([grams_with(0.5, n, 2)])).point() == strong


def test_learned_gate_pairs_with_the_majority_class():
    n = 200
    maj = np.arange(n) < 150  # majority rate 0.75
    always_majority = maj.astype(int)[None, :]  # predicts the majority class: accuracy 0.75, gain 0
    better = np.ones((1, n), dtype=int)
    gate = learned_gate({1: always_majority, 2: better}, maj, bootstrap=300)
    assert list(gate["learned"]) == [False, True] and gate["majority_rate"].iloc[0] == 0.75


def test_anytime_dev_keeps_the_best_weights_and_carries_them_forward():
    steps = np.array([10, 20])
    correct = np.array([[1, 0], [0, 0]])  # the second evaluation is worse: the first stays kept
    assert np.allclose(anytime_dev(steps, correct, np.array([10, 20, 30])), [1.0, 0.0])
    assert np.allclose(anytime_dev(steps, correct, np.array([5, 10])), [0.5, 0.0])  # before 10 nothing is kept


def test_paper_layers():
    assert paper_layers(24) == {"PL1": 1, "mid": 13, "L": 24} and paper_layers(30)["mid"] == 16
