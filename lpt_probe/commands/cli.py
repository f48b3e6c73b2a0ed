"""Command-line fronts: flags generated from config dataclasses, shared parsers, exits.

Every command (``python -m lpt_probe.<command>``) is a thin ``main(argv=None)``: it builds
an ``argparse`` parser with :func:`add_config_args` from the fields of the config
dataclasses it runs (``TrainConfig``, ``LatePromptConfig``, ``MIConfig``, ``SweepConfig``,
...), builds the configs with :func:`config_from_args`, and hands them to the library
through :func:`run_main`, which turns user errors into one ``error: ...`` line (exit 2)
and Ctrl-C into one ``interrupted: ...`` line (exit 130), no traceback.

A field's flag comes from its metadata: ``help`` (the help text, typed once), ``choices``
(a collection or a callable returning one, so choices are read from the registries:
``GENERATORS``, ``METHODS``, ``PROBES``, ...), ``flag`` (the option string, or a tuple of
them, when it is not ``--field-name``), ``cli=False`` (no flag). Booleans that default to True get
``--no-<name>`` (or ``flag``; ``on_flag`` adds the positive spelling too, for a
default that was once False: the field's help goes with it, ``off_help`` with ``flag``), those that default to False ``--<name>``; ``tuple[int, ...]`` fields take
comma lists (``--seeds 13,21,42``), each parse error naming its flag.

Why not ``transformers.HfArgumentParser`` (which STYLE.md suggests first): it adds an
underscore alias for every flag (``--data_dir``), spells booleans ``--cache False`` /
``--no_cache``, and takes choices only from ``Literal``/``Enum`` types, not from the
registries that plugins extend at run time; the commands' flags predate this module and
must stay as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import re
import sys
import time
import types
import typing
from typing import Any, Callable, Iterable

from ..compose import flat_fields
from ..analysis.config import EXECUTION_HELP
from ..outputs import stale_status, staged
from ..runs.config import ExecutorConfig
from ..store import DamagedFile, DiskFull, FolderBusy, is_url

logger = logging.getLogger(__name__)

# Errors that are the user's to fix: one line, exit 2. Everything else is a bug: traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError, FolderBusy,
               DamagedFile, DiskFull)


def int_list(flag: str) -> Callable[[str], tuple[int, ...]]:
    """argparse ``type`` for a comma list of integers (``13,21,42``)."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(x) for x in str(text).split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"give comma-separated integers like 13,21,42 (got {text!r})") from None
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one integer (got {text!r})")
        return values

    parse.__name__ = f"{flag} list"
    return parse


