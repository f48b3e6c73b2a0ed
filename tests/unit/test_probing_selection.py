"""Hyperparameter selection of the probes: C on dev (never refitted on dev), the small-n
case where CV used to collapse, grids from strings, grid edges, the MLP grid and its
accuracy on a nonlinear task with known MI."""

from __future__ import annotations

import json
import logging
import math
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lpt_probe.probing import (
    LinearProbe,
    MLPProbe,
    TransformerProbe,
    edge_params,
    expand_grid,
    make_probe,
    parse_probe_grid,
    probe_information,
)


def _h2(p):
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _gaussians(n_per, d, sep, rng, direction):
    """Two classes, n_per rows each, means +-sep/2 along a unit ``direction`` [d]."""
    y = np.repeat([0, 1], n_per)
    X = rng.standard_normal((len(y), d)) + np.where(y == 1, 0.5, -0.5)[:, None] * sep * direction
    return X, y


# ---------------------------------------------------------------- linear probe on dev
def test_linear_probe_selects_C_on_dev_and_keeps_the_train_fitted_model():
    rng = np.random.default_rng(0)
    direction = np.ones(20) / math.sqrt(20)
    X, y = _gaussians(150, 20, 1.5, rng, direction)
    X_dev, y_dev = _gaussians(100, 20, 1.5, rng, direction)
    probe = LinearProbe(2, Cs=(1e-3, 0.01, 0.1, 1)).fit(X, y, X_dev, y_dev)
    sel = probe.selection_
    assert sel["source"] == "dev" and probe.selected_params_ == {"C": probe.C_}
    assert [s["C"] for s in sel["scores"]] == [1e-3, 0.01, 0.1, 1.0]
    best = min(sel["scores"], key=lambda s: s["log_loss"])
    assert probe.C_ == best["C"]
    json.dumps(probe.selected_params_), json.dumps(sel)  # JSON-able
    # the kept model is the one fitted on the train rows for the chosen C, not a refit on dev
    ref = LogisticRegression(C=probe.C_, max_iter=1000).fit(probe.scaler_.transform(X), y)
    on_dev = LogisticRegression(C=probe.C_, max_iter=1000).fit(probe.scaler_.transform(np.r_[X, X_dev]),
                                                               np.r_[y, y_dev])
    to_ref = np.abs(probe.model_.coef_ - ref.coef_).max()  # warm-started path: lbfgs tolerance only
    assert to_ref < 2e-3 and to_ref < np.abs(probe.model_.coef_ - on_dev.coef_).max() / 10
    np.testing.assert_allclose(probe.scaler_.mean_, X.mean(axis=0))  # scaling from train only


def test_linear_probe_without_dev_falls_back_to_cv():
    rng = np.random.default_rng(1)
    X, y = _gaussians(100, 5, 2.0, rng, np.eye(5)[0])
    probe = LinearProbe(2).fit(X, y)
    assert probe.selection_["source"] == "cv" and probe.cv_info_["n_splits"] == 3
    assert len(probe.selection_["scores"]) == len(probe.Cs)


@pytest.mark.parametrize("d", [50, 300])
def test_small_n_with_dev_does_not_collapse(d):
    """~10 train rows per class and a dev split of the same size, clearly separated classes
    (Mahalanobis distance 4 between the means, true MI ~0.95 bits): the estimate must be
    well above 0. With CV on the 20 train rows the choice is erratic (it collapsed to
    ~0.003 bits for one of these seeds at d=300)."""
    estimates = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        direction = rng.standard_normal(d)
        direction /= np.linalg.norm(direction)
        X, y = _gaussians(10, d, 4.0, rng, direction)
        X_dev, y_dev = _gaussians(10, d, 4.0, rng, direction)
        X_test, y_test = _gaussians(500, d, 4.0, rng, direction)
        row = probe_information("linear", X, y, X_dev, y_dev, X_test, y_test, 2, bootstrap=0).rows[0]
        estimates.append(row["mi_bits"])
    assert min(estimates) > 0.2, estimates


