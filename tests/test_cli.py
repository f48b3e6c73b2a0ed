"""The command-line fronts after the run-library step: the same flags as before (plus the
ones later issues added, listed here), flags generated from the config dataclasses,
choices read from the registries, parse errors naming their flag, and the package's
import rules (no private names across modules, no command importing another)."""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from lpt_probe import figures, mi, project, sweep, train
from lpt_probe.analysis.mi import MIConfig
from lpt_probe.cli import add_config_args, config_from_args
from lpt_probe.model.generators import GENERATORS
from lpt_probe.model.methods import METHODS
from lpt_probe.probing import PROBES
from lpt_probe.runs.executors import ExecutorConfig
from lpt_probe.runs.sweep import SweepConfig
from lpt_probe.runs.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
BEFORE = json.loads((REPO / "tests" / "data" / "cli_flags_before.json").read_text())
COMMON = {"--quiet", "-q", "--verbose", "-v"}  # every command, added with the run library
METHOD_OPTIONS = {"--adapter-size", "--adapter-layers", "--phm-n", "--sentence-pooling"}  # issue 13
ADDED = {  # flags added since, by the issue that asked for them
    "train": COMMON | {"--drop-overlap", "--save-every", "--overwrite"} | METHOD_OPTIONS,  # --overwrite: issue 34
    "sweep": COMMON | {"--drop-overlap", "--save-every", "--plan", "--overwrite"} | METHOD_OPTIONS,
    "mi": COMMON | {"--mdl", "--drop-overlap", "--probe-grid", "--probe-input", "--probe-layers", "--probe-width",
                    "--probe-init", "--probe-readout", "--control-permutations", "--jobs",
                    "--dev-size", "--probe-dev-size", "--keep-overlap", "--reuse-runs",  # issue 22
                    "--dtype",  # issue 23
                    "--executor", "--address", "--cpus-per-run", "--gpus-per-run", "--plan",  # issue 26
                    "--overwrite"},  # issue 34
    "project": COMMON,
}
for _cmd in ("train", "sweep", "mi"):  # issue 32: train until learned
    ADDED[_cmd] = ADDED[_cmd] | {"--patience", "--prompt-init"}
for _cmd in ("train", "sweep"):  # issue 36: length bucketing by default; --no-bucket is the old order
    ADDED[_cmd] = ADDED[_cmd] | {"--no-bucket"}


