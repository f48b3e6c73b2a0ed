"""Training throughput and memory against the prompt layer (Table 10), and the table
itself, from ``train_throughput.csv``; never imports torch."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .style import (
    AXIS_LABELS,
    GENERATOR_LABELS,
    METHOD_LABELS,
    PROMPT_LAYER,
    REFERENCE_STYLES,
    draw_line,
    figure_size,
    group_stats,
    layer_ticks,
    nonempty,
    palette,
    panel_axes,
    require_columns,
    single_group,
)

logger = logging.getLogger(__name__)


# -- efficiency (Table 10) ----------------------------------------------------------------
def _as_bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.astype(str).str.strip().str.lower().isin({"true", "1", "yes"})


def _efficiency_frame(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, ["method", "prompt_layer", "tokens_per_second", "peak_memory_mb"], "throughput table")
    df = nonempty(df.copy(), "throughput table")
    df["generator"] = df["generator"].fillna("none").astype(str) if "generator" in df else "none"
    df["cache"] = _as_bool(df["cache"]) if "cache" in df else False
    return df


def _method_rank(method: str) -> int:
    """Table and legend order: model tuning, the other baselines, prompt tuning, LPT."""
    order = ["model-tuning", "bitfit", "lora", "p-tuning-v2", "prefix-tuning", "adapter", "adapterdrop", "s-idpg",
             "prompt-tuning", "lpt"]
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
    single_group(df, ["model"], "throughput table")
    if metrics is None:
        metrics = ["tokens_per_second", "peak_memory_mb"]
        if "accuracy" in df.columns and df["accuracy"].notna().any():
            metrics.append("accuracy")
    require_columns(df, list(metrics), "throughput table")
    axes = panel_axes(ax, len(metrics), figure_size("two-column", 0.3))
    keys = list(df.groupby(["method", "generator", "cache"], sort=False).groups)
    keys.sort(key=lambda k: (_method_rank(k[0]), str(k[1]), k[2]))
    flat = [k for k in keys if k[0] not in ("lpt", "prompt-tuning")]
    dash = dict(zip(flat, REFERENCE_STYLES * 2))  # one line style per method without a prompt layer
    families = list(dict.fromkeys(k[:2] for k in keys))  # colour = method x generator; cache = line style
    colour = dict(zip(families, palette(len(families))))
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
                st = group_stats(g, "prompt_layer", metric)
                ax_.plot(st.index, st["mean"], marker="*", ms=8, ls="none", color=c, mec="black", mew=0.4,
                         label=label, zorder=4)
            else:
                style = dict(ls="-", marker="o") if key[2] else dict(ls=":", marker="o", mfc="white")
                draw_line(ax_, group_stats(g, "prompt_layer", metric), c, label, ms=3, **style)
        ax_.set_xlabel(PROMPT_LAYER)
        ax_.set_ylabel(AXIS_LABELS.get(metric, metric.replace("_", " ")))
        layer_ticks(ax_, df["prompt_layer"])
    n_entries = len(axes[-1].get_legend_handles_labels()[1])
    # many series (every baseline and generator): two legend columns, so the legend is no
    # taller than the panels and the PDF keeps the panels' shape
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncol=1 if n_entries <= 8 else 2,
                    fontsize="small" if n_entries > 8 else None, columnspacing=1.0, handlelength=2.2)
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
