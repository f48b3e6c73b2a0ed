"""Small, dependency-light helpers for writing results safely.

Every result file is written atomically (to a temporary file in the same folder, then
renamed), so a crash never leaves a half-written file that looks complete. ``run_meta``
collects the facts every run folder records in ``meta.json``.

Output locations may also be fsspec URLs (``s3://bucket/sweeps``, ``gs://...``,
``file:///shared/disk``; install the matching fsspec backend, e.g. ``s3fs``), so the cells
of a distributed sweep can write to storage every node sees. A URL file is written in
one put (atomic on object stores); a run folder is uploaded with its ``meta.json`` last,
so it reads as complete only once everything else is there. ``join``, ``exists``,
``read_json`` and the ``write_*`` helpers take either form.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

_PACKAGES = ("lpt_probe", "torch", "transformers", "datasets", "scikit-learn", "numpy", "pandas")


def is_url(path: Any) -> bool:
    """True for an fsspec URL (``scheme://...``), False for a local path."""
    return isinstance(path, str) and "://" in path


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """``base / parts``: a ``Path`` for local paths, a ``/``-joined string for URLs."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return Path(base).joinpath(*parts)


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)  # (filesystem, path inside it)


def exists(path: str | os.PathLike) -> bool:
    if is_url(path):
        fs, inner = _fs(path)
        return fs.exists(inner)
    return Path(path).exists()


def upload_dir(local: str | os.PathLike, url: str, last: str = "meta.json") -> None:
    """Copy a local folder's files to ``url``, the file named ``last`` after all others."""
    fs, inner = _fs(url)
    local = Path(local)
    files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: p.name == last)
    for f in files:
        target = "/".join([inner.rstrip("/"), *f.relative_to(local).parts])
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(f), target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path | str:
    """Write ``data`` to ``path`` atomically (tmp file + ``os.replace``; one put for URLs)."""
    if is_url(path):
        fs, inner = _fs(path)
        fs.makedirs(inner.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(inner, data)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    if is_url(path):
        fs, inner = _fs(path)
        return json.loads(fs.cat_file(inner).decode("utf-8"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_csv(path: str | os.PathLike):
    """A CSV as a pandas DataFrame, from a local path or a URL."""
    import pandas as pd

    if is_url(path):
        fs, inner = _fs(path)
        with fs.open(inner, "rb") as f:
            return pd.read_csv(f)
    return pd.read_csv(path)


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV atomically."""
    return atomic_write_text(path, frame.to_csv(index=False))


def fingerprint(ids: Iterable[Any]) -> str:
    """A short, order-sensitive hash of example ids: names exactly the data a result saw."""
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_state(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit and dirty flag of the checkout holding this package, if any."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd, capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def package_versions(names: Iterable[str] = _PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_meta(**extra: Any) -> dict[str, Any]:
    """The facts every run folder's ``meta.json`` records, plus ``extra``."""
    meta = {
        "utc_time": utc_now(),
        "git": git_state(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    meta.update(extra)
    return meta
