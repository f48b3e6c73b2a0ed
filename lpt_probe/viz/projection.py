"""Sentence representations beside generated prompts in 2-D (Fig. 6), from
``projection.csv``; never imports torch."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import MARKERS, figure_size, nonempty, palette, panel_axes, require_columns

logger = logging.getLogger(__name__)


# -- projection -----------------------------------------------------------------------
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
    require_columns(proj, ["example", "space", "x", "y", "cluster", "label"], what)
    spaces = {"sentence": "sentence representation", "prompt": "generated prompt"}
    for space in spaces:
        nonempty(proj[proj["space"] == space], f"{what} (space {space!r})")
    axes = panel_axes(ax_or_fig, 2, figure_size("two-column", 0.4))
    fig = axes[0].figure
    clusters = sorted(proj["cluster"].unique())
    colour = dict(zip(clusters, palette(len(clusters))))
    labels = sorted(proj["label"].astype(str).unique())
    if len(labels) > len(MARKERS):
        logger.warning("%d gold labels but %d marker shapes: drawing every label as a circle",
                       len(labels), len(MARKERS))
    marker = {lab: MARKERS[i] if len(labels) <= len(MARKERS) else "o" for i, lab in enumerate(labels)}
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
    if len(labels) <= len(MARKERS):
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
