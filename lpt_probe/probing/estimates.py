"""Information estimates from probes, in bits: how much of y a probe family can read off h.

Start at :func:`probe_information`: it fits a probe on the train split (the dev split is
handed to every probe whose ``fit`` takes ``X_dev``, for hyperparameter selection and
early stopping), scores the test split only, and returns one tidy row per probe seed with

    I_V(h -> y) = E_test[log2 q(y|h) - log2 g_null(y)]   (``mi_bits = null_ce_bits - ce_bits``)

where q is the fitted probe and g_null the null model: the TRAIN label prior, the model a
probe given no input would learn. This is the mean pointwise V-information of the test
examples (Ethayarajh et al. 2022), the held-out estimate of *V-usable information*
(Xu et al. 2020) for the probe family V (linear, MLP, transformer), and the paper's
estimate of I(h;y) (Liu et al. 2022). Read it as V-usable information, not Shannon mutual
information: by the data-processing inequality the Shannon MI between a layer's hidden
state and y cannot grow with depth, so a curve that rises with depth means information
becoming *usable* by the probe family.

Why the null model's cross-entropy and not H(y): both terms are scored on the same test
labels, so a prior shift between train and test cancels. The older ``H(y_train) - CE``
gave a probe that learns nothing H(p_train) - CE(p_test, p_train) (-0.245 bits for a
70/30 train and 50/50 test prior); now it gets 0 in expectation (slightly below 0 once
it fits noise). ``h_y_bits`` (the train prior's entropy) is still reported beside it.
Raw differences are reported: an estimate may be negative and is never clipped. The CI
is a *paired* percentile bootstrap over test examples (:func:`bootstrap_mi_ci`): each
resample takes the mean of ``log2q - log2q_null`` over the same resampled examples.

Also here: :func:`shuffled_label_control` (same pipeline, train/dev labels permuted) and
:func:`selectivity`; :func:`pvi`, pointwise V-information per test example; and
:func:`mean_std_table` to aggregate rows over seeds. Inputs are ``[n, d]`` arrays or
:class:`~.sequences.Sequences` (for sequence probes), see :func:`~.sequences.check_xy`.

Units: every public number is in bits. Probabilities are clipped to ``[EPS, 1]`` before
a log (``EPS = 1e-12``, so one example costs at most -log2(EPS) ~ 39.86 bits); natural
logs are converted once, by :func:`nats_to_bits`. That function, the entropies, the
log-likelihoods, the null model and the bootstrap are defined in :mod:`.bits` and
re-exported here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from .bits import (
    EPS,
    LN2,
    bootstrap_counts,
    bootstrap_indices,
    bootstrap_mi_ci,
    cross_entropy_bits,
    entropy_bits,
    log2_likelihood,
    nats_to_bits,
    null_log2q,
    null_prior,
)
from .probes import make_probe
from .selection import json_params
from .sequences import Sequences, check_features, check_xy, n_features

logger = logging.getLogger(__name__)

__all__ = [
    "EPS", "LN2", "nats_to_bits", "entropy_bits", "log2_likelihood", "cross_entropy_bits",
    "null_prior", "null_log2q", "bootstrap_indices", "bootstrap_counts", "bootstrap_mi_ci", "ProbeInformation", "probe_information",
    "shuffled_label_control", "pooled_null", "paired_difference", "selectivity", "pvi", "mean_std_table",
    "as_factory", "fit_probe",
]

ProbeFactory = Callable[[int], Any]  # seed -> unfitted probe with fit / predict_proba


class ProbeInformation(NamedTuple):
    """What :func:`probe_information` returns; unpacks as ``rows, log2q, log2q_null``."""

    rows: list[dict]  # one row per probe seed
    log2q: np.ndarray  # [n_seeds, n_test] log2 q(y|h) of each test example under each probe
    log2q_null: np.ndarray  # [n_test] log2 of the train label prior at each test label


def as_factory(probe_factory: ProbeFactory | str, n_classes: int) -> ProbeFactory:
    """A probe name (for :func:`~.probes.make_probe`) or a callable ``seed -> probe`` as a callable."""
    if isinstance(probe_factory, str):
        name = probe_factory
        make_probe(name, n_classes, 0)  # fail early on an unknown name
        return lambda seed: make_probe(name, n_classes, seed)
    if not callable(probe_factory):
        raise TypeError(f"probe_factory must be a probe name or a callable seed -> probe, got {probe_factory!r}")
    return probe_factory


def fit_probe(probe, X_train, y_train, X_dev, y_dev):
    """Fit on train; hand over dev only when the probe's ``fit`` accepts ``X_dev``."""
    params = inspect.signature(probe.fit).parameters
    if X_dev is not None and "X_dev" in params:
        return probe.fit(X_train, y_train, X_dev=X_dev, y_dev=y_dev)
    return probe.fit(X_train, y_train)


