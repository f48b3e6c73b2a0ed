"""Figures from a sweep: test metric against the prompt layer (Fig. 2 left, 4, 5) and
convergence, dev metric against training step (Fig. 2 middle). Read ``sweep.csv`` /
``curves.csv``; never import torch."""

from __future__ import annotations

import logging
from typing import Sequence

import matplotlib as mpl
import pandas as pd
from matplotlib.axes import Axes

from ..layers import select_prompt_layers
from .style import (
    axis_label,
    METHOD_LABELS,
    PROMPT_LAYER,
    REFERENCE_STYLES,
    complete_rows,
    draw_line,
    group_stats,
    hue_order,
    label_for,
    layer_ticks,
    new_axes,
    nonempty,
    palette,
    require_columns,
    single_group,
)

logger = logging.getLogger(__name__)


# -- accuracy vs prompt layer, convergence ------------------------------------------------
def plot_performance_vs_layer(df: pd.DataFrame, metric: str = "test_metric", hue: str | None = "generator",
                              ax: Axes | None = None, *, errorbars: str = "band") -> Axes:
    """Metric against prompt layer, mean ± std over ``seed``, one line per ``hue`` value.

    Reads ``sweep.csv``: task, model, method, generator, prompt_layer, seed, shots,
    data_seed, dev_metric, test_metric, steps, tunable_params, tokens_per_second,
    peak_memory_mb, wall_seconds, status (only ``prompt_layer``, ``metric`` and ``hue``
    are required). Rows whose ``status`` is not "complete" are dropped. Rows of a method
    other than "lpt" (the baselines of ``lpt_probe.model.methods``) or without a prompt layer
    become horizontal reference lines, one per method, each in its own line style. The PL=1
    point of a line without a generator (prompt tuning) gets a star and a "PT" label. ``errorbars``:
    "band", "bars" or "none".
    """
    what = "sweep table"
    if errorbars not in ("band", "bars", "none"):
        raise ValueError(f"errorbars={errorbars!r}: use 'band', 'bars' or 'none'")
    df = complete_rows(df, what)
    require_columns(df, ["prompt_layer", metric] + ([hue] if hue else []), what)
    single_group(df, [c for c in ("task", "model", "shots") if c != hue], what)
    df = nonempty(df.dropna(subset=[metric]), f"{what} ({metric} not NaN)")
    ref = df["prompt_layer"].isna()
    if "method" in df.columns:
        ref |= df["method"].astype(str) != "lpt"
    ax = new_axes(ax)
    layered = df[~ref]
    groups = [(v, layered[layered[hue] == v]) for v in hue_order(hue, layered[hue].unique())] if hue \
        else [(None, layered)]
    colours = palette(len(groups))
    pt_y = []
    for (name, g), c in zip(groups, colours):
        st = group_stats(g, "prompt_layer", metric, unit="seed")
        draw_line(ax, st, c, label_for(hue, name) if hue else metric, errorbars=errorbars, marker="o", ms=3)
        if 1 in st.index and (hue != "generator" or str(name) == "none"):  # PL=1 without a generator = PT
            pt_y.append(st.loc[1, "mean"])
            ax.plot([1], [pt_y[-1]], marker="*", ms=9, color=c, mec="black", mew=0.4, ls="none", zorder=4)
    if pt_y:
        ax.annotate("PT", xy=(1, max(pt_y)), xytext=(0, 6), textcoords="offset points", ha="center",
                    va="bottom", fontsize=mpl.rcParams["xtick.labelsize"], fontweight="bold")
    refs = df[ref]
    methods = (hue_order("method", refs["method"].astype(str).unique()) if "method" in refs.columns
               else ["reference"] * bool(len(refs)))
    greys = [str(round(0.1 + 0.45 * i / max(1, len(methods) - 1), 2)) for i in range(len(methods))]
    for method, style, grey in zip(methods, REFERENCE_STYLES * 2, greys):
        g = refs[refs["method"].astype(str) == method] if "method" in refs.columns else refs
        label = METHOD_LABELS.get(method, method)
        if hue in ("task", "model", "shots"):  # the reference differs per line: one in each line's colour
            colour = {name: c for (name, _), c in zip(groups, colours)}
            for name, gg in g.groupby(hue):
                ax.axhline(gg[metric].mean(), color=colour.get(name, "0.3"), ls=style, lw=0.9,
                           label=f"{label} ({label_for(hue, name)})")
        else:
            ax.axhline(g[metric].mean(), color=grey, ls=style, lw=1.0, label=label)
    ax.set_xlabel(PROMPT_LAYER)
    ax.set_ylabel(axis_label(metric, df))
    layer_ticks(ax, layered["prompt_layer"])
    ax.legend(title=None if hue in (None, "generator") else hue.replace("_", " "), loc="best")
    return ax


def _default_layers(present: Sequence[int]) -> list[int]:
    """1 (or the lowest), the middle and the last prompt layer present."""
    return select_prompt_layers("default", present)


def plot_convergence(curves: pd.DataFrame, prompt_layers: Sequence[int] | None = None,
                     metric: str = "dev_metric", ax: Axes | None = None, *, generator: str | None = None) -> Axes:
    """``metric`` against training step for some prompt layers, mean ± std over ``seed``.

    Reads ``curves.csv``: task, model, generator, prompt_layer, seed, step, train_loss,
    dev_metric (required: prompt_layer, step, ``metric``). Default prompt layers: the
    lowest (1), the middle and the last present. Pass ``generator`` when the table
    holds several. Steps where ``metric`` is NaN (no evaluation) are skipped.
    """
    what = "curves table"
    require_columns(curves, ["prompt_layer", "step", metric], what)
    if generator is not None:
        require_columns(curves, ["generator"], what)
        curves = curves[curves["generator"].astype(str) == str(generator)]
    single_group(curves, ["task", "model", "generator"], what)
    curves = nonempty(curves.dropna(subset=[metric]), f"{what} ({metric} not NaN)")
    present = sorted(int(k) for k in curves["prompt_layer"].unique())
    layers = _default_layers(present) if prompt_layers is None else sorted({int(k) for k in prompt_layers})
    if set(layers) - set(present):
        raise ValueError(f"prompt layers {sorted(set(layers) - set(present))} are not in the curves table "
                         f"(it has {present})")
    ax = new_axes(ax)
    for k, c in zip(layers, palette(len(layers))):
        st = group_stats(curves[curves["prompt_layer"] == k], "step", metric)
        is_pt = k == 1 and ("generator" not in curves.columns or set(curves["generator"].astype(str)) == {"none"})
        draw_line(ax, st, c, f"PL={k}" + (" (PT)" if is_pt else ""), marker="o" if len(st) <= 12 else None, ms=2.5)
    ax.set_xlabel("training step")
    ax.set_ylabel(axis_label(metric, curves))
    ax.legend(loc="best")
    return ax
