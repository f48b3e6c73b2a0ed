"""Section 4 in one command on real TREC with the embedded MiniLM (tiny settings): one set
of prompts for sweep, mi and influence; resume; the claims table; the paper's column from
../shared/paper. The claims read off synthetic tables are in tests/unit/test_section4.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from figure_data import curves_table, mi_table, sweep_table
from test_section4 import diff_table, influence_table

from lpt_probe.commands import section4 as cli
from lpt_probe.analysis.section4.study import CLAIMS, claims_markdown, read_paper_layers, section4_claims, study_examples
from lpt_probe.analysis.section4.verdicts import judge

PAPER = "lpt_paper_efficiency_tables_5_10.csv"


def recompute(folder) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A study's verdicts and contrasts again, from its exported tables alone."""
    meta = json.loads((folder / "section4.json").read_text())
    ex = study_examples(folder, pd.read_csv(folder / "sweep" / "sweep.csv"), pd.read_csv(folder / "mi" / "pvi_top.csv"),
                        int(meta["num_hidden_layers"]))
    claims, contrasts, _, _ = judge(ex, meta["settings"]["bootstrap"])
    return claims, contrasts


def test_paper_column_comes_from_the_paper_table(data_dir):
    paper = read_paper_layers(data_dir.parent / "paper" / PAPER)
    npg = paper[paper["method"] == "LPT w/ NPG"].set_index("prompt_layer")["accuracy"]
    assert list(npg.index) == [7, 13, 19] and npg.idxmax() == 13  # the paper's own rise and fall
    claims, *_ = section4_claims(sweep_table(), curves_table(), mi_table(), diff_table(True), influence_table(), paper)
    text = claims.set_index("claim").loc["accuracy", "paper"]
    assert text.startswith("RTE (Table 10") and f"PL13 {npg.loc[13]:.1f}" in text
    with pytest.raises(ValueError, match="rte_acc"):
        read_paper_layers(data_dir.parent / "paper" / "lpt_paper_tables_1_3.csv")


@pytest.mark.integration
def test_section4_command_shares_prompts_resumes_and_tabulates(data_dir, tmp_path, capsys):
    out = tmp_path / "s4"
    args = ["--task", "trec", "--data-dir", str(data_dir), "--prompt-layers", "1,4,6", "--seeds", "13",
            "--steps", "4", "--eval-every", "2", "--max-examples", "120", "--probe-train-max", "80",
            "--probe-dev-size", "30", "--bootstrap", "50", "--control-permutations", "1", "--influence-max", "8",
            "--jobs", "1", "--no-progress", "--out", str(out), "--paper", str(data_dir.parent / "paper" / PAPER)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert all(c in printed for c in CLAIMS) and "claims.csv" in printed
    meta = json.loads((out / "section4.json").read_text())
    assert meta["status"] == "complete" and meta["prompts_reused_from_sweep"] == {"mi": 3, "influence": 3}
    assert not (out / "mi" / "runs").exists() and not (out / "influence" / "runs").exists()  # trained once
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims["claim"]) == list(CLAIMS)
    assert set(claims["verdict"]) <= {"yes", "no", "inconclusive", "not informative"}
    contrasts, learned = pd.read_csv(out / "contrasts.csv"), pd.read_csv(out / "learned.csv")
    assert set(learned["prompt_layer"]) == {1, 4, 6} and "majority_rate" in learned
    assert {"PL4 - PL1", "PL4 - PL6"} <= set(contrasts["contrast"]) and contrasts["p"].between(0, 1).all()
    for run in (out / "sweep" / "runs").iterdir():  # every run keeps what the verdicts resample
        assert (run / "test_predictions.csv").is_file() and (run / "dev_correct.npz").is_file()
    assert (out / "influence" / "influence_gram.npz").is_file()
    assert cli.main(["--export", str(tmp_path / "tables"), "--out", str(out)]) == 0  # the tables alone
    assert not list((tmp_path / "tables").rglob("*.safetensors"))
    again, again_contrasts = recompute(tmp_path / "tables")
    assert list(again["verdict"]) == list(claims["verdict"])
    assert np.allclose(again_contrasts["estimate"], contrasts["estimate"])
    assert (out / "section4.pdf").stat().st_size > 10_000
    first = {p: p.stat().st_mtime_ns for p in (out / "mi" / "pieces").glob("*.json")}
    assert cli.main(args) == 0  # a rerun trains and fits nothing again
    assert {p: p.stat().st_mtime_ns for p in (out / "mi" / "pieces").glob("*.json")} == first
    inf = json.loads((out / "influence" / "run.json").read_text())
    assert inf["pieces_measured"] == 0
    capsys.readouterr()
    assert cli.main(["--table", str(out), str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| paper's claim | paper (RoBERTa-large) | trec / minilm | trec / minilm |")
    # claims (a row per claim), learned (a row per prompt layer of each study), cost (a row per study)
    assert len(table) == (2 + len(CLAIMS)) + 1 + (2 + 2 * 3) + 1 + (2 + 2) and "Table 10" in table[2]
    assert "| trec / minilm | 4 |" in "\n".join(table) and "| steps trained (cap) |" in "\n".join(table)
    assert claims_markdown([out]).splitlines()[2].count("|") == 4
    # a | inside a cell (the signal row's ||g|| ||prompt||) is escaped: every row has 3 + 1 cell borders
    assert "||g||" in claims.iloc[-1]["measured"] or "||g||" in claims.iloc[-1]["contrasts"]
    borders = [len(re.findall(r"(?<!\\)\|", line)) for line in claims_markdown([out]).splitlines()]
    assert borders == [4] * (2 + len(CLAIMS))


@pytest.mark.integration
def test_section4_refuses_analysis_layers_the_sweep_does_not_train(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--task", "trec", "--data-dir", str(data_dir), "--prompt-layers", "1,6", "--analysis-layers",
                  "1,4", "--max-examples", "60", "--out", str(tmp_path / "s4"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --analysis-layers '1,4' includes prompt layer(s) [4]" in err and "Traceback" not in err


@pytest.mark.integration
def test_section4_plan_counts_the_sweep_training_once_and_runs_nothing(data_dir, tmp_path, capsys):
    out = tmp_path / "s4"
    assert cli.main(["--task", "trec", "--data-dir", str(data_dir), "--prompt-layers", "1,4,6", "--seeds", "13,21",
                     "--steps", "40", "--patience", "2", "--max-examples", "120", "--probe-train-max", "80",
                     "--probe-dev-size", "30", "--influence-max", "8", "--jobs", "1", "--no-progress",
                     "--out", str(out), "--plan"]) == 0
    printed = capsys.readouterr().out
    assert "sweep: runs to train          6 (240 steps in all)" in printed and "the cap" in printed
    assert "mi: prompts to train" not in printed and "influence: pieces to measure  12 of 12" in printed
    assert "total" in printed and not (out / "sweep").exists()
