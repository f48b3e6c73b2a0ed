"""What a custom task's YAML must hold, and the name of its default output folder.

``load_custom_task`` (``lpt_probe.data.sources``) reads a user's YAML; :func:`check_custom_task`
checks each key's type first, so a mistyped YAML (``labels: 5``, ``train: [a.csv]``,
``labels: np``) is one ``TaskError`` line naming the key and what it must be, never a
``TypeError`` from deep inside, nor a string split into characters. :func:`task_slug` names a
task in default output folders (``artifacts/runs/<slug>/...``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TaskError", "check_custom_task", "is_task_file", "task_slug"]


def is_task_file(task: str | Path) -> bool:
    """A custom task given as its YAML file (see ``load_custom_task``)."""
    return str(task).lower().endswith((".yaml", ".yml"))


class TaskError(ValueError):
    """A custom task's YAML (or keyword) that cannot describe a task: one line naming the key."""


def _is_name(v) -> bool:
    return isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() != ""


def check_custom_task(cfg: dict[str, Any], path: Path) -> None:
    """Each key of a custom task of the type it must have, else ``TaskError`` naming it."""
    def bad(key: str, want: str) -> TaskError:
        return TaskError(f"custom task {path}: {key} is {cfg[key]!r}, expected {want}; see the custom-task example "
                         f"in the README")

    for key in ("train", "dev", "test"):
        if cfg.get(key) is not None and not (isinstance(cfg[key], str) and cfg[key].strip()):
            raise bad(key, "one file path (a CSV, TSV or JSONL file, relative to the YAML's folder)")
    cols = cfg["text_columns"]
    cols = [cols] if isinstance(cols, str) else cols
    if (not isinstance(cols, (list, tuple)) or not 1 <= len(cols) <= 2
            or not all(isinstance(c, str) and c for c in cols)):
        raise bad("text_columns", "one or two column names, e.g. [text] or [premise, hypothesis]")
    labels = cfg["labels"]
    if not isinstance(labels, (list, tuple)) or len(labels) < 2 or not all(_is_name(v) for v in labels):
        raise bad("labels", "a list of at least two label values, e.g. [neg, pos]")
    if len({str(v) for v in labels}) != len(labels):
        raise bad("labels", "a list of distinct label values")
    for key in ("mlm_label_words", "clm_label_words"):
        words = cfg.get(key)
        if words is not None and (not isinstance(words, (list, tuple)) or len(words) != len(labels)
                                  or not all(_is_name(w) for w in words)):
            raise bad(key, f"a list of {len(labels)} words, one per label")
    for key in ("name", "mlm_template", "clm_template", "metric", "label_column"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise bad(key, "a string")


def task_slug(task: str | Path) -> str:
    """A task's part of a default output folder: a registered task's name, or for a custom
    task's YAML its ``name`` (else the file's stem) and 8 hex digits of the sha256 of the
    file's resolved path and bytes, so two different task files (both ``task.yaml`` in two
    folders, or one edited) never share a default folder."""
    if not is_task_file(task):
        return Path(str(task)).stem
    path = Path(task)
    try:
        text = path.read_bytes()
    except OSError:
        text = b""
    name = path.stem
    try:
        loaded = yaml.safe_load(text)
        if isinstance(loaded, dict) and isinstance(loaded.get("name"), str) and loaded["name"].strip():
            name = loaded["name"]
    except (yaml.YAMLError, ValueError):  # load_custom_task reports what is wrong with it
        pass
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "task"
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8") + b"\0" + text).hexdigest()[:8]
    return f"{safe}-{digest}"
