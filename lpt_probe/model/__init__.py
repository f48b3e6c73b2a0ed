"""The model core: families, the partial forward, late prompts, baselines, the cache.

- ``families``: one ``FamilySpec`` per Hugging Face family (where its parts live).
- ``backbone``: ``Backbone.run_layers(h, mask, start, stop)``, "run layers k..L".
- ``generators``: the prompt generators (none, NPG, APPG, MPPG).
- ``methods``: the baselines trained in the same harness (``--method``).
- ``late_prompt``: ``LatePromptConfig`` and ``LatePromptModel``.
- ``prompt_weights``: ``save_prompt`` / ``load_prompt_weights``, a prompt's weights on disk.
- ``cache``: ``LowerLayerCache``, hidden states below the prompt layer computed once.
- ``loading``: ``load_model`` (presets, hub ids, folders) and model identity.
- ``interop``: ``LatePrompt`` (a peft-style folder: ``save_pretrained`` / ``from_pretrained``)
  and ``attach_late_prompt``, a plain Hugging Face model that runs with a late prompt.
"""

from .interop import AttachedLatePrompt, LatePrompt, attach_late_prompt, detach_late_prompt

__all__ = ["AttachedLatePrompt", "LatePrompt", "attach_late_prompt", "detach_late_prompt"]
