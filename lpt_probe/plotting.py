"""Paper figures from result tables: the drawing half of lpt_probe. Never imports torch.

Compute stages write tidy CSVs; every function here takes one of them as a pandas
DataFrame plus an optional matplotlib ``ax``, draws one figure and returns the Axes (the
Figure for multi-panel ones). Nothing is written to disk except by :func:`save_figure`.
Start with :func:`paper_style` and :func:`save_figure`, then the figure you need:

==============================  =======================================  ====================
function                        paper                                    reads
==============================  =======================================  ====================
plot_performance_vs_layer       Fig. 2 left, Fig. 4, Fig. 5              ``sweep.csv``
plot_convergence                Fig. 2 middle                            ``curves.csv``
plot_mi_by_layer, _heatmap      Fig. 2 right                             ``mi.csv``
plot_projection                 Fig. 6                                   ``projection.csv``
plot_efficiency, _table         Table 10                                 ``train_throughput.csv``
==============================  =======================================  ====================

The column contract of each table is in the function's docstring; a missing column is
named in the error. Averages are never taken across tasks, models, probes or
representations: a table that mixes them is refused with the filter to apply (the CLI,
:mod:`lpt_probe.figures`, splits such tables into one figure per group).

Layer numbering (package docstring): hidden state 0 is the embedding output; prompt layer
PL=k joins hidden state k-1; PL=1 is classic prompt tuning ("PT").

This module is longer than STYLE.md's usual 300 lines because the figures share one
style, one palette and one set of helpers; splitting them would scatter those.
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

from .io import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "COLUMN_WIDTHS_IN", "paper_style", "figure_size", "save_figure", "plot_performance_vs_layer",
    "plot_convergence", "plot_mi_by_layer", "plot_mi_heatmap", "plot_projection", "plot_efficiency",
    "efficiency_table",
]

COLUMN_WIDTHS_IN = {"one-column": 3.3, "two-column": 6.9}  # ACL two-column page, inches
_CONTEXT_SCALE = {"paper": 1.0, "notebook": 1.25, "talk": 1.6}
GENERATOR_LABELS = {"none": "no generator", "npg": "NPG", "appg": "APPG", "mppg": "MPPG"}
METHOD_LABELS = {"lpt": "LPT", "prompt-tuning": "prompt tuning", "model-tuning": "model tuning",
                 "bitfit": "BitFit", "lora": "LoRA", "p-tuning-v2": "P-tuning v2", "prefix-tuning": "prefix tuning",
                 "frozen": "no prompt", "random_weights": "random weights"}
_REFERENCE_STYLES = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2))]
AXIS_LABELS = {
    "test_metric": "test metric", "dev_metric": "dev metric", "train_loss": "train loss",
    "mi_bits": "I(h; y) [bits]", "ce_bits": "probe cross-entropy [bits]", "accuracy": "accuracy",
    "macro_f1": "macro F1", "tokens_per_second": "training tokens / s",
    "peak_memory_mb": "peak memory [MB]", "wall_seconds": "wall time [s]", "steps": "training steps",
}
PROMPT_LAYER = "prompt layer (PL)"
HIDDEN_STATE = "hidden state (0 = embeddings)"
_MARKERS = "o^sDvP<>X"
_CONTROL_COLOURS = {"shuffled labels": "0.55", "random weights": "#ca9161"}


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
def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it needs {list(cols)}, got {list(df.columns)}")


def _single(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """Refuse to average over several tasks/models/...: say which filter to apply."""
    for c in cols:
        if c in df.columns and df[c].nunique(dropna=True) > 1:
            vals = sorted(df[c].dropna().unique().tolist(), key=str)
            raise ValueError(f"{what} mixes {c} values {vals}; select one first, "
                             f"e.g. df[df[{c!r}] == {vals[0]!r}]")


def _nonempty(df: pd.DataFrame, what: str) -> pd.DataFrame:
    if df.empty:
        raise ValueError(f"{what}: no rows to plot")
    return df


def _complete(df: pd.DataFrame, what: str) -> pd.DataFrame:
    if "status" not in df.columns:
        return df
    keep = df["status"].astype(str) == "complete"
    if (~keep).any():
        counts = df.loc[~keep, "status"].astype(str).value_counts().to_dict()
        logger.warning("%s: dropped %d row(s) whose status is not 'complete': %s", what, int((~keep).sum()), counts)
    return _nonempty(df[keep], f"{what} (rows with status 'complete')")


def _new_axes(ax: Axes | None, size: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    return plt.subplots(figsize=size or figure_size("one-column"))[1]


def _palette(n: int) -> list:
    """Colour-blind-safe categorical colours; viridis (also CVD-safe) beyond ten lines."""
    if n <= 10:
        return sns.color_palette("colorblind", max(n, 1))
    return [mpl.colormaps["viridis"](v) for v in np.linspace(0.0, 0.85, n)]  # no pale yellow on white


def _label(column: str | None, value: Any) -> str:
    if column == "generator":
        return GENERATOR_LABELS.get(str(value), str(value))
    if column == "method":
        return METHOD_LABELS.get(str(value), str(value))
    if column == "prompt_layer":
        return f"PL={int(value)}"
    return str(value)


def _stats(df: pd.DataFrame, by: str, value: str, unit: str | None = None) -> pd.DataFrame:
    """Mean, std and count of ``value`` per ``by``; rows are first averaged within ``unit``."""
    if unit is not None and unit in df.columns:
        df = df.groupby([by, unit], as_index=False)[value].mean()
    return df.groupby(by)[value].agg(["mean", "std", "count"]).sort_index()


def _draw(ax: Axes, stats: pd.DataFrame, color, label: str, *, errorbars: str = "band", **kw) -> Line2D:
    x, m, s = stats.index.to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float)
    (line,) = ax.plot(x, m, color=color, label=label, **kw)
    if np.isfinite(s).any():
        if errorbars == "bars":
            ax.errorbar(x, m, yerr=np.nan_to_num(s), fmt="none", ecolor=color, elinewidth=0.7, capsize=1.5)
        elif errorbars == "band":
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.18, linewidth=0)
    return line


def _integer_x(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _layer_ticks(ax: Axes, layers) -> None:
    """Prompt-layer ticks: every layer up to 12 of them, else about 8 starting at the first (PL=1)."""
    layers = sorted({int(k) for k in layers if pd.notna(k)})
    if layers:
        ax.set_xticks(layers[::1 if len(layers) <= 12 else int(np.ceil(len(layers) / 8))])


def _hue_order(column: str | None, values) -> list:
    """Generators in the paper's order (none, NPG, APPG, MPPG), anything else sorted."""
    known = list(GENERATOR_LABELS) if column == "generator" else list(METHOD_LABELS) if column == "method" else []
    return sorted(values, key=lambda v: (known.index(str(v)) if str(v) in known else len(known), str(v)))


