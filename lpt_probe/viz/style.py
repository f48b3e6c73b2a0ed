"""The house style of every figure, and the helpers the figure modules share. No torch.

Start with :func:`paper_style` (rcParams for print: embedded TrueType fonts, 8 pt, a
colour-blind-safe palette, one- or two-column sizes) and :func:`save_figure` (atomic PDF,
optionally a PNG beside it). The figure modules (``viz.sweep``, ``viz.mi``,
``viz.projection``, ``viz.efficiency``) take a tidy DataFrame and an optional ``ax``,
draw one figure and return the Axes (the Figure for multi-panel ones); the helpers here
check columns (:func:`require_columns`), refuse tables that mix tasks or models
(:func:`single_group`: averages are never taken across them), and draw mean ± std lines.

Layer numbering (``lpt_probe.layers``): hidden state 0 is the embedding output; prompt
layer PL=k joins hidden state k-1; PL=1 is classic prompt tuning ("PT").
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..store import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["axis_label",
           "COLUMN_WIDTHS_IN", "PaperStyle", "paper_style", "figure_size", "save_figure", "require_columns",
           "single_group", "nonempty", "complete_rows", "new_axes", "panel_axes", "palette", "label_for",
           "group_stats", "draw_line", "integer_x", "layer_ticks", "hue_order"]

COLUMN_WIDTHS_IN = {"one-column": 3.3, "two-column": 6.9}  # ACL two-column page, inches
_CONTEXT_SCALE = {"paper": 1.0, "notebook": 1.25, "talk": 1.6}
GENERATOR_LABELS = {"none": "no generator", "npg": "NPG", "appg": "APPG", "mppg": "MPPG"}
METHOD_LABELS = {"lpt": "LPT", "prompt-tuning": "prompt tuning", "model-tuning": "model tuning",
                 "bitfit": "BitFit", "lora": "LoRA", "p-tuning-v2": "P-tuning v2", "prefix-tuning": "prefix tuning",
                 "adapter": "Adapter", "adapterdrop": "AdapterDrop", "s-idpg": "S-IDPG-PHM",
                 "frozen": "no prompt", "random_weights": "random weights"}
REFERENCE_STYLES = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2))]
AXIS_LABELS = {
    "test_metric": "test accuracy", "dev_metric": "dev accuracy", "train_loss": "train loss",
    "mi_bits": "I(h; y) [bits]", "ce_bits": "probe cross-entropy [bits]", "accuracy": "accuracy",
    "macro_f1": "macro F1", "tokens_per_second": "training tokens / s",
    "peak_memory_mb": "peak memory [MB]", "wall_seconds": "wall time [s]", "steps": "training steps",
}
METRIC_WORDS = {"accuracy": "accuracy", "acc_f1": "mean of accuracy and F1"}


def axis_label(column: str, df=None) -> str:
    """The axis label of a column; ``test_metric`` / ``dev_metric`` name the task's metric
    when the table says which (``metric_name``: accuracy, or acc_f1 for MRPC/QQP)."""
    if column in ("test_metric", "dev_metric") and df is not None and "metric_name" in getattr(df, "columns", ()):
        names = set(df["metric_name"].dropna().astype(str))
        if len(names) == 1 and names != {"accuracy"}:
            return f"{column.split('_')[0]} {METRIC_WORDS.get(names.pop(), 'metric')}"
        if len(names) > 1:
            return f"{column.split('_')[0]} metric"
    return AXIS_LABELS.get(column, column.replace("_", " "))


PROMPT_LAYER = "prompt layer (PL)"
HIDDEN_STATE = "hidden state (0 = embeddings)"
MARKERS = "o^sDvP<>X"
CONTROL_COLOURS = {"shuffled labels": "0.55", "random weights": "#ca9161"}


# -- style ----------------------------------------------------------------------------
class PaperStyle:
    """rcParams applied by :func:`paper_style`; ``with`` restores the previous ones on exit."""

    def __init__(self, rc: Mapping[str, Any]):
        self.rc = dict(rc)
        self._saved = {k: v for k, v in mpl.rcParams.copy().items() if k != "backend"}
        mpl.rcParams.update(self.rc)

    def __enter__(self) -> "PaperStyle":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        mpl.rcParams.update(self._saved)


def figure_size(width: str | float = "one-column", aspect: float = 0.72) -> tuple[float, float]:
    """(width, height) in inches: ``"one-column"`` 3.3 in, ``"two-column"`` 6.9 in, or a number."""
    if isinstance(width, str):
        if width not in COLUMN_WIDTHS_IN:
            raise ValueError(f"figure width {width!r}: use one of {sorted(COLUMN_WIDTHS_IN)} or inches")
        width = COLUMN_WIDTHS_IN[width]
    return float(width), float(width) * aspect


def paper_style(context: str = "paper") -> PaperStyle:
    """Apply the house style; use as ``with paper_style(): ...`` to undo it afterwards.

    Vector PDFs with TrueType (Type 42) fonts embedded, DejaVu Sans at 8 pt for
    ``context="paper"`` (x1.25 ``"notebook"``, x1.6 ``"talk"``), seaborn's "colorblind"
    palette, light grid, no top/right spines, constrained layout, one-column size.
    """
    if context not in _CONTEXT_SCALE:
        raise ValueError(f"context {context!r}: use one of {sorted(_CONTEXT_SCALE)}")
    s, base = _CONTEXT_SCALE[context], 8.0 * _CONTEXT_SCALE[context]
    rc = {
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "mathtext.fontset": "dejavusans",
        "font.size": base, "axes.titlesize": base, "axes.labelsize": base, "figure.titlesize": base,
        "xtick.labelsize": base - s, "ytick.labelsize": base - s, "legend.fontsize": base - s,
        "legend.title_fontsize": base - s,
        "axes.linewidth": 0.6 * s, "grid.linewidth": 0.4 * s, "lines.linewidth": 1.2 * s,
        "lines.markersize": 3.5 * s, "patch.linewidth": 0.5 * s,
        "xtick.major.width": 0.6 * s, "ytick.major.width": 0.6 * s,
        "xtick.major.size": 2.5 * s, "ytick.major.size": 2.5 * s, "xtick.major.pad": 2.0, "ytick.major.pad": 2.0,
        "axes.labelpad": 2.5, "axes.titlepad": 4.0, "axes.ymargin": 0.08,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "axes.axisbelow": True,
        "grid.color": "0.9", "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
        "legend.frameon": False, "legend.handlelength": 1.8, "legend.labelspacing": 0.3,
        "legend.borderaxespad": 0.3, "legend.columnspacing": 1.0, "legend.handletextpad": 0.5,
        "figure.figsize": figure_size("one-column"), "figure.dpi": 100, "figure.constrained_layout.use": True,
        "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.02, "image.cmap": "viridis",
    }
    return PaperStyle(rc)


def _legends(fig: Figure) -> list:
    """Every legend of the figure, including extra ones kept with ``ax.add_artist``
    (which a tight bounding box would otherwise clip)."""
    from matplotlib.legend import Legend

    extra = [a for ax in fig.axes for a in ax.get_children() if isinstance(a, Legend)] + list(fig.legends)
    return extra + [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]


def save_figure(fig: Figure, path: str | os.PathLike, png: bool = False, dpi: int = 200) -> list[Path]:
    """Write ``fig`` as PDF at ``path`` (and a ``dpi`` PNG beside it), each atomically.

    Returns the paths written, PDF first. ``path`` must end in ``.pdf`` (or have no
    suffix). The PDF carries no creation date, so the same figure gives the same bytes.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".pdf")
    if path.suffix.lower() != ".pdf":
        raise ValueError(f"save_figure writes a PDF; {str(path)!r} should end in .pdf (use png=True for a PNG)")
    buf = io.BytesIO()
    quiet = logging.getLogger("fontTools")  # subsetting fonts logs every glyph at INFO
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        # bbox_inches="tight": legends placed outside the axes are never clipped
        fig.savefig(buf, format="pdf", metadata={"Creator": "lpt_probe", "CreationDate": None},
                    bbox_inches="tight", pad_inches=0.02, bbox_extra_artists=_legends(fig))
    finally:
        quiet.setLevel(level)
    out = [atomic_write_bytes(path, buf.getvalue())]
    if png:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.02,
                    bbox_extra_artists=_legends(fig))
        out.append(atomic_write_bytes(path.with_suffix(".png"), buf.getvalue()))
    logger.debug("wrote %s", ", ".join(map(str, out)))
    return out


