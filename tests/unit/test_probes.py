"""Probe classifiers: scikit-learn conventions, missing classes, CV fallbacks, the factory,
split disjointness and MLP determinism / early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_probe.probing import (
    PROBES,
    LinearProbe,
    MLPProbe,
    assert_disjoint,
    make_probe,
    register_probe,
)
from lpt_probe.probing.estimates import cross_entropy_bits, nats_to_bits


def _blobs(n, d=6, k=2, sep=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.standard_normal((n, d))
    X[np.arange(n), y % d] += sep
    return X, y


def test_linear_probe_sklearn_conventions():
    X, y = _blobs(300)
    probe = LinearProbe(2)
    assert probe.fit(X, y) is probe
    proba = probe.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probe.classes_, [0, 1])
    np.testing.assert_array_equal(probe.predict(X), proba.argmax(axis=1))
    assert probe.C_ in probe.Cs and probe.cv_info_["n_splits"] == 3 and probe.cv_info_["fallback"] is None
    assert set(probe.cv_info_["scores"]) == {float(c) for c in probe.Cs}
    assert probe.converged_ and probe.smoothing_ == 0.0
    assert np.mean(probe.predict(X) == y) > 0.8


def test_linear_probe_absent_class_gets_rule_of_succession_column():
    X, y = _blobs(60, k=2)
    probe = LinearProbe(3).fit(X, y)  # class 2 never seen
    proba = probe.predict_proba(X)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba[:, 2], 1 / (60 + 3))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert probe.smoothing_ == pytest.approx(3 / 63)


def test_linear_probe_single_class_is_laplace_rule():
    X = np.random.default_rng(0).standard_normal((4, 3))
    probe = LinearProbe(2).fit(X, np.ones(4, dtype=int))
    np.testing.assert_allclose(probe.predict_proba(X[:2]), [[1 / 6, 5 / 6]] * 2)
    assert probe.model_ is None and "constant" in probe.cv_info_["fallback"]


def test_linear_probe_cv_falls_back_to_fewer_folds_then_smallest_C():
    X, y = _blobs(40)
    y2 = y.copy()
    y2[:] = 0
    y2[:2] = 1  # class 1 has 2 rows -> 2 folds
    probe = LinearProbe(2, cv=3).fit(X, y2)
    assert probe.cv_info_["n_splits"] == 2 and "2 folds" in probe.cv_info_["fallback"]
    y2[1] = 0  # class 1 has 1 row -> no CV, most regularised C
    probe = LinearProbe(2, Cs=(10, 0.5, 0.01), cv=3).fit(X, y2)
    assert probe.cv_info_["n_splits"] == 0 and probe.C_ == 0.01
    assert "cannot cross-validate" in probe.cv_info_["fallback"]


def test_labels_outside_range_are_rejected_with_the_value():
    X, y = _blobs(20)
    with pytest.raises(ValueError, match="label 2 is outside"):
        LinearProbe(2).fit(X, np.where(y == 1, 2, 0))
    with pytest.raises(ValueError, match="2-D"):
        LinearProbe(2).fit(X[:, 0], y)


def test_make_probe_builds_registered_probes_and_lists_choices(monkeypatch):
    probe = make_probe("linear", 3, 7, Cs=(0.1,))
    assert isinstance(probe, LinearProbe) and probe.seed == 7 and probe.Cs == (0.1,) and probe.n_classes == 3
    mlp = make_probe("mlp", 2, seed=1, hidden=8)
    assert isinstance(mlp, MLPProbe) and mlp.hidden == 8 and mlp.seed == 1
    # the registry now also lists "transformer" (added with the sequence probe)
    with pytest.raises(ValueError, match=r"'bert'.*\['linear', 'mlp', 'transformer'\]"):
        make_probe("bert", 2, 0)
    monkeypatch.setitem(PROBES, "dummy", LinearProbe)
    with pytest.raises(ValueError, match="already registered"):
        register_probe("dummy", LinearProbe)
    assert isinstance(make_probe("dummy", 2, 0), LinearProbe)


def test_assert_disjoint_names_the_overlapping_pair_and_an_id():
    assert_disjoint([1, 2], [3, 4], np.array([5]), names=("train", "dev", "test"))
    with pytest.raises(ValueError, match=r"'dev' and 'test' share 2 id\(s\), e\.g\. 4"):
        assert_disjoint([1, 2], [3, 4, 5], [4, 5, 6], names=("train", "dev", "test"))
    with pytest.raises(ValueError, match=r"'split0' and 'split2'.*'a'"):
        assert_disjoint(["a", "b"], ["c"], ["a"])
    with pytest.raises(ValueError, match="2 names"):
        assert_disjoint([1], [2], [3], names=("train", "test"))


def _mlp(**kw):
    base = dict(hidden=16, max_epochs=40, patience=5, batch_size=64)
    base.update(kw)
    return MLPProbe(2, **base)


def test_mlp_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    import torch

    X, y = _blobs(200)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    p1 = _mlp(seed=0).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected_next)  # global RNG untouched
    p2 = _mlp(seed=0).fit(X, y)
    p3 = _mlp(seed=1).fit(X, y)
    np.testing.assert_array_equal(p1.predict_proba(X), p2.predict_proba(X))
    assert p1.dev_loss_curve_ == p2.dev_loss_curve_
    assert not np.allclose(p1.predict_proba(X), p3.predict_proba(X))


def test_mlp_early_stopping_selects_on_the_given_dev_split():
    X, y = _blobs(300, seed=0)
    X_dev, y_dev = _blobs(100, seed=1)
    probe = _mlp(max_epochs=30, patience=30).fit(X, y, X_dev, y_dev)
    assert probe.dev_source_ == "given" and probe.dev_indices_ is None
    best = int(np.argmin(probe.dev_loss_curve_))
    assert probe.best_epoch_ == best + 1
    # the restored weights are the best-on-dev ones: their dev loss is the curve's minimum
    dev_bits = cross_entropy_bits(probe.predict_proba(X_dev), y_dev)
    assert dev_bits == pytest.approx(nats_to_bits(probe.dev_loss_curve_[best]), abs=1e-5)

    # a dev split with flipped labels gets worse as training fits the train split: early stop
    flipped = _mlp(max_epochs=100, patience=3, lr=1e-2).fit(X, y, X_dev, 1 - y_dev)
    assert flipped.stopped_early_ and flipped.n_epochs_ == flipped.best_epoch_ + 3 < 100
    assert flipped.best_epoch_ <= 2


def test_mlp_carves_a_seeded_dev_split_when_none_given():
    X, y = _blobs(200)
    p1, p2 = _mlp(seed=3).fit(X, y), _mlp(seed=3).fit(X, y)
    assert p1.dev_source_ == "carved" and len(p1.dev_indices_) == 20
    np.testing.assert_array_equal(p1.dev_indices_, p2.dev_indices_)
    assert not np.array_equal(p1.dev_indices_, _mlp(seed=4).fit(X, y).dev_indices_)
    tiny = _mlp(max_epochs=5).fit(X[:1], y[:1])  # one row: no dev split possible
    assert tiny.dev_source_ == "none" and tiny.n_epochs_ == 5 and tiny.predict_proba(X[:3]).shape == (3, 2)


def test_linear_probe_fits_float32_features_when_asked_and_matches_float64():
    """``dtype="float32"`` (issue 36) fits in float32 and agrees with the float64 default; an
    unknown dtype is refused naming the choices."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float16)
    y = (X[:, 0].astype(float) + 0.5 * rng.normal(size=300) > 0).astype(int)
    p64 = LinearProbe(2).fit(X[:200], y[:200], X[200:250], y[200:250])
    p32 = LinearProbe(2, dtype="float32").fit(X[:200], y[:200], X[200:250], y[200:250])
    assert p64.model_.coef_.dtype == np.float64 and p32.model_.coef_.dtype == np.float32
    assert p64.C_ == p32.C_
    np.testing.assert_allclose(p32.predict_proba(X[250:]), p64.predict_proba(X[250:]), atol=1e-4)
    with pytest.raises(ValueError, match="'float64' or 'float32'"):
        LinearProbe(2, dtype="float16")
