"""Per-layer representations: one vector per example and hidden state, or whole sequences.

``extract_many(frozen, models, data)`` runs each batch through the frozen backbone once
and keeps, for the frozen model and for every late-prompt model in ``models``, at every
hidden state 0..L (0 = embeddings; L as HF reports it, i.e. after the final norm for
decoders), one vector per example:

- ``cls``: the first token ([CLS] / <s>; for decoders the first token of the input);
- ``mask``: the prediction position ([MASK] for masked LMs, the last template token for
  causal LMs), the default, as the paper's prediction comes from there;
- ``mean``: the mean over the example's own text tokens (``Encoded.text_mask``: neither
  template words nor special tokens; all real tokens when the tokenizer gave no offsets).

A late prompt at PL changes nothing below it: its hidden states 0..PL-1 are the frozen
model's, so they are *taken* from the frozen pass (bit for bit the same arrays), and only
layers PL..L run per prompt, from the frozen hidden state PL-1. Layers >= PL carry l
prompt positions in front of the text; they are stripped by position, so a text
representation never mixes prompt tokens in. The generated prompt itself
(``prompt`` [n, l, hidden]) and the mean state of the prompt tokens at each hidden state
>= PL (``prompt_states``) are returned separately: they feed the prompt projection.
``extract(model, data)`` is the same for one model. Given open files (``into=``, see
``rep_files.StreamedSafetensors``), ``extract_many`` writes each batch's rows there instead
of returning arrays: memory then holds one batch, whatever the number of examples.

``layer_sequences(frozen, model, data)`` yields, hidden state by hidden state, every
example's whole sequence of states (``probing.Sequences``, float16) for sequence probes:
the states of layer j+1 are computed from those of layer j, so the forward pass runs
once; with a ``folder`` each layer's sequences are a memory-mapped file there and the
running states between layers are on disk, so memory holds one batch.
``include_prompt`` keeps the prompt positions in front of the text from hidden state PL-1
on: what the next layer reads. At PL-1 they are the prompt itself as it joins (a
generator's output there), as in the authors' code, whose ``hidden_states[add_prompt_layer]``
is taken after the prompt is concatenated; the text positions of PL-1 are the frozen
model's.

``save_representations`` / ``load_representations`` write and read one safetensors file per
split (float16 by default) plus a JSON sidecar naming the content key, the model, the
prompt and the data fingerprint, so every probe reuses the same arrays;
``open_representations`` reads them lazily (:class:`StoredArray`: one hidden state at a
time), which is how ``mi`` feeds its probe pieces without holding every condition's
every layer in memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ... import store
from ...data.encoded import Encoded
from ...model.backbone import Backbone
from ...model.late_prompt import LatePromptModel
from ...probing import Sequences
from ...progress import bar
from ..config import REPRESENTATIONS  # noqa: F401  (re-exported: the flags' choices live there)
from .rep_files import SequenceFile

EXTRACT_BATCH = 64  # examples per batch of an extraction pass
Tensor = torch.Tensor


def _pick(h: Tensor, keep: Tensor, pred: Tensor, text: Tensor | None) -> dict[str, Tensor]:
    """The three per-example vectors from text-only states [batch, seq, hidden]."""
    rows = torch.arange(h.shape[0], device=h.device)
    first = torch.where(keep.bool(), torch.arange(keep.shape[1], device=h.device), keep.shape[1]).min(1).values
    w = (text if text is not None and bool((text.sum(1) > 0).all()) else keep).to(h.dtype).unsqueeze(-1)
    return {"cls": h[rows, first], "mask": h[rows, pred], "mean": (h * w).sum(1) / w.sum(1)}


def representation_specs(L: int, n: int, d: int, l: int | None, dtype=np.float16) -> dict[str, tuple]:
    """name -> (dtype, shape) of what ``extract_many`` gives one model (``l`` None: the frozen
    model or random weights, no prompt); ``dtype`` for the float arrays."""
    specs = {r: (dtype, (L + 1, n, d)) for r in REPRESENTATIONS} | {"labels": (np.int64, (n,))}
    if l is not None:
        specs |= {"prompt": (dtype, (n, l, d)), "prompt_states": (dtype, (L + 1, n, d))}
    return specs


class _Arrays:
    """In-memory arrays with :class:`~.rep_files.StreamedSafetensors`' ``put`` (what
    ``extract_many`` fills when it is given no files)."""

    def __init__(self, specs: dict[str, tuple]):
        self.arrays = {k: np.zeros(shape, dtype=t) for k, (t, shape) in specs.items()}

    def put(self, name: str, rows, values, k: int | None = None) -> None:
        a = self.arrays[name] if k is None else self.arrays[name][k]
        a[rows] = values


@torch.inference_mode()
def extract_many(frozen: Backbone, models: dict[str, LatePromptModel | None], data: Encoded,
                 batch_size: int = EXTRACT_BATCH, desc: str = "extract", progress: bool = True,
                 into: dict[str, Any] | None = None) -> dict[str, dict[str, Any]] | None:
    """Representations of every model in ``models`` (name -> late-prompt model, or None for
    the frozen backbone itself) at every hidden state, in one frozen pass per batch.

    Returns name -> {"cls"|"mask"|"mean": [L+1, n, hidden], "labels": [n], and for a late
    prompt "prompt": [n, l, hidden] and "prompt_states": [L+1, n, hidden] (NaN below PL)}.
    Every late-prompt model must wrap ``frozen`` (same backbone weights).

    ``into`` (name -> an open :class:`~.rep_files.StreamedSafetensors` with
    :func:`representation_specs`' tensors) writes each batch's rows to those files instead,
    and returns None: memory then holds one batch, whatever the number of examples."""
    for name, m in models.items():
        if m is not None and m.backbone.model is not frozen.model:
            raise ValueError(f"extract_many: model {name!r} wraps another backbone than `frozen`; its layers "
                             "below the prompt would not be the frozen pass's (use extract() for it)")
        if m is not None:
            m.eval()
    frozen.model.eval()
    L, d, n = frozen.num_hidden_layers, frozen.hidden_size, len(data)
    sinks = into if into is not None else {
        name: _Arrays(representation_specs(L, n, d, m.l if m is not None else None, np.float32))
        for name, m in models.items()}
    labels = np.asarray(data.labels, dtype=np.int64)
    dev = frozen.device
    for idx in bar(list(data.batches(batch_size)), desc=desc, enabled=progress):
        b = data.collate(idx, dev)
        ids, keep, pred, text = b["input_ids"], b["attention_mask"], b["pred_positions"], b.get("text_mask")
        h0 = frozen.embed(ids, keep)
        states = [h0] + frozen.run_layers(h0, keep, 0, L, return_all=True)  # frozen hidden states 0..L
        top = frozen.final(states[-1])
        picked = [{r: v.float().cpu().numpy() for r, v in _pick(states[k] if k < L else top, keep, pred, text).items()}
                  for k in range(L + 1)]
        for name, m in models.items():
            o = sinks[name]
            o.put("labels", idx, labels[idx])
            pl = m.config.prompt_layer if m is not None else L + 1
            for k in range(min(pl, L + 1)):  # below PL: the frozen pass's own vectors
                for r, v in picked[k].items():
                    o.put(r, idx, v, k)
            if m is None:
                continue
            up = m.upper(states[m.config.start_state], keep, pred, return_states=True)
            l = up["prompt"].shape[1]
            upper = up["upper_states"]  # hidden states PL..L, prompt in front
            upper[-1] = frozen.final(upper[-1])
            o.put("prompt", idx, up["prompt"].float().cpu().numpy())
            nan = np.full((len(idx), d), np.nan, dtype=np.float32)
            for k in range(pl if l else L + 1):  # no prompt tokens at these hidden states
                o.put("prompt_states", idx, nan, k)
            for j, s in enumerate(upper):
                k = pl + j
                for r, v in _pick(s[:, l:], keep, pred, text).items():
                    o.put(r, idx, v.float().cpu().numpy(), k)
                if l:
                    o.put("prompt_states", idx, s[:, :l].mean(1).float().cpu().numpy(), k)
    if into is not None:
        return None
    return {name: sink.arrays for name, sink in sinks.items()}


@torch.inference_mode()
def frozen_vectors(frozen: Backbone, data: Encoded, layer: int, representation: str, batch_size: int = EXTRACT_BATCH
                   ) -> np.ndarray:
    """The frozen model's ``representation`` vectors at hidden state ``layer``, ``[n, d]``
    float32, running layers 1..``layer`` only (what ``extract`` gives at that hidden state)."""
    frozen.model.eval()
    out = np.zeros((len(data), frozen.hidden_size), dtype=np.float32)
    for idx in data.batches(batch_size):
        b = data.collate(idx, frozen.device)
        keep = b["attention_mask"]
        h = frozen.embed(b["input_ids"], keep)
        if layer:
            h = frozen.run_layers(h, keep, 0, layer)
        if layer == frozen.num_hidden_layers:
            h = frozen.final(h)
        out[idx] = _pick(h, keep, b["pred_positions"], b.get("text_mask"))[representation].float().cpu().numpy()
    return out


def extract(model: LatePromptModel | Backbone, data: Encoded, batch_size: int = EXTRACT_BATCH, desc: str = "extract",
            progress: bool = True) -> dict[str, Any]:
    """``extract_many`` for one model: a late-prompt model or a bare backbone."""
    if isinstance(model, LatePromptModel):
        return extract_many(model.backbone, {"m": model}, data, batch_size, desc, progress)["m"]
    return extract_many(model, {"m": None}, data, batch_size, desc, progress)["m"]


class _SequenceArray:
    """:class:`~.rep_files.SequenceFile`'s ``put``/``sequences`` over an in-memory array."""

    def __init__(self, lengths, d: int, dtype):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.values = np.zeros((int(self.lengths.sum()), d), dtype=dtype)

    def put(self, row: int, states: np.ndarray) -> None:
        self.values[self.starts[row]:self.starts[row] + self.lengths[row]] = states

    def sequences(self, readout, prefix) -> Sequences:
        return Sequences(self.values, self.lengths, readout, prefix)


class _Chain:
    """Each batch's running states ``(h, key mask, prompt positions in front)`` between
    layers: in memory (on the device), or one file per batch in ``folder`` (read back to
    the device one batch at a time), exactly as computed."""

    def __init__(self, folder: Path | None, device):
        self.folder, self.device, self.items = folder, device, {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def put(self, i: int, h: Tensor, keep: Tensor, l: int) -> None:
        if self.folder is None:
            self.items[i] = (h, keep, l)
        else:
            torch.save((h.cpu(), keep.cpu(), l), self.folder / f"b{i}.pt")

    def get(self, i: int) -> tuple[Tensor, Tensor, int]:
        if self.folder is None:
            return self.items[i]
        h, keep, l = torch.load(self.folder / f"b{i}.pt", map_location=self.device)
        return h, keep, l

    def clear(self) -> None:
        self.items = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@torch.inference_mode()
def layer_sequences(frozen: Backbone, model: LatePromptModel | None, data: Encoded, include_prompt: bool = True,
                    batch_size: int = EXTRACT_BATCH, start: int = 0, dtype=np.float16, progress: bool = False,
                    folder: str | Path | None = None, stop: int | None = None) -> Iterator[tuple[int, Sequences]]:
    """(j, the sequences of hidden state j of every example), for j = ``start``..``stop``
    (default L).

    Readout = the prediction position (shifted by l where the prompt is included: hidden
    states PL-1..L). States of layer j+1 come from those of layer j, batch by batch;
    hidden state L is reported after the final norm, as HF does. ``model`` None = the
    frozen backbone.

    ``folder`` None: every example's states of one layer are held in memory (on the
    device while running, and as the returned arrays). A ``folder``: hidden state j's
    sequences are written to ``folder/h{j}.seq`` (:class:`~.rep_files.SequenceFile`) and
    returned over a read-only memmap of it, and the running states are kept in
    ``folder/chain/``, so memory holds one batch whatever the number of examples. The
    caller removes each ``h{j}.seq`` when it is done with it; the chain is removed when the
    generator ends."""
    frozen.model.eval()
    if model is not None:
        model.eval()
    L = frozen.num_hidden_layers
    stop = L if stop is None else stop
    joins = model.config.start_state if model is not None else L + 1  # the hidden state the prompt joins (PL-1)
    order = list(data.batches(batch_size))
    dev, d, n = frozen.device, frozen.hidden_size, len(data)
    chain = _Chain(Path(folder) / "chain" if folder is not None else None, dev)
    n_text, pred = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)  # per row, in the data's order
    try:
        for i, idx in enumerate(order):
            b = data.collate(idx, dev)
            keep = b["attention_mask"]
            n_text[idx], pred[idx] = keep.sum(1).cpu().numpy(), b["pred_positions"].cpu().numpy()
            chain.put(i, frozen.embed(b["input_ids"], keep), keep, 0)
        for j in bar(range(stop + 1), desc="layer sequences", enabled=progress):
            l_j = model.l if j >= joins else 0  # prompt positions in front at hidden state j
            lo = 0 if include_prompt else l_j
            lengths = l_j - lo + n_text
            sink = None
            if j >= start:
                sink = (SequenceFile(Path(folder) / f"h{j}.seq", lengths, d, dtype) if folder is not None
                        else _SequenceArray(lengths, d, dtype))
            for i, idx in enumerate(order):
                h, keep, l = chain.get(i)
                if j == joins:  # the prompt joins hidden state PL-1: what layer PL reads
                    h, keep = model.insert(h, keep)[:2]
                    l = model.l
                if sink is not None:
                    out = (frozen.final(h) if j == L else h).float().cpu().numpy()
                    for r, row in enumerate(idx):
                        sink.put(row, out[r, lo: l + n_text[row]].astype(dtype))
                if j < stop:
                    if j >= joins:
                        positions = torch.arange(h.shape[1], device=h.device).expand(h.shape[0], h.shape[1])
                        h = frozen.run_layers(h, keep, j, j + 1, positions)
                    else:
                        h = frozen.run_layers(h, keep, j, j + 1)
                    chain.put(i, h, keep, l)
            if sink is not None:
                yield j, sink.sequences(pred + l_j - lo, np.full(n, l_j - lo, dtype=np.int64))
    finally:
        chain.clear()


def save_representations(folder: str | Path, split: str, reps: dict[str, Any], info: dict,
                         dtype=np.float16) -> Path:
    """Write ``<folder>/<split>.safetensors`` and ``<split>.json`` (info), atomically."""
    from safetensors.numpy import save

    folder = Path(folder)
    arrays = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in reps.items()}
    path = store.atomic_write_bytes(folder / f"{split}.safetensors", save(arrays))
    write_representation_info(folder, split, info)
    return path


