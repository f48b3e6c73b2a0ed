"""The committed Section 4 studies (``benchmarks/results/section4/<task>_<model>/``, written
by ``python -m lpt_probe.section4 --export``): their verdicts follow from their own tables,
the README and the Section 4 guide show exactly their ``--table``, and every number those
pages quote about them (three decimals) is in those files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lpt_probe.analysis.section4.study import claims_markdown, study_examples
from lpt_probe.analysis.section4.tables import cost_markdown, learned_markdown
from lpt_probe.analysis.section4.verdicts import judge

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "section4"
STUDIES = sorted(p for p in RESULTS.iterdir() if (p / "claims.csv").is_file()) if RESULTS.is_dir() else []
GUIDE = REPO / "docs" / "guides" / "section4.md"
NUMBER = re.compile(r"(?<![\w.])[+-]?\d+\.\d{3}(?!\d)")


def recompute(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    meta = json.loads((folder / "section4.json").read_text())
    ex = study_examples(folder, pd.read_csv(folder / "sweep" / "sweep.csv"), pd.read_csv(folder / "mi" / "pvi_top.csv"),
                        int(meta["num_hidden_layers"]))
    claims, contrasts, _, _ = judge(ex, meta["settings"]["bootstrap"])
    return claims, contrasts


def test_studies_are_committed():
    assert STUDIES, f"no committed study under {RESULTS} (python -m lpt_probe.section4 --export DEST --out STUDY)"


@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_committed_verdicts_follow_from_their_own_tables(study):
    claims = pd.read_csv(study / "claims.csv").fillna("")
    again, contrasts = recompute(study)
    assert list(again["verdict"]) == list(claims["verdict"])
    assert list(again["contrasts"]) == list(claims["contrasts"])
    committed = pd.read_csv(study / "contrasts.csv")
    assert np.allclose(committed["estimate"], contrasts["estimate"]) and list(committed["side"]) == list(
        contrasts["side"])


def shown_table(text: str) -> str | None:
    """The markdown table that starts with the Section 4 header row in ``text``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| paper's claim |")), None)
    if start is None:
        return None
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("page", [REPO / "README.md", GUIDE], ids=["README", "section4 guide"])
def test_the_page_shows_the_table_of_the_committed_studies(page):
    table = shown_table(page.read_text())
    assert table is not None, f"{page.name} shows no Section 4 table"
    header = table.splitlines()[0]
    shown = [c.strip() for c in header.strip("|").split("|")[2:]]
    by_name = {f"{pd.read_csv(p / 'claims.csv')['task'].iloc[0]} / {pd.read_csv(p / 'claims.csv')['model'].iloc[0]}":
               p for p in STUDIES}
    assert set(shown) <= set(by_name), f"{page.name} shows studies {set(shown) - set(by_name)} not committed"
    assert table == claims_markdown([by_name[s] for s in shown])
    folders = [by_name[s] for s in shown]
    if page == GUIDE:  # the guide also shows the gate and the cost, as --table prints them
        assert learned_markdown(folders) in page.read_text() and cost_markdown(folders) in page.read_text()


def quoted_numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def file_numbers() -> set[str]:
    """Every number of the committed studies' tables as the pages write them (3 decimals,
    with and without a sign), and every such number inside their text cells."""
    out: set[str] = set()
    for study in STUDIES:
        for csv in study.rglob("*.csv"):
            if csv.name in ("pvi_top.csv", "influence_examples.csv", "test_predictions.csv"):
                continue
            df = pd.read_csv(csv)
            for col in df.columns:
                if pd.api.types.is_numeric_dtype(df[col]):
                    for v in df[col].dropna():
                        out |= {f"{v:.3f}", f"{v:+.3f}"}
                else:
                    for v in df[col].dropna().astype(str):
                        out |= set(NUMBER.findall(v))
    return out


def section4_text() -> str:
    """The README's Section 4 section and the guide's results section."""
    readme = (REPO / "README.md").read_text()
    part = readme[readme.index("## Section 4 in one command"):readme.index("## Table 2 beside the paper")]
    guide = GUIDE.read_text()
    return part + guide[guide.index("## Results on the local tasks"):guide.index("## Paper scale on a GPU")]


def test_every_number_the_pages_quote_about_section4_is_in_the_committed_files():
    missing = sorted(set(quoted_numbers(section4_text())) - file_numbers())
    assert not missing, f"numbers quoted in the README / Section 4 guide but in no committed study file: {missing}"
