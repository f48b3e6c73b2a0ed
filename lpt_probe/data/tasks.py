"""The task registry: every task the paper evaluates, written down as data.

Start at ``TaskSpec`` (one frozen dataclass per task: text fields, labels, templates,
label words, metric, where its data lives and how it is split) and ``get_task``. Adding
a task means registering one more ``TaskSpec`` (``register_task``), never a new code
branch; ``lpt_probe.data`` reads any spec, ``lpt_probe.verbalizer`` renders it.

Templates. MLM templates and label words are the authors' (xyltt/LPT
``encoder-only/data/process.py``; the paper's Table 8), each built into one segment:

- sst2, mr, mpqa: ``{text_a} . It was {mask} .`` -> terrible / great (negative / positive)
- subj: ``{text_a} . It was {mask} .`` -> subjective / objective
- trec: ``{mask} : {text_a}`` -> Expression / Description / Entity / Human / Location /
  Number (ABBR DESC ENTY HUM LOC NUM)
- rte, qnli, mnli, mrpc: ``{text_a} ? {mask} , {text_b}`` -> Yes / (Maybe) / No
- qqp: ``{text_a} {mask} , {text_b}`` -> No / Yes

CLM templates are the authors' GPT-2 ones (``decoder-only/data/utils.py``, the paper's
Table 9 style) and end exactly where the label word comes next (each label word one
token in its leading-space form): ``{text_a} It was`` for single sentences (sst2, mr,
mpqa, subj, trec, with the MLM words) and ``{text_a} {text_b} They are`` for pairs
(Yes / No; mnli Yes / Maybe / No, which the authors did not run). Deliberate deviation:
the authors score " label ." plus EOS and pick the label with the lowest loss; we read
the next-token logits of the label words at the end of the template.

Hub copies: GLUE from ``nyu-mll/glue`` (mnli tests on ``validation_matched``), TREC from
``CogComp/trec`` (``coarse_label``), Subj from ``SetFit/subj`` (the SentEval copy, mapped
by its ``label_text`` column), MR from ``cornell-movie-review-data/rotten_tomatoes``,
MPQA from ``jxm/mpqa`` (the LM-BFF copy: train 8,603 + test 2,000 = the 10,606 SentEval
phrases less 3 empty lines; its 256-row ``dev`` split is not read, it repeats training
rows). Hub labels are matched by name where the hub stores names (ClassLabel, label
text), so a re-ordered ClassLabel cannot silently swap labels.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

TEXT_FIELDS = ("text_a", "text_b")


class Protocol(str, Enum):
    """How a task's labelled data become train / dev / test (the paper's Appendix B)."""

    GLUE = "glue"  # original train; original dev is the test set; dev drawn from train
    SAMPLE_TEST = "sample_test"  # stratified test 2,000 + dev 1,000 from all data, seed 42
    TREC = "trec"  # original train; the 500-question TREC-10 set is the test set
    CUSTOM = "custom"  # a user's files: train + test as given, dev given or drawn from train


class Metric(str, Enum):
    ACCURACY = "accuracy"
    ACC_F1 = "acc_f1"  # mean of accuracy and binary F1 of label index 1 (MRPC, QQP)


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub (read with ``datasets.load_dataset``)."""

    path: str = _help("Dataset id, e.g. 'nyu-mll/glue'.")
    config: str | None = _help("Config name, e.g. 'rte'; None for none.")
    train_splits: tuple[str, ...] = _help(
        "Hub splits giving the training pool; for protocol 'sample_test' every labelled row "
        "to sample from.")
    test_splits: tuple[str, ...] = _help("Hub splits serving as the test set; () for sample_test.")
    text_columns: tuple[str, ...] = _help("Columns holding text_a (and text_b), in that order.")
    label_column: str = _help("Column holding the label.", default="label")
    label_values: tuple[str, ...] = _help(
        "Hub label value (as a string; ClassLabel ints are first turned into their names) for "
        "each of label_names, in order; () means the hub names equal label_names.", default=())


