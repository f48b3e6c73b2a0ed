"""Composed configs: a config that holds other configs, and the flat names it answers to.

STYLE.md: configs compose rather than copy. A study's config holds a ``TrainConfig`` (how
its prompts train), a ``LatePromptConfig`` (what they are), a ``PromptGrid`` (which prompt
layers and seeds) and an ``OutputConfig`` (where it writes), each declared once, instead of
copying their fields; ``mi``'s and ``section4``'s hold the same ``MIOptions``. Its flags
and its keyword arguments stay flat, as users type them (``--steps 100``,
``MIConfig(task="rte", steps=100)``): a composed class lists them in its ``FLAT`` table,
in ``--help`` order, each a :class:`Flat` naming the nested config that owns it and what
differs on this command (its default: ``mi`` trains prompts for 200 steps where ``train``
has none; its help text; its flag spelling). A subclass's ``FLAT`` adds names and changes
entries of its parents' (``section4`` trains for 1000 steps), so no field is declared twice
(``tests/unit/test_configs.py`` checks every config dataclass).

Where a reader starts:

- :func:`nested`: a config field holding another config; :func:`collected`: one holding
  the options of whatever another field picks (a late prompt's method's own options).
- :class:`Flat` and :func:`via`: one flat name's entry; :func:`flat_table` merges a class's
  ``FLAT`` with its parents'; :func:`flat_fields` resolves each name to its field, metadata
  and default (what ``lpt_probe.commands.cli.add_config_args`` makes flags from).
- :func:`composed`: ``@dataclass``, and the constructor also takes the flat names, routed to
  their owners (``dataclasses.replace(cfg, steps=5)`` too); a nested config not given is
  built with this class's defaults.
- :func:`flat_settings` and :func:`from_settings`: a saved config (nested, as ``asdict``
  writes it now, or flat, as ``run.json`` held it up to 0.2.0) as its flat names, and built
  again, so readers of old folders keep working.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import MISSING, dataclass, field
from typing import Any, Mapping

__all__ = ["OWN", "Flat", "FlatField", "collected", "composed", "flat_fields", "flat_settings", "flat_table",
           "from_settings", "nested", "via"]


class _Keep:
    """The default of a :class:`Flat` that keeps its owner field's default."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


def nested(cls) -> Any:
    """A config field holding a ``cls`` config (its fields are this config's flat names
    that ``FLAT`` lists)."""
    return field(default_factory=cls, metadata={"nested": cls})


def collected() -> Any:
    """A config field holding options whose class another field picks (a method's own
    options: ``LatePromptConfig.options``). The flat names ``FLAT`` routes to it arrive in
    ``__post_init__`` as a dict (with a given options object's fields under them), for the
    class to build and check; ``FLAT`` names each one's class (``via(..., holder=cls)``)."""
    return field(default=None, metadata={"collects": True})


@dataclass(frozen=True)
class Flat:
    """One flat name of a composed config.

    ``owner``: the nested config field that holds it (None: the class's own field);
    ``field``: its name there (None: the flat name); ``default``: this class's default
    (``KEEP``: the owner's); ``zero_is_none``: the flag's 0 means None ("0 = full data");
    ``meta``: flag metadata replacing the owner field's (``help``, ``choices``, ``flag``,
    ``on_flag``, ``off_help``, ``cli``, ``metavar``; ``lpt_probe.commands.cli``); ``holder``: the
    class that declares the field, for an owner that holds one of several (:func:`collected`)."""

    owner: str | None = None
    field: str | None = None
    default: Any = KEEP
    zero_is_none: bool = False
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    holder: type | None = None


OWN = Flat()  # the class's own field, at this place in --help


def via(owner: str, field: str | None = None, *, default: Any = KEEP, zero_is_none: bool = False,
        holder: type | None = None, **meta: Any) -> Flat:
    """The flat name held by the nested config ``owner`` (its field ``field``)."""
    return Flat(owner, field, default, zero_is_none, meta, holder)


def flat_table(cls) -> dict[str, Flat]:
    """``cls``'s flat names in order: its parents' ``FLAT`` entries, each changed where a
    subclass names it again (its place kept), then the subclass's new ones."""
    table: dict[str, Flat] = {}
    for klass in reversed(cls.__mro__):
        for name, entry in vars(klass).get("FLAT", {}).items():
            old = table.get(name)
            if old is not None:
                entry = Flat(entry.owner, entry.field, old.default if entry.default is KEEP else entry.default,
                             entry.zero_is_none or old.zero_is_none, {**old.meta, **entry.meta},
                             entry.holder or old.holder)
            table[name] = entry
    return table


