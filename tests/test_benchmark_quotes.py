"""Numbers that docs/benchmarks.md quotes from a committed result file equal that file."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generate_section_quotes_generate_json():
    record = json.loads((REPO / "benchmarks" / "results" / "generate.json").read_text())
    rows = {r["input_tokens"]: r for r in record["rows"]}
    doc = " ".join((REPO / "docs" / "benchmarks.md").read_text().split())
    cached = [rows[n]["cached_ms_per_token"] for n in (16, 64, 256)]
    uncached = [rows[n]["uncached_ms_per_token"] for n in (16, 64, 256)]
    lo, hi = record["load_average"]
    assert f"load average {lo:.1f} to {hi:.1f}" in doc
    assert "a new token took {:.1f}, {:.1f} and {:.1f} ms after 16, 64 and 256 input tokens".format(*cached) in doc
    assert f"({cached[2] / cached[0]:.1f}x from the shortest to the longest input)" in doc
    assert "without it {:.1f}, {:.1f} and {:.1f} ms".format(*uncached) + f" ({uncached[2] / uncached[0]:.1f}x)" in doc
    assert all(r["same_output"] for r in rows.values())  # "the same tokens at every length"
    assert "The cached and uncached outputs were the same tokens at every length." in doc
