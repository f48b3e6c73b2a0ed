"""The data classes every task is read into: ``Example`` (one labelled text or pair),
``Split`` (a named, fingerprinted tuple of examples) and ``TaskData`` (a task's three
splits with what was skipped and how they were drawn). ``lpt_probe.data.sources`` fills
them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..store import fingerprint
from .tasks import TaskSpec, json_ready

__all__ = ["Example", "Split", "TaskData"]


@dataclass(frozen=True)
class Example:
    id: str  # unique within a task: "<file>:<line>" or "<hub split>:<idx>"
    texts: tuple[str, ...]  # (text_a,) or (text_a, text_b)
    label: int  # index into TaskSpec.label_names

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Example.id must be a non-empty string, got {self.id!r}")
        if not (1 <= len(self.texts) <= 2) or not all(isinstance(t, str) for t in self.texts):
            raise ValueError(f"Example {self.id}: texts must be 1 or 2 strings, got {self.texts!r}")
        if not isinstance(self.label, (int, np.integer)) or self.label < 0:
            raise ValueError(f"Example {self.id}: label must be an int >= 0, got {self.label!r}")


def _record(ex: Example) -> str:
    return "\x1f".join((ex.id, str(ex.label), *ex.texts))


@dataclass(frozen=True)
class Split:
    name: str  # "train", "dev" or "test"
    examples: tuple[Example, ...]
    fingerprint: str = ""  # io.fingerprint of (id, label, texts) records; computed if empty

    def __post_init__(self):
        object.__setattr__(self, "examples", tuple(self.examples))
        ids = [e.id for e in self.examples]
        if len(set(ids)) != len(ids):
            dup = [i for i, n in Counter(ids).items() if n > 1][:5]
            raise ValueError(f"split {self.name!r} repeats example ids {dup}")
        fp = fingerprint(_record(e) for e in self.examples)
        if self.fingerprint and self.fingerprint != fp:
            raise ValueError(f"split {self.name!r}: fingerprint {self.fingerprint!r} does not "
                             f"match its examples ({fp!r})")
        object.__setattr__(self, "fingerprint", fp)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples], dtype=np.int64)  # [n]

    def label_counts(self) -> dict[int, int]:
        return dict(sorted(Counter(e.label for e in self.examples).items()))


@dataclass
class TaskData:
    task: TaskSpec  # the spec the data were read for
    train: Split
    dev: Split
    test: Split
    source: str  # "hub", "local" or "custom"
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> example ids
    info: dict[str, Any] = field(default_factory=dict)  # protocol, seeds, sizes, files, overlap

    def __post_init__(self):
        for split in self.splits():
            if len(split) == 0:
                raise ValueError(f"{self.task.name}: the {split.name} split is empty; check the "
                                 f"data files, shots, dev_size and max_examples")
            bad = [e.id for e in split if e.label >= self.task.num_labels][:5]
            if bad:
                raise ValueError(f"{self.task.name}: labels out of range in {split.name}: {bad}")

    def splits(self) -> tuple[Split, Split, Split]:
        return (self.train, self.dev, self.test)

    def fingerprints(self) -> dict[str, str]:
        return {s.name: s.fingerprint for s in self.splits()}

    def to_meta(self) -> dict[str, Any]:
        """JSON-able facts for ``meta.json``: task, source, sizes, fingerprints, skips, info."""
        return json_ready({
            "task": self.task.name, "source": self.source, "fingerprints": self.fingerprints(),
            "sizes": {s.name: len(s) for s in self.splits()},
            "label_counts": {s.name: {self.task.label_names[k]: v
                                      for k, v in s.label_counts().items()}
                             for s in self.splits()},
            "skipped": self.skipped, "info": self.info, "spec": self.task.to_dict()})
