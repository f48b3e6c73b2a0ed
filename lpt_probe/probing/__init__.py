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

Every information quantity is in bits. Importing this package imports nothing heavy: each
name loads its submodule on first use (PEP 562), so ``from lpt_probe.probing import PROBES``
(:mod:`.registry`, the names) and :mod:`.options` cost no sklearn or torch; the torch probes
import torch when they fit.
"""

from __future__ import annotations

import importlib

_MODULES = {  # submodule -> the public names it defines (each imported on first access: PEP 562)
    "bits": "EPS LN2 bootstrap_counts bootstrap_indices bootstrap_mi_ci cross_entropy_bits entropy_bits "
            "log2_likelihood nats_to_bits null_log2q null_prior",
    "estimates": "ProbeInformation as_factory fit_probe mean_std_table paired_difference pooled_null "
                 "probe_information pvi selectivity shuffled_label_control",
    "linear": "LinearProbe",
    "mdl": "DEFAULT_FRACTIONS block_boundaries block_codelength_bits online_codelength",
    "mlp": "MLPProbe",
    "options": "ProbeOptions TransformerProbeOptions",
    "registry": "PROBES register_probe",
    "probes": "assert_disjoint make_probe parse_probe_grid probe_options",
    "selection": "edge_params expand_grid json_params log_loss_nats",
    "sequences": "INPUT_KINDS Sequences check_features check_xy n_features",
    "transformer": "TransformerProbe",
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names.split()}

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


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lpt_probe.probing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
