"""``PROBES``: the probe families by name, known without importing them.

``--probe`` lists these names in ``--help`` and ``MIConfig`` checks against them; the
built-in families are ``Ref`` s (``lpt_probe.registry``) to their classes, imported on
first lookup (``PROBES["mlp"]``), so the names cost no sklearn or torch. A family added
with :func:`register_probe` (a class, stored as it is) is a choice of every command at once.
``lpt_probe.probing.probes`` re-exports both.
"""

from __future__ import annotations

from typing import Any, Callable

from ..registry import LazyRegistry, Ref

# name -> probe class; every class takes (n_classes, ..., seed=...) keyword parameters.
PROBES = LazyRegistry("probe", {
    "linear": Ref("lpt_probe.probing.linear:LinearProbe"),
    "mlp": Ref("lpt_probe.probing.mlp:MLPProbe"),
    "transformer": Ref("lpt_probe.probing.transformer:TransformerProbe"),
})


def register_probe(name: str, cls: Callable[..., Any]) -> None:
    """Add a probe family to :func:`~lpt_probe.probing.probes.make_probe` and ``--probe``."""
    if name in PROBES:
        raise ValueError(f"probe {name!r} is already registered ({PROBES[name]!r})")
    PROBES[name] = cls
