"""The MLP probe: one hidden layer on standardised vectors, hyperparameters chosen on dev.

:class:`MLPProbe` trains Linear -> ReLU -> Linear with Adam on cross-entropy, early-stopped
on a dev split, once per point of a small grid over ``hidden`` (width), ``weight_decay``
and ``lr``, and keeps the network with the lowest dev log-loss. torch is imported only
inside ``fit``/``predict_proba``. Built through ``make_probe("mlp", K, seed)``.
"""

from __future__ import annotations

import logging

import numpy as np

from .selection import smooth_absent, succession_weight
from .sequences import check_features, check_xy
from .training import GridSearched, carve_dev, seeded, torch_threads, train_early_stopped

logger = logging.getLogger(__name__)

__all__ = ["MLPProbe", "carve_dev"]


class MLPProbe(GridSearched):
    """One-hidden-layer MLP on standardised features, selected on dev by log-loss.

    ``fit(X, y, X_dev=None, y_dev=None)``: every grid point trains a fresh network on the
    train rows with Adam, early-stopped on dev (best-dev weights restored); the point with
    the lowest dev log-loss is kept. Without a dev split, 10% of the training rows (at
    least 1, stratified when possible, drawn with ``seed``) are carved off for both jobs
    and kept in ``dev_indices_``; with fewer than 2 rows there is no dev split, the first
    grid value of every parameter is used and it trains for ``max_epochs``.

    Parameters
    ----------
    hidden, lr, weight_decay: a value pins that hyperparameter (it is not searched);
        None searches ``grid`` for it (or uses 256 / 1e-3 / 0.0 if the grid lacks it).
    grid: dict of value lists over ``hidden``, ``weight_decay`` and ``lr``
        (``parse_probe_grid("mlp", "hidden=64,256;weight_decay=0,0.01")`` builds one);
        None is :attr:`DEFAULT_GRID`, weight decay (0, 0.01, 0.1) x lr (3e-3, 1e-3), 6
        points: weight decay matters most (on wide inputs with a weak signal, d=600,
        n=3000, a single unregularised setting stops after one epoch at ~0.01 bits where
        the linear probe finds 0.36; 0.1 is chosen there), and lr=3e-3 beat 1e-3 and 1e-2
        on a noisy XOR (0.44 vs 0.42 / 0.43 bits, true 0.53) while converging sooner.
        Without any dev rows the first value of each list is used.
    max_epochs, patience, batch_size: early stopping; ``patience`` epochs without a dev
        improvement stop a run.
    seed: initialisation (forked torch RNG, the global RNG is untouched) and minibatch
        order (``numpy.random.default_rng(seed)``): deterministic for a seed on CPU.
    num_threads: torch intra-op threads while fitting and predicting (restored
        afterwards; None leaves torch's setting). Default 1: probe-sized MLPs gain nothing
        from more, it fixes the reduction order, and it sidesteps a clash between the
        OpenMP runtimes of scikit-learn and torch (importing scikit-learn before torch
        made the same fit ~60x slower on a 2-core machine).

    Fitted attributes: ``classes_``, ``model_`` (torch module), ``mean_``/``scale_``
    (standardisation from the training rows), ``selected_params_`` (``hidden``, ``lr``,
    ``weight_decay``), ``selection_`` (``source`` "dev" | "carved" | "none", ``scores``: per
    grid point its params, ``log_loss`` (best dev nats), ``best_epoch``, ``n_epochs``;
    ``at_grid_edge``), ``dev_source_`` ("given" | "carved" | "none"), ``dev_indices_``
    (carved rows, else None), and for the chosen network ``train_loss_curve_``,
    ``dev_loss_curve_`` (mean nats per epoch), ``best_epoch_`` (1-based), ``n_epochs_``,
    ``stopped_early_``; ``n_features_in_``; ``smoothing_`` (classes absent from the rows
    fitted on: predictions mixed with uniform by the rule of succession, as every probe and
    the null model do, ``selection.succession_weight``).
    """

    name = "mlp"
    input_kind = "vector"
    DEFAULT_GRID = {"weight_decay": (0.0, 0.01, 0.1), "lr": (3e-3, 1e-3)}  # 6 points
    FALLBACK = {"hidden": 256, "lr": 1e-3, "weight_decay": 0.0}
    # grid key -> (type, check, what the check means); read by parse_probe_grid
    GRID_KEYS = {"hidden": (int, lambda v: v >= 1, "an integer >= 1"),
                 "weight_decay": (float, lambda v: v >= 0, "a float >= 0"),
                 "lr": (float, lambda v: v > 0, "a float > 0")}

    def __init__(self, n_classes: int, hidden: int | None = None, lr: float | None = None,
                 weight_decay: float | None = None, grid: dict | None = None, max_epochs: int = 200,
                 patience: int = 10, batch_size: int = 256, seed: int = 0, device: str = "cpu",
                 num_threads: int | None = 1):
        self.n_classes = n_classes
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.grid = grid
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.num_threads = num_threads

    def _transform(self, X: np.ndarray):
        import torch

        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return torch.as_tensor(Z, dtype=torch.float32, device=self.device)  # [n, d]

    def fit(self, X, y, X_dev=None, y_dev=None) -> "MLPProbe":
        X, y = check_xy(X, y, self.n_classes, kind=self.input_kind, owner="MLPProbe")
        searched, points = self._points()
        self.classes_ = np.arange(self.n_classes)
        self.n_features_in_ = X.shape[1]
        if X_dev is not None:
            X_dev, y_dev = check_xy(X_dev, y_dev, self.n_classes, what="dev", kind=self.input_kind,
                                    owner="MLPProbe")
        X, y, X_dev, y_dev, points = self._dev_rows(X, y, X_dev, y_dev, points)
        self.smoothing_ = succession_weight(y, self.n_classes)  # classes absent from the rows fitted on
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self._search(X, y, X_dev, y_dev, searched, points)
        return self

    def _train(self, X, y, X_dev, y_dev, params: dict):
        import torch
        from torch import nn

        with seeded(self.seed, self.device):
            model = nn.Sequential(nn.Linear(X.shape[1], int(params["hidden"])), nn.ReLU(),
                                  nn.Linear(int(params["hidden"]), self.n_classes)).to(self.device)
        loss_fn = nn.CrossEntropyLoss()
        Xt, yt = self._transform(X), torch.as_tensor(y, device=self.device)
        dev_loss = None
        if X_dev is not None:
            Xd, yd = self._transform(X_dev), torch.as_tensor(y_dev, device=self.device)
            dev_loss = lambda: loss_fn(model(Xd), yd)  # noqa: E731
        info = train_early_stopped(
            model, len(y), lambda b: loss_fn(model(Xt[b]), yt[b]), dev_loss, lr=float(params["lr"]),
            weight_decay=float(params["weight_decay"]), max_epochs=self.max_epochs, patience=self.patience,
            batch_size=self.batch_size, rng=np.random.default_rng(self.seed))
        return model, info

    def predict_proba(self, X) -> np.ndarray:
        import torch

        X = check_features(X, self.input_kind, "MLPProbe", "predict")
        with torch_threads(self.num_threads), torch.no_grad():
            logits = self.model_(self._transform(X)).double()  # [n, K]
            return smooth_absent(torch.softmax(logits, dim=1).cpu().numpy(), self.smoothing_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