_as_factory, _fit = as_factory, fit_probe  # the old private names, for internal callers


def _rows_as_bytes(X) -> list[bytes]:
    """One digest per row (a feature vector, or a sequence with its readout and prefix)."""
    if isinstance(X, Sequences):
        return X.row_digests()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in np.ascontiguousarray(X)]


_DUPLICATES_SEEN: set[tuple[int, int]] = set()  # (n_dup, n_test) already warned about in this process


def _warn_duplicate_rows(X_train, X_test) -> None:
    train_rows = set(_rows_as_bytes(X_train))
    n_dup = sum(row in train_rows for row in _rows_as_bytes(X_test))
    if n_dup:  # once per process at WARNING (every layer and control would repeat it), then at DEBUG
        seen = (n_dup, len(X_test)) in _DUPLICATES_SEEN
        _DUPLICATES_SEEN.add((n_dup, len(X_test)))
        (logger.debug if seen else logger.warning)("%d of %d test rows have a feature vector identical to a train row "
                       "(duplicate examples across splits, or a representation that is the same for every "
                       "example, such as the [MASK] token's embedding at hidden state 0)", n_dup, len(X_test))


def _grid_edge(probe) -> str:
    return ",".join(getattr(probe, "selection_", {}).get("at_grid_edge", []) or [])


