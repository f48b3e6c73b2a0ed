"""torch modules of the sequence probe (:class:`~.transformer.TransformerProbe`).

This module imports torch at the top: import it only where torch is needed (the probe
does, inside ``fit``). :class:`SequenceClassifier` is the whole network: standardise ->
optional input projection -> optional learned positions -> encoder -> readout -> linear.
An encoder is any module ``(h [b, s, w], key_mask [b, s] bool, True at real tokens) ->
h [b, s, w]``; :class:`BuiltinEncoder` is the default one.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BuiltinEncoder", "AttentionPool", "SequenceClassifier"]


class BuiltinEncoder(nn.Module):
    """``num_layers`` pre-norm ``nn.TransformerEncoderLayer`` (batch_first)."""

    def __init__(self, width: int, num_layers: int, num_heads: int, ffn: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=ffn, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(h, src_key_padding_mask=~key_mask)  # [b, s, w]


class AttentionPool(nn.Module):
    """Learned attention pooling over the real tokens: ``sum_t softmax(w . h_t) h_t``."""

    def __init__(self, width: int):
        super().__init__()
        self.score = nn.Linear(width, 1)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~key_mask, float("-inf"))  # [b, s]
        return torch.einsum("bs,bsw->bw", torch.softmax(scores, dim=1), h)  # [b, w]


class SequenceClassifier(nn.Module):
    """Sequence of states -> class logits ``[b, K]``.

    ``mean``/``scale`` ([d] or None) standardise the inputs; ``width`` None keeps d (no
    projection); ``positional`` adds learned position embeddings (``max_positions`` of
    them); ``readout`` is "position" (the state at each sequence's readout index) or
    "attention" (:class:`AttentionPool`).
    """

    def __init__(self, d: int, n_classes: int, width: int | None, positional: bool, max_positions: int,
                 encoder: nn.Module, readout: str, mean=None, scale=None):
        super().__init__()
        w = d if width is None else width
        self.register_buffer("mean", None if mean is None else torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", None if scale is None else torch.as_tensor(scale, dtype=torch.float32))
        self.proj = nn.Identity() if width is None else nn.Linear(d, w)
        self.pos = None
        if positional:
            self.pos = nn.Embedding(max_positions, w)
            nn.init.normal_(self.pos.weight, std=0.02)
        self.encoder = encoder
        self.pool = AttentionPool(w) if readout == "attention" else None
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, n_classes)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            h = (h - self.mean) / self.scale
        h = self.proj(h)  # [b, s, w]
        if self.pos is not None:
            h = h + self.pos(torch.arange(h.shape[1], device=h.device))[None]
        h = self.encoder(h, key_mask)  # [b, s, w]
        if self.pool is not None:
            z = self.pool(h, key_mask)
        else:
            z = h[torch.arange(h.shape[0], device=h.device), readout]  # [b, w]
        return self.head(self.norm(z))  # [b, K]
