"""End to end on the real data in ../shared/data and the embedded models (kept small)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lpt_probe.commands import mi, sweep, train
from lpt_probe.analysis.engine import pieces as pieces_mod
from lpt_probe.analysis.mi.study import MIRun
from lpt_probe.runs import run as runs_run
from lpt_probe.runs.folders import check_run
from lpt_probe.runs.trainer import TrainConfig

pytestmark = pytest.mark.integration
QUICK_MI = ["--steps", "10", "--eval-every", "5", "--max-examples", "160", "--probe-train-max", "160",
            "--bootstrap", "50", "--control-permutations", "1", "--no-progress"]


def test_train_cli_minilm_trec_writes_a_complete_run_folder(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = train.main(["--task", "trec", "--model", "minilm", "--prompt-layer", "4", "--generator", "npg",
                     "--shots", "100", "--data-seed", "13", "--seed", "13", "--data-dir", str(data_dir),
                     "--steps", "6", "--eval-every", "3", "--max-examples", "200", "--out", str(out)])
    assert rc == 0
    for name in ("config.json", "meta.json", "prompt.safetensors", "curve.csv", "metrics.json",
                 "prompt_config.json"):
        assert (out / name).exists(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["tunable_params"] > 0
    assert set(meta["data"]["fingerprints"]) == {"train", "dev", "test"}
    assert meta["tokens_per_second"] > 0 and meta["peak_rss_mb"] > 0
    curve = pd.read_csv(out / "curve.csv")
    assert curve["step"].tolist() == [3, 6]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_metric"] <= 1 and metrics["prompt_layer"] == 4
    assert "PL=4 npg" in capsys.readouterr().out
    # the saved prompt reloads into a predictor that labels raw text exactly as evaluated
    from lpt_probe.data import load_task
    from lpt_probe.runs.predict import Predictor

    test = load_task("trec", data_dir=data_dir, shots=100, data_seed=13, max_examples=200).test
    pred = Predictor.from_run(out)
    labels = pred.predict([e.texts[0] for e in test.examples])
    assert set(labels) <= set(pred.task.label_names)
    acc = np.mean([pred.task.label_names[e.label] == y for e, y in zip(test.examples, labels)])
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    assert np.allclose(pred.predict_proba(["What is the capital of France ?"]).sum(), 1.0)
    with pytest.raises(ValueError, match="needs 1"):
        pred.predict([("a", "b")])
    # a rerun with the same config reuses the finished run
    mtime = (out / "prompt.safetensors").stat().st_mtime_ns
    train.main(["--task", "trec", "--model", "minilm", "--prompt-layer", "4", "--generator", "npg",
                "--shots", "100", "--data-seed", "13", "--seed", "13", "--data-dir", str(data_dir),
                "--steps", "6", "--eval-every", "3", "--max-examples", "200", "--out", str(out)])
    assert (out / "prompt.safetensors").stat().st_mtime_ns == mtime


def test_custom_yaml_task_trains_from_the_cli(tmp_path):
    rows = ["text,label"] + [f"{w} movie number {i},{lab}" for i in range(30)
                             for w, lab in (("great", "pos"), ("awful", "neg"))]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(rows[:21]) + "\n")
    (tmp_path / "task.yaml").write_text(
        "name: toy\ntrain: train.csv\ntest: test.csv\ntext_columns: [text]\nlabel_column: label\n"
        "labels: [neg, pos]\nmlm_template: '{text_a} It was {mask} .'\nmlm_label_words: [bad, good]\n"
        "clm_template: '{text_a} It was'\nclm_label_words: [bad, good]\n")
    out = tmp_path / "run"
    assert train.main(["--task", str(tmp_path / "task.yaml"), "--prompt-layer", "3", "--steps", "4",
                       "--eval-every", "2", "--dev-size", "10", "--shots", "20", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["task"] == "toy"
    from lpt_probe.runs.predict import Predictor

    assert set(Predictor.from_run(out).predict(["great movie", "awful movie"])) <= {"neg", "pos"}


def test_train_cli_errors_are_clear(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--task", "trec", "--prompt-layer", "9", "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "prompt_layer=9 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "meta.json").exists()  # nothing half-written
    with pytest.raises(SystemExit) as e:
        train.main(["--task", "nope", "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert e.value.code == 2 and "rte" in capsys.readouterr().err


def test_mi_cli_on_real_rte(data_dir, tmp_path):
    out = tmp_path / "mi"
    assert mi.main(["--task", "rte", "--data-dir", str(data_dir), "--out", str(out), *QUICK_MI]) == 0
    for name in ("mi.csv", "mdl.csv", "pvi.csv", "mi_by_layer.pdf", "run.json"):
        assert (out / name).exists(), name
    df = pd.read_csv(out / "mi.csv")
    for col in ("task", "model", "method", "prompt_layer", "seed", "layer", "probe", "representation",
                "split", "h_y_bits", "ce_bits", "mi_bits", "accuracy", "n"):
        assert col in df.columns, col
    assert df["accuracy"].between(0, 1).all()
    main = df[df.control == "none"]
    # default prompt layers for MiniLM (6 layers): 1, middle (4 = L//2+1), last (6), plus controls
    assert set(main[main.method == "lpt"].prompt_layer) == {1, 4, 6}
    assert set(main.method) == {"lpt", "frozen", "random_weights"}
    assert (main.groupby(["method", "prompt_layer", "seed"]).layer.apply(sorted)
            .apply(lambda x: x == list(range(7)))).all()  # one row per layer 0..L and seed
    # h_y_bits is the entropy of the probe-train label prior
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    counts = np.array(run["probe_label_counts"]["train"], dtype=float)
    p = counts / counts.sum()
    assert np.allclose(df.h_y_bits, -(p * np.log2(p)).sum(), atol=1e-12)
    # the headline estimate: the null model's (train prior's) test cross-entropy minus the probe's
    assert (df.mi_bits - (df.null_ce_bits - df.ce_bits)).abs().max() < 1e-9
    assert set(df.control) == {"none", "shuffled_labels"}
    pvi = pd.read_csv(out / "pvi.csv")
    assert len(pvi) == df[df.control == "none"].shape[0] * int(df.n.iloc[0])
    assert len(list((out / "runs").glob("lpt-pl4-s13-*/meta.json"))) == 1


def test_mi_resumes_after_a_crash(data_dir, tmp_path, monkeypatch):
    """Killed mid-way in one process, resumed with two worker processes: the tables equal
    those of one uninterrupted run in one process (pieces do not depend on where they ran)."""
    args = ["--task", "rte", "--data-dir", str(data_dir), "--prompt-layers", "2", "--no-mdl", *QUICK_MI]
    clean = tmp_path / "clean"
    assert mi.main([*args, "--jobs", "1", "--out", str(clean)]) == 0
    crashed = tmp_path / "crashed"
    real = pieces_mod.fit_piece
    calls = {"n": 0}

    def boom(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return real(*a, **kw)

    monkeypatch.setattr(pieces_mod, "fit_piece", boom)
    assert mi.main([*args, "--jobs", "1", "--out", str(crashed)]) == 130  # one line, no traceback
    assert json.loads((crashed / "run.json").read_text())["status"] == "interrupted"
    assert not (crashed / "mi.csv").exists()
    monkeypatch.setattr(pieces_mod, "fit_piece", real)
    first_piece = sorted((crashed / "pieces").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)[0]
    stamp = first_piece.stat().st_mtime_ns
    assert len(list((crashed / "pieces").glob("*.json"))) == 2
    assert mi.main([*args, "--jobs", "2", "--out", str(crashed)]) == 0
    assert first_piece.stat().st_mtime_ns == stamp  # finished piece not recomputed
    assert json.loads((crashed / "run.json").read_text())["settings"]["mi"]["jobs"] == 2
    for name in ("mi.csv", "pvi.csv", "mdl.csv"):
        assert (clean / name).read_bytes() == (crashed / name).read_bytes(), name


def test_sweep_on_real_subj(data_dir, tmp_path):
    out = tmp_path / "sweep"
    rc = sweep.main(["--task", "subj", "--model", "minilm", "--data-dir", str(data_dir), "--shots", "100",
                     "--prompt-layers", "2,5", "--seeds", "13,21", "--steps", "6", "--eval-every", "3",
                     "--max-examples", "300", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = pd.read_csv(out / "sweep.csv")
    assert len(df) == 4 and (df.status == "complete").all()
    # two generators: one convergence figure each
    two = tmp_path / "two"
    assert sweep.main(["--task", "subj", "--data-dir", str(data_dir), "--shots", "100", "--prompt-layers", "3",
                       "--generators", "none,mppg", "--seeds", "13", "--steps", "2", "--eval-every", "1",
                       "--max-examples", "100", "--out", str(two), "--no-progress"]) == 0
    assert (two / "convergence_none.pdf").exists() and (two / "convergence_mppg.pdf").exists()
    assert set(df.prompt_layer) == {2, 5} and set(df.seed) == {13, 21}
    assert df.test_metric.between(0, 1).all() and (df.tunable_params > 0).all()
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.step) == {3, 6}
    for name in ("performance_vs_layer.pdf", "convergence.pdf", "sweep.json"):
        assert (out / name).exists()
    # rerun: finished cells are reused, results identical
    assert sweep.main(["--task", "subj", "--model", "minilm", "--data-dir", str(data_dir), "--shots", "100",
                       "--prompt-layers", "2,5", "--seeds", "13,21", "--steps", "6", "--eval-every", "3",
                       "--max-examples", "300", "--out", str(out), "--no-progress"]) == 0
    again = pd.read_csv(out / "sweep.csv")
    pd.testing.assert_series_equal(df.test_metric, again.test_metric)


@pytest.mark.slow
def test_smollm2_preset_matches_hf_and_trains(data_dir):
    from lpt_probe.model.backbone import Backbone
    from lpt_probe.model.late_prompt import LatePromptConfig
    from lpt_probe.model.loading import load_model

    bundle = load_model("smollm2")
    model, tok, info = bundle
    assert info["model_type"] == "llama" and info["num_hidden_layers"] == 30 and info["hidden_size"] == 576
    bb = Backbone(model)
    enc = tok(["Who wrote Hamlet ? It was"], return_tensors="pt")
    with torch.no_grad():
        ours = bb.hidden_states(enc["input_ids"], enc["attention_mask"])
        ref = model(**enc, output_hidden_states=True).hidden_states
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ours, ref))
    cfg = TrainConfig(task="trec", model="smollm2", data_dir=str(data_dir), shots=100, steps=4,
                            eval_every=4, max_examples=64, dev_size=32)
    res = runs_run.train(LatePromptConfig(prompt_layer=20, generator="npg"), cfg, bundle=bundle, progress=False)
    assert res.model.head_kind == "lm"
    assert math.isfinite(res.metrics["test_metric"])


def test_mi_trains_its_prompts_from_one_shared_cache_exactly_as_one_by_one(data_dir, tmp_path):
    """A study's prompts train as a sweep's cells (``LocalStudy.train``: every start state
    in one frozen pass); each prompt equals the one ``train`` makes alone with its own
    cache: same curve, same metrics, same weights."""
    from lpt_probe.analysis.mi.study import MIConfig
    from lpt_probe.analysis.engine.executors import LocalStudy
    from lpt_probe.runs.executors import ExecutorConfig

    cfg = MIConfig(task="trec", data_dir=str(data_dir), prompt_layers="2,4", seeds=(13, 21), steps=4, eval_every=2,
                   max_examples=120, probe_train_max=60, out=str(tmp_path / "mi"), progress=False, jobs=1)
    run = MIRun(cfg)
    run.load_data()
    conds = [c for c in run.conditions() if c.method == "lpt"]
    LocalStudy(ExecutorConfig()).train(run, conds)
    assert len(conds) == 4 and all(check_run(tmp_path / "mi" / run.run_dirs[c.name], run.run_key(c))[0]
                                   for c in conds)
    for c in conds:
        alone = runs_run.train(run.prompt_config(c), run.train_config(c.seed), None, prepared=run.prompt_prepared,
                               progress=False)
        folder = tmp_path / "mi" / run.run_dirs[c.name]
        metrics = json.loads((folder / "metrics.json").read_text())
        for k in ("dev_metric", "test_metric", "best_step"):
            assert metrics[k] == alone.metrics[k], (c.name, k)
        cols = ["step", "train_loss", "dev_metric", "dev_loss", "lr"]  # not the timing
        pd.testing.assert_frame_equal(pd.read_csv(folder / "curve.csv")[cols], alone.curve[cols], check_dtype=False)
        mine, theirs = run.model_for(c).trainable_state_dict(), alone.model.trainable_state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
