"""Encoded splits, dynamic padding and the lower-layer cache.

``Encoded`` holds one split's token ids (unpadded), prediction positions and labels.
``Encoded.batches`` pads each batch to its own longest example (right padding), with
optional length bucketing.

``LowerLayerCache``: with the frozen backbone in eval mode, hidden state PL-1 of an
example does not depend on the prompt. We compute it once per split and train by running
only layers PL..L. One pass can keep several layers (``layers=range(L)``), so a sweep over
prompt layers pays for the lower layers once. States are kept unpadded per example (so
any batch order and padding reuses them) and can be saved to / loaded from safetensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbone import Backbone

logger = logging.getLogger(__name__)
Tensor = torch.Tensor


@dataclass
class Encoded:
    """One tokenised split: ids (unpadded), prediction positions, labels, example ids."""

    input_ids: list[list[int]]
    pred_positions: list[int]
    labels: list[int]
    ids: list[str] = field(default_factory=list)
    pad_id: int = 0

    def __post_init__(self):
        n = len(self.input_ids)
        if not (len(self.pred_positions) == len(self.labels) == n):
            raise ValueError("Encoded: input_ids, pred_positions and labels differ in length")
        if not self.ids:
            self.ids = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids])

    def num_tokens(self, indices: Sequence[int]) -> int:
        return int(sum(len(self.input_ids[i]) for i in indices))

    def collate(self, indices: Sequence[int], device="cpu") -> dict[str, Tensor]:
        """Pad the chosen examples to their longest (right padding)."""
        seqs = [self.input_ids[i] for i in indices]
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)  # [batch, seq]
        mask = torch.zeros((len(seqs), n), dtype=torch.long)  # [batch, seq]
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "pred_positions": torch.tensor([self.pred_positions[i] for i in indices], device=device),
            "labels": torch.tensor([self.labels[i] for i in indices], device=device),
            "index": torch.tensor(list(indices)),
        }

    def batches(self, batch_size: int, order: Sequence[int] | None = None,
                bucket: bool = False) -> Iterator[list[int]]:
        """Index batches in ``order`` (default: sorted by length, for fast evaluation)."""
        if order is None:
            order = list(np.argsort(self.lengths, kind="stable"))
        order = list(order)
        if bucket:  # sort within windows of 50 batches: similar lengths share a batch
            w = batch_size * 50
            order = [i for s in range(0, len(order), w)
                     for i in sorted(order[s:s + w], key=lambda j: len(self.input_ids[j]))]
        for s in range(0, len(order), batch_size):
            yield order[s:s + batch_size]


class LowerLayerCache:
    """Hidden states of chosen layers for every example of a split, computed once."""

    def __init__(self, states: dict[int, list[Tensor]]):
        self.states = states  # layer -> per-example [seq_i, hidden]

    @property
    def layers(self) -> list[int]:
        return sorted(self.states)

    @classmethod
    @torch.no_grad()
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
        for idx in tqdm(list(data.batches(batch_size)), desc=desc, leave=False, disable=not progress):
            b = data.collate(idx, dev)
            h = backbone.embed(b["input_ids"], b["attention_mask"])
            states = [h] + backbone.run_layers(h, b["attention_mask"], 0, top, return_all=True)
            lengths = b["attention_mask"].sum(1).tolist()
            for k in layers:
                s = states[k].to(dtype or states[k].dtype).cpu()
                for r, i in enumerate(idx):
                    out[k][i] = s[r, : lengths[r]].clone()
        return cls(out)  # type: ignore[arg-type]

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
        from safetensors.torch import save_file

        flat = {f"{k}/{i}": t.contiguous() for k, ts in self.states.items() for i, t in enumerate(ts)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file(flat, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "LowerLayerCache":
        from safetensors.torch import load_file

        flat = load_file(str(path))
        states: dict[int, dict[int, Tensor]] = {}
        for key, t in flat.items():
            k, i = key.split("/")
            states.setdefault(int(k), {})[int(i)] = t
        return cls({k: [v[i] for i in range(len(v))] for k, v in states.items()})
