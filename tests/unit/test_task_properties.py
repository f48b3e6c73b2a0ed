"""Property tests (hypothesis) of the custom-task loader and its readers (issue 34): whatever a
task's YAML or data files hold, ``load_custom_task`` returns a task or raises one
``TaskError`` line (naming the file, line or key), never another exception. The registered
tasks' readers on their real files: tests/integration/test_task_properties_real_data.py."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpt_probe.data.sources import _CUSTOM_KEYS, TaskError, load_custom_task

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = {"name": "toy", "train": "train.csv", "test": "test.csv", "text_columns": ["text"], "label_column": "label",
        "labels": ["neg", "pos"], "mlm_template": "{text_a} It was {mask} .", "mlm_label_words": ["bad", "good"],
        "clm_template": "{text_a} It was", "clm_label_words": ["bad", "good"]}
ROWS = [f"{w} movie {i},{lab}" for i in range(12) for w, lab in (("great", "pos"), ("awful", "neg"))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["train.csv", "test.csv", "text", "label", "neg", "pos", "{text_a} {mask}", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, TaskError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc) and str(exc), repr(exc)


def load(folder: Path, yaml_text: str, files: dict[str, str | bytes]):
    for name, data in files.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    (folder / "task.yaml").write_text(yaml_text, encoding="utf-8")
    try:
        spec, data = load_custom_task(folder / "task.yaml", dev_size=4)
    except TaskError as exc:
        one_line(exc)
        return None
    assert len(data.train) + len(data.dev) > 0 and spec.num_labels >= 2
    return spec


def table(rows: list[str]) -> dict[str, str]:
    return {"train.csv": "\n".join(["text,label", *rows]) + "\n",
            "test.csv": "\n".join(["text,label", *ROWS[:6]]) + "\n"}


def test_the_good_task_loads():  # the baseline every property varies
    with tempfile.TemporaryDirectory() as tmp:
        assert load(Path(tmp), yaml.safe_dump(GOOD), table(ROWS)) is not None


@SETTINGS
@given(key=st.sampled_from(_CUSTOM_KEYS), value=values)
def test_any_value_of_any_yaml_key_loads_or_is_one_task_error(key, value):
    with tempfile.TemporaryDirectory() as tmp:
        load(Path(tmp), yaml.safe_dump({**GOOD, key: value}), table(ROWS))


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_yaml_text_loads_or_is_one_task_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        load(Path(tmp), text, table(ROWS))


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from([*_CUSTOM_KEYS, "extra"]), values, max_size=8))
def test_any_yaml_mapping_loads_or_is_one_task_error(doc):
    with tempfile.TemporaryDirectory() as tmp:
        load(Path(tmp), yaml.safe_dump(doc), table(ROWS))


@SETTINGS
@given(extra=st.lists(st.text(max_size=30), max_size=6), raw=st.binary(max_size=80))
def test_any_csv_rows_load_or_are_one_task_error(extra, raw):
    with tempfile.TemporaryDirectory() as tmp:
        files = table(ROWS + extra)
        load(Path(tmp), yaml.safe_dump(GOOD), files)
        load(Path(tmp), yaml.safe_dump(GOOD), {**files, "test.csv": raw})  # any bytes at all


@SETTINGS
@given(rows=st.lists(st.one_of(st.dictionaries(st.sampled_from(["text", "label", "x"]), values, max_size=3),
                               values), max_size=6))
def test_any_jsonl_lines_load_or_are_one_task_error(rows):
    lines = [json.dumps({"text": f"{w} movie {i}", "label": lab}) for i in range(12)
             for w, lab in (("great", "pos"), ("awful", "neg"))]
    with tempfile.TemporaryDirectory() as tmp:
        files = {"train.jsonl": "\n".join(lines + [json.dumps(r) for r in rows]) + "\n",
                 "test.jsonl": "\n".join(lines[:6]) + "\n"}
        load(Path(tmp), yaml.safe_dump({**GOOD, "train": "train.jsonl", "test": "test.jsonl"}), files)


@pytest.mark.parametrize("key, value, message", [
    ("labels", 5, "labels is 5, expected a list of at least two label values"),
    ("labels", "np", "labels is 'np', expected a list"),  # never split into characters
    ("text_columns", 5, "text_columns is 5, expected one or two column names"),
    ("train", 123, "train is 123, expected one file path"),
    ("train", ["a.csv"], "train is ['a.csv'], expected one file path"),
    ("mlm_label_words", ["bad"], "mlm_label_words is ['bad'], expected a list of 2 words"),
])
def test_the_reported_yaml_mistakes_name_the_key(key, value, message):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        load(folder, yaml.safe_dump(GOOD), table(ROWS))
        (folder / "task.yaml").write_text(yaml.safe_dump({**GOOD, key: value}))
        with pytest.raises(TaskError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_custom_task(folder / "task.yaml", dev_size=4)


@pytest.mark.parametrize("text", [["a", "b"], {"t": 1}, 5])
def test_jsonl_text_that_is_not_a_string_is_refused(text):
    lines = [json.dumps({"text": f"{w} movie {i}", "label": lab}) for i in range(12)
             for w, lab in (("great", "pos"), ("awful", "neg"))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.jsonl").write_text("\n".join([*lines, json.dumps({"text": text, "label": "pos"})]) + "\n")
        (folder / "test.jsonl").write_text("\n".join(lines[:6]) + "\n")
        (folder / "task.yaml").write_text(yaml.safe_dump({**GOOD, "train": "train.jsonl", "test": "test.jsonl"}))
        with pytest.raises(TaskError, match=f"train.jsonl:25: text column 'text' holds {type(text).__name__}"):
            load_custom_task(folder / "task.yaml", dev_size=4)
