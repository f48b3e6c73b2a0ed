"""The irreducible work of a late-prompt training step, to time the trainer against.

A late prompt's training step must run layers PL..L forward on hidden state PL-1 with
the prompt prepended, and backward to the prompt (and the head). Everything else the
trainer does per step (collating token ids, padding cached states, the optimiser,
clipping, bookkeeping) is overhead on top of that. This module does only the necessary
part, on batches prepared beforehand, so that ``benchmarks/bench_train.py`` can report
``trainer / bare`` (how close the training loop runs to its limit) and ``benchmarks/
bench_sweep.py`` the ideal cost of a sweep.

    batches = bare_batches(model, train, plan, cache)   # collated, moved, pre-padded
    grads = bare_gradients(model, batches[0])            # the step's gradient
    timing = time_bare(model, batches, warmup=3)         # {"seconds", "tokens", ...}

``bare_gradients`` is what ``Trainer.step`` computes before clipping and the update, on
the same batch (``tests/docs/test_bench_harness.py`` holds them equal): the loss is the
model's own ``loss``, the forward its own ``upper``, so nothing here can drift from the
trainer but the overhead this module exists to leave out. For S-IDPG (an input prompt made
from a frozen first pass) ``upper`` includes that first pass: it is part of the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from ..data.encoded import Encoded
from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptModel

Tensor = torch.Tensor


@dataclass
class BareBatch:
    """One training batch, ready for layers PL..L: nothing is left to do per step."""

    h_low: Tensor  # hidden state PL-1 of the text, zero-padded # [batch, seq, hidden]
    attention_mask: Tensor  # [batch, seq]
    pred_positions: Tensor  # [batch]
    labels: Tensor  # [batch]
    tokens: int  # text tokens (what tokens/s counts, as Trainer.fit does)


def _check(model: LatePromptModel) -> None:
    if not (model.method.late_prompt and model.method.cacheable):
        raise ValueError(f"the bare loop times a late prompt (lpt, prompt-tuning, s-idpg); method="
                         f"{model.config.method!r} trains below the prompt layer or runs the whole model")


@torch.no_grad()
def bare_batches(model: LatePromptModel, data: Encoded, batches: Sequence[Sequence[int]],
                 cache: LowerLayerCache | None = None, device: str | torch.device = "cpu") -> list[BareBatch]:
    """Collate ``batches`` of ``data`` and compute (or take from ``cache``) their hidden
    state PL-1, once, on ``device``. With ``cache`` the states are exactly the trainer's
    (``LowerLayerCache.batch``); without, the frozen lower layers run here, in eval mode."""
    _check(model)
    state = model.config.start_state
    if cache is not None:
        cache.check(data)
    out = []
    was = model.training
    model.eval()
    try:
        for idx in batches:
            b = data.collate(idx, device)
            if cache is not None:
                h = cache.batch(state, idx, device)
            else:
                h = model.lower(b["input_ids"], b["attention_mask"])
            out.append(BareBatch(h.contiguous(), b["attention_mask"], b["pred_positions"], b["labels"],
                                 data.num_tokens(idx)))
    finally:
        model.train(was)
    return out


def synchronize(device: str | torch.device) -> None:
    """Wait for ``device``'s queued kernels (a CUDA device runs asynchronously: a clock read
    right after a launch would time the launch, not the work); nothing to wait for on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_gradients(model: LatePromptModel, batch: BareBatch) -> dict[str, Tensor]:
    """Layers PL..L forward and backward on ``batch``: the gradient of the batch's mean
    loss for every trainable parameter (nothing is accumulated in ``.grad``)."""
    names, params = zip(*model.trainable_named_parameters())
    out = model.upper(batch.h_low, batch.attention_mask, batch.pred_positions)
    grads = torch.autograd.grad(model.loss(out, batch.labels), params)
    return dict(zip(names, grads))


def time_bare(model: LatePromptModel, batches: Sequence[BareBatch], warmup: int = 0) -> dict[str, float]:
    """Run ``bare_gradients`` over ``warmup`` untimed batches, then time the rest (in
    training mode, as the trainer runs: the generator's dropout is part of the work).
    Returns seconds, text tokens and tokens/s of the timed batches (on a GPU each batch is
    timed to the end of its kernels: :func:`synchronize`)."""
    _check(model)
    if warmup >= len(batches):
        raise ValueError(f"warmup={warmup} leaves none of the {len(batches)} batches to time")
    was = model.training
    model.train()
    try:
        device = batches[0].h_low.device if batches else torch.device("cpu")
        for b in batches[:warmup]:
            bare_gradients(model, b)
        seconds, tokens = 0.0, 0
        for b in batches[warmup:]:
            synchronize(device)
            t = time.perf_counter()
            bare_gradients(model, b)
            synchronize(device)
            seconds += time.perf_counter() - t
            tokens += b.tokens
    finally:
        model.train(was)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds if seconds > 0 else float("nan")}