def str_list(flag: str, choices: Iterable[str] | Callable[[], Iterable[str]] | None = None):
    """argparse ``type`` for a comma list of names, checked against ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        values = tuple(x.strip() for x in str(text).split(",") if x.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one name (got {text!r})")
        known = list(choices() if callable(choices) else choices) if choices is not None else None
        bad = [v for v in values if known is not None and v not in known]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
        return values

    parse.__name__ = f"{flag} list"
    return parse


def _choices(meta: dict) -> list | None:
    c = meta.get("choices")
    if c is None:
        return None
    return list(c() if callable(c) else c)


def _base_type(tp) -> tuple[Any, bool]:
    """(type without Optional, is_optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


# How --help groups the flags of the configs (presentation only; each command passes the
# grouping of its configs to add_config_args). A field not named goes to the last group.
DATA = ("task", "model", "data_dir", "source", "shots", "data_seed", "dev_size", "max_examples", "max_length",
        "drop_overlap")
TRAIN_GROUPS = {
    "task and data": DATA,
    "training": ("seed", "lr", "batch_size", "steps", "epochs", "eval_every", "patience", "save_every", "cache",
                 "backbone_dropout", "bucket", "grad_accum"),
    "hardware": ("device", "dtype"),
}
PROMPT_GROUPS = {
    "late prompt": ("method", "prompt_layer", "generator", "num_virtual_tokens", "prompt_init", "bottleneck", "head",
                    "loss"),
    "baseline options (with --method)": ("lora_rank", "lora_alpha", "adapter_size", "adapter_layers", "phm_n",
                                         "sentence_pooling"),
}
STUDY_GROUPS = {
    "task and data": DATA,
    "prompts": ("prompt_layers", "analysis_layers", "generator", "num_virtual_tokens", "prompt_init", "seeds", "steps",
                "eval_every",
                "patience", "lr", "checkpoints", "save_every", "reuse_runs", "gradient_loss"),
    "probes (mi)": ("probe", "probe_seeds", "representation", "probe_train_max", "probe_dev_size", "probe_grid",
                    "probe_input", "probe_layers", "probe_width", "probe_init", "probe_readout", "mdl"),
    "estimates and controls": ("bootstrap", "controls", "control_permutations", "paper"),
    "measurement (influence)": ("split", "influence_max", "batch_size", "influence_batch_size"),
    "hardware and output": ("device", "dtype", "jobs", "out", "progress"),
}


def _target(parser, groups: dict[str, Iterable[str]] | None, name: str):
    """The argument group a field's flag goes to (created once per title on ``parser``)."""
    if not groups or not isinstance(parser, argparse.ArgumentParser):
        return parser
    title = next((t for t, names in groups.items() if name in names), list(groups)[-1])
    made = parser.__dict__.setdefault("_lpt_groups", {})
    if title not in made:
        made[title] = parser.add_argument_group(title)
    return made[title]


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, *,
                    skip: Iterable[str] = (), defaults: dict[str, Any] | None = None,
                    helps: dict[str, str] | None = None, groups: dict[str, Iterable[str]] | None = None) -> None:
    """Add one flag per field of the dataclass ``cls`` (see the module docstring).

    ``skip``: fields without a flag here; ``defaults`` / ``helps``: per-command overrides
    (``mi`` trains for 200 steps where ``train`` defaults to 1000); ``groups``: title ->
    field names, the sections of ``--help`` (``TRAIN_GROUPS``, ``PROMPT_GROUPS``,
    ``STUDY_GROUPS``)."""
    skip, defaults, helps = set(skip), defaults or {}, helps or {}
    root = parser
    for f in flat_fields(cls):  # a composed config's nested fields flat, under the names FLAT gives them
        meta = f.metadata
        if f.name in skip or meta.get("cli", True) is False:
            continue
        parser = _target(root, groups, f.name)
        default = defaults[f.name] if f.name in defaults else None if f.default is dataclasses.MISSING else f.default
        text = helps.get(f.name, meta.get("help", ""))
        tp, optional = _base_type(typing.get_type_hints(f.owner_cls)[f.field.name])
        choices = _choices(meta)
        dashed = f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "default": default}
        flags = meta.get("flag")
        flags = (flags,) if isinstance(flags, str) else tuple(flags or ())
        if tp is bool:
            flags = flags or ((f"--no-{dashed}",) if default else (f"--{dashed}",))
            on = meta.get("on_flag")
            if on and default:  # a True default that also keeps its old positive spelling
                g = parser.add_mutually_exclusive_group()
                g.add_argument(on, action="store_true", help=f"{text} (the default)", **kw)
                g.add_argument(*flags, action="store_false", dest=f.name,
                               help=meta.get("off_help", f"the opposite of {on}"))
                continue
            parser.add_argument(*flags, action="store_false" if default else "store_true", help=text, **kw)
            continue
        flags = flags or (f"--{dashed}",)
        flag = flags[0]
        if typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            kw["type"] = int_list(flag) if item is int else str_list(flag, meta.get("choices"))
            kw["metavar"] = meta.get("metavar", "A,B,..." if item is str else "N,N,...")
            if choices:
                text = f"{text} (from {', '.join(map(str, choices))})" if text else f"from {', '.join(choices)}"
        else:
            if tp in (int, float):
                kw["type"] = tp
            if choices is not None:
                kw["choices"] = choices
            if "metavar" in meta:
                kw["metavar"] = meta["metavar"]
        if default is not None:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        parser.add_argument(*flags, help=text.replace("%", "%%"), **kw)