def probe_information(probe_factory: ProbeFactory | str, X_train, y_train, X_dev, y_dev, X_test, y_test,
                      n_classes: int, seeds: Sequence[int] = (0,), bootstrap: int = 1000, ci: float = 0.95,
                      rng_seed: int = 0) -> ProbeInformation:
    """Fit one probe per seed on train (dev for selection / early stopping), score on test only.

    ``probe_factory``: a name for :func:`make_probe` or a callable ``seed -> probe``.
    ``X_*``: ``[n, d]`` arrays for vector probes, :class:`~.sequences.Sequences` for
    sequence probes (a probe's ``input_kind`` says which). ``X_dev``/``y_dev`` may be None;
    they go to every probe whose ``fit`` takes ``X_dev``. Row keys: ``probe``,
    ``probe_seed``, ``control`` ("none"; "shuffled_labels" from
    :func:`shuffled_label_control`), ``mi_bits`` (= null_ce_bits - ce_bits = mean test PVI,
    raw), ``mi_ci_low``/``mi_ci_high`` (paired percentile bootstrap over test examples,
    same resamples for every seed), ``ce_bits`` (test cross-entropy of the probe),
    ``null_ce_bits`` (test cross-entropy of the train label prior), ``h_y_bits`` (entropy
    of the train label prior; no longer part of ``mi_bits``), ``accuracy``, ``macro_f1``
    (over the labels present in y_test or the predictions), ``n_train``, ``n_dev`` (dev
    rows passed), ``n_test`` and ``n`` (= n_test, kept), ``probe_params`` (JSON of the
    probe's ``selected_params_``, "{}" if it has none) and ``grid_edge`` (comma-joined
    names of hyperparameters chosen at the edge of their grid, "" if none).
    """
    X_train, y_train = check_xy(X_train, y_train, n_classes, "train")
    X_test, y_test = check_xy(X_test, y_test, n_classes, "test")
    if X_dev is not None:
        X_dev, y_dev = check_xy(X_dev, y_dev, n_classes, "dev")
    splits = {"train": X_train, "dev": X_dev, "test": X_test}
    kinds = {k: type(v).__name__ for k, v in splits.items() if v is not None}
    if len({isinstance(v, Sequences) for v in splits.values() if v is not None}) > 1:
        raise ValueError(f"train, dev and test must all be arrays or all Sequences, got {kinds}")
    if n_features(X_test) != n_features(X_train):
        raise ValueError(f"train has {n_features(X_train)} features but test has {n_features(X_test)}")
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if len(unseen):
        raise ValueError(
            f"class(es) {unseen.tolist()} occur in {int(np.isin(y_test, unseen).sum())} of {len(y_test)} test rows "
            f"but never in the {len(y_train)} probe-train rows: no probe can learn them, and the estimate would "
            "measure how the probe and the null model guess an unseen class (about 12 bits on pure noise), not "
            "information in h; give the probe more training rows (--probe-train-max, --max-examples) or drop "
            "the class from the data")
    _warn_duplicate_rows(X_train, X_test)
    factory = as_factory(probe_factory, n_classes)
    h_y = entropy_bits(y_train, n_classes)
    log2q_null = null_log2q(y_train, y_test, n_classes)
    null_ce = float(-log2q_null.mean())
    rows, all_log2q = [], []
    for seed in seeds:
        probe = factory(seed)
        kind = getattr(probe, "input_kind", None)
        if kind is not None:  # a clear error before any fitting when the input kind is wrong
            check_features(X_train, kind, type(probe).__name__, "train", finite=False)
        probe = fit_probe(probe, X_train, y_train, X_dev, y_dev)
        proba = np.asarray(probe.predict_proba(X_test))
        if proba.shape != (len(y_test), n_classes):
            raise ValueError(f"probe.predict_proba returned shape {proba.shape}, expected "
                             f"{(len(y_test), n_classes)}: probes must emit one column per class")
        log2q = log2_likelihood(proba, y_test)
        ce = float(-log2q.mean())
        mi = float(np.mean(log2q - log2q_null))
        lo, hi = bootstrap_mi_ci(log2q, log2q_null, bootstrap, ci, rng_seed)
        pred = proba.argmax(axis=1)
        rows.append({
            "probe": probe_factory if isinstance(probe_factory, str) else getattr(probe, "name", type(probe).__name__),
            "probe_seed": int(seed), "control": "none",
            "h_y_bits": h_y, "ce_bits": ce, "mi_bits": mi, "mi_ci_low": lo, "mi_ci_high": hi,
            "null_ce_bits": null_ce,
            "accuracy": float(np.mean(pred == y_test)),
            "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
            "n": len(y_test), "n_test": len(y_test), "n_train": len(y_train),
            "n_dev": 0 if y_dev is None else len(y_dev),
            "probe_params": json_params(getattr(probe, "selected_params_", {}) or {}),
            "grid_edge": _grid_edge(probe),
        })
        all_log2q.append(log2q)
        logger.info("probe=%s seed=%s: I=%.4f bits [%.4f, %.4f], acc=%.3f, params=%s", rows[-1]["probe"], seed,
                    mi, lo, hi, rows[-1]["accuracy"], rows[-1]["probe_params"])
    return ProbeInformation(rows, np.stack(all_log2q), log2q_null)


def _json_floats(values) -> str:
    return json.dumps([float(v) for v in values])


