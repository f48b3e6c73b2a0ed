"""A resumable output folder: the one context manager of ``run``, ``sweep``, ``mi``, ``influence``.

``ResumableOutput`` checks the folder, holds its lock (a
second command refuses), sets aside the outputs this invocation rebuilds (removed when it
finishes, put back if it fails: an error found after the start costs no earlier table) and
keeps a status
file (``meta.json`` of a run, ``sweep.json``, ``run.json`` of a study) that says
``running`` before any other output is written, and ``complete`` only last, after every
file; an error marks it ``failed`` and Ctrl-C ``interrupted``, with the error. So an
unfinished folder is never mistaken for a result, and rerunning the command redoes it.

Only folders the toolkit owns are written into: ``start`` leaves a marker file
(``.lpt_probe``) in the folder, and ``ResumableOutput`` refuses (``ForeignFolder``, one
line) a folder that holds files but neither the marker nor a status file lpt_probe wrote
(folders from before the marker), unless ``overwrite=True`` (the commands' ``--overwrite``):
a model folder or a user's results are never replaced by a mistyped ``--out``. A new or
empty folder is always fine. A status file that says ``running`` while nobody holds the lock
(its command was killed) is reported (:func:`stale_status`) and marked ``interrupted`` by the
next command; :func:`check_url` turns an output URL that cannot be written into one line.

One output layer for every command: ``--out`` is a local folder or an fsspec URL
(``s3://``, ``gs://``, ``memory://``, ``file://``). A command whose ``--out`` is a URL
computes in a local folder and uploads it when it finishes (:func:`staged`, through
:func:`upload_dir`: the status file removed at the URL first and put last, so the URL
never shows ``complete`` beside half-replaced files). ``train``, ``mi``, ``influence`` and
``section4`` stage in :func:`staging_dir` (``$LPT_PROBE_STAGING``, default
``~/.cache/lpt_probe/staging/``), a folder keyed by the URL that is kept: a rerun after a
crash resumes there, and a rerun of a finished study only uploads it again. ``project`` and
``figures`` draw into a temporary folder. ``sweep`` writes its tables to the URL itself,
each cell trained in a temporary folder and uploaded (``runs.executors``).

Figures go into folders that often hold other files (a paper's ``figs/``, ``docs/figures``),
so :func:`publish_files` refuses only to *replace* a file lpt_probe did not write: a folder's
marker either owns the whole folder (every command's own output folder) or lists the files
``figures`` wrote there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import fsspec
from filelock import FileLock, Timeout

from . import store

__all__ = ["ResumableOutput", "ForeignFolder", "MARKER", "STAGING_ENV", "check_owned", "check_url", "mark_owned",
           "publish_files", "stale_status", "staged", "staging_dir", "upload_dir"]
logger = logging.getLogger(__name__)
MARKER = ".lpt_probe"  # in every output folder the toolkit writes: the folder is its to replace
STAGING_ENV = "LPT_PROBE_STAGING"  # where URL outputs are computed before the upload


class ForeignFolder(ValueError):
    """An output folder that holds files lpt_probe did not write."""


def check_url(url: str, flag: str = "--out", local_only: bool = False) -> None:
    """One ``ValueError`` line for an output URL that cannot be written: the function writes a
    local folder only (``local_only``: the Python API of a command that stages URLs), or no
    installed fsspec filesystem serves the URL (the error names the package to install).
    Local paths pass."""
    if not store.is_url(url):
        return
    if local_only:
        raise ValueError(f"{flag} {url}: this function writes a local folder only; give a local path, or call it "
                         f"inside lpt_probe.outputs.staged({url!r}), which uploads the folder (the commands do)")
    try:
        fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{flag} {url}: {' '.join(str(exc).split())}; install the filesystem of that URL "
                         f"(pip install it), or give a local folder") from None


def stale_status(out: str | Path, status_file: str) -> str | None:
    """A note when ``out``'s status file says ``running`` but no command holds the folder's
    lock: the command that wrote it ended without marking it (SIGKILL, ``timeout``, a power
    cut; the lock dies with its process). None otherwise, and for URLs. Writes nothing."""
    if store.is_url(out) or not (Path(out) / status_file).is_file():
        return None
    if store.read_json_cache(Path(out) / status_file).get("status") != "running":
        return None
    lock = Path(out) / ".lock"
    if lock.exists():
        held = FileLock(str(lock))
        try:
            held.acquire(timeout=0)
        except Timeout:
            return None  # a command is at work there now
        held.release()
    return (f"{Path(out) / status_file} says 'running', but no command is at work there: the command that wrote it "
            f"ended without marking it (killed, or timed out); it counts as interrupted and is resumed")


def _ours(status: Path) -> bool:
    """Whether ``status`` is a status file lpt_probe wrote (before folders had the marker)."""
    meta = store.read_json_cache(status)
    return "status" in meta and "lpt_probe" in (meta.get("versions") or {})


def check_owned(out: str | Path, status_file: str | None, overwrite: bool = False, flag: str = "--out",
                fix: str = "--overwrite", own_files: tuple[str, ...] = ()) -> None:
    """Refuse (``ForeignFolder``) a non-empty local folder that lpt_probe does not own: no
    ``MARKER`` and no status file it wrote (``status_file`` None: a command without one;
    ``own_files``: the names such a command writes, so a folder holding only those is one it
    wrote before the marker). ``overwrite``: write into it anyway."""
    if overwrite or store.is_url(out) or not Path(out).is_dir():
        return
    out = Path(out)
    names = sorted(p.name for p in out.iterdir() if p.name not in (".lock", MARKER))
    listed = store.read_json_cache(out / MARKER).get("files") if (out / MARKER).exists() else None
    if (out / MARKER).exists() and not isinstance(listed, list):  # the marker owns the whole folder
        return
    names = [n for n in names if n not in (listed or [])]  # a figures marker owns the files it lists
    if not names or (status_file and _ours(out / status_file)):
        return
    if own_files and set(names) <= set(own_files):
        return
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise ForeignFolder(f"{flag} {out}: the folder holds files lpt_probe did not write ({shown}) and no {MARKER} "
                        f"marker, so it is not replaced; give a new or empty folder, or {fix} to write into it "
                        f"anyway")


def _transient(name: str) -> bool:
    """A file that only matters on this machine while a command runs: a lock, a temporary
    file of an atomic write, an output set aside until its command finishes."""
    return name == ".lock" or name.endswith(".lock") or (name.startswith(".") and name.endswith((".tmp", ".previous")))


def upload_dir(local: str | os.PathLike, url: str, last: str | None = "meta.json") -> None:
    """Copy a local folder's files to ``url``, the file named ``last`` (the status file) after
    all others and removed there first, so the URL never shows an earlier ``complete`` beside
    files half replaced. Locks and temporary files are left behind."""
    fs, inner = fsspec.core.url_to_fs(url)
    local = Path(local)
    files = sorted((p for p in local.rglob("*") if p.is_file() and not _transient(p.name)),
                   key=lambda p: p == local / str(last))
    if last is not None and (local / last).is_file():
        target = "/".join([inner.rstrip("/"), last])
        if fs.exists(target):
            fs.rm(target)
    for f in files:
        target = "/".join([inner.rstrip("/"), *f.relative_to(local).parts])
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(f), target)


def mark_owned(folder: str | Path, **facts: Any) -> None:
    """Leave the marker in a local ``folder`` (kept when it owns the folder already; one that
    lists the files ``figures`` wrote becomes one that owns the folder, which the command
    checked with :func:`check_owned`): the folder is lpt_probe's to replace."""
    folder = Path(folder)
    marker = folder / MARKER
    if not marker.exists() or isinstance(store.read_json_cache(marker).get("files"), list):
        store.write_json(marker, {"written_by": "lpt_probe", **facts})


