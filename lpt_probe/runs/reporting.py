"""Experiment logging for training runs: ``--report-to tensorboard,wandb,mlflow``.

A run logs each dev evaluation as it happens (``train/loss``, ``dev/metric``, ``dev/loss``,
``train/lr`` at its step) and, at the end, ``test/metric`` and ``test/accuracy``, to every
tracker named, through each library's own client:

- ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` package),
  event files in ``<run folder>/tensorboard/`` (``tensorboard --logdir`` on the folder of a
  sweep shows every cell), or ``runs/<name>`` when the run has no folder;
- ``wandb``: ``wandb.init(project=$WANDB_PROJECT or "lpt_probe", name=..., config=...)``;
- ``mlflow``: ``mlflow.start_run(run_name=...)`` with the run's settings as parameters.

Where results go does not change what is computed: ``report_to`` is not part of a run's key.
A tracker whose package is not installed is a one-line error naming it, before training.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Mapping

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def parse_report_to(value: str | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` -> ("tensorboard", "wandb"); "" / None / "none" -> (); an
    unknown or uninstalled tracker is an error naming it and the fix."""
    names = tuple(v.strip() for v in (value or "").split(",") if v.strip() and v.strip() != "none")
    for name in names:
        if name not in PACKAGES:
            raise ValueError(f"--report-to {value!r}: unknown tracker {name!r}; choose from "
                             f"{', '.join(PACKAGES)} (comma-separated)")
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ValueError(f"--report-to {name} needs the {PACKAGES[name]} package, which is not installed: "
                             f"pip install {PACKAGES[name]}")
    if len(set(names)) != len(names):
        raise ValueError(f"--report-to {value!r} names a tracker twice")
    return names


def _tensorboard(name: str, folder: Path | None, config: Mapping[str, Any]):
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package: loaded only when asked

    writer = SummaryWriter(log_dir=str(folder / "tensorboard" if folder is not None else Path("runs") / name))
    writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(config.items())))
    return (lambda metrics, step: [writer.add_scalar(k, v, step) for k, v in metrics.items()]), writer.close


def _wandb(name: str, folder: Path | None, config: Mapping[str, Any]):
    import wandb  # optional tracker

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lpt_probe"), name=name, config=dict(config),
                     dir=str(folder) if folder is not None else None, reinit=True)
    return (lambda metrics, step: run.log(dict(metrics), step=step)), run.finish


def _mlflow(name: str, folder: Path | None, config: Mapping[str, Any]):
    import mlflow  # optional tracker

    mlflow.start_run(run_name=name)
    mlflow.log_params({k: str(v)[:250] for k, v in config.items()})
    return (lambda metrics, step: mlflow.log_metrics(dict(metrics), step=step)), mlflow.end_run


OPENERS = {"tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


class Reporter:
    """The trackers of one run: ``log(metrics, step)`` to each, ``close()`` once."""

    def __init__(self, names: tuple[str, ...], name: str, folder: Path | None, config: Mapping[str, Any]):
        self._sinks: list[tuple[Callable, Callable]] = [OPENERS[n](name, folder, config) for n in names]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for log, _ in self._sinks:
            log(metrics, step)

    def log_evaluation(self, row: Mapping[str, Any]) -> None:
        """One row of ``curve.csv`` (a dev evaluation) at its step."""
        self.log({"train/loss": row["train_loss"], "dev/metric": row["dev_metric"], "dev/loss": row["dev_loss"],
                  "train/lr": row["lr"]}, int(row["step"]))

    def close(self) -> None:
        for _, close in self._sinks:
            close()
        self._sinks = []
