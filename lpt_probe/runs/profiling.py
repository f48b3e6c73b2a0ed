"""Peak tensor memory of a block of code, from torch's profiler memory timeline.

Resident-set size (``ru_maxrss``) mixes what torch allocates with what the C allocator
keeps after frees, thread arenas and libraries; on a GPU, ``torch.cuda.max_memory_allocated``
is the usual measure. This gives the same measure on any device: the peak, over the block,
of the bytes held by tensors created inside it (activations saved for backward, gradients,
optimiser states, temporaries). Tensors from before the block are not counted, and the
profiler cannot size them when the block frees one, so the number is the block's own
demand on top of what was already held (the model, the data, a lower-layer cache).

    with tensor_memory() as mem:
        trainer.step(...)
    mem["peak_mb"]
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def _peak_bytes(prof, device: str) -> int:
    from torch.profiler._memory_profiler import Action, MemoryProfile

    want = torch.device(device)
    cur = peak = 0
    for _, action, (key, _version), size in MemoryProfile(prof.profiler.kineto_results).timeline:
        if key.device.type != want.type:
            continue
        if action == Action.CREATE:
            cur += size
        elif action == Action.DESTROY:
            cur -= size
        peak = max(peak, cur)
    return peak


@contextmanager
def tensor_memory(device: str | torch.device = "cpu") -> Iterator[dict]:
    """Measure the block's peak tensor memory on ``device``; fills ``peak_mb`` on exit.

    Profiling slows the block down: measure memory and speed in separate passes."""
    from torch.profiler import ProfilerActivity, profile

    device = str(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    out: dict = {}
    with profile(activities=acts, profile_memory=True, record_shapes=True, with_stack=True) as prof:
        yield out
    out["peak_mb"] = _peak_bytes(prof, device) / 2**20
