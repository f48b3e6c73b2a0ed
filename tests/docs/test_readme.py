"""Every command the README and the docs pages (docs/, in the nav order of mkdocs.yml) show
in a ```bash block runs, once even when several pages show it (with small settings appended:
argparse takes the last value of a repeated flag), from a scratch folder so default
outputs land there. ``bash scripts/test.sh`` is the command CI runs (``.ci/run``)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docs_site import fenced_blocks, markdown_pages
from lpt_probe.analysis.influence.study import InfluenceConfig
from lpt_probe.analysis.mi.study import MIConfig
from lpt_probe.analysis.section4.study import Section4Config
from lpt_probe.runs.sweep import default_out as sweep_default_out
from lpt_probe.runs.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
FULL = os.environ.get("LPT_PROBE_TEST_FULL") == "1"  # scripts/test.sh --full: the commands at the sizes shown
QUICK = {
    "lpt_probe.train": ["--steps", "4", "--eval-every", "2", "--max-examples", "120"],
    "lpt_probe.mi": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max", "120",
                     "--bootstrap", "50", "--control-permutations", "1", "--no-progress"],
    "lpt_probe.influence": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--prompt-layers", "6",
                            "--seeds", "13", "--influence-max", "8", "--bootstrap", "50", "--no-progress"],
    "benchmarks/bench_influence.py": ["--steps", "4", "--eval-every", "2", "--max-examples", "120",
                                      "--prompt-layers", "6", "--mi-args",
                                      "--probe-train-max 120 --bootstrap 50 --control-permutations 1",
                                      "--influence-args", "--influence-max 8 --bootstrap 50"],
    "lpt_probe.section4": ["--steps", "4", "--eval-every", "2", "--max-examples", "100", "--probe-train-max", "60",
                           "--probe-dev-size", "30", "--bootstrap", "30", "--control-permutations", "1",
                           "--influence-max", "6", "--seeds", "13", "--no-progress"],
    "lpt_probe.sweep": ["--steps", "4", "--eval-every", "2", "--max-examples", "160", "--seeds", "13", "--no-progress"],
    "lpt_probe.project": ["--max-examples", "80", "--method", "pca"],
    "lpt_probe.figures": [],
    "benchmarks/bench_train.py": ["--models", "minilm", "--generators", "none", "--steps", "2",
                                  "--baselines", "lora", "--repeats", "1", "--warmup", "1"],
    "benchmarks/bench_baselines.py": ["--tasks", "trec", "--seeds", "13", "--steps", "2", "--eval-every", "1",
                                      "--dev-size", "20", "--max-examples", "60", "--time-steps", "2",
                                      "--methods", "model-tuning,adapterdrop,s-idpg,prompt-tuning,lpt",
                                      "--generators", "none", "--repeats", "1", "--warmup", "1"],
    "benchmarks/bench_prompt_init.py": ["--model", "minilm", "--steps", "4", "--eval-every", "2", "--patience", "1",
                                        "--dev-size", "20", "--max-length", "32", "--seeds", "13"],
    "benchmarks/bench_prompt_lr.py": ["--model", "minilm", "--steps", "4", "--eval-every", "2", "--patience", "1",
                                      "--dev-size", "20", "--max-length", "32", "--lrs", "1e-3,1e-2"],
    "benchmarks/bench_generate.py": ["--lengths", "8", "--new-tokens", "2", "--repeats", "1", "--threads", "1"],
    "benchmarks/bench_help.py": ["--repeats", "1", "--commands", "mi", "--before", "HEAD"],
    "benchmarks/bench_sweep.py": ["--prompt-layers", "2,6", "--generators", "none", "--seeds", "13", "--steps", "2",
                                  "--dev-size", "20", "--max-examples", "60"],
    "benchmarks/bench_mi.py": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max",
                               "120", "--bootstrap", "50", "--prompt-layers", "2", "--control-permutations", "1"],
    "benchmarks/bench_probe_path.py": ["--permutations", "1"],
    "benchmarks/bench_probe_dtype.py": ["--permutations", "0", "--mi-args",
                                        "--steps 4 --eval-every 2 --max-examples 120 --probe-train-max 120 "
                                        "--bootstrap 50 --prompt-layers 2 --no-controls"],
    "benchmarks/bench_backbone_dtype.py": ["--steps", "4", "--eval-every", "2", "--max-examples", "120",
                                          "--probe-train-max", "120", "--bootstrap", "50", "--prompt-layers", "2",
                                          "--control-permutations", "1"],
    "benchmarks/bench_study_speed.py": ["--repeats", "1", "--only", "mi", "--before", "HEAD", "--mi-args",
                                       "--steps 4 --eval-every 2 --max-examples 120 --probe-train-max 120 "
                                       "--probe-dev-size 30 --dev-size 30 --bootstrap 50 --prompt-layers 2 "
                                       "--control-permutations 1"],
    "benchmarks/bench_plan.py": ["--settings", "trec-pl1-4-6,sweep-rte-pl3-6,influence-trec-pl1-3-6", "--steps", "4",
                                 "--eval-every", "2", "--shots", "20", "--dev-size", "20", "--max-examples", "80",
                                 "--mi-args", "--probe-train-max 80 --probe-dev-size 20 --bootstrap 30 "
                                 "--control-permutations 1", "--influence-args", "--influence-max 8 --bootstrap 30"],
    "benchmarks/bench_paper_scale.py": ["--shape", "tiny", "--sizes", "16,24", "--steps", "2", "--prompt-layers", "2",
                                        "--dev-size", "8"],
    "benchmarks/bench_memory.py": ["--shape", "tiny", "--sizes", "16,24", "--threads", "1",
                                   "--paths", "vectors-streamed,sequences-streamed"],
    "scripts/demo.sh": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max", "120",
                        "--bootstrap", "50", "--control-permutations", "1", "--no-progress"],
}


def bash_commands(text: str) -> list[str]:
    """The commands of a Markdown text's ```bash blocks, comments dropped, in order."""
    cmds = []
    for block in fenced_blocks(text, "bash"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def shown_texts(root: Path = REPO) -> list[str]:
    """README.md, then every docs page in nav order (tests/docs_site.py)."""
    return [(root / "README.md").read_text()] + [p.read_text() for p in markdown_pages(root)]


def unique(items) -> list:
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def readme_commands(root: Path = REPO) -> list[str]:
    """The ```bash commands of the README, then those of the docs pages that the README does
    not show, in nav order; a command shown on several pages is run once."""
    return unique(c for text in shown_texts(root) for c in bash_commands(text))


def readme_python_blocks(root: Path = REPO) -> list[str]:
    """The ```python blocks of the README and the docs pages, each once."""
    return unique(b for text in shown_texts(root) for b in fenced_blocks(text, "python"))


def quick_key(cmd: str) -> str:
    """The ``QUICK`` entry (small settings) of a shown command; none is an error naming it."""
    argv = shlex.split(cmd)
    key = next((k for k in QUICK if k in argv), None)
    assert key is not None, f"README command {cmd!r} has no small-settings entry in tests/docs/test_readme.py"
    return key


def test_readme_custom_task_example_is_the_shipped_file():
    """The YAML the README and the docs pages show is examples/sentiment/task.yaml, byte for
    byte, and it loads."""
    from lpt_probe.data import load_custom_task

    shown = unique(b for text in shown_texts() for b in fenced_blocks(text, "yaml"))
    shipped = (REPO / "examples" / "sentiment" / "task.yaml").read_text()
    assert shown == [shipped]
    spec, data = load_custom_task(REPO / "examples" / "sentiment" / "task.yaml", shots=8, dev_size=8)
    assert spec.name == "movie-sentiment" and tuple(spec.label_names) == ("negative", "positive")
    assert len(data.test) == 16


def test_readme_shows_the_two_setup_commands():
    cmds = bash_commands((REPO / "README.md").read_text())  # the README itself, not the docs pages
    assert cmds[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def is_benchmark(cmd: str) -> bool:
    """README commands that run a benchmark script (tests/docs/test_readme_benchmarks.py runs them)."""
    return "benchmarks/bench_" in cmd


def half_commands(benchmarks: bool, root: Path = REPO) -> list[str]:
    """The shown commands of one half: the benchmark scripts, or all the others (never CI's
    own ``bash scripts/test.sh``), in README order."""
    return [c for c in readme_commands(root) if c != "bash scripts/test.sh" and is_benchmark(c) == benchmarks]


def _flag(argv: list[str], name: str) -> str | None:
    """The last value of ``name`` in ``argv`` (argparse takes the last), or None."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    return values[-1] if values else None


def _sweep_out(task: str, model: str | None) -> Path:
    return Path(sweep_default_out(TrainConfig(task=task, **({"model": model} if model else {}))))


DEFAULT_OUT = {  # module -> (task, model or None: the default) -> the folder it writes, as the library names it
    "lpt_probe.mi": lambda task, model: MIConfig(task=task, **({"model": model} if model else {})).default_out(),
    "lpt_probe.influence": lambda task, model: InfluenceConfig(task=task, **({"model": model} if model else {})
                                                               ).default_out(),
    "lpt_probe.section4": lambda task, model: Section4Config(task=task, **({"model": model} if model else {})
                                                             ).default_out(),
    "lpt_probe.sweep": _sweep_out,
}


def written_folders(cmd: str) -> list[str]:
    """The artifacts folders a shown command writes, as it names them (relative to where it
    runs): ``--out`` / ``--keep``, else a study's or a sweep's default folder (the library's
    own ``default_out``); ``project RUN`` writes ``RUN/projection``."""
    argv = shlex.split(cmd)
    if "--export" in argv:  # section4 --export DEST --out STUDY: reads the study, writes DEST
        return [_flag(argv, "--export")]
    out = _flag(argv, "--out") or _flag(argv, "--keep")
    if out:
        return [out]
    module = next((a for a in argv if a.startswith("lpt_probe.")), None)
    if module == "lpt_probe.project":
        return [argv[argv.index(module) + 1] + "/projection"]
    task = _flag(argv, "--task")
    if module not in DEFAULT_OUT or task is None or "--plan" in argv:
        return []
    return [str(DEFAULT_OUT[module](task, _flag(argv, "--model")))]


def read_folders(text: str, python: bool = False) -> list[str]:
    """The artifacts folders a shown command (or a python block) reads: every
    ``artifacts/...`` it names that is not where it writes (``--out`` / ``--keep``)."""
    if python:
        return re.findall(r"[\"'](artifacts/[^\"']+)[\"']", text)
    argv = shlex.split(text)
    if "--export" in argv:
        return [a for i, a in enumerate(argv) if a.startswith("artifacts/") and argv[i - 1] == "--out"]
    return [a for i, a in enumerate(argv) if a.startswith("artifacts/") and argv[i - 1] not in ("--out", "--keep")]


def _overlap(a: str, b: str) -> bool:
    """One folder is the other or inside it."""
    pa, pb = Path(a).parts, Path(b).parts
    return pa[:len(pb)] == pb or pb[:len(pa)] == pa


def readme_chains(benchmarks: bool, root: Path = REPO) -> list[tuple[list[str], list[str]]]:
    """The shown commands of one half (the benchmark scripts, or all the others; never CI's
    own ``bash scripts/test.sh``) as chains: (commands in README order, python blocks). A
    command or block that reads an artifacts folder joins the chain of the latest earlier
    command that writes there (``written_folders``), so each chain runs alone in its own
    folder and the chains spread over the test workers; a reader with no writer is an error
    naming both. Blocks that read nothing join the first chain. Longest chains first."""
    cmds = half_commands(benchmarks, root)
    parent = list(range(len(cmds)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    def writer(path: str, before: int, reader: str) -> int:
        found = [j for j in range(before) if any(_overlap(path, w) for w in written_folders(cmds[j]))]
        assert found, f"{reader!r} reads {path}, which no earlier shown command writes"
        return found[-1]

    for i, cmd in enumerate(cmds):
        for path in read_folders(cmd):
            parent[find(i)] = find(writer(path, i, cmd))
    block_writers = []
    if not benchmarks:
        for block in readme_python_blocks(root):
            ws = [writer(path, len(cmds), block) for path in read_folders(block, python=True)] or [0]
            for w in ws[1:]:
                parent[find(w)] = find(ws[0])
            block_writers.append((block, ws[0]))
    chains: dict[int, tuple[list[str], list[str]]] = {}
    for i, cmd in enumerate(cmds):
        chains.setdefault(find(i), ([], []))[0].append(cmd)
    for block, w in block_writers:
        chains[find(w)][1].append(block)
    return sorted(chains.values(), key=lambda chain: -len(chain[0]))


def chain_params(benchmarks: bool) -> list:
    """One pytest param per chain, each its own xdist group (scripts/test.sh runs
    ``--dist loadgroup``), so the chains spread over the test workers."""
    half = "bench" if benchmarks else "cmd"
    params = []
    for i, (cmds, blocks) in enumerate(readme_chains(benchmarks)):
        name = re.sub(r"[^a-z0-9]+", "-", quick_key(cmds[0]).split("/")[-1].lower()).strip("-")
        params.append(pytest.param(cmds, blocks, id=f"{i}-{name}", marks=pytest.mark.xdist_group(f"readme-{half}-{i}")))
    return params


def readme_argv(cmd: str, data_dir: Path, tmp_path: Path, full: bool = False) -> list[str]:
    """The argv a shown command runs with: the data and paper paths made real, its outputs
    sent under ``tmp_path`` (never over the committed results), and, unless ``full``
    (``scripts/test.sh --full``), the small settings of ``QUICK``."""
    key = quick_key(cmd)
    argv = shlex.split(cmd.replace("../shared/data", str(data_dir))
                       .replace("../shared/paper", str(data_dir.parent / "paper"))
                       .replace(" examples/", f" {REPO / 'examples'}/")
                       .replace(" benchmarks/results", f" {REPO / 'benchmarks' / 'results'}"))
    extra = [] if full else list(QUICK[key])  # full: the sizes shown; never the output places
    if argv[0] == "python":
        argv[0] = sys.executable
    if not full and key == "lpt_probe.mi" and "transformer" in argv:  # the sequence probe: one prompt layer,
        extra += ["--prompt-layers", "6", "--probe-grid", "lr=1e-3", "--no-controls"]  # one lr, no controls (CI time)
    if not full and key == "lpt_probe.section4" and "--table" not in argv:  # three layers: 1, the middle, the last
        extra += ["--prompt-layers", "1,16,30" if "smollm2" in argv else "1,4,6"]
    if not full and key == "benchmarks/bench_prompt_lr.py" and "--prompt-layers" in argv:  # SmolLM2's 16,30:
        extra += ["--prompt-layers", "4,6"]  # the quick runs use the 6-layer MiniLM
    if not full and key == "lpt_probe.mi" and "all" in argv:  # the every-layer recipe: two layers, one seed
        extra += ["--prompt-layers", "2,6", "--seeds", "13"]
    if key in ("benchmarks/bench_train.py", "benchmarks/bench_sweep.py", "benchmarks/bench_prompt_init.py",
               "benchmarks/bench_prompt_lr.py", "benchmarks/bench_generate.py", "benchmarks/bench_help.py"):
        argv[1] = str(REPO / argv[1])
        extra += ["--out", str(tmp_path / "bench")]
    if key in ("benchmarks/bench_prompt_init.py", "benchmarks/bench_prompt_lr.py"):
        extra += ["--work", str(tmp_path / "work")]
    if key == "benchmarks/bench_baselines.py":
        argv[1] = str(REPO / argv[1])
        extra += ["--out", str(tmp_path / "bench"), "--runs", str(tmp_path / "baselines")]
    if key in ("benchmarks/bench_mi.py", "benchmarks/bench_influence.py", "benchmarks/bench_probe_path.py",
               "benchmarks/bench_plan.py", "benchmarks/bench_paper_scale.py", "benchmarks/bench_memory.py",
               "benchmarks/bench_probe_dtype.py", "benchmarks/bench_backbone_dtype.py",
               "benchmarks/bench_study_speed.py"):
        argv[1] = str(REPO / argv[1])
        extra += ["--results", str(tmp_path / "bench")]
    if key in ("benchmarks/bench_paper_scale.py", "benchmarks/bench_memory.py"):
        extra += ["--work", str(tmp_path / "shape")]
    if key == "benchmarks/bench_probe_dtype.py":
        extra += ["--out", str(tmp_path / "probe_dtype")]
    if key == "scripts/demo.sh":
        argv[1] = str(REPO / argv[1])
        extra += ["--out", str(tmp_path / "demo")]
    return argv + extra


def run_readme_commands(data_dir, tmp_path, cmds: list[str], blocks: list[str] = ()) -> list[str]:
    """Run shown commands in order with the small settings of ``QUICK`` (at the sizes shown
    under ``scripts/test.sh --full``), from ``tmp_path`` so default outputs land there, then
    the python blocks; return the commands run."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LPT_PROBE_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}
    if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the cores: one thread per command,
        env.setdefault("OMP_NUM_THREADS", "1")  # as the worker's own tests (conftest.py)
    ran = []
    for cmd in cmds:
        argv = readme_argv(cmd, data_dir, tmp_path, FULL)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=None if FULL else 1500)
        assert proc.returncode == 0, f"{cmd!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        print(f"{time.perf_counter() - t0:6.0f} s  {cmd[:110]}")  # pytest -s (or a failure) shows where CI time goes
        ran.append(cmd)
    for block in blocks:  # after the commands: they read what the commands wrote
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"README/docs python block failed:\n{block}\n{proc.stderr[-3000:]}"
    return ran


def test_full_mode_runs_the_sizes_shown_and_still_writes_nothing_committed(tmp_path):
    """``scripts/test.sh --full`` (``LPT_PROBE_TEST_FULL=1``) runs each command as shown: no
    small settings of ``QUICK`` and no fewer prompt layers, but its outputs still go under
    the test's folder, never over ``benchmarks/results``."""
    data = tmp_path / "shared" / "data"
    study = next(c for c in readme_commands() if "lpt_probe.section4" in c and "smollm2" in c)
    quick, full = (readme_argv(study, data, tmp_path, full=f) for f in (False, True))
    assert full == shlex.split(study.replace("../shared/data", str(data)).replace("python", sys.executable, 1))
    assert len(quick) > len(full) and quick[:len(full)] == full
    bench = next(c for c in half_commands(benchmarks=True) if "bench_prompt_lr.py" in c)
    quick, full = (readme_argv(bench, data, tmp_path, full=f) for f in (False, True))
    assert full[-4:] == ["--out", str(tmp_path / "bench"), "--work", str(tmp_path / "work")]
    assert "--lrs" in quick and "--lrs" not in full


@pytest.mark.integration
@pytest.mark.parametrize("cmds, blocks", chain_params(benchmarks=False))
def test_every_readme_command_runs(cmds, blocks, data_dir, tmp_path):
    assert run_readme_commands(data_dir, tmp_path, cmds, blocks) == cmds


def test_readme_chains_cover_every_command_once():
    """Every shown command is in exactly one chain of its half, in README order within it;
    every python block in one chain; the long studies do not all land in one chain."""
    for benchmarks in (False, True):
        chains = readme_chains(benchmarks)
        cmds = half_commands(benchmarks)
        assert sorted(c for chain, _ in chains for c in chain) == sorted(cmds)
        for chain, _ in chains:
            assert chain == [c for c in cmds if c in chain]
        assert len(chains) >= 4
    assert sorted(b for _, blocks in readme_chains(False) for b in blocks) == sorted(readme_python_blocks())


def test_readme_commands_include_docs_pages(tmp_path):
    """A command shown only on a docs page is collected (after the README's, in nav order); one
    shown on the README and a page, or on two pages, once; pages left out of the build
    (exclude_docs) are not read."""
    (tmp_path / "docs" / "guides").mkdir(parents=True)
    (tmp_path / "docs" / "figures").mkdir()
    (tmp_path / "mkdocs.yml").write_text(
        "docs_dir: docs\nexclude_docs: |\n  figures/*.md\nnav:\n  - Home: index.md\n"
        "  - Guides:\n      - guides/b.md\n      - guides/a.md\n  - Notebooks: notebooks/x.ipynb\n")
    fence = "```"
    (tmp_path / "README.md").write_text(
        f"{fence}bash\nbash scripts/demo.sh   # the main job\nbash scripts/test.sh\n{fence}\n")
    (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n{fence}bash\nbash scripts/demo.sh\n{fence}\n")
    (tmp_path / "docs" / "guides" / "a.md").write_text(
        f"# A\n\n{fence}bash\npython -m lpt_probe.figures mi out\npython -m lpt_probe.mi --task trec\n{fence}\n")
    (tmp_path / "docs" / "guides" / "b.md").write_text(
        f"# B\n\n{fence}bash\npython -m lpt_probe.mi --task trec\n{fence}\n\n"
        f"{fence}text\npython -m lpt_probe.train --model hub/id\n{fence}\n\n"
        f"{fence}python\nprint(1)\n{fence}\n")
    (tmp_path / "docs" / "figures" / "table.md").write_text(f"{fence}bash\npython -m lpt_probe.sweep\n{fence}\n")
    assert readme_commands(tmp_path) == ["bash scripts/demo.sh", "bash scripts/test.sh",
                                         "python -m lpt_probe.mi --task trec", "python -m lpt_probe.figures mi out"]
    assert readme_python_blocks(tmp_path) == ["print(1)\n"]


def test_readme_chains_follow_the_folders_commands_write_and_read(tmp_path):
    """A command (or python block) that reads an artifacts folder runs after, and in the same
    chain as, the latest earlier command writing there (its --out, or a study's default
    folder); independent commands are chains of their own; a reader with no writer fails."""
    fence = "```"
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text("docs_dir: docs\nnav:\n  - Home: index.md\n")
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    shown = ["python -m lpt_probe.mi --task trec", "python -m lpt_probe.train --task rte --out artifacts/runs",
             "python -m lpt_probe.sweep --task rte --prompt-layers 1,3 --out artifacts/sweeps/x",
             "python -m lpt_probe.figures mi artifacts/mi/trec/minilm --out docs/figures",
             "python -m lpt_probe.project artifacts/runs/rte-pl1",
             "python -m lpt_probe.figures projection artifacts/runs/rte-pl1/projection"]
    block = 'print(load_run("artifacts/runs/rte-pl1"))\n'
    (tmp_path / "README.md").write_text(f"{fence}bash\n" + "\n".join(shown) + f"\n{fence}\n\n{fence}python\n{block}{fence}\n")
    assert readme_chains(False, tmp_path) == [([shown[1], shown[4], shown[5]], [block]), ([shown[0], shown[3]], []),
                                              ([shown[2]], [])]
    (tmp_path / "README.md").write_text(f"{fence}bash\npython -m lpt_probe.figures mi artifacts/mi/rte/minilm\n{fence}\n")
    with pytest.raises(AssertionError, match="artifacts/mi/rte/minilm, which no earlier shown command writes"):
        readme_chains(False, tmp_path)


def test_every_shown_command_has_small_settings():
    """Every command the README and the docs pages show is collected and has a QUICK entry,
    so the integration tests above can run it."""
    cmds = readme_commands()
    for page in markdown_pages():
        for cmd in bash_commands(page.read_text()):
            assert cmd in cmds, f"{page.relative_to(REPO)}: {cmd!r} is not collected"
    for cmd in cmds:
        if cmd != "bash scripts/test.sh":  # CI's own command: shown, never run from here
            quick_key(cmd)
    assert len(cmds) == len(set(cmds))
