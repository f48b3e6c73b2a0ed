"""Property tests (hypothesis, issue 34) of the registered tasks' readers on the first lines
of their real files in ../shared/data: whatever bytes a file gains, ``load_task`` returns a
task or raises one ``TaskError`` line. The custom-task loader's properties are in
tests/unit/test_task_properties.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_task_properties import SETTINGS, one_line

from lpt_probe.data.sources import TaskError


# -- the readers of the registered tasks' local files: TREC lines, GLUE TSV, one file per class --------------
SOURCES = {"trec": ("trec", ["train_5500.label", "TREC_10.label"]), "rte": ("rte", ["train.tsv", "dev.tsv"]),
           "subj": ("subj", ["subj.objective", "subj.subjective"])}


@pytest.fixture(scope="module")
def heads(data_dir) -> dict[str, dict[str, bytes]]:
    """The first 60 lines of each local file of three registered tasks (a small valid copy)."""
    return {task: {name: b"".join((data_dir / folder / name).read_bytes().splitlines(keepends=True)[:60])
                   for name in names} for task, (folder, names) in SOURCES.items()}


@SETTINGS
@given(task=st.sampled_from(sorted(SOURCES)), which=st.integers(0, 1),
       extra=st.one_of(st.binary(max_size=120), st.lists(st.text(max_size=40), max_size=4).map(
           lambda ls: "\n".join(ls).encode("utf-8"))))
def test_any_bytes_in_a_registered_tasks_files_load_or_are_one_task_error(heads, task, which, extra):
    from lpt_probe.data.sources import load_task

    folder, names = SOURCES[task]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / folder).mkdir()
        for i, name in enumerate(names):
            (Path(tmp) / folder / name).write_bytes(heads[task][name] + (extra if i == which else b""))
        try:
            data = load_task(task, data_dir=tmp, dev_size=4)
        except TaskError as exc:
            one_line(exc)
        else:
            assert len(data.test) > 0
