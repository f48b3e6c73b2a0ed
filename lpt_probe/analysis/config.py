"""The settings of the studies, without torch: ``StudyConfig``, ``MIConfig``,
``InfluenceConfig``, ``Section4Config``.

Config dataclasses in the style of peft's: one field per setting with its help text (the
flags of ``mi``, ``influence`` and ``section4`` are generated from them, ``lpt_probe.commands.cli``),
checks in ``__post_init__``, saved in ``run.json`` beside the results. They compose rather
than copy (``lpt_probe.compose``): ``StudyConfig`` holds what every study shares (``train``,
a ``TrainConfig``; ``late_prompt``, a ``LatePromptConfig``; ``grid``, a ``PromptGrid``;
``output``, an ``OutputConfig``; ``lpt_probe.analysis.engine.conditions`` says what a study is), ``mi``'s
options are one ``MIOptions`` and ``influence``'s one ``InfluenceOptions``, held by their
study's config and by ``Section4Config``, which hands them to its stages (``mi_config``,
``influence_config``). Each class's ``FLAT`` table gives the flat names its flags and its
constructor take (``MIConfig(task="rte", steps=100)``) and this command's defaults.
They live apart from the code that runs them
(``mi``, ``influence``, ``section4``, which re-export them) so that ``--help`` and building a
config import no torch; what needs sklearn to check (is ``--probe-grid`` a grid of that
probe?) is imported when a config is built. A config keeps the ``--device`` asked for
(``auto`` stays ``auto``); a study resolves it when it starts (``engine.base.Study.device``), each
Ray worker on its own machine.

The choices the flags list live here too: ``REPRESENTATIONS`` (re-exported by
``representations``), ``GRADIENT_LOSSES`` (``influence.measures``), ``PROJECTION_METHODS``
(``projection.METHODS``), and the "execution" flags of ``mi`` and ``influence``
(``EXECUTION_HELP``: their help texts; ``lpt_probe.commands.cli.add_execution_args``
turns them into flags).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from ..compose import OWN, Flat, composed, flat_settings, from_settings, nested, via
from ..data.sources import task_slug
from ..layers import check_unique
from ..model.config import LatePromptConfig
from ..model.specs import PRESETS, model_slug
from ..outputs import check_url
from ..probing.options import ProbeOptions, TransformerProbeOptions
from ..probing.registry import PROBES
from ..runs.config import SPLITS, GridRun, TrainConfig

REPRESENTATIONS = ("cls", "mask", "mean")  # the vectors per example a vector probe reads (representations.py)
GRADIENT_LOSSES = ("train", "label_words")  # the losses influence's signal measures differentiate
PROJECTION_METHODS = ("umap", "tsne", "pca")  # project --method (lpt_probe.analysis.projection.compute)
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
    """A config field's metadata: its ``--help`` text and flag options (``lpt_probe.commands.cli``)."""
    return {"help": text, **kw}


_h = field_help  # a config field's help text and flag options