def config_from_args(cls, args: argparse.Namespace, **override):
    """``cls(**flat names found in args, **override)``: the config a command runs (a composed
    config routes each flat name to the nested config that owns it, ``lpt_probe.compose``)."""
    values = {f.name: getattr(args, f.name) for f in flat_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **override})


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` / ``--verbose``, on every command."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors")
    g.add_argument("--verbose", "-v", action="store_true", help="details at DEBUG level (every probe fit)")


def setup_logging(args: argparse.Namespace) -> None:
    level = (logging.WARNING if getattr(args, "quiet", False) else
             logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    root = logging.getLogger()
    if not root.handlers:  # a notebook or a test harness may have its own: keep them
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    for noisy in ("fontTools", "matplotlib", "urllib3", "filelock", "PIL", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # every probe fit logs a line at INFO: a command shows them with --verbose only (so do its workers)
    logging.getLogger("lpt_probe.probing").setLevel(logging.DEBUG if level == logging.DEBUG else
                                                    max(level, logging.WARNING))


def run_main(parser: argparse.ArgumentParser, body: Callable[[], int],
             interrupted: str | Callable[[], str] = "") -> int:
    """Run a command's body: user errors -> ``error: ...`` (exit 2), Ctrl-C -> one line
    (exit 130; ``interrupted`` says what was marked, a string or a callable giving one)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            return body()
    except KeyboardInterrupt:
        what = interrupted() if callable(interrupted) else interrupted
        sys.stderr.write(f"interrupted{': ' + what if what else ''}\n")
        return 130
    except USER_ERRORS as exc:
        parser.exit(2, f"error: {exc}\n")
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        parser.exit(2, f"error: a file grew past this process's file-size limit (ulimit -f){where}; raise the limit "
                       f"(ulimit -f unlimited) and rerun the command (finished parts are kept)\n")
    return 1  # pragma: no cover  (parser.exit raises)


def add_plan_flag(group) -> None:
    """``--plan``: print what the command will do and cost, and exit (``lpt_probe.runs.planning``)."""
    group.add_argument("--plan", action="store_true",
                       help="print what this invocation will train, compute, write and fit, with a time estimate "
                            "calibrated on this machine, and exit: nothing is trained or written")


ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc):`~?([^`]+)`")


def plain_text(doc: str) -> str:
    """A docstring as a terminal (and the CLI reference page) shows it: reST roles
    (``:mod:`x```) and double-backtick literals become the bare names."""
    return ROLE.sub(r"\1", doc).replace("``", "")


def study_parser(prog: str, doc: str, cfg_cls) -> argparse.ArgumentParser:
    """A study command's parser: its whole docstring as the description (``plain_text``), the
    config's flags in ``STUDY_GROUPS`` sections, ``--quiet`` / ``--verbose``."""
    p = argparse.ArgumentParser(prog=prog, description=plain_text(doc),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, cfg_cls, groups=STUDY_GROUPS)
    add_output_args(p)
    return p


def study_main(parser: argparse.ArgumentParser, argv: list[str] | None, cfg_cls,
               work: Callable[[Any, argparse.Namespace], tuple[str, str]], status_file: str = "run.json",
               before: Callable[[argparse.Namespace], int | None] | None = None) -> int:
    """The body every study command shares (``mi``, ``influence``, ``section4``): parse,
    log, build ``cfg_cls`` from the flags, run ``work(cfg, args)``, which returns (the
    summary to print, what it wrote), and print both with the time taken; user errors and
    Ctrl-C as :func:`run_main` (an interruption names the status file to resume from).
    ``before(args)``: a mode that needs no config (e.g. ``section4 --table``); its return
    value, when not None, is the exit status. An fsspec URL as ``--out`` is computed in its
    local staging folder and uploaded when the work finishes (``outputs.staged``; not with
    ``--plan``)."""
    args = parser.parse_args(argv)
    setup_logging(args)
    t0 = time.perf_counter()
    state = {"out": getattr(args, "out", None)}

    def body() -> int:
        if before is not None:
            done = before(args)
            if done is not None:
                return done
        url = args.out if is_url(getattr(args, "out", None)) else None
        with staged(url, status_file, upload=not getattr(args, "plan", False)) as local:
            cfg = config_from_args(cfg_cls, args, progress=args.progress and not args.quiet,
                                   **({"out": str(local)} if url else {}))
            missing = [p for p in getattr(args, "reuse_runs", ()) or () if not os.path.isdir(p)]
            if missing:  # a mistyped folder would silently train every prompt again
                raise FileNotFoundError(f"--reuse-runs {','.join(missing)}: no such folder; give folders of run "
                                        f"folders (e.g. a sweep's runs/), or leave the flag out")
            state["out"] = str(cfg.out_dir)
            summary, wrote = work(cfg, args)
        if url:  # the files are at the URL now
            wrote = wrote.replace(str(local), url.rstrip("/"))
        print(summary)
        print(f"wrote {wrote} in {time.perf_counter() - t0:.0f} s")
        return 0

    return run_main(parser, body, interrupted=lambda: f"{state['out']}/{status_file} marked 'interrupted'; rerun "
                                                      "the command to resume (finished pieces are kept)")


def plan_or_run(cfg, args, plan: Callable[[Any], Any], run: Callable[[Any, ExecutorConfig], Any]):
    """What ``mi`` and ``influence`` do with their config: with ``--plan``, the plan text (a note
    first when an earlier run was killed) and None; otherwise the study's result, run with the
    execution flags. ``plan`` and ``run`` are the study's functions, imported by the caller
    (torch loads only to run: ``--help`` and the parser need none)."""
    if args.plan:
        stale = stale_status(cfg.out_dir, "run.json")  # a killed earlier run: say so
        return "\n".join([*([f"note: {stale}"] if stale else []), plan(cfg).render()]), None
    return None, run(cfg, config_from_args(ExecutorConfig, args))  # device as asked: resolved where it runs


def draw_result(res, filename: str):
    """``res.plot()`` saved as ``filename`` in the result's folder (paper style); the path."""
    import matplotlib.pyplot as plt  # here: plotting loads only to draw

    from .. import viz  # here: plotting loads only to draw

    with viz.paper_style():
        fig = res.plot()
        path = viz.save_figure(fig, res.out / filename)[0]
        plt.close(fig)
    return path


def add_execution_args(parser) -> None:
    """The "execution" flags of ``mi`` and ``influence``: ``--executor``, ``--address``,
    ``--cpus-per-run``, ``--gpus-per-run`` (the sweep's names)."""
    add_config_args(parser.add_argument_group("execution"), ExecutorConfig, skip=("retries",), helps=EXECUTION_HELP)
