"""How a run trains: ``TrainConfig`` (the settings) and ``Trainer`` (the loop).

Read ``TrainConfig`` (every setting of a run, with its help text: the command-line flags
are generated from it), then ``Trainer.fit``. The run-folder side (what is written, when
a finished run is reused) is ``lpt_probe.runs.run``.

Optimisation follows the paper and the authors' scripts: AdamW (0.9, 0.999, eps 1e-8,
weight decay 0.1 on everything but biases), linear decay with 6% warmup, gradient
clipping at 1.0, lr 1e-3 for prompts (each method has its own default, see
``lpt_probe.model.methods``), batch 16, ``steps`` (few-shot: 1000) or ``epochs``; dev
every ``eval_every`` steps, the best-on-dev weights are kept and scored on test. With
``patience`` training stops once the dev metric has not improved for that many evaluations
in a row ("train until learned"; ``steps`` is the cap and the schedule's length), and the
run records where it stopped (``stopped_step``, ``early_stopped``). ``fit`` also keeps each
evaluation's per-example dev correctness (``dev_history_``): the per-example convergence
curves the Section 4 verdicts resample. After each dev evaluation ``fit`` can hand over its
whole state (``on_state``) and go on from such a state (``resume``): ``lpt_probe.runs.resume``
defines it and keeps it in the run folder, so a killed run resumes exactly.

Speed: nothing below PL runs with autograd, and by default the lower layers run once per
split (``lpt_probe.model.cache``); ``backbone_dropout`` reproduces the authors' regime
(dropout active in the frozen layers, which rules the cache out). Training batches are
length-bucketed by default (``bucket``; ``--no-bucket`` gives the order of 0.2.0 and its run
keys); evaluation runs in batches sorted by length under ``torch.inference_mode`` and
returns every output in the split's own order. ``dtype`` loads the
frozen backbone in half precision (trainable parameters stay fp32) and ``grad_accum``
splits each batch into micro-batches with the same update.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..data.encoded import Encoded
from ..data.sources import SOURCES
from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptModel
from ..model.loading import DEFAULT_MODEL, DTYPES, PRESETS, resolve_device, resolve_dtype
from ..progress import bar
from .reporting import parse_report_to
from .resume import restore_state, training_state

logger = logging.getLogger(__name__)


def _meta(help: str, **kw) -> dict:
    return {"help": help, **kw}


MAX_SEED = 2**32 - 1  # numpy's RandomState (batch order, few-shot samples) takes seeds in 0..2**32-1


def check_seed(flag: str, value) -> int:
    """``value`` as a seed, or one error naming ``flag``: a whole number in 0..2**32-1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= MAX_SEED:
        raise ValueError(f"{flag} {value}: a seed is a whole number from 0 to {MAX_SEED} (2**32-1); give e.g. {flag} 13")
    return int(value)