@composed
class StudyConfig(GridRun):
    """The settings every study shares (see the module docstring): how its prompts train
    (``train``, a ``TrainConfig``; each prompt takes its seed from ``--seeds``), what they
    are (``late_prompt``, a ``LatePromptConfig``; its prompt layer from ``--prompt-layers``),
    which (``grid``: prompt layers and seeds) and where the study writes (``output``; both
    from ``GridRun``, as a sweep's). The flags, and the keywords the constructor takes, are
    flat (``FLAT``, ``lpt_probe.compose``): ``MIConfig(task="rte", steps=100)`` is
    ``MIConfig(train=TrainConfig(task="rte", steps=100, ...the study's defaults))``."""

    kind: ClassVar[str] = "study"  # the default output folder: artifacts/<kind>/<task>/<model>
    FLAT: ClassVar[dict[str, Flat]] = {  # the flags, in --help order, and where each lives
        "task": via("train", help="a registered task or a custom task's YAML file"),
        "model": via("train", help=f"{', '.join(PRESETS)} (offline presets; default minilm), a hub id or a folder"),
        "data_dir": via("train", help="local task files (e.g. ../shared/data); default: the hub"),
        "source": via("train", help="auto, hub or local", choices=("auto", "hub", "local")),
        "prompt_layers": via("grid", default="default", help="'default' (1, middle, last), 'all' or '1,4,6'"),
        "generator": via("late_prompt"),
        "num_virtual_tokens": via("late_prompt", help="prompt length l (default: the generator's)"),
        "prompt_init": via("late_prompt", help="the plain prompt's initialisation: normal = N(0, 1); states = "
                                               "hidden states PL-1 of training tokens (the prompt starts at the scale "
                                               "of the states it joins)"),
        "seeds": via("grid", default=(13,), help="prompt seeds, comma separated (Figure 2: 13,21,42)"),
        "shots": via("train", default=100, zero_is_none=True, help="few-shot K for prompt training (0 = full data)"),
        "data_seed": via("train"),
        "dev_size": via("train", help="the prompt's dev set (rows drawn from the training pool unless the task has a "
                                      "dev file); mi sets it aside from the probes' rows with the prompt's shots"),
        "steps": via("train", default=200, help="prompt training steps (paper few-shot: 1000)"),
        "eval_every": via("train", help="evaluate the prompt on dev every N steps"),
        "patience": via("train", help="train until learned: stop a prompt when its dev metric has not improved for "
                                      "this many evaluations (--steps is then the cap); default: every step"),
        "lr": via("train", default=1e-3, help="prompt learning rate"),
        "bootstrap": OWN,
        "max_examples": via("train"),
        "max_length": via("train", default=128, help="max tokens per example"),
        "drop_overlap": via("train", default=True, help=(
            "remove training-pool rows whose text is also a test text, compared case- and space-insensitively (for "
            "studies: a prompt or probe that saw a test text would measure memory, not information)"),
            flag="--keep-overlap", on_flag="--drop-overlap",
            off_help="keep training-pool rows whose text is also a test text (they may be drawn as shots, dev or "
                     "probe rows)"),
        "reuse_runs": OWN,
        "device": via("train"),
        "dtype": via("train", help="precision of the frozen backbone's weights (bf16/fp16 on a GPU); prompts, "
                                   "generators and probes stay fp32"),
        "out": via("output", help="output folder, default artifacts/<command>/<task>/<model>/; the commands also "
                                  "take an fsspec URL (computed in a local staging folder, $LPT_PROBE_STAGING, "
                                  "then uploaded)"),
        "overwrite": via("output"),
        "progress": via("output"),
    }

    train: TrainConfig = nested(TrainConfig)
    late_prompt: LatePromptConfig = nested(LatePromptConfig)
    bootstrap: int = field(default=1000, metadata=_h("bootstrap resamples over test examples for every 95% CI"))
    reuse_runs: tuple[str, ...] = field(default=(), metadata=_h(
        "folders of run folders (e.g. a sweep's runs/) searched for a finished prompt with exactly the same "
        "settings, data and model before one is trained", metavar="DIR,DIR,..."))

    def __post_init__(self):
        if self.train.steps is None:
            raise ValueError(f"a study trains its prompts for --steps: give steps (its train config has "
                             f"epochs={self.train.epochs})")
        check_at_least(self.train, 2, "max_examples", optional=True)
        check_at_least(self, 0, "bootstrap")
        self.reuse_runs = tuple(str(p) for p in self.reuse_runs)
        check_url(self.output.out or "", local_only=True)  # a local folder here: the commands stage a URL

    def train_config(self, seed: int) -> TrainConfig:
        """How this study's prompt of ``seed`` trains: ``train`` with that seed."""
        return replace(self.train, seed=seed)

    def prompt_config(self, prompt_layer: int) -> LatePromptConfig:
        """The late prompt this study trains at ``prompt_layer``: ``late_prompt`` at that layer."""
        return replace(self.late_prompt, prompt_layer=prompt_layer)

    @classmethod
    def from_settings(cls, settings: dict) -> "StudyConfig":
        """The config a study saved (``run.json`` / ``section4.json``'s ``settings``: nested, or
        flat as written up to 0.2.0), built again."""
        return from_settings(cls, settings)

    def default_out(self) -> Path:
        return Path("artifacts") / self.kind / task_slug(self.train.task) / model_slug(self.train.model)

    @property
    def out_dir(self) -> Path:
        return Path(self.output.out) if self.output.out else self.default_out()


# -- each study's own options ----------------------------------------------------------------

