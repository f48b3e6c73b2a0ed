"""The settings of the studies, without torch: ``StudyConfig``, ``MIConfig``,
``InfluenceConfig``, ``Section4Config``.

Config dataclasses in the style of peft's: one field per setting with its help text (the
flags of ``mi``, ``influence`` and ``section4`` are generated from them, ``lpt_probe.cli``),
checks in ``__post_init__``, saved in ``run.json`` beside the results. ``StudyConfig`` holds
what every study shares (``lpt_probe.analysis.study`` says what a study is); each study's
config extends it with its own fields, and ``Section4Config`` composes the other two
(``mi_config``, ``influence_config``). They live apart from the code that runs them
(``mi``, ``influence``, ``section4``, which re-export them) so that ``--help`` and building a
config import no torch; what needs sklearn to check (is ``--probe-grid`` a grid of that
probe?) is imported when a config is built. A config keeps the ``--device`` asked for
(``auto`` stays ``auto``); a study resolves it when it starts (``engine.Study.device``), each
Ray worker on its own machine.

The choices the flags list live here too: ``REPRESENTATIONS`` (re-exported by
``representations``), ``GRADIENT_LOSSES`` (``influence_measures``), ``PROJECTION_METHODS``
(``projection.METHODS``), and the "execution" flags of ``mi`` and ``influence``
(:func:`add_execution_args`, re-exported by ``remote``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..cli import add_config_args
from ..data.sources import task_slug
from ..layers import check_unique
from ..model.config import PROMPT_INITS, LatePromptConfig
from ..model.specs import DEFAULT_MODEL, DTYPES, GENERATORS, PRESETS, check_device_name, model_slug
from ..outputs import check_url
from ..probing.options import ProbeOptions, TransformerProbeOptions
from ..probing.registry import PROBES
from ..runs.config import SPLITS, ExecutorConfig, TrainConfig, check_seed

REPRESENTATIONS = ("cls", "mask", "mean")  # the vectors per example a vector probe reads (representations.py)
GRADIENT_LOSSES = ("train", "label_words")  # the losses influence's signal measures differentiate
PROJECTION_METHODS = ("umap", "tsne", "pca")  # project --method (lpt_probe.analysis.projection)
PROBE_INPUTS = TransformerProbeOptions.INPUTS


def default_jobs() -> int:
    """Worker processes for probe pieces: the CPU cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


EXECUTION_HELP = {
    "executor": "local: in this process (probe pieces on --jobs processes); ray: prompt training, extraction per "
                "condition and probe / influence pieces as Ray tasks (same files, same results)",
    "cpus_per_run": "ray: CPUs each task reserves",
    "gpus_per_run": "ray: GPUs each task reserves (e.g. 1)",
}


def add_execution_args(parser) -> None:
    """The "execution" flags of ``mi`` and ``influence``: ``--executor``, ``--address``,
    ``--cpus-per-run``, ``--gpus-per-run`` (the sweep's names)."""
    add_config_args(parser.add_argument_group("execution"), ExecutorConfig, skip=("retries",), helps=EXECUTION_HELP)


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


_h = field_help  # a config field's help text and flag options


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
        self.device = check_device_name(self.device)  # the name asked for; resolved when a run starts

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


# -- the studies ---------------------------------------------------------------------------

