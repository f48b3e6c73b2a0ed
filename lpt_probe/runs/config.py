"""The settings of runs, without torch: ``TrainConfig``, ``SweepConfig``, ``ExecutorConfig``.

Config dataclasses in the style of peft's: one field per setting with its help text (the
command-line flags of ``train`` and ``sweep`` are generated from them, ``lpt_probe.commands.cli``),
checks in ``__post_init__``, saved as JSON beside the results. They live apart from the code
that runs them (``trainer``, ``sweep``, ``executors``, which re-export them) so that
``--help`` and building a config import no torch. A config keeps the ``--device`` asked for
(``auto`` stays ``auto``); a run resolves it when it starts, on the machine that runs it.

- ``TrainConfig``: how one run trains and on which data (``lpt_probe.runs.trainer`` is the loop).
- ``SweepConfig``: the grid of a sweep (``lpt_probe.runs.sweep`` runs it); its prompt layers
  and seeds are a ``PromptGrid`` and where it writes an ``OutputConfig``, which the studies'
  configs hold too (``lpt_probe.compose``: each field declared once).
- ``ExecutorConfig``: how a sweep's cells (or a study's jobs) run: here or on Ray
  (``lpt_probe.runs.executors``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..compose import OWN, Flat, composed, nested, via
from ..data.sources import SOURCES
from ..layers import check_unique
from ..model.specs import (DEFAULT_MODEL, DTYPES, GENERATORS, METHODS, OPTION_CLASSES, PRESETS, check_device_name,
                          get_method)
from .reporting import parse_report_to

logger = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


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
        if self.dtype not in DTYPES:  # unknown dtype: fail here
            raise ValueError(f"dtype={self.dtype!r}: choose one of {', '.join(DTYPES)}")
        parse_report_to(self.report_to)  # unknown or uninstalled tracker: fail here
        if self.backbone_dropout and self.cache:
            logger.info("backbone_dropout=True: the lower-layer cache is turned off")
            self.cache = False
        self.device = check_device_name(self.device)  # the name asked for; resolved when a run starts

    def total_steps(self, n_train: int) -> int:
        return self.steps if self.steps is not None else self.epochs * math.ceil(n_train / self.batch_size)


# -- sweeps and where they run -----------------------------------------------------------

EXECUTORS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """How the cells of a sweep are run (the "execution" flags of ``python -m lpt_probe.sweep``)."""

    executor: str = field(default="local", metadata={
        "help": "local: in this process, one cell after another; ray: each cell a Ray task",
        "choices": EXECUTORS})
    address: str | None = field(default=None, metadata={
        "help": "ray: cluster address ('auto' joins a running cluster, HOST:PORT a remote one); "
                "default: start Ray on this machine"})
    cpus_per_run: float = field(default=1, metadata={"help": "ray: CPUs each cell reserves"})
    gpus_per_run: float = field(default=0, metadata={"help": "ray: GPUs each cell reserves (e.g. 1)"})
    retries: int = field(default=1, metadata={"help": "retry a failing cell this many times, then record it"})

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor={self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.retries < 0:
            raise ValueError(f"--retries {self.retries}: give 0 or more")
        if self.cpus_per_run <= 0 or self.gpus_per_run < 0:
            raise ValueError(f"--cpus-per-run {self.cpus_per_run} must be > 0 and --gpus-per-run "
                             f"{self.gpus_per_run} >= 0")
        if self.executor == "local":  # Ray's settings mean nothing here: say so rather than ignore them
            given = [(flag, value) for flag, value, default in (
                ("--address", self.address, None), ("--cpus-per-run", self.cpus_per_run, 1),
                ("--gpus-per-run", self.gpus_per_run, 0)) if value != default]
            if given:
                flag, value = given[0]
                value = f"{value:g}" if isinstance(value, (int, float)) else value
                raise ValueError(f"{flag} {value} is a Ray setting, but --executor is local (everything runs in "
                                 f"this process); add --executor ray or drop {flag}")
        else:
            require_ray()


def require_ray():
    """The ``ray`` module, or a clear error when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs the ray package, which is not installed in this environment: "
                         "pip install -e '.[ray]' (or pip install 'ray>=2.40'; or use --executor local)") from None
    return ray