def publish_files(folder: str | Path, names: list[str], out: str | Path, overwrite: bool = False,
                  flag: str = "--out") -> list[Path | str]:
    """Put the files ``names`` (relative to ``folder``, where a command drew them) into
    ``out``, a folder that may hold other files; returns where they went, in order. A URL
    gets them uploaded. A local folder gets them only when none would replace a file lpt_probe
    did not write (``ForeignFolder``, one line, nothing written, unless ``overwrite``): its
    marker owns the whole folder (a command's output folder), or lists the files written
    there before, and a new file replaces nothing. The marker then lists these files too
    (a folder owned whole stays so)."""
    folder = Path(folder)
    if store.is_url(out):
        check_url(str(out), flag)
        for name in names:
            store.atomic_write_bytes(store.join(out, name), (folder / name).read_bytes())
        return [store.join(out, name) for name in names]
    out = Path(out)
    marker = out / MARKER
    facts = store.read_json_cache(marker) if marker.exists() else None  # None: no marker
    listed = None if facts is None else facts.get("files")
    whole = facts is not None and not isinstance(listed, list)  # a marker without a list owns the folder
    foreign = [n for n in names if (out / n).exists() and not whole and n not in (listed or [])]
    if foreign and not overwrite:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise ForeignFolder(f"{flag} {out}: would replace {shown}, which lpt_probe did not write (the folder's "
                            f"{MARKER} marker does not list it); give another folder or --name, or --overwrite to "
                            f"replace it")
    written = []
    for name in names:
        written.append(store.atomic_write_bytes(out / name, (folder / name).read_bytes()))
    if not whole:
        store.write_json(marker, {"written_by": "lpt_probe", "files": sorted({*(listed or []), *names})})
    return written


