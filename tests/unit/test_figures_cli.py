"""``python -m lpt_probe.figures``: every subcommand on synthetic files, missing inputs, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from figure_data import check_pdf, mi_table, sweep_table, write_results

from lpt_probe.commands import figures

REPO = Path(__file__).resolve().parents[2]


def drawn(out: Path) -> list[str]:
    """The files in ``out`` but the marker, which lists them (``outputs.publish_files``)."""
    names = sorted(p.name for p in out.iterdir() if p.name != ".lpt_probe")
    assert json.loads((out / ".lpt_probe").read_text())["files"] == names
    return names


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    return write_results(tmp_path_factory.mktemp("results"))


@pytest.mark.parametrize("command, expected", [
    ("performance", ["performance.pdf"]),
    ("convergence", ["convergence.pdf"]),
    ("mi", ["mi_by_layer.pdf", "mi_heatmap.pdf"]),
    ("projection", ["projection.pdf"]),
    ("efficiency", ["efficiency.pdf", "efficiency.md"]),
])
def test_each_subcommand_writes_its_figure(command, expected, results, tmp_path, capsys):
    out = tmp_path / "figs"
    assert figures.main([command, str(results[command]), "--out", str(out)]) == 0
    assert drawn(out) == sorted(expected)
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / name) for name in expected]
    for name in expected:
        if name.endswith(".pdf"):
            check_pdf(out / name)
    if command == "efficiency":
        assert (out / "efficiency.md").read_text().startswith("| model | method | PL |")


def test_png_name_and_csv_path(results, tmp_path, capsys):
    out = tmp_path / "figs"
    csv = results["mi"] / "mi.csv"
    assert figures.main(["mi", str(csv), "--out", str(out), "--png", "--name", "fig2_right", "--no-title"]) == 0
    assert drawn(out) == ["fig2_right.pdf", "fig2_right.png", "fig2_right_heatmap.pdf",
                                                    "fig2_right_heatmap.png"]


def test_one_figure_per_task(tmp_path, capsys):
    sweep = sweep_table()
    (tmp_path / "sweep").mkdir()
    pd.concat([sweep, sweep.assign(task="sst2")]).to_csv(tmp_path / "sweep" / "sweep.csv", index=False)
    out = tmp_path / "figs"
    assert figures.main(["performance", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert drawn(out) == ["performance_rte.pdf", "performance_sst2.pdf"]
    assert figures.main(["performance", str(tmp_path / "sweep"), "--out", str(out), "--hue", "task",
                         "--name", "by_task"]) == 0  # --hue task: one figure, a line per task
    assert (out / "by_task.pdf").exists() and not list(out.glob("by_task_*"))


def test_single_prompt_layer_gives_no_heatmap(tmp_path, capsys):
    (tmp_path / "mi").mkdir()
    mi_table(prompt_layers=(3,)).to_csv(tmp_path / "mi" / "mi.csv", index=False)
    assert figures.main(["mi", str(tmp_path / "mi"), "--out", str(tmp_path / "figs")]) == 0
    assert drawn(tmp_path / "figs") == ["mi_by_layer.pdf"]


@pytest.mark.parametrize("command, producer", [
    ("performance", "python -m lpt_probe.sweep"),
    ("convergence", "python -m lpt_probe.sweep"),
    ("mi", "python -m lpt_probe.mi"),
    ("projection", "python -m lpt_probe.project"),
    ("efficiency", "python benchmarks/bench_train.py"),
])
def test_missing_input_exits_2_and_names_the_producer(command, producer, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        figures.main([command, str(tmp_path), "--out", str(tmp_path / "figs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert figures.SOURCES[command].file in err and producer in err
    assert not (tmp_path / "figs").exists()


def test_bad_table_exits_2_with_the_column(tmp_path, capsys):
    sweep_table().drop(columns="prompt_layer").to_csv(tmp_path / "sweep.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        figures.main(["performance", str(tmp_path / "sweep.csv")])
    assert exc.value.code == 2 and "prompt_layer" in capsys.readouterr().err


def test_help_lists_every_subcommand_and_choice(capsys):
    with pytest.raises(SystemExit):
        figures.main(["--help"])
    top = capsys.readouterr().out
    for command, src in figures.SOURCES.items():
        assert command in top and src.file in top and src.producer in top
    with pytest.raises(SystemExit):
        figures.main(["mi", "--help"])
    assert "{mi_bits,accuracy,macro_f1,ce_bits}" in capsys.readouterr().out


def test_as_a_module_without_torch_or_traceback(tmp_path):
    """The drawing side never imports torch; a missing input is one line, not a traceback."""
    code = ("import sys; import lpt_probe.viz, lpt_probe.analysis.projection.compute, lpt_probe.figures, lpt_probe.layers, lpt_probe.probing; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    proc = subprocess.run([sys.executable, "-m", "lpt_probe.figures", "mi", str(tmp_path / "nowhere")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "python -m lpt_probe.mi" in proc.stderr
