"""The command-line fronts after the run-library step: the same flags as before (plus the
ones later issues added, listed here), flags generated from the config dataclasses,
choices read from the registries, parse errors naming their flag, and the package's
import rules (no private names across modules, no command importing another)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest

from lpt_probe.commands import figures, mi, project, sweep, train
from lpt_probe.analysis.mi.study import MIConfig
from lpt_probe.commands.cli import add_config_args, config_from_args
from lpt_probe.model.generators import GENERATORS
from lpt_probe.model.methods import METHODS
from lpt_probe.probing import PROBES, LinearProbe
from lpt_probe.runs.executors import ExecutorConfig
from lpt_probe.runs.sweep import SweepConfig
from lpt_probe.runs.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
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
    "project": COMMON | {"--overwrite"},  # issue 34
    "figures": COMMON | {"--overwrite"},  # issue 34
}
for _cmd in ("train", "sweep", "mi"):  # issue 32: train until learned
    ADDED[_cmd] = ADDED[_cmd] | {"--patience", "--prompt-init"}
for _cmd in ("train", "sweep"):  # issue 33: experiment logging
    ADDED[_cmd] = ADDED[_cmd] | {"--report-to"}
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
    assert m.grid.seeds == (13, 21) and m.train.shots is None and m.train.max_length == 128 and m.train.task == "rte"
    s = config_from_args(SweepConfig, sweep.build_parser().parse_args(["--method", "lpt,lora", "--seeds", "1"]))
    assert s.methods == ("lpt", "lora") and s.grid.seeds == (1,)
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
        path = REPO / "lpt_probe" / "commands" / f"{name}.py"
        tree = ast.parse(path.read_text())
        imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1
                    and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1
                     and n.module is None for a in n.names}
        assert not (imported & (commands - {name})), f"commands/{name}.py imports command module(s) {imported & commands}"


# The layers the README's Architecture section states; each module imports only from its own
# layer or the layers above it (a lower number). The library (1-4) never imports the commands.
LAYERS = {"layers": 1, "store": 1, "compose": 1, "outputs": 1, "progress": 1, "registry": 1, "model": 2, "data": 2,
          "runs": 3, "analysis": 4, "probing": 4, "viz": 4, "commands": 5, "__main__": 5,
          **{shim: 5 for shim in ("train", "mi", "influence", "sweep", "section4", "project", "figures")}}
# Inside analysis/: the engine runs any study and never imports an analysis; section4 composes
# mi and influence; plan builds every study's run.
ANALYSIS_LAYERS = {"__init__": 0, "config": 1, "results": 1, "engine": 2, "mi": 3, "influence": 3, "projection": 3,
                   "section4": 4, "plan": 5}


def _layer_of(parts: list[str]) -> tuple[int, int]:
    inner = ANALYSIS_LAYERS[parts[1]] if parts[0] == "analysis" and len(parts) > 1 else 0
    return LAYERS[parts[0]], inner


def test_every_module_imports_only_from_its_layer_or_above():
    for path in sorted((REPO / "lpt_probe").rglob("*.py")):
        rel = path.relative_to(REPO / "lpt_probe").with_suffix("").parts
        if rel == ("__init__",):
            continue  # the package root names the public API lazily (importlib), importing nothing
        own = _layer_of(list(rel))
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
                    same = target[0] == rel[0] == "analysis"  # inside analysis/: its own levels too
                    theirs, mine = (theirs, own) if same else (theirs[0], own[0])
                    assert theirs <= mine, (f"lpt_probe/{'/'.join(rel)}.py (layer {mine}) imports "
                                            f"{'.'.join(target)} (layer {theirs}), a layer below it")


def test_the_library_imports_no_command_code():
    """What turns a config's field metadata into flags is the commands' (``commands/cli.py``);
    the library (everything outside ``commands/``, ``__main__`` and the ``python -m`` shims)
    imports none of it, not even inside a function, and no argparse."""
    for path in sorted((REPO / "lpt_probe").rglob("*.py")):
        rel = path.relative_to(REPO / "lpt_probe").with_suffix("").parts
        if rel[0] == "commands" or (len(rel) == 1 and LAYERS.get(rel[0]) == 5) or rel == ("__init__",):
            continue
        name = _module_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, path.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            bad = [t for t in targets if t == "argparse" or t.startswith("lpt_probe.commands")]
            assert not bad, (f"lpt_probe/{'/'.join(rel)}.py:{node.lineno} imports {bad}: the library declares "
                             "its settings, the commands build flags")


SIZE_WARNING_LINES = 400  # a module a reader can hold in their head (issue 25); split along concepts (issue 35)


def test_long_modules_are_reported():
    """No cap (a module is split along a concept, never to meet a number): modules over
    SIZE_WARNING_LINES lines are reported as a warning in the test summary."""
    for path in sorted((REPO / "lpt_probe").rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > SIZE_WARNING_LINES:
            warnings.warn(f"{path.relative_to(REPO).as_posix()} has {n} lines (over {SIZE_WARNING_LINES}): "
                          "is there a concept to split out?", stacklevel=1)


HEAVY = {"torch", "transformers", "matplotlib", "seaborn", "sklearn", "umap", "datasets", "ray", "safetensors",
         "pandas", "scipy"}  # pandas and scipy: a command's --help loads neither (test_help_imports_no_heavy_library)


def _module_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("").parts
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The modules an ImportFrom may execute: its target and ``target.name`` for each name."""
    if not node.level:
        return [node.module]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    return [target] + [f"{target}.{a.name}" for a in node.names]