def shuffled_label_control(probe_factory: ProbeFactory | str, X_train, y_train, X_dev, y_dev, X_test, y_test,
                           n_classes: int, seeds: Sequence[int] = (0,), bootstrap: int = 1000,
                           ci: float = 0.95, rng_seed: int = 0, permutation_seed: int = 0,
                           permutations: int = 1) -> ProbeInformation:
    """:func:`probe_information` with train (and dev) labels permuted, averaged over permutations.

    A permutation keeps the label prior (so ``h_y_bits`` and ``null_ce_bits`` are
    unchanged) but breaks the link between h and y in every row the probe sees, including
    the dev rows used for selection and early stopping. Scoring is on the TRUE test
    labels, so ``mi_bits`` is ~0 in expectation (slightly negative when the probe fits
    noise). One permutation is one draw: its estimate moves by a few hundredths of a bit
    from draw to draw (the noise a probe fits tilts the prior one way or the other), so
    ``permutations`` draws (seeds ``permutation_seed``, ``+1``, ...) are averaged per probe
    seed: the per-example log2 q is averaged over the draws, ``mi_bits``, ``ce_bits``, the
    CI (paired bootstrap on the averaged per-example values), ``accuracy`` and
    ``macro_f1`` are those of the average; ``permutations`` and ``control_std_bits`` (the
    std of the single-draw estimates) are added, and ``probe_params`` lists each draw's
    choice. Rows have ``control="shuffled_labels"``, ``control_draws_bits`` (JSON list of
    the single-draw estimates: the pieces of the pooled null distribution,
    :func:`pooled_null`) and ``permutation_seeds``.
    """
    if permutations < 1:
        raise ValueError(f"permutations={permutations} must be >= 1")
    draws = []
    for k in range(permutations):
        rng = np.random.default_rng(permutation_seed + k)
        y_tr = np.asarray(y_train)[rng.permutation(len(y_train))]
        y_dv = None if y_dev is None else np.asarray(y_dev)[rng.permutation(len(y_dev))]
        draws.append(probe_information(probe_factory, X_train, y_tr, X_dev, y_dv, X_test, y_test, n_classes,
                                       seeds=seeds, bootstrap=bootstrap if permutations == 1 else 0, ci=ci,
                                       rng_seed=rng_seed))
    first = draws[0]
    seeds_used = ",".join(str(permutation_seed + k) for k in range(permutations))
    if permutations == 1:
        rows = [{**r, "control": "shuffled_labels", "permutations": 1, "control_std_bits": float("nan"),
                 "control_draws_bits": _json_floats([r["mi_bits"]]), "permutation_seeds": seeds_used}
                for r in first.rows]
        return ProbeInformation(rows, first.log2q, first.log2q_null)
    log2q = np.mean([d.log2q for d in draws], axis=0)  # [n_seeds, n_test]
    rows = []
    for i, row in enumerate(first.rows):
        single = [d.rows[i]["mi_bits"] for d in draws]
        lo, hi = bootstrap_mi_ci(log2q[i], first.log2q_null, bootstrap, ci, rng_seed)
        rows.append({**row, "control": "shuffled_labels",
                     "ce_bits": float(-log2q[i].mean()), "mi_bits": float(np.mean(log2q[i] - first.log2q_null)),
                     "mi_ci_low": lo, "mi_ci_high": hi,
                     "accuracy": float(np.mean([d.rows[i]["accuracy"] for d in draws])),
                     "macro_f1": float(np.mean([d.rows[i]["macro_f1"] for d in draws])),
                     "probe_params": "[" + ", ".join(d.rows[i]["probe_params"] for d in draws) + "]",
                     "grid_edge": ",".join(sorted({e for d in draws for e in d.rows[i]["grid_edge"].split(",") if e})),
                     "permutations": permutations, "control_std_bits": float(np.std(single)),
                     "control_draws_bits": _json_floats(single), "permutation_seeds": seeds_used})
    return ProbeInformation(rows, log2q, first.log2q_null)


