"""A griffe extension for the API reference (mkdocs.yml, mkdocstrings ``extensions``): the
fields of the config dataclasses (``TrainConfig``, ``MIConfig``, ...) get their help text
as their docstring, so the reference lists each field with what it means.

The package types a field's help once, in ``field(metadata=...)`` (``lpt_probe.commands.cli`` turns
it into the flag's help); griffe reads the source without running it and would show the
fields bare, with ``field(...)`` calls as their values. This reads the runtime dataclass
instead, for the classes whose fields carry metadata, and puts the help text (and the
choices) where griffe looks for a docstring and the plain default where it shows a value.
"""

from __future__ import annotations

import dataclasses
import html
import importlib

from griffe import Class, Docstring, Extension, Module, Object


def _classes(obj: Object):
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, Class):
            yield member
        if isinstance(member, (Module, Class)):
            yield from _classes(member)


def _choices(meta) -> list | None:
    c = meta.get("choices")
    if c is None:
        return None
    return list(c() if callable(c) else c)


def _default(f: dataclasses.Field) -> str | None:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return None


class ConfigFieldHelp(Extension):
    def on_package(self, *, pkg: Module, **kwargs) -> None:
        if pkg.name != "lpt_probe":
            return
        for cls in _classes(pkg):
            attrs = {name: m for name, m in cls.members.items() if not m.is_alias and m.is_attribute}
            if not any("metadata" in str(a.value) for a in attrs.values()):
                continue
            runtime = getattr(importlib.import_module(cls.module.path), cls.name, None)
            if runtime is None or not dataclasses.is_dataclass(runtime):
                continue
            for f in dataclasses.fields(runtime):
                attr = attrs.get(f.name)
                text = f.metadata.get("help")
                if attr is None or not text:
                    continue
                choices = _choices(f.metadata)
                if choices:
                    text = f"{text} (choices: {', '.join(map(str, choices))})"
                if attr.docstring is None:
                    attr.docstring = Docstring(html.escape(text, quote=False), parent=attr)
                default = _default(f)
                if default is not None:
                    attr.value = default
