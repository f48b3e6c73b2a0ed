"""The linear probe: standardised features + multinomial logistic regression, C on dev.

:class:`LinearProbe` is the cheap probe fitted for every layer x condition x control;
built through ``make_probe("linear", K, seed)``. Its C is chosen by dev log-loss when a
dev split is given, by stratified CV on the train rows otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from .selection import log_loss_nats, selection_summary, smooth_absent, succession_weight
from .sequences import check_features, check_xy

logger = logging.getLogger(__name__)

__all__ = ["LinearProbe"]


def _blas_threads(n: int | None):
    """Limit BLAS/OpenMP thread pools to ``n`` threads inside the block (None: no limit).
    threadpoolctl comes with scikit-learn (a hard dependency of it)."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


class LinearProbe:
    """StandardScaler + multinomial logistic regression, C chosen by held-out log-loss.

    ``fit(X, y, X_dev=None, y_dev=None)``. With dev rows, every C is fitted on the train
    rows only (ascending, warm-started) and scored by dev log-loss; the kept model is the
    train-fitted one for the best C (never refitted on dev). Without dev rows, C is chosen
    by stratified K-fold CV of log-loss on the train rows and the model refitted on all of
    them. Scaling always comes from the train rows.

    Why dev when there is one: with ~10 rows per class, CV folds of ~7 rows pick erratic,
    often the strongest, C and the estimate collapses to ~0 bits although a held-out split
    of the same size picks a useful C (tests/unit/test_probing_selection.py).

    Parameters
    ----------
    n_classes: number of label classes K; ``predict_proba`` returns K columns.
    Cs: the grid of inverse L2 strengths (scikit-learn's ``C``, which multiplies the *sum*
        of the losses, so the same C regularises less as n grows). Ties prefer smaller C.
        The grid reaches down to 1e-6 on purpose, far enough that a probe with nothing to
        learn can choose to be (almost) the null model: with d ~ 400-600 and n ~ 1000-3000, a
        shuffled-label control with C >= 0.01 overfits to -0.17..-0.23 bits, and even C=1e-4
        tilts the prior by ~0.1 logit, which moves a single permutation's estimate by
        +-0.03 bits on TREC; at 1e-6 the tilt is ~0.001. Cheap: small C converges fast.
    cv: requested number of folds (no-dev fallback). With a class of only m < cv training
        rows, m folds are used; with m < 2 no CV is possible and the smallest C (the most
        regularised, close to the prior-only model) is used.
    max_iter: lbfgs iteration cap per fit.
    patience: stop walking up the C grid once the held-out log-loss has not improved on its
        best for this many grid points in a row (None or 0: fit every C). The held-out
        loss of an L2 logistic regression falls and then rises with C, and the large-C fits
        are the slow ones (lbfgs needs the most iterations where it overfits most, e.g. a
        shuffled-label fit at C = 10), so a probe with nothing to learn stops after four of
        the eight Cs. Three, not two: where there is nothing to learn the dev loss is flat
        and noisy, and on one RTE layer it dipped again three points after its first
        minimum (patience 2 then chose C=1e-6 where the full grid chose 1e-3, 0.006 bits
        apart). ``benchmarks/bench_probe_path.py`` compares the choice with the full grid's
        on every stored layer of real runs (``benchmarks/results/probe_path.md``); pass
        ``patience=None`` to fit every C.
    seed: shuffles the CV folds.
    dtype: the precision the features are scaled and fitted in, ``"float64"`` (the
        default) or ``"float32"`` (scikit-learn's lbfgs keeps float32; the features come
        from float16 files either way). It is not the default: on a small TREC/MiniLM
        ``mi`` run (``benchmarks/bench_probe_dtype.py``, ``results/probe_dtype.md``)
        float32 fitted 1.67x faster (measured under load) and matched float64 within
        6e-4 bits where both chose the same C, but one shuffled-label fit of the 48 chose
        another C and moved by 5e-3 bits, over the 1e-3-bit tolerance a new default needs.
    num_threads: BLAS/OpenMP threads while fitting and predicting (threadpoolctl; None
        leaves them alone). Default 1: lbfgs on probe-sized problems makes many small
        BLAS calls, and with multi-threaded OpenBLAS on a busy 2-core machine a fit
        (n=1000, d=300, 6 Cs x 3 folds) took 1.9 s instead of 0.12 s.

    Fitted attributes: ``classes_`` (arange(K)), ``present_classes_`` (classes seen in
    ``fit``), ``C_``, ``selected_params_`` (``{"C": C_}``), ``selection_`` (``source``
    "dev" | "cv" | "none", ``scores`` [{"C", "log_loss"}] for the Cs fitted (the path may
    stop early, see ``patience``), ``at_grid_edge`` (["C"] or []),
    ``fallback`` (reason or None)), ``cv_info_`` (the older summary, kept: ``n_splits``,
    ``requested_cv``, ``fallback``, ``scores`` {C: held-out nats}, ``C``,
    ``at_grid_edge`` "low" | "high" | None), ``scaler_``, ``model_`` (None when only one
    class was seen), ``smoothing_``, ``converged_``, ``n_features_in_``.

    Classes absent from the training rows (tiny splits, early MDL blocks): the fitted
    model would give them probability 0, which is no valid code (its cost would be set
    by the clipping floor alone, ~39.9 bits per example). Instead the prediction is
    mixed with the uniform distribution by Laplace's rule of succession,
    ``q = (n p + 1) / (n + K)`` (``smoothing_ = K / (n + K)``, otherwise 0); with one
    class seen the model is the rule of succession itself.
    """

    name = "linear"
    input_kind = "vector"
    DEFAULT_CS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10)
    GRID_KEYS = {"C": (float, lambda v: v > 0, "a float > 0")}

    def __init__(self, n_classes: int, Cs: Sequence[float] = DEFAULT_CS, cv: int = 3,
                 max_iter: int = 1000, seed: int = 0, num_threads: int | None = 1, patience: int | None = 3,
                 dtype: str = "float64"):
        if dtype not in ("float64", "float32"):
            raise ValueError(f"LinearProbe dtype={dtype!r}: choose 'float64' or 'float32'")
        self.n_classes = n_classes
        self.dtype = dtype
        self.Cs = Cs
        self.cv = cv
        self.patience = patience
        self.max_iter = max_iter
        self.seed = seed
        self.num_threads = num_threads

    @classmethod
    def grid_kwargs(cls, grid: dict) -> dict:
        """Constructor keyword arguments for a parsed grid (see :func:`parse_probe_grid`)."""
        return {"Cs": tuple(grid["C"])} if "C" in grid else {}

    def _expand(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Place the columns of the fitted classes into K columns (absent classes: 0)."""
        out = np.zeros((len(proba), self.n_classes))  # [n, K]
        out[:, classes] = proba
        return out

    def _path(self, folds: list[tuple], Cs: list[float], keep_best: bool = False):
        """Fit ascending Cs (warm-started per fold) on each fold's train rows; held-out nats
        per C averaged over the folds [len(Cs)] (NaN where the path stopped early, see
        ``patience``), and the fitted model of the first best C when ``keep_best`` (one fold).
        ``folds``: [(X_train, y_train, X_heldout, y_heldout)], already scaled."""
        models = [LogisticRegression(C=Cs[0], max_iter=self.max_iter, warm_start=True) for _ in folds]
        losses, best, best_j = np.full(len(Cs), np.nan), None, 0
        for j, C in enumerate(Cs):
            fold_losses = []
            for lr, (Xtr, ytr, Xva, yva) in zip(models, folds):
                lr.set_params(C=C)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # reported after the final fit
                    lr.fit(Xtr, ytr)
                fold_losses.append(log_loss_nats(self._expand(lr.predict_proba(Xva), lr.classes_), yva))
            losses[j] = float(np.mean(fold_losses))
            if j == 0 or losses[j] < losses[best_j]:
                best_j = j
                if keep_best:
                    best = copy.deepcopy(models[0])
            if self.patience and j - best_j >= self.patience:
                break  # held-out loss rose for `patience` grid points in a row: larger C only overfits more
        return losses, best

    def _cv_select(self, X: np.ndarray, y: np.ndarray, Cs: list[float]) -> tuple[float | None, dict]:
        counts = np.bincount(y, minlength=self.n_classes)
        present = counts[counts > 0]
        n_splits = int(min(self.cv, present.min()))
        info: dict[str, Any] = {"requested_cv": int(self.cv), "n_splits": n_splits, "fallback": None,
                                "scores": {}, "C": None, "at_grid_edge": None}
        if len(Cs) == 1 or n_splits < 2:  # use the smallest (most regularised) C
            info["fallback"] = ("only one C in the grid" if len(Cs) == 1 else
                                f"smallest class has {int(present.min())} training row(s); cannot "
                                f"cross-validate, using the smallest C={Cs[0]}")
            info["n_splits"], info["C"] = 0, Cs[0]
            return None, info
        if n_splits < self.cv:
            info["fallback"] = (f"smallest class has {int(present.min())} training rows; "
                                f"using {n_splits} folds instead of {self.cv}")
        folds = []
        for tr, va in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed).split(X, y):
            scaler = StandardScaler().fit(X[tr])
            folds.append((scaler.transform(X[tr]), y[tr], scaler.transform(X[va]), y[va]))
        losses, _ = self._path(folds, Cs)
        return losses, info

    def fit(self, X, y, X_dev=None, y_dev=None) -> "LinearProbe":
        X, y = check_xy(X, y, self.n_classes, kind=self.input_kind, owner="LinearProbe")
        if X_dev is not None:
            X_dev, y_dev = check_xy(X_dev, y_dev, self.n_classes, what="dev", kind=self.input_kind,
                                    owner="LinearProbe")
            if X_dev.shape[1] != X.shape[1]:
                raise ValueError(f"dev has {X_dev.shape[1]} features but train has {X.shape[1]}")
        X = X.astype(self.dtype, copy=False)
        X_dev = None if X_dev is None else X_dev.astype(self.dtype, copy=False)
        with _blas_threads(self.num_threads):
            return self._fit(X, y, X_dev, y_dev)

    def _fit(self, X: np.ndarray, y: np.ndarray, X_dev=None, y_dev=None) -> "LinearProbe":
        Cs = sorted(float(c) for c in self.Cs)
        if not Cs or min(Cs) <= 0:
            raise ValueError(f"Cs must be a non-empty sequence of positive floats, got {self.Cs!r}")
        self.classes_ = np.arange(self.n_classes)
        self.present_classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        missing = np.setdiff1d(self.classes_, self.present_classes_)
        self.smoothing_ = succession_weight(y, self.n_classes)
        if len(missing):
            logger.debug("LinearProbe: classes %s absent from the %d training rows; mixing predictions "
                         "with uniform by the rule of succession (weight %.3g)", missing.tolist(), len(y),
                         self.smoothing_)
        self.scaler_ = StandardScaler().fit(X)
        if len(self.present_classes_) < 2:
            self.model_, self.C_, self.converged_ = None, float("nan"), True
            fallback = f"only class {int(y[0])} in the training rows; constant model"
            self.cv_info_ = {"requested_cv": int(self.cv), "n_splits": 0, "scores": {}, "C": None,
                             "at_grid_edge": None, "fallback": fallback}
            self.selected_params_ = {"C": None}
            self.selection_ = selection_summary("none", {"C": Cs}, [], {}, fallback=fallback)
            return self
        Z = self.scaler_.transform(X)
        if X_dev is not None:
            losses, self.model_ = self._path([(Z, y, self.scaler_.transform(X_dev), y_dev)], Cs, keep_best=True)
            source, self.cv_info_ = "dev", {"requested_cv": int(self.cv), "n_splits": 0, "fallback": None}
        else:
            losses, self.cv_info_ = self._cv_select(X, y, Cs)
            source, self.model_ = ("cv", None) if losses is not None else ("none", None)
        if losses is None:
            self.C_ = Cs[0]
            scores = []
        else:
            best = int(np.nanargmin(losses))  # first minimum = smallest C on ties
            self.C_ = float(Cs[best])
            scores = [{"C": C, "log_loss": float(m)} for C, m in zip(Cs, losses) if m == m]  # evaluated points
        if self.model_ is None:  # CV or no selection: fit all train rows with the chosen C
            self.model_ = LogisticRegression(C=self.C_, max_iter=self.max_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # reported below instead
                self.model_.fit(Z, y)
        self.selected_params_ = {"C": self.C_}
        self.selection_ = selection_summary(source, {"C": Cs}, scores, self.selected_params_,
                                            fallback=self.cv_info_["fallback"])
        edge = self.selection_["at_grid_edge"]
        self.cv_info_.update(scores={s["C"]: s["log_loss"] for s in scores}, C=self.C_, source=source,
                             at_grid_edge=(None if not edge else "low" if self.C_ == Cs[0] else "high"))
        self.converged_ = bool(np.max(self.model_.n_iter_) < self.max_iter)
        if not self.converged_:
            logger.warning("LinearProbe: lbfgs did not converge in max_iter=%d (C=%g)", self.max_iter, self.C_)
        logger.debug("LinearProbe: n=%d d=%d C=%g by %s, edge=%s, fallback=%s", len(y), X.shape[1], self.C_,
                     source, edge, self.cv_info_["fallback"])
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = check_features(X, self.input_kind, "LinearProbe", "predict", finite=False).astype(self.dtype, copy=False)
        with _blas_threads(self.num_threads):
            return self._predict_proba(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            proba = np.zeros((len(X), self.n_classes))  # [n, K]
            proba[:, self.present_classes_[0]] = 1.0
        else:
            proba = self._expand(self.model_.predict_proba(self.scaler_.transform(X)), self.model_.classes_)
        return smooth_absent(proba, self.smoothing_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
