"""The measurements of ``influence``: what a late prompt does to the text above it and
how much label signal reaches it, on one batch (:func:`measure_batch`, start there) and
summarised over examples with bootstrap intervals (:func:`measure`). ``lpt_probe.analysis.
influence`` runs them over prompts, seeds and checkpoints, resumably; its module docstring
defines every quantity.

Pure computation on a ``LatePromptModel`` and the frozen ``Backbone``: no files, no
configs. Per-example gradients come from one backward pass of the summed loss (examples do
not interact in a batch; eval mode). The bootstrap resamples examples with
``lpt_probe.probing.bootstrap_counts`` (the same draws the probes' intervals use for the
same size and seed), so every quantity of a piece is resampled alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ...data.encoded import Encoded
from ...model.backbone import Backbone
from ...model.late_prompt import LatePromptModel
from ...probing import bootstrap_counts
from ...progress import bar
from ..config import GRADIENT_LOSSES  # noqa: F401  (re-exported: the flags' choices live there)

Tensor = torch.Tensor
QUANTITIES = ("attention_mass", "displacement", "cosine", "logprob_drop_layer", "logprob_drop_from", "grad_norm",
              "grad_x_state_norm", "grad_dot_state", "grad_coherence")

__all__ = ["EXAMPLE_QUANTITIES", "GRADIENT_LOSSES", "QUANTITIES", "coherence", "gradient_loss", "coherence_replicates", "forward_measures", "gold_logprob",
           "gradient_measures", "measure", "measure_batch", "prompt_keys_blocked", "resample_counts",
           "summarise_coherence", "summarise_mean"]


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


def gradient_loss(model: LatePromptModel, out: dict[str, Tensor], labels: Tensor, which: str = "train") -> Tensor:
    """The summed loss whose per-example gradients are measured: ``train`` = the model's own
    training loss (``LatePromptModel.loss``; for an LM head with ``loss="vocab"`` a softmax over
    the whole vocabulary, which also pushes mass off tokens that are no label), ``label_words``
    = cross-entropy over the label words' logits only (the label decision alone)."""
    if which not in GRADIENT_LOSSES:
        raise ValueError(f"gradient loss {which!r}: choose one of {', '.join(GRADIENT_LOSSES)}")
    if which == "label_words":
        return torch.nn.functional.cross_entropy(out["logits"], labels, reduction="sum")
    return model.loss(out, labels) * len(labels)


def gradient_measures(model: LatePromptModel, h_low: Tensor, batch: dict[str, Tensor], loss: str = "train"
                      ) -> dict[tuple[str, int], Tensor]:
    """Per-example gradients of the loss on the gold label (``loss``: :func:`gradient_loss`),
    from one backward pass of the summed loss: (position, hidden state) -> [batch, D]
    vectors, and ("norm_text", j) -> [batch] mean per-token norms. Positions: prediction,
    text_mean (mean over real tokens of the per-token gradients), prompt (w.r.t. the
    inserted prompt, l x hidden, at PL-1)."""
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
        total = gradient_loss(model, out, labels, loss)  # the summed loss: per-example gradients
        grads = torch.autograd.grad(total, [x, out["prompt"]] + list(states[:-1]) + [read])
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


def measure_batch(model: LatePromptModel, frozen: Backbone, batch: dict[str, Tensor], loss: str = "train") -> dict:
    """Everything one batch gives: {"scalars": (quantity, position, j) -> [batch] and
    "vectors": (position, j) -> [batch, D] gradients (for norms and coherence)}."""
    model.eval()
    scalars, h_low = forward_measures(model, frozen, batch)
    grads = gradient_measures(model, h_low, batch, loss)
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
    every quantity of a piece is resampled alike): ``lpt_probe.probing.bootstrap_counts``."""
    return bootstrap_counts(n, bootstrap, seed)


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


# What ``measure(examples=...)`` keeps per example: the quantities the Section 4 verdicts
# resample (lpt_probe.analysis.section4.verdicts), and the Gram matrix of the prompt's gradients.
EXAMPLE_QUANTITIES = (("logprob_drop_from", "prediction"), ("attention_mass", "prediction"),
                      ("grad_x_state_norm", "prompt"), ("grad_norm", "prompt"))


def measure(model: LatePromptModel, frozen: Backbone, data: Encoded, batch_size: int = 16, bootstrap: int = 1000,
            desc: str = "influence", progress: bool = True, loss: str = "train",
            examples: dict | None = None) -> pd.DataFrame:
    """Every quantity of ``model`` on ``data``: rows (layer, quantity, position, value,
    ci_low, ci_high, n), one per hidden state, quantity and position. ``loss``: the loss
    whose gradients are measured (:func:`gradient_loss`). ``examples``, when a dict, is
    filled with the per-example values of :data:`EXAMPLE_QUANTITIES` (``"quantity|position|
    layer"`` -> [n]) and ``"gram"``: the prompt gradients' Gram matrix [n, n] (coherence and
    its random-sign null, for any resample, follow from it)."""
    device = frozen.device
    n = len(data)
    scalars: dict[tuple, np.ndarray] = {}
    vectors: dict[tuple, np.ndarray] = {}
    for idx in bar(list(data.batches(batch_size)), desc=desc, enabled=progress):
        got = measure_batch(model, frozen, data.collate(idx, device), loss)
        for store_, part in ((scalars, got["scalars"]), (vectors, got["vectors"])):
            for key, v in part.items():
                v = v.float().cpu().numpy()
                if key not in store_:
                    store_[key] = np.zeros((n,) + v.shape[1:], dtype=np.float64 if v.ndim == 1 else np.float32)
                store_[key][idx] = v
    if examples is not None:
        keep = dict(EXAMPLE_QUANTITIES)
        examples.update({f"{q}|{p}|{j}": v for (q, p, j), v in scalars.items() if keep.get(q) == p})
        g = np.asarray(vectors[("prompt", model.config.start_state)], dtype=np.float64)
        examples["gram"] = g @ g.T  # [n, n]
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
