"""Quantities in bits that every probe estimate shares: the unit conversion, entropies,
per-example log2 likelihoods, the null model and the package's one bootstrap resampler.

:mod:`.estimates` builds on these (and re-exports every name here, so
``lpt_probe.probing.estimates.bootstrap_mi_ci`` and the like keep working):

- :func:`nats_to_bits` (the one place natural logs become bits), :func:`entropy_bits`,
  :func:`log2_likelihood`, :func:`cross_entropy_bits`;
- the null model: :func:`null_prior` (the TRAIN label prior, smoothed like the probes) and
  :func:`null_log2q`;
- the bootstrap: :func:`bootstrap_indices` (the resampler the probes' intervals and
  influence's share), :func:`bootstrap_counts` and :func:`bootstrap_mi_ci` (the paired
  percentile interval of the mean PVI).

Probabilities are clipped to ``[EPS, 1]`` before a log (``EPS`` from :mod:`.selection`).
"""

from __future__ import annotations

import math

import numpy as np

from .selection import EPS, smooth_absent, succession_weight

__all__ = [
    "EPS", "LN2", "nats_to_bits", "entropy_bits", "log2_likelihood", "cross_entropy_bits",
    "null_prior", "null_log2q", "bootstrap_indices", "bootstrap_counts", "bootstrap_mi_ci",
]

LN2 = math.log(2.0)


def nats_to_bits(x):
    """Convert natural-log quantities to bits (divide by ln 2). The one place this happens."""
    return x / LN2


def entropy_bits(y, n_classes: int) -> float:
    """H(y) in bits of the empirical label distribution of ``y`` (labels in [0, n_classes))."""
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("entropy_bits needs at least one label, got an empty array")
    p = np.bincount(y, minlength=n_classes) / len(y)
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def log2_likelihood(proba, y) -> np.ndarray:
    """Per-example log2 q(y_i|h_i) [n] from ``proba`` [n, K], clipped at ``EPS``."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if proba.ndim != 2 or len(proba) != len(y):
        raise ValueError(f"proba must be [n, K] with n=len(y)={len(y)}, got shape {proba.shape}")
    if len(y) and (y.min() < 0 or y.max() >= proba.shape[1]):
        raise ValueError(f"labels must be in [0, {proba.shape[1]}) to index proba's columns")
    q = np.clip(proba[np.arange(len(y)), y], EPS, 1.0)
    return nats_to_bits(np.log(q))


def cross_entropy_bits(proba, y) -> float:
    """Mean -log2 q(y_i|h_i) in bits (probabilities clipped at ``EPS``)."""
    return float(-np.mean(log2_likelihood(proba, y)))


def null_prior(y_train, n_classes: int) -> np.ndarray:
    """The null model [K]: the TRAIN label prior, what a probe given no input would learn.

    When a class is absent from ``y_train`` it is smoothed exactly as every probe smooths
    its predictions (the rule of succession, (count + 1) / (n + K);
    ``selection.succession_weight``): otherwise a test row of that class would cost the
    null model -log2(EPS) ~ 40 bits and the probe ~log2(n + K), and a probe of pure noise
    would score ~12 bits."""
    y_train = np.asarray(y_train)
    if len(y_train) == 0:
        raise ValueError("null_prior needs at least one training label, got none")
    prior = np.bincount(y_train, minlength=n_classes) / len(y_train)
    return smooth_absent(prior[None, :], succession_weight(y_train, n_classes))[0]


def null_log2q(y_train, y_eval, n_classes: int) -> np.ndarray:
    """log2 g_null(y) [n_eval] for the null model g_null = :func:`null_prior` (the TRAIN
    label prior, smoothed like the probes when a class is absent; clipped at EPS)."""
    prior = null_prior(y_train, n_classes)
    return nats_to_bits(np.log(np.clip(prior[np.asarray(y_eval)], EPS, 1.0)))


def bootstrap_indices(n: int, n_boot: int, rng_seed: int = 0):
    """The resamples of a percentile bootstrap over ``n`` examples: yields ``[rows, n]``
    arrays of example indices drawn with replacement, ``n_boot`` rows in all, in chunks of at
    most ~2M indices (one chunk, one draw, whenever n_boot x n fits). The one resampler of
    the package: the probes' intervals (:func:`bootstrap_mi_ci`) and influence's
    (:func:`bootstrap_counts`) draw the same resamples for the same n and seed."""
    rng = np.random.default_rng(rng_seed)
    chunk = max(1, 2_000_000 // max(n, 1))
    for s in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - s), n))  # [rows, n]


def bootstrap_counts(n: int, n_boot: int, rng_seed: int = 0) -> np.ndarray:
    """[n_boot, n]: how often each example is drawn in each resample of
    :func:`bootstrap_indices` (for statistics that are weighted sums over examples)."""
    if n_boot <= 0:
        return np.zeros((0, n))
    return np.concatenate([np.stack([np.bincount(r, minlength=n) for r in idx])
                           for idx in bootstrap_indices(n, n_boot, rng_seed)]).astype(np.float64)


def bootstrap_mi_ci(log2q, log2q_null, n_boot: int = 1000, ci: float = 0.95,
                    rng_seed: int = 0) -> tuple[float, float]:
    """Paired percentile bootstrap CI of ``mean(log2q - log2q_null)`` over test examples.

    ``log2q`` [n]: log2 q(y_i|h_i) under the probe; ``log2q_null`` [n]: log2 of the null
    model (train prior) at the same labels (:func:`null_log2q`). Each resample draws n
    example indices with replacement and averages the per-example difference (the PVI),
    so both models are scored on the same resampled examples. Vectorised in chunks of
    resample indices; the same ``rng_seed`` gives the same resamples. (nan, nan) if n_boot=0.
    """
    a = np.asarray(log2q, dtype=np.float64)
    b = np.asarray(log2q_null, dtype=np.float64)
    if b.ndim == 0:
        raise TypeError("bootstrap_mi_ci(log2q, log2q_null, ...) takes the null model's per-example log2 "
                        f"probabilities [n], got the scalar {b.item()!r}; the old (log2q, h_y_bits) form is "
                        "gone: pass null_log2q(y_train, y_test, n_classes)")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"log2q and log2q_null must both be [n], got shapes {a.shape} and {b.shape}")
    gain = a - b  # [n] pointwise V-information
    n = len(gain)
    if n_boot <= 0 or n == 0:
        return float("nan"), float("nan")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    means = np.concatenate([gain[idx].mean(axis=1) for idx in bootstrap_indices(n, n_boot, rng_seed)])  # [n_boot]
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)