# -- helpers ----------------------------------------------------------------------------
def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it needs {list(cols)}, got {list(df.columns)}")


def single_group(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """Refuse to average over several tasks/models/...: say which filter to apply."""
    for c in cols:
        if c in df.columns and df[c].nunique(dropna=True) > 1:
            vals = sorted(df[c].dropna().unique().tolist(), key=str)
            raise ValueError(f"{what} mixes {c} values {vals}; select one first, "
                             f"e.g. df[df[{c!r}] == {vals[0]!r}]")


def nonempty(df: pd.DataFrame, what: str) -> pd.DataFrame:
    if df.empty:
        raise ValueError(f"{what}: no rows to plot")
    return df


def complete_rows(df: pd.DataFrame, what: str) -> pd.DataFrame:
    if "status" not in df.columns:
        return df
    keep = df["status"].astype(str) == "complete"
    if (~keep).any():
        counts = df.loc[~keep, "status"].astype(str).value_counts().to_dict()
        logger.warning("%s: dropped %d row(s) whose status is not 'complete': %s", what, int((~keep).sum()), counts)
    return nonempty(df[keep], f"{what} (rows with status 'complete')")


def new_axes(ax: Axes | None, size: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    return plt.subplots(figsize=size or figure_size("one-column"))[1]


def palette(n: int) -> list:
    """Colour-blind-safe categorical colours; viridis (also CVD-safe) beyond ten lines."""
    if n <= 10:
        return sns.color_palette("colorblind", max(n, 1))
    return [mpl.colormaps["viridis"](v) for v in np.linspace(0.0, 0.85, n)]  # no pale yellow on white


def label_for(column: str | None, value: Any) -> str:
    if column == "generator":
        return GENERATOR_LABELS.get(str(value), str(value))
    if column == "method":
        return METHOD_LABELS.get(str(value), str(value))
    if column == "prompt_layer":
        return f"PL={int(value)}"
    return str(value)


def group_stats(df: pd.DataFrame, by: str, value: str, unit: str | None = None) -> pd.DataFrame:
    """Mean, std and count of ``value`` per ``by``; rows are first averaged within ``unit``."""
    if unit is not None and unit in df.columns:
        df = df.groupby([by, unit], as_index=False)[value].mean()
    return df.groupby(by)[value].agg(["mean", "std", "count"]).sort_index()


def draw_line(ax: Axes, stats: pd.DataFrame, color, label: str, *, errorbars: str = "band", **kw) -> Line2D:
    x, m, s = stats.index.to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float)
    (line,) = ax.plot(x, m, color=color, label=label, **kw)
    if np.isfinite(s).any():
        if errorbars == "bars":
            ax.errorbar(x, m, yerr=np.nan_to_num(s), fmt="none", ecolor=color, elinewidth=0.7, capsize=1.5)
        elif errorbars == "band":
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.18, linewidth=0)
    return line


