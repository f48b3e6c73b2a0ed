"""The prompt's influence and the label signal's path per hidden state, from
``influence.csv`` (``python -m lpt_probe.influence``), and the Section 4 summary figure that
puts them beside accuracy, convergence and I(h; y). Never imports torch.

``influence.csv`` columns: task, model, method, generator, prompt_layer, seed, checkpoint
(init | step-N | trained), layer (hidden state j), quantity (attention_mass, displacement,
cosine, logprob_drop_layer, logprob_drop_from, grad_norm, grad_coherence), position
(prediction, text_mean, prompt), value, ci_low, ci_high, n. What each quantity means:
``lpt_probe.analysis.influence.study``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .mi import plot_mi_by_layer
from .style import (
    COLUMN_WIDTHS_IN,
    HIDDEN_STATE,
    PROMPT_LAYER,
    draw_line,
    group_stats,
    integer_x,
    layer_ticks,
    new_axes,
    nonempty,
    palette,
    require_columns,
    single_group,
)
from .sweep import plot_convergence, plot_performance_vs_layer

INFLUENCE_LABELS = {
    "attention_mass": "attention mass on the prompt",
    "displacement": "||h - h_frozen|| / ||h_frozen||",
    "cosine": "cos(h, h_frozen)",
    "logprob_drop_layer": "log p(gold) drop, prompt hidden\nfrom this layer [nats]",
    "logprob_drop_from": "log p(gold) drop, prompt hidden\nfrom this layer up [nats]",
    "grad_norm": "||d loss / d h||",
    "grad_x_state_norm": "||d loss / d h|| ||h||",
    "grad_dot_state": "(d loss / d h) . h",
    "grad_coherence": "gradient coherence",
}
POSITION_LABELS = {"prediction": "prediction position", "text_mean": "mean over tokens", "prompt": "the prompt"}
DEFAULT_PANELS = (("attention_mass", "prediction"), ("displacement", "prediction"),
                  ("logprob_drop_layer", "prediction"), ("logprob_drop_from", "prediction"),
                  ("grad_norm", "prediction"), ("grad_coherence", "prediction"))
COLUMNS = ["prompt_layer", "seed", "checkpoint", "layer", "quantity", "position", "value"]


def _frame(table: pd.DataFrame, checkpoint: str | None) -> pd.DataFrame:
    what = "influence table"
    require_columns(table, COLUMNS, what)
    single_group(table, ["task", "model", "generator"], what)
    if checkpoint is not None:
        have = sorted(table["checkpoint"].astype(str).unique())
        if checkpoint not in have:
            raise ValueError(f"{what} has no checkpoint {checkpoint!r} (it has {have})")
        table = table[table["checkpoint"].astype(str) == checkpoint]
    return nonempty(table.dropna(subset=["value"]), f"{what} (value not NaN)")


def _label(quantity: str, position: str) -> str:
    return f"{INFLUENCE_LABELS.get(quantity, quantity)}\n({POSITION_LABELS.get(position, position)})"


def plot_influence_by_layer(table: pd.DataFrame, panels: Sequence[tuple[str, str]] = DEFAULT_PANELS,
                            checkpoint: str = "trained", fig: Figure | None = None, *,
                            prompt_layers: Sequence[int] | None = None) -> Figure:
    """Each (quantity, position) of ``panels`` against hidden state, one line per prompt
    layer (mean over seeds, a band of ± one std where there are several seeds), at one
    ``checkpoint``. As in ``mi_by_layer``, a small open circle marks hidden state k-1, where
    the PL=k prompt joins (quantities that start at k, attention and the log-prob drops,
    begin one step right of it). Gradient norms get a log axis."""
    table = _frame(table, checkpoint)
    present = sorted(int(k) for k in table["prompt_layer"].unique())
    layers = present if prompt_layers is None else sorted({int(k) for k in prompt_layers})
    if set(layers) - set(present):
        raise ValueError(f"prompt layers {sorted(set(layers) - set(present))} are not in the influence table "
                         f"(it has {present})")
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    if fig is None:
        fig = plt.figure(figsize=(COLUMN_WIDTHS_IN["two-column"], 2.0 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    colours = palette(len(layers))
    for ax, (q, p) in zip(axes, panels):
        sub = table[(table["quantity"] == q) & (table["position"] == p)]
        if sub.empty:
            ax.text(0.5, 0.5, f"no {q} at {p}", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for k, c in zip(layers, colours):
            st = group_stats(sub[sub["prompt_layer"] == k], "layer", "value", unit="seed")
            if st.empty:
                continue
            draw_line(ax, st, c, f"PL={k}", marker="." if len(st) <= 2 else None)
            if k - 1 in st.index:
                ax.plot([k - 1], [st.loc[k - 1, "mean"]], marker="o", ms=4, mfc="white", mec=c, mew=1.0, ls="none",
                        zorder=4)
        if q in ("grad_norm", "grad_x_state_norm") and (sub["value"] > 0).all():
            ax.set_yscale("log")
        ax.set_ylabel(_label(q, p))
        ax.set_xlabel(HIDDEN_STATE)
        integer_x(ax)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 8), frameon=False)
    return fig


def plot_influence_vs_prompt_layer(table: pd.DataFrame, quantity: str, position: str, at: str | int = "top",
                                   ax: Axes | None = None, *, checkpoints: Sequence[str] | None = None) -> Axes:
    """One number per prompt layer against PL, a line per checkpoint (init, ..., trained),
    mean ± std over seeds. ``at``: "top" (hidden state L), "insertion" (the first hidden
    state the quantity has for that PL: PL-1 for gradients, PL for attention and the
    drops) or a hidden state number."""
    table = _frame(table, None)
    sub = nonempty(table[(table["quantity"] == quantity) & (table["position"] == position)],
                   f"influence table ({quantity} at {position})")
    if at == "top":
        sub = sub[sub["layer"] == sub["layer"].max()]
    elif at == "insertion":
        first = sub.groupby("prompt_layer")["layer"].transform("min")
        sub = sub[sub["layer"] == first]
    else:
        sub = nonempty(sub[sub["layer"] == int(at)], f"influence table ({quantity} at hidden state {at})")
    have = list(dict.fromkeys(sub["checkpoint"].astype(str)))
    order = sorted(have, key=lambda c: (c != "init", c == "trained", int(c.split("-")[1]) if c.startswith("step-")
                                        else 0))
    checkpoints = order if checkpoints is None else list(checkpoints)
    ax = new_axes(ax)
    for ck, c in zip(checkpoints, palette(len(checkpoints))):
        g = sub[sub["checkpoint"].astype(str) == ck]
        if g.empty:
            raise ValueError(f"influence table has no checkpoint {ck!r} for {quantity} at {position} (it has {have})")
        draw_line(ax, group_stats(g, "prompt_layer", "value", unit="seed"), c, ck, marker="o", ms=3)
    where = {"top": "top hidden state", "insertion": "where the prompt joins"}.get(str(at), f"hidden state {at}")
    ax.set_ylabel(f"{INFLUENCE_LABELS.get(quantity, quantity)}\n({POSITION_LABELS.get(position, position)}, {where})")
    ax.set_xlabel(PROMPT_LAYER)
    layer_ticks(ax, sub["prompt_layer"])
    ax.legend(loc="best")
    return ax


def plot_section4(sweep: pd.DataFrame, curves: pd.DataFrame, mi: pd.DataFrame, influence: pd.DataFrame,
                  fig: Figure | None = None) -> Figure:
    """The paper's Section 4 on one page, 2 x 3 panels: (a) test metric against PL, (b)
    convergence for PL 1, the middle and the last, (c) I(h; y) per hidden state, (d) the
    prompt's attention mass at the prediction position of the top layer against PL, (e) the
    drop in log p(gold) when the prompt is hidden from PL upward, (f) the coherence of the
    gradient reaching the prompt against PL (init and trained)."""
    if fig is None:
        fig = plt.figure(figsize=(COLUMN_WIDTHS_IN["two-column"], 5.2), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    plot_performance_vs_layer(sweep, ax=axes[0])
    plot_convergence(curves, ax=axes[1])
    plot_mi_by_layer(mi, ax=axes[2])
    lo, hi = axes[2].get_ylim()  # headroom: the legend sits above the curves, never on them or on the ticks
    axes[2].set_ylim(lo, lo + (hi - lo) / 0.62)
    axes[2].legend(loc="upper center", fontsize="x-small", ncols=2, framealpha=0.9)
    plot_influence_vs_prompt_layer(influence, "attention_mass", "prediction", "top", ax=axes[3])
    plot_influence_vs_prompt_layer(influence, "logprob_drop_from", "prediction", "insertion", ax=axes[4])
    plot_influence_vs_prompt_layer(influence, "grad_coherence", "prompt", "insertion", ax=axes[5])
    for ax, letter in zip(axes, "abcdef"):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    return fig


__all__ = ["INFLUENCE_LABELS", "plot_influence_by_layer", "plot_influence_vs_prompt_layer", "plot_section4"]
