"""Online MDL codelength: block boundaries, a hand-computed tiny case, units (bits), tiny
n, prefix training, and compression on informative vs shuffled labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpt_probe.probing import block_boundaries, block_codelength_bits, online_codelength


class LaplacePriorProbe:
    """Predicts the add-one smoothed label frequencies of its training rows, whatever X is.
    Column 0 of X carries the row id, so the test can see which rows it was fitted on."""

    def __init__(self, n_classes, log):
        self.n_classes, self.log = n_classes, log

    def fit(self, X, y):
        self.log.append({"fit_ids": X[:, 0].astype(int).tolist()})
        self.q_ = (np.bincount(y, minlength=self.n_classes) + 1) / (len(y) + self.n_classes)
        return self

    def predict_proba(self, X):
        self.log[-1]["scored_ids"] = X[:, 0].astype(int).tolist()
        return np.tile(self.q_, (len(X), 1))


class UniformProbe:
    def __init__(self, n_classes):
        self.n_classes = n_classes

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        return np.full((len(X), self.n_classes), 1 / self.n_classes)


def test_block_boundaries():
    assert block_boundaries(20, (0.1, 0.25, 0.5, 1.0)) == [2, 5, 10, 20]
    assert block_boundaries(3) == [1, 3]  # int(f * 3) == 0 for small f: first block is 1 row
    assert block_boundaries(1) == [1]
    assert block_boundaries(1000)[:3] == [1, 2, 4] and block_boundaries(1000)[-1] == 1000
    assert block_boundaries(10, (0.5, 0.3)) == [3, 5, 10]  # unsorted, below 1: n appended
    with pytest.raises(ValueError, match="fractions"):
        block_boundaries(10, (0.0, 1.0))
    with pytest.raises(ValueError, match="n=0"):
        block_boundaries(0)


def test_online_codelength_matches_hand_computation():
    n, K, seed = 20, 3, 4
    y = np.array([0, 1, 2, 2, 0, 1, 1, 1, 0, 2, 2, 2, 1, 0, 0, 1, 2, 1, 1, 0])
    X = np.c_[np.arange(n), np.zeros(n)]  # column 0: row id
    log = []
    result = online_codelength(lambda s: LaplacePriorProbe(K, log), X, y, K, fractions=(0.1, 0.25, 0.5, 1.0),
                               seed=seed)

    # by hand: the documented single shuffle, a uniform first block of 2 rows, then each
    # block coded by the add-one prior of all preceding rows
    order = np.random.default_rng(seed).permutation(n)
    ys = y[order]
    expected = [2 * math.log2(3)]
    for start, end in [(2, 5), (5, 10), (10, 20)]:
        counts = np.bincount(ys[:start], minlength=K)
        expected.append(sum(-math.log2((counts[c] + 1) / (start + K)) for c in ys[start:end]))
    assert [b["codelength_bits"] for b in result["blocks"]] == pytest.approx(expected, abs=1e-12)
    assert result["online_codelength_bits"] == pytest.approx(sum(expected), abs=1e-12)
    assert result["uniform_codelength_bits"] == pytest.approx(n * math.log2(3))
    assert result["compression"] == pytest.approx(n * math.log2(3) / sum(expected))
    assert result["block_ends"] == [2, 5, 10, 20]
    first = result["blocks"][0]
    assert (first["code"], first["start"], first["end"], first["n_train"]) == ("uniform", 0, 2, 0)
    assert [b["n_block"] for b in result["blocks"]] == [2, 3, 5, 10]
    assert result["blocks"][3]["bits_per_example"] == pytest.approx(expected[3] / 10)

    # each probe was fitted on exactly the preceding rows and scored only its own block
    assert len(log) == 3
    for call, (start, end) in zip(log, [(2, 5), (5, 10), (10, 20)]):
        assert call["fit_ids"] == order[:start].tolist()
        assert call["scored_ids"] == order[start:end].tolist()
        assert not set(call["fit_ids"]) & set(call["scored_ids"])


def test_block_codelength_bits_by_hand():
    X_prev, y_prev = np.c_[[0, 1, 2, 3]], np.array([1, 1, 1, 0])
    X_block, y_block = np.c_[[4, 5]], np.array([1, 0])
    bits = block_codelength_bits(lambda s: LaplacePriorProbe(2, []), X_prev, y_prev, X_block, y_block)
    assert bits == pytest.approx(-math.log2(4 / 6) - math.log2(2 / 6))


def test_codelength_is_in_bits_and_uniform_probe_gives_no_compression():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 3)), rng.integers(0, 4, 64)
    result = online_codelength(lambda s: UniformProbe(4), X, y, 4)
    assert result["online_codelength_bits"] == pytest.approx(128.0)  # 2 bits per label, not ln 4
    assert result["compression"] == pytest.approx(1.0)


def test_tiny_datasets():
    X, y = np.zeros((1, 2)), np.array([1])
    one = online_codelength("linear", X, y, 2)
    assert one["online_codelength_bits"] == 1.0 and len(one["blocks"]) == 1
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((5, 4)), np.array([0, 1, 0, 1, 1])
    small = online_codelength("linear", X, y, 2)
    assert small["block_ends"] == [1, 2, 5]
    # a probe fitted on one row is the rule of succession (2/3 vs 1/3): bounded cost
    assert all(0 < b["bits_per_example"] < 3 for b in small["blocks"])


def test_linear_probe_compresses_informative_labels_not_shuffled_ones():
    rng = np.random.default_rng(2)
    n = 1000
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 8))
    X[:, 0] += np.where(y == 1, 1.5, -1.5)
    real = online_codelength("linear", X, y, 2, seed=0)
    shuffled = online_codelength("linear", X, rng.permutation(y), 2, seed=0)
    assert real["compression"] > 3.0
    assert 0.95 < shuffled["compression"] < 1.02
    for res in (real, shuffled):
        assert res["online_codelength_bits"] == pytest.approx(sum(b["codelength_bits"] for b in res["blocks"]))
        assert all(np.isfinite(b["codelength_bits"]) for b in res["blocks"])
