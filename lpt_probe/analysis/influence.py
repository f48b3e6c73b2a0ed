"""The trade-off of Section 4, measured: the prompt's influence on the text and the label
signal's way down to the prompt, hidden state by hidden state. The library behind
``python -m lpt_probe.influence``.

The paper explains Figure 2 by two forces it never measures: an early prompt's label
signal must travel back through many frozen layers (*propagation distance*), a late
prompt has little *influence* on the text's hidden states. ``InfluenceConfig`` holds the
settings, ``run_influence(cfg)`` does the work, resumably; the measurement of one model
on one batch is :func:`measure_batch` (start reading there). For each prompt layer PL and
seed, at ``checkpoint`` ``init`` (the untrained prompt the run starts from: the same seed,
``torch.manual_seed(seed)`` right before building the model, as the trainer does, so it
equals the run's ``checkpoints/step-0``), every ``step-N`` of ``checkpoints`` and
``trained`` (the best-on-dev prompt), on ``influence_max`` examples of ``split``:

influence of the prompt on the text (hidden state j = the output of layer j)
  - ``attention_mass`` (j >= PL): the attention probability that layer j's text queries
    put on the l prompt keys, mean over heads; ``prediction`` = the query at the
    prediction position, ``text_mean`` = mean over the example's real tokens. In a
    decoder the prompt precedes the text, so every text query sees all l prompt keys.
    The probabilities come from the model itself (``Backbone.capture_attention``: its
    eager path), so SDPA / flash models give the eager numbers.
  - ``displacement`` = ||h_j - h_j^frozen|| / ||h_j^frozen|| and ``cosine`` between them
    (every j), at the text positions only: the late-prompt model's states (its own lower
    pass below PL, prompt positions dropped above) against the frozen model's on the text
    alone. Below PL both are the same computation: displacement 0, cosine 1, exactly.
    Hidden state L is after the decoders' final norm, as everywhere in lpt_probe.
  - ``logprob_drop_layer`` / ``logprob_drop_from`` (j >= PL, position ``prediction``):
    the gold label's log-probability AMONG THE LABELS (a log-softmax over the label words'
    logits, or the classifier's; never the whole vocabulary, :func:`gold_logprob`)
    with the prompt intact minus with the prompt's keys hidden from the text queries of
    layer j alone / of layers j..L (``Backbone.run_layers(blocked=...)``; prompt queries
    still run). Hiding it from every layer >= PL gives the frozen model's own logits: for
    BERT, RoBERTa, GPT-2 (positions only at the embeddings) and DeBERTa (relative
    positions) the same text-to-text computation, for rotary models (Llama) the same up to
    float rounding of the rotation at positions shifted by l (the text sits at l..l+n-1
    above PL, ``lpt_probe.model.late_prompt``; rotary scores depend on offsets only).

the label signal on its way down (loss = the model's own loss on the gold label)
  - ``grad_norm`` (j = PL-1..L): the norm of d loss / d h_j, at ``prediction`` and mean
    over real tokens of the per-token norms (``text_mean``); ``prompt`` (layer PL-1): the
    norm w.r.t. the inserted prompt itself (l x hidden; the generated prompt for
    generators). At j = L the gradient is w.r.t. the state the head reads.
  - ``grad_x_state_norm`` = ||g|| ||h|| and ``grad_dot_state`` = g . h (same positions as
    ``grad_norm``; at ``prompt`` h is the inserted prompt): scale-free beside the raw norm.
    A layer-normed model is (nearly) blind to the scale of its hidden states, so where the
    states are large the gradient is small for that reason alone, and raw norms of different
    layers do not compare; g . h is the change of the loss when h is scaled by (1 + eps),
    per eps, and ||g|| ||h|| bounds it. (The loss here is the model's own training loss,
    ``LatePromptModel.loss``: what the prompt's gradient is.)
  - ``grad_coherence``: ||mean_i g_i||^2 / mean_i ||g_i||^2 across examples (1 = every
    example pushes the same way, about 1/n = noise), of the gradient at ``prediction``,
    of the mean over real tokens of the per-token gradients (``text_mean``: the gradient
    w.r.t. one shift shared by every token, over n) and w.r.t. the prompt (``prompt``).

Per-example gradients come from one backward pass of the summed loss (examples do not
interact in a batch; eval mode). Values are means over examples with a percentile 95%
bootstrap over examples (``ci_low``, ``ci_high``; the coherence is recomputed on each
resample); ``n`` = examples.

Caching follows ``lpt_probe.analysis.mi``: prompts are trained (or finished run folders
reused) under ``runs/<condition>-<key>`` through ``lpt_probe.runs.run.train``; each
(condition, checkpoint) is one **content-addressed** piece (``pieces/``) keyed by the
model (run key and checkpoint, or for ``init`` what determines the initial prompt), the
measured data's fingerprint and every measurement setting; a piece is reused only when
its stored key matches and its CSV is intact. ``influence.csv`` is assembled from exactly
this invocation's pieces.
"""

