"""Encoded splits: token ids ready for a model, and the encoding of a split with the verbalizer.

``encode_split(task, split, tokenizer, kind, max_length)`` renders every example of a
split with the task's template (``lpt_probe.data.verbalizer``) and returns an ``Encoded``:
unpadded token ids, the prediction position, the label, the example id, which tokens
come from the text (``text_mask``) and what truncation did (``truncation``).
``Encoded.batches`` pads each batch to its own longest example (right padding), with
optional length bucketing; ``Encoded.subset`` / ``subsample`` keep some rows (probes
train on a stratified cap); ``Encoded.fingerprint`` names exactly the token ids a result
saw, so a cache keyed on it notices a changed tokenizer, template or ``max_length``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..store import content_key
from .verbalizer import encode

logger = logging.getLogger(__name__)
Tensor = torch.Tensor
HEAVY_TRUNCATION = 0.5  # warn when an example keeps less than this share of its text tokens


@dataclass
class Encoded:
    """One tokenised split: ids (unpadded), prediction positions, labels, example ids."""

    input_ids: list[list[int]]
    pred_positions: list[int]
    labels: list[int]
    ids: list[str] = field(default_factory=list)
    pad_id: int = 0
    text_mask: list[list[int]] | None = None  # per example: 1 where the token is the text's own
    truncation: dict[str, Any] = field(default_factory=dict)  # counts from encode_split

    def __post_init__(self):
        n = len(self.input_ids)
        if not (len(self.pred_positions) == len(self.labels) == n):
            raise ValueError("Encoded: input_ids, pred_positions and labels differ in length")
        if not self.ids:
            self.ids = [str(i) for i in range(n)]
        if self.text_mask is not None and [len(m) for m in self.text_mask] != [len(x) for x in self.input_ids]:
            raise ValueError("Encoded: text_mask must have one entry per token of each example")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids])

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the ids, tokens, prediction positions and labels (order-sensitive)."""
        return content_key([self.ids, self.input_ids, self.pred_positions, self.labels])

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
        out = {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "pred_positions": torch.tensor([self.pred_positions[i] for i in indices], device=device),
            "labels": torch.tensor([self.labels[i] for i in indices], device=device),
            "index": torch.tensor(list(indices)),
        }
        if self.text_mask is not None:
            text = torch.zeros((len(seqs), n), dtype=torch.long)  # [batch, seq]
            for r, i in enumerate(indices):
                text[r, : len(self.text_mask[i])] = torch.tensor(self.text_mask[i], dtype=torch.long)
            out["text_mask"] = text.to(device)
        return out

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

    def subset(self, indices: Sequence[int]) -> "Encoded":
        """The rows ``indices`` (in that order) as a new ``Encoded``."""
        idx = [int(i) for i in indices]
        return Encoded([self.input_ids[i] for i in idx], [self.pred_positions[i] for i in idx],
                       [self.labels[i] for i in idx], [self.ids[i] for i in idx], self.pad_id,
                       None if self.text_mask is None else [self.text_mask[i] for i in idx],
                       dict(self.truncation))

    def subsample(self, cap: int | None, seed: int = 0) -> "Encoded":
        """At most ``cap`` rows, drawn stratified by label with ``seed`` (proportional
        allocation, largest remainder; a rare class keeps its share, at least none), kept in
        their order."""
        if cap is None or len(self) <= cap:
            return self
        labels = np.asarray(self.labels)
        classes, counts = np.unique(labels, return_counts=True)
        quota = cap * counts / counts.sum()
        alloc = np.floor(quota).astype(int)
        for i in sorted(range(len(classes)), key=lambda i: (-(quota[i] - alloc[i]), classes[i]))[: cap - alloc.sum()]:
            alloc[i] += 1
        rng = np.random.default_rng(seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, alloc)])
        return self.subset(np.sort(keep))


def _truncation_stats(enc: dict, ids: list[str]) -> dict[str, Any]:
    kept = np.asarray(enc["kept_fraction"], dtype=float)
    heavy = kept < HEAVY_TRUNCATION
    return {"n": int(len(kept)), "truncated": int(np.sum(enc["truncated"])), "heavily_truncated": int(heavy.sum()),
            "min_kept_fraction": float(kept.min()) if len(kept) else 1.0,
            "heavy_examples": [ids[i] for i in np.flatnonzero(heavy)[:5]]}


def check_max_length(max_length: int, max_positions: int | None) -> None:
    """Refuse a ``max_length`` the model cannot take (more tokens than its position table),
    before anything is encoded or run, naming the limit."""
    if max_positions is not None and max_length > max_positions:
        raise ValueError(f"--max-length {max_length} is above the model's position limit of {max_positions} tokens "
                         f"(longer inputs would fail inside the model); give --max-length {max_positions} or less")


def encode_split(task, examples, tokenizer, kind: str, max_length: int, split_name: str = "",
                 max_positions: int | None = None) -> Encoded:
    """Encode one split (a ``Split`` or a sequence of ``Example``) with the verbalizer.

    Raises when ``max_length`` exceeds ``max_positions`` (the model's position limit,
    ``Backbone.max_positions``) or leaves nothing of an example's text; warns (with the
    count) when examples keep less than half of their text tokens; ``Encoded.truncation``
    holds the counts that run folders record in ``meta.json``."""
    check_max_length(max_length, max_positions)
    examples = list(getattr(examples, "examples", examples))
    enc = encode(task, examples, tokenizer, kind, max_length=max_length)
    ids = [e.id for e in examples]
    stats = _truncation_stats(enc, ids)
    if stats["heavily_truncated"]:
        logger.warning("%s%s: %d of %d examples keep less than %d%% of their text at max_length=%d "
                       "(e.g. %s); raise --max-length to keep more", getattr(task, "name", task),
                       f" {split_name}" if split_name else "", stats["heavily_truncated"], stats["n"],
                       int(HEAVY_TRUNCATION * 100), max_length, ", ".join(stats["heavy_examples"][:3]))
    return Encoded(
        input_ids=[list(map(int, x)) for x in enc["input_ids"]],
        pred_positions=[int(p) for p in enc["pred_positions"]],
        labels=[int(y) for y in enc["labels"]],
        ids=ids,
        pad_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        text_mask=enc["text_mask"],
        truncation=stats,
    )