def test_grid_edge_is_reported_in_rows_and_logged_at_debug_only(caplog):
    rng = np.random.default_rng(2)
    X, y = _gaussians(300, 4, 3.0, rng, np.eye(4)[0])
    X_dev, y_dev = _gaussians(200, 4, 3.0, rng, np.eye(4)[0])
    with caplog.at_level(logging.DEBUG, logger="lpt_probe.probing"):
        probe = LinearProbe(2, Cs=(1e-5, 1e-4, 1e-3)).fit(X, y, X_dev, y_dev)  # strong signal: wants large C
    assert probe.C_ == 1e-3 and probe.selection_["at_grid_edge"] == ["C"]
    assert probe.cv_info_["at_grid_edge"] == "high"
    records = [r for r in caplog.records if r.name.startswith("lpt_probe.probing")]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    two = LinearProbe(2, Cs=(1e-4, 1e-3)).fit(X, y, X_dev, y_dev)
    assert two.selection_["at_grid_edge"] == []  # a 2-value grid has no interior: no edge to report
    row = probe_information(lambda s: LinearProbe(2, Cs=(1e-5, 1e-4, 1e-3), seed=s), X, y, X_dev, y_dev, X_dev, y_dev,
                            2, bootstrap=0).rows[0]
    assert row["grid_edge"] == "C" and json.loads(row["probe_params"]) == {"C": 1e-3}
    single = LinearProbe(2, Cs=(1e-3,)).fit(X, y, X_dev, y_dev)
    assert single.selection_["at_grid_edge"] == [] and single.C_ == 1e-3  # a 1-value grid has no edge


def test_edge_params_and_expand_grid():
    grid = {"hidden": [64, 128, 256], "weight_decay": [0.0, 0.01, 0.1], "lr": [1e-3, 3e-3]}
    assert edge_params(grid, {"hidden": 64, "weight_decay": 0.01, "lr": 1e-3}) == ["hidden"]  # lr: 2 values
    assert edge_params(grid, {"hidden": 128, "weight_decay": 0.1, "lr": 1e-3}) == ["weight_decay"]
    # no weight decay is the floor of its grid, not an edge; a 1-value grid has no edge
    assert edge_params(grid, {"hidden": 128, "weight_decay": 0.0, "lr": 1e-3}) == []
    points = expand_grid({"a": [1, 2], "b": [3, 4, 5]}, {"c": 0})
    assert len(points) == 6 and points[0] == {"c": 0, "a": 1, "b": 3}
    assert expand_grid({"a": [1, 2]}, {"a": 7}) == [{"a": 7}]  # pinned wins
    with pytest.raises(ValueError, match="'a' is empty"):
        expand_grid({"a": []})


# ---------------------------------------------------------------- grids from strings
def test_parse_probe_grid_builds_constructor_kwargs():
    assert parse_probe_grid("linear", "C=1e-5,1e-4,1e-3") == {"Cs": (1e-5, 1e-4, 1e-3)}
    assert parse_probe_grid("mlp", "hidden=64,256;weight_decay=0,0.01") == {
        "grid": {"hidden": [64, 256], "weight_decay": [0.0, 0.01]}}
    assert parse_probe_grid("transformer", " lr = 1e-3 , 3e-4 ; ") == {"grid": {"lr": [1e-3, 3e-4]}}
    assert parse_probe_grid("mlp", "") == {} == parse_probe_grid("linear", "default")
    probe = make_probe("mlp", 2, 0, **parse_probe_grid("mlp", "hidden=8;lr=0.01"))
    assert probe.grid == {"hidden": [8], "lr": [0.01]}
    assert make_probe("linear", 2, 0, **parse_probe_grid("linear", "C=0.5")).Cs == (0.5,)