# -- accuracy vs prompt layer, convergence ------------------------------------------------
def plot_performance_vs_layer(df: pd.DataFrame, metric: str = "test_metric", hue: str | None = "generator",
                              ax: Axes | None = None, *, errorbars: str = "band") -> Axes:
    """Metric against prompt layer, mean ± std over ``seed``, one line per ``hue`` value.

    Reads ``sweep.csv``: task, model, method, generator, prompt_layer, seed, shots,
    data_seed, dev_metric, test_metric, steps, tunable_params, tokens_per_second,
    peak_memory_mb, wall_seconds, status (only ``prompt_layer``, ``metric`` and ``hue``
    are required). Rows whose ``status`` is not "complete" are dropped. Rows of a method
    other than "lpt" (the baselines of ``lpt_probe.methods``) or without a prompt layer
    become horizontal reference lines, one per method, each in its own line style. The PL=1
    point of a line without a generator (prompt tuning) gets a star and a "PT" label. ``errorbars``:
    "band", "bars" or "none".
    """
    what = "sweep table"
    if errorbars not in ("band", "bars", "none"):
        raise ValueError(f"errorbars={errorbars!r}: use 'band', 'bars' or 'none'")
    df = _complete(df, what)
    _require(df, ["prompt_layer", metric] + ([hue] if hue else []), what)
    _single(df, [c for c in ("task", "model", "shots") if c != hue], what)
    df = _nonempty(df.dropna(subset=[metric]), f"{what} ({metric} not NaN)")
    ref = df["prompt_layer"].isna()
    if "method" in df.columns:
        ref |= df["method"].astype(str) != "lpt"
    ax = _new_axes(ax)
    layered = df[~ref]
    groups = [(v, layered[layered[hue] == v]) for v in _hue_order(hue, layered[hue].unique())] if hue \
        else [(None, layered)]
    colours = _palette(len(groups))
    pt_y = []
    for (name, g), c in zip(groups, colours):
        st = _stats(g, "prompt_layer", metric, unit="seed")
        _draw(ax, st, c, _label(hue, name) if hue else metric, errorbars=errorbars, marker="o", ms=3)
        if 1 in st.index and (hue != "generator" or str(name) == "none"):  # PL=1 without a generator = PT
            pt_y.append(st.loc[1, "mean"])
            ax.plot([1], [pt_y[-1]], marker="*", ms=9, color=c, mec="black", mew=0.4, ls="none", zorder=4)
    if pt_y:
        ax.annotate("PT", xy=(1, max(pt_y)), xytext=(0, 6), textcoords="offset points", ha="center",
                    va="bottom", fontsize=mpl.rcParams["xtick.labelsize"], fontweight="bold")
    refs = df[ref]
    methods = (_hue_order("method", refs["method"].astype(str).unique()) if "method" in refs.columns
               else ["reference"] * bool(len(refs)))
    greys = [str(round(0.1 + 0.45 * i / max(1, len(methods) - 1), 2)) for i in range(len(methods))]
    for method, style, grey in zip(methods, _REFERENCE_STYLES * 2, greys):
        g = refs[refs["method"].astype(str) == method] if "method" in refs.columns else refs
        label = METHOD_LABELS.get(method, method)
        if hue in ("task", "model", "shots"):  # the reference differs per line: one in each line's colour
            colour = {name: c for (name, _), c in zip(groups, colours)}
            for name, gg in g.groupby(hue):
                ax.axhline(gg[metric].mean(), color=colour.get(name, "0.3"), ls=style, lw=0.9,
                           label=f"{label} ({_label(hue, name)})")
        else:
            ax.axhline(g[metric].mean(), color=grey, ls=style, lw=1.0, label=label)
    ax.set_xlabel(PROMPT_LAYER)
    ax.set_ylabel(AXIS_LABELS.get(metric, metric.replace("_", " ")))
    _layer_ticks(ax, layered["prompt_layer"])
    ax.legend(title=None if hue in (None, "generator") else hue.replace("_", " "), loc="best")
    return ax