@dataclass
class TrainConfig:
    """How one run trains and on which data (the flags of ``python -m lpt_probe.train``)."""

    task: str = field(default="rte", metadata=_meta(
        "a registered task (sst2 mpqa mr subj trec mnli mrpc qnli qqp rte) or a custom task's YAML file "
        "(see the README's custom-task example)"))
    model: str = field(default=DEFAULT_MODEL, metadata=_meta(
        f"{', '.join(PRESETS)} (offline presets), a hub id or a local folder"))
    data_dir: str | None = field(default=None, metadata=_meta("local task files (e.g. ../shared/data)"))
    source: str = field(default="auto", metadata=_meta(
        "where task data comes from: auto = local files when --data-dir is given, else the hub",
        choices=[s for s in SOURCES if s != "custom"]))
    shots: int | None = field(default=None, metadata=_meta("few-shot K (100 or 500); default: full data"))
    data_seed: int = field(default=13, metadata=_meta("seed of the few-shot sample"))
    dev_size: int = field(default=1000, metadata=_meta("dev set size"))
    max_examples: int | None = field(default=None, metadata=_meta("cap every split (quick runs)"))
    max_length: int = field(default=256, metadata=_meta("max tokens per example (text is cut, never the template)"))
    drop_overlap: bool = field(default=False, metadata=_meta(
        "remove training-pool rows whose text is also a test text (their count is recorded either way)"))
    seed: int = field(default=13, metadata=_meta("seed of initialisation, batch order and dropout"))
    lr: float | None = field(default=None, metadata=_meta(
        "learning rate; default: the method's (1e-3 for prompts; see lpt_probe.model.methods)"))
    batch_size: int = field(default=16, metadata=_meta("training batch size"))
    eval_batch_size: int = field(default=64, metadata=_meta("evaluation batch size", cli=False))
    steps: int | None = field(default=None, metadata=_meta("training steps (few-shot default 1000)"))
    epochs: int | None = field(default=None, metadata=_meta("epochs (full-data default 10)"))
    eval_every: int = field(default=100, metadata=_meta("evaluate on dev every N steps"))
    patience: int | None = field(default=None, metadata=_meta(
        "train until learned: stop when the dev metric has not improved for this many evaluations in a row "
        "(--steps / --epochs is then the cap; the best-on-dev weights are kept either way); default: run every step"))
    save_every: int | None = field(default=None, metadata=_meta(
        "also save the trainable weights every N steps to checkpoints/ (for influence --checkpoints)"))
    warmup_ratio: float = field(default=0.06, metadata=_meta("linear warmup fraction", cli=False))
    weight_decay: float = field(default=0.1, metadata=_meta("AdamW weight decay (not on biases)", cli=False))
    grad_clip: float = field(default=1.0, metadata=_meta("gradient norm clip (0 = off)", cli=False))
    cache: bool = field(default=True, metadata=_meta("recompute the lower layers every step (no lower-layer cache)"))
    backbone_dropout: bool = field(default=False, metadata=_meta(
        "authors' regime: dropout in the frozen layers (turns the cache off)"))
    bucket: bool = field(default=True, metadata=_meta(
        "length-bucketed training batches: each epoch's seeded permutation is sorted by length within windows of "
        "50 batches, so a batch pads little", flag="--no-bucket", on_flag="--bucket",
        off_help="batches of the seeded permutation as drawn, padded to their longest (the default up to 0.2.0; "
                 "a run with it keeps the key it had then)"))
    device: str = field(default="auto", metadata=_meta("cpu, cuda, cuda:N or auto (CUDA when present)"))
    dtype: str = field(default="fp32", metadata=_meta(
        "precision of the frozen backbone's weights; prompts, generators, heads and LoRA adapters stay fp32 "
        "(methods that train backbone weights need fp32)", choices=lambda: list(DTYPES)))
    grad_accum: int = field(default=1, metadata=_meta(
        "split each --batch-size batch into this many micro-batches: the same update in less memory"))
    report_to: str | None = field(default=None, metadata=_meta(
        "log each dev evaluation and the test metric to trackers: tensorboard (event files in the run folder's "
        "tensorboard/), wandb, mlflow; comma-separated, each needs its package"))

    def __post_init__(self):
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give --steps or --epochs, not both (got steps={self.steps}, epochs={self.epochs})")
        if self.steps is None and self.epochs is None:
            if self.shots:
                self.steps = 1000
            else:
                self.epochs = 10
        for name in ("steps", "epochs"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name} {v}: train for at least 1 (an untrained prompt is no result)")
        for name in ("batch_size", "eval_batch_size", "eval_every", "grad_accum", "max_length", "dev_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be > 0")
        for name in ("shots", "max_examples", "save_every", "patience"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} {v} must be >= 1 (or left out)")
        check_seed("--seed", self.seed)
        check_seed("--data-seed", self.data_seed)
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr {self.lr} must be > 0")
        if self.grad_accum > self.batch_size:
            raise ValueError(f"grad_accum={self.grad_accum} splits a batch of batch_size={self.batch_size} into "
                             f"micro-batches: it cannot exceed batch_size")
        resolve_dtype(self.dtype)  # unknown dtype: fail here
        parse_report_to(self.report_to)  # unknown or uninstalled tracker: fail here
        if self.backbone_dropout and self.cache:
            logger.info("backbone_dropout=True: the lower-layer cache is turned off")
            self.cache = False
        self.device = resolve_device(self.device)

    def total_steps(self, n_train: int) -> int:
        return self.steps if self.steps is not None else self.epochs * math.ceil(n_train / self.batch_size)


class TrainingDiverged(RuntimeError):
    pass


def score(task_metric: str, labels: np.ndarray, preds: np.ndarray) -> float:
    """The task's metric: accuracy, or mean of accuracy and binary F1 (MRPC, QQP)."""
    acc = float((labels == preds).mean()) if len(labels) else float("nan")
    if task_metric == "acc_f1":
        from sklearn.metrics import f1_score

        return (acc + float(f1_score(labels, preds, zero_division=0))) / 2
    return acc


