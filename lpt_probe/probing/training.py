"""The training loop shared by the torch probes (MLP, transformer): Adam, minibatches,
early stopping on a dev split, best-dev weights restored.

Start at :func:`train_early_stopped`. Determinism: call it inside :func:`seeded` (a
forked torch RNG seeded with the probe's seed, so initialisation and dropout are
reproducible and the caller's global RNG state is untouched), with minibatch order from
a ``numpy.random.default_rng(seed)``. :func:`torch_threads` pins the intra-op thread
count. :class:`GridSearched` is what both probes share around it: the grid of settings
searched on dev, and the dev rows (given, or carved from the training rows). Importing this
module does not import torch; each function imports it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Callable

import numpy as np
from sklearn.model_selection import train_test_split

from .selection import expand_grid, selection_summary

logger = logging.getLogger(__name__)

__all__ = ["GridSearched", "carve_dev", "torch_threads", "seeded", "train_early_stopped"]


def carve_dev(y: np.ndarray, seed: int, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray] | None:
    """Sorted (train, dev) row indices with ``fraction`` of the rows (at least 1) as dev,
    stratified when every present class has >= 2 rows; None with fewer than 2 rows."""
    n = len(y)
    if n < 2:
        return None
    n_dev = max(1, int(round(fraction * n)))
    counts = np.bincount(y)
    present = counts[counts > 0]
    stratify = y if present.min() >= 2 and n_dev >= len(present) else None
    tr, dev = train_test_split(np.arange(n), test_size=n_dev, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(dev)


class GridSearched:
    """The grid search of a torch probe: a class sets ``DEFAULT_GRID``, ``FALLBACK`` and
    ``GRID_KEYS``, and holds ``grid``, ``seed`` and one attribute per grid key (``None``:
    searched; a value: pinned)."""

    DEFAULT_GRID: dict
    FALLBACK: dict
    GRID_KEYS: dict

    @classmethod
    def grid_kwargs(cls, grid: dict) -> dict:
        """Constructor keyword arguments for a parsed grid (see ``parse_probe_grid``)."""
        return {"grid": grid}

    def _points(self) -> tuple[dict, list[dict]]:
        """(searched grid, points): pinned scalars win over the grid, FALLBACK fills gaps."""
        grid = dict(self.DEFAULT_GRID if self.grid is None else self.grid)
        unknown = sorted(set(grid) - set(self.GRID_KEYS))
        if unknown:
            raise ValueError(f"{type(self).__name__} grid has unknown key(s) {unknown}; "
                             f"allowed: {sorted(self.GRID_KEYS)}")
        fixed = {k: getattr(self, k) for k in self.GRID_KEYS if getattr(self, k) is not None}
        searched = {k: list(v) for k, v in grid.items() if k not in fixed}
        base = {**{k: v for k, v in self.FALLBACK.items() if k not in searched}, **fixed}
        return searched, expand_grid(searched, base)

    def _dev_rows(self, X, y, X_dev, y_dev, points: list[dict]):
        """``(X, y, X_dev, y_dev, points)`` to fit on: a given (checked) dev split as is;
        else one carved from the training rows (``carve_dev``); else none, and only the first
        point (nothing to choose on). Sets ``dev_source_`` and ``dev_indices_``."""
        self.dev_indices_ = None
        if X_dev is not None:
            self.dev_source_ = "given"
            return X, y, X_dev, y_dev, points
        split = carve_dev(y, self.seed)
        if split is None:
            self.dev_source_ = "none"
            return X, y, None, None, points[:1]
        tr, self.dev_indices_ = split
        self.dev_source_ = "carved"
        return X[tr], y[tr], X[self.dev_indices_], y[self.dev_indices_], points

    def _search(self, X, y, X_dev, y_dev, searched: dict, points: list[dict], recorded: tuple = ()) -> None:
        """Train one probe per point (``self._train(X, y, X_dev, y_dev, params)`` returns the
        model and ``train_early_stopped``'s info) and keep the lowest dev loss: sets
        ``selected_params_``, ``model_``, the chosen fit's curves and ``selection_``. A
        point's score row holds ``log_loss``, ``best_epoch``, ``n_epochs`` and the info keys
        in ``recorded``."""
        with torch_threads(self.num_threads):
            best, scores = None, []
            for params in points:
                model, info = self._train(X, y, X_dev, y_dev, params)
                scores.append({**params, "log_loss": info["dev_loss"], "best_epoch": info["best_epoch"],
                               "n_epochs": info["n_epochs"], **{k: info[k] for k in recorded}})
                if best is None or (info["dev_loss"] is not None and info["dev_loss"] < best[2]["dev_loss"]):
                    best = (params, model, info)
        self.selected_params_, self.model_, info = best
        for key in ("train_loss_curve", "dev_loss_curve", "best_epoch", "n_epochs", "stopped_early"):
            setattr(self, key + "_", info[key])
        source = {"given": "dev", "carved": "carved", "none": "none"}[self.dev_source_]
        self.selection_ = selection_summary(source, searched, scores, self.selected_params_)
        logger.debug("%s: n=%d chose %s (best epoch %d/%d, %s dev), edge=%s", type(self).__name__, len(y),
                     self.selected_params_, self.best_epoch_, self.n_epochs_, self.dev_source_,
                     self.selection_["at_grid_edge"])


@contextlib.contextmanager
def torch_threads(n: int | None):
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


@contextlib.contextmanager
def seeded(seed: int, device: str = "cpu"):
    """Fork the torch RNG (CPU, plus the CUDA device in use) and seed it with ``seed``."""
    import torch

    dev = torch.device(device)
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def train_early_stopped(model, n_train: int, batch_loss: Callable, dev_loss: Callable | None, *, lr: float,
                        weight_decay: float, max_epochs: int, patience: int, batch_size: int,
                        rng: np.random.Generator, min_steps: int = 0) -> dict:
    """Train ``model`` with Adam; return its curves and restore the best-dev weights.

    ``batch_loss(idx) -> loss tensor`` for a numpy index array of training rows;
    ``dev_loss() -> float`` (mean nats on dev, evaluated in eval mode) or None to train
    for ``max_epochs`` without early stopping. Stops after ``patience`` epochs without a
    dev improvement, but never before ``min_steps`` optimizer steps, and keeps training
    past ``max_epochs`` until it has taken them: on small data an epoch is a handful of
    steps, and a transformer's dev loss can sit on a plateau for a hundred steps before
    it drops (90 sequences: ~40 epochs). Returns ``train_loss_curve``, ``dev_loss_curve`` (mean nats per
    epoch), ``best_epoch`` (1-based), ``n_epochs``, ``stopped_early`` and ``dev_loss``
    (best, or None). The model is left in eval mode.
    """
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_curve, dev_curve = [], []
    best, best_state, bad, best_epoch, stopped, epoch, steps = np.inf, None, 0, 0, False, 0, 0
    while epoch < max_epochs or (steps < min_steps and n_train > 0):
        epoch += 1
        model.train()
        order = rng.permutation(n_train)
        total = 0.0
        for start in range(0, n_train, batch_size):
            b = order[start:start + batch_size]
            opt.zero_grad()
            loss = batch_loss(b)
            loss.backward()
            opt.step()
            steps += 1
            total += loss.item() * len(b)
        train_curve.append(total / n_train)
        if dev_loss is None:
            best_epoch = epoch
            continue
        model.eval()
        with torch.no_grad():
            d = float(dev_loss())
        dev_curve.append(d)
        if d < best:
            best, bad, best_epoch = d, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience and steps >= min_steps:
                stopped = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"train_loss_curve": train_curve, "dev_loss_curve": dev_curve, "best_epoch": best_epoch,
            "n_epochs": epoch, "n_steps": steps, "stopped_early": stopped,
            "dev_loss": None if dev_loss is None else float(best)}
