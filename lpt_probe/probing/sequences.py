"""Probe inputs: ragged sequences of hidden states (:class:`Sequences`) and the one
validation helper, :func:`check_xy`, that every probe and estimator calls.

A vector probe (``input_kind = "vector"``: linear, MLP) reads one vector per example,
``X [n, d]``. A sequence probe (``input_kind = "sequence"``: the transformer probe)
reads a layer's whole sequence of hidden states per example. :class:`Sequences` holds
those without padding: a flat ``values [total_tokens, d]`` array (float16 or float32,
in memory or a read-only ``np.memmap`` of a file), per-sequence ``lengths [n]`` and
``starts [n]`` (where each sequence begins in ``values``), and a ``readout [n]`` index
per sequence (the prediction position, e.g. the [MASK] token, inside that sequence).

It behaves like an array of rows where the estimators need it: ``len(seqs)``,
``seqs[idx]`` with an int array, a slice or a boolean mask returns a new
:class:`Sequences` over the *same* ``values`` (only the per-sequence arrays are
indexed: how ``online_codelength`` permutes and takes prefixes, and how
``probe_information`` passes splits, without copying a layer's states),
``seqs[i]`` with a plain int returns the ``[length_i, d]`` array, and ``seqs.d`` is the
width. :meth:`Sequences.padded` and :meth:`Sequences.pad_batch` (torch, imported lazily)
build padded batches ``[b, s, d]`` with a boolean key mask that is True at real tokens.
Whole-set passes (:meth:`Sequences.token_moments`, the finiteness check, pooled views)
read ``values`` in chunks of tokens whose float64 copy is at most ``CHUNK_BYTES``, so over
a memory-mapped file a probe holds a batch and a chunk, not the layer.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Sequences", "check_xy", "check_features", "n_features", "INPUT_KINDS", "CHUNK_BYTES"]

INPUT_KINDS = ("vector", "sequence")
CHUNK_BYTES = 32 << 20  # float64 bytes of the tokens a whole-set pass reads at once


class Sequences:
    """Ragged sequences of d-dimensional states (see the module docstring).

    Parameters
    ----------
    values: ``[total_tokens, d]`` states of all sequences. float16 stays float16 (half the
        memory; a float16 ``np.memmap`` stays a memmap, read on access); any other real
        dtype is stored as float32.
    lengths: ``[n]`` tokens per sequence, each >= 1.
    readout: ``[n]`` prediction position inside each sequence, in ``[0, length_i)``;
        None means the last token of each sequence.
    prefix: ``[n]`` how many leading positions of each sequence are not text (a late
        prompt's l positions, from hidden state PL-1 on); None means none. They are part
        of the sequence a probe reads, but :meth:`token_moments` (the standardisation a
        probe learns) is taken over the text tokens only, so the same text gets the same
        scaling with or without a prompt in front.
    starts: ``[n]`` the row of ``values`` where each sequence begins; None means the
        sequences are ``values`` concatenated in order (then ``lengths`` must sum to
        ``total_tokens``). Indexing a :class:`Sequences` gives one with the same
        ``values`` and the selected ``starts``.
    """

    def __init__(self, values, lengths, readout=None, prefix=None, starts=None):
        if not (isinstance(values, np.ndarray) and values.dtype == np.float16):
            values = np.asarray(values)
            if values.dtype != np.float16:
                values = values.astype(np.float32, copy=False)
        if values.ndim != 2:
            raise ValueError(f"Sequences values must be 2-D [total_tokens, d], got shape {values.shape}")
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if len(lengths) and lengths.min() < 1:
            raise ValueError(f"every sequence needs at least one token; sequence {int(np.argmin(lengths))} "
                             f"has length {int(lengths.min())}")
        if starts is None:
            if int(lengths.sum()) != len(values):
                raise ValueError(f"lengths sum to {int(lengths.sum())} but values has {len(values)} rows; "
                                 "values must be the sequences' states concatenated in order")
            starts = np.cumsum(lengths) - lengths
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        if len(starts) != len(lengths) or (len(starts) and (starts.min() < 0 or
                                                            (starts + lengths).max() > len(values))):
            raise ValueError(f"starts must hold {len(lengths)} rows of values where sequences of the given lengths "
                             f"fit inside its {len(values)} rows, got {starts[:5].tolist()}...")
        readout = lengths - 1 if readout is None else np.asarray(readout, dtype=np.int64).reshape(-1)
        if len(readout) != len(lengths):
            raise ValueError(f"readout has {len(readout)} entries for {len(lengths)} sequences")
        bad = (readout < 0) | (readout >= lengths)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"readout[{i}]={int(readout[i])} is outside sequence {i} of length "
                             f"{int(lengths[i])}; readout indexes positions inside each sequence")
        prefix = np.zeros(len(lengths), dtype=np.int64) if prefix is None else \
            np.asarray(prefix, dtype=np.int64).reshape(-1)
        if len(prefix) != len(lengths) or (len(prefix) and (prefix.min() < 0 or (prefix >= lengths).any())):
            raise ValueError(f"prefix must hold {len(lengths)} counts in [0, length_i) (at least one text token "
                             f"per sequence), got {prefix[:5].tolist()}...")
        self.prefix = prefix  # [n] leading non-text positions
        self.values = values  # [total_tokens, d]; may hold rows no sequence reads (after indexing)
        self.lengths = lengths  # [n]
        self.readout = readout  # [n]
        self.starts = starts  # [n] first row of each sequence in values

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_list(cls, arrays: Sequence[np.ndarray], readout=None) -> "Sequences":
        """From a list of ``[length_i, d]`` arrays."""
        if len(arrays) == 0:
            raise ValueError("from_list needs at least one sequence")
        arrays = [np.asarray(a) for a in arrays]
        dtype = np.float16 if all(a.dtype == np.float16 for a in arrays) else np.float32
        return cls(np.concatenate(arrays).astype(dtype, copy=False), [len(a) for a in arrays], readout)

    @classmethod
    def from_padded(cls, h, mask, readout=None) -> "Sequences":
        """From padded states ``h [n, s, d]`` and ``mask [n, s]`` (True/1 at real tokens,
        which must come first in each row: right padding)."""
        h, mask = np.asarray(h), np.asarray(mask).astype(bool)
        if h.ndim != 3 or mask.shape != h.shape[:2]:
            raise ValueError(f"from_padded needs h [n, s, d] and mask [n, s], got {h.shape} and {mask.shape}")
        lengths = mask.sum(axis=1)
        if not np.array_equal(mask, np.arange(h.shape[1])[None, :] < lengths[:, None]):
            raise ValueError("from_padded expects right padding (real tokens first in every row)")
        return cls(h[mask], lengths, readout)

    @classmethod
    def from_vectors(cls, X) -> "Sequences":
        """Every row of ``X [n, d]`` as a sequence of one token."""
        X = np.asarray(X)
        return cls(X, np.ones(len(X), dtype=np.int64))

    # -- array-like ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def d(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_tokens(self) -> int:
        """Tokens of the sequences (``lengths.sum()``; ``values`` may hold more rows)."""
        return int(self.lengths.sum())

    @property
    def offsets(self) -> np.ndarray:
        """``[n + 1]`` where each sequence begins and ends in :meth:`compact` order."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if len(self) else 0

    def __repr__(self) -> str:
        return f"Sequences(n={len(self)}, d={self.d}, tokens={self.n_tokens}, dtype={self.dtype})"

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(np.arange(len(self))[key])
            return np.asarray(self.values[self.starts[i]:self.starts[i] + self.lengths[i]])  # [length_i, d]
        idx = np.arange(len(self))[key]  # slices, boolean masks, int arrays (numpy's rules)
        if idx.ndim != 1:
            raise IndexError(f"Sequences take 1-D indices, got an index of shape {idx.shape}")
        return Sequences(self.values, self.lengths[idx], self.readout[idx], self.prefix[idx], self.starts[idx])

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def _rows(self, idx) -> np.ndarray:
        """``[tokens]`` rows of ``values`` of sequences ``idx``, in order."""
        lengths = self.lengths[idx]
        return np.repeat(self.starts[idx] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())

    def _chunks(self) -> Iterator[np.ndarray]:
        """Consecutive runs of sequence indices whose tokens' float64 copy takes at most
        ``CHUNK_BYTES`` (or one sequence)."""
        ends = np.cumsum(self.lengths)
        tokens = max(1, CHUNK_BYTES // (8 * self.d))
        lo = 0
        while lo < len(self):
            hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + tokens, "right")))
            yield np.arange(lo, hi)
            lo = hi

    def compact(self) -> "Sequences":
        """The same sequences with ``values`` holding exactly them, in order, in memory."""
        return Sequences(np.asarray(self.values[self._rows(np.arange(len(self)))]), self.lengths, self.readout,
                         self.prefix)

    def row_digests(self) -> list[bytes]:
        """One digest per sequence (states + readout + prefix), for duplicate detection."""
        import hashlib

        return [hashlib.blake2b(self[i].tobytes() + int(self.readout[i]).to_bytes(8, "little")
                                + int(self.prefix[i]).to_bytes(8, "little"), digest_size=16).digest()
                for i in range(len(self))]

    def all_finite(self) -> bool:
        """Whether every state of the sequences is finite (read chunk by chunk)."""
        return all(np.isfinite(self.values[self._rows(c)]).all() for c in self._chunks())

    # -- pooled views -------------------------------------------------------------------
    def readout_vectors(self) -> np.ndarray:
        """``[n, d]`` float32 state at each sequence's readout position."""
        return self.values[self.starts + self.readout].astype(np.float32)

    def mean_pool(self) -> np.ndarray:
        """``[n, d]`` float32 mean of each sequence's states."""
        out = np.zeros((len(self), self.d), dtype=np.float32)
        for c in self._chunks():
            v = self.values[self._rows(c)].astype(np.float32)
            out[c] = np.add.reduceat(v, np.cumsum(self.lengths[c]) - self.lengths[c], axis=0)  # [chunk, d]
        return out / self.lengths[:, None]

    def text_token_mask(self, idx=None) -> np.ndarray:
        """``[tokens]`` bool over the tokens of sequences ``idx`` (default all) in order:
        True at text tokens, False at the leading ``prefix`` ones."""
        idx = np.arange(len(self)) if idx is None else idx
        lengths = self.lengths[idx]
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position in its sequence
        return within >= np.repeat(self.prefix[idx], lengths)

    def token_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std over the TEXT tokens (leading ``prefix`` positions, a
        late prompt's, left out), float64 ``[d]`` each (std 0 -> 1); two passes over the
        chunks (the sum, then the squared deviations from the mean)."""
        def text(c):
            v = self.values[self._rows(c)]
            return (v if not self.prefix[c].any() else v[self.text_token_mask(c)]).astype(np.float64)

        count, total = 0, np.zeros(self.d)
        for c in self._chunks():
            v = text(c)
            count, total = count + len(v), total + v.sum(axis=0)
        mean = total / count
        sq = np.zeros(self.d)
        for c in self._chunks():
            sq += np.square(text(c) - mean).sum(axis=0)
        std = np.sqrt(sq / count)
        return mean, np.where(std > 0, std, 1.0)

    # -- padded batches -----------------------------------------------------------------
    def padded(self, idx=None) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ``h [b, s, d]`` float32 (zeros at padding) and ``key_mask [b, s]``
        bool (True at real tokens) for sequences ``idx`` (default all), ``s`` their max length."""
        idx = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64).reshape(-1)
        lengths = self.lengths[idx]
        s = int(lengths.max()) if len(idx) else 0
        key_mask = np.arange(s)[None, :] < lengths[:, None]  # [b, s]
        h = np.zeros((len(idx), s, self.d), dtype=np.float32)  # [b, s, d]
        h[key_mask] = self.values[self._rows(idx)]
        return h, key_mask

    def pad_batch(self, idx=None, device="cpu"):
        """:meth:`padded` as torch tensors on ``device``: ``h [b, s, d]`` float32 and
        ``key_mask [b, s]`` bool (True at real tokens)."""
        import torch

        h, key_mask = self.padded(idx)
        return torch.as_tensor(h, device=device), torch.as_tensor(key_mask, device=device)