def integer_x(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def layer_ticks(ax: Axes, layers) -> None:
    """Prompt-layer ticks: every layer up to 12 of them, else about 8 starting at the first (PL=1)."""
    layers = sorted({int(k) for k in layers if pd.notna(k)})
    if layers:
        ax.set_xticks(layers[::1 if len(layers) <= 12 else int(np.ceil(len(layers) / 8))])


def hue_order(column: str | None, values) -> list:
    """Generators in the paper's order (none, NPG, APPG, MPPG), anything else sorted."""
    known = list(GENERATOR_LABELS) if column == "generator" else list(METHOD_LABELS) if column == "method" else []
    return sorted(values, key=lambda v: (known.index(str(v)) if str(v) in known else len(known), str(v)))


def panel_axes(target: Axes | Figure | Sequence[Axes] | None, n: int, size: tuple[float, float]) -> list[Axes]:
    if target is None:
        return list(np.atleast_1d(plt.subplots(1, n, figsize=size)[1]))
    if isinstance(target, Figure):
        return list(np.atleast_1d(target.subplots(1, n)))
    axes = [target] if isinstance(target, Axes) else list(target)
    if len(axes) != n:
        raise ValueError(f"this figure has {n} panel(s); pass a Figure, None or {n} Axes (got {len(axes)})")
    return axes