PROMPT_OPTIONS = ("num_virtual_tokens", "prompt_init", "bottleneck", "head", "loss") + tuple(  # the sweep's flags
    f.name for cls in OPTION_CLASSES for f in fields(cls) if f.metadata.get("cli", True))  # every cell shares


@dataclass
class PromptGrid:
    """Which prompts a grid trains: the prompt layers and the training seeds (held by
    ``SweepConfig`` and every study's config, ``lpt_probe.analysis.config``)."""

    prompt_layers: str = field(default="default", metadata={
        "help": "lpt: 'default' (1, middle, last), 'all' or '1,4,6'"})
    seeds: tuple[int, ...] = field(default=(13, 21, 42), metadata={"help": "comma list of training seeds"})

    def __post_init__(self):
        self.seeds = check_unique("--seeds", (check_seed("--seeds", int(s)) for s in self.seeds), "seed")
        if not self.seeds:
            raise ValueError("seeds (--seeds): give at least one training seed, e.g. 13")


@dataclass
class OutputConfig:
    """Where a sweep or a study writes, and how it shows progress."""

    out: str | None = field(default=None, metadata={
        "help": "a folder or fsspec URL; default artifacts/sweeps/<task>/<model>/"})
    overwrite: bool = field(default=False, metadata={
        "help": "write into --out even when it holds files lpt_probe did not write (refused otherwise)"})
    progress: bool = field(default=True, metadata={"help": "no progress bars", "flag": "--no-progress"})


@dataclass
class GridRun:
    """A config that trains a grid of prompts into an output folder (``SweepConfig``, and
    every study's ``StudyConfig``): which prompts (``grid``) and where it writes
    (``output``), declared here once."""

    grid: PromptGrid = nested(PromptGrid)
    output: OutputConfig = nested(OutputConfig)


@composed
class SweepConfig(GridRun):
    """The grid of a sweep (the "grid" flags of ``python -m lpt_probe.sweep``): the methods
    and generators, with the prompt layers and seeds of its ``grid`` (``PromptGrid``), the
    prompt options every cell shares, and where it writes (``output``). Flat keywords work:
    ``SweepConfig(prompt_layers="all", seeds=(13,))`` (``lpt_probe.compose``)."""

    FLAT: ClassVar[dict[str, Flat]] = {
        "methods": OWN, "prompt_layers": via("grid"), "generators": OWN, "seeds": via("grid"), "prompt": OWN,
        "out": via("output"), "progress": via("output"), "overwrite": via("output")}

    methods: tuple[str, ...] = field(default=("lpt",), metadata={
        "help": "comma list of lpt and baselines (baselines: one cell per seed)", "flag": ("--methods", "--method"),
        "choices": lambda: list(METHODS)})
    generators: tuple[str, ...] = field(default=("none",), metadata={
        "help": "lpt: comma list of generators", "choices": GENERATORS})
    prompt: dict = field(default_factory=dict, metadata={
        "help": "LatePromptConfig options shared by every cell (num_virtual_tokens, bottleneck, ...)", "cli": False})

    def __post_init__(self):
        self.methods = check_unique("--methods", self.methods, "method")
        self.generators = check_unique("--generators", self.generators, "generator")
        for m in self.methods:
            get_method(m)  # unknown method: fail before anything runs
        for g in self.generators:
            if g not in GENERATORS:
                raise ValueError(f"generator {g!r} is unknown; choose from {', '.join(GENERATORS)}")
        bad = sorted(set(self.prompt) - set(PROMPT_OPTIONS))
        if bad:
            raise ValueError(f"SweepConfig.prompt: unknown options {bad}; allowed {list(PROMPT_OPTIONS)}")