def write_representation_info(folder: str | Path, split: str, info: dict) -> Path:
    """``<folder>/<split>.json``: ``info`` and the sha256 of the written ``<split>.safetensors``
    (the mark that the split is complete; readers check the file against it)."""
    folder = Path(folder)
    return store.write_json(folder / f"{split}.json",
                            {**info, "sha256": store.file_sha256(folder / f"{split}.safetensors")})


class StoredArray:
    """One stored array, read on access: ``a[k]`` reads only ``a``'s k-th slice along the
    first axis (one hidden state of ``[L+1, n, d]``) from the safetensors file, as float32;
    ``np.asarray(a)`` reads it whole. So an ``mi`` run holds the hidden states its probes
    are fitting, not every condition's every layer (at RoBERTa-large scale with every
    prompt layer, the whole set is tens of GB)."""

    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name

    def _cast(self, v: np.ndarray) -> np.ndarray:
        return v.astype(np.float32) if v.dtype.kind == "f" else v

    def __getitem__(self, k) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="np") as f:
            return self._cast(f.get_slice(self.name)[k])

    def __array__(self, dtype=None, copy=None):
        from safetensors import safe_open

        with safe_open(str(self.path), framework="np") as f:
            v = self._cast(f.get_tensor(self.name))
        return v if dtype is None else v.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="np") as f:
            return tuple(f.get_slice(self.name).get_shape())