@pytest.mark.parametrize("probe,spec,match", [
    ("linear", "hidden=64", r"unknown key 'hidden' for 'linear'; allowed keys: C"),
    ("mlp", "C=1", r"allowed keys: hidden, lr, weight_decay"),
    ("transformer", "hidden=1", r"allowed keys: lr, weight_decay"),
    ("linear", "C=abc", r"C value 'abc' is not a float > 0"),
    ("linear", "C=0", r"C value '0' is not a float > 0"),
    ("mlp", "hidden=6.5", r"hidden value '6.5' is not an integer >= 1"),
    ("mlp", "weight_decay=-1", r"weight_decay value '-1' is not a float >= 0"),
    ("linear", "C=1;C=2", r"'C' is given twice"),
    ("linear", "C=", r"'C' has no values"),
    ("mlp", "hidden", r"'hidden' is not key=v1,v2.*allowed keys for 'mlp'"),
    ("svm", "C=1", r"unknown probe 'svm'; choose one of \['linear', 'mlp', 'transformer'\]"),
])
def test_parse_probe_grid_errors_name_the_bad_part(probe, spec, match):
    with pytest.raises(ValueError, match=match):
        parse_probe_grid(probe, spec)


def test_every_registered_probe_declares_its_grid_and_input_kind():
    for cls in (LinearProbe, MLPProbe, TransformerProbe):
        assert cls.input_kind in ("vector", "sequence") and cls.GRID_KEYS
    assert TransformerProbe.input_kind == "sequence" and LinearProbe.input_kind == MLPProbe.input_kind == "vector"


# ---------------------------------------------------------------- MLP grid
def _clustered_xor(n, d, eps, rng):
    """y = XOR of the signs of x1, x2, flipped with probability eps independently of x.
    x1, x2 sit at +-1 with sd 0.3 (few points near the boundaries); the rest is noise.
    Since y depends on x only through the quadrant, I(X;Y) = H(Y) - h2(eps) = 1 - h2(eps)
    exactly, whatever the input distribution."""
    X = rng.standard_normal((n, d))
    X[:, :2] = rng.choice([-1.0, 1.0], size=(n, 2)) + 0.3 * rng.standard_normal((n, 2))
    clean = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)
    return X, np.where(rng.random(n) < eps, 1 - clean, clean)


def test_mlp_recovers_known_mi_on_xor_where_linear_gets_nothing():
    rng = np.random.default_rng(0)
    splits = [_clustered_xor(n, 4, 0.1, rng) for n in (2000, 1000, 2000)]
    true = 1 - _h2(0.1)  # 0.531 bits
    mlp = probe_information("mlp", *splits[0], *splits[1], *splits[2], 2, bootstrap=0).rows[0]
    lin = probe_information("linear", *splits[0], *splits[1], *splits[2], 2, bootstrap=0).rows[0]
    assert abs(mlp["mi_bits"] - true) < 0.1, (mlp, true)
    assert abs(lin["mi_bits"]) < 0.05, lin
    params = json.loads(mlp["probe_params"])
    assert set(params) == {"hidden", "lr", "weight_decay"}


def test_mlp_grid_selection_on_dev_pinned_values_and_records():
    rng = np.random.default_rng(3)
    X, y = _gaussians(100, 6, 2.0, rng, np.eye(6)[0])
    X_dev, y_dev = _gaussians(50, 6, 2.0, rng, np.eye(6)[0])
    grid = {"hidden": [8, 16], "lr": [1e-2, 3e-3]}
    probe = MLPProbe(2, grid=grid, max_epochs=15, patience=3).fit(X, y, X_dev, y_dev)
    sel = probe.selection_
    assert sel["source"] == "dev" and len(sel["scores"]) == 4
    best = min(sel["scores"], key=lambda s: s["log_loss"])
    assert probe.selected_params_ == {"weight_decay": 0.0, "hidden": best["hidden"], "lr": best["lr"]}
    assert probe.best_epoch_ == best["best_epoch"] and probe.n_epochs_ == best["n_epochs"]
    assert sel["at_grid_edge"] == []  # 2-value grids have no interior: never reported as an edge
    json.dumps(sel)
    pinned = MLPProbe(2, hidden=8, grid=grid, max_epochs=5).fit(X, y, X_dev, y_dev)  # hidden pinned
    assert len(pinned.selection_["scores"]) == 2 and pinned.selected_params_["hidden"] == 8
    assert "hidden" not in pinned.selection_["at_grid_edge"]
    carved = MLPProbe(2, grid={}, max_epochs=5).fit(X, y)
    assert carved.selection_["source"] == "carved" and carved.selection_["at_grid_edge"] == []
    assert carved.selected_params_ == MLPProbe.FALLBACK
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['depth'\]; allowed"):
        MLPProbe(2, grid={"depth": [2]}).fit(X, y)


