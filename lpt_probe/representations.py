"""Per-layer sentence representations, extracted once and cached to disk.

``extract(model_or_backbone, data)`` runs each example once and keeps, for every hidden
state 0..L (0 = embeddings; L as HF reports it, i.e. after the final norm for decoders),
one vector per example:

- ``cls``: the first token ([CLS] / <s>; for decoders the first text token);
- ``mask``: the prediction position ([MASK] for masked LMs, the last template token for
  causal LMs), the default, as the paper's prediction comes from there;
- ``mean``: the mean over the text tokens (pads excluded).

With a late prompt at PL, layers >= PL carry l prompt positions in front of the text:
they are stripped by position, so a text representation never mixes prompt tokens in.
The generated prompt itself ([n, l, hidden], the generator's output) and the mean state of
the prompt tokens at each hidden state >= PL are returned separately: they feed the
prompt projection (figure 4).

``save_representations`` / ``load_representations`` write and read one safetensors file per
split (float16 by default) plus a JSON sidecar naming the model, the prompt and the data
fingerprint, so every probe reuses the same arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import io
from .backbone import Backbone
from .cache import Encoded
from .late_prompt import LatePromptModel

REPRESENTATIONS = ("cls", "mask", "mean")
Tensor = torch.Tensor


def _pick(h: Tensor, keep: Tensor, pred: Tensor) -> dict[str, Tensor]:
    """The three per-example vectors from text-only states [batch, seq, hidden]."""
    rows = torch.arange(h.shape[0], device=h.device)
    first = torch.where(keep.bool(), torch.arange(keep.shape[1], device=h.device), keep.shape[1]).min(1).values
    w = keep.to(h.dtype).unsqueeze(-1)
    return {"cls": h[rows, first], "mask": h[rows, pred], "mean": (h * w).sum(1) / w.sum(1)}


@torch.no_grad()
def extract(model: LatePromptModel | Backbone, data: Encoded, batch_size: int = 64,
            desc: str = "extract") -> dict[str, Any]:
    """Representations at every hidden state for every example of ``data``.

    Returns {"cls"|"mask"|"mean": array [L+1, n, hidden], "labels": [n], and for a late
    prompt "prompt": [n, l, hidden] and "prompt_states": [L+1, n, hidden] (NaN below PL)}.
    """
    lpt = model if isinstance(model, LatePromptModel) else None
    backbone = lpt.backbone if lpt is not None else model
    if lpt is not None:
        lpt.eval()
    backbone.model.eval()
    L, d, n = backbone.num_hidden_layers, backbone.hidden_size, len(data)
    out = {r: np.zeros((L + 1, n, d), dtype=np.float32) for r in REPRESENTATIONS}
    if lpt is not None:
        out["prompt"] = np.zeros((n, lpt.l, d), dtype=np.float32)
        out["prompt_states"] = np.full((L + 1, n, d), np.nan, dtype=np.float32)
    dev = backbone.device
    for idx in tqdm(list(data.batches(batch_size)), desc=desc, leave=False):
        b = data.collate(idx, dev)
        ids, keep, pred = b["input_ids"], b["attention_mask"], b["pred_positions"]
        h0 = backbone.embed(ids, keep)
        if lpt is None:
            states = [h0] + backbone.run_layers(h0, keep, 0, L, return_all=True)
            text, prompt_part = states, [None] * (L + 1)
        else:
            pl = lpt.config.prompt_layer
            lower = [h0] + backbone.run_layers(h0, keep, 0, pl - 1, return_all=True)
            up = lpt.upper(lower[-1], keep, pred, return_states=True)
            l = up["prompt"].shape[1]
            upper = up["upper_states"]  # hidden states PL..L, prompt in front
            text = lower + [s[:, l:] for s in upper]
            prompt_part = [None] * pl + [s[:, :l] for s in upper]
            out["prompt"][idx] = up["prompt"].float().cpu().numpy()
        text[-1] = backbone.final(text[-1])  # hidden state L as HF reports it
        if prompt_part[-1] is not None:
            prompt_part[-1] = backbone.final(prompt_part[-1])
        for k in range(L + 1):
            for r, v in _pick(text[k], keep, pred).items():
                out[r][k, idx] = v.float().cpu().numpy()
            if prompt_part[k] is not None and prompt_part[k].shape[1] > 0:
                out["prompt_states"][k, idx] = prompt_part[k].mean(1).float().cpu().numpy()
    out["labels"] = np.asarray(data.labels, dtype=np.int64)
    return out


def save_representations(folder: str | Path, split: str, reps: dict[str, Any], info: dict,
                         dtype=np.float16) -> Path:
    """Write ``<folder>/<split>.safetensors`` and ``<split>.json`` (info), atomically."""
    from safetensors.numpy import save

    folder = Path(folder)
    arrays = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in reps.items()}
    path = io.atomic_write_bytes(folder / f"{split}.safetensors", save(arrays))
    io.write_json(folder / f"{split}.json", info)
    return path


def load_representations(folder: str | Path, split: str) -> tuple[dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    folder = Path(folder)
    path = folder / f"{split}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no cached representations at {path}; run extraction first")
    arrays = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in load_file(str(path)).items()}
    return arrays, io.read_json(folder / f"{split}.json")
