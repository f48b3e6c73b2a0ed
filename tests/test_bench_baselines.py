"""benchmarks/bench_baselines.py's table, checked without training: the paper's column is
filled only from the file it is given (and a malformed file is refused), rows and averages
follow the sweeps' numbers, and ``--no-table2`` leaves a committed table as it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_baselines as bb  # noqa: E402


def sweep_frame(task: str, rows: list[tuple[str, str, list[float]]]) -> pd.DataFrame:
    """A sweep.csv as lpt_probe.sweep writes it: one complete cell per (method, generator, seed)."""
    recs = []
    for method, generator, accs in rows:
        for seed, acc in zip((13, 21, 42), accs):
            recs.append({"method": method, "generator": generator, "seed": seed, "status": "complete",
                         "prompt_layer": 4 if method == "lpt" else float("nan"), "test_metric": acc,
                         "dev_metric": acc - 0.01, "tunable_params": 1000 if method == "lpt" else 50,
                         "wall_seconds": 2.0})
    return pd.DataFrame(recs)


def test_accuracy_rows_are_the_sweeps_means_and_stds():
    args = type("A", (), {"model": "minilm", "steps": 200})()
    sweep = sweep_frame("trec", [("lora", "none", [0.8, 0.9, 1.0]), ("lpt", "npg", [0.5, 0.5, 0.8])])
    rows = bb.accuracy_rows("trec", sweep, bb.configurations(["lora", "lpt"], ["none", "npg"]), args)
    assert [r["label"] for r in rows] == ["LoRA", "LPT NPG"]  # LPT without generator: no cells, no row
    assert rows[0]["test_mean"] == pytest.approx(0.9) and rows[0]["test_std"] == pytest.approx(0.1)
    assert rows[1]["prompt_layer"] == 4 and rows[1]["seeds"] == 3 and rows[0]["prompt_layer"] is None


def test_paper_column_comes_only_from_the_given_file(tmp_path):
    df = pd.DataFrame([{"task": "trec", "method": "lora", "generator": "none", "label": "LoRA",
                        "test_mean": 0.9, "test_std": 0.1, "tunable_params": 50},
                       {"task": "trec", "method": "lpt", "generator": "npg", "label": "LPT NPG",
                        "test_mean": 0.6, "test_std": 0.17, "tunable_params": 1000}])
    bare = bb.with_paper(df, None)
    assert bare.paper_mean.isna().all()
    text = bb.table2_markdown(bare, ["# t"], None)
    assert "Not filled in" in text and "| LoRA | 50 | 90.0 ± 10.0 | 90.0 |" in text

    paper = tmp_path / "paper.csv"
    paper.write_text("task,method,generator,mean,std\ntrec,lpt,npg,91.5,1.2\n")
    joined = bb.with_paper(df, str(paper))
    assert joined.paper_mean.tolist()[1] == 91.5 and pd.isna(joined.paper_mean.tolist()[0])
    text = bb.table2_markdown(joined, ["# t"], str(paper))
    assert "| LPT NPG | 91.5 ± 1.2 |" in text and "| LoRA | - |" in text and "Not filled in" not in text

    bad = tmp_path / "bad.csv"
    bad.write_text("task,method,mean\ntrec,lora,80\n")
    with pytest.raises(SystemExit, match=r"columns \['generator', 'std'\] missing"):
        bb.with_paper(df, str(bad))


def test_no_table2_leaves_the_committed_table(tmp_path, monkeypatch):
    sweeps = {"trec": sweep_frame("trec", [("lora", "none", [0.8, 0.9, 1.0])]),
              "rte": sweep_frame("rte", [("lora", "none", [0.5, 0.6, 0.7])])}
    monkeypatch.setattr(bb, "sweep_task", lambda task, args, pl: sweeps[task])
    import transformers

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        classmethod(lambda cls, *a, **k: type("C", (), {"num_hidden_layers": 6})()))
    out = tmp_path / "results"
    common = ["--methods", "lora", "--repeats", "0", "--out", str(out)]
    assert bb.main(["--tasks", "trec,rte"] + common) == 0
    full = (out / "table2.md").read_text()
    assert "| LoRA | 50 | 90.0 ± 10.0 | 60.0 ± 10.0 | 75.0 |" in full

    assert bb.main(["--tasks", "rte", "--no-table2"] + common) == 0  # a subset: the table stays
    assert (out / "table2.md").read_text() == full
    assert bb.main(["--tasks", "rte"] + common) == 0  # without the flag it is rewritten
    assert "TREC" not in (out / "table2.md").read_text()
