"""Hyperparameter selection shared by the probes: grids, dev log-loss and grid edges.

Every probe picks its hyperparameters from a small grid by held-out log-loss (natural
log, probabilities clipped at :data:`EPS`), and after ``fit`` reports

- ``selected_params_``: the chosen point, a JSON-able dict such as ``{"C": 0.01}``;
- ``selection_``: ``{"source": "dev" | "cv" | "carved" | "none" | ..., "scores": [...],
  "at_grid_edge": [...]}``, where ``scores`` holds one dict per grid point (its
  parameters plus ``log_loss``, mean held-out nats, and probe-specific extras) and
  ``at_grid_edge`` names the parameters whose chosen value is the smallest or largest of
  a grid of at least 2 values (a hint that the grid should be wider).

Start at :func:`expand_grid` (dict of value lists -> list of points) and
:func:`selection_summary` (builds ``selection_``). No torch here.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["EPS", "log_loss_nats", "expand_grid", "edge_params", "selection_summary", "json_params",
           "succession_weight", "smooth_absent"]

# Probability floor before any log (re-exported as estimates.EPS): one example costs at
# most -log2(EPS) ~ 39.86 bits.
EPS = 1e-12


def succession_weight(y, n_classes: int) -> float:
    """The weight of the uniform distribution mixed into every prediction of a model fitted
    on labels ``y`` when some of the ``n_classes`` classes are absent from them: K / (n + K),
    the rule of succession (0 when every class is present).

    One rule for every probe and for the null model: mixing a prior p with uniform by this
    weight gives exactly (count + 1) / (n + K). A class absent from the probe-train rows
    then costs the probe and the null model the same on a test row of that class, instead
    of -log2(EPS) ~ 40 bits to the null model alone (which read as ~12 bits of "information"
    on pure noise)."""
    y = np.asarray(y)
    present = np.unique(y)
    return float(n_classes / (len(y) + n_classes)) if len(present) < n_classes else 0.0


def smooth_absent(proba: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * proba + weight / K`` (the identity for weight 0); proba [n, K]."""
    if not weight:
        return proba
    return (1.0 - weight) * proba + weight / proba.shape[-1]


def log_loss_nats(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean -ln q(y|x) over rows, probabilities clipped at ``EPS`` (model selection only)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0))))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so a point dumps to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def expand_grid(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> list[dict]:
    """All points of ``grid`` (cartesian product, keys in the grid's order) merged into
    ``fixed``; a key in both is taken from ``fixed`` (a pinned hyperparameter).

    ``expand_grid({"lr": [1e-3, 3e-4], "wd": [0, 0.1]})`` has 4 points; an empty grid has
    the single point ``fixed``.
    """
    fixed = dict(fixed or {})
    keys = [k for k in grid if k not in fixed]
    for k in keys:
        if len(grid[k]) == 0:
            raise ValueError(f"grid value list for {k!r} is empty; give at least one value")
    return [{**fixed, **{k: _plain(v) for k, v in zip(keys, values)}}
            for values in itertools.product(*(grid[k] for k in keys))]


def edge_params(grid: Mapping[str, Sequence[Any]], chosen: Mapping[str, Any],
                zero_floor: Sequence[str] = ("weight_decay",)) -> list[str]:
    """Names of the parameters whose chosen value is the min or max of a grid of >= 3 values
    (a two-point grid has no interior: either choice would be "at the edge").

    A parameter in ``zero_floor`` chosen at a low edge of 0 does not count: no weight
    decay is no regularisation, and the grid cannot extend below it.
    """
    out = []
    for name, values in grid.items():
        values = sorted({_plain(v) for v in values})
        if len(values) < 3 or name not in chosen:
            continue
        v = chosen[name]
        if v == values[-1] or (v == values[0] and not (name in zero_floor and v == 0)):
            out.append(name)
    return out


def selection_summary(source: str, grid: Mapping[str, Sequence[Any]], scores: list[dict],
                      chosen: Mapping[str, Any], **extra) -> dict:
    """``selection_`` dict: ``source``, ``scores`` (one dict per grid point), ``at_grid_edge``,
    plus ``extra`` keys (e.g. ``fallback``)."""
    return {"source": source, "scores": scores,
            "at_grid_edge": edge_params(grid, chosen) if source not in ("none", "fixed") else [], **extra}


def json_params(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a parameter dict (sorted keys), as written to result tables."""
    return json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True)
