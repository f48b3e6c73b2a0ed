"""Train a late prompt: ``python -m lpt_probe.train --task trec --prompt-layer 4``.

Read ``TrainConfig`` (how a run trains), then ``train`` (one run, end to end) and
``Trainer.fit`` (the loop). A run writes a folder: ``config.json`` (prompt + training
config, task, model), ``meta.json`` (UTC time, git commit, versions, device, data
fingerprints, status, tunable parameters, wall time, tokens/s, peak memory),
``prompt.safetensors`` (trainable weights of the best-on-dev step), ``curve.csv`` (step,
train loss, dev metric) and ``metrics.json``. ``meta.json`` says ``running`` while a run
trains, ``complete`` when every file is written and ``failed`` (with the reason and the
step) otherwise, so an interrupted or failed run is never mistaken for a result.

Optimisation follows the paper and the authors' scripts: AdamW (0.9, 0.999, eps 1e-8,
weight decay 0.1 on everything but biases), linear decay with 6% warmup, gradient
clipping at 1.0, lr 1e-3, batch 16, ``--steps`` (few-shot: 1000) or ``--epochs``; dev
every ``eval_every`` steps, the best-on-dev prompt is kept and scored on test.

Speed: nothing below PL runs with autograd, and by default the lower layers run once per
split (``lpt_probe.cache``); ``--backbone-dropout`` reproduces the authors' regime
(dropout active in the frozen layers, which rules the cache out).

``--method`` trains a baseline in the same loop instead (``lpt_probe.methods``: prompt
tuning, model tuning, BitFit, LoRA, P-tuning v2); ``--dtype bf16|fp16`` loads the frozen
backbone in half precision (trainable parameters stay fp32) and ``--grad-accum K`` splits
each batch into K micro-batches with the same update.
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import io
from .backbone import Backbone
from .cache import Encoded, LowerLayerCache
from .late_prompt import LatePromptConfig, LatePromptModel, save_prompt
from .methods import METHODS, get_method
from .models import DEFAULT_MODEL, DTYPES, load_model, model_slug, resolve_dtype

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How one late-prompt run trains and on which data."""

    task: str = field(default="trec", metadata={"help": "task name from the registry"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "preset (minilm, smollm2), hub id or folder"})
    data_dir: str | None = field(default=None, metadata={"help": "folder of local task files"})
    source: str = field(default="auto", metadata={"help": "auto, hub or local"})
    shots: int | None = field(default=None, metadata={"help": "K training examples (few-shot); None = full"})
    data_seed: int = field(default=13, metadata={"help": "seed of the few-shot sample"})
    dev_size: int = field(default=1000, metadata={"help": "few-shot dev set size"})
    max_examples: int | None = field(default=None, metadata={"help": "cap every split (quick runs)"})
    max_length: int = field(default=256, metadata={"help": "max tokens per example"})
    seed: int = field(default=13, metadata={"help": "seed of initialisation, order and dropout"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    batch_size: int = field(default=16, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=64, metadata={"help": "evaluation batch size"})
    steps: int | None = field(default=None, metadata={"help": "training steps (few-shot default 1000)"})
    epochs: int | None = field(default=None, metadata={"help": "epochs (full-data default 10)"})
    eval_every: int = field(default=100, metadata={"help": "evaluate on dev every N steps"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "linear warmup fraction"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (not on biases)"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip (0 = off)"})
    cache: bool = field(default=True, metadata={"help": "run the lower layers once per split"})
    backbone_dropout: bool = field(default=False, metadata={"help": "dropout in frozen layers (no cache)"})
    bucket: bool = field(default=False, metadata={"help": "length-bucketed training batches"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:N or auto"})
    dtype: str = field(default="fp32", metadata={"help": "backbone weights: fp32, bf16 or fp16 (prompts stay fp32)"})
    grad_accum: int = field(default=1, metadata={"help": "split each batch into this many micro-batches "
                                                         "(same update, less memory)"})

    def __post_init__(self):
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give --steps or --epochs, not both")
        if self.steps is None and self.epochs is None:
            if self.shots:
                self.steps = 1000
            else:
                self.epochs = 10
        for name in ("lr", "batch_size", "eval_every", "grad_accum"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        if self.grad_accum > self.batch_size:
            raise ValueError(f"grad_accum={self.grad_accum} splits a batch of batch_size={self.batch_size} into "
                             f"micro-batches: it cannot exceed batch_size")
        resolve_dtype(self.dtype)  # unknown dtype: fail here
        if self.backbone_dropout and self.cache:
            logger.info("backbone_dropout=True: the lower-layer cache is turned off")
            self.cache = False
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    curve: pd.DataFrame
    model: LatePromptModel | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class TrainingDiverged(RuntimeError):
    pass


def score(task_metric: str, labels: np.ndarray, preds: np.ndarray) -> float:
    """The task's metric: accuracy, or mean of accuracy and binary F1 (MRPC, QQP)."""
    acc = float((labels == preds).mean()) if len(labels) else float("nan")
    if task_metric == "acc_f1":
        from sklearn.metrics import f1_score

        return (acc + float(f1_score(labels, preds, zero_division=0))) / 2
    return acc


def _encode_split(task, split, tokenizer, kind, max_length) -> Encoded:
    from .verbalizer import encode

    enc = encode(task, split.examples, tokenizer, kind, max_length=max_length)
    return Encoded(
        input_ids=[list(map(int, x)) for x in enc["input_ids"]],
        pred_positions=[int(p) for p in enc["pred_positions"]],
        labels=[int(y) for y in enc["labels"]],
        ids=[e.id for e in split.examples],
        pad_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
    )


class Trainer:
    """The training loop over encoded splits, optionally from a lower-layer cache."""

    def __init__(self, model: LatePromptModel, cfg: TrainConfig, metric: str = "accuracy"):
        self.model, self.cfg, self.metric = model, cfg, metric
        self.device = torch.device(cfg.device)

    def _forward(self, data: Encoded, idx, cache: LowerLayerCache | None, return_states=False):
        b = data.collate(idx, self.device)
        h_low = None
        if cache is not None:
            h_low = cache.batch(self.model.config.prompt_layer - 1, idx, self.device)
        out = self.model(b["input_ids"], b["attention_mask"], b["pred_positions"], h_low=h_low,
                         return_states=return_states)
        return out, b

    @torch.no_grad()
    def evaluate(self, data: Encoded, cache: LowerLayerCache | None = None) -> dict[str, Any]:
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

    def fit(self, train: Encoded, dev: Encoded, caches: dict[str, LowerLayerCache] | None = None,
            progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
        cfg, model = self.cfg, self.model
        caches = caches or {}
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
        opt, sched = self.optimizer(total)
        rng = np.random.RandomState(cfg.seed)
        model.train()
        best = {"metric": -math.inf, "step": 0, "state": model.trainable_state_dict()}
        rows, window, step, tokens, train_time = [], [], 0, 0, 0.0
        bar = tqdm(total=total, desc=f"PL={model.config.prompt_layer} {model.config.generator}",
                   disable=not progress, leave=False)
        order: list[int] = []
        while step < total:
            if not order:
                order = list(rng.permutation(len(train)))
                batches = list(train.batches(cfg.batch_size, order, bucket=cfg.bucket))
                order = [i for b in batches for i in b]
            idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
            t0 = time.perf_counter()
            loss = self.step(opt, sched, train, idx, caches.get("train"), step)
            train_time += time.perf_counter() - t0
            tokens += train.num_tokens(idx)
            step += 1
            window.append(loss)
            bar.update(1)
            if step % cfg.eval_every == 0 or step == total:
                ev = self.evaluate(dev, caches.get("dev"))
                rows.append({"step": step, "train_loss": float(np.mean(window)), "dev_metric": ev["metric"],
                             "dev_loss": ev["loss"], "lr": sched.get_last_lr()[0], "train_seconds": train_time})
                window = []
                if ev["metric"] > best["metric"]:
                    best = {"metric": ev["metric"], "step": step, "state": model.trainable_state_dict()}
                bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", dev=f"{ev['metric']:.3f}")
        bar.close()
        stats = {"steps": total, "best_step": best["step"], "best_dev_metric": best["metric"],
                 "train_seconds": train_time, "train_tokens": tokens,
                 "tokens_per_second": tokens / train_time if train_time > 0 else float("nan")}
        with torch.no_grad():
            for name, p in model.trainable_named_parameters():
                p.copy_(best["state"][name])
        return pd.DataFrame(rows), stats


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def is_task_file(task: str | Path) -> bool:
    """A custom task given as its YAML file (``lpt_probe.data.load_custom_task``)."""
    return str(task).lower().endswith((".yaml", ".yml"))


def load_data(cfg: TrainConfig):
    """The splits ``cfg`` names: a registered task, or a custom task's YAML file."""
    from .data import load_custom_task, load_task

    if is_task_file(cfg.task):
        return load_custom_task(cfg.task, shots=cfg.shots, data_seed=cfg.data_seed,
                                dev_size=cfg.dev_size, max_examples=cfg.max_examples)[1]
    return load_task(cfg.task, source=cfg.source, data_dir=cfg.data_dir, shots=cfg.shots,
                     data_seed=cfg.data_seed, dev_size=cfg.dev_size, max_examples=cfg.max_examples)


def prepare(cfg: TrainConfig, bundle=None, data=None):
    """Load (or take) the model bundle and task data, and encode the three splits."""
    from .verbalizer import label_word_ids

    model, tokenizer, info = (bundle if bundle is not None
                              else load_model(cfg.model, device=cfg.device, dtype=cfg.dtype))
    data = data if data is not None else load_data(cfg)
    backbone = Backbone(model)
    kind = "clm" if backbone.is_causal else "mlm"
    encoded = {name: _encode_split(data.task, getattr(data, name), tokenizer, kind, cfg.max_length)
               for name in ("train", "dev", "test")}
    words = label_word_ids(data.task, tokenizer, kind) if backbone.has_lm_head else None
    return backbone, tokenizer, info, data, encoded, words


def run_is_complete(run_dir: str | Path, config: dict) -> bool:
    """A run folder (local or URL) that finished with exactly this config (the device aside:
    a run done on another machine counts)."""
    files = {name: io.join(run_dir, name) for name in ("meta.json", "config.json", "metrics.json")}
    if not all(io.exists(f) for f in files.values()):
        return False

    def strip(c: dict) -> dict:
        return {**c, "train": {k: v for k, v in c.get("train", {}).items() if k != "device"}}

    return (io.read_json(files["meta.json"]).get("status") == "complete"
            and strip(io.read_json(files["config.json"])) == strip(config))


def run_config(prompt_cfg: LatePromptConfig, cfg: TrainConfig) -> dict:
    return {"prompt": prompt_cfg.to_dict(), "train": asdict(cfg)}


def train(prompt_cfg: LatePromptConfig, cfg: TrainConfig, out: str | Path | None = None,
          bundle=None, data=None, prepared=None, caches: dict | None = None,
          progress: bool = True, reuse: bool = True) -> TrainResult:
    """One run, end to end; writes the run folder ``out`` when given (reused if complete)."""
    run_dir = Path(out) if out is not None else None
    config = run_config(prompt_cfg, cfg)
    if run_dir is not None and reuse and run_is_complete(run_dir, config):
        logger.info("reusing complete run %s", run_dir)
        return TrainResult(run_dir, io.read_json(run_dir / "metrics.json"),
                           pd.read_csv(run_dir / "curve.csv"), meta=io.read_json(run_dir / "meta.json"))
    t_start = time.perf_counter()
    if torch.device(cfg.device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(cfg.device)  # peak_cuda_mb is this run's, even in a sweep
    backbone, tokenizer, info, data, encoded, words = prepared or prepare(cfg, bundle, data)
    prompt_cfg.check_against(backbone)  # bad prompt layer / head: fail before writing anything
    meta = io.run_meta(status="running", device=str(cfg.device), model=info,
                       data=data.to_meta(), torch_threads=torch.get_num_threads())
    if run_dir is not None:
        io.write_json(run_dir / "config.json", config)
        io.write_json(run_dir / "meta.json", meta)
        for stale in ("metrics.json", "curve.csv", "prompt.safetensors"):
            (run_dir / stale).unlink(missing_ok=True)
    try:
        torch.manual_seed(cfg.seed)
        owned = bundle is None and prepared is None  # nobody else uses this model: no copy needed
        model = LatePromptModel(backbone, prompt_cfg, len(data.task.label_names), words,
                                copy_backbone=not owned).to(cfg.device)
        model.backbone_dropout = cfg.backbone_dropout
        pl = prompt_cfg.prompt_layer
        use_cache = cfg.cache and model.method.cacheable
        if use_cache and caches is None:
            backbone.model.eval()
            caches = {s: LowerLayerCache.build(backbone, encoded[s], [pl - 1], cfg.eval_batch_size,
                                               desc=f"cache {s} h{pl - 1}") for s in encoded}
        caches = caches if use_cache else {}
        trainer = Trainer(model, cfg, str(getattr(data.task.metric, "value", data.task.metric)))
        curve, stats = trainer.fit(encoded["train"], encoded["dev"], caches, progress)
        dev = trainer.evaluate(encoded["dev"], caches.get("dev"))
        test = trainer.evaluate(encoded["test"], caches.get("test"))
    except BaseException as exc:  # mark the run failed, never leave it looking complete
        meta.update(status="failed", error=f"{type(exc).__name__}: {exc}", wall_seconds=time.perf_counter() - t_start)
        if run_dir is not None:
            io.write_json(run_dir / "meta.json", meta)
        raise
    metrics = {
        "task": data.task.name, "model": model_slug(cfg.model), "method": prompt_cfg.method, "prompt_layer": pl,
        "generator": prompt_cfg.generator, "num_virtual_tokens": prompt_cfg.num_virtual_tokens,
        "head": model.head_kind, "seed": cfg.seed, "shots": cfg.shots, "data_seed": cfg.data_seed,
        "metric_name": str(getattr(data.task.metric, "value", data.task.metric)), "dev_metric": dev["metric"], "test_metric": test["metric"],
        "dev_accuracy": dev["accuracy"], "test_accuracy": test["accuracy"],
        "tunable_params": model.num_trainable(), "dtype": cfg.dtype, "cache": use_cache, **stats,
    }
    meta.update(status="complete", tunable_params=model.num_trainable(),
                wall_seconds=time.perf_counter() - t_start, tokens_per_second=stats["tokens_per_second"],
                **peak_memory_mb(torch.device(cfg.device)))
    if run_dir is not None:
        save_prompt(model, run_dir)
        io.write_csv(run_dir / "curve.csv", curve)
        io.write_json(run_dir / "metrics.json", metrics)
        io.write_json(run_dir / "meta.json", meta)  # last: only now is the run complete
    return TrainResult(run_dir, metrics, curve, model, meta)


def default_run_dir(prompt_cfg: LatePromptConfig, cfg: TrainConfig) -> Path:
    shots = f"k{cfg.shots}-d{cfg.data_seed}" if cfg.shots else "full"
    what = (f"pl{prompt_cfg.prompt_layer}-{prompt_cfg.generator}" if prompt_cfg.method == "lpt"
            else prompt_cfg.method)
    return Path("artifacts") / "runs" / cfg.task / model_slug(cfg.model) / f"{what}-{shots}-s{cfg.seed}"


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("late prompt")
    g.add_argument("--method", default="lpt", choices=list(METHODS),
                   help="lpt (late prompt) or a baseline in the same harness: " + "; ".join(
                       f"{m.name}: {m.help}" for m in METHODS.values() if m.name != "lpt"))
    g.add_argument("--prompt-layer", type=int, default=None,
                   help="PL, 1-based (1 = prompt tuning); default: the middle layer for lpt, 1 otherwise")
    g.add_argument("--generator", default="none", choices=["none", "npg", "appg", "mppg"])
    g.add_argument("--num-virtual-tokens", type=int, default=None, help="prompt length l")
    g.add_argument("--bottleneck", type=int, default=128, help="generator bottleneck m")
    g.add_argument("--head", default="auto", choices=["auto", "lm", "classifier"])
    g.add_argument("--loss", default="vocab", choices=["vocab", "label_words"])
    add_lora_args(g)


def add_lora_args(g) -> None:
    g.add_argument("--lora-rank", type=int, default=8, help="--method lora: rank r")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="--method lora: scaling alpha")


def add_train_args(p: argparse.ArgumentParser, task_default: str | None = "trec") -> None:
    g = p.add_argument_group("data and training")
    g.add_argument("--task", default=task_default, required=task_default is None,
                   help="a registered task (sst2 mpqa mr subj trec mnli mrpc qnli qqp rte) or a custom "
                        "task's YAML file (see lpt_probe.data.load_custom_task)")
    g.add_argument("--model", default=DEFAULT_MODEL, help="minilm, smollm2, a hub id or a folder")
    g.add_argument("--data-dir", default=None, help="local task files (e.g. ../shared/data)")
    g.add_argument("--source", default="auto", choices=["auto", "hub", "local"])
    g.add_argument("--shots", type=int, default=None, help="few-shot K (100 or 500); default: full data")
    g.add_argument("--data-seed", type=int, default=13)
    g.add_argument("--dev-size", type=int, default=1000)
    g.add_argument("--max-examples", type=int, default=None, help="cap every split (quick runs)")
    g.add_argument("--max-length", type=int, default=256)
    g.add_argument("--seed", type=int, default=13)
    g.add_argument("--lr", type=float, default=None,
                   help="learning rate; default: the method's (1e-3 for prompts; see lpt_probe.methods)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--no-cache", dest="cache", action="store_false", help="recompute lower layers every step")
    g.add_argument("--backbone-dropout", action="store_true", help="authors' regime: dropout in frozen layers")
    g.add_argument("--bucket", action="store_true", help="length-bucketed batches")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA when present)")
    g.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                   help="precision of the frozen backbone's weights; prompts, generators, heads and LoRA "
                        "adapters stay fp32 (methods that train backbone weights need fp32)")
    g.add_argument("--grad-accum", type=int, default=1,
                   help="split each --batch-size batch into this many micro-batches: the same update "
                        "in less memory")


def default_prompt_layer(method: str, num_hidden_layers: int) -> int:
    """The middle layer for lpt (the paper's choice), 1 for every other method."""
    return max(1, (num_hidden_layers + 1) // 2) if method == "lpt" else 1


def prompt_config_from_args(args, prompt_layer: int, method: str | None = None,
                            generator: str | None = None, **override) -> LatePromptConfig:
    values = dict(method=method or args.method, prompt_layer=prompt_layer, generator=generator or args.generator,
                  num_virtual_tokens=args.num_virtual_tokens, bottleneck=args.bottleneck, head=args.head,
                  loss=args.loss, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha)
    return LatePromptConfig(**{**values, **override})


def train_config_from_args(args, **override) -> TrainConfig:
    names = [f.name for f in fields(TrainConfig) if hasattr(args, f.name)]
    values = {n: getattr(args, n) for n in names}
    if values.get("lr") is None:  # the method's own default (sweeps set it per cell)
        values["lr"] = get_method(getattr(args, "method", "lpt")).default_lr
    return TrainConfig(**{**values, **override})


def configs_from_args(args, prompt_layer: int) -> tuple[LatePromptConfig, TrainConfig]:
    pc = prompt_config_from_args(args, prompt_layer)
    tc = train_config_from_args(args)
    return pc, tc


def cli_start(args: argparse.Namespace) -> None:
    """What every command does first: INFO logging, and ``--device auto`` resolved."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "device", None) == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.train", description=__doc__.split("\n")[0])
    add_prompt_args(p)
    add_train_args(p)
    p.add_argument("--out", default=None, help="run folder (default artifacts/runs/<task>/<model>/...)")
    args = p.parse_args(argv)
    cli_start(args)
    try:
        bundle = load_model(args.model, device=args.device, dtype=args.dtype)
        layers = bundle[0].config.num_hidden_layers
        pl = args.prompt_layer if args.prompt_layer is not None else default_prompt_layer(args.method, layers)
        pc, tc = configs_from_args(args, pl)
    except ValueError as exc:
        p.error(str(exc))
    out = Path(args.out) if args.out else default_run_dir(pc, tc)
    try:
        res = train(pc, tc, out, bundle=bundle)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        p.exit(2, f"error: {exc}\n")
    except TrainingDiverged as exc:
        p.exit(1, f"error: training diverged: {exc}; run marked failed in {out}/meta.json\n")
    m = res.metrics
    what = (f"PL={m['prompt_layer']} {m['generator']}" if m["method"] == "lpt"
            else m["method"] if m["method"] != "prompt-tuning" else "prompt-tuning PL=1")
    print(f"{m['task']} {m['model']} {what}: "
          f"dev {m['metric_name']} {m['dev_metric']:.4f}, test {m['test_metric']:.4f} "
          f"(best step {m['best_step']}/{m['steps']}, {m['tunable_params']:,} tunable params, "
          f"{m['tokens_per_second']:.0f} train tokens/s) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
