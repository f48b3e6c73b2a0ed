"""The transformer probe: a small transformer classifier over a layer's whole sequence.

The paper's estimator of I(h;y) was a 6-layer transformer classifier reading every hidden
state of a layer, not one vector. :class:`TransformerProbe` is that family, sized for
probing: input projection d -> ``width``, learned positions, ``num_layers`` encoder
layers, a readout (the state at the prediction position, or attention pooling) and a
linear classifier, trained with Adam and early-stopped on dev, over a small grid of
learning rate and weight decay chosen by dev log-loss. It reads
:class:`~.sequences.Sequences` (``input_kind = "sequence"``), so ``probe_information``,
``shuffled_label_control``, ``pvi`` and ``online_codelength`` take it unchanged. A study
sets its depth, width, initialisation, input and readout once through its ``Options``
(:class:`~.options.TransformerProbeOptions`, the ``--probe-*`` flags of ``mi``).

``encoder_factory`` swaps the built-in encoder layers for any module
``(h [b, s, width], key_mask [b, s] bool, True at real tokens) -> h [b, s, width]``, e.g.
copies of a backbone's own top layers; then the states go in as they are (no
standardisation, no projection, no added positions unless asked for).
torch is imported only inside ``fit``/``predict_proba`` (the network is in :mod:`.nets`).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from .options import TransformerProbeOptions
from .selection import smooth_absent, succession_weight
from .sequences import check_features, check_xy
from .training import GridSearched, seeded, torch_threads, train_early_stopped  # torch is imported inside them

logger = logging.getLogger(__name__)

__all__ = ["TransformerProbe"]


class TransformerProbe(GridSearched):
    """Transformer classifier over :class:`~.sequences.Sequences`, selected on dev.

    ``fit(X, y, X_dev=None, y_dev=None)`` with ``X``/``X_dev`` Sequences: every grid point
    trains a fresh network on the train sequences (Adam, minibatches, early stopping on
    dev, best-dev weights restored); the point with the lowest dev log-loss is kept.
    Without dev, 10% of the train sequences are carved off as dev (``dev_indices_``), as
    :class:`~.mlp.MLPProbe` does.

    Parameters
    ----------
    width: model width; the inputs are projected d -> width. None: no projection
        (width = d). With ``encoder_factory`` it must be None or d (no projection is used).
    num_layers, num_heads, ffn, dropout: the built-in pre-norm encoder: ``num_layers``
        ``nn.TransformerEncoderLayer`` with ``num_heads`` heads (must divide the width),
        feed-forward size ``ffn`` (None: 2 x width).
    positional: add learned position embeddings (``max_positions`` of them; a longer
        sequence is an error). None: on, except with ``encoder_factory``.
    readout: "position" (the state at each sequence's ``readout`` index) or "attention"
        (learned attention pooling over the real tokens).
    lr, weight_decay: a value pins it; None searches ``grid`` or falls back to 1e-3 / 0.0.
        The default grid, :attr:`DEFAULT_GRID`, is lr (1e-3, 3e-4) only: on CPU (one
        thread) an epoch over 2000 sequences of ~20 tokens with d=384, width 128, costs
        ~1.7 s, so every grid point is a 15-40 s training run; widen it on a GPU.
    grid: dict of value lists over ``lr`` and ``weight_decay``
        (``parse_probe_grid("transformer", "lr=1e-3,3e-4")``).
    max_epochs, patience, batch_size: training and early stopping (``patience`` epochs
        without a dev improvement stop a run).
    min_steps: no early stop before this many optimizer steps, and training goes on past
        ``max_epochs`` until they are taken. On small data an epoch is a few steps, and the
        dev loss can plateau for ~100 steps before it drops (an order task with 90
        sequences stopped at epoch 6 of a plateau with 0 bits; learned it at ~epoch 40).
        300 steps are ~5 epochs of 2000 sequences, so large fits are unaffected.
    standardize: standardise each input feature by the train tokens' mean/std. None: on,
        except with ``encoder_factory`` (pretrained layers expect the raw states).
    encoder_factory: callable ``() -> nn.Module`` mapping ``(h [b, s, width], key_mask
        [b, s]) -> h [b, s, width]``; called once per trained network (return a fresh copy,
        e.g. ``copy.deepcopy`` of backbone layers), its parameters are trained with the rest.
    seed: initialisation, dropout (a forked torch RNG, global state untouched) and
        minibatch order: deterministic for a seed on CPU.
    device, num_threads: where to train; torch intra-op threads (default 1, as MLPProbe).

    Fitted attributes: ``classes_``, ``model_`` (:class:`~.nets.SequenceClassifier`),
    ``mean_``/``scale_`` (None without standardisation), ``selected_params_`` (``lr``,
    ``weight_decay``), ``selection_`` (``source`` "dev" | "carved" | "none", ``scores``
    per grid point with ``log_loss``, ``best_epoch``, ``n_epochs``, ``n_steps``;
    ``at_grid_edge``),
    ``dev_source_``, ``dev_indices_``, the chosen network's ``train_loss_curve_``,
    ``dev_loss_curve_``, ``best_epoch_``, ``n_epochs_``, ``stopped_early_``;
    ``n_features_in_`` (d), ``max_length_`` (longest train/dev sequence).
    """

    name = "transformer"
    input_kind = "sequence"
    DEFAULT_GRID = {"lr": (1e-3, 3e-4)}  # 2 points: each is a full early-stopped training run
    FALLBACK = {"lr": 1e-3, "weight_decay": 0.0}
    GRID_KEYS = {"lr": (float, lambda v: v > 0, "a float > 0"),
                 "weight_decay": (float, lambda v: v >= 0, "a float >= 0")}
    READOUTS = TransformerProbeOptions.READOUTS
    Options = TransformerProbeOptions  # what a study sets once (--probe-layers, ...; see .options)

    def __init__(self, n_classes: int, width: int | None = 128, num_layers: int = 1, num_heads: int = 4,
                 ffn: int | None = None, dropout: float = 0.1, positional: bool | None = None,
                 max_positions: int = 512, readout: str = "position", lr: float | None = None,
                 weight_decay: float | None = None, grid: dict | None = None, max_epochs: int = 50,
                 patience: int = 5, min_steps: int = 300, batch_size: int = 32, standardize: bool | None = None,
                 encoder_factory: Callable | None = None, seed: int = 0, device: str = "cpu",
                 num_threads: int | None = 1):
        self.n_classes = n_classes
        self.width = width
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ffn = ffn
        self.dropout = dropout
        self.positional = positional
        self.max_positions = max_positions
        self.readout = readout
        self.lr = lr
        self.weight_decay = weight_decay
        self.grid = grid
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.standardize = standardize
        self.encoder_factory = encoder_factory
        self.seed = seed
        self.device = device
        self.num_threads = num_threads

    # -- settings ------------------------------------------------------------------------
    def _check_settings(self, d: int) -> None:
        if self.readout not in self.READOUTS:
            raise ValueError(f"readout={self.readout!r}; choose one of {self.READOUTS}")
        if self.encoder_factory is not None:
            if self.width not in (None, d):
                raise ValueError(f"with encoder_factory the states enter the given encoder unprojected, so "
                                 f"width must be None or d={d}, got width={self.width}")
            if not callable(self.encoder_factory):
                raise TypeError(f"encoder_factory must be a callable () -> nn.Module, got {self.encoder_factory!r}")
            return
        w = d if self.width is None else self.width
        if w % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the model width {w} "
                             f"({'d' if self.width is None else 'width'}); change num_heads or width")

    def _uses(self, flag: bool | None) -> bool:
        return (self.encoder_factory is None) if flag is None else bool(flag)

    def _check_lengths(self, X, what: str) -> None:
        if self._uses(self.positional) and X.max_length > self.max_positions:
            raise ValueError(f"{what} has a sequence of {X.max_length} tokens but max_positions="
                             f"{self.max_positions}; raise max_positions or truncate the sequences")

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X, y, X_dev=None, y_dev=None) -> "TransformerProbe":
        X, y = check_xy(X, y, self.n_classes, kind=self.input_kind, owner="TransformerProbe")
        self._check_settings(X.d)
        searched, points = self._points()
        self.classes_ = np.arange(self.n_classes)
        self.n_features_in_ = X.d
        if X_dev is not None:
            X_dev, y_dev = check_xy(X_dev, y_dev, self.n_classes, "dev", self.input_kind, "TransformerProbe")
            if X_dev.d != X.d:
                raise ValueError(f"dev sequences have d={X_dev.d} but train has d={X.d}")
        X, y, X_dev, y_dev, points = self._dev_rows(X, y, X_dev, y_dev, points)
        for part, what in ((X, "train"), (X_dev, "dev")):
            if part is not None:
                self._check_lengths(part, what)
        self.max_length_ = max(X.max_length, 0 if X_dev is None else X_dev.max_length)
        self.smoothing_ = succession_weight(y, self.n_classes)  # classes absent from the rows fitted on
        self.mean_, self.scale_ = X.token_moments() if self._uses(self.standardize) else (None, None)
        self._search(X, y, X_dev, y_dev, searched, points, ("n_steps",))
        return self

    def _build(self, d: int):
        from .nets import (  # torch: imported only when a probe fits
            BuiltinEncoder,
            SequenceClassifier,
        )

        if self.encoder_factory is not None:
            encoder, width = self.encoder_factory(), None
        else:
            width = self.width
            w = d if width is None else width
            encoder = BuiltinEncoder(w, self.num_layers, self.num_heads, self.ffn or 2 * w, self.dropout)
        return SequenceClassifier(d, self.n_classes, width, self._uses(self.positional), self.max_positions,
                                  encoder, self.readout, self.mean_, self.scale_).to(self.device)

    def _logits(self, model, X, idx=None):
        """Logits ``[len(idx), K]`` (model as is, no grad handling), in batches."""
        import torch

        idx = np.arange(len(X)) if idx is None else idx
        out = []
        for start in range(0, len(idx), max(self.batch_size, 256)):
            b = idx[start:start + max(self.batch_size, 256)]
            h, mask = X.pad_batch(b, device=self.device)  # [b, s, d], [b, s]
            out.append(model(h, mask, torch.as_tensor(X.readout[b], device=self.device)))
        return torch.cat(out)

    def _train(self, X, y, X_dev, y_dev, params: dict):
        import torch
        from torch import nn

        loss_fn = nn.CrossEntropyLoss()
        yt = torch.as_tensor(y, device=self.device)
        with seeded(self.seed, self.device):  # init, dropout: reproducible, global RNG untouched
            model = self._build(X.d)
            dev_loss = None
            if X_dev is not None:
                yd = torch.as_tensor(y_dev, device=self.device)
                dev_loss = lambda: loss_fn(self._logits(model, X_dev), yd)  # noqa: E731

            def batch_loss(b):
                h, mask = X.pad_batch(b, device=self.device)  # [b, s, d], [b, s]
                return loss_fn(model(h, mask, torch.as_tensor(X.readout[b], device=self.device)), yt[b])

            info = train_early_stopped(model, len(y), batch_loss, dev_loss, lr=float(params["lr"]),
                                       weight_decay=float(params["weight_decay"]), max_epochs=self.max_epochs,
                                       patience=self.patience, batch_size=self.batch_size,
                                       rng=np.random.default_rng(self.seed), min_steps=self.min_steps)
        return model, info

    # -- prediction ----------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        import torch

        X = check_features(X, self.input_kind, "TransformerProbe", "predict")
        if X.d != self.n_features_in_:
            raise ValueError(f"sequences have d={X.d} but the probe was fitted on d={self.n_features_in_}")
        self._check_lengths(X, "predict")
        with torch_threads(self.num_threads), torch.no_grad():
            self.model_.eval()
            proba = torch.softmax(self._logits(self.model_, X).double(), dim=1).cpu().numpy()  # [n, K]
        return smooth_absent(proba, self.smoothing_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
