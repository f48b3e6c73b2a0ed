"""The floor ``benchmarks/bench_study_speed.py`` times (issue 36), checked without timing anything:

- on a tiny finished ``mi`` run (TREC, MiniLM, one prompt with patience) its parts are all
  positive and sum to the floor, the train floor runs the bare loop over exactly the batches
  the trainer trained on before patience stopped it (the same text tokens as the run's
  ``train_tokens``, fewer steps than the cap) and the evaluations the run made (its curve's
  rows), and the forward floor counts one frozen pass over the probe rows per condition;
- a Section 4 output's prompts are its sweep's finished cells, each once, however many
  stages name them;
- the report gives the floor table with ``--after-only`` (no before column), and says so
  when a floor could not be timed.

The run is made at tiny settings (the README check of ``bench_study_speed.py`` is bigger);
what the floor's seconds are is the benchmark's to say, not a test's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_study_speed  # noqa: E402

TINY_MI = ["--task", "trec", "--prompt-layers", "6", "--seeds", "13", "--steps", "40", "--eval-every", "2",
           "--patience", "1", "--max-examples", "120", "--dev-size", "30", "--probe-train-max", "60",
           "--probe-dev-size", "30", "--probe-grid", "C=1", "--bootstrap", "30", "--no-controls", "--no-mdl",
           "--jobs", "1", "--no-progress", "--quiet"]


@pytest.mark.integration
def test_floor_of_a_finished_mi_run_times_the_steps_it_ran(data_dir, tmp_path):
    from lpt_probe.commands.mi import main as mi_main
    from lpt_probe import store

    out = tmp_path / "mi"
    assert mi_main([*TINY_MI, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    record = store.read_json_object(out / "run.json")
    floor = bench_study_speed.study_floor(out, "mi", wall_seconds=100.0)

    parts = floor["parts"]
    assert set(parts) == {"cache_pass", "bare_train", "bare_eval", "forward", "probes"}
    assert all(v > 0 for v in parts.values()), parts
    assert floor["floor_seconds"] == pytest.approx(sum(parts.values()))
    assert floor["wall_over_floor"] == pytest.approx(100.0 / floor["floor_seconds"])
    assert parts["probes"] == record["phase_seconds"]["probe"]  # recorded, not timed here

    [run] = floor["runs"]
    folder = out / record["runs"]["lpt-pl6-s13"]
    metrics = store.read_json_object(folder / "metrics.json")
    assert run["run"] == folder.name
    # patience stopped it early: the floor times the steps it ran, not the cap
    assert metrics["early_stopped"] and run["stopped_step"] == metrics["stopped_step"] < run["cap_steps"] == 40, \
        "the tiny run must stop early for this test to mean anything (patience 1)"
    assert run["bare_tokens"] == metrics["train_tokens"]  # the very batches the trainer trained on
    assert run["dev_evals"] == len(pd.read_csv(folder / "curve.csv")) == run["stopped_step"] // 2 < 40 // 2

    # one frozen pass over the probe rows the mi run extracted, once per condition (frozen, the prompt)
    assert floor["conditions"] == len(record["conditions"]) == 2
    assert floor["frozen_pass_examples"]["train"] == record["probe_rows"]["probe_train"]
    assert floor["frozen_pass_examples"]["dev"] == record["probe_rows"]["probe_dev"]
    assert parts["forward"] == pytest.approx(2 * floor["frozen_pass_seconds"])


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_a_section4_study_times_each_sweep_cell_once(tmp_path):
    runs = (tmp_path / "sweep" / "runs").resolve()
    for name, status in (("none-pl1-s13", "complete"), ("none-pl6-s13", "complete"), ("none-pl4-s13", "failed")):
        _write(runs / name / "meta.json", {"status": status})
    named = {"lpt-pl1-s13": "../sweep/runs/none-pl1-s13", "lpt-pl6-s13": "../sweep/runs/none-pl6-s13"}
    _write(tmp_path / "mi" / "run.json", {"runs": named})
    _write(tmp_path / "influence" / "run.json", {"runs": named})
    got = bench_study_speed.study_runs(tmp_path, "section4")
    assert sorted(p.resolve() for p in got) == [runs / "none-pl1-s13", runs / "none-pl6-s13"]
    _write(tmp_path / "run.json", {"runs": {"lpt-pl1-s13": "sweep/runs/none-pl1-s13"}})
    assert [p.resolve() for p in bench_study_speed.study_runs(tmp_path, "mi")] == [runs / "none-pl1-s13"]
    with pytest.raises(ValueError, match="command='sweep'"):
        bench_study_speed.study_runs(tmp_path, "sweep")


def test_after_only_report_shows_the_floor(tmp_path):
    args = argparse.Namespace(after_only=True, before="b3e611e", repeats=1, small=True, results=str(tmp_path))
    runs = [{"round": 0, "command": "mi", "version": "after", "wall_seconds": 30.0, "load_before": 0.5,
             "load_after": 0.6, "phases": {"train": 3.0, "extract": 2.0, "probe": 1.0}}]
    row = {"run": "lpt-pl6-s13", "prompt_layer": 6, "seed": 13, "cap_steps": 40, "stopped_step": 4, "dev_evals": 2,
           "train_seconds": 0.2, "train_tokens": 780, "bare_train_seconds": 0.1, "bare_tokens": 780,
           "bare_eval_seconds": 0.3}
    parts = {"cache_pass": 1.0, "bare_train": 0.1, "bare_eval": 0.3, "forward": 2.0, "probes": 1.0}
    floors = {"mi": {"parts": parts, "floor_seconds": 4.4, "load_seconds": 3.0, "conditions": 2, "runs": [row],
                     "wall_seconds": 30.0, "wall_over_floor": 30.0 / 4.4}}
    bench_study_speed.report(args, ["--after-only"], {"mi": ["mi", "--task", "rte"]}, runs, floors)
    result = json.loads((tmp_path / "study_speed.json").read_text())
    assert result["before"] is None and result["after_only"] and "speedup" not in result["summary"]["mi"]
    assert result["floor"]["mi"]["floor_seconds"] == 4.4
    md = (tmp_path / "study_speed.md").read_text()
    assert "| mi | 30 | 4.4 | 6.82 | 1.0 | 0.1 | 0.3 | 2.0 | 1.0 | - | 2 | 3.0 |" in md
    assert "| mi | lpt-pl6-s13 | 6 | 13 | 4 (40) | 2 | 0.2 | 0.1 | 2.00 | 0.3 |" in md
    assert "before (s)" not in md
    # a floor that could not be timed is said so, and the times measured stay
    failed = bench_study_speed.floor_or_error(tmp_path / "nothing", "mi", 30.0)
    assert failed["error"].startswith("FileNotFoundError") and failed["wall_seconds"] == 30.0
    bench_study_speed.report(args, ["--after-only"], {"mi": ["mi", "--task", "rte"]}, runs, {"mi": failed})
    assert "| mi | 30 | not timed: FileNotFoundError" in (tmp_path / "study_speed.md").read_text()
