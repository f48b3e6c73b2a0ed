"""Hostile inputs (issue 24): each case that used to end in a traceback, or in silence,
now gives one ``error: ...`` line (exit 2) or a warning that names the problem, and the
cases that leave a folder behind (a damaged config.json, a full disk) recover on the
rerun. The embedded MiniLM with tiny settings, tiny random models, synthetic tables; the
cases that need the real task files are in tests/integration/test_hostile_inputs_real_data.py."""

from __future__ import annotations

import csv
import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers as T
from figure_data import mi_table
from tiny import tiny_model

from lpt_probe import store
from lpt_probe.commands import figures, influence, mi, project, sweep, train
from lpt_probe.analysis.mi.study import MIConfig
from lpt_probe.analysis.engine.conditions import Condition, unique_conditions
from lpt_probe.data.encoded import check_max_length
from lpt_probe.data.sources import load_custom_task, task_slug
from lpt_probe.model import LatePrompt, attach_late_prompt
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.interop import CONFIG_NAME, TASK_NAME, WEIGHTS_NAME
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.outputs import ResumableOutput
from lpt_probe.runs.folders import check_run, load_run
from lpt_probe.runs.run import default_run_dir
from lpt_probe.runs.sweep import SweepConfig, build_grid, default_out
from lpt_probe.runs.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ["--prompt-layer", "3", "--steps", "1", "--eval-every", "1", "--dev-size", "10", "--shots", "20"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def toy_task(folder: Path, labels=("neg", "pos"), test_rows: list[str] | None = None) -> Path:
    """A two-column sentiment CSV task with its YAML (the README's custom-task shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{w} movie number {i},{lab}" for i in range(30) for w, lab in (("great", "pos"), ("awful", "neg"))]
    (folder / "train.csv").write_text("\n".join(["text,label", *rows]) + "\n")
    test = test_rows if test_rows is not None else [f"{w} film {i},{lab}" for i in range(10)
                                                    for w, lab in (("great", "pos"), ("awful", "neg"))]
    (folder / "test.csv").write_text("\n".join(["text,label", *test]) + "\n")
    words = {"neg": "bad", "pos": "good", "meh": "fine"}
    (folder / "task.yaml").write_text(
        "name: toy\ntrain: train.csv\ntest: test.csv\ntext_columns: [text]\nlabel_column: label\n"
        f"labels: [{', '.join(labels)}]\nmlm_template: '{{text_a}} It was {{mask}} .'\n"
        f"mlm_label_words: [{', '.join(words[x] for x in labels)}]\nclm_template: '{{text_a}} It was'\n"
        f"clm_label_words: [{', '.join(words[x] for x in labels)}]\n")
    return folder / "task.yaml"


def one_line_error(err: str, *needles: str) -> str:
    """The single ``error: ...`` line of a refused command's stderr (nothing else, no traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def refused(main, argv, capsys, *needles: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return one_line_error(capsys.readouterr().err, *needles)


def status(folder: Path) -> str:
    return json.loads((folder / "meta.json").read_text())["status"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[list[str], Path]:
    """A complete tiny run (argv that trains it, folder); tests work on copies."""
    base = tmp_path_factory.mktemp("hostile")
    out = base / "run"
    argv = ["--task", str(toy_task(base / "task")), *TINY, "--out", str(out)]
    assert train.main(argv) == 0
    return argv, out


# -- 1. a config.json that parses but is wrong ---------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('{"format": "x"}', "its format is 'x', expected a whole number"),
    ('{"format": 2}', "key, prompt, train, task_spec, label_word_ids, model_identity, data are missing"),
    (None, "config.json is damaged (its sha256 differs from the one meta.json recorded)"),  # a setting edited
])
def test_a_wrong_config_json_is_refused_by_loaders_and_redone_by_train(finished_run, tmp_path, capsys, caplog, text,
                                                                       message):
    argv, original = finished_run
    out = tmp_path / "run"
    shutil.copytree(original, out)
    config = json.loads((out / "config.json").read_text())
    assert json.loads((out / "meta.json").read_text())["files"]["config.json"] == store.file_sha256(out / "config.json")
    if text is None:
        config["prompt"]["num_virtual_tokens"] += 1  # well-formed, but not what the weights were trained with
        text = json.dumps(config)
    (out / "config.json").write_text(text)
    ok, reason = check_run(out)
    assert not ok and message in reason
    with pytest.raises(ValueError, match=r"config\.json is damaged"):
        load_run(out)
    refused(project.main, [str(out), "--method", "pca", "--quiet"], capsys, str(out), "config.json is damaged",
            message)
    caplog.clear()
    assert train.main([*argv[:-1], str(out)]) == 0  # the rerun trains it again ...
    assert "training again" in caplog.text and message in caplog.text
    assert check_run(out)[0] and status(out) == "complete"
    assert load_run(out).config["key"] == config["key"]  # ... and loaders take it again


