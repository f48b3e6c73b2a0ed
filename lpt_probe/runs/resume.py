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
``torch.load(weights_only=True)``: loading it runs no pickled code.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

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
        logger.info("%s: not resumed from %s: %s; training starts over", run_dir, path.name, problem)
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
