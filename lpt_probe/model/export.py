"""A trained late prompt as a folder, apart from its backbone: what the folder holds and how
it is written (the spirit of peft's adapter folder; the file layout is described in
``lpt_probe.model.interop``, which reads such a folder back, verifies it and attaches it to a
plain Hugging Face model).

:func:`export_parts` takes what a folder records from a trained ``LatePromptModel`` (its
config, trainable weights, read-out, the base model's identity and the task's template and
label words); :func:`write_prompt_folder` writes the three files. ``LatePrompt`` (interop)
and ``LatePromptModel.save_pretrained`` both write through them, so the model module needs
nothing of interop and the two write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..store import atomic_write_bytes, atomic_write_text
from .config import LatePromptConfig
from .prompt_checks import embedding_fingerprint, export_metadata
from .specs import get_method, hub_id

__all__ = ["CONFIG_NAME", "FORMAT", "TASK_NAME", "WEIGHTS_NAME", "export_parts", "write_prompt_folder"]

CONFIG_NAME = "late_prompt_config.json"
WEIGHTS_NAME = "late_prompt_model.safetensors"
TASK_NAME = "late_prompt_task.json"
FORMAT = 1


def export_parts(model, task=None, base_model_name: str | None = None) -> dict[str, Any]:
    """What a folder records of a trained ``LatePromptModel`` ``model`` (``task``: its
    ``TaskSpec``, which adds the template and the label words): the fields of
    ``interop.LatePrompt`` (config, weights, head_kind, base_model, task). Only prompts that
    leave the backbone as it is export; an empty prompt is refused."""
    spec = get_method(model.config.method)
    if not spec.late_prompt or spec.attach is not None or spec.make_generator is not None:
        raise ValueError(f"method={model.config.method!r} cannot be exported as a late prompt: only 'lpt' and "
                         "'prompt-tuning' leave the backbone as it is (the other methods change its weights "
                         "or layers, or need a first pass)")
    if model.config.prompt_tokens < 1:
        raise ValueError(f"num_virtual_tokens={model.config.num_virtual_tokens}: an empty prompt is the frozen "
                         "model itself; there is nothing to export")
    bb = model.backbone
    cfg = bb.config
    base = {"name_or_path": hub_id(base_model_name or getattr(cfg, "name_or_path", "") or None),
            "family": bb.family.name, "model_type": cfg.model_type, "model_class": type(bb.model).__name__,
            "num_hidden_layers": bb.num_hidden_layers, "hidden_size": bb.hidden_size,
            "vocab_size": getattr(cfg, "vocab_size", None), "embedding_fingerprint": embedding_fingerprint(bb.model)}
    ids = None if model.label_word_ids is None else [int(i) for i in model.label_word_ids]
    info: dict[str, Any] = {"num_labels": model.num_labels, "label_word_ids": ids}
    if task is not None:
        kind = bb.template_kind
        info.update(name=task.name, template_kind=kind, template=getattr(task, f"{kind}_template"),
                    label_names=list(task.label_names), label_words=list(getattr(task, f"{kind}_label_words")),
                    text_fields=list(task.text_fields))
    weights = {k: v.detach().cpu().clone() for k, v in model.trainable_state_dict().items()}
    return {"config": LatePromptConfig(**model.config.to_dict()), "weights": weights, "head_kind": model.head_kind,
            "base_model": base, "task": info}


def write_prompt_folder(folder: str | os.PathLike, config: LatePromptConfig, weights: dict[str, torch.Tensor],
                        head_kind: str, base_model: dict[str, Any], task: dict[str, Any]) -> Path:
    """Write the three files into ``folder`` (each atomically; the config last, with the
    weights' sha256 that ``LatePrompt.from_pretrained`` checks); returns it."""
    from safetensors.torch import save

    folder = Path(folder)
    record = {**config.to_dict(), "head_kind": head_kind, "base_model_name_or_path": base_model.get("name_or_path"),
              "base_model": base_model, "format": FORMAT, "library": f"lpt_probe {__version__}"}
    data = save({k: v.contiguous() for k, v in weights.items()}, metadata=export_metadata(record, task))
    record["weights_sha256"] = hashlib.sha256(data).hexdigest()  # checked by from_pretrained
    atomic_write_bytes(folder / WEIGHTS_NAME, data)
    atomic_write_text(folder / TASK_NAME, json.dumps(task, indent=2) + "\n")
    atomic_write_text(folder / CONFIG_NAME, json.dumps(record, indent=2) + "\n")
    return folder