# -- 2. figures and project check --out before any work -------------------------------------------
def test_figures_and_project_refuse_a_bad_out_before_working(finished_run, tmp_path, capsys, monkeypatch):
    mi_table().to_csv(tmp_path / "mi.csv", index=False)
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(figures.main, ["mi", str(tmp_path / "mi.csv"), "--out", str(afile)], capsys,
            f"--out {afile}: a file of that name exists")
    refused(figures.main, ["section4", "--sweep", str(tmp_path), "--mi", str(tmp_path), "--influence",
                           str(tmp_path), "--out", str(afile / "sub")], capsys, f"{afile} is a file")
    _, run = finished_run

    def never(*a, **kw):
        raise AssertionError("project computed before checking --out")

    # the command imports its library when it runs (its --help imports none): patch it where it lives
    monkeypatch.setattr("lpt_probe.analysis.projection.run.project_run", never)
    refused(project.main, [str(run), "--out", str(afile), "--quiet"], capsys, "a file of that name exists")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    refused(project.main, [str(run), "--out", str(locked / "proj"), "--quiet"], capsys, f"{locked} is not writable")
    refused(figures.main, ["mi", str(tmp_path), "--out", str(locked)], capsys, f"{locked} is not writable")
    assert list(locked.iterdir()) == []


def test_figures_bad_out_as_a_command_has_no_traceback(tmp_path):
    mi_table().to_csv(tmp_path / "mi.csv", index=False)
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "lpt_probe.figures", "mi", str(tmp_path), "--out",
                           str(tmp_path / "afile")], capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "a file of that name exists")


# -- 3. empty tables are errors naming the file; NaN values are named --------------------------------
def test_figures_refuse_empty_tables_and_name_nan_rows(tmp_path, capsys, caplog):
    table = mi_table()
    table.head(0).to_csv(tmp_path / "mi.csv", index=False)
    refused(figures.main, ["mi", str(tmp_path), "--out", str(tmp_path / "figs")], capsys,
            f"{tmp_path / 'mi.csv'} has a header but no rows")
    (tmp_path / "mi.csv").write_text("")
    refused(figures.main, ["mi", str(tmp_path), "--out", str(tmp_path / "figs")], capsys,
            f"{tmp_path / 'mi.csv'} is empty", "python -m lpt_probe.mi")
    assert not (tmp_path / "figs").exists()
    table.loc[[3, 40], "mi_bits"] = np.nan
    table.to_csv(tmp_path / "mi.csv", index=False)
    caplog.clear()
    assert figures.main(["mi", str(tmp_path), "--out", str(tmp_path / "figs")]) == 0
    assert "2 row(s) have no mi_bits (NaN)" in caplog.text and "line(s) 5, 42 of the file" in caplog.text
    assert (tmp_path / "figs" / "mi_by_layer.pdf").is_file()
    caplog.clear()
    table.dropna().to_csv(tmp_path / "mi.csv", index=False)
    assert figures.main(["mi", str(tmp_path), "--out", str(tmp_path / "figs")]) == 0
    assert "NaN" not in caplog.text


# -- 4. a 1 MB text field is read and truncated --------------------------------------------------------
def test_a_huge_csv_field_is_read_and_truncated_with_the_warning(tmp_path, caplog):
    huge = "great " * 180_000  # ~1 MB, beyond csv's default field limit of 128 KB
    task = toy_task(tmp_path / "task", test_rows=[f'"{huge.strip()}",pos'] +
                    [f"{w} film {i},{lab}" for i in range(5) for w, lab in (("great", "pos"), ("awful", "neg"))])
    limit = csv.field_size_limit()
    _, data = load_custom_task(task, dev_size=10)
    assert max(len(e.texts[0]) for e in data.test) > 1_000_000 and csv.field_size_limit() == limit
    out = tmp_path / "run"
    assert train.main(["--task", str(task), *TINY, "--max-length", "32", "--out", str(out)]) == 0
    assert "toy test: 1 of 11 examples keep less than 50% of their text at max_length=32" in caplog.text
    assert json.loads((out / "meta.json").read_text())["truncation"]["test"]["heavily_truncated"] == 1


