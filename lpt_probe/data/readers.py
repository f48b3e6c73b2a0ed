"""Reading a task's labelled examples: the original local formats (GLUE TSV, TREC
``.label``, one-sentence-a-line files, CSV/TSV/JSONL tables) and the Hugging Face hub.
Each reader turns raw rows into ``Example`` s through a ``_Reader`` that maps label
values, skips rows with empty text and records the files read; ``read_local`` and
``read_hub`` return the raw roles (train, test, dev) that ``lpt_probe.data.sources``
splits."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from .examples import Example
from .tasks import LocalSource, TaskSpec

class _Reader:
    """Turns raw rows into Examples for one task, collecting skipped rows and files read."""

    def __init__(self, spec: TaskSpec, values: Sequence[str] = ()):
        self.spec = spec
        self.to_id = {str(v): i for i, v in enumerate(values or spec.label_names)}
        self.skipped: list[str] = []
        self.files: list[str] = []

    def label(self, raw: Any, where: str) -> int:
        key = str(raw).strip()
        if key not in self.to_id:
            raise ValueError(f"{where}: label {key!r} is not a {self.spec.name} label; expected "
                             f"one of {sorted(self.to_id)} (for labels {self.spec.label_names})")
        return self.to_id[key]

    def example(self, id_: str, texts: Iterable[Any], raw_label: Any, where: str):
        texts = tuple("" if t is None else str(t).strip() for t in texts)
        label = self.label(raw_label, where)
        if not all(texts):
            self.skipped.append(id_)
            return None
        return Example(id_, texts, label)


def _lines(path: Path, encoding: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of every line; decoding errors name the line."""
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the newline ending the last line
    out = []
    for n, b in enumerate(raw, 1):
        try:
            out.append((n, b.decode(encoding).rstrip("\r")))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{n}: cannot decode as {encoding} ({e})") from None
    return out


@contextlib.contextmanager
def _any_field_size():
    """Let ``csv`` read fields of any length (its default stops at 128 KB with ``_csv.Error``):
    a long text is read whole and cut to ``max_length`` tokens when encoded (which warns).
    The module-wide limit is restored afterwards."""
    old = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the largest a C long takes everywhere
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _glue_tsv(r: _Reader, path: Path, src: LocalSource) -> list[Example]:
    with _any_field_size():
        return _glue_rows(r, path, src)