def cache_dir() -> Path:
    """The user cache folder: ``$LPT_PROBE_CACHE`` or ``~/.cache/lpt_probe`` (converted weights,
    weight digests, staging folders)."""
    return Path(os.environ.get("LPT_PROBE_CACHE", Path.home() / ".cache" / "lpt_probe"))


def staging_dir(url: str) -> Path:
    """The local folder where a command computes the output it uploads to ``url``:
    ``$LPT_PROBE_STAGING/<scheme>-<digest of the URL>`` (default ``<cache>/staging``, the cache
    being ``$LPT_PROBE_CACHE`` or ``~/.cache/lpt_probe``). One URL, one folder: a rerun
    resumes there; delete it to free the space."""
    root = os.environ.get(STAGING_ENV, "").strip() or cache_dir() / "staging"
    url = str(url).rstrip("/")
    return Path(root) / f"{url.split('://', 1)[0]}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


@contextlib.contextmanager
def staged(out: str | Path | None, status_file: str | None = None, *, resume: bool = True,
           upload: bool = True, flag: str = "--out") -> Iterator[str | Path | None]:
    """The local folder a command writes ``out`` through (see the module docstring): ``out``
    itself when it is local (or None). For an fsspec URL (checked first: a filesystem that is
    not installed is one ``ValueError`` line naming the package), a local folder, uploaded to
    the URL with ``status_file`` last when the block ends without an error (an error uploads
    nothing: the URL keeps what it held). ``resume``: the folder is :func:`staging_dir`, kept
    (a rerun resumes there); else a temporary folder, removed. ``upload=False`` (``--plan``):
    nothing is uploaded. ``flag``: the option named in errors."""
    if out is None or not store.is_url(out):
        yield out
        return
    check_url(str(out), flag)
    if not resume:
        tmp = tempfile.mkdtemp(prefix="lpt_out_")
        try:
            yield Path(tmp)
            if upload:
                upload_dir(tmp, str(out), last=status_file)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    local = staging_dir(str(out))
    logger.info("--out %s: computed in %s, uploaded when it finishes", out, local)
    yield local
    if upload and local.is_dir():
        with store.OutputLock(local):  # no other command is writing there while it is copied
            status = local / status_file if status_file else None
            if status is not None and status.is_file():  # the record says where the folder went
                meta = store.read_json_cache(status)
                if meta and meta.get("url") != str(out):
                    store.write_json(status, {**meta, "url": str(out)})
            upload_dir(local, str(out), last=status_file)
        logger.info("uploaded %s to %s (the local copy is kept for reruns; delete it to free the space)", local, out)