@dataclass
class MIConfig(StudyConfig):
    """Every setting of one ``mi`` analysis (the flags of ``python -m lpt_probe.mi``): the
    study's (``StudyConfig``) and the probes'. The ``probe_<option>`` flags (``--probe-layers``,
    ...) are the chosen probe family's own options: :attr:`probe_options` builds them, the
    probe checks them and answers what the analysis asks (``lpt_probe.probing.options``)."""

    kind: ClassVar[str] = "mi"

    probe: str = field(default="linear", metadata=_h(
        "probe family: linear and mlp read one vector per example (--representation); transformer reads the "
        "layer's whole sequence of states (the paper's estimator)", choices=lambda: list(PROBES)))
    probe_seeds: tuple[int, ...] | None = field(default=None, metadata=_h(
        "probe seeds, comma separated; default 0,1,2 for the mlp and transformer probes (their fits depend on the "
        "seed), 0 for the linear probe (its fit on a given dev split does not)"))
    representation: str = field(default="mask", metadata=_h(
        "vector probes: which vector per example (mask = the prediction position)", choices=REPRESENTATIONS))
    probe_train_max: int | None = field(default=2000, metadata=_h("cap on probe train rows"))
    probe_dev_size: int = field(default=500, metadata=_h(
        "probe dev rows (hyperparameters, early stopping), drawn from the task's non-test rows left once the "
        "prompt's shots and dev rows are set aside; at most a third of them"))
    probe_grid: str = field(default="", metadata=_h(
        "widen or replace the probe's hyperparameter grid, chosen on dev: e.g. 'C=1e-5,1e-4,1e-3' (linear), "
        "'hidden=64,256;weight_decay=0,0.01;lr=1e-3' (mlp), 'lr=1e-3,3e-4;weight_decay=0,0.01' (transformer)"))
    probe_input: str = field(default="text+prompt", metadata=_h(
        "transformer probe at layers >= PL: the text positions alone, or the prompt positions too (what the next "
        "layer sees, as the paper)", choices=PROBE_INPUTS))
    probe_layers: int = field(default=1, metadata=_h("transformer probe: encoder layers K (the paper used 6)"))
    probe_width: int | None = field(default=128, metadata=_h(
        "transformer probe: width after an input projection (0 = none: the backbone's width)"))
    probe_init: str = field(default="scratch", metadata=_h(
        "transformer probe: scratch, or backbone = start from copies of the backbone's own top K layers (the "
        "closest analogue of the paper's 6-layer RoBERTa-large probe; no projection)",
        choices=TransformerProbeOptions.INITS))
    probe_readout: str = field(default="position", metadata=_h(
        "transformer probe: the state at the prediction position, or attention pooling",
        choices=TransformerProbeOptions.READOUTS))
    controls: bool = field(default=True, metadata=_h("skip the shuffled-label and random-weights controls",
                                                     flag="--no-controls"))
    control_permutations: int | None = field(default=None, metadata=_h(
        "label permutations averaged in the shuffled-label control (one draw moves by a few hundredths of a "
        "bit); default 3 for vector probes, 1 for the transformer probe (each draw refits it)"))
    mdl: bool | None = field(default=None, metadata=_h(
        "MDL online codelength of every probe (--mdl / --no-mdl); default: on for vector probes, off for the "
        "transformer probe (an online code refits it ten times per layer)", cli=False))
    jobs: int | None = field(default=None, metadata=_h(
        "worker processes that fit the linear / mlp probe pieces in parallel (default: the CPU cores, at most 8; "
        "1 = in this process); the results do not depend on it"))

    def __post_init__(self):
        super().__post_init__()
        if self.probe not in PROBES:
            raise ValueError(f"probe={self.probe!r} is unknown; choose one of {', '.join(PROBES)}")
        if self.probe_seeds is None:
            self.probe_seeds = (0,) if self.probe == "linear" else (0, 1, 2)
        self.probe_seeds = check_unique("--probe-seeds", (int(s) for s in self.probe_seeds), "probe seed")
        if not self.probe_seeds:
            raise ValueError("probe_seeds (--probe-seeds): give at least one probe seed, e.g. 0")
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation={self.representation!r}: choose one of {REPRESENTATIONS}")
        check_at_least(self, 1, "probe_dev_size")
        check_at_least(self, 2, "probe_train_max", optional=True)
        options = self.probe_options  # the probe checks its own options (a bad --probe-layers fails here)
        vars(self).update(options.as_flags())  # as it reads them: --probe-width 0 is None
        if self.mdl is None:
            self.mdl = options.default_mdl
        if self.control_permutations is None:
            self.control_permutations = options.default_permutations
        if self.jobs is None:
            self.jobs = default_jobs()
        check_at_least(self, 1, "jobs", "control_permutations")
        from ..probing.probes import parse_probe_grid  # here: the probe classes (sklearn), once a config is built

        parse_probe_grid(self.probe, self.probe_grid)  # a bad grid fails before anything runs

    @property
    def probe_options(self) -> ProbeOptions:
        """The chosen probe's own options, from the ``probe_<option>`` flags (``lpt_probe.probing.options``)."""
        from ..probing.probes import probe_options  # here: the probe classes (sklearn) name their options

        return probe_options(self.probe, self)

    @property
    def sequence_probe(self) -> bool:
        return getattr(PROBES[self.probe], "input_kind", "vector") == "sequence"


@dataclass
class InfluenceConfig(StudyConfig):
    """Every setting of one ``influence`` analysis (the flags of ``python -m
    lpt_probe.influence``): the study's (``StudyConfig``) and what is measured."""

    kind: ClassVar[str] = "influence"

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
    gradient_loss: str = field(default="train", metadata=_h(
        "the loss whose gradients the signal measures use: train (the prompt's own training loss; for an LM head "
        "over the whole vocabulary) or label_words (cross-entropy over the label words only: the label decision "
        "alone)", choices=GRADIENT_LOSSES))

    def __post_init__(self):
        super().__post_init__()
        if self.gradient_loss not in GRADIENT_LOSSES:
            raise ValueError(f"--gradient-loss {self.gradient_loss!r}: choose one of {', '.join(GRADIENT_LOSSES)}")
        self.checkpoints = tuple(sorted({int(s) for s in self.checkpoints or ()}))
        if self.influence_max == 0:
            self.influence_max = None
        if self.split not in SPLITS:
            raise ValueError(f"--split {self.split!r}: choose one of {', '.join(SPLITS)}")
        check_at_least(self, 1, "batch_size")
        check_at_least(self, 2, "influence_max", optional=True)
        bad = [c for c in self.checkpoints if not 0 <= c <= self.steps]
        if bad:
            raise ValueError(f"--checkpoints {','.join(map(str, bad))}: steps must lie in 0..--steps {self.steps}")
        check_at_least(self, 1, "save_every", optional=True)
        if self.checkpoints and self.save_every is None:
            self.save_every = math.gcd(*self.checkpoints) or self.steps
        off = [c for c in self.checkpoints if self.save_every and c % self.save_every]
        if off:
            raise ValueError(f"--checkpoints {','.join(map(str, off))} are not multiples of --save-every "
                             f"{self.save_every}: the run saves its prompt every {self.save_every} steps only")

    @property
    def checkpoint_names(self) -> list[str]:
        return ["init"] + [f"step-{c}" for c in self.checkpoints] + ["trained"]


    def train_config(self, seed: int, **extra) -> TrainConfig:
        return super().train_config(seed, save_every=self.save_every, **extra)