def fail_weight_writes(monkeypatch, code: int, message: str) -> None:
    """Every write of a prompt.safetensors fails with ``OSError(code)``; other files are written."""
    write = store._write_local

    def failing(path, data):
        if Path(path).name == "prompt.safetensors":
            raise OSError(code, message)
        return write(path, data)

    monkeypatch.setattr(store, "_write_local", failing)


# -- 5. a full disk: one line naming the folder and the free space; the run is marked failed -------------
def test_a_full_disk_is_one_line_marks_the_run_failed_and_the_rerun_recovers(finished_run, tmp_path, capsys,
                                                                             monkeypatch):
    argv, _ = finished_run
    out = tmp_path / "run"
    fail_weight_writes(monkeypatch, errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10 << 30, used=10 << 30, free=1536))
    refused(train.main, [*argv[:-1], str(out), "--quiet"], capsys,
            f"no space left on the disk holding {out} (1.5 KB free)", "prompt.safetensors", "--out")
    assert status(out) == "failed" and not check_run(out)[0]
    monkeypatch.undo()
    assert train.main([*argv[:-1], str(out)]) == 0
    assert status(out) == "complete" and check_run(out)[0]


def test_any_atomic_write_on_a_full_disk_is_disk_full(tmp_path, monkeypatch, caplog):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_local", full)
    with pytest.raises(store.DiskFull, match=f"holding {tmp_path / 'new'} .* free\\) while writing x.json"):
        store.write_json(tmp_path / "new" / "x.json", {"a": 1})
    # marking a failure that cannot be written warns instead of replacing the error being reported
    assert store.write_status(tmp_path / "run.json", {"status": "failed"}) is False
    assert "could not mark" in caplog.text and "'failed'" in caplog.text and "still says 'running'" in caplog.text
    monkeypatch.setattr(store, "_write_local", lambda p, d: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError) as exc:  # other OS errors are not mistaken for a full disk
        store.write_json(tmp_path / "x.json", {})
    assert not isinstance(exc.value, store.DiskFull)


# -- 6. devices this machine does not have: tests/integration/test_hostile_inputs_real_data.py ---------

# -- 7. --max-length above the model's position limit ---------------------------------------------------
@pytest.mark.parametrize("family, limit", [("bert", 512), ("roberta", 510), ("gpt2", 1024), ("llama", 2048),
                                           ("deberta-v2", None)])
def test_position_limit_comes_from_the_family_table(family, limit):
    assert Backbone(tiny_model(family)).max_positions == limit  # roberta: 512 rows less padding_idx + 1


def test_max_length_above_the_position_limit_is_refused_up_front(tmp_path, capsys):
    check_max_length(512, 512)
    check_max_length(10_000, None)
    with pytest.raises(ValueError, match="--max-length 513 is above the model's position limit of 512 tokens"):
        check_max_length(513, 512)
    task = toy_task(tmp_path / "task")
    refused(train.main, ["--task", str(task), *TINY, "--max-length", "1000", "--out", str(tmp_path / "run"), "--quiet"],
            capsys,
            "--max-length 1000 is above the model's position limit of 512 tokens", "--max-length 512 or less")
    assert not (tmp_path / "run").exists()


# -- 8. mi's early errors leave no folder; labels without rows are warned --------------------------------
def test_early_errors_leave_no_output_folder(tmp_path, capsys):
    out = tmp_path / "made" / "by" / "mi"
    refused(mi.main, ["--task", "trec", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"],
            capsys, "data file", "not found")
    assert not (tmp_path / "made").exists()
    given = tmp_path / "given"
    given.mkdir()
    refused(mi.main, ["--task", "trec", "--data-dir", str(tmp_path / "nowhere"), "--out", str(given), "--quiet"],
            capsys, "not found")
    assert given.is_dir() and list(given.iterdir()) == []  # the user's folder stays, without our .lock


def test_output_lock_cleans_up_only_what_it_made_and_left_empty(tmp_path):
    with store.OutputLock(tmp_path / "a" / "b"):
        pass
    assert not (tmp_path / "a").exists()
    with store.OutputLock(tmp_path / "kept"):
        (tmp_path / "kept" / "result.csv").write_text("x\n")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "result.csv"]
    with store.OutputLock(tmp_path / "busy"):
        with pytest.raises(store.FolderBusy):
            with store.OutputLock(tmp_path / "busy"):
                pass
        assert (tmp_path / "busy" / ".lock").exists()  # the refused command leaves the holder's lock alone