def current_rss_mb() -> float:
    """Resident memory of this process now (not the peak), in MB (Linux; nan elsewhere)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """The process's peak resident set so far, its resident set now, and the CUDA peak."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_mb": current_rss_mb()}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class Trainer:
    """The training loop over encoded splits, optionally from a lower-layer cache."""

    def __init__(self, model: LatePromptModel, cfg: TrainConfig, metric: str = "accuracy"):
        if cfg.lr is None:  # the method's own default, as lpt_probe.runs.run.train records it
            cfg = replace(cfg, lr=model.method.default_lr)
        self.model, self.cfg, self.metric = model, cfg, metric
        self.device = torch.device(cfg.device)
        self.best_dev_: dict[str, Any] | None = None  # set by fit: dev evaluation of the kept weights
        self.dev_history_: dict[str, np.ndarray] | None = None  # set by fit: steps [E], correct [E, n_dev]

    def _forward(self, data: Encoded, idx, cache: LowerLayerCache | None, return_states=False):
        b = data.collate(idx, self.device)
        h_low = None
        if cache is not None:
            h_low = cache.batch(self.model.config.start_state, idx, self.device)
        out = self.model(b["input_ids"], b["attention_mask"], b["pred_positions"], h_low=h_low,
                         return_states=return_states)
        return out, b

    @torch.inference_mode()
    def evaluate(self, data: Encoded, cache: LowerLayerCache | None = None) -> dict[str, Any]:
        if cache is not None:
            cache.check(data)
        was = self.model.training
        self.model.eval()
        logits = torch.zeros(len(data), self.model.num_labels)
        for idx in data.batches(self.cfg.eval_batch_size):
            out, _ = self._forward(data, idx, cache)
            logits[torch.tensor(idx)] = out["logits"].float().cpu()
        self.model.train(was)
        labels = np.array(data.labels)
        preds = logits.argmax(-1).numpy()
        loss = float(torch.nn.functional.cross_entropy(logits, torch.tensor(labels)))
        return {"metric": score(self.metric, labels, preds), "accuracy": float((preds == labels).mean()),
                "loss": loss, "logits": logits, "preds": preds}

    def optimizer(self, total_steps: int):
        decay, no_decay = [], []
        for name, p in self.model.trainable_named_parameters():
            (no_decay if name.endswith("bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        warm = int(self.cfg.warmup_ratio * total_steps)

        def factor(step: int) -> float:
            if step < warm:
                return step / max(1, warm)
            return max(0.0, (total_steps - step) / max(1, total_steps - warm))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def _accumulate(self, train: Encoded, idx: list[int], cache: LowerLayerCache | None, step: int) -> float:
        """Forward and backward one batch in ``grad_accum`` micro-batches; the gradient is
        the full batch's mean-loss gradient (micro-batch losses weighted by their size)."""
        total = 0.0
        for part in np.array_split(np.asarray(idx), min(self.cfg.grad_accum, len(idx))):
            out, b = self._forward(train, part.tolist(), cache)
            loss = self.model.loss(out, b["labels"])
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {step + 1}")
            (loss * (len(part) / len(idx))).backward()
            total += loss.item() * len(part) / len(idx)
        return total

    def step(self, opt, sched, train: Encoded, idx: list[int], cache: LowerLayerCache | None = None,
             step: int = 0) -> float:
        """One optimiser update on the batch ``idx``; returns its mean loss. ``opt, sched``
        come from ``optimizer``. ``fit`` is this in a loop with evaluation and bookkeeping."""
        opt.zero_grad(set_to_none=True)
        loss = self._accumulate(train, idx, cache, step)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.model.trainable_named_parameters()],
                                           self.cfg.grad_clip)
        opt.step()
        sched.step()
        return loss

    def batch_order(self, train: Encoded, total: int) -> list[list[int]]:
        """The ``total`` training batches ``fit`` draws, in order (seeded by ``cfg.seed``)."""
        rng = np.random.RandomState(self.cfg.seed)
        out: list[list[int]] = []
        order: list[int] = []
        while len(out) < total:
            if not order:
                order = list(rng.permutation(len(train)))
                order = [i for b in train.batches(self.cfg.batch_size, order, bucket=self.cfg.bucket) for i in b]
            out.append(order[: self.cfg.batch_size])
            order = order[self.cfg.batch_size:]
        return out

    def fit(self, train: Encoded, dev: Encoded, caches: dict[str, LowerLayerCache] | None = None,
            progress: bool = True, on_checkpoint: Callable[[int], None] | None = None,
            on_eval: Callable[[dict[str, Any]], None] | None = None, resume: dict[str, Any] | None = None,
            on_state: Callable[[dict[str, Any]], None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Train for ``cfg.steps`` (or epochs; with ``cfg.patience`` until the dev metric stops
        improving); keeps the best-on-dev weights in the model.
        ``on_checkpoint(step)`` is called every ``cfg.save_every`` steps (and at step 0);
        ``on_eval(row)`` after each dev evaluation, with its row of the curve.
        ``on_state(state)`` after each dev evaluation that training goes on from (and after that
        step's checkpoint), with the whole training state (``resume.training_state``); ``resume``:
        such a state, which training continues from, with the batch after its step, as if it
        had never stopped (step 0's checkpoint is not saved again)."""
        cfg, model = self.cfg, self.model
        caches = caches or {}
        if "train" in caches:
            caches["train"].check(train, "train split")
        total = cfg.total_steps(len(train))
        opt, sched = self.optimizer(total)
        model.train()
        best = {"metric": -math.inf, "step": 0, "state": model.trainable_state_dict()}
        rows, window, tokens, train_time = [], [], 0, 0.0
        dev_steps: list[int] = []
        dev_correct: list[np.ndarray] = []  # per evaluation: [n_dev] 1 where the prediction is right
        dev_labels = np.asarray(dev.labels)
        stale, stopped = 0, total  # evaluations since the last improvement; the last step trained
        first = 0  # the last step already trained (a resumed run's)
        if resume is not None:
            first, best, rows, tokens, train_time, dev_steps, dev_correct, stale = restore_state(
                model, self.device, resume, opt, sched)
        elif on_checkpoint is not None and cfg.save_every:
            on_checkpoint(0)
        pbar = bar(total=total, desc=f"PL={model.config.prompt_layer} {model.config.generator}", enabled=progress)
        if first:
            pbar.update(first)
        for step, idx in enumerate(self.batch_order(train, total)[first:], start=first + 1):
            evaluated = False
            t0 = time.perf_counter()
            loss = self.step(opt, sched, train, idx, caches.get("train"), step - 1)
            train_time += time.perf_counter() - t0
            tokens += train.num_tokens(idx)
            window.append(loss)
            pbar.update(1)
            if step % cfg.eval_every == 0 or step == total:
                ev = self.evaluate(dev, caches.get("dev"))
                evaluated = True
                rows.append({"step": step, "train_loss": float(np.mean(window)), "dev_metric": ev["metric"],
                             "dev_loss": ev["loss"], "lr": sched.get_last_lr()[0], "train_seconds": train_time})
                window = []
                dev_steps.append(step)
                dev_correct.append((ev["preds"] == dev_labels).astype(np.uint8))
                stale += 1
                if ev["metric"] > best["metric"]:
                    best = {"metric": ev["metric"], "step": step, "state": model.trainable_state_dict(), "eval": ev}
                    stale = 0
                pbar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", dev=f"{ev['metric']:.3f}")
                if on_eval is not None:
                    on_eval(rows[-1])
            if on_checkpoint is not None and cfg.save_every and step % cfg.save_every == 0:
                on_checkpoint(step)
            if cfg.patience is not None and stale >= cfg.patience and step < total:
                stopped = step
                logger.info("PL=%s: dev metric not improved for %d evaluations; stopped at step %d of %d (best "
                            "%.4f at step %d)", model.config.prompt_layer, stale, step, total, best["metric"],
                            best["step"])
                break
            if evaluated and on_state is not None and step < total:  # the loss window is empty here
                on_state(training_state(model, self.device, step, opt, sched, best, rows, tokens, train_time,
                                        dev_steps, dev_correct, stale))
        pbar.close()
        self.dev_history_ = {"step": np.asarray(dev_steps, dtype=np.int64),
                             "correct": np.stack(dev_correct) if dev_correct else np.zeros((0, len(dev_labels)),
                                                                                          dtype=np.uint8)}
        stats = {"steps": total, "stopped_step": stopped, "early_stopped": stopped < total,
                 "best_step": best["step"], "best_dev_metric": best["metric"],
                 "train_seconds": train_time, "train_tokens": tokens,
                 "tokens_per_second": tokens / train_time if train_time > 0 else float("nan")}
        with torch.no_grad():
            for name, p in model.trainable_named_parameters():
                p.copy_(best["state"][name])
        # the dev evaluation of the weights just restored (evaluation is deterministic in
        # eval mode, so evaluating them again would give these numbers): run.train reads it
        self.best_dev_ = best.get("eval")
        return pd.DataFrame(rows), stats