from __future__ import annotations

import logging
import os
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import store
from ..data.encoded import Encoded
from ..layers import parse_prompt_layers
from ..model.backbone import Backbone
from ..model.generators import GENERATORS
from ..model.late_prompt import LatePromptConfig, LatePromptModel
from ..model.loading import DEFAULT_MODEL, PRESETS, identity, load_model, model_slug, resolve_device
from ..progress import bar
from ..runs.folders import check_run, find_run, load_run
from ..runs.run import SPLITS, prepare, run_config, train
from ..runs.trainer import TrainConfig
from ..viz import paper_style, plot_influence_by_layer, save_figure

logger = logging.getLogger(__name__)
Tensor = torch.Tensor
PIECE_FORMAT = 2  # 2: log-prob drops over the label words only; scale-free gradient measures
COLUMNS = ["task", "model", "method", "generator", "prompt_layer", "seed", "checkpoint", "layer", "quantity",
           "position", "value", "ci_low", "ci_high", "n"]
QUANTITIES = ("attention_mass", "displacement", "cosine", "logprob_drop_layer", "logprob_drop_from", "grad_norm",
              "grad_x_state_norm", "grad_dot_state", "grad_coherence")


def _h(text: str, **kw) -> dict:
    return {"help": text, **kw}


@dataclass
class InfluenceConfig:
    """Every setting of one ``influence`` analysis (the flags of ``python -m lpt_probe.influence``)."""

    task: str = field(default="rte", metadata=_h("a registered task or a custom task's YAML file"))
    model: str = field(default=DEFAULT_MODEL, metadata=_h(
        f"{', '.join(PRESETS)} (offline presets; default minilm), a hub id or a folder"))
    data_dir: str | None = field(default=None, metadata=_h("local task files (e.g. ../shared/data); default: the hub"))
    source: str = field(default="auto", metadata=_h("auto, hub or local", choices=("auto", "hub", "local")))
    prompt_layers: str = field(default="default", metadata=_h("'default' (1, middle, last), 'all' or '1,4,6'"))
    generator: str = field(default="none", metadata=_h("prompt generator", choices=GENERATORS))
    num_virtual_tokens: int | None = field(default=None, metadata=_h("prompt length l (default: the generator's)"))
    seeds: tuple[int, ...] = field(default=(13,), metadata=_h("prompt seeds, comma separated"))
    shots: int | None = field(default=100, metadata=_h("few-shot K for prompt training (0 = full data)"))
    data_seed: int = field(default=13, metadata=_h("seed of the few-shot sample"))
    dev_size: int = field(default=1000, metadata=_h(
        "the prompt's dev set (rows drawn from the training pool unless the task has a dev file)"))
    steps: int = field(default=200, metadata=_h("prompt training steps (paper few-shot: 1000)"))
    eval_every: int = field(default=100, metadata=_h("evaluate the prompt on dev every N steps"))
    lr: float = field(default=1e-3, metadata=_h("prompt learning rate"))
    checkpoints: tuple[int, ...] | None = field(default=None, metadata=_h(
        "also measure the prompt after these training steps, e.g. 50,100 (0 = the initial prompt; the runs are "
        "trained with --save-every, see --save-every)"))
    save_every: int | None = field(default=None, metadata=_h(
        "train the prompts with --save-every N (default with --checkpoints: their greatest common divisor); "
        "every --checkpoints step must be a multiple of it"))
    split: str = field(default="test", metadata=_h("the split measured", choices=SPLITS))
    influence_max: int | None = field(default=200, metadata=_h(
        "measure at most this many examples of --split (stratified by label, fixed seed; 0 = all)"))
    batch_size: int = field(default=16, metadata=_h("examples per measured batch"))
    bootstrap: int = field(default=1000, metadata=_h("bootstrap resamples over examples for the 95% CI"))
    max_examples: int | None = field(default=None, metadata=_h("cap every split (quick runs)"))
    max_length: int = field(default=128, metadata=_h("max tokens per example"))
    drop_overlap: bool = field(default=True, metadata=_h(
        "remove training-pool rows whose text is also a test text (the default here, as in mi: the prompt "
        "measured on test never saw a test text in training); --keep-overlap keeps them",
        flag="--keep-overlap", on_flag="--drop-overlap"))
    reuse_runs: tuple[str, ...] = field(default=(), metadata=_h(
        "folders of run folders (e.g. a sweep's runs/) searched for a finished prompt with exactly the same "
        "settings, data and model before one is trained", metavar="DIR,DIR,..."))
    device: str = field(default="auto", metadata=_h("cpu, cuda, cuda:N or auto (CUDA when present)"))
    dtype: str = field(default="fp32", metadata=_h(
        "precision of the frozen backbone's weights (bf16/fp16 on a GPU); prompts, generators and probes stay fp32",
        choices=("fp32", "bf16", "fp16")))
    out: str | None = field(default=None, metadata=_h("default artifacts/influence/<task>/<model>/"))
    progress: bool = field(default=True, metadata=_h("no progress bars", flag="--no-progress"))

    def __post_init__(self):
        self.seeds = tuple(int(s) for s in self.seeds)
        self.checkpoints = tuple(sorted({int(s) for s in self.checkpoints or ()}))
        if not self.seeds:
            raise ValueError("--seeds: give at least one prompt seed, e.g. 13")
        if self.shots == 0:
            self.shots = None
        if self.influence_max == 0:
            self.influence_max = None
        if self.split not in SPLITS:
            raise ValueError(f"--split {self.split!r}: choose one of {', '.join(SPLITS)}")
        for name in ("steps", "eval_every", "max_length", "batch_size", "dev_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 1")
        for name in ("max_examples", "influence_max"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ValueError(f"--{name.replace('_', '-')} {v} must be >= 2 (or left out)")
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap {self.bootstrap} must be >= 0")
        bad = [c for c in self.checkpoints if not 0 <= c <= self.steps]
        if bad:
            raise ValueError(f"--checkpoints {','.join(map(str, bad))}: steps must lie in 0..--steps {self.steps}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"--save-every {self.save_every} must be >= 1 (or left out)")
        if self.checkpoints and self.save_every is None:
            self.save_every = math.gcd(*self.checkpoints) or self.steps
        off = [c for c in self.checkpoints if self.save_every and c % self.save_every]
        if off:
            raise ValueError(f"--checkpoints {','.join(map(str, off))} are not multiples of --save-every "
                             f"{self.save_every}: the run saves its prompt every {self.save_every} steps only")
        self.device = resolve_device(self.device)

    @property
    def checkpoint_names(self) -> list[str]:
        return ["init"] + [f"step-{c}" for c in self.checkpoints] + ["trained"]


def default_out(cfg: InfluenceConfig) -> Path:
    return Path("artifacts") / "influence" / Path(cfg.task).stem / model_slug(cfg.model)


# -- the measurement ------------------------------------------------------------------------
def prompt_keys_blocked(b: int, l: int, n: int, device=None) -> Tensor:
    """[batch, q, k] bool over the l + n positions above PL: text queries x prompt keys."""
    out = torch.zeros(b, l + n, l + n, dtype=torch.bool, device=device)
    out[:, l:, :l] = True
    return out


def gold_logprob(model: LatePromptModel, out: dict[str, Tensor], labels: Tensor) -> Tensor:
    """Per example, log p(gold label) among the LABELS: a log-softmax over the label words'
    logits (LM and MLM heads) or the classifier's, never over the whole vocabulary, so a
    prompt that moves mass between two non-label tokens changes nothing here. # [batch]"""
    logp = torch.log_softmax(out["logits"].double(), dim=-1)  # [batch, num_labels]
    return logp[torch.arange(len(labels), device=labels.device), labels]


def _token_mean(x: Tensor, keep: Tensor) -> Tensor:
    """Mean over the real tokens: x [batch, seq] -> [batch]."""
    w = keep.to(x.dtype)
    return (x * w).sum(1) / w.sum(1)


def _at(x: Tensor, pred: Tensor) -> Tensor:
    """x[i, pred[i]] for x [batch, seq, ...]."""
    return x[torch.arange(x.shape[0], device=x.device), pred]


def _shift(a: Tensor, b: Tensor, keep: Tensor, pred: Tensor) -> dict[tuple[str, str], Tensor]:
    """Displacement and cosine of text states a against the frozen b, [batch, seq, hidden]."""
    disp = (a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(torch.finfo(b.dtype).tiny)  # [batch, seq]
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {("displacement", "prediction"): _at(disp, pred), ("displacement", "text_mean"): _token_mean(disp, keep),
            ("cosine", "prediction"): _at(cos, pred), ("cosine", "text_mean"): _token_mean(cos, keep)}


@torch.no_grad()
def forward_measures(model: LatePromptModel, frozen: Backbone, batch: dict[str, Tensor]
                     ) -> tuple[dict[tuple[str, str, int], Tensor], Tensor]:
    """Attention mass, displacement, cosine and the log-prob drops of one batch:
    (quantity, position, hidden state) -> one value per example [batch]; and the text's
    hidden state PL-1 the prompt joined (from the late-prompt model's own lower pass)."""
    ids, keep, pred, labels = (batch[k] for k in ("input_ids", "attention_mask", "pred_positions", "labels"))
    bb, L, start, l = model.backbone, model.backbone.num_hidden_layers, model.config.start_state, model.l
    pl = start + 1
    ref = frozen.hidden_states(ids, keep)  # the frozen model on the text alone, 0..L (L normed)
    h0 = bb.embed(ids, keep)
    low = [h0] + bb.run_layers(h0, keep, 0, start, return_all=True)  # the late-prompt model's own 0..PL-1
    res: dict[tuple[str, str, int], Tensor] = {}
    for j in range(pl):
        for (q, p), v in _shift(low[j], ref[j], keep, pred).items():
            res[q, p, j] = v
    b, n = ids.shape
    with bb.capture_attention() as probs:  # eager for every pass below: intact and hidden alike
        out = model.upper(low[start], keep, pred, return_states=True)
        attn = dict(probs)
        intact = gold_logprob(model, out, labels)
        # the sequence above PL as ``LatePromptModel.insert`` / ``upper`` build it
        seq = [torch.cat([out["prompt"], low[start]], 1)] + list(out["upper_states"])  # hidden states PL-1..L
        mask = torch.cat([torch.ones(b, l, dtype=keep.dtype, device=keep.device), keep], 1)
        positions = torch.arange(l + n, device=ids.device).expand(b, l + n)  # [batch, l + seq], as upper's
        hide = prompt_keys_blocked(b, l, n, ids.device)
        for j in range(pl, L + 1):  # layer j (index j-1) reads hidden state j-1, prompt included
            for what, layers in (("logprob_drop_layer", [j - 1]), ("logprob_drop_from", range(j - 1, L))):
                top = bb.run_layers(seq[j - 1 - start], mask, j - 1, L, positions, blocked={i: hide for i in layers})
                res[what, "prediction", j] = intact - gold_logprob(model, model.read_out(_at(top, pred + l), {}),
                                                                   labels)
    for j in range(pl, L + 1):
        mass = attn[j - 1][..., :l].sum(-1).mean(1)[:, l:]  # [batch, heads, q, k] -> [batch, text queries]
        res["attention_mass", "prediction", j] = _at(mass, pred)
        res["attention_mass", "text_mean", j] = _token_mean(mass, keep)
        state = seq[j - start][:, l:]
        for (q, p), v in _shift(bb.final(state) if j == L else state, ref[j], keep, pred).items():
            res[q, p, j] = v
    return res, low[start]


def gradient_measures(model: LatePromptModel, h_low: Tensor, batch: dict[str, Tensor]
                      ) -> dict[tuple[str, int], Tensor]:
    """Per-example gradients of the loss on the gold label, from one backward pass of the
    summed loss: (position, hidden state) -> [batch, D] vectors, and ("norm_text", j) ->
    [batch] mean per-token norms. Positions: prediction, text_mean (mean over real tokens
    of the per-token gradients), prompt (w.r.t. the inserted prompt, l x hidden, at PL-1)."""
    keep, pred, labels = (batch[k] for k in ("attention_mask", "pred_positions", "labels"))
    bb, L, start, l = model.backbone, model.backbone.num_hidden_layers, model.config.start_state, model.l
    with torch.enable_grad():
        x = h_low.detach().requires_grad_(True)
        out = model.upper(x, keep, pred, return_states=True)
        states = out["upper_states"]  # hidden states PL..L, prompt in front
        read = _at(states[-1], pred + l)
        if model.head_kind == "lm":
            read = bb.final(read)  # what the LM head reads: hidden state L after the final norm
        out = model.read_out(read, {"prompt": out["prompt"]}, normed=True)
        loss = model.loss(out, labels) * len(labels)  # the summed loss: per-example gradients
        grads = torch.autograd.grad(loss, [x, out["prompt"]] + list(states[:-1]) + [read])
    res: dict[tuple, Tensor] = {("prompt", start): grads[1].flatten(1)}
    p = out["prompt"].detach().flatten(1)
    res["scaled", "prompt", start] = grads[1].flatten(1).norm(dim=-1) * p.norm(dim=-1)
    res["dot", "prompt", start] = (grads[1].flatten(1) * p).sum(-1)
    g_top = torch.zeros_like(states[-1][:, l:])
    g_top[torch.arange(len(pred)), pred] = grads[-1]  # only the prediction position is read at L
    h_top = states[-1][:, l:].detach().clone()
    h_top[torch.arange(len(pred)), pred] = read.detach()  # the state the head reads (after the final norm)
    per_state = [grads[0]] + [g[:, l:] for g in grads[2:-1]] + [g_top]  # hidden states PL-1..L, text only
    values = [x.detach()] + [h[:, l:].detach() for h in states[:-1]] + [h_top]
    w = keep.to(x.dtype).unsqueeze(-1)
    for j, g, h in zip(range(start, L + 1), per_state, values):
        res["prediction", j] = _at(g, pred)
        res["text_mean", j] = (g * w).sum(1) / w.sum(1)
        res["norm_text", j] = _token_mean(g.norm(dim=-1), keep)
        scaled = g.norm(dim=-1) * h.norm(dim=-1)  # [batch, seq] ||g|| ||h||, per token
        dot = (g * h).sum(-1)  # [batch, seq] g . h: d loss / d log(scale of h), per token
        res["scaled", "prediction", j], res["dot", "prediction", j] = _at(scaled, pred), _at(dot, pred)
        res["scaled", "text_mean", j], res["dot", "text_mean", j] = _token_mean(scaled, keep), _token_mean(dot, keep)
    return res


def measure_batch(model: LatePromptModel, frozen: Backbone, batch: dict[str, Tensor]) -> dict:
    """Everything one batch gives: {"scalars": (quantity, position, j) -> [batch] and
    "vectors": (position, j) -> [batch, D] gradients (for norms and coherence)}."""
    model.eval()
    scalars, h_low = forward_measures(model, frozen, batch)
    grads = gradient_measures(model, h_low, batch)
    vectors = {}
    for key, v in grads.items():
        if key[0] == "norm_text":
            scalars["grad_norm", "text_mean", key[1]] = v.detach()
        elif key[0] in ("scaled", "dot"):
            scalars["grad_x_state_norm" if key[0] == "scaled" else "grad_dot_state", key[1], key[2]] = v.detach()
        else:
            vectors[key] = v.detach()
            if key[0] != "text_mean":
                scalars["grad_norm", key[0], key[1]] = v.detach().norm(dim=-1)
    return {"scalars": scalars, "vectors": vectors}


# -- summaries ----------------------------------------------------------------------------
def coherence(g: np.ndarray) -> float:
    """||mean_i g_i||^2 / mean_i ||g_i||^2 over the rows of g [n, D]."""
    g = np.asarray(g, dtype=np.float64)
    den = float((g * g).sum(1).mean())
    return float((g.mean(0) ** 2).sum() / den) if den > 0 else float("nan")


def resample_counts(n: int, bootstrap: int, seed: int = 0) -> np.ndarray:
    """[bootstrap, n] how often each example is drawn in each resample (fixed seed, so
    every quantity of a piece is resampled alike)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(bootstrap, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64) if bootstrap else \
        np.zeros((0, n))


def summarise_mean(v: np.ndarray, counts: np.ndarray) -> tuple[float, float, float]:
    """Mean of v [n] and the percentile 95% bootstrap interval."""
    v = np.asarray(v, dtype=np.float64)
    if not len(counts):
        return float(v.mean()), float("nan"), float("nan")
    boot = counts @ v / len(v)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def coherence_replicates(gram: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The coherence on each bootstrap resample (``counts`` [B, n]) from the Gram matrix
    [n, n] of the gradients. ||mean g||^2 / mean ||g||^2 = 1/n + (n-1)/n * r, with r the
    mean inner product of two different examples over the mean squared norm; a resample
    draws some examples twice, and a pair of copies of one example would count as two
    perfectly aligned examples (coherence biased up by about 1/n), so r is taken over
    pairs of different examples only. With every count 1 this is exactly :func:`coherence`."""
    n = gram.shape[0]
    diag = np.diag(gram)
    pairs = ((counts @ gram) * counts).sum(1) - (counts ** 2) @ diag  # sum over draws of distinct examples
    npairs = n ** 2 - (counts ** 2).sum(1)
    r = (pairs / np.maximum(npairs, 1)) / (counts @ diag / n)
    return 1 / n + (n - 1) / n * r


def summarise_coherence(g: np.ndarray, counts: np.ndarray) -> tuple[float, float, float]:
    """Coherence of g [n, D] and its percentile 95% bootstrap interval
    (:func:`coherence_replicates`)."""
    g = np.asarray(g, dtype=np.float64)
    value = coherence(g)
    if not len(counts) or not np.isfinite(value):
        return value, float("nan"), float("nan")
    lo, hi = np.percentile(coherence_replicates(g @ g.T, counts), [2.5, 97.5])
    return value, float(lo), float(hi)


def measure(model: LatePromptModel, frozen: Backbone, data: Encoded, batch_size: int = 16, bootstrap: int = 1000,
            desc: str = "influence", progress: bool = True) -> pd.DataFrame:
    """Every quantity of ``model`` on ``data``: rows (layer, quantity, position, value,
    ci_low, ci_high, n), one per hidden state, quantity and position."""
    device = frozen.device
    n = len(data)
    scalars: dict[tuple, np.ndarray] = {}
    vectors: dict[tuple, np.ndarray] = {}
    for idx in bar(list(data.batches(batch_size)), desc=desc, enabled=progress):
        got = measure_batch(model, frozen, data.collate(idx, device))
        for store_, part in ((scalars, got["scalars"]), (vectors, got["vectors"])):
            for key, v in part.items():
                v = v.float().cpu().numpy()
                if key not in store_:
                    store_[key] = np.zeros((n,) + v.shape[1:], dtype=np.float64 if v.ndim == 1 else np.float32)
                store_[key][idx] = v
    counts = resample_counts(n, bootstrap)
    rows = []
    for (q, p, j), v in scalars.items():
        rows.append({"layer": j, "quantity": q, "position": p, **dict(zip(("value", "ci_low", "ci_high"),
                                                                        summarise_mean(v, counts))), "n": n})
    for (p, j), g in vectors.items():
        rows.append({"layer": j, "quantity": "grad_coherence", "position": p,
                     **dict(zip(("value", "ci_low", "ci_high"), summarise_coherence(g, counts))), "n": n})
    order = {q: i for i, q in enumerate(QUANTITIES)}
    rows.sort(key=lambda r: (order[r["quantity"]], r["position"], r["layer"]))
    return pd.DataFrame(rows, columns=["layer", "quantity", "position", "value", "ci_low", "ci_high", "n"])


# -- the run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One late prompt: its layer and seed."""

    name: str
    prompt_layer: int
    seed: int


class InfluenceRun:
    """One ``influence`` invocation: settings, the loaded model and data, the pieces on disk."""

    def __init__(self, cfg: InfluenceConfig):
        self.cfg = cfg
        self.out = Path(cfg.out) if cfg.out else default_out(cfg)
        self.bundle = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
        self.backbone = Backbone(self.bundle[0]).freeze()
        self.L = self.backbone.num_hidden_layers
        self.prompt_layers = parse_prompt_layers(cfg.prompt_layers, self.L)
        self.slug = model_slug(cfg.model)
        self.seconds = {"train": 0.0, "measure": 0.0}
        self.run_dirs: dict[str, str] = {}
        self.model_keys: dict[str, str] = {}

    def train_config(self, seed: int) -> TrainConfig:
        c = self.cfg
        return TrainConfig(task=c.task, model=c.model, data_dir=c.data_dir, source=c.source, shots=c.shots,
                           data_seed=c.data_seed, dev_size=c.dev_size, max_examples=c.max_examples,
                           max_length=c.max_length, drop_overlap=c.drop_overlap, seed=seed, steps=c.steps,
                           eval_every=c.eval_every, lr=c.lr, device=c.device, dtype=c.dtype, bucket=True,
                           save_every=c.save_every)

    def load_data(self) -> None:
        self.prepared = prepare(self.train_config(self.cfg.seeds[0]), bundle=self.bundle)
        self.data = self.prepared.encoded[self.cfg.split].subsample(self.cfg.influence_max)
        self.task = self.prepared.data.task

    def conditions(self) -> list[Condition]:
        return [Condition(f"lpt-pl{k}-s{s}", k, s) for k in self.prompt_layers for s in self.cfg.seeds]

    def prompt_config(self, cond: Condition) -> LatePromptConfig:
        pc = LatePromptConfig(prompt_layer=cond.prompt_layer, generator=self.cfg.generator,
                              num_virtual_tokens=self.cfg.num_virtual_tokens)
        pc.check_against(self.backbone)
        return pc

    def run_key(self, cond: Condition) -> str:
        return run_config(self.prompt_config(cond), self.train_config(cond.seed), self.prepared)["key"]

    def model_key(self, cond: Condition, checkpoint: str) -> str:
        """What determines the prompt measured: the run (and checkpoint), or for ``init``
        only what the initial prompt depends on (so changing --steps keeps init pieces)."""
        name = f"{cond.name}/{checkpoint}"
        if name not in self.model_keys:
            if checkpoint == "init":
                what = {"init": self.prompt_config(cond).to_dict(), "seed": cond.seed,
                        "model": identity(self.bundle[2]), "label_word_ids": self.prepared.label_word_ids,
                        "num_labels": self.task.num_labels}
            else:
                what = {"run": self.run_key(cond), "checkpoint": checkpoint}
            self.model_keys[name] = store.content_key(what)
        return self.model_keys[name]

    def run_folder(self, cond: Condition) -> Path:
        """Where ``cond``'s prompt is (or will be) trained: ``runs/<condition>-<key>``, or a
        finished run with the same key under ``reuse_runs`` (``runs.folders.find_run``)."""
        key = self.run_key(cond)
        own = self.out / "runs" / f"{cond.name}-{key[:10]}"
        if self.cfg.reuse_runs and not check_run(own, key)[0]:
            return find_run(self.cfg.reuse_runs, key) or own
        return own

    def model_for(self, cond: Condition, checkpoint: str) -> LatePromptModel:
        pc = self.prompt_config(cond)
        if checkpoint == "init":  # exactly as the trainer builds it before step 1
            torch.manual_seed(cond.seed)
            return LatePromptModel(self.backbone, pc, self.task.num_labels, self.prepared.label_word_ids,
                                   copy_backbone=False).to(self.cfg.device).eval()
        t0 = time.perf_counter()
        folder = self.run_folder(cond)
        res = train(pc, self.train_config(cond.seed), folder, prepared=self.prepared, progress=self.cfg.progress)
        self.run_dirs[cond.name] = os.path.relpath(folder, self.out)
        self.seconds["train"] += time.perf_counter() - t0
        logger.info("prompt %s: %s (test %s %.4f)", cond.name, "reused" if res.reused else "trained",
                    res.metrics.get("metric_name", "metric"), res.metrics.get("test_metric", float("nan")))
        if checkpoint == "trained" and res.model is not None:
            return res.model.eval()
        name = None if checkpoint == "trained" else f"checkpoints/{checkpoint}.safetensors"
        return load_run(folder, self.cfg.device, bundle=self.bundle, checkpoint=name).model.eval()

    def settings(self) -> dict:
        c = self.cfg
        return {"format": PIECE_FORMAT, "split": c.split, "data": self.data.fingerprint, "bootstrap": c.bootstrap}

    def piece_paths(self, cond: Condition, checkpoint: str) -> tuple[Path, Path, str]:
        key = store.content_key({"model": self.model_key(cond, checkpoint), **self.settings()})
        stem = self.out / "pieces" / f"{cond.name}-{checkpoint}-{key[:16]}"
        return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json"), key

    def piece_done(self, cond: Condition, checkpoint: str) -> bool:
        csv, done, key = self.piece_paths(cond, checkpoint)
        if not (csv.exists() and done.exists()):
            return False
        try:
            side = store.read_json_object(done)
        except store.DamagedFile:
            return False
        return side.get("key") == key and store.file_sha256(csv) == side.get("sha256")

    def measure_piece(self, cond: Condition, checkpoint: str) -> bool:
        """Measure one (condition, checkpoint) unless its piece is done; True if measured."""
        if self.piece_done(cond, checkpoint):
            return False
        model = self.model_for(cond, checkpoint)
        t0 = time.perf_counter()
        table = measure(model, self.backbone, self.data, self.cfg.batch_size, self.cfg.bootstrap,
                        desc=f"{cond.name} {checkpoint}", progress=self.cfg.progress)
        self.seconds["measure"] += time.perf_counter() - t0
        csv, done, key = self.piece_paths(cond, checkpoint)
        store.write_csv(csv, table)
        store.write_json(done, {"key": key, "sha256": store.file_sha256(csv), "condition": asdict(cond),
                                "checkpoint": checkpoint, "settings": self.settings()})  # last: marks it done
        logger.info("measured %s %s in %.0f s", cond.name, checkpoint, time.perf_counter() - t0)
        return True

    def collect(self, conds: list[Condition]) -> pd.DataFrame:
        parts = []
        for cond in conds:
            for ckpt in self.cfg.checkpoint_names:
                part = pd.read_csv(self.piece_paths(cond, ckpt)[0])
                head = {"task": self.task.name, "model": self.slug, "method": "lpt", "generator": self.cfg.generator,
                        "prompt_layer": cond.prompt_layer, "seed": cond.seed, "checkpoint": ckpt}
                parts.append(part.assign(**head))
        table = pd.concat(parts, ignore_index=True)[COLUMNS]
        store.write_csv(self.out / "influence.csv", table)
        return table


def draw(out: Path, table: pd.DataFrame) -> Path:
    with paper_style():
        fig = plot_influence_by_layer(table)
        fig.suptitle(f"{table['task'].iloc[0]} / {table['model'].iloc[0]} / trained prompts")
        return save_figure(fig, out / "influence_by_layer.pdf")[0]


def run_influence(cfg: InfluenceConfig) -> tuple[InfluenceRun, pd.DataFrame, dict]:
    """The whole analysis into ``cfg.out``; returns the run, ``influence.csv`` and ``run.json``."""
    t0 = time.perf_counter()
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    cfg = replace(cfg, out=str(out))
    store.check_output_folder(out)
    with store.OutputLock(out):
        run = InfluenceRun(cfg)
        run.load_data()
        for stale in ("influence.csv", "influence_by_layer.pdf"):  # derived: rebuilt below
            (out / stale).unlink(missing_ok=True)
        conds = run.conditions()
        meta = store.run_meta(status="running", settings=asdict(cfg), prompt_layers=run.prompt_layers,
                              model=run.bundle[2], data=run.prepared.data.to_meta(), split=cfg.split,
                              measured_examples=len(run.data), measured_fingerprint=run.data.fingerprint,
                              measured_label_counts=np.bincount(run.data.labels,
                                                                minlength=run.task.num_labels).tolist(),
                              conditions=[asdict(c) for c in conds], checkpoints=cfg.checkpoint_names)
        store.write_json(out / "run.json", meta)
        measured = 0
        try:
            todo = [(c, k) for c in conds for k in cfg.checkpoint_names]
            for cond, ckpt in bar(todo, desc="influence", enabled=cfg.progress):
                measured += run.measure_piece(cond, ckpt)
            table = run.collect(conds)
            draw(out, table)
            meta.update(status="complete", wall_seconds=time.perf_counter() - t0, phase_seconds=run.seconds,
                        pieces_measured=measured, pieces_reused=len(todo) - measured, runs=run.run_dirs,
                        model_keys=run.model_keys,
                        outputs=sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")))
            store.write_json(out / "run.json", meta)  # last: only now is the analysis complete
        except BaseException as exc:
            meta.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                        error=f"{type(exc).__name__}: {exc}", wall_seconds=time.perf_counter() - t0,
                        phase_seconds=run.seconds)
            store.write_status(out / "run.json", meta)
            raise
    return run, table, meta


def summary_table(table: pd.DataFrame) -> str:
    """The printed table: for the trained prompts, per prompt layer (mean over seeds), the
    influence at the top layer and the signal reaching the prompt, init -> trained."""
    def pick(ckpt, q, p, layer=None):
        t = table[(table["checkpoint"] == ckpt) & (table["quantity"] == q) & (table["position"] == p)]
        if layer == "top":
            t = t[t["layer"] == t["layer"].max()]
        return t.groupby("prompt_layer")["value"].mean()

    view = pd.DataFrame({
        "attn_mass@L": pick("trained", "attention_mass", "prediction", "top"),
        "displacement@L": pick("trained", "displacement", "prediction", "top"),
        "drop_from_PL": table[(table["checkpoint"] == "trained") & (table["quantity"] == "logprob_drop_from")
                              & (table["layer"] == table["prompt_layer"])].groupby("prompt_layer")["value"].mean(),
        "grad_norm@prompt init": pick("init", "grad_norm", "prompt"),
        "coherence@prompt init": pick("init", "grad_coherence", "prompt"),
        "coherence@prompt trained": pick("trained", "grad_coherence", "prompt"),
    })
    n = int(table["n"].iloc[0])
    head = (f"influence of the prompt and the label signal reaching it ({n} examples, mean over "
            f"{table['seed'].nunique()} seed(s); L = top hidden state; drop in nats)")
    return head + "\n" + view.round(4).to_string()


__all__ = [
    "COLUMNS",
    "QUANTITIES",
    "Condition",
    "InfluenceConfig",
    "InfluenceRun",
    "coherence",
    "coherence_replicates",
    "default_out",
    "draw",
    "forward_measures",
    "gold_logprob",
    "gradient_measures",
    "measure",
    "measure_batch",
    "prompt_keys_blocked",
    "run_influence",
    "summarise_coherence",
    "summarise_mean",
    "summary_table",
]