def test_a_label_without_rows_is_warned(tmp_path, caplog):
    spec, data = load_custom_task(toy_task(tmp_path / "task", labels=("neg", "pos", "meh")), dev_size=10)
    assert spec.num_labels == 3 and len(data.train) > 0
    assert "toy: label(s) 'meh' have no rows in the training data ('meh': 0 in train, 0 in test)" in caplog.text
    assert "remove them from labels in the task's YAML file" in caplog.text
    caplog.clear()
    load_custom_task(toy_task(tmp_path / "fine"), dev_size=10)
    assert "no rows" not in caplog.text


def test_the_guide_lists_every_case():
    guide = (REPO / "docs" / "guides" / "errors.md").read_text()
    for needle in ("config.json is damaged", "a file of that name exists", "has a header but no rows", "NaN",
                   "field", "no space left on the disk", "is not a device", "position limit", ".lock",
                   "have no rows in the training data", "given more than once", "a seed is a whole number",
                   "lpt_probe did not write", ".lpt_probe", "holds a finished run of other settings", "--overwrite",
                   "edited after export", "its sha256 differs", "strict=False", "no such folder",
                   "LPT_PROBE_DATA_DIR", "TaskError", "labels is 5", "text column", "Install s3fs",
                   "writes a local folder only", "could not connect to", "file-size limit", "must be numbers",
                   "no command is at work there", "bottleneck=0 (--bottleneck)", "--reuse-runs",
                   "leaves no training rows", "labels have training rows", "cut short", "would replace",
                   "LPT_PROBE_STAGING", "lpt_probe.outputs.staged", "cannot be a real extraction",
                   "sha256 differs from test.json"):
        assert needle in guide, needle


# == round 3 (issue 34) ===============================================================================
# -- 1. repeated seeds or layers: refused before any work, by every command ----------------------------
@pytest.mark.parametrize("command, flags, message", [
    (mi, ["--seeds", "13,13"], "seeds=13,13 (--seeds): 13 given more than once"),
    (mi, ["--prompt-layers", "2,2"], "prompt_layers=2,2 (--prompt-layers): 2 given more than once"),
    (mi, ["--probe-seeds", "0,1,0"], "probe_seeds=0,1,0 (--probe-seeds): 0 given more than once"),
    (influence, ["--seeds", "13,21,13"], "seeds=13,21,13 (--seeds): 13 given more than once"),
    (sweep, ["--seeds", "13,13"], "seeds=13,13 (--seeds): 13 given more than once"),
    (sweep, ["--methods", "lpt,lpt"], "methods=lpt,lpt (--methods): lpt given more than once"),
    (sweep, ["--generators", "none,none"], "generators=none,none (--generators)"),
])
def test_repeated_seeds_or_layers_are_refused_before_any_work(tmp_path, capsys, command, flags, message):
    out = tmp_path / "out"
    refused(command.main, ["--task", str(toy_task(tmp_path / "task")), "--steps", "1", "--eval-every", "1",
                           "--device", "cpu", *flags, "--out", str(out), "--quiet"], capsys, message, "give each once")
    assert not out.exists()


def test_seeds_out_of_range_name_their_flag(tmp_path, capsys):
    task = str(toy_task(tmp_path / "task"))
    for flag, value in (("--seed", "-1"), ("--seed", str(2 ** 70)), ("--data-seed", "-5")):
        refused(train.main, ["--task", task, *TINY, flag, value, "--out", str(tmp_path / "r"), "--quiet"], capsys,
                f"{flag} {value}: a seed is a whole number from 0 to 4294967295")
    refused(mi.main, ["--task", task, "--seeds", "13,-2", "--out", str(tmp_path / "m"), "--quiet"], capsys,
            "--seeds -2: a seed is a whole number")
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()


def test_two_conditions_or_cells_can_never_share_a_storage_key():
    with pytest.raises(AssertionError, match="share a name"):
        unique_conditions([Condition.lpt(2, 13), Condition("frozen", "frozen", 0, 0), Condition.lpt(2, 13)])
    assert len(unique_conditions([Condition.lpt(2, 13), Condition.lpt(2, 21)])) == 2
    with pytest.raises(AssertionError, match="share a run folder name"):
        build_grid(("lpt",), ("none",), [2], (13, 13))
    with pytest.raises(ValueError, match="given more than once"):
        SweepConfig(seeds=(13, 13))