class ResumableOutput:
    """A resumable output folder, as a context manager::

        with ResumableOutput(out, "run.json", stale=("mi.csv",)) as output:
            ...                                   # load the model and data (an error here leaves nothing)
            output.start(store.run_meta(...))     # run.json says "running"
            ...                                   # compute; output.meta.update(...) with what is learnt
        # run.json says "complete" (with wall_seconds), or "failed" / "interrupted" and the error

    ``out``: a folder (refused when it holds files lpt_probe did not write, unless
    ``overwrite``: see the module docstring), an fsspec URL (not locked; no ``stale`` or ``outputs`` there), or
    None: no folder at all (nothing is checked, locked or written; ``meta`` is still kept).
    ``stale``: names or glob patterns inside ``out`` (``checkpoints/step-*.safetensors``)
    set aside by ``start`` before the status file says ``running``: removed when the work
    finishes, put back (where nothing new was written) when it fails or is interrupted.
    ``t0``: when the work began (``time.perf_counter()``; default: now). ``timed``: record ``wall_seconds``
    since ``t0`` (on success unless the caller set it). ``list_outputs``: on success,
    record the folder's file names under ``outputs``. Errors before ``start`` (and a
    ``running`` that could not be written) leave the status file as it was."""

    def __init__(self, out: str | Path | None, status_file: str = "run.json", stale: tuple[str, ...] = (), *,
                 t0: float | None = None, timed: bool = True, list_outputs: bool = True, overwrite: bool = False):
        self.out = None if out is None else out if store.is_url(out) else Path(out)
        self.status_file, self.stale, self.timed, self.list_outputs = status_file, tuple(stale), timed, list_outputs
        self.overwrite = overwrite
        self._aside: list[tuple[Path, Path]] = []  # (stale output, where start set it aside)
        self.meta: dict[str, Any] | None = None
        self.t0 = time.perf_counter() if t0 is None else t0
        self._lock = store.OutputLock(self.out) if self.out is not None else None

    @property
    def status_path(self):
        return None if self.out is None else store.join(self.out, self.status_file)

    def __enter__(self) -> "ResumableOutput":
        if self.out is not None:
            check_url(str(self.out), local_only=False)  # a URL whose filesystem is not installed: one line
            store.check_output_folder(self.out)
            check_owned(self.out, self.status_file, self.overwrite)
            stale = stale_status(self.out, self.status_file)
            self._lock.__enter__()
            if stale:  # marked before any work, so the record says so even if this command fails early
                logger.warning("%s", stale)
                meta = store.read_json_cache(self.status_path)
                store.write_status(self.status_path, {**meta, "status": "interrupted",
                                                      "error": "the process ended without marking the folder"})
        return self

    def start(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Remove the stale outputs and write the status file as ``running``; returns the
        status dict (``self.meta``) that the caller fills and ``__exit__`` writes last."""
        meta = {**meta, "status": "running"}
        if self.out is not None:
            if not store.is_url(self.out):
                mark_owned(self.out, status_file=self.status_file)
                for pattern in self.stale:  # set aside, removed on success, put back on an error
                    glob = any(c in pattern for c in "*?[")
                    for path in self.out.glob(pattern) if glob else [self.out / pattern]:
                        if path.is_file():
                            aside = path.with_name(f".{path.name}.previous")
                            path.replace(aside)
                            self._aside.append((path, aside))
            store.write_json(self.status_path, meta)  # "running" first: the folder is not a result
        self.meta = meta
        return meta

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def _settle_aside(self, restore: bool) -> None:
        """The stale outputs set aside by ``start``: removed (the work finished), or put back
        where nothing new was written (``restore``: an error, so a refused rerun never costs
        the user the tables of the run before it)."""
        for path, aside in self._aside:
            if restore and not path.exists():
                aside.replace(path)
            else:
                aside.unlink(missing_ok=True)
        self._aside = []

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.meta is not None:
                self._settle_aside(restore=exc is not None)
                if exc is None:
                    self._complete()
                else:
                    self.meta.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                     error=f"{exc_type.__name__}: {exc}")
                    if self.timed:
                        self.meta["wall_seconds"] = self.seconds
                    if self.out is not None:
                        store.write_status(self.status_path, self.meta)
        finally:
            if self._lock is not None:
                self._lock.__exit__(exc_type, exc, tb)

    def _complete(self) -> None:
        self.meta["status"] = "complete"
        if self.timed:
            self.meta.setdefault("wall_seconds", self.seconds)
        if self.out is None:
            return
        if self.list_outputs and not store.is_url(self.out):
            self.meta["outputs"] = sorted(p.name for p in self.out.iterdir()
                                          if p.is_file() and not p.name.startswith("."))
        store.write_json(self.status_path, self.meta)  # last: only now is the folder complete
