"""Probe classifiers q(y|h), scikit-learn conventions; the registry and its factory.

Start at :func:`make_probe`: it builds a registered probe by name (:data:`PROBES`, whose
names live in :mod:`.registry` and load no probe class):

- ``"linear"``, :class:`~lpt_probe.probing.linear.LinearProbe`: standardised features, multinomial
  logistic regression, C chosen by dev log-loss (stratified CV on the train rows when no
  dev split is given);
- ``"mlp"``, :class:`~lpt_probe.probing.mlp.MLPProbe`: one hidden layer, a small grid
  over width / weight decay / learning rate, early stopping on dev;
- ``"transformer"``, :class:`~lpt_probe.probing.transformer.TransformerProbe`: a small
  transformer over a layer's whole sequence of states (:class:`~.sequences.Sequences`).

Every probe takes ``n_classes`` explicitly, so ``predict_proba`` always returns
``n_classes`` columns (``classes_ == arange(n_classes)``) even when a class is absent
from the rows it was fitted on; labels are integers in ``[0, n_classes)``. Every probe
declares ``input_kind`` ("vector": ``X [n, d]``; "sequence": ``Sequences``), takes its
hyperparameter grid as a constructor parameter (``Cs`` or ``grid``; a user string
becomes one through :func:`parse_probe_grid`) and after ``fit`` exposes
``selected_params_`` and ``selection_`` (see :mod:`.selection`). A family with options
of its own, beyond its grid, names their class in ``Options`` (:mod:`.options`);
:func:`probe_options` builds them, and a study asks them what it needs.

Conventions (scikit-learn): parameters are stored unchanged by ``__init__`` and
validated in ``fit``; learned state lives in attributes ending in ``_``; ``fit`` returns
``self``. A probe only ever sees the rows handed to ``fit``; :func:`assert_disjoint`
checks that id arrays of splits do not overlap. torch is imported only by the torch
probes, inside ``fit``/``predict_proba``: importing this module does not import torch.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from .linear import LinearProbe
from .mlp import MLPProbe
from .options import ProbeOptions
from .registry import PROBES, register_probe  # the names, known without importing the classes
from .selection import EPS
from .sequences import check_xy
from .transformer import TransformerProbe

logger = logging.getLogger(__name__)

__all__ = ["LinearProbe", "MLPProbe", "TransformerProbe", "PROBES", "make_probe", "register_probe",
           "probe_options", "parse_probe_grid", "assert_disjoint", "check_xy", "EPS"]

_check_xy = check_xy  # the old private name, for internal callers


def make_probe(name: str, n_classes: int, seed: int = 0, **kw):
    """Build an unfitted probe: ``make_probe("linear", 3, seed=1, Cs=(0.1, 1))``.

    ``functools.partial(make_probe, "mlp", K, hidden=64)`` is a probe factory
    (``factory(seed) -> probe``) as the estimators in ``estimates`` and ``mdl`` expect.
    """
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {sorted(PROBES)}")
    return PROBES[name](n_classes=n_classes, seed=seed, **kw)


def probe_options(name: str, flags: Any = None) -> ProbeOptions:
    """The options of probe family ``name`` (its ``Options`` class; :class:`~.options.ProbeOptions`,
    none of its own, for a family without one), from ``flags``' ``probe_<option>`` attributes
    (``probe_options("transformer", cfg.mi)``, an ``MIOptions``, reads ``probe_layers``, ``probe_width``, ...)
    or the defaults, checked: a bad value raises ValueError naming its flag."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {sorted(PROBES)}")
    cls = getattr(PROBES[name], "Options", ProbeOptions)
    return cls() if flags is None else cls.from_flags(flags)


def _parse_value(probe: str, key: str, text: str, spec) -> Any:
    kind, ok, meaning = spec
    try:
        value = float(text)
        if kind is int:
            if value != int(value):
                raise ValueError
            value = int(value)
    except ValueError:
        raise ValueError(f"probe grid for {probe!r}: {key} value {text!r} is not {meaning}") from None
    if not ok(value):
        raise ValueError(f"probe grid for {probe!r}: {key} value {text!r} is not {meaning}")
    return value


def parse_probe_grid(probe: str, spec: str) -> dict:
    """Turn a user grid string into constructor keyword arguments for ``probe``.

    ``parse_probe_grid("linear", "C=1e-5,1e-4,1e-3") == {"Cs": (1e-5, 1e-4, 1e-3)}``;
    ``parse_probe_grid("mlp", "hidden=64,256;weight_decay=0,0.01") ==
    {"grid": {"hidden": [64, 256], "weight_decay": [0.0, 0.01]}}``. Parameters are
    separated by ``;``, values by ``,``. An empty string or ``"default"`` gives ``{}``
    (the probe's default grid). Errors name the bad key or value and the allowed keys.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {sorted(PROBES)}")
    cls = PROBES[probe]
    keys = getattr(cls, "GRID_KEYS", None)
    if not keys:
        raise ValueError(f"probe {probe!r} ({cls!r}) declares no GRID_KEYS, so it takes no grid string")
    allowed = ", ".join(sorted(keys))
    if spec is None or spec.strip() in ("", "default"):
        return {}
    grid: dict[str, list] = {}
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"probe grid {spec!r}: {part!r} is not key=v1,v2,...; "
                             f"allowed keys for {probe!r}: {allowed}")
        key, _, values = (s.strip() for s in part.partition("="))
        if key not in keys:
            raise ValueError(f"probe grid {spec!r}: unknown key {key!r} for {probe!r}; allowed keys: {allowed}")
        if key in grid:
            raise ValueError(f"probe grid {spec!r}: key {key!r} is given twice; list all its values once")
        texts = [v.strip() for v in values.split(",") if v.strip()]
        if not texts:
            raise ValueError(f"probe grid {spec!r}: key {key!r} has no values; give e.g. {key}=v1,v2")
        grid[key] = [_parse_value(probe, key, t, keys[key]) for t in texts]
    return cls.grid_kwargs(grid)


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

