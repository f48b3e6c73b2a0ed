"""benchmarks/bench_baselines.py's table, checked without training: the paper's column is
filled only from the file it is given (and a malformed file is refused), rows and averages
follow the sweeps' numbers, and ``--no-table2`` leaves a committed table as it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
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
    # the paper's table (its tunable column: none in this file), then ours / the paper's side by side
    assert "| LPT NPG | - | 91.5 ± 1.2 |" in text and "| LoRA | - | - |" in text and "Not filled in" not in text
    assert "| LPT NPG | 60.0 / 91.5 |" in text

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


def test_paper_column_from_the_papers_own_tables(data_dir):
    """The paper's transcription (../shared/paper) maps its method names onto our rows:
    Table 2 (100 shots) by default, Table 3 (500 shots) when asked; unknown names refused."""
    paper_csv = data_dir.parent / "paper" / "lpt_paper_tables_1_3.csv"
    df = pd.DataFrame([{"task": t, "method": m, "generator": g, "label": bb.label(m, g), "test_mean": 0.5,
                        "test_std": 0.01, "tunable_params": 10} for t in ("trec", "rte")
                       for m, g in (("model-tuning", "none"), ("lpt", "npg"), ("lpt", "none"), ("s-idpg", "none"))])
    joined = bb.with_paper(df, str(paper_csv))
    raw = pd.read_csv(paper_csv)
    t2 = raw[raw.source == "Table 2"].set_index(["method", "task"])["mean"]
    got = joined.set_index(["method", "generator", "task"])["paper_mean"]
    assert got[("model-tuning", "none", "trec")] == t2[("Model Tuning", "trec")]
    assert got[("lpt", "npg", "rte")] == t2[("LPT w/ NPG", "rte")]
    assert got[("lpt", "none", "trec")] == t2[("LPT w/o PG", "trec")]
    assert got[("s-idpg", "none", "rte")] == t2[("S-IDPG-PHM", "rte")]
    t3 = raw[raw.source == "Table 3"].set_index(["method", "task"])["mean"]
    got3 = bb.with_paper(df, str(paper_csv), "Table 3").set_index(["method", "generator", "task"])["paper_mean"]
    assert got3[("lpt", "npg", "trec")] == t3[("LPT w/ NPG", "trec")] != got[("lpt", "npg", "trec")]
    text = bb.table2_markdown(joined, ["# t"], str(paper_csv))
    assert "Side by side" in text and f"| 50.0 / {t2[('Model Tuning', 'trec')]:.1f} |" in text
    with pytest.raises(SystemExit, match="no rows of 'Table 9'"):
        bb.with_paper(df, str(paper_csv), "Table 9")


def test_from_table_rerenders_without_training(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(bb, "sweep_task", lambda *a: pytest.fail("--from-table must not train"))
    src = tmp_path / "in"
    src.mkdir()
    rows = pd.DataFrame([{"task": "trec", "model": "minilm", "method": "lora", "generator": "none", "label": "LoRA",
                          "prompt_layer": None, "shots": 100, "steps": 200, "seeds": 3, "test_mean": 0.835,
                          "test_std": 0.031, "dev_mean": 0.8, "tunable_params": 76038}])
    rows.to_csv(src / "table2.csv", index=False)
    (src / "table2.md").write_text("# Table 2 shape\n\nCommand:\n\n    python x --train\n\nTest accuracy (%), ...\n")
    out = tmp_path / "out"
    paper_csv = str(data_dir.parent / "paper" / "lpt_paper_tables_1_3.csv")
    assert bb.main(["--from-table", str(src / "table2.csv"), "--paper", paper_csv, "--out", str(out)]) == 0
    text = (out / "table2.md").read_text()
    assert "python x --train" in text and "without retraining" in text and "| LoRA | 83.5 / 92.0 |" in text
    assert pd.read_csv(out / "table2.csv")["paper_mean"].tolist() == [92.0]
