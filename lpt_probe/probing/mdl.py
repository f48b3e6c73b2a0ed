"""Minimum description length probing: the online code of Voita & Titov (2020), in bits.

Start at :func:`online_codelength`. The labels y of a dataset are transmitted in blocks
given the representations X: shuffle the rows once with ``seed``; block boundaries are
``int(fraction * n)`` for each fraction (see :func:`block_boundaries`). The first block
is sent with the uniform code (``|block| * log2 K`` bits); each later block is sent
with a probe trained on ALL preceding rows, costing ``sum -log2 q(y|x)`` over the block
(:func:`block_codelength_bits`). The online codelength is the total; ``compression`` is
``uniform_codelength_bits / online_codelength_bits`` with ``uniform = n * log2 K``. A
more compressible labelling (higher compression, shorter code) means the labels are
easier to extract from X for that probe family, counting both data and effort.

Units: everything returned is in bits. Probe losses are natural-log internally (torch
and scikit-learn) and are converted once with ``bits.nats_to_bits``; the reference
implementation mixes nats and bits, which this module deliberately does not copy.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from .bits import log2_likelihood
from .estimates import ProbeFactory, as_factory, fit_probe
from .sequences import check_xy

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_FRACTIONS", "block_boundaries", "block_codelength_bits", "online_codelength"]

DEFAULT_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def block_boundaries(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """Block end indices: ``int(f * n)`` per fraction, at least 1, sorted and deduplicated.

    The last boundary is always ``n`` (appended if the largest fraction is below 1), so
    the whole dataset is transmitted. E.g. ``block_boundaries(20, (0.1, 0.25, 0.5, 1.0))
    == [2, 5, 10, 20]``; tiny n merges blocks: ``block_boundaries(3) == [1, 3]``.
    """
    if n < 1:
        raise ValueError(f"need at least one example to transmit, got n={n}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {fractions}")
    ends = sorted({max(1, int(f * n)) for f in fractions} | {n})
    return ends


def block_codelength_bits(probe_factory: ProbeFactory, X_prev, y_prev, X_block, y_block, seed: int = 0) -> float:
    """Bits to transmit ``y_block`` with a probe ``probe_factory(seed)`` fitted on the
    preceding rows only: ``sum_i -log2 q(y_i|x_i)`` over the block (clipped at EPS)."""
    probe = fit_probe(probe_factory(seed), X_prev, y_prev, None, None)
    return float(-log2_likelihood(probe.predict_proba(X_block), y_block).sum())


def online_codelength(probe_factory: ProbeFactory | str, X, y, n_classes: int,
                      fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> dict:
    """Online (prequential) codelength of y given X, in bits (Voita & Titov 2020).

    ``probe_factory``: a name for ``make_probe`` or a callable ``seed -> probe``; every
    block's probe is built with the same ``seed``, which also shuffles the rows once.
    An early-stopping probe (MLPProbe, TransformerProbe) carves its dev rows from the
    preceding rows. ``X`` is an ``[n, d]`` array or :class:`~.sequences.Sequences` (rows
    are permuted and sliced by indexing, so a sequence probe plugs in unchanged).

    Returns a dict: ``online_codelength_bits``, ``uniform_codelength_bits`` (n log2 K),
    ``compression`` (uniform / online), ``n``, ``n_classes``, ``seed``, ``block_ends``
    and ``blocks``: one dict per block with ``block`` (0-based), ``start``, ``end``,
    ``n_train`` (= start, rows the block's probe saw), ``n_block``, ``code``
    ("uniform" | "probe"), ``codelength_bits`` and ``bits_per_example``.
    """
    X, y = check_xy(X, y, n_classes, "MDL")
    factory = as_factory(probe_factory, n_classes)
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    X, y = X[order], y[order]
    ends = block_boundaries(n, fractions)
    log2k = math.log2(n_classes)
    blocks, start = [], 0
    for b, end in enumerate(ends):
        if b == 0:
            bits, code = end * log2k, "uniform"
        else:
            bits = block_codelength_bits(factory, X[:start], y[:start], X[start:end], y[start:end], seed)
            code = "probe"
        blocks.append({"block": b, "start": start, "end": end, "n_train": start, "n_block": end - start,
                       "code": code, "codelength_bits": bits, "bits_per_example": bits / (end - start)})
        logger.debug("MDL block %d [%d, %d): %.2f bits (%s)", b, start, end, bits, code)
        start = end
    online = float(sum(blk["codelength_bits"] for blk in blocks))
    uniform = n * log2k
    logger.info("MDL: online %.1f bits, uniform %.1f bits, compression %.3f", online, uniform, uniform / online)
    return {"online_codelength_bits": online, "uniform_codelength_bits": uniform,
            "compression": uniform / online, "n": n, "n_classes": n_classes, "seed": seed,
            "block_ends": ends, "blocks": blocks}