@dataclass
class Section4Config(StudyConfig):
    """Every setting of one Section 4 study (the flags of ``python -m lpt_probe.section4``):
    the study's (``StudyConfig``; its prompts are the sweep's, mi's and influence's) and the
    stages' own."""

    kind: ClassVar[str] = "section4"

    prompt_layers: str = field(default="all", metadata=_h(
        "the sweep's prompt layers (accuracy and convergence): 'all', 'default' (1, middle, last) or '1,4,6'"))
    generator: str = field(default="none", metadata=_h(
        "prompt generator (none: the plain late prompt of the paper's Section 4 analysis)", choices=GENERATORS))
    seeds: tuple[int, ...] = field(default=(13, 21, 42), metadata=_h("prompt seeds, comma separated"))
    eval_every: int = field(default=20, metadata=_h("dev evaluation every N steps (the convergence curves)"))
    steps: int = field(default=1000, metadata=_h(
        "the cap on each prompt's training steps (the paper's few-shot budget; with --patience training stops "
        "earlier once the prompt has learned)"))
    patience: int | None = field(default=5, metadata=_h(
        "train until learned: stop a prompt when its dev metric has not improved for this many evaluations "
        "(0 = train every --steps step)"))
    analysis_layers: str = field(default="default", metadata=_h(
        "prompt layers of mi and influence: 'default' (1, middle, last), 'all' or '1,4,6'; each must be in the "
        "sweep's --prompt-layers (its prompts are reused)"))
    probe: str = field(default="linear", metadata=_h("mi's probe family", choices=lambda: list(PROBES)))
    probe_train_max: int | None = field(default=2000, metadata=_h("mi: cap on probe train rows"))
    probe_dev_size: int = field(default=500, metadata=_h("mi: probe dev rows"))
    control_permutations: int | None = field(default=None, metadata=_h(
        "mi: label permutations per shuffled-label row (default: mi's)"))
    mdl: bool = field(default=False, metadata=_h("mi: also the MDL online codelength (off here: not a claim)"))
    influence_max: int | None = field(default=200, metadata=_h("influence: test examples measured (0 = all)"))
    influence_batch_size: int = field(default=16, metadata=_h("influence: examples per measured batch"))
    gradient_loss: str = field(default="train", metadata=_h(
        "influence: the loss of the signal's gradients: train (the prompt's own loss) or label_words (over the "
        "label words only)", choices=GRADIENT_LOSSES))
    jobs: int | None = field(default=None, metadata=_h("mi: worker processes for the probe pieces"))
    paper: str | None = field(default=None, metadata=_h(
        "the paper's Tables 5/10 CSV (e.g. ../shared/paper/lpt_paper_efficiency_tables_5_10.csv): its accuracy at "
        "prompt layers 1/7/13/19 of RoBERTa-large goes beside ours in claims.csv"))

    def __post_init__(self):
        if self.patience == 0:
            self.patience = None
        super().__post_init__()
        if self.eval_every > self.steps:
            raise ValueError(f"--eval-every {self.eval_every} > --steps {self.steps}: the convergence curves need "
                             "several evaluations; give --eval-every <= --steps")

    def _study(self, stage: str) -> dict:
        """The shared settings as a stage takes them: its folder, the analysis layers, and the
        sweep's runs to reuse."""
        shared = {f.name: getattr(self, f.name) for f in fields(StudyConfig)}
        return {**shared, "prompt_layers": self.analysis_layers, "out": str(Path(self.out_dir) / stage),
                "reuse_runs": (str(Path(self.out_dir) / "sweep" / "runs"), *self.reuse_runs)}

    def sweep_prompt(self) -> dict:
        """The sweep's prompt options: exactly those ``prompt_config`` gives mi's and
        influence's prompts, so the three stages key one prompt alike."""
        return {k: v for k, v in (("num_virtual_tokens", self.num_virtual_tokens), ("prompt_init", self.prompt_init))
                if v is not None}

    def mi_config(self) -> MIConfig:
        """mi's settings; its prompts' training settings are the sweep's and influence's too."""
        return MIConfig(**self._study("mi"), probe=self.probe, probe_train_max=self.probe_train_max,
                        probe_dev_size=self.probe_dev_size, control_permutations=self.control_permutations,
                        mdl=self.mdl, jobs=self.jobs)

    def influence_config(self) -> InfluenceConfig:
        return InfluenceConfig(**self._study("influence"), influence_max=self.influence_max,
                               batch_size=self.influence_batch_size, gradient_loss=self.gradient_loss)
