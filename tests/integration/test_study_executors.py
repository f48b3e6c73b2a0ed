"""``mi`` and ``influence`` on Ray (``--executor ray``): the same files and tables as the
local executor, and a folder started under one resumes under the other with nothing
retrained, re-extracted or refitted; Ray settings without Ray are one-line errors. On real
TREC from ../shared/data with the embedded MiniLM (tiny settings), on a local Ray of 2 CPUs."""

from __future__ import annotations

import json
import sys

import pytest

from lpt_probe.commands import influence, mi, sweep

pytestmark = pytest.mark.integration

MI = ["--task", "trec", "--prompt-layers", "4", "--seeds", "13", "--steps", "2", "--eval-every", "1", "--shots", "20",
      "--dev-size", "20", "--max-examples", "60", "--probe-train-max", "60", "--probe-dev-size", "20", "--bootstrap",
      "20", "--control-permutations", "1", "--no-progress", "-q"]
INFLUENCE = ["--task", "trec", "--prompt-layers", "6", "--steps", "4", "--eval-every", "2", "--max-examples", "24",
             "--influence-max", "4", "--bootstrap", "20", "--checkpoints", "0", "--no-progress", "-q"]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def files(out, parts=("runs", "reps", "pieces")) -> dict[str, bytes]:
    """Every file a study caches, by its path inside ``out`` (a run's timings left out)."""
    found = {}
    for part in parts:
        for p in sorted((out / part).rglob("*")):
            if p.is_file() and p.name not in ("meta.json", "metrics.json", "curve.csv"):
                found[p.relative_to(out).as_posix()] = p.read_bytes()
    return found


def stamps(out) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for part in ("runs", "reps", "pieces")
            for p in (out / part).rglob("*") if p.is_file()}


def test_mi_on_ray_equals_local_and_each_resumes_the_other(data_dir, tmp_path, local_ray):
    args = [*MI, "--data-dir", str(data_dir)]
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert mi.main([*args, "--jobs", "1", "--out", str(local)]) == 0
    assert mi.main([*args, "--executor", "ray", "--out", str(remote)]) == 0
    for name in ("mi.csv", "mdl.csv", "pvi.csv", "mi_diff.csv"):  # the linear probe is deterministic: exact
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name
    cached = files(local)
    assert cached == files(remote)  # same content keys, same prompts, representations and pieces
    assert sum(k.startswith("pieces/") and k.endswith(".json") for k in cached) == 17  # 7 + 3 above PL 4 + 7
    meta = json.loads((remote / "run.json").read_text())
    assert meta["execution"]["executor"] == "ray" and meta["pieces_fitted"] == 17
    assert meta["runs"] == {"lpt-pl4-s13": next((remote / "runs").iterdir()).relative_to(remote).as_posix()}
    # each executor resumes the other's folder: nothing trained, extracted or fitted again
    before = {d: stamps(d) for d in (local, remote)}
    assert mi.main([*args, "--executor", "ray", "--out", str(local)]) == 0
    assert mi.main([*args, "--jobs", "1", "--out", str(remote)]) == 0
    for d in (local, remote):
        assert stamps(d) == before[d]
        assert json.loads((d / "run.json").read_text())["pieces_fitted"] == 0
    assert (local / "mi.csv").read_bytes() == (remote / "mi.csv").read_bytes()


def test_influence_on_ray_equals_local_and_each_resumes_the_other(data_dir, tmp_path, local_ray, capsys):
    args = [*INFLUENCE, "--data-dir", str(data_dir)]
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert influence.main([*args, "--out", str(local)]) == 0
    assert influence.main([*args, "--executor", "ray", "--out", str(remote)]) == 0
    assert capsys.readouterr().out.count("3 piece(s) measured, 0 reused") == 2
    assert (local / "influence.csv").read_bytes() == (remote / "influence.csv").read_bytes()
    assert files(local, ("runs", "pieces")) == files(remote, ("runs", "pieces"))
    before = {d: stamps(d) for d in (local, remote)}
    assert influence.main([*args, "--executor", "ray", "--out", str(local)]) == 0
    assert influence.main([*args, "--out", str(remote)]) == 0
    assert capsys.readouterr().out.count("0 piece(s) measured, 3 reused") == 2
    assert all(stamps(d) == before[d] for d in (local, remote))


@pytest.mark.parametrize("command", [mi, influence, sweep])
@pytest.mark.parametrize("flags, named", [(["--address", "auto"], "--address auto"),
                                          (["--cpus-per-run", "4"], "--cpus-per-run 4"),
                                          (["--gpus-per-run", "1"], "--gpus-per-run 1")])
def test_ray_settings_with_the_local_executor_are_one_line_errors(command, flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        command.main(["--task", "trec", *flags, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {named} is a Ray setting, but --executor is local" in err
    assert not (tmp_path / "out").exists()


def test_executor_ray_without_ray_installed_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    with pytest.raises(SystemExit) as exc:
        mi.main(["--task", "trec", "--executor", "ray", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--executor ray needs the ray package" in err and "pip install" in err


def test_the_transformer_probe_on_ray_equals_local_and_leaves_no_scratch(data_dir, tmp_path, local_ray):
    """The sequence probe's layer states go through files in <out>/scratch (read memory-mapped
    by the worker processes, or put in Ray's object store), which are gone when the run ends;
    the pieces equal in both executors."""
    args = [*MI, "--data-dir", str(data_dir), "--probe", "transformer", "--probe-grid", "lr=1e-3", "--probe-seeds",
            "0", "--no-controls", "--no-mdl", "--probe-width", "16", "--max-examples", "30", "--probe-train-max",
            "30", "--probe-dev-size", "10"]
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert mi.main([*args, "--jobs", "2", "--out", str(local)]) == 0
    assert mi.main([*args, "--executor", "ray", "--out", str(remote)]) == 0
    assert not (local / "scratch").exists() and not (remote / "scratch").exists()
    assert files(local, ("pieces",)) == files(remote, ("pieces",))
    # 7 frozen + 4 from PL-1 on (the probe reads the prompt positions, which join hidden state PL-1)
    assert json.loads((local / "run.json").read_text())["pieces_fitted"] == 11
