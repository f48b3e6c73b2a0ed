"""What every study of trained late prompts shares: ``mi``, ``influence`` and ``section4``.

A *study* trains (or reuses) late prompts at some prompt layers and seeds, on one task and
model, and then measures them. :class:`StudyConfig` holds the settings they share (task,
model, data, the prompts and how they train, hardware, where the results go) with their
checks; ``MIConfig``, ``InfluenceConfig`` and ``Section4Config`` extend it with their own.
:meth:`StudyConfig.train_config` and :meth:`StudyConfig.prompt_config` are the one place
a study's prompts get their training settings, so every study of the same settings keys
its prompts alike and can reuse another's run folders. :class:`Condition` names one model
a study measures (a late prompt, the frozen model, random weights); ``StudyOutput`` is
``outputs.ResumableOutput``, the resumable output folder every study writes (lock, stale
outputs, ``run.json`` running / failed / interrupted / complete).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..data.sources import task_slug
from ..layers import check_unique
from ..model.generators import GENERATORS
from ..model.late_prompt import PROMPT_INITS, LatePromptConfig
from ..model.loading import DEFAULT_MODEL, DTYPES, PRESETS, model_slug, resolve_device
from ..outputs import ResumableOutput, check_url
from ..runs.folders import check_run, find_run
from ..runs.trainer import TrainConfig, check_seed

__all__ = ["StudyConfig", "Condition", "StudyOutput", "field_help", "run_folder", "unique_conditions"]


def check_at_least(config, minimum: int, *names: str, optional: bool = False) -> None:
    """Each field of ``names`` is >= ``minimum`` (``optional``: or None), else one error
    naming the field, its flag, the value and the bound."""
    for name in names:
        value = getattr(config, name)
        if (value is None and optional) or value >= minimum:
            continue
        raise ValueError(f"{name}={value} (--{name.replace('_', '-')}) must be >= {minimum}" +
                         (" (or left out)" if optional else ""))


def field_help(text: str, **kw) -> dict:
    """A config field's metadata: its ``--help`` text and flag options (``lpt_probe.cli``)."""
    return {"help": text, **kw}


_h = field_help