@dataclass
class MIOptions:
    """``mi``'s own options: the probes and the controls (held by ``MIConfig`` and
    ``Section4Config``, :class:`WithMI`). The ``probe_<option>`` flags (``--probe-layers``,
    ...) are the chosen probe family's own options: :attr:`probe_options` builds them, the
    probe checks them and answers what the analysis asks (``lpt_probe.probing.options``)."""

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
class InfluenceOptions:
    """``influence``'s own options: what is measured (held by ``InfluenceConfig`` and
    ``Section4Config``, :class:`WithInfluence`). The checkpoints' ``--save-every`` is the
    prompts' training setting (``TrainConfig.save_every``)."""

    checkpoints: tuple[int, ...] | None = field(default=None, metadata=_h(
        "also measure the prompt after these training steps, e.g. 50,100 (0 = the initial prompt; the runs are "
        "trained with --save-every, see --save-every)"))
    split: str = field(default="test", metadata=_h("the split measured", choices=SPLITS))
    influence_max: int | None = field(default=200, metadata=_h(
        "measure at most this many examples of --split (stratified by label, fixed seed; 0 = all)"))
    measure_batch_size: int = field(default=16, metadata=_h("examples per measured batch"))
    gradient_loss: str = field(default="train", metadata=_h(
        "the loss whose gradients the signal measures use: train (the prompt's own training loss; for an LM head "
        "over the whole vocabulary) or label_words (cross-entropy over the label words only: the label decision "
        "alone)", choices=GRADIENT_LOSSES))

    def __post_init__(self):
        if self.gradient_loss not in GRADIENT_LOSSES:
            raise ValueError(f"--gradient-loss {self.gradient_loss!r}: choose one of {', '.join(GRADIENT_LOSSES)}")
        self.checkpoints = tuple(sorted({int(s) for s in self.checkpoints or ()}))
        if self.influence_max == 0:
            self.influence_max = None
        if self.split not in SPLITS:
            raise ValueError(f"--split {self.split!r}: choose one of {', '.join(SPLITS)}")
        if self.measure_batch_size < 1:
            raise ValueError(f"batch_size={self.measure_batch_size} (--batch-size) must be >= 1")
        check_at_least(self, 2, "influence_max", optional=True)

    @property
    def checkpoint_names(self) -> list[str]:
        return ["init"] + [f"step-{c}" for c in self.checkpoints] + ["trained"]


@dataclass
class WithMI:
    """A study that probes I(h;y): it holds ``mi``'s options (declared here once)."""

    mi: MIOptions = nested(MIOptions)


@dataclass
class WithInfluence:
    """A study that measures influence: it holds ``influence``'s options (declared here once)."""

    influence: InfluenceOptions = nested(InfluenceOptions)


# -- the studies ---------------------------------------------------------------------------

MI_FLAT = {f.name: via("mi") for f in fields(MIOptions)}  # mi's flags: every option, as named there


@composed
class MIConfig(StudyConfig, WithMI):
    """Every setting of one ``mi`` analysis (the flags of ``python -m lpt_probe.mi``): the
    study's (``StudyConfig``) and the probes' (``mi``, :class:`MIOptions`)."""

    kind: ClassVar[str] = "mi"
    FLAT: ClassVar[dict[str, Flat]] = MI_FLAT


@composed
class InfluenceConfig(StudyConfig, WithInfluence):
    """Every setting of one ``influence`` analysis (the flags of ``python -m
    lpt_probe.influence``): the study's (``StudyConfig``) and what is measured (``influence``,
    :class:`InfluenceOptions`)."""

    kind: ClassVar[str] = "influence"
    FLAT: ClassVar[dict[str, Flat]] = {
        "checkpoints": via("influence"),
        "save_every": via("train", help="train the prompts with --save-every N (default with --checkpoints: their "
                                        "greatest common divisor); every --checkpoints step must be a multiple of it"),
        "split": via("influence"),
        "influence_max": via("influence"),
        "batch_size": via("influence", "measure_batch_size"),
        "gradient_loss": via("influence"),
    }

    def __post_init__(self):
        super().__post_init__()
        train, checkpoints = self.train, self.influence.checkpoints
        bad = [c for c in checkpoints if not 0 <= c <= train.steps]
        if bad:
            raise ValueError(f"--checkpoints {','.join(map(str, bad))}: steps must lie in 0..--steps {train.steps}")
        if checkpoints and train.save_every is None:
            train.save_every = math.gcd(*checkpoints) or train.steps
        off = [c for c in checkpoints if train.save_every and c % train.save_every]
        if off:
            raise ValueError(f"--checkpoints {','.join(map(str, off))} are not multiples of --save-every "
                             f"{train.save_every}: the run saves its prompt every {train.save_every} steps only")


