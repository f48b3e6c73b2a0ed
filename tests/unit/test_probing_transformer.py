"""The transformer probe over Sequences: it reads token order that a mean-pooled vector
cannot carry; determinism; padding invariance; a custom encoder; the estimators
(controls, PVI, MDL) take it unchanged."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from lpt_probe.probing import (
    Sequences,
    TransformerProbe,
    make_probe,
    online_codelength,
    probe_information,
    pvi,
    shuffled_label_control,
)

D = 16
# one grid point and a small width keep each fit to a few seconds on 2 CPU cores
FAST = dict(width=32, grid={"lr": [1e-3]})


def _order_task(n, rng, length=8, d=D, vocab=8):
    """Each sequence: one token A, one token B and fillers at random positions, then a fixed
    READ token last (the readout). y = 1 if A comes before B. Every sequence holds the
    same multiset of token types up to the fillers, whose distribution does not depend on
    y, so the mean of a sequence's states carries no information about y."""
    emb = np.random.default_rng(123).standard_normal((vocab, d))  # the same token embeddings everywhere
    seqs, ys = [], []
    for _ in range(n):
        toks = rng.integers(2, vocab - 1, size=length)
        a, b = rng.choice(length - 1, size=2, replace=False)
        toks[a], toks[b], toks[-1] = 0, 1, vocab - 1
        seqs.append((emb[toks] + 0.1 * rng.standard_normal((length, d))).astype(np.float32))
        ys.append(int(a < b))
    return Sequences.from_list(seqs), np.array(ys)


@pytest.fixture(scope="module")
def order_splits():
    rng = np.random.default_rng(0)
    return [_order_task(n, rng) for n in (400, 200, 400)]


@pytest.mark.parametrize("readout", ["position", "attention"])
def test_transformer_reads_order_that_mean_pooling_cannot(order_splits, readout):
    (X, y), (X_dev, y_dev), (X_test, y_test) = order_splits
    res = probe_information(lambda s: TransformerProbe(2, seed=s, readout=readout, **FAST), X, y, X_dev, y_dev,
                            X_test, y_test, 2, bootstrap=200)
    row = res.rows[0]
    assert row["mi_bits"] > 0.7 * row["h_y_bits"], row
    assert row["probe"] == "transformer" and row["grid_edge"] == ""
    assert np.mean(pvi(res.log2q[0], res.log2q_null)) == pytest.approx(row["mi_bits"])
    if readout == "position":
        pooled = [s.mean_pool() for s in (X, X_dev, X_test)]
        lin = probe_information("linear", pooled[0], y, pooled[1], y_dev, pooled[2], y_test, 2, bootstrap=0)
        assert abs(lin.rows[0]["mi_bits"]) < 0.05, lin.rows[0]


def test_transformer_shuffled_label_control_is_about_zero(order_splits):
    (X, y), (X_dev, y_dev), (X_test, y_test) = order_splits
    row = shuffled_label_control(lambda s: TransformerProbe(2, seed=s, **FAST), X[:200], y[:200], X_dev[:100],
                                 y_dev[:100], X_test, y_test, 2, bootstrap=0).rows[0]
    assert abs(row["mi_bits"]) < 0.05, row


def test_transformer_is_deterministic_leaves_global_rng_alone_and_ignores_padding():
    import torch

    rng = np.random.default_rng(1)
    X, y = _order_task(60, rng)
    X = X[np.argsort(rng.random(60))]
    lengths = rng.integers(2, 9, 60)  # ragged: cut sequences to different lengths
    X = Sequences.from_list([X[i][:n] for i, n in enumerate(lengths)], readout=lengths - 1)
    kw = dict(width=16, num_heads=2, grid={"lr": [3e-3]}, max_epochs=3, min_steps=0, patience=10)
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    p1 = TransformerProbe(2, seed=0, **kw).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected_next)  # global RNG untouched (dropout included)
    p2 = TransformerProbe(2, seed=0, **kw).fit(X, y)
    p3 = TransformerProbe(2, seed=1, **kw).fit(X, y)
    proba = p1.predict_proba(X)
    np.testing.assert_array_equal(proba, p2.predict_proba(X))
    assert not np.allclose(proba, p3.predict_proba(X))
    assert p1.dev_source_ == "carved" and len(p1.dev_indices_) == 6 and p1.selected_params_["lr"] == 3e-3
    assert p1.n_epochs_ == 3 and p1.selection_["scores"][0]["n_steps"] == 3 * 2  # 54 rows, batches of 32
    # padding does not leak: each sequence alone gives the same prediction as in a padded batch
    alone = np.concatenate([p1.predict_proba(X[[i]]) for i in range(0, 60, 7)])
    np.testing.assert_allclose(alone, proba[::7], atol=1e-5)


