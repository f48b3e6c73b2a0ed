"""Mid-run resume: the training state a run folder keeps while it trains.

``Trainer.fit`` hands over its whole state after each dev evaluation
(``Trainer.training_state``: step, trainable weights, optimizer and LR schedule, best
evaluation, curve, counters, random number generators); ``lpt_probe.runs.run.train``
writes it here, atomically, as ``resume/train_state.pt`` in the run folder, with the run's
content ``key``, ``RESUME_FORMAT``, the device type and the ``--save-every`` checkpoints
written so far (name -> sha256, as ``meta.json``'s ``files``). A rerun of an unfinished run
(``train``, a sweep cell, a ``section4`` study's sweep) reads it back with
:func:`read_state` and goes on with the batch after its step: the results are the
bytes an uninterrupted run writes (only the timing columns and fields differ). A state of
another key, format or device type, an unreadable one, or one whose checkpoints are gone or
changed is ignored with one log line, and the run starts over. It is removed when the run
completes, before ``meta.json`` says ``complete``; it is never a result (``check_run``
looks at ``meta.json`` only).

The file is ``torch.save`` of plain types and tensors only, read with
``torch.load(weights_only=True)``: loading it runs no pickled code. What it holds is
:func:`training_state`; :func:`restore_state` puts it back (``Trainer.fit`` calls both).
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import store

logger = logging.getLogger(__name__)
STATE_FILE = "resume/train_state.pt"  # inside the run folder, while the run trains
RESUME_FORMAT = 1
CHECKPOINT = re.compile(r"checkpoints/step-[0-9]+\.safetensors")  # the only files a state may list


def write_state(run_dir: Path, state: dict[str, Any], key: str, files: dict[str, str]) -> Path:
    """``state`` (``Trainer.training_state``) with the run's ``key`` and the checkpoint
    ``files`` written so far, atomically into ``run_dir``."""
    buf = io.BytesIO()
    torch.save({**state, "format": RESUME_FORMAT, "key": key, "files": dict(files)}, buf)
    return store.atomic_write_bytes(Path(run_dir) / STATE_FILE, buf.getvalue())


def _problem(run_dir: Path, state: Any, key: str, device: str) -> str | None:
    """Why ``state`` cannot resume the run ``key`` on ``device``; None when it can."""
    if not isinstance(state, dict):
        return "it is not a training state"
    if state.get("format") != RESUME_FORMAT:
        return f"its format is {state.get('format')!r}, not {RESUME_FORMAT}"
    if state.get("key") != key:
        return "it belongs to a run of other settings, data or model weights"
    if state.get("device") != torch.device(device).type:
        return f"it was trained on {state.get('device')!r}, this run trains on {torch.device(device).type!r}"
    missing = [k for k in ("step", "weights", "optimizer", "scheduler", "best", "curve", "tokens", "train_time",
                           "dev_steps", "dev_correct", "stale", "rng", "files") if k not in state]
    if missing:
        return f"it lacks {', '.join(missing)}"
    files = state["files"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and CHECKPOINT.fullmatch(k) and isinstance(v, str)
                                              for k, v in files.items()):
        return "its list of checkpoints is damaged"
    for name, digest in files.items():
        path = run_dir / name
        if not path.is_file():
            return f"its checkpoint {name} is missing"
        if store.file_sha256(path) != digest:
            return f"its checkpoint {name} changed since (its sha256 differs)"
    return None


def read_state(run_dir: str | Path | None, key: str, device: str) -> dict[str, Any] | None:
    """The training state an unfinished run in ``run_dir`` left, when it resumes the run
    ``key`` on ``device``; else None (with one log line when a state was there)."""
    if run_dir is None:
        return None
    run_dir = Path(run_dir)
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        problem = _problem(run_dir, state, key, device)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises whatever its reader meets
        problem = f"it cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    if problem:
        logger.info("%s: not resumed from %s: %s; training starts over", run_dir, STATE_FILE, problem)
        return None
    return state


def remove_state(run_dir: str | Path | None) -> None:
    """Remove the training state (and its folder, once empty)."""
    if run_dir is None:
        return
    path = Path(run_dir) / STATE_FILE
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # not empty (a stray temporary file), or gone
        pass


def training_state(model, device: torch.device, step: int, opt, sched, best: dict, rows: list[dict], tokens: int,
                   train_time: float, dev_steps: list[int], dev_correct: list[np.ndarray],
                   stale: int) -> dict[str, Any]:
    """What ``Trainer.fit`` needs to go on after ``step`` as if it had not stopped, as plain
    types and tensors: the trainable weights, the optimizer's and LR schedule's state, the
    best evaluation so far (its weights and its evaluation, ``preds`` as a tensor), the curve
    rows, the counters and the random number generators' state: torch's CPU generator, and
    the device's for CUDA (dropout in the generators and, with ``backbone_dropout``, in the
    frozen layers draws from them). Nothing in a step uses numpy's or Python's global
    generators, and the batch order is a pure function of the seed, so neither is kept."""
    ev = best.get("eval")
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "step": int(step), "weights": model.trainable_state_dict(),
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "best": {"metric": float(best["metric"]), "step": int(best["step"]), "state": best["state"],
                 "eval": None if ev is None else {
                     "metric": float(ev["metric"]), "accuracy": float(ev["accuracy"]), "loss": float(ev["loss"]),
                     "logits": ev["logits"], "preds": torch.from_numpy(np.asarray(ev["preds"]).copy())}},
        "curve": [dict(r) for r in rows], "tokens": int(tokens), "train_time": float(train_time),
        "dev_steps": [int(s) for s in dev_steps],
        "dev_correct": (torch.from_numpy(np.stack(dev_correct)) if dev_correct
                        else torch.zeros(0, 0, dtype=torch.uint8)),  # [evaluations, n_dev]
        "stale": int(stale), "rng": rng, "device": device.type}


def check_fits(model, state: dict[str, Any]) -> str | None:
    """Why ``state``'s weights cannot go into ``model`` (names or shapes differ); None when
    they can. A state of the run's key always fits unless the file was edited."""
    own = {n: p.shape for n, p in model.trainable_named_parameters()}
    for part, weights in (("weights", state["weights"]), ("best weights", state["best"]["state"])):
        if not isinstance(weights, dict) or set(weights) != set(own) or any(
                not isinstance(weights[n], torch.Tensor) or weights[n].shape != own[n] for n in own):
            return f"its {part} do not fit this model"
    groups = state["optimizer"].get("param_groups") if isinstance(state["optimizer"], dict) else None
    if not isinstance(groups, list) or sum(len(g.get("params", ())) for g in groups) != len(own):
        return "its optimizer state does not fit this model"
    return None


def restore_state(model, device: torch.device, state: dict[str, Any], opt, sched) -> tuple:
    """Put a :func:`training_state` back into ``model``, ``opt``, ``sched`` and the random
    number generators; returns ``fit``'s bookkeeping (step, best, rows, tokens, train time,
    dev steps, dev correctness, stale)."""
    with torch.no_grad():
        for name, p in model.trainable_named_parameters():
            p.copy_(state["weights"][name])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    saved = state["best"]
    best = {"metric": saved["metric"], "step": saved["step"], "state": saved["state"]}
    if saved["eval"] is not None:
        best["eval"] = {**saved["eval"], "preds": saved["eval"]["preds"].numpy()}
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    correct = [row.numpy() for row in state["dev_correct"]]
    return (state["step"], best, [dict(r) for r in state["curve"]], state["tokens"], state["train_time"],
            list(state["dev_steps"]), correct, state["stale"])
