"""Probing: how much information about the label a layer's hidden states make usable.

Works on plain arrays (features X [n, d] float, labels y [n] int in [0, n_classes));
extracting the hidden states is someone else's job. Start with:

- :mod:`.probes`: ``make_probe("linear" | "mlp", n_classes, seed)``, the probe classes
  (scikit-learn conventions) and ``assert_disjoint`` for split ids.
- :mod:`.estimates`: ``probe_information`` (I = H(y) - held-out cross-entropy, in bits,
  with a bootstrap CI), ``shuffled_label_control``, ``selectivity``, ``pvi``,
  ``mean_std_table``.
- :mod:`.mdl`: ``online_codelength``, the online MDL code of Voita & Titov (2020).

Every information quantity is in bits.
"""

from .estimates import (
    EPS,
    LN2,
    ProbeInformation,
    bootstrap_mi_ci,
    cross_entropy_bits,
    entropy_bits,
    log2_likelihood,
    mean_std_table,
    nats_to_bits,
    null_log2q,
    probe_information,
    pvi,
    selectivity,
    shuffled_label_control,
)
from .mdl import DEFAULT_FRACTIONS, block_boundaries, block_codelength_bits, online_codelength
from .probes import PROBES, LinearProbe, MLPProbe, assert_disjoint, make_probe, register_probe

__all__ = [
    "EPS", "LN2", "nats_to_bits", "entropy_bits", "log2_likelihood", "cross_entropy_bits", "null_log2q",
    "bootstrap_mi_ci", "ProbeInformation", "probe_information", "shuffled_label_control", "selectivity",
    "pvi", "mean_std_table",
    "DEFAULT_FRACTIONS", "block_boundaries", "block_codelength_bits", "online_codelength",
    "PROBES", "LinearProbe", "MLPProbe", "make_probe", "register_probe", "assert_disjoint",
]
