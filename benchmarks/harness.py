"""What the benchmark scripts share: where results go, the machine they ran on, timed
subprocesses, result files written atomically, and the cells of their tables (issue 25).

A reader starts with the script of the benchmark at hand (``bench_*.py``: its docstring says
what it measures and what it writes); this module holds only what more than one of them does:

- ``REPO`` / ``RESULTS``: the checkout the commands run in and the default results folder;
  ``parser`` the argument parser every script starts from; ``command`` the command line a
  result records (``report_head`` puts it under a report's title);
- ``machine`` / ``machine_line`` / ``load_average``: the facts of the machine each result
  records (processor, CPU cores, the torch version as ``lpt_probe.store.package_versions``
  reads it, the load average: on a shared machine a timing is only as good as its quiet);
- ``run_timed``: one command in a fresh subprocess (progress bars off, threads capped when
  asked), its wall time and the load average before and after; a failing command stops the
  benchmark with the tail of its error output. ``run_module`` does that for an
  ``lpt_probe`` command that writes ``run.json`` (or ``sweep.json``) and returns what it recorded;
- ``write_json`` / ``merge_entries`` / ``write_report``: results written atomically with
  ``lpt_probe.store`` (a crashed or interrupted benchmark never leaves a half-written table);
  CSVs go through ``store.write_csv``;
- ``missing`` / ``cell`` / ``span`` / ``prompt_layer_cell`` / ``cache_cell``: markdown table
  cells (``-`` for what was not measured); ``not_timed`` the lines for configurations skipped.

Why the JSON helpers do not call ``store.write_json`` / ``store.merge_json`` themselves: those
sort the keys (``merge_json`` also indents by one and reads a damaged file as empty, as suits a
cache that only costs work to redo). The committed results keep their keys in the order the
script wrote them and their indentation, and a damaged results file must stop the benchmark
(``store.read_json_object`` raises ``DamagedFile`` naming it) rather than be replaced with the
newest entry alone. Both go through ``store.atomic_write_text``. No lock: benchmarks are run by
hand, one at a time, on a quiet machine.

Scripts import this module as ``harness``: run as ``python benchmarks/bench_*.py``, the
benchmarks folder is first on ``sys.path``; tests put it there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from lpt_probe import store

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
TAIL = 3000  # characters of a failed command's error output shown


def parser(doc: str, data_dir: bool = True) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its description is the docstring's first
    line; with ``data_dir``, its first flag ``--data-dir`` (default ``../shared/data``)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    if data_dir:
        p.add_argument("--data-dir", default="../shared/data")
    return p


def report_head(title: str, commands: str | Sequence[str]) -> list[str]:
    """The first lines of a markdown report: its title, then under ``Command:`` the command
    that wrote it (a string) or under ``Commands:`` those that did (a list: a report that
    accumulates runs), indented as code, then a blank line."""
    many = not isinstance(commands, str)
    lines = list(commands) if many else [commands]
    return [f"# {title}", "", "Commands:" if many else "Command:", "", *(f"    {c}" for c in lines), ""]


def command(script: str | os.PathLike, argv: Sequence[str] | None) -> str:
    """``python benchmarks/<script> <argv>``, the command line a result records (``argv`` None:
    this process's own arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return f"python benchmarks/{Path(script).name} {shlex.join(args)}".strip()  # quoted where a shell needs it


# -- the machine ----------------------------------------------------------------------------------
def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def machine(torch: bool = False) -> dict[str, Any]:
    """``cpu_count`` and ``machine`` (the processor), and the ``torch`` version when asked
    (read from the installed package's metadata: torch is not imported)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine()}
    if torch:
        info["torch"] = store.package_versions(["torch"])["torch"]
    return info


def machine_line(threads: Any, unit: str = "threads", info: Mapping[str, Any] | None = None) -> str:
    """``Machine: x86_64, 2 CPU cores, torch 2.3.0, 2 threads``: ``info`` (default: this
    machine's) and the thread count the measurement used."""
    info = machine(torch=True) if info is None else info
    return f"Machine: {info['machine']}, {info['cpu_count']} CPU cores, torch {info['torch']}, {threads} {unit}"


# -- timed subprocesses ---------------------------------------------------------------------------
@dataclass
class Timed:
    """A finished command: what it printed (None when not captured), its wall time in
    seconds and the load average just before and just after it."""

    returncode: int
    stdout: str | None
    stderr: str | None
    wall_seconds: float
    load_before: float
    load_after: float


def run_timed(cmd: Sequence[str], what: str | None = None, *, cwd: str | os.PathLike | None = None,
              threads: int | None = None, capture: bool = True, echo: bool = False, progress: bool = False,
              merge: bool = False) -> Timed:
    """Run ``cmd`` in a fresh subprocess with progress bars off (``TQDM_DISABLE=1``; ``progress``
    leaves progress on, as a user gets it) and, given ``threads``, ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` set to it; time it. ``capture=False`` lets its output through; ``merge``
    captures standard error into ``stdout`` (one stream, as a log file holds it); ``echo``
    prints the command first. A command that exits non-zero raises ``SystemExit`` naming it
    (``what``, default the command line), its exit status and the last ``TAIL`` characters of
    its error output."""
    cmd = [str(c) for c in cmd]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} if progress else \
        {**os.environ, "TQDM_DISABLE": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if echo:
        print("+", " ".join(cmd), flush=True)
    load_before = load_average()
    t0 = time.perf_counter()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merge and capture else \
        {"capture_output": capture}
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, check=False, **streams)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = proc.stderr or (proc.stdout if merge else None)
        err = f":\n{tail[-TAIL:]}" if tail else ""
        raise SystemExit(f"{what or ' '.join(cmd)} failed ({proc.returncode}){err}")
    return Timed(proc.returncode, proc.stdout, proc.stderr, wall, load_before, load_average())


def run_module(module: str, flags: Sequence[str], out: str | os.PathLike,
               record: str = "run.json") -> tuple[Timed, dict]:
    """``python -m lpt_probe.<module> --out OUT --no-progress FLAGS`` timed (``run_timed``), and
    the ``record`` it wrote into ``out`` (``run.json`` of ``mi`` and ``influence``, ``sweep.json``
    of ``sweep``: status, settings, ``phase_seconds``)."""
    cmd = [sys.executable, "-m", f"lpt_probe.{module}", "--out", str(out), "--no-progress", *flags]
    timed = run_timed(cmd, module)
    return timed, store.read_json_object(Path(out) / record)


# -- result files ---------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """``obj`` as JSON (keys in their order, ``indent``, a final newline), written atomically."""
    return store.atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def merge_entries(path: str | os.PathLike, entries: Mapping[str, Any],
                  reset: Callable[[dict], bool] | None = None) -> dict:
    """Add ``entries`` to the JSON object of results in ``path`` (an entry of the same key is
    replaced in place; a missing file starts empty; ``reset(old)`` True drops the old entries,
    for a file an earlier version wrote) and write it back atomically (``write_json``). Returns
    the merged object. A damaged file raises ``store.DamagedFile`` naming it: results are not
    silently thrown away."""
    path = Path(path)
    old = store.read_json_object(path) if path.exists() else {}
    if reset is not None and reset(old):
        old = {}
    merged = {**old, **entries}
    write_json(path, merged)
    return merged


def write_report(path: str | os.PathLike, text: str, echo: bool = True) -> Path:
    """A markdown report written atomically, and printed unless ``echo`` is False."""
    written = store.atomic_write_text(path, text)
    if echo:
        print(text)
    return written


# -- table cells ----------------------------------------------------------------------------------
def missing(value: Any) -> bool:
    """None or NaN: a value that was not measured."""
    return value is None or value != value


def cell(value: Any, fmt: str = "{:.1f}") -> str:
    """``value`` formatted with ``fmt``, ``-`` when it is missing."""
    return "-" if missing(value) else fmt.format(value)


def span(row: Mapping[str, Any], col: str, fmt: str = "{:.2f}") -> str:
    """A median with its min-max over the repeats: ``1.87 (1.82-1.99)`` from ``col``,
    ``col_min`` and ``col_max`` of ``row``; the median alone for one repeat or no range; ``-``
    when the median is missing."""
    v, lo, hi = row.get(col), row.get(f"{col}_min"), row.get(f"{col}_max")
    if missing(v):
        return "-"
    if missing(lo) or row.get("repeats", 1) == 1:
        return fmt.format(v)
    return f"{fmt.format(v)} ({fmt.format(lo)}-{fmt.format(hi)})"


def prompt_layer_cell(row: Mapping[str, Any]) -> str:
    """The row's prompt layer as a whole number, ``-`` for a method without one."""
    pl = row["prompt_layer"]
    return "-" if missing(pl) else str(int(pl))


def cache_cell(row: Mapping[str, Any]) -> str:
    """``yes`` when the row was timed from the lower-layer cache (a bool, or its CSV text), else ``no``."""
    return "yes" if str(row["cache"]).lower() in ("true", "1", "yes") else "no"


def not_timed(skipped: Iterable[str]) -> str:
    """The report's lines for the configurations a model could not serve (each once)."""
    return "".join(f"\nNot timed: {s}\n" for s in dict.fromkeys(skipped))
