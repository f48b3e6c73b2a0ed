"""Every command the README shows in a ```bash block runs (with small settings appended:
argparse takes the last value of a repeated flag), from a scratch folder so default
outputs land there. ``bash scripts/test.sh`` is the command CI runs (``.ci/run``)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    "lpt_probe.sweep": ["--steps", "4", "--eval-every", "2", "--max-examples", "160", "--seeds", "13", "--no-progress"],
    "lpt_probe.project": ["--max-examples", "80", "--method", "pca"],
    "lpt_probe.figures": [],
    "benchmarks/bench_train.py": ["--models", "minilm", "--generators", "none", "--steps", "2",
                                  "--baselines", "model-tuning,lora", "--repeats", "1", "--warmup", "1"],
    "benchmarks/bench_baselines.py": ["--tasks", "trec", "--seeds", "13", "--steps", "2", "--eval-every", "1",
                                      "--dev-size", "20", "--max-examples", "60", "--time-steps", "2",
                                      "--methods", "model-tuning,adapterdrop,s-idpg,prompt-tuning,lpt",
                                      "--generators", "none", "--repeats", "1", "--warmup", "1"],
    "benchmarks/bench_sweep.py": ["--prompt-layers", "2,6", "--generators", "none", "--seeds", "13", "--steps", "2",
                                  "--dev-size", "20", "--max-examples", "60"],
    "benchmarks/bench_mi.py": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max",
                               "120", "--bootstrap", "50", "--prompt-layers", "2", "--control-permutations", "1"],
    "benchmarks/bench_probe_path.py": ["--permutations", "1"],
    "scripts/demo.sh": ["--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max", "120",
                        "--bootstrap", "50", "--control-permutations", "1", "--no-progress"],
}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def test_readme_custom_task_example_is_the_shipped_file():
    """The YAML the README shows is examples/sentiment/task.yaml, byte for byte, and it loads."""
    from lpt_probe.data import load_custom_task

    text = (REPO / "README.md").read_text()
    shown = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    shipped = (REPO / "examples" / "sentiment" / "task.yaml").read_text()
    assert shown == [shipped]
    spec, data = load_custom_task(REPO / "examples" / "sentiment" / "task.yaml", shots=8, dev_size=8)
    assert spec.name == "movie-sentiment" and tuple(spec.label_names) == ("negative", "positive")
    assert len(data.test) == 16


def test_readme_shows_the_two_setup_commands():
    cmds = readme_commands()
    assert cmds[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def is_benchmark(cmd: str) -> bool:
    """README commands that run a benchmark script (tests/test_readme_benchmarks.py runs them)."""
    return "benchmarks/bench_" in cmd


def run_readme_commands(data_dir, tmp_path, benchmarks: bool) -> list[str]:
    """Run the README's bash commands (the benchmark scripts, or all the others, in README
    order) with the small settings of ``QUICK``; return the commands run. Split in two so
    that the two halves run on different test workers (scripts/test.sh)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LPT_PROBE_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}
    ran = []
    for cmd in readme_commands():
        if cmd == "bash scripts/test.sh" or is_benchmark(cmd) != benchmarks:
            continue  # CI's own command, or the other half
        argv = shlex.split(cmd.replace("../shared/data", str(data_dir))
                           .replace(" examples/", f" {REPO / 'examples'}/")
                           .replace(" benchmarks/results", f" {REPO / 'benchmarks' / 'results'}"))
        key = next((k for k in QUICK if k in argv), None)
        assert key is not None, f"README command {cmd!r} has no small-settings entry in tests/test_readme.py"
        extra = list(QUICK[key])
        if argv[0] == "python":
            argv[0] = sys.executable
        if key == "lpt_probe.mi" and "transformer" in argv:  # the sequence probe: one prompt layer, one lr,
            extra += ["--prompt-layers", "6", "--probe-grid", "lr=1e-3", "--no-controls"]  # no controls (CI time)
        if key == "lpt_probe.mi" and "all" in argv:  # the every-layer recipe: two layers, one seed
            extra += ["--prompt-layers", "2,6", "--seeds", "13"]
        if key in ("benchmarks/bench_train.py", "benchmarks/bench_sweep.py"):
            argv[1] = str(REPO / argv[1])
            extra += ["--out", str(tmp_path / "bench")]
        if key == "benchmarks/bench_baselines.py":
            argv[1] = str(REPO / argv[1])
            extra += ["--out", str(tmp_path / "bench"), "--runs", str(tmp_path / "baselines")]
        if key in ("benchmarks/bench_mi.py", "benchmarks/bench_influence.py", "benchmarks/bench_probe_path.py"):
            argv[1] = str(REPO / argv[1])
            extra += ["--results", str(tmp_path / "bench")]
        if key == "scripts/demo.sh":
            argv[1] = str(REPO / argv[1])
            extra += ["--out", str(tmp_path / "demo")]
        proc = subprocess.run(argv + extra, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, f"{cmd!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        ran.append(cmd)
    return ran


@pytest.mark.integration
def test_every_readme_command_runs(data_dir, tmp_path):
    ran = run_readme_commands(data_dir, tmp_path, benchmarks=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LPT_PROBE_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}
    assert len(ran) >= 5
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):  # after the commands above
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"README python block failed:\n{block}\n{proc.stderr[-3000:]}"