def test_linear_probe_on_shuffled_labels_with_dev_stays_near_zero():
    rng = np.random.default_rng(4)
    direction = np.eye(300)[0]
    X, y = _gaussians(500, 300, 2.0, rng, direction)
    X_dev, y_dev = _gaussians(250, 300, 2.0, rng, direction)
    X_test, y_test = _gaussians(500, 300, 2.0, rng, direction)
    from lpt_probe.probing import shuffled_label_control

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning leaks
        row = shuffled_label_control("linear", X, y, X_dev, y_dev, X_test, y_test, 2, bootstrap=0).rows[0]
    assert abs(row["mi_bits"]) < 0.02, row


# ------------------------------------------------------------- early stop on the C path
@pytest.mark.parametrize("sep", [0.0, 0.8, 3.0])
@pytest.mark.parametrize("use_dev", [True, False])
def test_linear_path_stops_early_and_chooses_what_the_full_grid_chooses(sep, use_dev):
    """``patience``: the ascending C path stops once held-out loss has not improved for
    three grid points; the chosen C and the predictions equal those of the full grid."""
    rng = np.random.default_rng(int(sep * 10) + use_dev)
    direction = np.eye(40)[0]
    X, y = _gaussians(150, 40, sep, rng, direction)
    Xd, yd = _gaussians(150, 40, sep, rng, direction)
    Xt, _ = _gaussians(100, 40, sep, rng, direction)
    dev = (Xd, yd) if use_dev else (None, None)
    full = LinearProbe(2, patience=None).fit(X, y, *dev)
    short = LinearProbe(2).fit(X, y, *dev)
    assert short.patience == 3 and short.C_ == full.C_
    np.testing.assert_allclose(short.predict_proba(Xt), full.predict_proba(Xt))
    assert len(full.selection_["scores"]) == len(LinearProbe.DEFAULT_CS)
    fitted = [s["C"] for s in short.selection_["scores"]]
    assert fitted == list(LinearProbe.DEFAULT_CS[:len(fitted)])  # a prefix of the grid, losses as the full run's
    for a, b in zip(short.selection_["scores"], full.selection_["scores"]):
        assert a["log_loss"] == pytest.approx(b["log_loss"], rel=1e-9)
    best = fitted.index(short.C_)
    assert len(fitted) == len(LinearProbe.DEFAULT_CS) or len(fitted) - 1 - best == 3


def test_linear_path_of_a_probe_with_nothing_to_learn_skips_the_large_Cs():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((1500, 50)), rng.integers(0, 3, 1500)
    Xd, yd = rng.standard_normal((800, 50)), rng.integers(0, 3, 800)
    probe = LinearProbe(3).fit(X, y, Xd, yd)
    assert probe.C_ <= 1e-4 and len(probe.selection_["scores"]) <= 5  # the slow large-C fits are skipped
    assert probe.selection_["scores"] == LinearProbe(3, patience=None).fit(X, y, Xd, yd).selection_["scores"][:5][
        :len(probe.selection_["scores"])]


def test_linear_path_with_patience_off_fits_every_C_even_when_loss_rises():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((120, 30)), rng.integers(0, 2, 120)
    Xd, yd = rng.standard_normal((120, 30)), rng.integers(0, 2, 120)
    assert len(LinearProbe(2, patience=0).fit(X, y, Xd, yd).selection_["scores"]) == 8
    assert len(LinearProbe(2, patience=None).fit(X, y, Xd, yd).selection_["scores"]) == 8
    assert len(LinearProbe(2, patience=1).fit(X, y, Xd, yd).selection_["scores"]) < 8
