"""Paper figures from result tables: the drawing half of lpt_probe. Never imports torch.

Compute stages write tidy CSVs; every function here takes one of them as a pandas
DataFrame plus an optional matplotlib ``ax``, draws one figure and returns the Axes (the
Figure for multi-panel ones). Nothing is written to disk except by :func:`save_figure`.

==============================  =======================================  ======================
function                        paper                                    reads
==============================  =======================================  ======================
plot_performance_vs_layer       Fig. 2 left, Fig. 4, Fig. 5              ``sweep.csv``
plot_convergence                Fig. 2 middle                            ``curves.csv``
plot_mi_by_layer, _heatmap      Fig. 2 right                             ``mi.csv``
plot_projection                 Fig. 6                                   ``projection.csv``
plot_influence_by_layer, _vs_.. Section 4 (influence, gradient signal)   ``influence.csv``
plot_section4                   Section 4 on one page                    sweep, curves, mi, influence
plot_efficiency, _table         Table 10                                 ``train_throughput.csv``
==============================  =======================================  ======================

One module per figure family (``sweep``, ``mi``, ``projection``, ``efficiency``, ``influence``) and
``style`` for what they share; a new figure is a new module here plus one entry in
``lpt_probe.figures``.
"""

from .efficiency import efficiency_table, plot_efficiency
from .influence import (
    plot_influence_by_layer,
    plot_influence_vs_prompt_layer,
    plot_section4,
)
from .mi import plot_mi_by_layer, plot_mi_heatmap
from .projection import plot_projection
from .style import COLUMN_WIDTHS_IN, PaperStyle, figure_size, paper_style, save_figure
from .sweep import plot_convergence, plot_performance_vs_layer

__all__ = ["COLUMN_WIDTHS_IN", "PaperStyle", "paper_style", "figure_size", "save_figure", "plot_performance_vs_layer",
           "plot_convergence", "plot_mi_by_layer", "plot_mi_heatmap", "plot_projection", "plot_efficiency",
           "efficiency_table", "plot_influence_by_layer", "plot_influence_vs_prompt_layer", "plot_section4"]
