"""Hostile inputs (issue 24) that need the real task files in ../shared/data: a device this
machine does not have, LPT_PROBE_DATA_DIR read by the library and every command, an emptied
class file. The rest, on synthetic tasks, is in tests/unit/test_hostile_inputs.py."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from test_hostile_inputs import ENV, TINY, one_line_error, refused, status

from lpt_probe.commands import mi, train
from lpt_probe.model.loading import resolve_device
from lpt_probe.runs.trainer import TrainConfig


# -- 6. devices this machine does not have -----------------------------------------------------------
def test_unknown_or_missing_devices_are_one_line(tmp_path, capsys, data_dir):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert TrainConfig(device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="--device 'tpu' is not a device; choose cpu, cuda"):
        TrainConfig(device="tpu")
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    base = ["--task", "trec", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"), "--quiet"]
    refused(train.main, [*base, "--device", missing], capsys, f"--device {missing}: ", "--device cpu"
            if not torch.cuda.is_available() else "give one of those")
    refused(mi.main, [*base, "--device", "tpu"], capsys, "--device 'tpu' is not a device")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "-m", "lpt_probe.train", *base, "--device", "tpu"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "--device 'tpu' is not a device")


# -- 6. one-line errors: LPT_PROBE_DATA_DIR (YAML types: tests/unit/test_hostile_inputs.py) -------------
def test_lpt_probe_data_dir_is_read_by_the_library_and_every_command(tmp_path, capsys, monkeypatch, data_dir):
    from lpt_probe.data.sources import load_task

    monkeypatch.setenv("LPT_PROBE_DATA_DIR", str(data_dir))
    data = load_task("trec", shots=8, dev_size=8, max_examples=50)
    assert data.source == "local" and all(str(data_dir) in f for f in data.info["files"])
    out = tmp_path / "run"
    assert train.main(["--task", "trec", *TINY, "--max-examples", "60", "--device", "cpu", "--out", str(out),
                       "--quiet"]) == 0
    assert status(out) == "complete"
    capsys.readouterr()  # its warnings (a rare label capped away)
    monkeypatch.setenv("LPT_PROBE_DATA_DIR", str(tmp_path / "nowhere"))
    refused(mi.main, ["--task", "trec", "--steps", "1", "--eval-every", "1", "--out", str(tmp_path / "mi"),
                      "--quiet"], capsys, f"LPT_PROBE_DATA_DIR={tmp_path / 'nowhere'}: no such folder",
            "pass --data-dir, or unset it")
    assert not (tmp_path / "mi").exists()


def test_an_empty_class_file_is_refused_not_scored(tmp_path, data_dir, capsys):
    mr = tmp_path / "data" / "mr"
    mr.mkdir(parents=True)
    shutil.copy(data_dir / "mr" / "rt-polarity.pos", mr / "rt-polarity.pos")
    (mr / "rt-polarity.neg").write_bytes(b"")  # emptied: every row left is positive
    refused(train.main, ["--task", "mr", "--data-dir", str(tmp_path / "data"), *TINY, "--out", str(tmp_path / "r"),
                         "--quiet"], capsys, "only 1 of 2 labels have training rows", "empty or missing class file")
    assert not (tmp_path / "r").exists()