class RecordingEncoder:
    """encoder_factory that builds a one-layer torch encoder and records its inputs."""

    def __init__(self):
        self.calls, self.seen = 0, []

    def __call__(self):
        from torch import nn

        outer = self
        self.calls += 1

        class Enc(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.TransformerEncoderLayer(D, 2, dim_feedforward=32, batch_first=True)

            def forward(self, h, key_mask):
                outer.seen.append((tuple(h.shape), key_mask.dtype, key_mask.sum().item()))
                return self.layer(h, src_key_padding_mask=~key_mask)

        return Enc()


def test_encoder_factory_replaces_the_builtin_layers():
    import torch

    rng = np.random.default_rng(2)
    X, y = _order_task(60, rng)
    X_dev, y_dev = _order_task(20, rng)
    factory = RecordingEncoder()
    probe = TransformerProbe(2, width=None, encoder_factory=factory, grid={"lr": [1e-3, 3e-3]},
                             max_epochs=2, min_steps=0).fit(X, y, X_dev, y_dev)
    assert factory.calls == 2  # a fresh encoder per grid point
    shape, mask_dtype, n_real = factory.seen[0]
    assert shape[2] == D and mask_dtype == torch.bool and n_real == shape[0] * shape[1]  # all length 8
    # the states enter the given layers as they are: no standardisation, projection or positions
    assert probe.mean_ is None and probe.model_.pos is None
    assert isinstance(probe.model_.proj, torch.nn.Identity)
    assert probe.predict_proba(X_dev).shape == (20, 2)
    with pytest.raises(ValueError, match=r"width must be None or d=16, got width=32"):
        TransformerProbe(2, width=32, encoder_factory=factory).fit(X, y)


def test_transformer_settings_errors_name_the_fix():
    rng = np.random.default_rng(3)
    X, y = _order_task(20, rng)
    with pytest.raises(ValueError, match="num_heads=3 must divide the model width 32"):
        TransformerProbe(2, width=32, num_heads=3).fit(X, y)
    with pytest.raises(ValueError, match=r"readout='cls'; choose one of \('position', 'attention'\)"):
        TransformerProbe(2, readout="cls").fit(X, y)
    with pytest.raises(ValueError, match="sequence of 8 tokens but max_positions=4"):
        TransformerProbe(2, max_positions=4).fit(X, y)
    probe = TransformerProbe(2, width=8, num_heads=2, max_positions=8, grid={"lr": [1e-3]}, max_epochs=1,
                             min_steps=0).fit(X, y)
    longer = Sequences.from_list([np.zeros((9, D), np.float32)])
    with pytest.raises(ValueError, match="max_positions"):
        probe.predict_proba(longer)
    with pytest.raises(ValueError, match="d=3 but the probe was fitted on d=16"):
        probe.predict_proba(Sequences(np.zeros((2, 3)), [2]))


def test_online_codelength_with_the_transformer_probe():
    rng = np.random.default_rng(4)
    X, y = _order_task(300, rng)
    factory = functools.partial(make_probe, "transformer", 2, **FAST, max_epochs=30)
    res = online_codelength(factory, X, y, 2, fractions=(0.3, 0.6, 1.0), seed=0)
    assert res["block_ends"] == [90, 180, 300]
    assert res["compression"] > 1.2, res  # order is learnable from 90 sequences
    assert all(np.isfinite(b["codelength_bits"]) for b in res["blocks"])


def test_min_steps_keeps_small_data_training_past_a_plateau():
    rng = np.random.default_rng(4)
    X, y = _order_task(90, rng)
    probe = TransformerProbe(2, **FAST, max_epochs=10).fit(X, y)  # 81 train rows: 3 steps per epoch
    assert probe.selection_["scores"][0]["n_steps"] >= 300 and probe.n_epochs_ >= 100
    quick = TransformerProbe(2, **FAST, max_epochs=10, min_steps=0).fit(X, y)
    assert quick.n_epochs_ <= 10