def flags(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    out = {"": {s for a in parser._actions for s in a.option_strings}}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out[name] = {s for b in sub._actions for s in b.option_strings}
    return out


@pytest.mark.parametrize("name, module", [("train", train), ("mi", mi), ("sweep", sweep), ("project", project),
                                          ("figures", figures)])
def test_every_command_keeps_its_flags(name, module):
    now = flags(module.build_parser())
    for sub, found in now.items():
        key = f"{name} {sub}".strip()
        if key not in BEFORE:
            continue
        old = set(BEFORE[key])
        assert old <= found, f"{key} lost flags {sorted(old - found)}"
        extra = found - old - ADDED.get(name, COMMON)
        assert not extra, f"{key} gained undeclared flags {sorted(extra)}: list them in ADDED"


def test_choices_come_from_the_registries():
    p = mi.build_parser()
    by_dest = {a.dest: a for a in p._actions}
    assert list(by_dest["probe"].choices) == list(PROBES) and "transformer" in PROBES
    assert list(by_dest["generator"].choices) == list(GENERATORS)
    t = {a.dest: a for a in train.build_parser()._actions}
    assert list(t["method"].choices) == list(METHODS)


def test_configs_round_trip_through_their_flags():
    p = argparse.ArgumentParser()
    add_config_args(p, TrainConfig)
    args = p.parse_args(["--task", "rte", "--steps", "7", "--no-cache", "--drop-overlap", "--dtype", "bf16"])
    cfg = config_from_args(TrainConfig, args)
    assert (cfg.task, cfg.steps, cfg.cache, cfg.drop_overlap, cfg.dtype) == ("rte", 7, False, True, "bf16")
    assert json.loads(json.dumps(asdict(cfg))) == asdict(cfg)  # JSON-serialisable, as run.json stores it
    m = config_from_args(MIConfig, mi.build_parser().parse_args(["--seeds", "13,21", "--shots", "0"]))
    assert m.seeds == (13, 21) and m.shots is None and m.max_length == 128 and m.task == "rte"
    s = config_from_args(SweepConfig, sweep.build_parser().parse_args(["--method", "lpt,lora", "--seeds", "1"]))
    assert s.methods == ("lpt", "lora") and s.seeds == (1,)
    e = config_from_args(ExecutorConfig, sweep.build_parser().parse_args(["--retries", "0"]))
    assert e.retries == 0 and e.executor == "local"


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "abc"], "argument --seeds: give comma-separated integers"),
    (["--probe", "nope"], "argument --probe: invalid choice: 'nope'"),
    (["--probe-seeds", "1,x"], "argument --probe-seeds: give comma-separated integers"),
])
def test_parse_errors_name_their_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        mi.build_parser().parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_no_private_names_cross_modules_and_commands_stay_apart():
    proc = subprocess.run(["grep", "-rE", r"from \.+[a-z_.]* import .*\b_[a-z]", "lpt_probe"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.stdout == "", proc.stdout
    commands = {"train", "mi", "sweep", "figures", "project", "influence", "section4"}
    for name in commands:
        path = REPO / "lpt_probe" / f"{name}.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text())
        imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1
                    and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1
                     and n.module is None for a in n.names}
        assert not (imported & (commands - {name})), f"{name}.py imports command module(s) {imported & commands}"


# The layers the README's Architecture section states; each module imports only from its own
# layer or the layers above it (a lower number).
LAYERS = {"layers": 1, "store": 1, "outputs": 1, "progress": 1, "cli": 1, "model": 2, "data": 2, "runs": 3, "analysis": 4,
          "probing": 4, "viz": 4, "train": 5, "mi": 5, "influence": 5, "sweep": 5, "section4": 5, "project": 5,
          "figures": 5, "__main__": 5}


def _layer_of(parts: list[str]) -> int:
    return LAYERS[parts[0]]


def test_every_module_imports_only_from_its_layer_or_above():
    for path in sorted((REPO / "lpt_probe").rglob("*.py")):
        rel = path.relative_to(REPO / "lpt_probe").with_suffix("").parts
        if rel == ("__init__",):
            continue  # the package root names the public API lazily (importlib), importing nothing
        mine = _layer_of(list(rel))
        package = list(rel[:-1])  # the package this module sits in, relative to lpt_probe
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                mod = base + (node.module.split(".") if node.module else [])
                targets = [mod] if mod else [[a.name] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lpt_probe."):
                targets = [node.module.split(".")[1:]]
            for target in targets:
                if target and target[0] in LAYERS:
                    theirs = _layer_of(target)
                    assert theirs <= mine, (f"lpt_probe/{'/'.join(rel)}.py (layer {mine}) imports "
                                            f"{'.'.join(target)} (layer {theirs}), a layer below it")


MAX_MODULE_LINES = 400  # issue 25: a module a reader can hold in their head


def test_no_module_is_over_400_lines():
    """Split a module that grows past the limit along a seam, into a new module of its package."""
    too_long = {}
    for path in sorted((REPO / "lpt_probe").rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            too_long[path.relative_to(REPO).as_posix()] = n
    assert not too_long, "; ".join(f"{name} has {n} lines (at most {MAX_MODULE_LINES})"
                                   for name, n in too_long.items())


def test_imports_sit_at_the_top_unless_they_say_why():
    """A function-level import of the package's own modules only hides the graph."""
    for path in (REPO / "lpt_probe").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level >= 1:
                        assert re.search(r"#", path.read_text().splitlines()[inner.lineno - 1]), \
                            f"{path.relative_to(REPO)}:{inner.lineno} imports .{inner.module} inside " \
                            f"{node.name}(); move it to the top (or say why in a comment)"
