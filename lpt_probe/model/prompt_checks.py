"""Is an exported late prompt what was saved, and does it fit the model it is attached to?

``LatePrompt.save_pretrained`` (``lpt_probe.model.interop``) records three facts that
``from_pretrained`` and ``attach_late_prompt`` check here:

- ``weights_sha256`` in ``late_prompt_config.json``: the sha256 of the weight file's bytes,
  so flipped or truncated weights are refused (:func:`check_folder`);
- a copy of the config and the task record in the weight file's safetensors metadata
  (``lpt_probe_export``), so a config edited after export (``prompt_layer`` 4 -> 2, other
  label word ids) is refused, naming each edited key;
- in ``base_model``: the hub id of the model it was trained on (a preset alias such as
  ``minilm`` is recorded as its hub id) and ``embedding_fingerprint``: 32 numbers made from
  its input embeddings (rows spread over the vocabulary, each projected on one fixed random
  vector). They survive a change of dtype (bf16, fp16: within 5% of their spread) and differ
  for any other weights of the same shape, so :func:`check_model` refuses a model with other
  weights, whatever it is called; its name is compared only when no fingerprint was recorded
  (a local copy of the same model has another name).

:func:`check_model` also refuses a head that does not fit: a prompt trained with a linear
classifier on the bare encoder attached to a masked LM (transformers gives the embedded
MiniLM a random MLM head when asked for one) or an LM-head prompt on a bare model. Every
check but the family, depth and width is skipped with ``strict=False``. Folders exported
before these facts were recorded load with a warning that they are not verified.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..store import DamagedFile, content_key, file_sha256
from .backbone import Backbone
from .families import family_for

logger = logging.getLogger(__name__)
EXPORT_KEY = "lpt_probe_export"  # safetensors metadata: the config and task record at export
FINGERPRINT_ROWS = 32
_NOT_COMPARED = ("weights_sha256", "library")  # written with the export, not part of what it was


def embedding_fingerprint(hf_model: nn.Module) -> list[float]:
    """32 numbers from the input embeddings of ``hf_model`` (module docstring)."""
    emb = hf_model.get_input_embeddings().weight  # [vocab, hidden]
    rows = torch.linspace(0, emb.shape[0] - 1, FINGERPRINT_ROWS).round().long()
    direction = torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(0))  # [hidden]
    with torch.no_grad():
        values = emb.detach()[rows.to(emb.device)].float().cpu() @ direction  # [rows]
    return [float(f"{x:.6g}") for x in values.tolist()]


def same_embeddings(recorded: list, have: list[float]) -> bool:
    """Whether two fingerprints come from the same weights (up to a change of dtype)."""
    if not isinstance(recorded, list) or len(recorded) != len(have):
        return False
    a, b = torch.tensor(recorded, dtype=torch.float64), torch.tensor(have, dtype=torch.float64)
    spread = a.pow(2).mean().sqrt().clamp_min(1e-12)
    return bool(((a - b).abs() <= 0.05 * spread).all())


def export_record(record: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """What the weight file's metadata keeps of the config and task (compared on loading)."""
    return {"config": {k: v for k, v in record.items() if k not in _NOT_COMPARED}, "task": task}


def export_metadata(record: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
    return {"format": "pt", EXPORT_KEY: json.dumps(export_record(record, task), sort_keys=True)}


def _edited(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two records, as ``key: now (exported: saved)``."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k, "<missing>"), now.get(k, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _edited(a, b, f"{prefix}{k}.")
        elif content_key(a) != content_key(b):
            out.append(f"{prefix}{k} is {b!r} (exported: {a!r})")
    return out


def check_folder(folder: Path, weights_name: str, record: dict[str, Any], task: dict[str, Any],
                 metadata: dict[str, str] | None) -> None:
    """Refuse (``DamagedFile``, one line) an export whose weights or config changed after
    ``save_pretrained``; warn when it was written before these were recorded."""
    for key, types in (("head_kind", (str,)), ("base_model", (dict,))):
        if not isinstance(record.get(key), types):
            raise DamagedFile(f"{folder / 'late_prompt_config.json'} is damaged: {key!r} is missing or not a "
                              f"{types[0].__name__}; export the prompt again (LatePrompt.save_pretrained)")
    want = record.get("weights_sha256")
    if want is None:
        logger.warning("%s was exported by an older lpt_probe (no weights digest): its files are not verified; "
                       "export it again to have them checked", folder)
    elif file_sha256(folder / weights_name) != want:
        raise DamagedFile(f"{folder / weights_name} is damaged (its sha256 differs from the one "
                          f"late_prompt_config.json recorded); export the prompt again")
    saved = (metadata or {}).get(EXPORT_KEY)
    if saved is None:
        return
    saved, now = json.loads(saved), export_record(record, task)
    edited = _edited(saved["config"], now["config"]) + _edited(saved["task"], now["task"], "task's ")
    if edited:
        raise DamagedFile(f"{folder}: the config or task record was edited after export ({'; '.join(edited[:3])}"
                          f"{'; ...' if len(edited) > 3 else ''}), so it no longer describes the weights; export "
                          f"the prompt again")


def model_name(hf_model: nn.Module) -> str | None:
    cfg = getattr(hf_model, "config", None)
    return getattr(cfg, "_name_or_path", None) or getattr(cfg, "name_or_path", None) or None


def check_model(hf_model: nn.Module, head_kind: str, base_model: dict[str, Any], strict: bool = True) -> Backbone:
    """``Backbone(hf_model)`` if the model fits the prompt (module docstring), else one
    ``ValueError`` naming the mismatch and the fix."""
    spec = family_for(hf_model)  # an unknown model_type names the known families
    backbone = Backbone(hf_model)
    trained_on = base_model.get("name_or_path")
    have = {"family": spec.name, "num_hidden_layers": backbone.num_hidden_layers,
            "hidden_size": backbone.hidden_size}
    wrong = [f"{k}={base_model.get(k)!r} (the model has {k}={v!r})" for k, v in have.items()
             if base_model.get(k) != v]
    if wrong:
        raise ValueError(f"this late prompt was trained on {trained_on!r} with {', '.join(wrong)}; attach it to a "
                         f"{base_model.get('model_class')} of that family, depth and width")
    if not strict:
        return backbone
    fix = "or pass strict=False to attach it anyway"
    if head_kind == "classifier" and backbone.has_lm_head:
        raise ValueError(f"this late prompt reads a linear classifier on the last hidden state of a bare "
                         f"{base_model.get('model_class')}, but the model is a {type(hf_model).__name__} with an "
                         f"LM head (which may be newly initialised): load it with AutoModel, {fix}")
    if head_kind == "lm" and not backbone.has_lm_head:
        raise ValueError(f"this late prompt reads the model's MLM/LM head, which {type(hf_model).__name__} lacks: "
                         f"load it with AutoModelForMaskedLM / AutoModelForCausalLM, {fix}")
    recorded = base_model.get("embedding_fingerprint")
    name = model_name(hf_model)
    if recorded is not None:
        if not same_embeddings(recorded, embedding_fingerprint(hf_model)):
            raise ValueError(f"this late prompt was trained on {trained_on!r}, and the model given ({name!r}) has "
                             f"other weights (its input embeddings differ): load {trained_on!r}, {fix}")
    elif trained_on and name and Path(str(name)).name != Path(str(trained_on)).name:
        raise ValueError(f"this late prompt was trained on {trained_on!r}, and the model given is {name!r}: load "
                         f"{trained_on!r}, {fix}")
    return backbone
