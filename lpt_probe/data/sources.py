"""Task data: read a task's labelled examples and split them as the paper does.

Start at ``load_task(task, ...)``: it reads a registered task (``lpt_probe.data.tasks``) from
the Hugging Face hub or from local files in their original formats, or a user's own
task (``load_custom_task``: CSV/TSV/JSONL + a small YAML), and returns a ``TaskData``
whose three ``Split`` s each carry a fingerprint.

Splits, one rule for every task (the paper's Appendix B and Section 6.4):

1. The protocol gives a training *pool* and a *test* set. glue: original train / original
   dev (GLUE test labels are hidden); trec: train_5500 / TREC_10; sample_test: a test set
   of 2,000 drawn stratified with the fixed ``SPLIT_SEED`` 42 from all rows, the rest is
   the pool; custom: the given train / test files.
2. Full data (``shots=None``): dev = ``dev_size`` (1,000) rows drawn stratified from the
   pool with ``SPLIT_SEED``; train = the rest (so full-data splits never depend on
   ``data_seed``). For glue tasks this carves dev out of train rather than re-using the
   original dev, which is the test set: train, dev and test stay disjoint.
3. Few-shot (``shots=K``): train = K rows drawn from the pool with ``data_seed``,
   stratified with proportional allocation (largest remainder), so label shares follow
   the pool; dev = ``dev_size`` rows drawn the same way from the rest of the pool,
   leaving out rows whose text equals a chosen training text; test = the protocol's test.
4. A custom task's dev file, when given, is the dev set in both modes.

Example ids are ``"<file>:<line>"`` (local) or ``"<hub split>:<idx or row>"`` (hub). A
split's fingerprint is ``lpt_probe.store.fingerprint`` over one record per example (id,
label and texts), not the ids alone, so an edited file changes it even when the ids
survive. Texts shared across splits (duplicate rows in MPQA, TREC, RTE) are counted in
``info["text_overlap"]``. Rows with empty text are skipped, logged and listed by id in
``TaskData.skipped``. The data classes (``Example``, ``Split``, ``TaskData``) live in
``lpt_probe.data.examples``, the file and hub readers in ``lpt_probe.data.readers``.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from .custom_task import TaskError, check_custom_task, is_task_file, task_slug  # noqa: F401  (re-exported)
from .examples import Example, Split, TaskData
from .readers import read_hub, read_local
from .tasks import LocalSource, Protocol, TaskSpec, get_task

logger = logging.getLogger(__name__)

SPLIT_SEED = 42  # fixed seed of every protocol-level draw (sample_test test, full-data dev)
SAMPLE_TEST_SIZE = 2000
SOURCES = ("auto", "hub", "local", "custom")


# --- splitting -----------------------------------------------------------------------------
def stratified_split(examples: Sequence[Example], n: int, rng: np.random.Generator,
                     what: str = "sample") -> tuple[list[Example], list[Example]]:
    """Draw ``n`` examples stratified by label (proportional, largest remainder).

    Returns (chosen, rest), both in the input order. Deterministic for a given ``rng`` state.
    """
    if n > len(examples) or n < 0:
        raise ValueError(f"cannot draw {what} of {n} from {len(examples)} examples; ask for "
                         f"fewer (shots / dev_size / max_examples)")
    labels = np.array([e.label for e in examples], dtype=np.int64)  # [N]
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    alloc = np.floor(quota).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - alloc[i]), classes[i]))
    for i in order[: n - alloc.sum()]:
        alloc[i] += 1
    chosen = np.zeros(len(examples), dtype=bool)
    for c, k in zip(classes, alloc):
        idx = np.flatnonzero(labels == c)
        chosen[idx[rng.permutation(len(idx))[:k]]] = True
    return ([e for e, c in zip(examples, chosen) if c],
            [e for e, c in zip(examples, chosen) if not c])


_SAID: set[tuple] = set()  # facts about the data already reported in this process (said once)


def same_text(texts: tuple[str, ...]) -> tuple[str, ...]:
    """What two texts must share to count as the same text across splits: Unicode NFKC,
    case-folded, runs of whitespace as one space. An uncased tokenizer (MiniLM, BERT
    uncased) sees "What are the Twin Cities ?" and "What are the twin cities ?" as one input;
    a cased one nearly so. Matching after this normalisation, for every model, errs on the
    side of removing a near-copy of a test text (a prompt or probe that saw it would measure
    memory)."""
    return tuple(" ".join(unicodedata.normalize("NFKC", t).casefold().split()) for t in texts)


def _make_splits(spec, raw, shots, data_seed, dev_size, drop_overlap=False) -> tuple[list, list, list, dict]:
    info: dict[str, Any] = {"protocol": spec.protocol.value, "split_seed": SPLIT_SEED}
    pool, test = raw["train"], raw.get("test")
    if spec.protocol is Protocol.SAMPLE_TEST:
        test, pool = stratified_split(pool, SAMPLE_TEST_SIZE, np.random.default_rng(SPLIT_SEED),
                                      "a test set")
    elif not test:
        raise ValueError(f"{spec.name}: no test split (protocol {spec.protocol.value!r}); give "
                         f"test files")
    test_texts = {same_text(e.texts) for e in test}
    repeats = [e for e in pool if same_text(e.texts) in test_texts]
    info["pool_test_overlap"] = len(repeats)
    if repeats and drop_overlap:
        pool = [e for e in pool if same_text(e.texts) not in test_texts]
        info["dropped_overlap"] = len(repeats)
        said_key = ("dropped", spec.name, len(repeats), len(pool), repeats[0].texts)
        if said_key not in _SAID:  # once per process for the same data (a study loads its splits several times)
            _SAID.add(said_key)
            logger.info("%s: dropped %d training-pool rows whose text is also a test text (--drop-overlap)",
                        spec.name, len(repeats))
    elif repeats:
        said_key = (spec.name, len(repeats), len(pool), repeats[0].texts)
        said = said_key in _SAID  # once per process for the same data (mi loads the pool twice)
        _SAID.add(said_key)
        log = logger.debug if said else logger.warning if spec.protocol is Protocol.CUSTOM else logger.info
        log("%s: %d of %d training-pool rows repeat a test text (e.g. %s); they may be drawn as shots or dev "
            "rows. --drop-overlap removes them", spec.name, len(repeats), len(pool), repeats[0].id)
    given_dev = raw.get("dev")
    if shots is None:
        dev, train = given_dev, pool
        if dev is None:
            dev, train = stratified_split(pool, dev_size, np.random.default_rng(SPLIT_SEED),
                                          "a dev set")
        info["dev_from"] = "dev file" if given_dev else "pool, split_seed"
    else:
        rng = np.random.default_rng(data_seed)
        train, rest = stratified_split(pool, shots, rng, f"{shots} shots")
        dev = given_dev
        if dev is None:
            seen = {same_text(e.texts) for e in train}
            rest = [e for e in rest if same_text(e.texts) not in seen]
            dev, _ = stratified_split(rest, dev_size, rng, "a dev set")
        info.update(dev_from="dev file" if given_dev else "rest of pool, data_seed",
                    sampling="stratified, proportional allocation (largest remainder)")
    info["pool_size"] = len(pool)
    return train, dev, test, info


def _overlap(splits: dict[str, list[Example]]) -> dict[str, int]:
    texts = {k: {same_text(e.texts) for e in v} for k, v in splits.items()}
    pairs = (("train", "dev"), ("train", "test"), ("dev", "test"))
    return {f"{a}&{b}": len(texts[a] & texts[b]) for a, b in pairs}


def _warn_labels_without_rows(spec: TaskSpec, raw: dict[str, list[Example]]) -> None:
    """Warn about labels the training data never shows (a YAML ``labels`` entry with no rows):
    training still runs, but nothing teaches the prompt that label."""
    counts = {role: Counter(e.label for e in rows) for role, rows in raw.items()}
    absent = [k for k in range(spec.num_labels) if not counts.get("train", Counter())[k]]
    if not absent:
        return
    names = ", ".join(repr(spec.label_names[k]) for k in absent)
    if spec.num_labels - len(absent) < 2:  # one class left: any metric would read as a result, and mean nothing
        raise ValueError(f"{spec.name}: only {spec.num_labels - len(absent)} of {spec.num_labels} labels have "
                         f"training rows (none for {names}): an empty or missing class file? Nothing can be learnt "
                         f"from one class; add rows for the others (check the data files)")
    rows = "; ".join(f"{spec.label_names[k]!r}: " + ", ".join(f"{counts[role][k]} in {role}" for role in counts)
                     for k in absent)
    where = "the task's YAML file" if spec.protocol is Protocol.CUSTOM else "the task's labels"
    said_key = ("labels", spec.name, rows, sum(len(v) for v in raw.values()))
    said = said_key in _SAID  # once per process for the same data (mi loads it twice)
    _SAID.add(said_key)
    log = logger.debug if said else logger.warning
    log("%s: label(s) %s have no rows in the training data (%s); the prompt is trained without ever seeing them: "
        "remove them from labels in %s, or add rows for them", spec.name, names, rows, where)


DATA_DIR_ENV = "LPT_PROBE_DATA_DIR"  # the task files when no --data-dir is given (every command, the API)


def env_data_dir() -> Path | None:
    """The folder ``LPT_PROBE_DATA_DIR`` names (None when it is unset or empty); one that is
    not a folder is an error naming the variable."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        return None
    if not Path(value).expanduser().is_dir():
        raise FileNotFoundError(f"{DATA_DIR_ENV}={value}: no such folder; point it at the task files (e.g. "
                                f"../shared/data), pass --data-dir, or unset it")
    return Path(value).expanduser()


