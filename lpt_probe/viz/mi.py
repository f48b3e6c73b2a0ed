"""I(h; y) per hidden state (Fig. 2 right) and its heatmap over prompt layer x hidden state,
from ``mi.csv``; never imports torch."""

from __future__ import annotations

import logging
from typing import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .style import (
    AXIS_LABELS,
    CONTROL_COLOURS,
    HIDDEN_STATE,
    PROMPT_LAYER,
    draw_line,
    figure_size,
    group_stats,
    integer_x,
    new_axes,
    nonempty,
    palette,
    require_columns,
    single_group,
)

logger = logging.getLogger(__name__)


# -- information by layer ---------------------------------------------------------------
def _mi_frame(mi: pd.DataFrame, value: str) -> pd.DataFrame:
    what = "mi table"
    require_columns(mi, ["method", "prompt_layer", "layer", "control", value], what)
    if "split" in mi.columns and mi["split"].nunique() > 1:
        mi = mi[mi["split"] == "test"] if (mi["split"] == "test").any() else mi
    single_group(mi, ["task", "model", "probe", "representation", "split"], what)
    return nonempty(mi.dropna(subset=[value]), f"{what} ({value} not NaN)")


def _mi_stats(g: pd.DataFrame, value: str, band: str | None) -> pd.DataFrame:
    """Per layer: mean over seeds (probe seeds averaged within a seed) and the band."""
    st = group_stats(g, "layer", value, unit="seed" if "seed" in g.columns else None)
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
    conditions pooled) and "random weights"; a dotted ceiling for ``mi_bits``: the null model's
    test cross-entropy (the most a probe can gain).
    A small open circle marks hidden state k-1, where the PL=k prompt joins.
    ``band``: "seeds" (std over prompt seeds; none for a single seed), "ci" (half
    the mean bootstrap 95% CI width; ``mi_bits`` only, else as "seeds") or None.
    ``prompt_layers`` picks some of the prompt layers (default: all; with many,
    :func:`plot_mi_heatmap` reads better).
    """
    mi = _mi_frame(mi, value)
    ax = new_axes(ax)
    real = mi[mi["control"] == "none"]
    lpt = real[real["method"] == "lpt"]
    layers = sorted(int(k) for k in lpt["prompt_layer"].unique())
    if prompt_layers is not None:
        missing = sorted({int(k) for k in prompt_layers} - set(layers))
        if missing:
            raise ValueError(f"prompt layers {missing} are not in the mi table (it has {layers})")
        layers = sorted({int(k) for k in prompt_layers})
    for k, c in zip(layers, palette(len(layers))):
        st = _mi_stats(lpt[lpt["prompt_layer"] == k], value, band)
        draw_line(ax, st, c, f"PL={k}")
        if k - 1 in st.index:
            ax.plot([k - 1], [st.loc[k - 1, "mean"]], marker="o", ms=4, mfc="white", mec=c, mew=1.0, ls="none",
                    zorder=4)
    frozen = real[real["method"] == "frozen"]
    if not frozen.empty:
        draw_line(ax, _mi_stats(frozen, value, band), "black", "no prompt", lw=1.0)
    shuffled = mi[mi["control"] == "shuffled_labels"]
    if not shuffled.empty:
        st = shuffled.groupby("layer")[value].agg(["mean", "std", "count"])
        draw_line(ax, st, CONTROL_COLOURS["shuffled labels"], "shuffled labels", ls="--", lw=0.9, errorbars="none")
    rand = real[real["method"] == "random_weights"]
    if not rand.empty:
        draw_line(ax, _mi_stats(rand, value, None), CONTROL_COLOURS["random weights"], "random weights", ls="--", lw=0.9)
    ceiling = "null_ce_bits" if "null_ce_bits" in mi.columns else "h_y_bits"
    if value == "mi_bits" and ceiling in mi.columns:  # the estimate's ceiling: the null model's test CE
        ax.axhline(mi[ceiling].mean(), color="0.35", ls=":", lw=0.9, label="null-model cross-entropy")
    ax.set_xlabel(HIDDEN_STATE)
    ax.set_ylabel(AXIS_LABELS.get(value, value.replace("_", " ")))
    integer_x(ax)
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
    lpt = nonempty(mi[(mi["method"] == "lpt") & (mi["control"] == "none")], "mi table (method 'lpt')")
    grid = lpt.groupby(["prompt_layer", "layer"])[value].mean().unstack("layer").sort_index()
    rows = [int(k) for k in grid.index]  # only the prompt layers run, one row each
    cols = np.arange(0, int(grid.columns.max()) + 1)
    grid = grid.reindex(columns=cols)
    ax = new_axes(ax, figure_size("one-column", 0.8))
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
