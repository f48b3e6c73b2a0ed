"""Probe classifiers q(y|h) on plain arrays, following scikit-learn conventions.

Start at :func:`make_probe`: it builds a :class:`LinearProbe` (standardised features,
multinomial logistic regression, C chosen by cross-validated log-loss on the training
rows) or an :class:`MLPProbe` (one hidden layer, early stopping on a dev split). Both
take ``n_classes`` explicitly, so ``predict_proba`` always returns ``n_classes`` columns
(``classes_ == arange(n_classes)``) even when a class is absent from the rows a probe
was fitted on. Labels must be integers in ``[0, n_classes)``.

Conventions (scikit-learn): parameters are stored unchanged by ``__init__`` and
validated in ``fit``; learned state lives in attributes ending in ``_``; ``fit`` returns
``self``. A probe only ever sees the rows handed to ``fit`` (it never reaches for other
splits); :func:`assert_disjoint` checks that id arrays of splits do not overlap.

torch is imported lazily by :class:`MLPProbe`, so importing this module (e.g. for the
linear probe or from plotting code) does not import torch. Both probes run single-threaded
by default (``num_threads=1``); see their docstrings for the measured reason.

At ~430 lines this module is longer than the house 300: the two probe classes share input
validation, the class-column convention and the factory, and the module layout of
``probing`` was fixed up front; ``MLPProbe`` is the piece to move out if it grows.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

__all__ = ["LinearProbe", "MLPProbe", "PROBES", "make_probe", "register_probe", "assert_disjoint"]

# Probability floor before any log (re-exported as estimates.EPS): one example costs at
# most -log2(EPS) ~ 39.86 bits.
EPS = 1e-12


def _check_xy(X, y, n_classes: int, what: str = "training") -> tuple[np.ndarray, np.ndarray]:
    """Validate features [n, d] and integer labels [n] in [0, n_classes)."""
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{what} features must be 2-D [n, d], got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{what} labels must be 1-D with len(X)={len(X)} rows, got shape {y.shape}")
    if len(y) == 0:
        raise ValueError(f"{what} split is empty: a probe needs at least one row")
    if not np.issubdtype(y.dtype, np.integer):
        if np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{what} labels must be integers in [0, {n_classes}), got dtype {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise ValueError(
            f"{what} label {y[bad][0].item()!r} is outside [0, {n_classes}); "
            "map labels to 0..n_classes-1 before probing"
        )
    if not np.isfinite(X).all():
        raise ValueError(f"{what} features contain NaN or inf")
    return X, y.astype(np.int64)


def _log_loss_nats(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean -ln q(y|x) with probabilities clipped at ``EPS`` (CV model selection only)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0))))


def _blas_threads(n: int | None):
    """Limit BLAS/OpenMP thread pools to ``n`` threads inside the block (None: no limit).
    threadpoolctl comes with scikit-learn (a hard dependency of it)."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