# -- 2. only folders lpt_probe owns are written into ----------------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "metrics.json", "meta.json", "curve.csv", "notes.txt"])
def test_a_folder_of_other_files_is_refused_unless_overwrite(finished_run, tmp_path, capsys, name):
    argv, _ = finished_run
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / name).write_text('{"hidden_size": 384}\n')
    refused(train.main, [*argv[:-1], str(folder), "--quiet"], capsys, f"--out {folder}: the folder holds files "
            f"lpt_probe did not write ({name})", "give a new or empty folder, or --overwrite")
    assert sorted(p.name for p in folder.iterdir()) == [name] and "384" in (folder / name).read_text()
    refused(mi.main, ["--task", argv[1], "--steps", "1", "--eval-every", "1", "--out", str(folder), "--quiet"],
            capsys, "lpt_probe did not write")
    refused(sweep.main, ["--task", argv[1], "--steps", "1", "--out", str(folder), "--quiet"], capsys,
            "lpt_probe did not write")
    assert sorted(p.name for p in folder.iterdir()) == [name]
    assert train.main([*argv[:-1], str(folder), "--overwrite", "--quiet"]) == 0
    assert (folder / ".lpt_probe").is_file() and check_run(folder)[0]


def test_the_model_folder_as_out_is_refused_and_the_model_still_loads(tmp_path, capsys):
    task = toy_task(tmp_path / "task")
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / "config.json").write_text('{"model_type": "bert"}\n')
    (copy / "model.safetensors").write_bytes(b"weights")
    refused(train.main, ["--task", str(task), *TINY, "--model", str(copy), "--out", str(copy), "--quiet"], capsys,
            "config.json, model.safetensors", "not replaced")
    assert (copy / "config.json").read_text() == '{"model_type": "bert"}\n'