@dataclass(frozen=True)
class LocalSource:
    """Where a task lives in a local folder, in its original distribution format."""

    format: str = _help(
        "'glue_tsv' (header row, tab-separated, csv.QUOTE_NONE), 'trec' ('COARSE:fine text' "
        "a line, Latin-1), 'lines' (one text a line, one file per label), 'csv', 'tsv', 'jsonl'.")
    folders: tuple[str, ...] = _help(
        "Sub-folders of data_dir to look in, first found wins (e.g. ('sst2', 'SST-2')); "
        "('',) for paths taken as they are.")
    train_files: tuple[str, ...] = _help(
        "Files of the training pool; for 'lines' one file per label in label_names order (and, "
        "for sample_test, all the data).")
    test_files: tuple[str, ...] = _help("Files of the test set; () for sample_test.", default=())
    dev_files: tuple[str, ...] = _help("Custom tasks only: a given dev set.", default=())
    text_columns: tuple[str, ...] = _help(
        "Header names of the text_a (and text_b) columns (glue_tsv, csv, tsv, jsonl).", default=())
    label_column: str = _help("Header name of the label column.", default="label")
    label_values: tuple[str, ...] = _help(
        "Label as written in the file for each of label_names; () means the same strings.",
        default=())
    encoding: str = _help("Text encoding; 'utf-8-sig' also strips a BOM.", default="utf-8-sig")

    def __post_init__(self):
        formats = ("glue_tsv", "trec", "lines", "csv", "tsv", "jsonl")
        if self.format not in formats:
            raise ValueError(f"LocalSource.format={self.format!r} is not one of {formats}")
        if not self.train_files:
            raise ValueError("LocalSource.train_files is empty; name at least one file")


