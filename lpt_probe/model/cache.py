"""The lower-layer cache: hidden states below the prompt layer, computed once.

``LowerLayerCache``: with the frozen backbone in eval mode, hidden state PL-1 of an
example does not depend on the prompt. We compute it once per split and train by running
only layers PL..L. One pass can keep several layers (``layers=range(L)``), so a sweep over
prompt layers pays for the lower layers once. States are kept unpadded per example (so
any batch order and padding reuses them) and can be saved to / loaded from safetensors.

``build`` runs under ``torch.inference_mode`` (no autograd bookkeeping at all), so the
stored states are inference tensors; training still reads them as the input of layers
PL..L because ``batch`` copies them into a new, ordinary tensor (inference tensors may be
read outside inference mode, only not saved for backward or changed in place).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from ..data.encoded import Encoded
from ..progress import bar
from ..store import atomic_write_bytes
from .backbone import Backbone

logger = logging.getLogger(__name__)
Tensor = torch.Tensor


class LowerLayerCache:
    """Hidden states of chosen layers for every example of a split, computed once."""

    def __init__(self, states: dict[int, list[Tensor]], data_fingerprint: str | None = None):
        self.states = states  # layer -> per-example [seq_i, hidden]
        self.data_fingerprint = data_fingerprint  # Encoded.fingerprint of the split it was built on

    def check(self, data: Encoded, what: str = "split") -> None:
        """Refuse a cache built on other token ids than ``data`` (it would silently mix data)."""
        if self.data_fingerprint is not None and self.data_fingerprint != data.fingerprint:
            raise ValueError(f"the lower-layer cache of the {what} was built on other data "
                             f"(fingerprint {self.data_fingerprint[:12]} vs {data.fingerprint[:12]}); rebuild it")

    def only(self, layer: int) -> "LowerLayerCache":
        """A cache holding ``layer`` alone (a cell training from PL-1 needs nothing else)."""
        if layer not in self.states:
            raise KeyError(f"layer {layer} is not cached (cached: {self.layers})")
        return LowerLayerCache({layer: self.states[layer]}, self.data_fingerprint)

    @property
    def layers(self) -> list[int]:
        return sorted(self.states)

    @classmethod
    @torch.inference_mode()
    def build(cls, backbone: Backbone, data: Encoded, layers: Sequence[int], batch_size: int = 64,
              dtype: torch.dtype | None = None, desc: str = "lower-layer cache",
              progress: bool = True) -> "LowerLayerCache":
        if backbone.model.training:
            raise ValueError("the lower-layer cache needs the backbone in eval mode (no dropout)")
        layers = sorted(set(int(k) for k in layers))
        top = max(layers)
        if not 0 <= min(layers) <= top <= backbone.num_hidden_layers:
            raise ValueError(f"cache layers {layers} out of range 0..{backbone.num_hidden_layers}")
        out: dict[int, list[Tensor | None]] = {k: [None] * len(data) for k in layers}
        dev = backbone.device
        for idx in bar(list(data.batches(batch_size)), desc=desc, enabled=progress):
            b = data.collate(idx, dev)
            h = backbone.embed(b["input_ids"], b["attention_mask"])
            states = [h] + backbone.run_layers(h, b["attention_mask"], 0, top, return_all=True)
            lengths = b["attention_mask"].sum(1).tolist()
            for k in layers:
                s = states[k].to(dtype or states[k].dtype).cpu()
                for r, i in enumerate(idx):
                    out[k][i] = s[r, : lengths[r]].clone()
        return cls(out, data.fingerprint)  # type: ignore[arg-type]

    def batch(self, layer: int, indices: Sequence[int], device="cpu") -> Tensor:
        """Padded states of ``layer`` for ``indices``. # [batch, seq, hidden]"""
        if layer not in self.states:
            raise KeyError(f"layer {layer} is not cached (cached: {self.layers})")
        seqs = [self.states[layer][i] for i in indices]
        n = max(s.shape[0] for s in seqs)
        out = seqs[0].new_zeros(len(seqs), n, seqs[0].shape[-1])
        for r, s in enumerate(seqs):
            out[r, : s.shape[0]] = s
        return out.to(device)

    def save(self, path: str | Path) -> None:
        """Write every state to one safetensors file (atomically), with the data fingerprint."""
        from safetensors.torch import save

        flat = {f"{k}/{i}": t.contiguous() for k, ts in self.states.items() for i, t in enumerate(ts)}
        meta = {"data_fingerprint": self.data_fingerprint or ""}
        atomic_write_bytes(path, save(flat, metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> "LowerLayerCache":
        from safetensors import safe_open

        states: dict[int, dict[int, Tensor]] = {}
        with safe_open(str(path), framework="pt") as f:
            fingerprint = (f.metadata() or {}).get("data_fingerprint") or None
            for key in f.keys():
                k, i = key.split("/")
                states.setdefault(int(k), {})[int(i)] = f.get_tensor(key)
        return cls({k: [v[i] for i in range(len(v))] for k, v in states.items()}, fingerprint)
