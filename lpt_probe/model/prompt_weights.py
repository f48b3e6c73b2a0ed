"""A trained late prompt on disk: its trainable weights (safetensors) beside its config.

``save_prompt`` writes ``prompt.safetensors`` (atomically) and ``prompt_config.json`` into a
run folder and returns the weights' sha256 (``meta.json`` records it); ``load_prompt_weights``
reads them back into a ``LatePromptModel`` built from that config. A peft-style folder for plain transformers code is
``lpt_probe.model.interop``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..store import DamagedFile, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # annotations only: late_prompt imports this module
    from .late_prompt import LatePromptModel


def save_prompt(model: LatePromptModel, folder: str | Path, name: str = "prompt.safetensors") -> str:
    """Write the trainable weights (safetensors, atomically) beside the prompt config (JSON);
    returns the weight file's sha256, which ``meta.json`` records."""
    import hashlib

    from safetensors.torch import save

    folder = Path(folder)
    data = save({k: v.contiguous() for k, v in model.trainable_state_dict().items()})
    atomic_write_bytes(folder / name, data)
    if name == "prompt.safetensors":
        atomic_write_text(folder / "prompt_config.json", json.dumps(model.config.to_dict(), indent=2) + "\n")
    return hashlib.sha256(data).hexdigest()


def load_prompt_weights(model: LatePromptModel, path: str | Path) -> None:
    """Load weights saved by ``save_prompt``; a damaged file raises ``DamagedFile`` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DamagedFile(f"{path} is damaged ({exc}); delete {Path(path).parent} and train it again") from None
    own = dict(model.trainable_named_parameters())
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or shapes:
        raise ValueError(
            f"{path}: weights do not fit this prompt config (missing {missing}, unexpected {extra}, "
            f"shape mismatch {shapes}); load them with the prompt_config.json saved beside them"
        )
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