def n_features(X) -> int:
    """d of a feature matrix ``[n, d]`` or of :class:`Sequences`."""
    return X.d if isinstance(X, Sequences) else int(np.shape(X)[1])


def _kind_error(X, kind: str, owner: str, what: str) -> ValueError:
    if kind == "vector":
        return ValueError(
            f"{owner} reads one vector per example ([n, d] array, input_kind='vector') but the {what} "
            f"features are {X!r}; pool them first (X.readout_vectors() or X.mean_pool()) or use a "
            "sequence probe such as 'transformer'")
    return ValueError(
        f"{owner} reads a sequence of states per example (input_kind='sequence') but the {what} features are "
        f"an array of shape {np.shape(X)}; pass lpt_probe.probing.Sequences (Sequences.from_vectors(X) "
        "treats each row as a one-token sequence) or use a vector probe such as 'linear'")


def check_features(X, kind: str | None = None, owner: str = "this probe", what: str = "predict",
                   finite: bool = True):
    """Check that ``X`` is the input kind a probe reads (see :func:`check_xy`); returns
    a 2-D float64 array or the :class:`Sequences` unchanged."""
    if kind is not None and kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {kind!r}")
    if isinstance(X, Sequences):
        if kind == "vector":
            raise _kind_error(X, kind, owner, what)
        if finite and not X.all_finite():
            raise ValueError(f"{what} sequences contain NaN or inf")
        return X
    if kind == "sequence":
        raise _kind_error(X, kind, owner, what)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} features must be 2-D [n, d] (or Sequences for sequence probes), "
                         f"got shape {X.shape}")
    if finite and not np.isfinite(X).all():
        raise ValueError(f"{what} features contain NaN or inf")
    return X


def check_xy(X, y, n_classes: int, what: str = "training", kind: str | None = None,
             owner: str = "this probe"):
    """Validate features and integer labels ``y [n]`` in ``[0, n_classes)``.

    ``X`` is a 2-D array ``[n, d]`` (returned as float64) or :class:`Sequences`
    (returned as is). ``kind`` ("vector" | "sequence" | None = either) is the
    ``input_kind`` of the probe that will read them; ``owner`` names it in errors.
    Returns ``(X, y)`` with ``y`` as int64.
    """
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    X = check_features(X, kind, owner, what, finite=False)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{what} labels must be 1-D with len(X)={len(X)} rows, got shape {y.shape}")
    if len(y) == 0:
        raise ValueError(f"{what} split is empty: a probe needs at least one row")
    if not np.issubdtype(y.dtype, np.integer):
        if np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{what} labels must be integers in [0, {n_classes}), got dtype {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise ValueError(
            f"{what} label {y[bad][0].item()!r} is outside [0, {n_classes}); "
            "map labels to 0..n_classes-1 before probing"
        )
    check_features(X, kind, owner, what, finite=True)
    return X, y.astype(np.int64)