@dataclass
class StudyConfig:
    """The settings every study shares (see the module docstring)."""

    kind: ClassVar[str] = "study"  # the default output folder: artifacts/<kind>/<task>/<model>

    task: str = field(default="rte", metadata=_h("a registered task or a custom task's YAML file"))
    model: str = field(default=DEFAULT_MODEL, metadata=_h(
        f"{', '.join(PRESETS)} (offline presets; default minilm), a hub id or a folder"))
    data_dir: str | None = field(default=None, metadata=_h("local task files (e.g. ../shared/data); default: the hub"))
    source: str = field(default="auto", metadata=_h("auto, hub or local", choices=("auto", "hub", "local")))
    prompt_layers: str = field(default="default", metadata=_h("'default' (1, middle, last), 'all' or '1,4,6'"))
    generator: str = field(default="none", metadata=_h("prompt generator", choices=GENERATORS))
    num_virtual_tokens: int | None = field(default=None, metadata=_h("prompt length l (default: the generator's)"))
    prompt_init: str = field(default="normal", metadata=_h(
        "the plain prompt's initialisation: normal = N(0, 1); states = hidden states PL-1 of training tokens "
        "(the prompt starts at the scale of the states it joins)", choices=PROMPT_INITS))
    seeds: tuple[int, ...] = field(default=(13,), metadata=_h("prompt seeds, comma separated (Figure 2: 13,21,42)"))
    shots: int | None = field(default=100, metadata=_h("few-shot K for prompt training (0 = full data)"))
    data_seed: int = field(default=13, metadata=_h("seed of the few-shot sample"))
    dev_size: int = field(default=1000, metadata=_h(
        "the prompt's dev set (rows drawn from the training pool unless the task has a dev file); mi sets it "
        "aside from the probes' rows with the prompt's shots"))
    steps: int = field(default=200, metadata=_h("prompt training steps (paper few-shot: 1000)"))
    eval_every: int = field(default=100, metadata=_h("evaluate the prompt on dev every N steps"))
    patience: int | None = field(default=None, metadata=_h(
        "train until learned: stop a prompt when its dev metric has not improved for this many evaluations "
        "(--steps is then the cap); default: every step"))
    lr: float = field(default=1e-3, metadata=_h("prompt learning rate"))
    bootstrap: int = field(default=1000, metadata=_h("bootstrap resamples over test examples for every 95% CI"))
    max_examples: int | None = field(default=None, metadata=_h("cap every split (quick runs)"))
    max_length: int = field(default=128, metadata=_h("max tokens per example"))
    drop_overlap: bool = field(default=True, metadata=_h(
        "remove training-pool rows whose text is also a test text, compared case- and space-insensitively (for "
        "studies: a prompt or probe that saw a test text would measure memory, not information)",
        flag="--keep-overlap", on_flag="--drop-overlap",
        off_help="keep training-pool rows whose text is also a test text (they may be drawn as shots, dev or probe "
                 "rows)"))
    reuse_runs: tuple[str, ...] = field(default=(), metadata=_h(
        "folders of run folders (e.g. a sweep's runs/) searched for a finished prompt with exactly the same "
        "settings, data and model before one is trained", metavar="DIR,DIR,..."))
    device: str = field(default="auto", metadata=_h("cpu, cuda, cuda:N or auto (CUDA when present)"))
    dtype: str = field(default="fp32", metadata=_h(
        "precision of the frozen backbone's weights (bf16/fp16 on a GPU); prompts, generators and probes stay fp32",
        choices=lambda: list(DTYPES)))
    out: str | None = field(default=None, metadata=_h(
        "output folder, default artifacts/<command>/<task>/<model>/; the commands also take an fsspec URL "
        "(computed in a local staging folder, $LPT_PROBE_STAGING, then uploaded)"))
    overwrite: bool = field(default=False, metadata=_h(
        "write into --out even when it holds files lpt_probe did not write (refused otherwise)"))
    progress: bool = field(default=True, metadata=_h("no progress bars", flag="--no-progress"))

    def __post_init__(self):
        self.seeds = check_unique("--seeds", (check_seed("--seeds", int(s)) for s in self.seeds), "seed")
        if not self.seeds:
            raise ValueError("seeds (--seeds): give at least one prompt seed, e.g. 13")
        if self.shots == 0:
            self.shots = None
        if self.generator not in GENERATORS:
            raise ValueError(f"generator={self.generator!r} (--generator) is unknown; choose one of "
                             f"{', '.join(GENERATORS)}")
        check_at_least(self, 1, "steps", "eval_every", "max_length", "dev_size")
        check_at_least(self, 1, "patience", optional=True)
        check_at_least(self, 2, "max_examples", optional=True)
        check_at_least(self, 0, "bootstrap")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        self.reuse_runs = tuple(str(p) for p in self.reuse_runs)
        check_url(self.out or "", local_only=True)  # a local folder here: the commands stage a URL (outputs.staged)
        self.device = resolve_device(self.device)

    def train_config(self, seed: int, **extra: Any) -> TrainConfig:
        """How this study's prompt of ``seed`` trains (``extra``: e.g. influence's save_every)."""
        return TrainConfig(task=self.task, model=self.model, data_dir=self.data_dir, source=self.source,
                           shots=self.shots, data_seed=self.data_seed, dev_size=self.dev_size,
                           max_examples=self.max_examples, max_length=self.max_length,
                           drop_overlap=self.drop_overlap, seed=seed, steps=self.steps, eval_every=self.eval_every,
                           patience=self.patience,
                           lr=self.lr, device=self.device, dtype=self.dtype, bucket=True, **extra)

    def prompt_config(self, prompt_layer: int) -> LatePromptConfig:
        """The late prompt this study trains at ``prompt_layer``."""
        return LatePromptConfig(prompt_layer=prompt_layer, generator=self.generator,
                                num_virtual_tokens=self.num_virtual_tokens, prompt_init=self.prompt_init)

    def default_out(self) -> Path:
        return Path("artifacts") / self.kind / task_slug(self.task) / model_slug(self.model)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.default_out()


@dataclass(frozen=True)
class Condition:
    """One model a study measures: a late prompt, the frozen model, or random weights."""

    name: str
    method: str  # "lpt", "frozen" or "random_weights"
    prompt_layer: int  # 0 for the frozen and random models
    seed: int

    @classmethod
    def lpt(cls, prompt_layer: int, seed: int) -> "Condition":
        return cls(f"lpt-pl{prompt_layer}-s{seed}", "lpt", int(prompt_layer), int(seed))


def unique_conditions(conds: list[Condition]) -> list[Condition]:
    """``conds``, asserted to have one name each: a condition's name keys its run folder,
    its representation files and its table rows, so two of one name would overwrite each
    other (the configs refuse repeated seeds and layers; this guards every other path)."""
    names = [c.name for c in conds]
    assert len(set(names)) == len(names), f"conditions share a name (and storage key): {names}"
    return conds


def run_folder(out: Path, cfg: StudyConfig, cond: Condition, key: str) -> Path:
    """Where a study's prompt ``cond`` with run key ``key`` is (or will be) trained:
    ``<out>/runs/<condition>-<key>``, or a finished run with the same key under the study's
    ``reuse_runs`` (``runs.folders.find_run``)."""
    own = Path(out) / "runs" / f"{cond.name}-{key[:10]}"
    if cfg.reuse_runs and not check_run(own, key)[0]:
        return find_run(cfg.reuse_runs, key) or own
    return own


# A study's resumable output folder (lock, stale outputs, ``run.json`` running / failed /
# interrupted / complete): the one context manager of every command, ``outputs.ResumableOutput``.
StudyOutput = ResumableOutput
