"""Sweeps over methods, executors (local, Ray), failures, retries, resume and fsspec outputs,
on real TREC from ../shared/data with the embedded MiniLM (tiny settings)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lpt_probe.commands import sweep
from lpt_probe.runs.sweep import build_grid

pytestmark = pytest.mark.integration

GRID = ["--methods", "lpt,lora", "--prompt-layers", "2,4", "--seeds", "13,21", "--generators", "none"]


def small(data_dir, out) -> list[str]:
    return ["--task", "trec", "--data-dir", str(data_dir), "--shots", "20", "--dev-size", "20",
            "--max-examples", "60", "--steps", "2", "--eval-every", "1", "--out", str(out), "--no-progress"]


def block(out, cell: str):
    """Make a cell fail for real: a file where its run folder must go (an OSError each try)."""
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / cell).write_text("not a folder")
    (out / ".lpt_probe").write_text("{}")  # the sweep's own folder (a foreign one is refused: issue 34)


def stamps(out) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["utc_time"] for p in (out / "runs").glob("*/meta.json")}


def test_grid_has_one_cell_per_baseline_seed():
    cells = build_grid(["lpt", "lora", "prompt-tuning"], ["none", "npg"], [2, 4], [13, 21])
    names = [c.name for c in cells]
    assert len(names) == len(set(names)) == 2 * 2 * 2 + 2 + 2
    assert "npg-pl4-s21" in names and "lora-s13" in names and "prompt-tuning-s21" in names


def test_local_sweep_records_a_failure_retries_and_resumes(data_dir, tmp_path, monkeypatch):
    from lpt_probe.model import cache as cache_mod

    builds = []
    real_build = cache_mod.LowerLayerCache.build.__func__

    def counting_build(cls, backbone, data, layers, *a, **kw):
        builds.append(sorted(layers))
        return real_build(cls, backbone, data, layers, *a, **kw)

    monkeypatch.setattr(cache_mod.LowerLayerCache, "build", classmethod(counting_build))
    out = tmp_path / "local"
    block(out, "none-pl4-s21")
    assert sweep.main(small(data_dir, out) + GRID + ["--retries", "1"]) == 1  # one cell failed
    df = pd.read_csv(out / "sweep.csv")
    assert len(df) == 6 and (df.status == "complete").sum() == 5
    failed = df[df.status != "complete"].iloc[0]
    assert failed.run_dir == "runs/none-pl4-s21" and "after 2 attempts" in failed.error
    assert set(df.method) == {"lpt", "lora"} and df[df.method == "lora"].prompt_layer.isna().all()
    # the cache ran once per split for every prompt layer of the grid (hidden states 1 and 3)
    assert builds == [[1, 3]] * 3
    assert json.loads((out / "sweep.json").read_text())["failed"] == 1
    # rerun after fixing the cause: finished cells are collected, only the failed one trains
    before = stamps(out)
    (out / "runs" / "none-pl4-s21").unlink()
    builds.clear()
    assert sweep.main(small(data_dir, out) + GRID) == 0
    after = stamps(out)
    assert all(after[k] == v for k, v in before.items()) and "none-pl4-s21" in after
    assert builds == [[3]] * 3  # only the layer the remaining cell needs
    again = pd.read_csv(out / "sweep.csv")
    assert (again.status == "complete").all() and len(again) == 6
    pd.testing.assert_frame_equal(again[again.run_dir != "runs/none-pl4-s21"].reset_index(drop=True),
                                  df[df.status == "complete"].reset_index(drop=True), check_dtype=False)
    assert (out / "performance_vs_layer.pdf").exists() and (out / "convergence.pdf").exists()


def test_ray_sweep_equals_local_and_survives_a_failing_cell(data_dir, tmp_path):
    ray = pytest.importorskip("ray")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert sweep.main(small(data_dir, local) + GRID) == 0
    block(distributed, "lora-s21")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert sweep.main(small(data_dir, distributed) + GRID + ["--executor", "ray", "--retries", "1"]) == 1
        df = pd.read_csv(distributed / "sweep.csv")
        assert len(df) == 6 and (df.status == "complete").sum() == 5
        assert df.set_index("run_dir").loc["runs/lora-s21", "status"] == "failed"
        before = stamps(distributed)
        (distributed / "runs" / "lora-s21").unlink()
        assert sweep.main(small(data_dir, distributed) + GRID + ["--executor", "ray"]) == 0
        assert all(stamps(distributed)[k] == v for k, v in before.items())  # finished cells skipped
    finally:
        ray.shutdown()
    a, b = (pd.read_csv(d / "sweep.csv").sort_values("run_dir").reset_index(drop=True) for d in (local, distributed))
    assert list(a.run_dir) == list(b.run_dir)
    for col in ("dev_metric", "test_metric", "tunable_params", "best_step"):
        np.testing.assert_allclose(a[col], b[col], atol=1e-6, err_msg=col)
    ca, cb = (pd.read_csv(d / "curves.csv").sort_values(["method", "generator", "prompt_layer", "seed", "step"])
              for d in (local, distributed))
    np.testing.assert_allclose(ca.train_loss, cb.train_loss, rtol=1e-4)


def test_sweep_writes_to_an_fsspec_url(data_dir, tmp_path):
    url = (tmp_path / "remote").as_uri()  # file:///...: the fsspec code path, on local disk
    grid = ["--methods", "lpt,bitfit", "--prompt-layers", "3", "--seeds", "13"]
    assert sweep.main(small(data_dir, url) + grid) == 0
    remote = tmp_path / "remote"
    df = pd.read_csv(remote / "sweep.csv")
    assert (df.status == "complete").all() and len(df) == 2
    for cell in ("none-pl3-s13", "bitfit-s13"):
        meta = json.loads((remote / "runs" / cell / "meta.json").read_text())
        assert meta["status"] == "complete" and (remote / "runs" / cell / "prompt.safetensors").exists()
    assert (remote / "performance_vs_layer.pdf").exists()
    before = stamps(remote)
    assert sweep.main(small(data_dir, url) + grid) == 0  # resumes from the URL: nothing retrained
    assert stamps(remote) == before


def test_unknown_method_is_an_error_naming_the_known(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep.main(small(data_dir, tmp_path) + ["--methods", "lpt,nosuch"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --methods/--method: unknown 'nosuch'; choose from lpt, prompt-tuning" in err


@pytest.mark.parametrize("method", ["lora", "p-tuning-v2"])
def test_baseline_run_from_the_cli_reloads_into_a_predictor(method, data_dir, tmp_path, capsys):
    from lpt_probe.commands import train
    from lpt_probe.runs.predict import Predictor

    out = tmp_path / method
    assert train.main(["--task", "trec", "--method", method, "--shots", "20", "--dev-size", "20",
                       "--max-examples", "60", "--steps", "3", "--eval-every", "3", "--data-dir", str(data_dir),
                       "--out", str(out)]) == 0
    assert f"trec minilm {method}:" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["prompt"]["method"] == method and cfg["train"]["lr"] == (5e-4 if method == "lora" else 5e-3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["cache"] is False
    labels = Predictor.from_run(out).predict(["Who wrote Hamlet ?", "How far is the moon ?"])
    assert set(labels) <= {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