class LinearProbe:
    """StandardScaler + multinomial logistic regression; C chosen by stratified K-fold
    cross-validation of log-loss on the training rows only.

    Parameters
    ----------
    n_classes: number of label classes K; ``predict_proba`` returns K columns.
    Cs: inverse L2 strengths to try (scikit-learn's ``C``, which multiplies the *sum* of
        the losses, so the same C regularises less as n grows). Ties prefer smaller C.
        The grid reaches down to 1e-4 on purpose: with d ~ 600 and n ~ 1000-3000, a
        shuffled-label control with C >= 0.01 overfits to -0.17..-0.23 bits, while C=1e-4
        (close to the prior-only model) gives ~0 bits; cheap, as small C converges fast.
    cv: requested number of folds. With a class of only m < cv training rows, m folds are
        used; with m < 2 no CV is possible and the smallest C (the most regularised, close
        to the prior-only model) is used: with a handful of rows, standardised features
        are erratic and a weakly regularised fit is wildly overconfident. ``cv_info_``
        records which.
    max_iter: lbfgs iteration cap per fit (folds are warm-started along ascending C).
    seed: shuffles the folds.
    num_threads: BLAS/OpenMP threads while fitting and predicting (threadpoolctl; None
        leaves them alone). Default 1: lbfgs on probe-sized problems makes many small
        BLAS calls, and with multi-threaded OpenBLAS on a busy 2-core machine a fit
        (n=1000, d=300, 6 Cs x 3 folds) took 1.9 s instead of 0.12 s.

    Fitted attributes: ``classes_`` (arange(K)), ``present_classes_`` (classes seen in
    ``fit``), ``C_``, ``cv_info_`` (dict: ``n_splits``, ``requested_cv``, ``fallback``
    (reason or None), ``scores`` {C: mean held-out log-loss in nats}, ``C``,
    ``at_grid_edge`` ("low" | "high" | None: a chosen C on the grid's edge hints that the
    grid should be wider)),
    ``scaler_``, ``model_`` (None when only one class was seen), ``smoothing_``,
    ``converged_``, ``n_features_in_``.

    Classes absent from the training rows (tiny splits, early MDL blocks): the fitted
    model would give them probability 0, which is no valid code (its cost would be set
    by the clipping floor alone, ~39.9 bits per example). Instead the prediction is
    mixed with the uniform distribution by Laplace's rule of succession,
    ``q = (n p + 1) / (n + K)`` (``smoothing_ = K / (n + K)``, otherwise 0); with one
    class seen the model is the rule of succession itself. ``fit`` logs it.
    """

    name = "linear"

    def __init__(self, n_classes: int, Cs: Sequence[float] = (1e-4, 1e-3, 0.01, 0.1, 1, 10), cv: int = 3,
                 max_iter: int = 1000, seed: int = 0, num_threads: int | None = 1):
        self.n_classes = n_classes
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.seed = seed
        self.num_threads = num_threads

    def _cv_select(self, X: np.ndarray, y: np.ndarray, Cs: list[float]) -> tuple[float, dict]:
        counts = np.bincount(y, minlength=self.n_classes)
        present = counts[counts > 0]
        n_splits = int(min(self.cv, present.min())) if len(present) >= 2 else 0
        info: dict[str, Any] = {"requested_cv": int(self.cv), "n_splits": n_splits, "fallback": None,
                                "scores": {}, "C": None, "at_grid_edge": None}
        if len(Cs) == 1 or n_splits < 2:  # use the smallest (most regularised) C
            info["fallback"] = ("only one C in the grid" if len(Cs) == 1 else
                                f"smallest class has {int(present.min())} training row(s); cannot "
                                f"cross-validate, using the smallest C={Cs[0]}")
            info["n_splits"], info["C"] = 0, Cs[0]
            logger.info("LinearProbe: %s", info["fallback"])
            return info["C"], info
        if n_splits < self.cv:
            info["fallback"] = (f"smallest class has {int(present.min())} training rows; "
                                f"using {n_splits} folds instead of {self.cv}")
            logger.info("LinearProbe: %s", info["fallback"])
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed)
        losses = np.zeros((n_splits, len(Cs)))
        for f, (tr, va) in enumerate(folds.split(X, y)):
            scaler = StandardScaler().fit(X[tr])
            Xtr, Xva = scaler.transform(X[tr]), scaler.transform(X[va])
            lr = LogisticRegression(C=Cs[0], max_iter=self.max_iter, warm_start=True)
            for j, C in enumerate(Cs):  # ascending C, warm-started
                lr.set_params(C=C)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    lr.fit(Xtr, y[tr])
                losses[f, j] = _log_loss_nats(self._expand(lr.predict_proba(Xva), lr.classes_), y[va])
        mean = losses.mean(axis=0)
        best = int(np.argmin(mean))  # first minimum = smallest C on ties
        info["scores"] = {float(C): float(m) for C, m in zip(Cs, mean)}
        info["C"] = float(Cs[best])
        info["at_grid_edge"] = "low" if best == 0 else "high" if best == len(Cs) - 1 else None
        if info["at_grid_edge"]:
            logger.info("LinearProbe: chosen C=%g is at the %s edge of the grid %s", info["C"],
                        info["at_grid_edge"], Cs)
        return info["C"], info

    def _expand(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Place the columns of the fitted classes into K columns (absent classes: 0)."""
        out = np.zeros((len(proba), self.n_classes))  # [n, K]
        out[:, classes] = proba
        return out

    def fit(self, X, y) -> "LinearProbe":
        with _blas_threads(self.num_threads):
            return self._fit(*_check_xy(X, y, self.n_classes))

    def _fit(self, X: np.ndarray, y: np.ndarray) -> "LinearProbe":
        Cs = sorted(float(c) for c in self.Cs)
        if not Cs or min(Cs) <= 0:
            raise ValueError(f"Cs must be a non-empty sequence of positive floats, got {self.Cs!r}")
        self.classes_ = np.arange(self.n_classes)
        self.present_classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        missing = np.setdiff1d(self.classes_, self.present_classes_)
        self.smoothing_ = self.n_classes / (len(y) + self.n_classes) if len(missing) else 0.0
        if len(missing):
            logger.info("LinearProbe: classes %s absent from the %d training rows; mixing predictions "
                        "with uniform by the rule of succession (weight %.3g)", missing.tolist(), len(y),
                        self.smoothing_)
        self.scaler_ = StandardScaler().fit(X)
        if len(self.present_classes_) < 2:
            self.model_ = None
            self.C_ = float("nan")
            self.converged_ = True
            self.cv_info_ = {"requested_cv": int(self.cv), "n_splits": 0, "scores": {}, "C": None,
                             "at_grid_edge": None,
                             "fallback": f"only class {int(y[0])} in the training rows; constant model"}
            return self
        self.C_, self.cv_info_ = self._cv_select(X, y, Cs)
        self.model_ = LogisticRegression(C=self.C_, max_iter=self.max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported below instead
            self.model_.fit(self.scaler_.transform(X), y)
        self.converged_ = bool(np.max(self.model_.n_iter_) < self.max_iter)
        if not self.converged_:
            logger.warning("LinearProbe: lbfgs did not converge in max_iter=%d (C=%g)", self.max_iter, self.C_)
        logger.debug("LinearProbe: n=%d d=%d C=%g cv=%s", len(y), X.shape[1], self.C_, self.cv_info_)
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        with _blas_threads(self.num_threads):
            return self._predict_proba(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            proba = np.zeros((len(X), self.n_classes))  # [n, K]
            proba[:, self.present_classes_[0]] = 1.0
        else:
            proba = self._expand(self.model_.predict_proba(self.scaler_.transform(X)), self.model_.classes_)
        return (1.0 - self.smoothing_) * proba + self.smoothing_ / self.n_classes

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads, then restore the previous count."""
    import torch

    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MLPProbe:
    """One-hidden-layer MLP (Linear -> ReLU -> Linear) on standardised features, trained
    with Adam on cross-entropy and early-stopped on a dev split.

    ``fit(X, y, X_dev=None, y_dev=None)``: the best-dev-loss weights are restored. Without
    a dev split, 10% of the training rows (at least 1, stratified when possible) are
    carved off with ``seed`` and their indices kept in ``dev_indices_``; with fewer than
    2 rows no dev split is possible and the MLP trains for ``max_epochs``
    (``dev_source_ == "none"``). Deterministic for a seed on CPU: initialisation runs
    under a forked torch RNG seeded with ``seed`` (global RNG state untouched) and
    minibatch order comes from ``numpy.random.default_rng(seed)``.

    ``num_threads``: torch intra-op threads while fitting and predicting (restored
    afterwards; None leaves torch's setting). Default 1: probe-sized MLPs gain nothing
    from more, it fixes the reduction order, and it sidesteps a clash between the OpenMP
    runtimes of scikit-learn and torch (importing scikit-learn before torch made the same
    fit ~60x slower on a 2-core machine).

    No model selection over ``weight_decay``/``hidden``: on wide inputs with a weak signal
    (d=600, n=3000, Gaussian classes with 0.49 bits) the defaults stop after one epoch at
    ~0.01 bits where the linear probe finds 0.36; ``weight_decay=1e-2`` gives ~0.28.
    Tune them on dev before reading an MLP curve.

    Fitted attributes: ``classes_``, ``model_`` (torch module), ``mean_``/``scale_``
    (standardisation from the training rows), ``dev_source_`` ("given" | "carved" |
    "none"), ``dev_indices_`` (carved rows, else None), ``train_loss_curve_`` and
    ``dev_loss_curve_`` (mean nats per epoch), ``best_epoch_`` (1-based), ``n_epochs_``,
    ``stopped_early_``, ``n_features_in_``.
    """

    name = "mlp"

    def __init__(self, n_classes: int, hidden: int = 256, lr: float = 1e-3, weight_decay: float = 0.0,
                 max_epochs: int = 200, patience: int = 10, batch_size: int = 256, seed: int = 0,
                 device: str = "cpu", num_threads: int | None = 1):
        self.n_classes = n_classes
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.num_threads = num_threads

    def _carve_dev(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        n = len(y)
        if n < 2:
            return None
        n_dev = max(1, int(round(0.1 * n)))
        idx = np.arange(n)
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 and n_dev >= len(counts[counts > 0]) else None
        tr, dev = train_test_split(idx, test_size=n_dev, random_state=self.seed, stratify=stratify)
        return np.sort(tr), np.sort(dev)

    def _transform(self, X: np.ndarray):
        import torch

        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return torch.as_tensor(Z, dtype=torch.float32, device=self.device)  # [n, d]

    def fit(self, X, y, X_dev=None, y_dev=None) -> "MLPProbe":
        X, y = _check_xy(X, y, self.n_classes)
        self.classes_ = np.arange(self.n_classes)
        self.n_features_in_ = X.shape[1]
        self.dev_indices_ = None
        if X_dev is not None:
            X_dev, y_dev = _check_xy(X_dev, y_dev, self.n_classes, what="dev")
            self.dev_source_ = "given"
        else:
            split = self._carve_dev(y)
            if split is None:
                self.dev_source_ = "none"
            else:
                tr, self.dev_indices_ = split
                X_dev, y_dev = X[self.dev_indices_], y[self.dev_indices_]
                X, y = X[tr], y[tr]
                self.dev_source_ = "carved"
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        with _torch_threads(self.num_threads):
            self._train(X, y, X_dev, y_dev)
        logger.debug("MLPProbe: n=%d best_epoch=%d/%d dev=%s", len(y), self.best_epoch_, self.n_epochs_,
                     self.dev_source_)
        return self

    def _train(self, X: np.ndarray, y: np.ndarray, X_dev: np.ndarray | None, y_dev: np.ndarray | None) -> None:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = nn.Sequential(nn.Linear(X.shape[1], self.hidden), nn.ReLU(),
                                        nn.Linear(self.hidden, self.n_classes)).to(self.device)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        Xt, yt = self._transform(X), torch.as_tensor(y, device=self.device)
        if X_dev is not None:
            Xd, yd = self._transform(X_dev), torch.as_tensor(y_dev, device=self.device)
        rng = np.random.default_rng(self.seed)
        self.train_loss_curve_, self.dev_loss_curve_ = [], []
        best, best_state, bad = np.inf, None, 0
        self.best_epoch_, self.stopped_early_ = 0, False
        for epoch in range(1, self.max_epochs + 1):
            self.model_.train()
            order = torch.as_tensor(rng.permutation(len(y)), device=self.device)
            total = 0.0
            for start in range(0, len(y), self.batch_size):
                b = order[start:start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(self.model_(Xt[b]), yt[b])
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.train_loss_curve_.append(total / len(y))
            if X_dev is None:
                self.best_epoch_ = epoch
                continue
            self.model_.eval()
            with torch.no_grad():
                dev_loss = float(loss_fn(self.model_(Xd), yd))
            self.dev_loss_curve_.append(dev_loss)
            if dev_loss < best:
                best, bad, self.best_epoch_ = dev_loss, 0, epoch
                best_state = copy.deepcopy(self.model_.state_dict())
            else:
                bad += 1
                if bad >= self.patience:
                    self.stopped_early_ = True
                    break
        self.n_epochs_ = epoch
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()

    def predict_proba(self, X) -> np.ndarray:
        import torch

        with _torch_threads(self.num_threads), torch.no_grad():
            logits = self.model_(self._transform(X)).double()  # [n, K]
            return torch.softmax(logits, dim=1).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# name -> probe class; every class takes (n_classes, ..., seed=...) keyword parameters.
PROBES: dict[str, Callable[..., Any]] = {"linear": LinearProbe, "mlp": MLPProbe}


def register_probe(name: str, cls: Callable[..., Any]) -> None:
    """Add a probe family to :func:`make_probe` (e.g. a transformer probe)."""
    if name in PROBES:
        raise ValueError(f"probe {name!r} is already registered ({PROBES[name]!r})")
    PROBES[name] = cls


def make_probe(name: str, n_classes: int, seed: int = 0, **kw):
    """Build an unfitted probe: ``make_probe("linear", 3, seed=1, Cs=(0.1, 1))``.

    ``functools.partial(make_probe, "mlp", K, hidden=64)`` is a probe factory
    (``factory(seed) -> probe``) as the estimators in ``estimates`` and ``mdl`` expect.
    """
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {sorted(PROBES)}")
    return PROBES[name](n_classes=n_classes, seed=seed, **kw)


def assert_disjoint(*id_arrays, names: Sequence[str] | None = None) -> None:
    """Raise ValueError if any two id arrays share an id (e.g. train/dev/test example ids).

    ``assert_disjoint(train_ids, dev_ids, test_ids, names=("train", "dev", "test"))``.
    """
    names = list(names) if names is not None else [f"split{i}" for i in range(len(id_arrays))]
    if len(names) != len(id_arrays):
        raise ValueError(f"got {len(id_arrays)} id arrays but {len(names)} names: {names}")
    sets = [set(np.asarray(a).ravel().tolist()) for a in id_arrays]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            common = sets[i] & sets[j]
            if common:
                example = sorted(common, key=repr)[0]
                raise ValueError(
                    f"splits {names[i]!r} and {names[j]!r} share {len(common)} id(s), e.g. {example!r}; "
                    "a probe must never be fitted and scored on the same rows: re-split the data"
                )
