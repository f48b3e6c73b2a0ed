"""What the analyses return to Python (``lpt_probe.analysis.results``), on the committed
TREC / MiniLM Section 4 study's tables (no model, no training): the tables as DataFrames,
``summary()`` equal to what the commands print, ``plot()`` a Figure, the notebook reprs, and
the old tuple / dict forms still work."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import lpt_probe  # noqa: E402
from lpt_probe import store  # noqa: E402
from lpt_probe.analysis.influence.study import InfluenceRun  # noqa: E402
from lpt_probe.analysis.influence.study import summary_table as influence_summary  # noqa: E402
from lpt_probe.analysis.mi.study import MIConfig, MIRun, summary_table  # noqa: E402
from lpt_probe.analysis.results import InfluenceResult, MIResult, Section4Result  # noqa: E402

STUDY = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "section4" / "trec_minilm"


def _mi_result(tmp_path) -> MIResult:
    settings = json.loads((STUDY / "section4.json").read_text())["settings"]
    cfg = MIConfig(task="trec", seeds=tuple(settings["seeds"]), jobs=1)
    run = SimpleNamespace(cfg=cfg, out=str(tmp_path))
    run.summary = lambda mi, diff=None: MIRun.summary(run, mi, diff)  # the run's own method, without a model
    frames = {"mi": store.read_csv(STUDY / "mi" / "mi.csv"), "diff": store.read_csv(STUDY / "mi" / "mi_diff.csv"),
              "mdl": pd.DataFrame(), "pvi": pd.DataFrame()}
    return MIResult(run, frames, {"status": "complete"})


def test_mi_result_tables_summary_plot_and_reprs(tmp_path):
    res = _mi_result(tmp_path)
    run, tables, meta = res  # what run_mi returned before: still unpacks
    assert run is res.run and tables is res.tables and meta["status"] == "complete"
    assert isinstance(res.mi, pd.DataFrame) and res.diff is res.tables["diff"] and res.out == tmp_path
    text = res.summary()
    assert text == summary_table(res.mi, run.cfg, res.diff)  # the command prints this function's text
    assert text.startswith("I(h;y) in bits") and "late prompt minus frozen model" in text
    fig = res.plot()
    try:
        assert isinstance(fig, matplotlib.figure.Figure) and fig.axes and fig.axes[0].lines
        assert "trec / minilm" in fig.axes[0].get_title()
    finally:
        plt.close(fig)
    assert text in res._repr_markdown_() and str(tmp_path) in res._repr_markdown_()
    assert "<pre>" in res._repr_html_() and "I(h;y) in bits" in res._repr_html_()


def test_influence_and_section4_results(tmp_path):
    table = store.read_csv(STUDY / "influence" / "influence.csv")
    inf = InfluenceResult(SimpleNamespace(out=str(tmp_path), summary=InfluenceRun.summary), table, {})
    run, same, meta = inf
    assert same is table and inf.summary() == influence_summary(table)
    fig = inf.plot()
    plt.close(fig)
    assert isinstance(fig, matplotlib.figure.Figure)
    tables = {"sweep": store.read_csv(STUDY / "sweep" / "sweep.csv"), "curves": store.read_csv(STUDY / "sweep" /
                                                                                                "curves.csv"),
              "mi": store.read_csv(STUDY / "mi" / "mi.csv"), "influence": table,
              "claims": store.read_csv(STUDY / "claims.csv"), "learned": store.read_csv(STUDY / "learned.csv")}
    res = Section4Result(tables, STUDY)
    assert res["claims"] is tables["claims"] and set(res) == set(tables)  # still the dict it was
    lines = res.summary().splitlines()
    assert len(lines) >= len(tables["claims"]) and all(v in res.summary() for v in tables["claims"]["verdict"])
    assert any(line.startswith("learned (test accuracy") for line in lines)
    fig = res.plot()
    plt.close(fig)
    assert len(fig.axes) >= 6 and "Section 4 claims" in res._repr_markdown_()


def test_results_and_helpers_are_public():
    for name in ("MIResult", "InfluenceResult", "Section4Result", "summary_table", "probe_information"):
        assert name in lpt_probe.__all__
    assert lpt_probe.summary_table is summary_table
    assert callable(lpt_probe.probe_information)


@pytest.mark.parametrize("fn", ["run_mi", "run_influence", "run_section4"])
def test_the_analyses_declare_their_result(fn):
    import typing

    func = getattr(lpt_probe, fn)
    ret = typing.get_type_hints(func)["return"]
    assert ret in (MIResult, InfluenceResult, Section4Result)


def test_the_readme_quickstart_quotes_the_committed_demo_and_rte_results():
    """The Quickstart's demo tables are the committed measurement's (benchmarks/bench_demo.py:
    demo_time.md), its intervals those of the kept ``mi_diff.csv``, its time that file's; the
    RTE section's table and phase times are benchmarks/results/mi_time.md's."""
    import re

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    quick = readme[readme.index("## Quickstart"):readme.index("## Section 4 in one command")]
    results = repo / "benchmarks" / "results"
    demo = json.loads((results / "demo_time.json").read_text())
    log = demo["log"].replace("OUT/", "artifacts/demo/trec-minilm/")
    shown = quick[quick.index("```text\nI(h;y)") + 8:]
    shown = shown[:shown.index("```")]
    assert shown in log and "*" in shown  # the tables as printed, with at least one effect
    assert f"{demo['wall_seconds']:.0f} s after setup" in quick and demo["within_goal"]
    diff = pd.read_csv(results / "demo" / "mi_diff.csv")
    assert len(diff) == len(diff.drop_duplicates(["prompt_layer", "layer"]))  # one row each (one seed)
    for pl, layer in ((4, 6), (1, 6), (4, 4)):
        r = diff[(diff.prompt_layer == pl) & (diff.layer == layer)].iloc[0]
        assert f"{r.diff_bits:+.3f} bits [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" in quick, (pl, layer)
    mi_time = (results / "mi_time.md").read_text()
    part = mi_time[mi_time.index("## `python -m lpt_probe.mi --task rte --data-dir ../shared/data`"):]
    head, table = part.split("```\n")[0], part.split("```\n")[1]
    rte = quick[quick.index("### The paper's task: RTE"):]
    assert table.replace(re.search(r"/tmp/\S+?/mi/", table).group(0), "artifacts/mi/rte/minilm/") in rte
    for seconds in re.findall(r"(?:extract|probe|train) (\d+)", head) + [head.split(" s on")[0].split()[-1]]:
        assert f"{seconds} s" in rte, seconds