def _top_level_imports(root: Path = REPO / "lpt_probe") -> dict[str, set[str]]:
    """module -> what its module-level statements import (not inside functions, classes or ifs)."""
    graph = {}
    for path in root.rglob("*.py"):
        name, tree = _module_of(path), ast.parse(path.read_text())
        out: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                out |= set(_resolve(name, path.name == "__init__.py", node))
        graph[name] = out
    return graph


def _closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    """What importing ``start`` executes: its parent packages and what they import, transitively."""
    seen, todo = set(), [start]
    while todo:
        parts = todo.pop().split(".")
        for k in range(1, len(parts) + 1):
            sub = ".".join(parts[:k])
            if sub not in seen:
                seen.add(sub)
                todo.extend(graph.get(sub, ()))
    return seen


def _heavy(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} & HEAVY


def test_imports_inside_functions_are_needed():
    """A function-level import of the package's own modules is allowed only where moving it to
    the top would change what importing the module does: close an import cycle (the target
    imports this module, directly or through others) or load a heavy package (torch,
    matplotlib ...) the module does not load already. A comment on the line says which."""
    graph = _top_level_imports()
    for path in (REPO / "lpt_probe").rglob("*.py"):
        name, text = _module_of(path), path.read_text()
        mine = _closure(name, graph)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if not (isinstance(inner, ast.ImportFrom) and inner.level >= 1):
                    continue
                where = f"{path.relative_to(REPO)}:{inner.lineno}"
                targets = [t for t in _resolve(name, path.name == "__init__.py", inner) if t in graph]
                theirs = set().union(*(_closure(t, graph) for t in targets))
                needed = name in theirs or _heavy(theirs) - _heavy(mine)
                assert needed, (f"{where} imports {targets} inside {node.name}(): that closes no import cycle and "
                                "loads no heavy package the module lacks; move it to the top")
                assert "#" in text.splitlines()[inner.lineno - 1], f"{where}: say why the import is here, in a comment"


