"""What the studies return to Python: tables, the command's text, a figure, a notebook view.

``run_mi`` returns an :class:`MIResult`, ``run_influence`` an :class:`InfluenceResult`,
``run_section4`` a :class:`Section4Result`. Each holds the study's tables as pandas
DataFrames (the CSVs it wrote), and has

- ``.summary()``: the text the command prints (the same function makes both);
- ``.plot()``: the command's figure as a matplotlib ``Figure`` (nothing is written; the
  command saves this figure as its PDF);
- ``_repr_markdown_`` / ``_repr_html_``: a notebook cell that ends with the result shows
  the summary and the folder.

Backwards compatible with what the functions returned before: ``MIResult`` and
``InfluenceResult`` are named tuples, so ``run, tables, meta = run_mi(cfg)`` and ``run,
table, meta = run_influence(cfg)`` still unpack; ``Section4Result`` is the dict of tables
it was (``res["claims"]``), with the methods added.

Drawing stays apart from computing (STYLE.md): this module imports neither torch nor
matplotlib; ``.plot()`` loads ``lpt_probe.viz`` when called.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

__all__ = ["MIResult", "InfluenceResult", "Section4Result"]


def notebook_views(title: str):
    """A result class's ``_repr_markdown_`` and ``_repr_html_``: ``title``, its folder and
    its ``summary()`` (assigned in each class body: the named tuples take no mixin)."""

    def markdown(self) -> str:
        return f"**{title}** (`{self.out}`)\n\n```text\n{self.summary()}\n```\n"

    def html_(self) -> str:
        return (f"<p><b>{html.escape(title)}</b> (<code>{html.escape(str(self.out))}</code>)</p>"
                f"<pre>{html.escape(self.summary())}</pre>")

    return markdown, html_


def _viz():
    from .. import viz  # here: plotting (matplotlib) loads only for a figure

    return viz


class MIResult(NamedTuple):
    """``run_mi``'s result: ``run`` (the ``MIRun``: settings ``run.cfg``, folder ``run.out``),
    ``tables`` (``mi``, ``mdl``, ``pvi``, ``diff``: DataFrames of the CSVs written) and ``meta``
    (``run.json``). Unpacks as ``run, tables, meta``."""

    run: Any
    tables: dict[str, pd.DataFrame]
    meta: dict

    @property
    def out(self) -> Path:
        """The folder the analysis wrote."""
        return Path(self.run.out)

    @property
    def mi(self) -> pd.DataFrame:
        """``mi.csv``: I(h;y) per condition, hidden state, control and probe seed (long format)."""
        return self.tables["mi"]

    @property
    def diff(self) -> pd.DataFrame:
        """``mi_diff.csv``: each late prompt minus the frozen model per hidden state, paired
        bootstrap interval and ``effect``."""
        return self.tables["diff"]

    @property
    def mdl(self) -> pd.DataFrame:
        return self.tables["mdl"]

    @property
    def pvi(self) -> pd.DataFrame:
        return self.tables["pvi"]

    def summary(self) -> str:
        """The tables the ``mi`` command prints (``lpt_probe.analysis.mi.study.summary_table``,
        through the run: this module imports no study module)."""
        return self.run.summary(self.mi, self.diff)

    def plot(self, ax=None):
        """``mi_by_layer.pdf``'s figure: I(h;y) per hidden state, a line per prompt layer and
        the controls (``lpt_probe.viz.plot_mi_by_layer``). Returns the ``Figure``."""
        viz = _viz()
        with viz.paper_style():
            ax = viz.plot_mi_by_layer(self.mi, ax=ax)
            ax.set_title(f"{self.mi['task'].iloc[0]} / {self.mi['model'].iloc[0]} / {self.mi['probe'].iloc[0]} probe")
        return ax.figure

    _repr_markdown_, _repr_html_ = notebook_views("I(h;y) per hidden state")


class InfluenceResult(NamedTuple):
    """``run_influence``'s result: ``run`` (the ``InfluenceRun``), ``table`` (``influence.csv``
    as a DataFrame) and ``meta`` (``run.json``). Unpacks as ``run, table, meta``."""

    run: Any
    table: pd.DataFrame
    meta: dict

    @property
    def out(self) -> Path:
        return Path(self.run.out)

    def summary(self) -> str:
        """The table the ``influence`` command prints (``lpt_probe.analysis.influence.study.summary_table``,
        through the run: this module imports no study module)."""
        return self.run.summary(self.table)

    def plot(self):
        """``influence_by_layer.pdf``'s figure (``lpt_probe.viz.plot_influence_by_layer``). Returns the ``Figure``."""
        viz = _viz()
        with viz.paper_style():
            fig = viz.plot_influence_by_layer(self.table)
            fig.suptitle(f"{self.table['task'].iloc[0]} / {self.table['model'].iloc[0]} / trained prompts")
        return fig

    _repr_markdown_, _repr_html_ = notebook_views("influence per hidden state")


class Section4Result(dict):
    """``run_section4``'s result: the dict of tables it always was (``sweep``, ``curves``,
    ``mi``, ``diff``, ``influence``, ``claims``, ``contrasts``, ``learned``, ``meta``, ...),
    plus ``out`` (the study's folder), :meth:`summary` and :meth:`plot`."""

    def __init__(self, tables: dict, out: str | Path):
        super().__init__(tables)
        self.out = Path(out)

    def summary(self) -> str:
        """The lines the ``section4`` command prints: each claim, its verdict and contrasts;
        which prompts learned; the linear-head note."""
        claims = self["claims"]
        width = max(len(c) for c in claims["claim"])
        lines = [f"{r.claim:<{width}}  {r.verdict:<15}  {r.contrasts}" + (f" ({r.reason})" if r.reason else "")
                 for r in claims.itertuples()]
        gate = self["learned"]
        if len(gate):
            lines.append("learned (test accuracy vs the majority class " + f"{gate['majority_rate'].iloc[0]:.3f}): " +
                         ", ".join(f"PL{int(g.prompt_layer)} {g.test_accuracy:.3f} [{g.ci_low:.3f}, {g.ci_high:.3f}]"
                                   f"{'' if g.learned else ' not learned'}" for g in gate.itertuples()))
        if claims["head"].iloc[0] == "classifier":
            lines.append(f"note: {claims['head_note'].iloc[0]}")
        return "\n".join(lines)

    def plot(self):
        """``section4.pdf``'s figure: 2 x 3 panels (``lpt_probe.viz.plot_section4``). Returns the ``Figure``."""
        viz = _viz()
        with viz.paper_style():
            fig = viz.plot_section4(self["sweep"][self["sweep"]["status"] == "complete"], self["curves"],
                                    self["mi"], self["influence"])
            inf = self["influence"]
            fig.suptitle(f"{inf['task'].iloc[0]} / {inf['model'].iloc[0]}")
        return fig

    _repr_markdown_, _repr_html_ = notebook_views("Section 4 claims")
