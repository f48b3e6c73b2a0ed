"""Every number traceable to its settings and data (issue: no stale cache, no half-written
run taken as done). Each test reproduces one way results used to go silently wrong and
checks the fixed behaviour: content-addressed reuse, integrity of weight files,
self-contained run folders, strict inputs, readable errors, locks and file modes.
Real data from ../shared/data and the embedded MiniLM, tiny settings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lpt_probe import store
from lpt_probe.commands import mi, train
from lpt_probe.analysis.config import MIConfig, study_settings
from lpt_probe.runs import run as runs_run
from lpt_probe.runs.folders import RunNotUsable, check_run, load_run
from lpt_probe.runs.predict import Predictor
from lpt_probe.runs.trainer import Trainer
from tiny import toy_task

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--prompt-layer", "3", "--steps", "3", "--eval-every", "3", "--dev-size", "10", "--shots", "20"]




def meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


# -- 2. changed data retrains; 3. a damaged weight file is redone or refused -------------------
def test_train_retrains_when_the_data_changed_and_redoes_a_damaged_run(tmp_path, caplog):
    task, out = toy_task(tmp_path / "task"), tmp_path / "run"
    argv = ["--task", str(task), *TINY_TRAIN, "--out", str(out)]
    assert train.main(argv) == 0
    first = meta(out)
    assert first["status"] == "complete" and first["files"]["prompt.safetensors"] == \
        store.file_sha256(out / "prompt.safetensors")
    assert train.main(argv) == 0 and meta(out)["utc_time"] == first["utc_time"]  # same run: reused
    toy_task(tmp_path / "task", flip=True)  # the labels of train.csv flipped
    caplog.clear()
    assert train.main(argv) == 0
    assert meta(out)["key"] != first["key"] and "training again" in caplog.text
    # truncate the weights: the rerun notices and trains again; loaders refuse meanwhile
    weights = out / "prompt.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    ok, reason = check_run(out)
    assert not ok and "damaged" in reason
    with pytest.raises(RunNotUsable, match=f"{out}.*damaged.*delete the folder or rerun"):
        Predictor.from_run(out)
    proc = subprocess.run([sys.executable, "-m", "lpt_probe.project", str(out), "--method", "pca"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert train.main(argv) == 0
    assert check_run(out)[0]


# -- 4. self-contained run folders --------------------------------------------------------------
def test_predictor_needs_nothing_but_the_run_folder(tmp_path):
    task, out = toy_task(tmp_path / "task"), tmp_path / "run"
    assert train.main(["--task", str(task), *TINY_TRAIN, "--out", str(out)]) == 0
    texts = ["great movie", "awful movie", "a great film indeed"]
    before = Predictor.from_run(out).predict_proba(texts)
    toy_task(tmp_path / "task", labels=("pos", "neg"))  # the YAML's labels swapped after training
    shutil.move(tmp_path / "task" / "test.csv", tmp_path / "moved.csv")  # and a data file moved away
    after = Predictor.from_run(out)
    np.testing.assert_array_equal(after.predict_proba(texts), before)
    assert after.task.label_names == ("neg", "pos")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task_spec"]["label_names"] == ["neg", "pos"] and cfg["template_kind"] == "mlm"
    # not complete -> refused with the folder named
    m = meta(out)
    (out / "meta.json").write_text(json.dumps({**m, "status": "running"}))
    with pytest.raises(RunNotUsable, match="status is 'running'"):
        Predictor.from_run(out)
    (out / "meta.json").unlink()
    with pytest.raises(RunNotUsable, match="no meta.json"):
        Predictor.from_run(out)
    # 7. garbage JSON names the file and says what to do
    (out / "config.json").write_text("{not json")
    with pytest.raises(store.DamagedFile, match=r"config\.json is damaged \(not valid JSON.*delete"):
        Predictor.from_run(out)
    proc = subprocess.run([sys.executable, "-m", "lpt_probe.project", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "config.json is damaged" in proc.stderr and "Traceback" not in proc.stderr


# -- 5. accepted but meaningless settings -------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps 0: train for at least 1"),
    (["--steps", "-4"], "--steps -4: train for at least 1"),
    (["--num-virtual-tokens", "0"], "num_virtual_tokens=0: method='lpt' trains a prompt"),
    (["--max-length", "4"], "max_length=4 leaves no text of example"),
    (["--seeds", "abc"], None),  # train has --seed only: argparse names the unknown flag
])
def test_meaningless_settings_are_errors(extra, message, tmp_path, capsys):
    task = toy_task(tmp_path / "task")
    with pytest.raises(SystemExit) as exc:
        train.main(["--task", str(task), *TINY_TRAIN, *extra, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    if message:
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_truncation_is_counted_and_overlap_warned(tmp_path, caplog):
    long_rows = [f"{'great ' * 40}movie {i},pos" for i in range(5)] + [f"awful film {i},neg" for i in range(5)]
    repeats = ["great movie number 1,pos", "awful movie number 2,neg", "great movie number 3,pos"]
    task = toy_task(tmp_path / "task", test_rows=long_rows + repeats)
    out = tmp_path / "run"
    assert train.main(["--task", str(task), *TINY_TRAIN, "--max-length", "24", "--out", str(out)]) == 0
    m = meta(out)
    assert m["truncation"]["test"]["truncated"] == 5 and m["truncation"]["test"]["heavily_truncated"] == 5
    assert m["data"]["info"]["pool_test_overlap"] == 3
    assert "3 of 60 training-pool rows repeat a test text" in caplog.text and "--drop-overlap" in caplog.text
    dropped = tmp_path / "dropped"
    assert train.main(["--task", str(task), *TINY_TRAIN, "--drop-overlap", "--out", str(dropped)]) == 0
    info = meta(dropped)["data"]["info"]
    assert info["dropped_overlap"] == 3 and info["pool_size"] == 57


# -- 8. smaller: parse errors, models, --out, SIGINT, file modes, locks, encodings -----------------
def test_cli_errors_name_the_flag_the_file_and_the_fix(tmp_path, capsys, data_dir):
    with pytest.raises(SystemExit):
        mi.main(["--task", "trec", "--seeds", "abc", "--data-dir", str(data_dir)])
    assert "argument --seeds: give comma-separated integers like 13,21,42 (got 'abc')" in capsys.readouterr().err
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        train.main(["--task", "trec", "--model", "nosuchmodel", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "a hub id needs network" in err and "minilm" in err and "smollm2" in err
    assert time.perf_counter() - t0 < 20 and "Traceback" not in err  # no retry loop against the hub
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit) as exc:
        train.main(["--task", "trec", "--data-dir", str(data_dir), "--steps", "1", "--out", str(afile)])
    assert exc.value.code == 2 and "a file of that name exists" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_bytes(b"text,label\ngood,pos\nbad \xff byte,neg\n")
    (bad / "test.csv").write_text("text,label\na,pos\n")
    (bad / "task.yaml").write_text("train: train.csv\ntest: test.csv\ntext_columns: [text]\nlabels: [neg, pos]\n"
                                   "mlm_template: '{text_a} {mask}'\nclm_template: '{text_a} is'\n")
    with pytest.raises(SystemExit):
        train.main(["--task", str(bad / "task.yaml"), "--steps", "1"])
    assert "train.csv:3: cannot decode as utf-8-sig" in capsys.readouterr().err
    (bad / "train.csv").write_text("")
    with pytest.raises(SystemExit):
        train.main(["--task", str(bad / "task.yaml"), "--steps", "1"])
    assert "train.csv is empty: a task file needs a header row" in capsys.readouterr().err
    (bad / "train.csv").write_text("text,label\nfine,pos\nbad,neg\n")
    (bad / "task.yaml").write_text("train: train.csv\ntest: test.csv\ntext_columns: [text]\nlabels: [neg, pos]\n"
                                   "mlm_template: '<S1> It was [MASK] .'\nclm_template: '{text_a} is'\n")
    with pytest.raises(SystemExit):
        train.main(["--task", str(bad / "task.yaml"), "--steps", "1"])
    err = capsys.readouterr().err
    assert "e.g. mlm_template: '{text_a} It was {mask} .'" in err and "<S1> for {text_a}" in err
    (bad / "task.yaml").write_text("train: train.csv\ntest: test.csv\ntext_columns: [text]\nlabels: [neg, pos]\n"
                                   "mlm_template: '{text_a} {mask}'\nclm_template: '{text_a} is'\n"
                                   "mlm_label_words: [dreadful, wonderfulness]\n")
    with pytest.raises(SystemExit):
        train.main(["--task", str(bad / "task.yaml"), "--steps", "1", "--dev-size", "1"])
    assert "edit mlm_label_words in your task's YAML file" in capsys.readouterr().err


def test_sigint_marks_the_run_interrupted_and_outputs_follow_the_umask(tmp_path, monkeypatch, capsys):
    task, out = toy_task(tmp_path / "task"), tmp_path / "run"

    def ctrl_c(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", ctrl_c)
    assert train.main(["--task", str(task), *TINY_TRAIN, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted: run marked 'interrupted'" in err and "Traceback" not in err
    assert meta(out)["status"] == "interrupted"
    monkeypatch.undo()
    old = os.umask(0o022)
    try:
        assert train.main(["--task", str(task), *TINY_TRAIN, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    for name in ("meta.json", "config.json", "prompt.safetensors", "curve.csv", "metrics.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert not list(out.glob(".*.tmp"))


def test_a_second_command_on_a_busy_folder_refuses(tmp_path, capsys):
    task, out = toy_task(tmp_path / "task"), tmp_path / "run"
    with store.OutputLock(out):
        with pytest.raises(SystemExit) as exc:
            train.main(["--task", str(task), *TINY_TRAIN, "--out", str(out)])
    assert exc.value.code == 2 and "is in use by another lpt_probe command" in capsys.readouterr().err
    assert not (out / "meta.json").exists()
    assert train.main(["--task", str(task), *TINY_TRAIN, "--out", str(out)]) == 0  # the lock went with it


# -- 1. mi: every setting keys its pieces ----------------------------------------------------------
MI = ["--task", "trec", "--prompt-layers", "2", "--seeds", "13", "--shots", "16", "--steps", "2", "--eval-every", "2",
      "--max-examples", "90", "--probe-train-max", "60", "--no-mdl", "--no-controls", "--bootstrap", "10",
      "--no-progress", "--quiet"]
CHANGES = [["--probe-train-max", "50"], ["--max-examples", "80"], ["--max-length", "12"], ["--steps", "3"],
           ["--shots", "12"], ["--seeds", "21"], ["--probe", "mlp", "--probe-grid", "hidden=16;lr=1e-2"],
           ["--representation", "cls"], ["--task", "subj"]]


def _tables(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in ("mi.csv", "pvi.csv")}


def test_mi_into_a_used_folder_equals_a_fresh_folder(data_dir, tmp_path):
    used = tmp_path / "used"
    base = [*MI, "--data-dir", str(data_dir)]
    assert mi.main([*base, "--out", str(used)]) == 0
    for change in CHANGES:
        fresh = tmp_path / f"fresh{CHANGES.index(change)}"
        assert mi.main([*base, "--out", str(used)]) == 0  # back to the base settings (all reused)
        reps_before = sorted(p.name for p in (used / "reps").iterdir())
        assert mi.main([*base, *change, "--out", str(used)]) == 0
        assert mi.main([*base, *change, "--out", str(fresh)]) == 0
        assert _tables(used) == _tables(fresh), change
        run = json.loads((used / "run.json").read_text())
        settings = study_settings(MIConfig, run["settings"])  # nested: read by the flags' names
        assert settings[change[0].lstrip("-").replace("-", "_")] is not None
        if change[0] in ("--probe", "--representation"):  # the representations were reused
            assert sorted(p.name for p in (used / "reps").iterdir()) == reps_before
    table = pd.read_csv(used / "mi.csv")
    assert set(table.task) == {"subj"}  # the last change: no TREC row under a subj run.json


def test_mi_killed_at_a_random_point_resumes_to_identical_tables(data_dir, tmp_path):
    args = [sys.executable, "-m", "lpt_probe.mi", *MI, "--no-controls", "--data-dir", str(data_dir)]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([*args, "--out", str(clean)], check=True, env=env, capture_output=True)
    rng = np.random.default_rng(int(time.time()))
    delay = float(rng.uniform(4.0, 12.0))  # somewhere in loading, training, extraction or probing
    proc = subprocess.Popen([*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([*args, "--out", str(killed)], check=True, env=env, capture_output=True)
    assert _tables(clean) == _tables(killed), f"killed after {delay:.1f} s"


def test_train_library_reuse_checks_keys(data_dir, tmp_path):
    """The library path (no CLI): a run folder holding other settings is never returned as this run."""
    from lpt_probe.model.late_prompt import LatePromptConfig
    from lpt_probe.runs.trainer import TrainConfig

    cfg = TrainConfig(task="trec", data_dir=str(data_dir), shots=16, dev_size=16, max_examples=80, steps=2,
                      eval_every=2)
    out = tmp_path / "run"
    a = runs_run.train(LatePromptConfig(prompt_layer=2), cfg, out, progress=False)
    b = runs_run.train(LatePromptConfig(prompt_layer=2), cfg, out, progress=False)
    assert b.reused and b.key == a.key
    c = runs_run.train(LatePromptConfig(prompt_layer=3), cfg, out, progress=False)
    assert not c.reused and c.key != a.key and meta(out)["key"] == c.key
    run = load_run(out)
    assert run.prompt_config.prompt_layer == 3 and run.task.name == "trec"


def test_reported_dev_numbers_are_those_of_the_kept_weights(data_dir):
    """train() reports the dev evaluation fit() made of the weights it keeps (not a second
    pass): evaluating the returned model again gives the same numbers."""
    from lpt_probe.model.late_prompt import LatePromptConfig
    from lpt_probe.runs.trainer import TrainConfig, Trainer

    cfg = TrainConfig(task="trec", data_dir=str(data_dir), shots=16, dev_size=40, max_examples=120, steps=6,
                      eval_every=2, lr=0.05)
    res = runs_run.train(LatePromptConfig(prompt_layer=3, generator="npg"), cfg, None, progress=False)
    again = Trainer(res.model, cfg).evaluate(runs_run.prepare(cfg).encoded["dev"])
    assert res.metrics["dev_metric"] == again["metric"] == res.metrics["best_dev_metric"]
    assert res.metrics["dev_accuracy"] == again["accuracy"]
    assert res.metrics["best_step"] in (2, 4, 6)


def _checkpoint_and_memo(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A one-file checkpoint folder and where its digest memo (``fingerprints.json``) goes,
    in a cache of its own."""
    monkeypatch.setenv("LPT_PROBE_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights")
    memo_path = tmp_path / "cache" / "fingerprints.json"
    memo_path.parent.mkdir()
    return ckpt, memo_path