def load_task(task: str | TaskSpec, source: str = "auto", data_dir: str | Path | None = None,
              shots: int | None = None, data_seed: int = 13, dev_size: int = 1000,
              max_examples: int | None = None, drop_overlap: bool = False) -> TaskData:
    """Read ``task`` and split it (see the module docstring for the rules).

    source: "auto" (local files when ``data_dir`` is given, or ``LPT_PROBE_DATA_DIR`` names
    a folder, else the hub), "hub", "local",
    or "custom" (``task`` is then a YAML or CSV/TSV/JSONL path; see ``load_custom_task``).
    shots: few-shot training size K (e.g. 100, 500) or None for all data. data_seed: the
    few-shot draw (13, 21, 42, 87). max_examples: cap every split (stratified, split_seed)
    for smoke runs. drop_overlap: remove training-pool rows whose text is also a test text
    (their count is in ``info["pool_test_overlap"]`` either way; custom tasks warn).
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {SOURCES}")
    if source == "custom":
        return load_custom_task(task, data_dir=data_dir, shots=shots, data_seed=data_seed,
                                dev_size=dev_size, max_examples=max_examples, drop_overlap=drop_overlap)[1]
    for name, v in (("shots", shots), ("dev_size", dev_size), ("max_examples", max_examples)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{name}={v!r} must be a positive integer")
    spec = get_task(task)
    if data_dir is None and source in ("auto", "local"):
        data_dir = env_data_dir()
    if source == "auto":
        source = "local" if data_dir is not None else "hub"
    if source == "local" and data_dir is None and spec.protocol is not Protocol.CUSTOM:
        raise ValueError("source='local' needs data_dir (--data-dir), e.g. ../shared/data")
    try:  # whatever the files hold: the data, or one TaskError line naming the file and line
        raw, reader = read_hub(spec) if source == "hub" else read_local(spec, data_dir)
        _warn_labels_without_rows(spec, raw)
        train, dev, test, info = _make_splits(spec, raw, shots, data_seed, dev_size, drop_overlap)
    except TaskError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise TaskError(" ".join(str(exc).split())) from None
    if spec.protocol is Protocol.CUSTOM:
        source = "custom"
    if max_examples is not None:
        had = {e.label for e in train}  # labels the cap may drop (not those the few-shot draw left out)
        rng = np.random.default_rng(SPLIT_SEED)
        train, dev, test = (s if len(s) <= max_examples else
                            stratified_split(s, max_examples, rng, "a capped split")[0]
                            for s in (train, dev, test))
        lacking = [n for i, n in enumerate(spec.label_names) if i in had and i not in {e.label for e in train}]
        if lacking:
            logger.warning("%s: --max-examples %d leaves no training rows of label(s) %s: the prompt never sees "
                           "them; raise --max-examples (at least %d for one row per label)", spec.name, max_examples,
                           ", ".join(map(repr, lacking)), spec.num_labels)
    skipped = {"empty_text": reader.skipped} if reader.skipped else {}
    if reader.skipped:
        logger.warning("%s: skipped %d rows with empty text: %s%s", spec.name,
                       len(reader.skipped), ", ".join(reader.skipped[:5]),
                       " ..." if len(reader.skipped) > 5 else "")
    info.update(source=source, files=reader.files, shots=shots, data_seed=data_seed,
                dev_size=dev_size, max_examples=max_examples, drop_overlap=drop_overlap,
                text_overlap=_overlap({"train": train, "dev": dev, "test": test}))
    return TaskData(spec, Split("train", train), Split("dev", dev), Split("test", test),
                    source, skipped, info)


def probe_splits(full: TaskData, exclude: Iterable[str] = (), dev_size: int = 500, train_max: int | None = None
                 ) -> tuple[Split, Split, dict[str, Any]]:
    """Probe-train and probe-dev rows for ``mi``: every non-test row of the task (the
    full-data train and dev splits of ``full``) except the ids in ``exclude`` (a late
    prompt's few-shot rows and the dev rows it was selected on), split into a stratified
    probe dev of ``dev_size`` rows and a probe train of the rest (capped at ``train_max``,
    stratified), both with ``SPLIT_SEED``. So no row that trained or selected a prompt
    reaches a probe, and every condition (prompts, the frozen model) is probed on the same
    rows. ``dev_size`` is capped at a third of what is left (logged); returns (train, dev,
    facts for run.json)."""
    exclude = set(exclude)
    pool = [e for e in (*full.train, *full.dev) if e.id not in exclude]
    n_excluded = len(full.train) + len(full.dev) - len(pool)
    k = full.task.num_labels
    if len(pool) < 3 * k:
        raise ValueError(f"{full.task.name}: only {len(pool)} non-test rows are left for the probes once the "
                         f"prompt's {n_excluded} training and dev rows are set aside (need at least {3 * k}); "
                         f"give fewer --shots or a smaller --dev-size, or more data")
    dev_n = min(int(dev_size), len(pool) // 3)
    if dev_n < dev_size:
        logger.info("%s: probe dev capped at %d rows (a third of the %d rows left for the probes)", full.task.name,
                    dev_n, len(pool))
    dev, rest = stratified_split(pool, dev_n, np.random.default_rng(SPLIT_SEED), "a probe dev set")
    train, left = rest, []
    if train_max is not None and len(rest) > train_max:
        train, left = stratified_split(rest, train_max, np.random.default_rng(SPLIT_SEED), "capped probe-train rows")
    # a class the rows hold must reach probe-train (proportional allocation can round a rare
    # class away in a small cap): one row of it from the rows the cap left, else from dev
    topped = []
    for c in sorted({e.label for e in pool} - {e.label for e in train}):
        spare = next((e for e in left if e.label == c), None)
        if spare is None and sum(e.label == c for e in dev) > 1:
            spare = next(e for e in dev if e.label == c)
            dev = [e for e in dev if e is not spare]
        if spare is not None:
            train, left = [*train, spare], [e for e in left if e is not spare]
            topped.append(full.task.label_names[c])
    if topped:
        logger.info("%s: probe train got one row of %s, which the stratified cap had rounded away",
                    full.task.name, ", ".join(topped))
    facts = {"non_test_rows": len(full.train) + len(full.dev), "excluded_prompt_rows": n_excluded,
             "probe_dev": len(dev), "probe_train": len(train), "probe_train_pool": len(rest),
             "probe_dev_size_asked": int(dev_size), "split_seed": SPLIT_SEED, "classes_topped_up": topped}
    return Split("train", train), Split("dev", dev), facts


_TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_CUSTOM_KEYS = ("name", "train", "dev", "test", "text_columns", "label_column", "labels",
                "mlm_template", "mlm_label_words", "clm_template", "clm_label_words", "metric")


def load_custom_task(path_or_yaml: str | Path, *, data_dir: str | Path | None = None,
                     shots: int | None = None, data_seed: int = 13, dev_size: int = 1000,
                     max_examples: int | None = None, drop_overlap: bool = False,
                     **config: Any) -> tuple[TaskSpec, TaskData]:
    """A user's own task from CSV/TSV/JSONL files with named text and label columns.

    ``path_or_yaml`` is a YAML file with the keys in ``_CUSTOM_KEYS`` (file paths relative to
    the YAML's folder), or the training file itself with the rest given as keyword
    arguments (keywords also override YAML keys). Required: train, test, text_columns (1 or
    2), labels, mlm_template, clm_template. Label words default to the labels; label_column
    to "label"; metric to "accuracy"; name to the file's stem. Returns (spec, data).
    Whatever the files hold, the result or one ``TaskError`` line (naming the file, the
    line or the key), never another exception; unknown keyword arguments are a ``TypeError``.
    """
    unknown = sorted(set(config) - set(_CUSTOM_KEYS))
    if unknown:
        raise TypeError(f"unknown custom-task keys {unknown}; allowed: {list(_CUSTOM_KEYS)}")
    try:
        return _load_custom_task(Path(path_or_yaml), data_dir, dict(shots=shots, data_seed=data_seed,
                                 dev_size=dev_size, max_examples=max_examples, drop_overlap=drop_overlap), config)
    except TaskError:
        raise
    except (ValueError, OSError) as exc:  # the readers' errors name the file and line: keep them, on one line
        raise TaskError(" ".join(str(exc).split())) from None


def _load_custom_task(path: Path, data_dir, split_args: dict, config: dict) -> tuple[TaskSpec, TaskData]:
    if not path.is_file():
        raise FileNotFoundError(f"custom task file {path} not found; pass a YAML or CSV/JSONL path")
    cfg: dict[str, Any] = {}
    base = Path(data_dir) if data_dir is not None else path.parent
    if path.suffix.lower() in (".yaml", ".yml"):
        class Loader(yaml.SafeLoader):  # YAML 1.1 reads Yes/No/true as booleans: keep strings
            yaml_implicit_resolvers = {
                k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
                for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

        try:
            cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader) or {}
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the YAML as UTF-8") from None
        except yaml.YAMLError as e:
            raise TaskError(f"{path}: not valid YAML ({' '.join(str(e).split())}); see the custom-task example in the "
                            f"README") from None
        if not isinstance(cfg, dict) or set(cfg) - set(_CUSTOM_KEYS):
            raise ValueError(f"{path}: expected a mapping with keys from {list(_CUSTOM_KEYS)}, "
                             f"got {sorted(map(str, cfg)) if isinstance(cfg, dict) else type(cfg).__name__}")
    else:
        cfg["train"], base = str(path.resolve()), Path()
    cfg.update({k: v for k, v in config.items() if v is not None})
    missing = [k for k in ("train", "test", "text_columns", "labels", "mlm_template",
                           "clm_template") if not cfg.get(k)]
    if missing:
        raise ValueError(f"custom task {path}: missing {missing}; give them in the YAML or as "
                         f"keyword arguments")
    check_custom_task(cfg, path)
    cols = (cfg["text_columns"],) if isinstance(cfg["text_columns"], str) else cfg["text_columns"]
    labels = tuple(str(v) for v in cfg["labels"])
    files = {k: (str((base / cfg[k]).resolve()),) if cfg.get(k) else () for k in
             ("train", "dev", "test")}
    fmt = _TABLE_FORMATS.get(Path(files["train"][0]).suffix.lower())
    if fmt is None:
        raise ValueError(f"custom task {files['train'][0]}: unsupported format {fmt!r}; use "
                         f".csv, .tsv or .jsonl")
    spec = TaskSpec(
        name=str(cfg.get("name") or path.stem), text_fields=("text_a", "text_b")[:len(cols)],
        label_names=labels, mlm_template=cfg["mlm_template"],
        mlm_label_words=tuple(str(w) for w in cfg.get("mlm_label_words") or labels),
        clm_template=cfg["clm_template"],
        clm_label_words=tuple(str(w) for w in cfg.get("clm_label_words") or labels),
        metric=cfg.get("metric", "accuracy"), protocol="custom",
        local=LocalSource(fmt, ("",), files["train"], files["test"], files["dev"],
                          text_columns=tuple(cols), label_column=cfg.get("label_column", "label")))
    return spec, load_task(spec, source="local", **split_args)