@dataclass(frozen=True)
class TaskSpec:
    """One classification task: its inputs, labels, prompts, metric, data and split protocol."""

    name: str = _help("Registry key, lower case, e.g. 'rte'.")
    text_fields: tuple[str, ...] = _help("('text_a',) or ('text_a', 'text_b').")
    label_names: tuple[str, ...] = _help("Canonical label strings; label id = index.")
    mlm_template: str = _help("Masked-LM template with {text_a}, {text_b}, exactly one {mask}.")
    mlm_label_words: tuple[str, ...] = _help("One word per label, filling {mask}.")
    clm_template: str = _help(
        "Causal-LM template that ends where the label word comes next; no {mask}, no trailing "
        "space.")
    clm_label_words: tuple[str, ...] = _help(
        "The next word per label; tokenised in its leading-space form for BPE tokenizers.")
    metric: Metric = _help("'accuracy' or 'acc_f1' (mean of accuracy and binary F1).")
    protocol: Protocol = _help("'glue', 'sample_test', 'trec' or 'custom'; see Protocol.")
    hub: HubSource | None = _help("Hugging Face hub source, or None.", default=None)
    local: LocalSource | None = _help("Local-files source, or None.", default=None)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"TaskSpec.name must be a non-empty string, got {self.name!r}")
        for name in ("text_fields", "label_names", "mlm_label_words", "clm_label_words"):
            value = tuple(getattr(self, name))
            if not all(isinstance(v, str) for v in value):
                raise ValueError(f"{self.name}: {name}={value!r} must hold strings (in YAML, "
                                 f"quote words such as 'Yes', 'No', 'true')")
            object.__setattr__(self, name, value)
        for name in ("mlm_template", "clm_template"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{self.name}: {name} must be a string")
        if self.text_fields not in (TEXT_FIELDS[:1], TEXT_FIELDS):
            raise ValueError(f"{self.name}: text_fields={self.text_fields!r}; expected "
                             f"('text_a',) or ('text_a', 'text_b')")
        labels = self.label_names
        if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
            raise ValueError(f"{self.name}: label_names={labels!r} must be >= 2 distinct, "
                             f"non-empty strings")
        for kind in ("mlm", "clm"):
            words = getattr(self, f"{kind}_label_words")
            if len(words) != len(labels):
                raise ValueError(f"{self.name}: {kind}_label_words={words!r} has {len(words)} "
                                 f"words for {len(labels)} labels {labels!r}; give one per label")
            bad = [w for w in words if not w or w != w.strip() or " " in w]
            if bad or len(set(words)) != len(words):
                raise ValueError(f"{self.name}: {kind}_label_words={words!r} must be distinct "
                                 f"single words without spaces (bad: {bad!r})")
            _check_template(self, kind)
        for name, enum in (("metric", Metric), ("protocol", Protocol)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                raise ValueError(f"{self.name}: {name}={getattr(self, name)!r} is not one of "
                                 f"{[e.value for e in enum]}") from None
        if self.metric is Metric.ACC_F1 and len(labels) != 2:
            raise ValueError(f"{self.name}: metric 'acc_f1' needs 2 labels, got {labels!r}")
        if self.hub is None and self.local is None:
            raise ValueError(f"{self.name}: give a hub or a local source (or both)")
        if self.local is not None and self.local.format == "lines" and (
                len(self.local.train_files) != len(labels)):
            raise ValueError(f"{self.name}: a 'lines' source needs one file per label "
                             f"{labels!r}, got {self.local.train_files!r}")
        for src in (self.hub, self.local):
            if src is not None and src.label_values and len(src.label_values) != len(labels):
                raise ValueError(f"{self.name}: label_values={src.label_values!r} must have one "
                                 f"value per label {labels!r}")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (enums as their string values)."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        """The inverse of ``to_dict`` (run folders store the spec a prompt was trained with)."""
        d = dict(d)

        def tuples(sub: dict | None, kind):
            if sub is None:
                return None
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})

        d["hub"], d["local"] = tuples(d.get("hub"), HubSource), tuples(d.get("local"), LocalSource)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def json_ready(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def _check_template(spec: TaskSpec, kind: str) -> None:
    template = getattr(spec, f"{kind}_template")
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"{spec.name}: {kind}_template={template!r} is not a valid template "
                         f"({e}); write literal braces as {{{{ }}}}") from None
    allowed = set(spec.text_fields) | ({"mask"} if kind == "mlm" else set())
    unknown = sorted(set(names) - allowed)
    missing = [f for f in spec.text_fields if f not in names]
    if unknown or missing:
        example = ("'{text_a} It was {mask} .'" if kind == "mlm" else "'{text_a} It was'")
        if len(spec.text_fields) == 2:
            example = "'{text_a} ? {mask} , {text_b}'" if kind == "mlm" else "'{text_a} {text_b} They are'"
        paper = any(tag in template for tag in ("<S1>", "<S2>", "[MASK]", "<mask>"))
        raise ValueError(
            f"{spec.name}: {kind}_template={template!r} has unknown placeholders {unknown} / lacks {missing}. "
            f"Templates name the text fields in braces{' and the label slot as {mask}' if kind == 'mlm' else ''}, "
            f"e.g. {kind}_template: {example}"
            + (" (the paper writes <S1> for {text_a}, <S2> for {text_b} and [MASK] for {mask})" if paper else "")
            + f"; allowed placeholders: {sorted(allowed)}")
    if kind == "mlm" and names.count("mask") != 1:
        raise ValueError(f"{spec.name}: mlm_template={template!r} must contain exactly one {{mask}}")
    if kind == "clm" and template != template.rstrip():
        raise ValueError(f"{spec.name}: clm_template={template!r} ends in whitespace; end it at "
                         f"the last word (the label word brings its own leading space)")
    if len(set(names)) != len(names):
        raise ValueError(f"{spec.name}: {kind}_template={template!r} repeats a placeholder")


class UnknownTaskError(KeyError, ValueError):
    """An unknown task name; a KeyError and a ValueError, so either ``except`` catches it."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


_REGISTRY: dict[str, TaskSpec] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def register_task(spec: TaskSpec, overwrite: bool = False) -> TaskSpec:
    """Add ``spec`` to the registry (names are case- and '-'/'_'-insensitive)."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    key = _key(spec.name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"task {spec.name!r} is already registered; pass overwrite=True to "
                         f"replace it")
    _REGISTRY[key] = spec
    return spec


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(spec.name for spec in _REGISTRY.values())


def get_task(name: str | TaskSpec) -> TaskSpec:
    """The ``TaskSpec`` called ``name`` (case-insensitive; 'SST-2' finds 'sst2')."""
    if isinstance(name, TaskSpec):
        return name
    spec = _REGISTRY.get(_key(str(name)))
    if spec is None:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())} "
                               f"(or register_task(TaskSpec(...)), or load_custom_task(...))")
    return spec


# --- the ten tasks of the paper ------------------------------------------------------
_SENT = dict(mlm_template="{text_a} . It was {mask} .", mlm_label_words=("terrible", "great"),
             clm_template="{text_a} It was", clm_label_words=("terrible", "great"),
             label_names=("negative", "positive"), text_fields=("text_a",),
             metric="accuracy")
_PAIR = ("text_a", "text_b")
_NLI2 = ("entailment", "not_entailment")


def _glue(config: str, cols: tuple[str, ...], test: str = "validation") -> HubSource:
    return HubSource("nyu-mll/glue", config, ("train",), (test,), cols)


def _glue_tsv(folders, cols, label="label", values=(), test="dev.tsv") -> LocalSource:
    return LocalSource("glue_tsv", folders, ("train.tsv",), (test,), text_columns=cols,
                       label_column=label, label_values=values)


def _lines(folder: str, files: tuple[str, str]) -> LocalSource:
    return LocalSource("lines", (folder,), files)


for _spec in (
    # GLUE TSV columns -- SST-2: sentence, label (0/1).
    TaskSpec(name="sst2", **_SENT, protocol="glue", hub=_glue("sst2", ("sentence",)),
             local=_glue_tsv(("sst2", "SST-2"), ("sentence",), values=("0", "1"))),
    TaskSpec(name="mr", **_SENT, protocol="sample_test",
             hub=HubSource("cornell-movie-review-data/rotten_tomatoes", None,
                           ("train", "validation", "test"), (), ("text",),
                           label_values=("neg", "pos")),
             local=_lines("mr", ("rt-polarity.neg", "rt-polarity.pos"))),
    TaskSpec(name="mpqa", **_SENT, protocol="sample_test",
             hub=HubSource("jxm/mpqa", None, ("train", "test"), (), ("sentence",),
                           label_values=("0", "1")),
             local=_lines("mpqa", ("mpqa.neg", "mpqa.pos"))),
    TaskSpec(name="subj", text_fields=("text_a",), label_names=("subjective", "objective"),
             mlm_template="{text_a} . It was {mask} .",
             mlm_label_words=("subjective", "objective"), clm_template="{text_a} It was",
             clm_label_words=("subjective", "objective"), metric="accuracy",
             protocol="sample_test",
             hub=HubSource("SetFit/subj", None, ("train", "test"), (), ("text",),
                           label_column="label_text"),
             local=_lines("subj", ("subj.subjective", "subj.objective"))),
    TaskSpec(name="trec", text_fields=("text_a",),
             label_names=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
             mlm_template="{mask} : {text_a}",
             mlm_label_words=("Expression", "Description", "Entity", "Human", "Location",
                              "Number"),
             clm_template="{text_a} It was",
             clm_label_words=("Expression", "Description", "Entity", "Human", "Location",
                              "Number"),
             metric="accuracy", protocol="trec",
             hub=HubSource("CogComp/trec", None, ("train",), ("test",), ("text",),
                           label_column="coarse_label"),
             local=LocalSource("trec", ("trec",), ("train_5500.label",), ("TREC_10.label",),
                               encoding="latin-1")),
    # RTE and QNLI: index, sentence1/question, sentence2/sentence, label (strings).
    TaskSpec(name="rte", text_fields=_PAIR, label_names=_NLI2,
             mlm_template="{text_a} ? {mask} , {text_b}", mlm_label_words=("Yes", "No"),
             clm_template="{text_a} {text_b} They are",
             clm_label_words=("Yes", "No"), metric="accuracy", protocol="glue",
             hub=_glue("rte", ("sentence1", "sentence2")),
             local=_glue_tsv(("rte", "RTE"), ("sentence1", "sentence2"))),
    TaskSpec(name="qnli", text_fields=_PAIR, label_names=_NLI2,
             mlm_template="{text_a} ? {mask} , {text_b}", mlm_label_words=("Yes", "No"),
             clm_template="question: {text_a} sentence: {text_b} does the sentence answer "
                          "the question? answer:",
             clm_label_words=("Yes", "No"), metric="accuracy", protocol="glue",
             hub=_glue("qnli", ("question", "sentence")),
             local=_glue_tsv(("qnli", "QNLI"), ("question", "sentence"))),
    # MNLI: index, promptID, pairID, genre, 4 parse columns, sentence1, sentence2,
    # label1 (.. label5 in dev), gold_label; dev_matched.tsv is the test set.
    TaskSpec(name="mnli", text_fields=_PAIR,
             label_names=("entailment", "neutral", "contradiction"),
             mlm_template="{text_a} ? {mask} , {text_b}", mlm_label_words=("Yes", "Maybe", "No"),
             clm_template="{text_a} {text_b} They are",
             clm_label_words=("Yes", "Maybe", "No"), metric="accuracy", protocol="glue",
             hub=_glue("mnli", ("premise", "hypothesis"), test="validation_matched"),
             local=_glue_tsv(("mnli", "MNLI"), ("sentence1", "sentence2"), label="gold_label",
                             test="dev_matched.tsv")),
    # MRPC: Quality (0/1), #1 ID, #2 ID, #1 String, #2 String.
    TaskSpec(name="mrpc", text_fields=_PAIR, label_names=("not_equivalent", "equivalent"),
             mlm_template="{text_a} ? {mask} , {text_b}", mlm_label_words=("No", "Yes"),
             clm_template="{text_a} {text_b} They are",
             clm_label_words=("No", "Yes"), metric="acc_f1", protocol="glue",
             hub=_glue("mrpc", ("sentence1", "sentence2")),
             local=_glue_tsv(("mrpc", "MRPC"), ("#1 String", "#2 String"), label="Quality",
                             values=("0", "1"))),
    # QQP: id, qid1, qid2, question1, question2, is_duplicate (0/1).
    TaskSpec(name="qqp", text_fields=_PAIR, label_names=("not_duplicate", "duplicate"),
             mlm_template="{text_a} {mask} , {text_b}", mlm_label_words=("No", "Yes"),
             clm_template="{text_a} {text_b} They are",
             clm_label_words=("No", "Yes"), metric="acc_f1", protocol="glue",
             hub=_glue("qqp", ("question1", "question2")),
             local=_glue_tsv(("qqp", "QQP"), ("question1", "question2"), label="is_duplicate",
                             values=("0", "1"))),
):
    register_task(_spec)
del _spec