@composed
class Section4Config(StudyConfig, WithMI, WithInfluence):
    """Every setting of one Section 4 study (the flags of ``python -m lpt_probe.section4``):
    the study's (``StudyConfig``; its prompts are the sweep's, mi's and influence's, with
    Section 4's defaults), the stages' own (``mi``, ``influence``; a few of them are flags
    here) and the study's."""

    kind: ClassVar[str] = "section4"
    FLAT: ClassVar[dict[str, Flat]] = {
        "prompt_layers": via("grid", default="all", help=(
            "the sweep's prompt layers (accuracy and convergence): 'all', 'default' (1, middle, last) or '1,4,6'")),
        "generator": via("late_prompt", help="prompt generator (none: the plain late prompt of the paper's Section 4 "
                                        "analysis)"),
        "seeds": via("grid", default=(13, 21, 42), help="prompt seeds, comma separated"),
        "eval_every": via("train", default=20, help="dev evaluation every N steps (the convergence curves)"),
        "steps": via("train", default=1000, help=(
            "the cap on each prompt's training steps (the paper's few-shot budget; with --patience training stops "
            "earlier once the prompt has learned)")),
        "patience": via("train", default=5, zero_is_none=True, help=(
            "train until learned: stop a prompt when its dev metric has not improved for this many evaluations "
            "(0 = train every --steps step)")),
        "analysis_layers": OWN,
        "probe": via("mi", help="mi's probe family"),
        "probe_train_max": via("mi", help="mi: cap on probe train rows"),
        "probe_dev_size": via("mi", help="mi: probe dev rows"),
        "control_permutations": via("mi", help="mi: label permutations per shuffled-label row (default: mi's)"),
        "mdl": via("mi", default=False, help="mi: also the MDL online codelength (off here: not a claim)", cli=True),
        "influence_max": via("influence", help="influence: test examples measured (0 = all)"),
        "influence_batch_size": via("influence", "measure_batch_size", help="influence: examples per measured batch"),
        "gradient_loss": via("influence", help=(
            "influence: the loss of the signal's gradients: train (the prompt's own loss) or label_words (over the "
            "label words only)")),
        "jobs": via("mi", help="mi: worker processes for the probe pieces"),
        "paper": OWN,
    }

    analysis_layers: str = field(default="default", metadata=_h(
        "prompt layers of mi and influence: 'default' (1, middle, last), 'all' or '1,4,6'; each must be in the "
        "sweep's --prompt-layers (its prompts are reused)"))
    paper: str | None = field(default=None, metadata=_h(
        "the paper's Tables 5/10 CSV (e.g. ../shared/paper/lpt_paper_efficiency_tables_5_10.csv): its accuracy at "
        "prompt layers 1/7/13/19 of RoBERTa-large goes beside ours in claims.csv"))

    def __post_init__(self):
        super().__post_init__()
        if self.train.eval_every > self.train.steps:
            raise ValueError(f"--eval-every {self.train.eval_every} > --steps {self.train.steps}: the convergence "
                             "curves need several evaluations; give --eval-every <= --steps")

    def _stage(self, cls, stage: str, **options) -> StudyConfig:
        """A stage's config: this study's prompts (the same training, so each is keyed alike),
        at the analysis layers, in the stage's folder, reusing the sweep's runs."""
        return cls(train=replace(self.train), late_prompt=replace(self.late_prompt),
                   grid=replace(self.grid, prompt_layers=self.analysis_layers),
                   output=replace(self.output, out=str(Path(self.out_dir) / stage)), bootstrap=self.bootstrap,
                   reuse_runs=(str(Path(self.out_dir) / "sweep" / "runs"), *self.reuse_runs), **options)

    def sweep_prompt(self) -> dict:
        """The sweep's prompt options: exactly those ``prompt_config`` gives mi's and
        influence's prompts, so the three stages key one prompt alike."""
        return {"num_virtual_tokens": self.late_prompt.num_virtual_tokens, "prompt_init": self.late_prompt.prompt_init}

    def mi_config(self) -> MIConfig:
        """mi's settings; its prompts' training settings are the sweep's and influence's too."""
        return self._stage(MIConfig, "mi", mi=replace(self.mi))

    def influence_config(self) -> InfluenceConfig:
        return self._stage(InfluenceConfig, "influence", influence=replace(self.influence))


def study_settings(cls, settings: dict) -> dict:
    """A study's saved settings (``run.json`` / ``section4.json``'s ``settings``: nested since
    0.3, flat before) as its flat names, the flags' (``lpt_probe.compose.flat_settings``)."""
    return flat_settings(cls, settings)