_VERIFIED: dict[str, tuple[int, int, str]] = {}  # path -> (size, mtime, sha256) of files whose sha256 matched


def constant_representation(arrays: dict[str, Any], labels) -> str | None:
    """Why stored arrays (``open_representations``' dict) cannot be a real extraction, or None:
    the labels are not ``labels`` (the data's), or a vector representation is one constant
    over every example and feature at the last hidden state (an all-zero file, as ``mi``
    left behind when repeated ``--seeds`` gave two conditions one file, before they were
    refused). Reads the labels and one hidden state per representation, not the whole file."""
    stored = np.asarray(arrays["labels"]) if "labels" in arrays else None
    if stored is None or stored.shape != np.shape(labels) or not np.array_equal(stored, np.asarray(labels)):
        return "its labels are not the data's"
    for r in (r for r in REPRESENTATIONS if r in arrays):
        top = arrays[r][arrays[r].shape[0] - 1]  # [n, hidden] at hidden state L
        if top.size and np.all(top == top.flat[0]):
            return f"its {r} vectors at hidden state {arrays[r].shape[0] - 1} are all {float(top.flat[0]):g}"
    return None


def open_representations(folder: str | Path, split: str, eager: tuple[str, ...] | None = ("labels",)
                         ) -> tuple[dict[str, Any], dict]:
    """Arrays and info of one split: the ``eager`` ones (None: all) read now as numpy arrays
    (floats as float32), every other one a :class:`StoredArray` read on access. The file is
    checked against its sha256 once, here; a damaged file raises ``DamagedFile``."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    path = folder / f"{split}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no cached representations at {path}; run extraction first")
    info = store.read_json_object(folder / f"{split}.json")
    if info.get("sha256"):
        st = path.stat()
        seen = (st.st_size, st.st_mtime_ns, info["sha256"])
        if _VERIFIED.get(str(path.resolve())) != seen:  # each file hashed once per process while unchanged
            if store.file_sha256(path) != info["sha256"]:
                raise store.DamagedFile(f"{path} is damaged (sha256 differs from {split}.json); delete {folder} and "
                                        "rerun")
            _VERIFIED[str(path.resolve())] = seen
    try:
        with safe_open(str(path), framework="np") as f:
            names = list(f.keys())
        arrays = {k: StoredArray(path, k) for k in names}
        for k in names if eager is None else [k for k in eager if k in arrays]:
            arrays[k] = np.asarray(arrays[k])
    except SafetensorError as exc:
        raise store.DamagedFile(f"{path} is damaged ({exc}); delete {folder} and rerun") from None
    return arrays, info


def load_representations(folder: str | Path, split: str) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays (as float32) and info of one split; a damaged file raises ``DamagedFile``."""
    return open_representations(folder, split, eager=None)
