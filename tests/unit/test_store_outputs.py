"""outputs.ResumableOutput: the resumable output folder of train, sweep, mi, influence and section4."""

import json

import pytest

from lpt_probe import store
from lpt_probe.analysis.engine.conditions import StudyOutput
from lpt_probe.outputs import ResumableOutput


def status(path):
    return json.loads(path.read_text())


def test_store_names_the_one_context_manager():
    assert ResumableOutput is StudyOutput and not hasattr(store, "ResumableOutput")  # one home, no cycle
    with pytest.raises(AttributeError):
        store.NoSuchThing  # noqa: B018


def test_running_during_complete_after_with_wall_seconds_and_outputs(tmp_path):
    out = tmp_path / "study"
    with ResumableOutput(out, "run.json") as output:
        assert not (out / "run.json").exists()  # nothing before start
        meta = output.start({"status": "running", "a": 1})
        assert meta is output.meta and status(out / "run.json") == {"status": "running", "a": 1}
        store.write_csv(out / "mi.csv", __import__("pandas").DataFrame({"x": [1]}))
        output.meta["b"] = 2
        assert status(out / "run.json")["status"] == "running"
    done = status(out / "run.json")
    assert done["status"] == "complete" and done["a"] == 1 and done["b"] == 2 and done["wall_seconds"] >= 0
    assert done["outputs"] == ["mi.csv", "run.json"] and "error" not in done
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".lpt_probe", "mi.csv", "run.json"]


def test_failed_with_the_error_on_an_exception(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="boom"):
        with ResumableOutput(out, "run.json") as output:
            output.start({})
            raise ValueError("boom")
    meta = status(out / "run.json")
    assert meta["status"] == "failed" and meta["error"] == "ValueError: boom" and "wall_seconds" in meta
    assert "outputs" not in meta


def test_interrupted_on_ctrl_c(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        with ResumableOutput(out, "meta.json") as output:
            output.start({"key": "k"})
            raise KeyboardInterrupt
    meta = status(out / "meta.json")
    assert meta["status"] == "interrupted" and meta["error"] == "KeyboardInterrupt: " and meta["key"] == "k"


def test_stale_files_and_globs_are_removed_at_start_and_others_kept(tmp_path):
    out = tmp_path / "o"
    (out / "checkpoints").mkdir(parents=True)
    for name in ("mi.csv", "keep.csv", "checkpoints/step-2.safetensors", "checkpoints/step-4.safetensors",
                 "checkpoints/other.bin"):
        (out / name).write_text("old")
    (out / ".lpt_probe").write_text("{}")  # a folder an earlier run wrote (a foreign one is refused: issue 34)
    with ResumableOutput(out, "run.json", stale=("mi.csv", "gone.csv", "checkpoints/step-*.safetensors")
                               ) as output:
        assert (out / "mi.csv").exists()  # nothing is removed before start
        output.start({})
        assert not (out / "mi.csv").exists() and not list((out / "checkpoints").glob("step-*"))
    assert (out / "keep.csv").read_text() == "old" and (out / "checkpoints" / "other.bin").exists()


def test_a_second_holder_is_refused_and_leaves_the_first_alone(tmp_path):
    out = tmp_path / "o"
    with ResumableOutput(out, "run.json") as first:
        first.start({})
        with pytest.raises(store.FolderBusy, match="in use by another lpt_probe command"):
            with ResumableOutput(out, "run.json") as second:
                second.start({})
        assert status(out / "run.json")["status"] == "running"
    assert status(out / "run.json")["status"] == "complete"


def test_an_error_before_start_writes_nothing(tmp_path):
    out = tmp_path / "made" / "o"
    with pytest.raises(FileNotFoundError):
        with ResumableOutput(out, "run.json"):
            raise FileNotFoundError("data file not found")
    assert not (tmp_path / "made").exists()  # not even the folder or its lock
    given = tmp_path / "given"
    given.mkdir()
    (given / "run.json").write_text('{"status": "complete"}')
    with pytest.raises(ValueError):
        with ResumableOutput(given, "run.json", stale=("run.json",)):
            raise ValueError("bad flag")
    assert status(given / "run.json") == {"status": "complete"}  # a finished folder stays as it was


def test_a_file_in_the_way_is_refused_before_anything(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="a file of that name exists"):
        with ResumableOutput(tmp_path / "f"):
            pass


def test_a_running_that_cannot_be_written_is_not_marked(tmp_path, monkeypatch, caplog):
    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_local", full)
    with pytest.raises(store.DiskFull):
        with ResumableOutput(tmp_path / "o", "meta.json") as output:
            output.start({})
    assert output.meta is None and "could not mark" not in caplog.text


def test_options_of_runs_and_sweeps(tmp_path):
    # a run: the caller's own wall_seconds (measured from t0 before its last files) and fields kept, no outputs
    out = tmp_path / "run"
    with ResumableOutput(out, "meta.json", t0=0.0, list_outputs=False) as output:
        output.start({})["files"] = {"a": "h"}
        output.meta["wall_seconds"] = 1.5
    assert status(out / "meta.json") == {"status": "complete", "files": {"a": "h"}, "wall_seconds": 1.5}
    # a sweep: no wall_seconds, neither on success nor on failure
    out = tmp_path / "sweep"
    with ResumableOutput(out, "sweep.json", timed=False, list_outputs=False) as output:
        output.start({})["failed"] = 0
    assert status(out / "sweep.json") == {"status": "complete", "failed": 0}
    with pytest.raises(RuntimeError):
        with ResumableOutput(out, "sweep.json", timed=False, list_outputs=False) as output:
            output.start({})
            raise RuntimeError("cell")
    assert status(out / "sweep.json") == {"status": "failed", "error": "RuntimeError: cell"}
    # t0: wall time since then
    with ResumableOutput(tmp_path / "t0", t0=-1e9) as output:
        output.start({})
    assert status(tmp_path / "t0" / "run.json")["wall_seconds"] > 1e8


def test_no_folder_writes_nothing_but_keeps_the_meta(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ResumableOutput(None, "meta.json", stale=("*",)) as output:
        meta = output.start({"key": "k"})
        assert meta["status"] == "running"
    assert meta["status"] == "complete" and "wall_seconds" in meta and "outputs" not in meta
    with pytest.raises(ValueError):
        with ResumableOutput(None, "meta.json") as output:
            output.start({})
            raise ValueError("x")
    assert output.meta["status"] == "failed" and output.meta["error"] == "ValueError: x"
    assert list(tmp_path.iterdir()) == []
