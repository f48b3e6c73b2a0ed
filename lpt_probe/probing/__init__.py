"""Probing: how much information about the label a layer's hidden states make usable.

Works on plain inputs: vectors ``X [n, d]`` float or ragged sequences of states
(:class:`Sequences`), labels ``y [n]`` int in ``[0, n_classes)``; extracting the hidden
states is someone else's job. Start with:

- :mod:`.probes`: ``make_probe("linear" | "mlp" | "transformer", n_classes, seed)``, the
  registry ``PROBES``, ``parse_probe_grid`` (user grid strings -> constructor kwargs) and
  ``assert_disjoint`` for split ids. The probes: ``LinearProbe`` (:mod:`.linear`),
  ``MLPProbe`` (:mod:`.mlp`), ``TransformerProbe`` (:mod:`.transformer`, over :class:`Sequences`);
  each picks its hyperparameters on dev and reports ``selected_params_`` / ``selection_``
  (:mod:`.selection`).
- :mod:`.options`: a family's own options beyond its grid (the transformer probe's depth,
  width, initialisation, input and readout: ``TransformerProbeOptions``), built by
  ``probe_options(name, flags)``; a study asks them instead of branching on them.
- :mod:`.estimates`: ``probe_information`` (I = null-model minus probe cross-entropy on
  test = mean PVI, in bits, with a paired bootstrap CI), ``shuffled_label_control``,
  ``selectivity``, ``pvi``, ``mean_std_table``.
- :mod:`.bits`: what those estimates share, in bits: ``nats_to_bits``, ``log2_likelihood``,
  the null model (``null_prior``, ``null_log2q``) and the one bootstrap resampler
  (``bootstrap_indices``, ``bootstrap_mi_ci``); re-exported by :mod:`.estimates`.
- :mod:`.mdl`: ``online_codelength``, the online MDL code of Voita & Titov (2020).
- :mod:`.sequences`: the ``Sequences`` container and ``check_xy``, the input validation.

Every information quantity is in bits. Importing this package does not import torch
(plotting code imports it); the torch probes import it when they fit.
"""

from .bits import (
    EPS,
    LN2,
    bootstrap_counts,
    bootstrap_indices,
    bootstrap_mi_ci,
    cross_entropy_bits,
    entropy_bits,
    log2_likelihood,
    nats_to_bits,
    null_log2q,
    null_prior,
)
from .estimates import (
    ProbeInformation,
    as_factory,
    fit_probe,
    mean_std_table,
    paired_difference,
    pooled_null,
    probe_information,
    pvi,
    selectivity,
    shuffled_label_control,
)
from .linear import LinearProbe
from .mdl import (
    DEFAULT_FRACTIONS,
    block_boundaries,
    block_codelength_bits,
    online_codelength,
)
from .mlp import MLPProbe
from .options import ProbeOptions, TransformerProbeOptions
from .probes import (
    PROBES,
    assert_disjoint,
    make_probe,
    parse_probe_grid,
    probe_options,
    register_probe,
)
from .selection import edge_params, expand_grid, json_params, log_loss_nats
from .sequences import INPUT_KINDS, Sequences, check_features, check_xy, n_features
from .transformer import TransformerProbe

__all__ = [
    "EPS", "LN2", "nats_to_bits", "entropy_bits", "log2_likelihood", "cross_entropy_bits", "null_log2q",
    "null_prior",
    "bootstrap_indices", "bootstrap_counts", "bootstrap_mi_ci", "ProbeInformation", "probe_information",
    "shuffled_label_control", "pooled_null",
    "paired_difference", "selectivity",
    "pvi", "mean_std_table", "as_factory", "fit_probe",
    "DEFAULT_FRACTIONS", "block_boundaries", "block_codelength_bits", "online_codelength",
    "PROBES", "LinearProbe", "MLPProbe", "TransformerProbe", "make_probe", "register_probe",
    "parse_probe_grid", "assert_disjoint", "probe_options", "ProbeOptions", "TransformerProbeOptions",
    "expand_grid", "edge_params", "json_params", "log_loss_nats",
    "Sequences", "INPUT_KINDS", "check_xy", "check_features", "n_features",
]