def _glue_rows(r: _Reader, path: Path, src: LocalSource) -> list[Example]:
    lines = _lines(path, src.encoding)
    rows = csv.reader((t for _, t in lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    want = (*src.text_columns, src.label_column)
    if header is None or any(c not in header for c in want):
        raise ValueError(f"{path}:1: header {header} lacks columns "
                         f"{[c for c in want if c not in (header or [])]} ({r.spec.name} reads "
                         f"{list(want)})")
    cols = [header.index(c) for c in want]
    out = []
    for (n, _), row in zip(lines[1:], rows):
        where = f"{path}:{n}"
        if not any(row):  # a blank line: no text
            r.skipped.append(f"{path.name}:{n}")
            continue
        if len(row) != len(header):
            raise ValueError(f"{where}: malformed line: {len(row)} tab-separated fields, header "
                             f"has {len(header)} (a stray tab or a truncated row?)")
        ex = r.example(f"{path.name}:{n}", [row[c] for c in cols[:-1]], row[cols[-1]], where)
        out.append(ex)
    return [e for e in out if e is not None]


def _trec(r: _Reader, path: Path, src: LocalSource) -> list[Example]:
    out = []
    for n, line in _lines(path, src.encoding):
        head, _, text = line.partition(" ")
        coarse, colon, fine = head.partition(":")
        if not colon or not coarse or not fine:
            raise ValueError(f"{path}:{n}: malformed line {line[:60]!r}; expected "
                             f"'COARSE:fine question text'")
        out.append(r.example(f"{path.name}:{n}", [text], coarse, f"{path}:{n}"))
    return [e for e in out if e is not None]


def _line_files(r: _Reader, paths: list[Path], src: LocalSource) -> list[Example]:
    out = []
    for label, path in enumerate(paths):
        for n, line in _lines(path, src.encoding):
            out.append(r.example(f"{path.name}:{n}", [line], r.spec.label_names[label], ""))
    return [e for e in out if e is not None]


def _table(r: _Reader, path: Path, src: LocalSource) -> list[Example]:
    """A custom CSV / TSV / JSONL file with named text and label columns."""
    want = (*src.text_columns, src.label_column)
    out = []

    def row_example(row: dict, n: int):
        missing = [c for c in want if c not in row or (c == src.label_column and row[c] is None)]
        if missing:
            raise ValueError(f"{path}:{n}: malformed row: no {missing} (columns: {list(row)})")
        out.append(r.example(f"{path.name}:{n}", [row[c] for c in src.text_columns],
                             row[src.label_column], f"{path}:{n}"))

    lines = _lines(path, src.encoding)  # decoding errors name the file and line
    if not any(t.strip() for _, t in lines):
        raise ValueError(f"{path} is empty: a task file needs "
                         + ("one JSON object a line" if path.suffix.lower() in (".jsonl", ".json") else
                            f"a header row naming the columns {list(want)} and at least one row below it"))
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: malformed JSON line ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: malformed line: expected a JSON object")
            odd = [c for c in src.text_columns if not isinstance(row.get(c), (str, type(None)))]
            if odd:  # str() of a list, an object or a number is no text the task meant
                raise ValueError(f"{path}:{n}: text column {odd[0]!r} holds {type(row[odd[0]]).__name__} "
                                 f"{json.dumps(row[odd[0]])[:40]}, expected a string; quote it in the file")
            if isinstance(row.get(src.label_column), (list, dict)):
                raise ValueError(f"{path}:{n}: label column {src.label_column!r} holds "
                                 f"{type(row[src.label_column]).__name__}, expected one label value")
            row_example(row, n)
    else:
        import io as _stdio

        text = "\n".join(t for _, t in lines) + "\n"
        reader = csv.DictReader(_stdio.StringIO(text, newline=""),
                                delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        with _any_field_size():
            missing = [c for c in want if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}:1: header {reader.fieldnames} lacks columns {missing}; the file needs "
                                 f"a header row naming {list(want)} (text_columns and label_column of the task)")
            for row in reader:
                if None in row or None in row.values():
                    raise ValueError(f"{path}:{reader.line_num}: malformed row: field count "
                                     f"differs from the header's {len(reader.fieldnames)}")
                row_example(row, reader.line_num)
    return [e for e in out if e is not None]


_FORMATS = {"glue_tsv": _glue_tsv, "trec": _trec, "csv": _table, "tsv": _table, "jsonl": _table}


def read_local(spec: TaskSpec, data_dir: str | Path | None) -> tuple[dict, _Reader]:
    src = spec.local
    if src is None:
        raise ValueError(f"{spec.name} has no local source; use source='hub'")
    base = Path(data_dir) if data_dir is not None else Path()
    folder = next((base / f for f in src.folders if (base / f).is_dir()), base / src.folders[0])
    r = _Reader(spec, src.label_values)
    roles = {"train": src.train_files, "test": src.test_files, "dev": src.dev_files}
    out: dict[str, list[Example]] = {}
    for role, files in roles.items():
        paths = [folder / f for f in files]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(
                    f"{spec.name}: data file {p} not found; pass --data-dir (data_dir=...) "
                    f"naming the folder that holds {'/'.join(src.folders)}/{p.name} (e.g. "
                    f"../shared/data), or use source='hub'")
            r.files.append(str(p))
        if not paths:
            continue
        if src.format == "lines":
            out[role] = _line_files(r, paths, src)
        else:
            out[role] = [e for p in paths for e in _FORMATS[src.format](r, p, src)]
        if not out[role]:
            raise ValueError(f"{spec.name}: no examples in {[str(p) for p in paths]} (empty "
                             f"{role} split)")
    return out, r


def read_hub(spec: TaskSpec) -> tuple[dict, _Reader]:
    hub = spec.hub
    if hub is None:
        raise ValueError(f"{spec.name} has no hub source; pass data_dir for local files")
    try:
        import datasets
    except ImportError as e:
        raise ImportError("source='hub' needs the 'datasets' package; install it or pass "
                          "--data-dir to read local files") from e
    r = _Reader(spec, hub.label_values)
    out: dict[str, list[Example]] = {}
    for role, splits in (("train", hub.train_splits), ("test", hub.test_splits)):
        for split in splits:
            name = f"{hub.path}{'/' + hub.config if hub.config else ''} split {split!r}"
            try:
                ds = datasets.load_dataset(hub.path, hub.config, split=split)
            except Exception as e:
                raise RuntimeError(f"{spec.name}: could not load {name} from the Hugging Face hub "
                                   f"({e}); offline? pass --data-dir for local files") from e
            missing = [c for c in (*hub.text_columns, hub.label_column) if c not in ds.column_names]
            if missing:
                raise ValueError(f"{name} lacks columns {missing} (has {ds.column_names})")
            names = getattr(ds.features[hub.label_column], "names", None)
            idx = ds["idx"] if "idx" in ds.column_names else range(len(ds))
            cols = [ds[c] for c in hub.text_columns]
            for i, (k, raw) in enumerate(zip(idx, ds[hub.label_column])):
                raw = names[raw] if names is not None and isinstance(raw, int) and raw >= 0 else raw
                ex = r.example(f"{split}:{k}", [c[i] for c in cols], raw, f"{name} row {i}")
                if ex is not None:
                    out.setdefault(role, []).append(ex)
            r.files.append(f"hf://{hub.path}/{hub.config or ''}:{split}")
    return out, r
