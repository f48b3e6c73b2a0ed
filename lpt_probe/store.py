"""Results on disk: atomic files, readable JSON errors, content keys, locks, run facts.

Every result file is written atomically (a temporary file unique to the writer, then
renamed; the user's umask), so a crash never leaves a half-written file that looks
complete; a damaged JSON or a full disk is an error naming the file and what to do.
``content_key`` hashes everything that determines a result; ``OutputLock`` keeps two
commands from writing one folder (``lpt_probe.outputs.ResumableOutput`` builds on it);
``run_meta`` collects what ``meta.json`` records. Locations may be fsspec URLs (``s3://``,
``gs://``; a file in one put; folders are uploaded by ``lpt_probe.outputs.upload_dir``)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

logger = logging.getLogger(__name__)
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


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it: set, then restore
    os.umask(mask)
    return mask


class DiskFull(OSError):
    """No space left (or the quota is used up) on the disk an output goes to."""


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _no_space_message(path: Path, size: int) -> str:
    folder = path.parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f"{human_bytes(shutil.disk_usage(probe).free)} free"
    except OSError:
        free = "free space unknown"
    return (f"no space left on the disk holding {folder} ({free}) while writing {path.name} "
            f"({human_bytes(size)}); free some space there or write to another folder (--out)")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path | str:
    """Write ``data`` to ``path`` atomically (a temporary file unique to this writer, then
    ``os.replace``; one put for URLs). The file gets the user's umask, like ``open``. A full
    disk (or quota) raises ``DiskFull``, naming the folder and its free space."""
    if is_url(path):
        fs, inner = _fs(path)
        fs.makedirs(inner.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(inner, data)
        return path
    path = Path(path)
    try:
        _write_local(path, data)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise DiskFull(_no_space_message(path, len(data))) from None
        raise
    return path


def _write_local(path: Path, data: bytes) -> None:
    with atomic_file(path, len(data)) as f:
        f.write(data)

@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, size: int = 0) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` (``size`` zero bytes, open for writing at any offset),
    synced and renamed to ``path`` when the block ends, removed on an error; a full disk
    raises ``DiskFull``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
        with os.fdopen(fd, "w+b") as f:
            if size:
                f.truncate(size)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise DiskFull(_no_space_message(path, size)) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_status(path: str | os.PathLike, meta: dict) -> bool:
    """Write a ``failed`` / ``interrupted`` status file (``meta.json``, ``run.json``) on the way
    out of an error. When even that cannot be written (a full disk), warn and return False
    instead of hiding the error being reported: the file then still says ``running``, which
    is redone on the next run all the same."""
    try:
        write_json(path, meta)
    except OSError as exc:
        logger.warning("could not mark %s %r (%s); it still says 'running', which the next run redoes as well",
                       path, meta.get("status"), exc)
        return False
    return True


class DamagedFile(ValueError):
    """A result file that cannot be read (truncated, edited by hand, not JSON)."""


def damaged(path, reason: str) -> DamagedFile:
    """The error for a result file that cannot be used: names it, why, and what to do."""
    folder = str(path).rsplit("/", 1)[0] if is_url(path) else Path(path).parent
    return DamagedFile(f"{path} is damaged ({reason}); delete {folder} and rerun the command that "
                       f"wrote it")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file, local or URL; a damaged one raises ``DamagedFile`` naming it."""
    try:
        if is_url(path):
            fs, inner = _fs(path)
            return json.loads(fs.cat_file(inner).decode("utf-8"))
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise damaged(path, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise damaged(path, f"not UTF-8 text: {e.reason} at byte {e.start}") from None


def read_json_object(path: str | os.PathLike) -> dict:
    """``read_json`` that also insists on a JSON object (what every result file holds)."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise damaged(path, f"expected a JSON object, found {type(obj).__name__}")
    return obj


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


def content_key(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace): the identity of
    everything that determines a result. Floats keep their repr, so 1e-3 and 0.001 agree."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (local or URL)."""
    h = hashlib.sha256()
    if is_url(path):
        fs, inner = _fs(path)
        f = fs.open(inner, "rb")
    else:
        f = open(path, "rb")
    with f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class FolderBusy(RuntimeError):
    """Another command holds the lock of an output folder."""


class OutputLock:
    """An exclusive lock on an output folder (``<folder>/.lock``, ``filelock.FileLock``).

    A second command on the same folder does not wait forever or corrupt it: it refuses
    with ``FolderBusy`` after ``timeout`` seconds. URLs (object stores) are not locked. A
    command that fails before writing anything leaves no trace: the lock file, and the
    folders the lock made, are removed again when nothing else was written into them."""

    def __init__(self, folder: str | os.PathLike, timeout: float = 0.0):
        self.folder, self.timeout, self._lock = folder, timeout, None
        self._made: list[Path] = []  # folders this lock created, innermost first
        self._made_lock_file = False

    def __enter__(self) -> "OutputLock":
        if is_url(self.folder):
            return self
        from filelock import FileLock, Timeout

        folder = Path(self.folder)
        self._made = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self._made_lock_file = not (folder / ".lock").exists()
        self._lock = FileLock(str(folder / ".lock"), mode=0o666 & ~_umask())
        try:
            self._lock.acquire(timeout=self.timeout)
        except Timeout:
            self._made, self._made_lock_file = [], False  # the other command's folder: leave it
            raise FolderBusy(f"{folder} is in use by another lpt_probe command (lock file {folder / '.lock'}); "
                             f"wait for it to finish or write to another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is None:
            return
        folder = Path(self.folder)
        lock_file = folder / ".lock"
        try:
            if self._made_lock_file and [p.name for p in folder.iterdir()] == [".lock"]:
                lock_file.unlink()  # still holding it: nobody else can be writing here
        except OSError:
            pass
        self._lock.release()
        for made in self._made:  # innermost first; a folder that holds anything stays
            try:
                made.rmdir()
            except OSError:
                break


def read_json_cache(path: str | os.PathLike) -> dict:
    """The JSON object of a cache file, or {} when it is missing, unreadable or damaged (not
    a JSON object): a cache that starts over only costs work again."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def merge_json(path: str | os.PathLike, entries: dict, timeout: float = 30.0) -> bool:
    """Add ``entries`` to the JSON object in ``path`` under a lock (``<path>.lock``), keeping
    what another process wrote since this one read it. False (and nothing written) when the
    file cannot be locked or written: callers use it for caches, where that only costs work."""
    from filelock import FileLock, Timeout

    path = Path(path)
    try:
        with FileLock(str(path) + ".lock", mode=0o666 & ~_umask(), timeout=timeout):
            atomic_write_text(path, json.dumps({**read_json_cache(path), **entries}, indent=1, sort_keys=True))
    except (OSError, Timeout):
        return False
    return True


def check_output_folder(path: str | os.PathLike, flag: str = "--out") -> None:
    """A clear one-line error when ``path`` cannot be an output folder: ``NotADirectoryError``
    (a file is in the way) or ``PermissionError`` (not writable)."""
    if is_url(path):
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{flag} {p}: a file of that name exists; give a folder path")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{flag} {p}: {probe} is a file, so the folder cannot be made; give another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {p}: {probe} is not writable by this user; give a folder you can write")


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