def _all_imports(root: Path = REPO / "lpt_probe") -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere (top level or inside a function),
    package ``__init__`` modules left out: a package re-exporting its children is no cycle of
    code, while a function-level import that only dodges one still is."""
    graph, inits = {}, set()
    for path in root.rglob("*.py"):
        name = _module_of(path)
        if path.name == "__init__.py":
            inits.add(name)
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                out |= set(_resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        graph[name] = out
    return {m: {t for t in out if t in graph and t not in inits and t != m} for m, out in graph.items()
            if m not in inits}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of two or more modules."""
    order, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    """No two modules import each other, directly or through others, even inside a function
    (where an import that dodges a cycle hides a layering the code does not have)."""
    assert _cycles(_all_imports()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_check_tells_a_needless_import_from_a_needed_one():
    graph = {"p": set(), "p.a": {"p.b"}, "p.b": set(), "p.c": {"p.d"}, "p.d": {"p.c"}, "p.t": {"torch"}}
    assert "p.a" not in _closure("p.b", graph) and not _heavy(_closure("p.b", graph))  # needless: p.a -> p.b
    assert "p.c" in _closure("p.d", graph)  # p.c importing p.d in a function: a cycle
    assert _heavy(_closure("p.t", graph)) - _heavy(_closure("p.a", graph)) == {"torch"}  # heavy


HELP_HEAVY = ("torch", "transformers", "sklearn", "pandas", "scipy", "matplotlib", "datasets")
COMMANDS = ("train", "sweep", "mi", "influence", "section4", "project", "figures")
_HELP_PROBE = """\
import contextlib, io, runpy, sys
heavy = {heavy!r}
for module, argv in (("lpt_probe", ["lpt-probe", {command!r}, "--help"]), ("lpt_probe.{command}", ["x", "--help"])):
    sys.argv, out = argv, io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        assert exc.code in (0, None), (module, exc.code)
    assert out.getvalue().startswith("usage:"), (module, out.getvalue()[:200])
    print(module, sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_heavy_library(command):
    """``lpt-probe <command> --help`` and ``python -m lpt_probe.<command> --help`` build the parser
    from the torch-free config modules and registries: neither imports torch, transformers,
    sklearn, pandas, scipy, matplotlib or datasets (the time it takes: benchmarks/bench_help.py)."""
    code = _HELP_PROBE.format(heavy=HELP_HEAVY, command=command)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["lpt_probe []", f"lpt_probe.{command} []"], proc.stdout


def test_configs_keep_the_device_asked_for_and_build_without_torch():
    """A config keeps ``--device`` as asked (``auto`` stays ``auto``: a run resolves it when it
    starts, on the machine that runs it, a Ray worker included) and checks only its form,
    so building ``TrainConfig`` / ``InfluenceConfig`` imports no torch; a name that is no
    device is still refused at once, naming it and the choices."""
    code = ("import sys\n"
            "from lpt_probe.runs.config import TrainConfig\n"
            "from lpt_probe.analysis.config import InfluenceConfig\n"
            "print(TrainConfig(device='auto').device, InfluenceConfig(device='cuda:1').train.device,\n"
            "      'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["auto", "cuda:1", "False"]
    from lpt_probe.runs.config import TrainConfig

    for bad in ("tpu", "cuda:x", "cuda:", ""):
        with pytest.raises(ValueError, match=f"--device '{bad}' is not a device; choose cpu, cuda"):
            TrainConfig(device=bad)


def test_lazy_registries_name_entries_without_importing_them():
    """A ``LazyRegistry`` lists, counts and tests names without importing an entry; a lookup
    imports it once; an object registered at run time is a choice of the flags at once; an
    unknown name is an error naming it and the choices."""
    from lpt_probe.probing import register_probe
    from lpt_probe.registry import LazyRegistry, Ref

    reg = LazyRegistry("thing", {"json": Ref("json:dumps"), "plain": len})
    assert list(reg) == ["json", "plain"] and "json" in reg and len(reg) == 2
    assert isinstance(reg._entries["json"], Ref)  # not imported by the look at its names
    assert reg["json"] is json.dumps and reg._entries["json"] is json.dumps and reg["plain"] is len
    with pytest.raises(KeyError, match="unknown thing 'nope'; choose one of json, plain"):
        reg["nope"]
    assert Ref("json:loads")("[1]") == [1]  # a hook: calling the reference calls its target

    class Custom(LinearProbe):
        pass

    register_probe("custom-probe", Custom)
    try:
        choices = {a.dest: a for a in mi.build_parser()._actions}["probe"].choices
        assert "custom-probe" in choices and PROBES["custom-probe"] is Custom
    finally:
        del PROBES["custom-probe"]


def test_every_registered_reference_resolves():
    """The ``"module:attribute"`` references of the built-in methods, probes and dtypes name
    what exists (a renamed hook would otherwise fail only when a model of that method is built)."""
    from lpt_probe.model.specs import DTYPES, METHODS
    from lpt_probe.registry import Ref

    for spec in METHODS.values():
        for hook in (spec.attach, spec.make_generator):
            assert hook is None or callable(hook.load() if isinstance(hook, Ref) else hook), (spec.name, hook)
    assert all(hasattr(PROBES[name], "fit") for name in PROBES)
    assert [str(DTYPES[n]) for n in DTYPES] == ["torch.float32", "torch.bfloat16", "torch.float16"]
