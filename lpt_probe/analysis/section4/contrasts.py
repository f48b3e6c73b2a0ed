"""Contrasts between conditions measured on the same examples, with intervals over every
source of variance: the statistics behind the Section 4 verdicts
(``lpt_probe.analysis.section4.verdicts`` says which contrasts; this module how they are
estimated). Pure numpy: no model, no files.

A statistic per condition is a mean over examples (``MeanStat``: values [seeds,
probe_seeds, n]) or a gradient coherence (``CoherenceStat``: Gram matrices [seeds, n, n]).
:func:`replicate_statistics` draws a hierarchical bootstrap: each replicate resamples each
condition's prompt seeds with replacement, then the examples *within* each seed slot (one
multinomial draw per slot, shared by every condition, so a contrast stays paired on the
same examples), and the probe seeds where there are several. :func:`contrast_table`
turns replicates into estimates, 95% percentile intervals, p-values from the bootstrap
standard error (:func:`two_sided_p`) and Holm's step-down correction (:func:`holm`) over
the tested contrasts. :func:`learned_gate` compares a prompt's test accuracy with the
majority class; :func:`coherence_null` gives a coherence's random-sign null (mean 1/n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..influence.measures import coherence_replicates

__all__ = ["ALPHA", "CoherenceStat", "Contrast", "MeanStat", "coherence_null", "contrast_table", "holm",
           "learned_gate", "replicate_statistics", "two_sided_p"]

ALPHA = 0.05


@dataclass
class MeanStat:
    """A statistic that is a mean over examples: ``values`` [seeds, probe_seeds, n]."""

    values: np.ndarray

    def __post_init__(self):
        v = np.asarray(self.values, dtype=np.float64)
        self.values = v.reshape(v.shape[0], 1, v.shape[1]) if v.ndim == 2 else v

    @property
    def n(self) -> int:
        return self.values.shape[-1]

    @property
    def seeds(self) -> int:
        return self.values.shape[0]

    def point(self) -> float:
        return float(self.values.mean())

    def replicates(self, seed_idx: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[B] from seed draws [B, S] and example counts [B, S, n] (slot j uses counts[:, j])."""
        B, S = seed_idx.shape
        P = self.values.shape[1]
        probe = rng.integers(0, P, size=(B, S, P))
        vals = self.values[seed_idx[..., None], probe].mean(axis=2)  # [B, S, n]
        return (vals * counts[:, :S]).sum(axis=(1, 2)) / (S * self.n)


@dataclass
class CoherenceStat:
    """Gradient coherence, mean over seeds: ``grams`` [seeds, n, n] of each seed's prompt
    gradients (``lpt_probe.analysis.influence.measures.coherence_replicates``)."""

    grams: np.ndarray

    def __post_init__(self):
        self.grams = np.asarray(self.grams, dtype=np.float64)

    @property
    def n(self) -> int:
        return self.grams.shape[-1]

    @property
    def seeds(self) -> int:
        return self.grams.shape[0]

    def per_seed(self) -> np.ndarray:
        ones = np.ones((1, self.n))
        return np.array([coherence_replicates(g, ones)[0] for g in self.grams])

    def point(self) -> float:
        return float(self.per_seed().mean())

    def replicates(self, seed_idx: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        B, S = seed_idx.shape
        out = np.zeros(B)
        for j in range(S):
            for s in np.unique(seed_idx[:, j]):
                rows = seed_idx[:, j] == s
                out[rows] += coherence_replicates(self.grams[s], counts[rows, j].astype(np.float64))
        return out / S


def replicate_statistics(stats: dict[str, MeanStat | CoherenceStat], bootstrap: int = 1000, seed: int = 0
                         ) -> dict[str, np.ndarray]:
    """Hierarchical bootstrap replicates [bootstrap] of each statistic (module docstring):
    per replicate, each statistic's seeds are drawn with replacement; slot j of every
    statistic uses the same example draw (a multinomial count vector over the n shared
    examples), so differences stay paired."""
    ns = {s.n for s in stats.values()}
    if len(ns) != 1:
        raise ValueError(f"the statistics are over different numbers of examples {sorted(ns)}: a paired contrast "
                         "needs the same examples on both sides")
    n = ns.pop()
    rng = np.random.default_rng(seed)
    slots = max(s.seeds for s in stats.values())
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=(bootstrap, slots))  # [B, slots, n]
    out = {}
    for name in sorted(stats):
        st = stats[name]
        seed_idx = rng.integers(0, st.seeds, size=(bootstrap, st.seeds))
        out[name] = st.replicates(seed_idx, counts, rng)
    return out