@dataclass(frozen=True)
class FlatField:
    """A flat name resolved: its owner (None: own), the field there, its metadata and default."""

    name: str
    owner: str | None
    field: dataclasses.Field
    owner_cls: type
    metadata: dict
    default: Any  # MISSING: none (a required field)
    zero_is_none: bool


def _nested_fields(cls) -> dict[str, type]:
    return {f.name: f.metadata["nested"] for f in dataclasses.fields(cls) if "nested" in f.metadata}


def _collectors(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("collects")}


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def flat_fields(cls) -> list[FlatField]:
    """Every flat name of ``cls``: for a composed class its ``FLAT`` table, then any own
    field it does not list; for a plain dataclass its fields."""
    own = {f.name: f for f in dataclasses.fields(cls)}
    owners = _nested_fields(cls)
    table = flat_table(cls)
    out = []
    for name, entry in table.items():
        holder = entry.holder or (cls if entry.owner is None else owners[entry.owner])
        f = {g.name: g for g in dataclasses.fields(holder)}[entry.field or name]
        default = _field_default(f) if entry.default is KEEP else entry.default
        out.append(FlatField(name, entry.owner, f, holder, {**f.metadata, **entry.meta}, default, entry.zero_is_none))
    for name, f in own.items():
        if name not in table and name not in owners and name not in _collectors(cls):
            out.append(FlatField(name, None, f, cls, dict(f.metadata), _field_default(f), False))
    return out


def _route(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The flat keywords of ``kwargs`` put into the nested configs that own them."""
    owners, collectors = _nested_fields(cls), _collectors(cls)
    if not owners and not collectors:
        return kwargs
    table = flat_table(cls)
    parts: dict[str, dict[str, Any]] = {o: {} for o in (*owners, *collectors)}
    own: dict[str, Any] = {}
    for key, value in kwargs.items():
        entry = table.get(key)
        if entry is None or entry.owner is None:
            own[key] = value  # an own field (or a nested config given whole; an unknown name fails in __init__)
            continue
        if entry.zero_is_none and value == 0 and not isinstance(value, bool):
            value = None
        parts[entry.owner][entry.field or key] = value
    for owner, owner_cls in owners.items():
        given = own.get(owner)
        if isinstance(given, Mapping):  # a nested config as a dict (e.g. read from JSON)
            given = owner_cls(**given)
        if given is None:
            defaults = {e.field or n: e.default for n, e in table.items()
                        if e.owner == owner and e.default is not KEEP}
            given = owner_cls(**{**defaults, **parts[owner]})
        elif parts[owner]:
            given = dataclasses.replace(given, **parts[owner])
        own[owner] = given
    for owner in collectors:  # a dict of the flat names for __post_init__ (see collected)
        given = own.get(owner)
        base = dataclasses.asdict(given) if dataclasses.is_dataclass(given) else dict(given or {})
        if base or parts[owner]:
            own[owner] = {**base, **parts[owner]}
    return own


def composed(cls):
    """``@dataclass``, and its constructor also takes the flat names (``FLAT``) of the
    nested configs (:func:`nested`), each routed to its owner; a nested config not given is
    built with this class's defaults (``FLAT``'s), one given whole is used as it is (a flat
    keyword beside it changes it)."""
    cls = dataclass(cls)
    generated = cls.__init__

    @functools.wraps(generated)
    def __init__(self, **kwargs):
        generated(self, **_route(cls, kwargs))

    cls.__init__ = __init__
    return cls


def from_settings(cls, settings: Mapping[str, Any]):
    """A ``cls`` from its saved form: nested (``asdict``; each nested config from its dict)
    or flat (``run.json`` up to 0.2.0: the flat names, routed as the constructor routes them)."""
    return cls(**settings)  # a nested config given as a dict is built from it (see _route)


def flat_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A saved ``cls`` (``asdict``: nested configs as dicts; or flat, as ``run.json``
    held it up to 0.2) as its flat names: a flat one as it is, a nested one with each flat
    name read from its owner."""
    owners = _nested_fields(cls)
    if not any(isinstance(settings.get(o), Mapping) for o in owners):
        return dict(settings)  # already flat
    out = {}
    for f in flat_fields(cls):
        source = settings if f.owner is None else settings.get(f.owner) or {}
        if f.field.name in source:
            out[f.name] = source[f.field.name]
    return out
