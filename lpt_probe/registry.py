"""Registries whose names are known before their code is imported.

A command's ``--help`` lists every generator, method, probe and dtype, and must not import
torch to do it. A :class:`LazyRegistry` is a mapping name -> object whose entries may be
:class:`Ref` s, ``"module:attribute"`` references imported on first lookup (the idea of
transformers' lazy auto mappings): iterating, ``len`` and ``in`` read the names only;
``registry[name]`` imports the module that defines the entry. Objects registered at run
time (a plugin's probe class) are stored as they are and show up in the names at once.
A :class:`Ref` is also callable, so a table entry can hold a hook (a method's ``attach``)
that lives in a torch module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

_UNSET = object()


class Ref:
    """``"module:attribute"``, imported on first :meth:`load`; calling it calls the attribute."""

    __slots__ = ("target", "_value")

    def __init__(self, target: str):
        if ":" not in target:
            raise ValueError(f"Ref({target!r}): give 'module:attribute', e.g. 'lpt_probe.probing.linear:LinearProbe'")
        self.target, self._value = target, _UNSET

    def load(self) -> Any:
        if self._value is _UNSET:
            module, _, attribute = self.target.partition(":")
            self._value = getattr(importlib.import_module(module), attribute)
        return self._value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Ref({self.target!r})"


class LazyRegistry(MutableMapping):
    """A dict of name -> entry whose :class:`Ref` entries are imported when looked up.

    ``what`` names the kind of entry in the error for an unknown name ("probe")."""

    def __init__(self, what: str, entries: dict[str, Any] | None = None):
        self.what = what
        self._entries: dict[str, Any] = dict(entries or {})

    def __getitem__(self, name: str) -> Any:
        try:
            entry = self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; choose one of {', '.join(self._entries)}") from None
        if isinstance(entry, Ref):
            entry = self._entries[name] = entry.load()
        return entry

    def __setitem__(self, name: str, entry: Any) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:  # the names only: nothing is imported
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"LazyRegistry({self.what!r}, {list(self._entries)})"