def two_sided_p(estimate: float, reps: np.ndarray) -> float:
    """p-value of "the contrast is 0" from the bootstrap standard error (normal
    approximation, z = estimate / sd of the replicates): unlike a count of replicates
    beyond 0, its resolution does not depend on the number of resamples, which Holm's
    correction over a study's ten contrasts needs."""
    from scipy.stats import norm

    se = float(np.std(reps, ddof=1)) if len(reps) > 1 else float("nan")
    if not se > 0:
        return 0.0 if estimate != 0 and np.isfinite(se) else 1.0
    return float(2 * norm.sf(abs(estimate) / se))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj


@dataclass
class Contrast:
    claim: str
    measure: str
    a: str
    b: str
    tested: bool = True  # in the Holm family (False: reported beside, e.g. ||g||·||h||)


def contrast_table(contrasts: list[Contrast], stats: dict[str, dict[str, MeanStat | CoherenceStat]],
                   layers: dict[str, int], bootstrap: int = 1000, alpha: float = ALPHA, seed: int = 0
                   ) -> pd.DataFrame:
    """One row per contrast: estimate (a - b), 95% interval, p, Holm-adjusted p over the
    tested contrasts, and ``side``: ``paper`` / ``other`` / ``undecided``. ``stats``:
    measure -> role -> statistic; every measure is bootstrapped on its own draws."""
    reps = {m: replicate_statistics(s, bootstrap, seed) for m, s in stats.items()}
    rows = []
    for c in contrasts:
        d = reps[c.measure][c.a] - reps[c.measure][c.b]
        est = stats[c.measure][c.a].point() - stats[c.measure][c.b].point()
        lo, hi = np.percentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        rows.append({"claim": c.claim, "measure": c.measure, "contrast": f"PL{layers[c.a]} - PL{layers[c.b]}",
                     "a": c.a, "b": c.b, "estimate": est, "ci_low": float(lo), "ci_high": float(hi),
                     "p": two_sided_p(est, d), "tested": c.tested, "n_seeds_a": stats[c.measure][c.a].seeds,
                     "n_seeds_b": stats[c.measure][c.b].seeds, "n_examples": stats[c.measure][c.a].n})
    df = pd.DataFrame(rows)
    df["p_holm"] = np.nan
    tested = df["tested"].to_numpy(bool)
    if tested.any():
        df.loc[tested, "p_holm"] = holm(df.loc[tested, "p"].to_numpy())
    p_used = df["p_holm"].where(df["tested"], df["p"])
    df["side"] = np.where(p_used < alpha, np.where(df["estimate"] > 0, "paper", "other"), "undecided")
    return df


def learned_gate(correct: dict[int, np.ndarray], is_majority: np.ndarray, bootstrap: int = 1000, alpha: float = ALPHA,
                 seed: int = 0) -> pd.DataFrame:
    """Per prompt layer: test accuracy (mean over seeds) with its 95% hierarchical interval,
    the majority-class rate, and ``learned``: the 95% interval of (correct - gold is the
    majority class), paired per example, lies above 0. ``correct``: prompt layer ->
    [seeds, n] 0/1; ``is_majority`` [n]."""
    maj = np.asarray(is_majority, dtype=np.float64)
    acc = {str(k): MeanStat(v) for k, v in correct.items()}
    gain = {str(k): MeanStat(np.asarray(v, dtype=np.float64) - maj[None, :]) for k, v in correct.items()}
    r_acc = replicate_statistics(acc, bootstrap, seed)
    r_gain = replicate_statistics(gain, bootstrap, seed)
    rows = []
    for k in sorted(correct):
        lo, hi = np.percentile(r_acc[str(k)], [100 * alpha / 2, 100 * (1 - alpha / 2)])
        glo, ghi = np.percentile(r_gain[str(k)], [100 * alpha / 2, 100 * (1 - alpha / 2)])
        rows.append({"prompt_layer": int(k), "seeds": acc[str(k)].seeds, "test_accuracy": acc[str(k)].point(),
                     "ci_low": float(lo), "ci_high": float(hi), "majority_rate": float(maj.mean()),
                     "gain": gain[str(k)].point(), "gain_ci_low": float(glo), "gain_ci_high": float(ghi),
                     "learned": bool(glo > 0)})
    return pd.DataFrame(rows)


def coherence_null(grams: np.ndarray, draws: int = 1000, seed: int = 0) -> tuple[float, np.ndarray]:
    """The observed coherence (mean over seeds) and its random-sign null [draws]: each draw
    flips every example's gradient by an independent random sign (same norms, no shared
    direction) in every seed and averages over seeds. Its mean is 1/n."""
    grams = np.asarray(grams, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = grams.shape[-1]
    null = np.zeros(draws)
    for g in grams:
        s = rng.choice([-1.0, 1.0], size=(draws, n))
        null += np.einsum("bi,ij,bj->b", s, g, s) / (n * np.trace(g))
    return CoherenceStat(grams).point(), null / len(grams)