def pooled_null(control_rows, ci: float = 0.95) -> dict[str, float]:
    """The null distribution of the estimate, pooled over every shuffled-label row given
    (each piece's single permutation draws, ``control_draws_bits``, when present, each
    piece's once: rows that share a piece repeat its draws; else the rows' ``mi_bits``): how far an estimate moves when h says nothing about y. Returns
    ``n_draws``, ``mean``, ``std``, the central ``ci`` interval (``low``, ``high``) and
    ``max_abs``. An estimate inside [low, high] is not distinguishable from a probe fitting
    noise."""
    df = pd.DataFrame(control_rows)
    if df.empty:
        raise ValueError("pooled_null needs at least one shuffled-label row; run with the controls on")
    if "control_draws_bits" in df.columns and df["control_draws_bits"].notna().all():
        # a late prompt's hidden states below its prompt layer are the frozen model's: those rows
        # repeat the frozen piece's draws, which count once (every piece draws its own permutations)
        df = df.drop_duplicates(subset=[c for c in ("layer", "control_draws_bits") if c in df.columns])
        draws = np.concatenate([json.loads(v) for v in df["control_draws_bits"]]).astype(np.float64)
    else:
        draws = df["mi_bits"].to_numpy(np.float64)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"n_draws": int(len(draws)), "mean": float(draws.mean()), "std": float(draws.std(ddof=1))
            if len(draws) > 1 else float("nan"), "low": float(lo), "high": float(hi),
            "max_abs": float(np.abs(draws).max())}


def paired_difference(pvi_a, pvi_b, bootstrap: int = 1000, ci: float = 0.95, rng_seed: int = 0
                      ) -> tuple[float, float, float]:
    """Mean of ``pvi_a - pvi_b`` [n] (two conditions' pointwise V-information on the SAME
    test examples) and its paired percentile bootstrap interval over examples: the
    difference of two I(h;y) estimates with the test-sample noise they share cancelled.
    (mean, nan, nan) when ``bootstrap`` is 0."""
    a, b = np.asarray(pvi_a, dtype=np.float64), np.asarray(pvi_b, dtype=np.float64)
    lo, hi = bootstrap_mi_ci(a, b, bootstrap, ci, rng_seed)
    return float(np.mean(a - b)), lo, hi


def selectivity(rows, control_rows, on: Sequence[str] = ("probe", "probe_seed"),
                value: str = "mi_bits") -> pd.DataFrame:
    """Join real and control rows on ``on`` and add ``selectivity_bits = value - control value``.

    ``rows``/``control_rows``: lists of dicts or DataFrames. Add e.g. ``"layer"`` to ``on``
    when the rows carry it. Raises if no row pairs up.
    """
    real, ctrl = pd.DataFrame(rows), pd.DataFrame(control_rows)
    on = list(on)
    for name, frame in (("rows", real), ("control_rows", ctrl)):
        missing = [c for c in on + [value] if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lack column(s) {missing}; have {list(frame.columns)}")
        if frame.duplicated(on).any():
            raise ValueError(f"{name} have several rows per {on}; add the column that tells them apart "
                             "(e.g. 'layer') to `on`")
    out = real[on + [value]].merge(ctrl[on + [value]].rename(columns={value: f"control_{value}"}),
                                   on=on, how="inner")
    if out.empty:
        raise ValueError(f"no control row matches a real row on {on}")
    out["selectivity_bits"] = out[value] - out[f"control_{value}"]
    return out


def pvi(log2q_with_h, log2q_null) -> np.ndarray:
    """Pointwise V-information (Ethayarajh et al. 2022), in bits, per example.

    PVI(x -> y) = -log2 g_null(y) + log2 g_x(y), where g_x is the probe fitted on the
    inputs and g_null the null model. For our probes the null model is the TRAIN label
    prior (what a probe given no input would learn); :func:`null_log2q` computes it and
    :func:`probe_information` returns it as ``log2q_null``. Both arguments are log2
    probabilities of the gold label, shape [n].
    """
    a, b = np.asarray(log2q_with_h, dtype=np.float64), np.asarray(log2q_null, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: log2q_with_h {a.shape} vs log2q_null {b.shape}")
    return a - b


def mean_std_table(df: pd.DataFrame, by: Sequence[str], value: str = "mi_bits") -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for a single seed) and count of ``value`` per group."""
    df = pd.DataFrame(df)
    return (df.groupby(list(by), sort=True)[value].agg(["mean", "std", "count"]).reset_index())