def test_a_finished_run_of_other_settings_is_kept_unless_overwrite(finished_run, tmp_path, capsys, caplog):
    argv, original = finished_run
    out = tmp_path / "run"
    shutil.copytree(original, out)
    before = (out / "metrics.json").read_bytes()
    other = [*argv[:-1], str(out), "--seed", "21", "--quiet"]
    refused(train.main, other, capsys, f"--out {out} holds a finished run of other settings (seed: 13 -> 21)",
            "--overwrite to replace it")
    assert (out / "metrics.json").read_bytes() == before and check_run(out)[0]
    assert train.main([*other, "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 21


def test_folders_written_before_the_marker_and_empty_folders_are_still_used(finished_run, tmp_path):
    argv, original = finished_run
    out = tmp_path / "run"
    shutil.copytree(original, out)
    (out / ".lpt_probe").unlink()  # a run from before the marker: its meta.json says lpt_probe wrote it
    assert train.main([*argv[:-1], str(out), "--quiet"]) == 0 and check_run(out)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train.main([*argv[:-1], str(empty), "--quiet"]) == 0 and (empty / ".lpt_probe").is_file()


# -- 3. default output folders are unique per task file ------------------------------------------------
def test_two_task_files_of_one_name_get_two_default_folders(tmp_path):
    a, b = toy_task(tmp_path / "a"), toy_task(tmp_path / "b")  # both task.yaml, both named toy, same text
    assert a.name == b.name == "task.yaml" and a.read_text() == b.read_text()
    pc = LatePromptConfig(prompt_layer=4)
    runs = {default_run_dir(pc, TrainConfig(task=str(t), shots=8, device="cpu")) for t in (a, b)}
    studies = {MIConfig(task=str(t), device="cpu").default_out() for t in (a, b)}
    sweeps = {default_out(TrainConfig(task=str(t), device="cpu")) for t in (a, b)}
    assert len(runs) == len(studies) == len(sweeps) == 2
    assert all(Path(p).parts[2].startswith("toy-") for p in (*runs, *studies, *sweeps))
    before = task_slug(a)
    assert task_slug(a) == before  # stable ...
    a.write_text(a.read_text().replace("It was", "It is"))
    assert task_slug(a) != before  # ... and new for edited content
    assert task_slug("rte") == "rte" and task_slug(tmp_path / "nothere.yaml").startswith("nothere-")


# -- 5. exported prompts are verified on loading and on attaching ----------------------------------------
def _export(tmp_path, head: bool = True, pl: int = 3):
    model = tiny_model("bert", head=head)
    torch.manual_seed(1)
    lpt = LatePromptModel(Backbone(model), LatePromptConfig(prompt_layer=pl, generator="npg"), 3,
                          [20, 21, 22] if head else None).eval()
    return model, lpt, lpt.save_pretrained(tmp_path / "prompt", base_model_name="minilm")


def test_an_exported_prompt_records_digest_hub_id_and_fingerprint(tmp_path):
    _, _, folder = _export(tmp_path)
    record = json.loads((folder / CONFIG_NAME).read_text())
    assert record["weights_sha256"] == store.file_sha256(folder / WEIGHTS_NAME)
    assert record["base_model"]["name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"  # not the alias
    assert len(record["base_model"]["embedding_fingerprint"]) == 32


@pytest.mark.parametrize("tamper, message", [
    ("weights", "late_prompt_model.safetensors is damaged (its sha256 differs"),
    ("prompt_layer", "edited after export (prompt_layer is 2 (exported: 3))"),
    ("label_word_ids", "edited after export (task's label_word_ids is [22, 21, 20]"),
    ("head_kind", "'head_kind' is missing"),
    ("base_model", "'base_model' is missing"),
    ("format", "its format is 'x', expected 1"),
    ("prompt_layer=0", "edited after export (prompt_layer is 0 (exported: 3))"),  # verified before it is built
])
def test_a_tampered_export_is_refused_by_from_pretrained(tmp_path, tamper, message):
    _, _, folder = _export(tmp_path)
    if tamper == "weights":
        data = bytearray((folder / WEIGHTS_NAME).read_bytes())
        header = 8 + int.from_bytes(data[:8], "little")
        data[header + 5] ^= 0xFF  # a byte of the weights, after the safetensors header
        (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    elif tamper == "label_word_ids":
        task = json.loads((folder / TASK_NAME).read_text())
        task["label_word_ids"] = [22, 21, 20]
        (folder / TASK_NAME).write_text(json.dumps(task))
    else:
        record = json.loads((folder / CONFIG_NAME).read_text())
        if tamper.startswith("prompt_layer"):
            record["prompt_layer"] = 0 if tamper.endswith("=0") else 2
        elif tamper == "format":
            record["format"] = "x"
        else:
            del record[tamper]
        (folder / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(store.DamagedFile) as exc:
        LatePrompt.from_pretrained(folder)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_mistyped_local_path_is_named(tmp_path):
    for path in (tmp_path / "nowhere", "./runs/nowhere", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="no such folder; give the folder LatePrompt.save_pretrained"):
            LatePrompt.from_pretrained(path)


def test_attach_refuses_other_weights_a_wrong_head_or_another_model_unless_not_strict(tmp_path):
    model, lpt, folder = _export(tmp_path)
    prompt = LatePrompt.from_pretrained(folder)
    torch.manual_seed(7)
    other = T.BertForMaskedLM(model.config).eval()  # same shape, other weights
    with pytest.raises(ValueError, match="has other weights .* pass strict=False"):
        attach_late_prompt(other, prompt)
    with attach_late_prompt(other, prompt, strict=False):
        pass
    with attach_late_prompt(model.to(torch.bfloat16), prompt):  # the same weights in another dtype: accepted
        pass
    model.float()
    bare = tiny_model("bert", head=False)  # an LM-head prompt on a bare encoder
    with pytest.raises(ValueError, match="reads the model's MLM/LM head, which BertModel lacks"):
        attach_late_prompt(bare, prompt)
    # a classifier-head prompt (the embedded MiniLM's kind) on a masked LM with a head transformers made up
    _, _, clf = _export(tmp_path / "clf", head=False)
    with pytest.raises(ValueError, match="linear classifier .* BertForMaskedLM with an LM head"):
        attach_late_prompt(tiny_model("bert"), clf)
    old = LatePrompt.from_pretrained(folder)  # an export without a fingerprint: the recorded name is compared
    del old.base_model["embedding_fingerprint"]
    model.config._name_or_path = "someone/else"
    with pytest.raises(ValueError, match="trained on 'sentence-transformers/all-MiniLM-L6-v2', and the model given "
                                         "is 'someone/else'"):
        attach_late_prompt(model, old)
    with attach_late_prompt(model, old, strict=False):
        pass


# -- 6. one-line errors: YAML types (also tests/unit/test_task_properties.py; LPT_PROBE_DATA_DIR:
# tests/integration/test_hostile_inputs_real_data.py) ---------------------------------------------------
@pytest.mark.parametrize("line, message", [("labels: 5", "labels is 5"), ("text_columns: 5", "text_columns is 5"),
                                           ("train: 123", "train is 123"), ("train: [a.csv]", "train is ['a.csv']"),
                                           ('labels: "np"', "labels is 'np'")])
def test_a_mistyped_yaml_key_is_one_line_from_the_command(tmp_path, capsys, line, message):
    task = toy_task(tmp_path / "task")
    key = line.split(":")[0]
    text = "\n".join(line if row.startswith(f"{key}:") else row for row in task.read_text().splitlines())
    task.write_text(text + "\n")
    refused(train.main, ["--task", str(task), *TINY, "--out", str(tmp_path / "run"), "--quiet"], capsys,
            f"custom task {task}: {message}, expected")


def test_a_ray_cluster_that_cannot_be_reached_is_one_line(monkeypatch):
    from lpt_probe.runs import executors

    class NoCluster:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kw):
            raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to")

    monkeypatch.setattr(executors, "require_ray", lambda: NoCluster)
    monkeypatch.setattr("lpt_probe.runs.config.require_ray", lambda: NoCluster)  # ExecutorConfig's own check
    for address, where in (("auto", "--address auto"), ("10.0.0.9:6379", "--address 10.0.0.9:6379"),
                           (None, "a Ray on this machine")):
        with pytest.raises(ValueError) as exc:
            executors.connect(executors.ExecutorConfig(executor="ray", address=address))
        assert f"could not connect to {where} (ConnectionError: Could not find any running Ray instance.)" in \
            str(exc.value) and "ray start --head" in str(exc.value) and "\n" not in str(exc.value)


def test_a_file_size_limit_is_one_line_and_marks_the_run_failed(finished_run, tmp_path, capsys, monkeypatch):
    argv, _ = finished_run
    out = tmp_path / "run"
    fail_weight_writes(monkeypatch, errno.EFBIG, "File too large")
    refused(train.main, [*argv[:-1], str(out), "--quiet"], capsys, "file-size limit (ulimit -f)",
            "ulimit -f unlimited")
    assert status(out) == "failed"


def test_figures_name_a_cell_that_is_not_a_number(tmp_path, capsys):
    table = mi_table()
    table["mi_bits"] = table["mi_bits"].astype(object)
    table.loc[5, "mi_bits"] = "oops"
    table.to_csv(tmp_path / "mi.csv", index=False)
    refused(figures.main, ["mi", str(tmp_path), "--out", str(tmp_path / "figs")], capsys,
            f"{tmp_path / 'mi.csv'}: mi_bits must be numbers, but line 7 holds 'oops' (1 such row(s))")
    assert not (tmp_path / "figs").exists()


# -- 4. URL outputs: through fsspec, or one line ---------------------------------------------------------
def test_url_outputs_are_written_through_fsspec_or_refused_in_one_line(finished_run, tmp_path, capsys, monkeypatch):
    import fsspec

    argv, _ = finished_run
    monkeypatch.chdir(tmp_path)  # nothing may appear here as a local folder named after the URL
    task = argv[1]
    if importlib.util.find_spec("s3fs") is None:  # the case of the report: s3fs not installed
        refused(train.main, [*argv[:-1], "s3://bucket/x", "--quiet"], capsys, "--out s3://bucket/x: Install s3fs "
                "to access S3; install the filesystem of that URL (pip install it), or give a local folder")
        refused(sweep.main, ["--task", task, "--steps", "1", "--out", "s3://bucket/x", "--quiet"], capsys,
                "Install s3fs")
    refused(train.main, [*argv[:-1], "foo://bucket/x", "--quiet"], capsys, "Protocol not known: foo")
    with pytest.raises(ValueError, match=r"--out memory://b/mi: this function writes a local folder only; .*"
                                         r"lpt_probe\.outputs\.staged"):
        MIConfig(task=task, out="memory://b/mi")  # the Python API; the commands stage URLs (test_hostile_outputs.py)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("LPT_PROBE_STAGING", str(tmp_path.parent / f"{tmp_path.name}-staging"))
    assert train.main([*argv[:-1], "memory://bucket/run", "--quiet"]) == 0  # trained locally, then uploaded
    fs = fsspec.filesystem("memory")
    meta = json.loads(fs.cat_file("/bucket/run/meta.json"))
    assert meta["status"] == "complete" and fs.exists("/bucket/run/prompt.safetensors")
    assert not fs.exists("/bucket/run/.lock") and check_run("memory://bucket/run")[0]
    assert list(tmp_path.iterdir()) == []


# -- a killed command's "running" is reported as interrupted -----------------------------------------------
def test_a_running_status_whose_process_is_gone_counts_as_interrupted(finished_run, tmp_path, caplog):
    from lpt_probe.outputs import stale_status

    out = tmp_path / "study"
    out.mkdir()
    (out / ".lpt_probe").write_text("{}")
    store.write_json(out / "run.json", {"status": "running", "versions": {"lpt_probe": "x"}})  # then SIGKILL
    note = stale_status(out, "run.json")
    assert note and "says 'running', but no command is at work there" in note and "interrupted" in note
    with store.OutputLock(out):  # a command at work: not stale
        assert stale_status(out, "run.json") is None
    with ResumableOutput(out, "run.json") as output:
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"  # recorded before any work
        output.start({})
    assert "ended without marking it" in caplog.text and json.loads((out / "run.json").read_text())["status"] == \
        "complete"
    argv, original = finished_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "running"}))  # killed by `timeout`
    caplog.clear()
    assert train.main([*argv[:-1], str(run), "--quiet"]) == 0
    assert "meta.json says 'running', but no command is at work there" in caplog.text and status(run) == "complete"


# -- questionable cases with a clear fix -------------------------------------------------------------------
def test_a_zero_bottleneck_and_a_missing_reuse_runs_folder_are_refused(tmp_path, capsys):
    task = str(toy_task(tmp_path / "task"))
    refused(train.main, ["--task", task, *TINY, "--generator", "npg", "--bottleneck", "0", "--out",
                         str(tmp_path / "r"), "--quiet"], capsys, "bottleneck=0 (--bottleneck) must be >= 1")
    refused(mi.main, ["--task", task, "--steps", "1", "--eval-every", "1", "--reuse-runs", str(tmp_path / "nope"),
                      "--out", str(tmp_path / "m"), "--quiet"], capsys,
            f"--reuse-runs {tmp_path / 'nope'}: no such folder")
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()


def test_max_examples_that_leave_a_label_without_rows_is_warned(tmp_path, caplog):
    task = toy_task(tmp_path / "task")
    load_custom_task(task, dev_size=2, max_examples=1)
    assert "toy: --max-examples 1 leaves no training rows of label(s)" in caplog.text
    assert "at least 2 for one row per label" in caplog.text
    caplog.clear()
    load_custom_task(task, dev_size=2, max_examples=10)
    assert "leaves no training rows" not in caplog.text


def test_figures_warn_about_a_truncated_table(tmp_path, caplog):
    text = mi_table().to_csv(index=False)
    (tmp_path / "mi.csv").write_text(text[: len(text) - 25])  # cut inside the last row
    assert figures.main(["mi", str(tmp_path), "--out", str(tmp_path / "figs")]) == 0
    assert "mi.csv does not end with a newline: it was cut short" in caplog.text
    caplog.clear()
    (tmp_path / "mi.csv").write_text(text)
    assert figures.main(["mi", str(tmp_path), "--out", str(tmp_path / "figs")]) == 0
    assert "cut short" not in caplog.text


def test_an_error_after_the_start_puts_the_earlier_tables_back(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / ".lpt_probe").write_text("{}")
    (out / "mi.csv").write_text("the earlier table\n")
    (out / "mi_diff.csv").write_text("the earlier differences\n")
    with pytest.raises(store.DamagedFile):
        with ResumableOutput(out, "run.json", stale=("mi.csv", "mi_diff.csv")) as output:
            output.start({})
            assert not (out / "mi.csv").exists()  # set aside: nothing stale is read meanwhile
            (out / "mi_diff.csv").write_text("new\n")  # rebuilt before the error: kept
            raise store.DamagedFile("reps/x.npy is damaged")  # e.g. a tampered representation found late
    assert (out / "mi.csv").read_text() == "the earlier table\n" and (out / "mi_diff.csv").read_text() == "new\n"
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".lpt_probe", "mi.csv", "mi_diff.csv", "run.json"]
    with ResumableOutput(out, "run.json", stale=("mi.csv",)) as output:
        output.start({})
    assert not (out / "mi.csv").exists() and not list(out.glob(".*.previous"))  # finished: the stale one is gone


def test_other_settings_names_what_differs_and_ignores_where_it_ran(finished_run):
    from lpt_probe.runs.run import other_settings

    _, run = finished_run
    config = json.loads((run / "config.json").read_text())
    assert other_settings(run, config) == ""
    moved = {**config, "train": {**config["train"], "device": "cuda", "data_dir": "/elsewhere"}}
    assert other_settings(run, moved) == ""  # where it ran and where its data lives are no setting
    other = {**config, "train": {**config["train"], "model": "smollm2", "steps": 9},
             "prompt": {**config["prompt"], "prompt_layer": 2}}
    assert other_settings(run, other) == "prompt_layer: 3 -> 2, model: 'minilm' -> 'smollm2', steps: 1 -> 9"
