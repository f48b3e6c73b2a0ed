"""The model core: families, the partial forward, late prompts, baselines, the cache.

- ``families``: one ``FamilySpec`` per Hugging Face family (where its parts live).
- ``backbone``: ``Backbone.run_layers(h, mask, start, stop)``, "run layers k..L".
- ``generators``: the prompt generators (none, NPG, APPG, MPPG).
- ``methods``: the baselines trained in the same harness (``--method``).
- ``late_prompt``: ``LatePromptModel`` (and ``LatePromptConfig``, re-exported).
- ``config`` and ``specs`` (no torch): ``LatePromptConfig``; the tables the flags read
  (``METHODS``, ``GENERATORS``, ``PRESETS``, ``DTYPES``).
- ``prompt_weights``: ``save_prompt`` / ``load_prompt_weights``, a prompt's weights on disk.
- ``cache``: ``LowerLayerCache``, hidden states below the prompt layer computed once.
- ``loading``: ``load_model`` (presets, hub ids, folders) and model identity.
- ``interop``: ``LatePrompt`` (a peft-style folder: ``save_pretrained`` / ``from_pretrained``)
  and ``attach_late_prompt``, a plain Hugging Face model that runs with a late prompt.

Importing this package imports no torch: its names load ``interop`` on first use (PEP 562),
so ``lpt_probe.model.config`` and ``specs`` stay light.
"""

from __future__ import annotations

import importlib

__all__ = ["AttachedLatePrompt", "LatePrompt", "attach_late_prompt", "detach_late_prompt"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'lpt_probe.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(".interop", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
