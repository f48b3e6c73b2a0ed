"""How a run trains: ``TrainConfig`` (the settings) and ``Trainer`` (the loop).

Read ``TrainConfig`` (every setting of a run, with its help text: the command-line flags
are generated from it; it lives in ``lpt_probe.runs.config``, without torch, and is
re-exported here), then ``Trainer.fit``. The run-folder side (what is written, when
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
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..data.encoded import Encoded
from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptModel
from ..model.loading import resolve_device
from ..progress import bar
from .config import MAX_SEED, TrainConfig, check_seed  # noqa: F401  (re-exported: the settings live there)
from .resume import restore_state, training_state

logger = logging.getLogger(__name__)


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
        self.device = torch.device(resolve_device(cfg.device))
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
