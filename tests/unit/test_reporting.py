"""``--report-to``: a run logs its dev evaluations and test metric to trackers (TensorBoard,
offline here), the setting is not part of the run's key, and a tracker that is unknown or
not installed is a one-line error before training (tiny random BERT, toy task)."""

from __future__ import annotations

import importlib.util

import pytest
from test_adapters import tiny_bundle, toy_task  # noqa: F401 (fixture)

from lpt_probe.model.late_prompt import LatePromptConfig
from lpt_probe.runs import reporting
from lpt_probe.runs.folders import check_run
from lpt_probe.runs.run import train
from lpt_probe.runs.trainer import TrainConfig


def config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10,
                       batch_size=8, steps=6, eval_every=2, **kw)


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder)).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="the dev extras install tensorboard")
def test_tensorboard_gets_every_evaluation_and_the_test_metric(tiny_bundle, tmp_path):  # noqa: F811
    res = train(LatePromptConfig(prompt_layer=3), config(tmp_path, report_to="tensorboard"), tmp_path / "run",
                bundle=tiny_bundle, progress=False)
    logged = scalars(tmp_path / "run" / "tensorboard")
    curve = res.curve
    assert [s for s, _ in logged["dev/metric"]] == list(curve["step"]) == [2, 4, 6]
    assert [v for _, v in logged["dev/metric"]] == pytest.approx(list(curve["dev_metric"]))
    assert [v for _, v in logged["train/loss"]] == pytest.approx(list(curve["train_loss"]))
    assert logged["test/metric"] == [(6, pytest.approx(res.metrics["test_metric"]))]
    # where it reports is not part of what was computed: the same run without it is reused
    again = train(LatePromptConfig(prompt_layer=3), config(tmp_path), tmp_path / "run", bundle=tiny_bundle,
                  progress=False)
    assert again.key == res.key and check_run(tmp_path / "run", res.key)[0]


def test_unknown_or_missing_trackers_are_one_line_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown tracker 'tensorbored'; choose from tensorboard, wandb, mlflow"):
        config(tmp_path, report_to="tensorbored")
    monkeypatch.setattr(reporting.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="--report-to wandb needs the wandb package.*pip install wandb"):
        config(tmp_path, report_to="wandb")
    assert reporting.parse_report_to(None) == reporting.parse_report_to("none") == ()