def test_weight_digest_memo_keeps_what_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    """fingerprints.json is read, extended and written under a lock, merging what another
    process added between our read and our write (two sweeps hashing at once)."""
    from lpt_probe.model import loading

    ckpt, memo_path = _checkpoint_and_memo(tmp_path, monkeypatch)
    memo_path.write_text(json.dumps({"old|1|1": "a" * 64}))
    real = loading._file_digest

    def concurrent(path, memo):  # another process finishes its own hashing while we hash
        memo_path.write_text(json.dumps({"old|1|1": "a" * 64, "other|2|2": "b" * 64}))
        return real(path, memo)

    monkeypatch.setattr(loading, "_file_digest", concurrent)
    digest = loading.weights_fingerprint(ckpt)
    memo = json.loads(memo_path.read_text())
    assert {"old|1|1", "other|2|2"} <= set(memo) and len(memo) == 3
    monkeypatch.setattr(loading, "_file_digest", real)
    assert loading.weights_fingerprint(ckpt) == digest


def test_a_damaged_digest_memo_is_replaced_not_fatal(tmp_path, monkeypatch):
    """A fingerprints.json that holds another JSON value (not an object) costs hashing again,
    never a crash: the memo is rewritten as an object holding this checkpoint's digests."""
    from lpt_probe.model import loading

    ckpt, memo_path = _checkpoint_and_memo(tmp_path, monkeypatch)
    memo_path.write_text("[1, 2]")
    digest = loading.weights_fingerprint(ckpt)
    memo = json.loads(memo_path.read_text())
    assert isinstance(memo, dict) and len(memo) == 1
    assert loading.weights_fingerprint(ckpt) == digest