def _default_layers(present: Sequence[int]) -> list[int]:
    """1 (or the lowest), the middle and the last prompt layer present."""
    present = sorted(int(k) for k in present)
    last = present[-1]
    middle = min(present, key=lambda k: (abs(k - (last + 1) // 2), k))
    return sorted({present[0], middle, last})


def plot_convergence(curves: pd.DataFrame, prompt_layers: Sequence[int] | None = None,
                     metric: str = "dev_metric", ax: Axes | None = None, *, generator: str | None = None) -> Axes:
    """``metric`` against training step for some prompt layers, mean ± std over ``seed``.

    Reads ``curves.csv``: task, model, generator, prompt_layer, seed, step, train_loss,
    dev_metric (required: prompt_layer, step, ``metric``). Default prompt layers: the
    lowest (1), the middle and the last present. Pass ``generator`` when the table
    holds several. Steps where ``metric`` is NaN (no evaluation) are skipped.
    """
    what = "curves table"
    _require(curves, ["prompt_layer", "step", metric], what)
    if generator is not None:
        _require(curves, ["generator"], what)
        curves = curves[curves["generator"].astype(str) == str(generator)]
    _single(curves, ["task", "model", "generator"], what)
    curves = _nonempty(curves.dropna(subset=[metric]), f"{what} ({metric} not NaN)")
    present = sorted(int(k) for k in curves["prompt_layer"].unique())
    layers = _default_layers(present) if prompt_layers is None else sorted({int(k) for k in prompt_layers})
    if set(layers) - set(present):
        raise ValueError(f"prompt layers {sorted(set(layers) - set(present))} are not in the curves table "
                         f"(it has {present})")
    ax = _new_axes(ax)
    for k, c in zip(layers, _palette(len(layers))):
        st = _stats(curves[curves["prompt_layer"] == k], "step", metric)
        is_pt = k == 1 and ("generator" not in curves.columns or set(curves["generator"].astype(str)) == {"none"})
        _draw(ax, st, c, f"PL={k}" + (" (PT)" if is_pt else ""), marker="o" if len(st) <= 12 else None, ms=2.5)
    ax.set_xlabel("training step")
    ax.set_ylabel(AXIS_LABELS.get(metric, metric.replace("_", " ")))
    ax.legend(loc="best")
    return ax


# -- information by layer ---------------------------------------------------------------
def _mi_frame(mi: pd.DataFrame, value: str) -> pd.DataFrame:
    what = "mi table"
    _require(mi, ["method", "prompt_layer", "layer", "control", value], what)
    if "split" in mi.columns and mi["split"].nunique() > 1:
        mi = mi[mi["split"] == "test"] if (mi["split"] == "test").any() else mi
    _single(mi, ["task", "model", "probe", "representation", "split"], what)
    return _nonempty(mi.dropna(subset=[value]), f"{what} ({value} not NaN)")


def _mi_stats(g: pd.DataFrame, value: str, band: str | None) -> pd.DataFrame:
    """Per layer: mean over seeds (probe seeds averaged within a seed) and the band."""
    st = _stats(g, "layer", value, unit="seed" if "seed" in g.columns else None)
    if band == "ci" and {"mi_ci_low", "mi_ci_high"} <= set(g.columns) and value == "mi_bits":
        half = (g.groupby("layer")["mi_ci_high"].mean() - g.groupby("layer")["mi_ci_low"].mean()) / 2
        st["std"] = half.reindex(st.index)  # drawn as mean ± half the mean 95% CI width
    elif band is None or band == "none":
        st["std"] = np.nan
    return st


def plot_mi_by_layer(mi: pd.DataFrame, ax: Axes | None = None, value: str = "mi_bits", *,
                     band: str | None = "seeds", prompt_layers: Sequence[int] | None = None) -> Axes:
    """I(h; y) (or ``value``) against hidden state, one line per prompt layer plus no prompt.

    Reads ``mi.csv``: task, model, method ("lpt" | "frozen" | "random_weights"),
    prompt_layer (0 without a prompt), seed, layer, probe, representation, split,
    control ("none" | "shuffled_labels"), h_y_bits, ce_bits, mi_bits, accuracy,
    macro_f1, mi_ci_low, mi_ci_high, n, probe_seed. Uses the test split. Lines: "PL=k"
    (lpt), "no prompt" (frozen, black); dashed controls "shuffled labels" (all
    conditions pooled) and "random weights"; a dotted "H(y)" ceiling for ``mi_bits``.
    A small open circle marks hidden state k-1, where the PL=k prompt joins.
    ``band``: "seeds" (std over prompt seeds; none for a single seed), "ci" (half
    the mean bootstrap 95% CI width; ``mi_bits`` only, else as "seeds") or None.
    ``prompt_layers`` picks some of the prompt layers (default: all; with many,
    :func:`plot_mi_heatmap` reads better).
    """
    mi = _mi_frame(mi, value)
    ax = _new_axes(ax)
    real = mi[mi["control"] == "none"]
    lpt = real[real["method"] == "lpt"]
    layers = sorted(int(k) for k in lpt["prompt_layer"].unique())
    if prompt_layers is not None:
        missing = sorted({int(k) for k in prompt_layers} - set(layers))
        if missing:
            raise ValueError(f"prompt layers {missing} are not in the mi table (it has {layers})")
        layers = sorted({int(k) for k in prompt_layers})
    for k, c in zip(layers, _palette(len(layers))):
        st = _mi_stats(lpt[lpt["prompt_layer"] == k], value, band)
        _draw(ax, st, c, f"PL={k}")
        if k - 1 in st.index:
            ax.plot([k - 1], [st.loc[k - 1, "mean"]], marker="o", ms=4, mfc="white", mec=c, mew=1.0, ls="none",
                    zorder=4)
    frozen = real[real["method"] == "frozen"]
    if not frozen.empty:
        _draw(ax, _mi_stats(frozen, value, band), "black", "no prompt", lw=1.0)
    shuffled = mi[mi["control"] == "shuffled_labels"]
    if not shuffled.empty:
        st = shuffled.groupby("layer")[value].agg(["mean", "std", "count"])
        _draw(ax, st, _CONTROL_COLOURS["shuffled labels"], "shuffled labels", ls="--", lw=0.9, errorbars="none")
    rand = real[real["method"] == "random_weights"]
    if not rand.empty:
        _draw(ax, _mi_stats(rand, value, None), _CONTROL_COLOURS["random weights"], "random weights", ls="--", lw=0.9)
    if value == "mi_bits" and "h_y_bits" in mi.columns:
        ax.axhline(mi["h_y_bits"].mean(), color="0.35", ls=":", lw=0.9, label="H(y)")
    ax.set_xlabel(HIDDEN_STATE)
    ax.set_ylabel(AXIS_LABELS.get(value, value.replace("_", " ")))
    _integer_x(ax)
    n = len(ax.get_legend_handles_labels()[1])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=min(4 if n <= 6 else 3, n), handlelength=1.5,
              columnspacing=0.8)  # below the axes: a one-column figure has no room beside it
    return ax


def plot_mi_heatmap(mi: pd.DataFrame, value: str = "mi_bits", ax: Axes | None = None, *,
                    annotate: bool | None = None) -> Axes:
    """Heatmap of ``value`` over prompt layer (rows) x hidden state (columns), lpt only.

    Same input as :func:`plot_mi_by_layer`; mean over seeds and probe seeds of the
    real-label rows; one row per prompt layer present; missing cells are grey. On row
    PL=k a white bar between hidden states k-1 and k marks where the prompt takes
    effect (the states left of it equal the frozen model's). ``annotate`` writes the
    values into the cells (default: small grids only).
    """
    mi = _mi_frame(mi, value)
    lpt = _nonempty(mi[(mi["method"] == "lpt") & (mi["control"] == "none")], "mi table (method 'lpt')")
    grid = lpt.groupby(["prompt_layer", "layer"])[value].mean().unstack("layer").sort_index()
    rows = [int(k) for k in grid.index]  # only the prompt layers run, one row each
    cols = np.arange(0, int(grid.columns.max()) + 1)
    grid = grid.reindex(columns=cols)
    ax = _new_axes(ax, figure_size("one-column", 0.8))
    cmap = mpl.colormaps["viridis"].with_extremes(bad="0.85")
    ext = (cols[0] - 0.5, cols[-1] + 0.5, -0.5, len(rows) - 0.5)
    values = grid.to_numpy(float)  # [prompt layers, hidden states]
    im = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=cmap, extent=ext,
                   interpolation="nearest")
    ax.grid(False)
    for i, k in enumerate(rows):
        if k - 1 >= cols[0]:
            ax.plot([k - 0.5, k - 0.5], [i - 0.5, i + 0.5], color="white", lw=1.5, solid_capstyle="butt")
    if annotate is None:
        annotate = len(cols) <= 10 and len(rows) <= 8
    if annotate:
        lo, hi = np.nanmin(values), np.nanmax(values)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = (v - lo) / ((hi - lo) or 1) < 0.6
                ax.text(cols[j], i, f"{v:.2f}", ha="center", va="center",
                        fontsize=mpl.rcParams["xtick.labelsize"] - 1.5, color="white" if dark else "black")
    step = max(1, int(np.ceil(len(rows) / 12)))
    ax.set_yticks(np.arange(len(rows))[::step], [str(k) for k in rows][::step])
    ax.set_xlabel(HIDDEN_STATE)
    ax.set_ylabel(PROMPT_LAYER)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.figure.colorbar(im, ax=ax, label=AXIS_LABELS.get(value, value), pad=0.02, fraction=0.05)
    return ax


# -- projection -----------------------------------------------------------------------
def _panel_axes(target: Axes | Figure | Sequence[Axes] | None, n: int, size: tuple[float, float]) -> list[Axes]:
    if target is None:
        return list(np.atleast_1d(plt.subplots(1, n, figsize=size)[1]))
    if isinstance(target, Figure):
        return list(np.atleast_1d(target.subplots(1, n)))
    axes = [target] if isinstance(target, Axes) else list(target)
    if len(axes) != n:
        raise ValueError(f"this figure has {n} panel(s); pass a Figure, None or {n} Axes (got {len(axes)})")
    return axes


def plot_projection(proj: pd.DataFrame, ax_or_fig: Figure | Sequence[Axes] | None = None, *,
                    agreement: Mapping[str, Any] | None = None) -> Figure:
    """Figure 6: sentence representations | generated prompts, projected to 2-D.

    Reads ``projection.csv``: example, space ("sentence" | "prompt"), x, y, cluster
    (k-means on the sentence representations), label (gold label as text); optional
    method ("umap" | "tsne" | "pca"). Colour = cluster, the same on both panels;
    marker shape = gold label. ``agreement`` (a row of ``agreement.csv``) adds the
    neighbourhood agreement to the title. Returns the Figure.
    """
    what = "projection table"
    _require(proj, ["example", "space", "x", "y", "cluster", "label"], what)
    spaces = {"sentence": "sentence representation", "prompt": "generated prompt"}
    for space in spaces:
        _nonempty(proj[proj["space"] == space], f"{what} (space {space!r})")
    axes = _panel_axes(ax_or_fig, 2, figure_size("two-column", 0.4))
    fig = axes[0].figure
    clusters = sorted(proj["cluster"].unique())
    colour = dict(zip(clusters, _palette(len(clusters))))
    labels = sorted(proj["label"].astype(str).unique())
    if len(labels) > len(_MARKERS):
        logger.warning("%d gold labels but %d marker shapes: drawing every label as a circle",
                       len(labels), len(_MARKERS))
    marker = {lab: _MARKERS[i] if len(labels) <= len(_MARKERS) else "o" for i, lab in enumerate(labels)}
    n = proj["example"].nunique()
    size = float(np.clip(3000.0 / max(n, 1), 4, 18))
    method = str(proj["method"].iloc[0]).upper().replace("TSNE", "t-SNE") if "method" in proj.columns else "dim"
    for ax, (space, title) in zip(axes, spaces.items()):
        sub = proj[proj["space"] == space]
        for (cl, lab), g in sub.groupby(["cluster", sub["label"].astype(str)]):
            ax.scatter(g["x"], g["y"], s=size, color=colour[cl], marker=marker[lab], linewidths=0.3,
                       edgecolors="white", alpha=0.9)
        ax.set_title(title)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    handles = [Line2D([], [], ls="none", marker="s", color=colour[c], label=f"cluster {c}") for c in clusters]
    leg = axes[-1].legend(handles=handles, title="k-means cluster", loc="upper left", bbox_to_anchor=(1.02, 1.0),
                          borderaxespad=0.0, alignment="left")
    if len(labels) <= len(_MARKERS):
        axes[-1].add_artist(leg)
        handles = [Line2D([], [], ls="none", marker=marker[lab], color="0.4", label=lab) for lab in labels]
        axes[-1].legend(handles=handles, title="gold label", loc="lower left", bbox_to_anchor=(1.02, 0.0),
                        borderaxespad=0.0, alignment="left")
    if agreement:
        a = dict(agreement)
        fig.suptitle(f"{a.get('k', 10):.0f}-NN overlap {a['knn_overlap']:.2f} "
                     f"(shuffled {a['knn_overlap_shuffled']:.2f}), trustworthiness "
                     f"{a['trustworthiness']:.2f} (shuffled {a['trustworthiness_shuffled']:.2f})")
    return fig


# -- efficiency (Table 10) ----------------------------------------------------------------
def _as_bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin({"true", "1", "yes"})


def _efficiency_frame(df: pd.DataFrame) -> pd.DataFrame:
    _require(df, ["method", "prompt_layer", "tokens_per_second", "peak_memory_mb"], "throughput table")
    df = _nonempty(df.copy(), "throughput table")
    df["generator"] = df["generator"].fillna("none").astype(str) if "generator" in df else "none"
    df["cache"] = _as_bool(df["cache"]) if "cache" in df else False
    return df


def _method_rank(method: str) -> int:
    """Table and legend order: model tuning, the other baselines, prompt tuning, LPT."""
    order = ["model-tuning", "bitfit", "lora", "p-tuning-v2", "prefix-tuning", "prompt-tuning", "lpt"]
    return order.index(method) if method in order else len(order)


def _series_label(method: str, generator: str, cache: bool) -> str:
    label = METHOD_LABELS.get(method, method)
    if method == "lpt" and generator not in ("none", "nan"):
        label += f" {GENERATOR_LABELS.get(generator, generator)}"
    return label + (" + cache" if cache else "")


def plot_efficiency(df: pd.DataFrame, ax: Axes | Figure | Sequence[Axes] | None = None, *,
                    metrics: Sequence[str] | None = None) -> Figure:
    """Table 10 as a figure: one panel per metric against prompt layer, one line per method.

    Reads ``train_throughput.csv``: model, method ("model-tuning" | "prompt-tuning" |
    "lpt"), generator, prompt_layer, cache (bool), tokens_per_second, peak_memory_mb,
    tunable_params, optional accuracy. Default ``metrics``: tokens_per_second,
    peak_memory_mb and accuracy when present. Methods without a prompt layer (model
    tuning, BitFit, LoRA, P-tuning v2) are horizontal lines in their own dash style, prompt
    tuning a star at its prompt layer, LPT a line per generator (colour) and cache
    setting (solid with the lower-layer cache, dotted with open markers without).
    ``ax``: None, a Figure, or one Axes per metric. Returns the Figure.
    """
    df = _efficiency_frame(df)
    _single(df, ["model"], "throughput table")
    if metrics is None:
        metrics = ["tokens_per_second", "peak_memory_mb"]
        if "accuracy" in df.columns and df["accuracy"].notna().any():
            metrics.append("accuracy")
    _require(df, list(metrics), "throughput table")
    axes = _panel_axes(ax, len(metrics), figure_size("two-column", 0.3))
    keys = list(df.groupby(["method", "generator", "cache"], sort=False).groups)
    keys.sort(key=lambda k: (_method_rank(k[0]), str(k[1]), k[2]))
    flat = [k for k in keys if k[0] not in ("lpt", "prompt-tuning")]
    dash = dict(zip(flat, _REFERENCE_STYLES * 2))  # one line style per method without a prompt layer
    families = list(dict.fromkeys(k[:2] for k in keys))  # colour = method x generator; cache = line style
    colour = dict(zip(families, _palette(len(families))))
    for metric, ax_ in zip(metrics, axes):
        for key in keys:
            g = df[(df["method"] == key[0]) & (df["generator"] == key[1]) & (df["cache"] == key[2])]
            g = g.dropna(subset=[metric])
            if g.empty:
                continue
            label, c = _series_label(*key), colour[key[:2]]
            if key[0] not in ("lpt", "prompt-tuning") or g["prompt_layer"].isna().all():  # no prompt layer
                ax_.axhline(g[metric].mean(), color=c, ls=dash.get(key, "--"), lw=0.9, label=label)
            elif key[0] == "prompt-tuning":
                st = _stats(g, "prompt_layer", metric)
                ax_.plot(st.index, st["mean"], marker="*", ms=8, ls="none", color=c, mec="black", mew=0.4,
                         label=label, zorder=4)
            else:
                style = dict(ls="-", marker="o") if key[2] else dict(ls=":", marker="o", mfc="white")
                _draw(ax_, _stats(g, "prompt_layer", metric), c, label, ms=3, **style)
        ax_.set_xlabel(PROMPT_LAYER)
        ax_.set_ylabel(AXIS_LABELS.get(metric, metric.replace("_", " ")))
        _layer_ticks(ax_, df["prompt_layer"])
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return axes[0].figure


def _human(n: float) -> str:
    if not np.isfinite(n):
        return "–"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def efficiency_table(df: pd.DataFrame, fmt: str = "markdown") -> str:
    """Table 10 as text (``fmt`` "markdown" or "latex"): one row per model x method x generator x PL x cache.

    Numbers are means over repeated rows; "× MT" is throughput relative to model tuning
    of the same model, present when the table has a model-tuning row.
    """
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt {fmt!r}: use 'markdown' or 'latex'")
    df = _efficiency_frame(df)
    if "model" not in df.columns:
        df["model"] = ""
    num = [c for c in ("tunable_params", "tokens_per_second", "peak_memory_mb", "accuracy") if c in df.columns]
    keys = ["model", "method", "generator", "prompt_layer", "cache"]
    t = df.groupby(keys, dropna=False, sort=False)[num].mean().reset_index()
    t = t.assign(_o=t["method"].map(_method_rank)).sort_values(["model", "_o", "generator", "cache", "prompt_layer"])
    mt = t[t["method"] == "model-tuning"].groupby("model")["tokens_per_second"].mean()
    header = ["model", "method", "PL", "cache"] + (["tunable params"] if "tunable_params" in num else [])
    header += ["tokens/s"] + (["× MT"] if len(mt) else []) + ["peak memory [MB]"]
    header += ["accuracy"] if "accuracy" in num else []
    rows = []
    for r in t.itertuples(index=False):
        row = [str(r.model), _series_label(r.method, r.generator, False),
               "–" if pd.isna(r.prompt_layer) else str(int(r.prompt_layer)), "yes" if r.cache else "no"]
        if "tunable_params" in num:
            row.append(_human(r.tunable_params))
        row.append(f"{r.tokens_per_second:,.0f}")
        if len(mt):
            base = mt.get(r.model, np.nan)
            row.append(f"{r.tokens_per_second / base:.2f}" if np.isfinite(base) and base else "–")
        row.append(f"{r.peak_memory_mb:,.0f}")
        if "accuracy" in num:
            row.append("–" if pd.isna(r.accuracy) else f"{r.accuracy:.3f}")
        rows.append(row)
    right = [h not in ("model", "method", "cache") for h in header]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a else "---" for a in right) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    esc = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "×": r"$\times$", "–": "--"}

    def tex(s: str) -> str:
        return "".join(esc.get(ch, ch) for ch in s)

    lines = [r"\begin{tabular}{" + "".join("r" if a else "l" for a in right) + "}", r"\toprule",
             " & ".join(map(tex, header)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(tex, row)) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
