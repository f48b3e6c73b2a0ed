"""Representation files filled batch by batch, so extraction holds one batch, not a split.

Extraction computes the states of one batch of examples at a time, and the batches come
in length order, not row order. Two writers put each batch's rows where they belong in a
file sized for the whole split, so nothing grows with the number of examples:

- :class:`StreamedSafetensors`: a safetensors file whose tensors (``[L+1, n, d]`` vectors
  per hidden state, ``[n, l, d]`` prompts, ``[n]`` labels) are known in shape from the
  start. The header is written first, every row at its offset; the file is byte for byte
  what ``safetensors.numpy.save`` writes for the same arrays (same tensor order: larger
  dtypes first, then by name; same padding), so stored representations and their content
  keys do not depend on how they were written. It is written under a temporary name and
  renamed when complete (``store.atomic_file``): a crash leaves no file that looks done.
- :class:`SequenceFile`: one hidden state's states of every example for a sequence probe,
  a flat float16 ``[total_tokens, d]`` file in row order, read back as a
  :class:`~lpt_probe.probing.Sequences` over a read-only ``np.memmap`` (worker processes
  receive it as a reference to the file, not a copy).

Rows are written with ``os.pwrite``, not through a writable memmap: written pages leave
this process's resident memory when the kernel writes them out, instead of counting as
its own until the file is closed.
"""

from __future__ import annotations

import json
import os
import struct
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ... import store
from ...probing import Sequences

__all__ = ["StreamedSafetensors", "SequenceFile", "safetensors_layout"]

_DTYPES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}


def safetensors_layout(specs: dict[str, tuple[Any, tuple[int, ...]]]) -> tuple[bytes, dict[str, int], int]:
    """(the header bytes, name -> byte offset of its data in the file, the file size) of a
    safetensors file holding tensors ``name -> (dtype, shape)``, laid out as the library's
    own writer does."""
    order = sorted(specs, key=lambda k: (-np.dtype(specs[k][0]).itemsize, k))
    meta, start, offsets = {}, 0, {}
    for name in order:
        dtype, shape = np.dtype(specs[name][0]), tuple(int(x) for x in specs[name][1])
        if dtype not in _DTYPES:
            raise ValueError(f"safetensors_layout: dtype {dtype} of {name!r} is not one of {sorted(map(str, _DTYPES))}")
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        meta[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [start, start + size]}
        offsets[name], start = start, start + size
    text = json.dumps(meta, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    header = struct.pack("<Q", len(text)) + text
    return header, {k: len(header) + v for k, v in offsets.items()}, len(header) + start


class StreamedSafetensors:
    """One safetensors file filled row by row (see the module docstring).

    ``with StreamedSafetensors(path, specs) as f: f.put(name, rows, values, k)`` writes
    ``values`` to ``tensor[k, rows]`` (``k`` None: ``tensor[rows]``), cast to the tensor's
    dtype. Rows never written stay 0.
    The file appears at ``path`` when the block ends without an error."""

    def __init__(self, path: str | os.PathLike, specs: dict[str, tuple[Any, tuple[int, ...]]]):
        self.path = Path(path)
        self.specs = {k: (np.dtype(t), tuple(int(x) for x in s)) for k, (t, s) in specs.items()}
        self.header, self.offsets, self.size = safetensors_layout(self.specs)
        self._stack: ExitStack | None = None
        self._fd: int | None = None

    def __enter__(self) -> "StreamedSafetensors":
        self._stack = ExitStack()
        f = self._stack.enter_context(store.atomic_file(self.path, self.size))
        os.pwrite(f.fileno(), self.header, 0)
        self._fd = f.fileno()
        return self

    def __exit__(self, *exc) -> bool:
        stack, self._stack, self._fd = self._stack, None, None
        return bool(stack.__exit__(*exc))

    def put(self, name: str, rows, values, k: int | None = None) -> None:
        """``tensor[k, rows] = values`` (``k`` None: ``tensor[rows] = values``)."""
        dtype, shape = self.specs[name]
        lead = shape[1:] if k is not None else shape  # [n, ...] below k
        row = int(np.prod(lead[1:], dtype=np.int64)) * dtype.itemsize  # bytes of one row
        base = self.offsets[name] + (k * lead[0] * row if k is not None else 0)
        values = np.ascontiguousarray(np.asarray(values).astype(dtype, copy=False))
        for r, v in zip(np.asarray(rows, dtype=np.int64), values):
            os.pwrite(self._fd, v.tobytes(), base + int(r) * row)


class SequenceFile:
    """One hidden state of every example as a flat float16 ``[total_tokens, d]`` file in row
    order (see the module docstring): ``put(row, states)`` writes one example's
    ``[length, d]`` states; ``sequences(readout, prefix)`` closes the file and returns the
    :class:`Sequences` over it."""

    def __init__(self, path: str | os.PathLike, lengths, d: int, dtype=np.float16):
        self.path, self.d, self.dtype = Path(path), int(d), np.dtype(dtype)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, int(self.lengths.sum()) * self.d * self.dtype.itemsize)

    def put(self, row: int, states: np.ndarray) -> None:
        states = np.ascontiguousarray(states, dtype=self.dtype)
        if states.shape != (self.lengths[row], self.d):
            raise ValueError(f"SequenceFile: row {row} takes [{self.lengths[row]}, {self.d}] states, "
                             f"got {states.shape}")
        os.pwrite(self._fd, states.tobytes(), int(self.starts[row]) * self.d * self.dtype.itemsize)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def sequences(self, readout, prefix) -> Sequences:
        self.close()
        values = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(int(self.lengths.sum()), self.d))
        return Sequences(values, self.lengths, readout, prefix)
