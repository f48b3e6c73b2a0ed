"""Information estimates: exact entropies, unit conversion, known-MI recovery on
Gaussian data, shuffled-label controls, PVI, the bootstrap and the no-test-rows-in-fit
invariant."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lpt_probe.probing import (
    EPS,
    LinearProbe,
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

ROW_KEYS = {"probe", "probe_seed", "control", "h_y_bits", "ce_bits", "mi_bits", "mi_ci_low", "mi_ci_high",
            "null_ce_bits", "accuracy", "macro_f1", "n", "n_train", "n_dev", "n_test", "probe_params", "grid_edge"}


# ---------------------------------------------------------------- synthetic data, true MI
def _two_gaussians(n, mu, d, rng):
    """y ~ Bernoulli(1/2), X|y ~ N(+-mu e1, I_d)."""
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, d))
    X[:, 0] += np.where(y == 1, mu, -mu)
    return X, y


def _true_mi_two_gaussians(mu):
    """I(X;Y) = H(Y) - E[H(Y|X)], a 1-D integral over x1 (the true posterior is
    sigmoid(2 mu x1)); by symmetry E[.] = integral of N(t; mu, 1) h2(sigmoid(2 mu t)) dt."""
    t = np.linspace(mu - 12, mu + 12, 40001)
    density = np.exp(-((t - mu) ** 2) / 2) / math.sqrt(2 * math.pi)
    p = 1 / (1 + np.exp(-2 * mu * t))
    h = -(p * np.log2(np.clip(p, 1e-300, 1)) + (1 - p) * np.log2(np.clip(1 - p, 1e-300, 1)))
    return 1.0 - np.trapezoid(density * h, t)


def _triangle_means(r):
    angles = 2 * np.pi * np.arange(3) / 3
    return r * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [3, 2]


def _three_gaussians(n, r, d, rng):
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, d))
    X[:, :2] += _triangle_means(r)[y]
    return X, y


def _true_mi_three_gaussians(r):
    """Equal priors, equal-norm means, identity covariance: posterior softmax(m_k . x).
    2-D grid quadrature over the plane of the means (the other dims carry nothing)."""
    m = _triangle_means(r)
    g = np.linspace(-9, 9, 601)
    dx = g[1] - g[0]
    P = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)  # [G, 2]
    logits = P @ m.T
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    density = np.mean([np.exp(-((P - mk) ** 2).sum(axis=1) / 2) / (2 * np.pi) for mk in m], axis=0)
    h = -(post * np.log2(np.clip(post, 1e-300, 1))).sum(axis=1)
    assert np.sum(density) * dx * dx == pytest.approx(1.0, abs=1e-6)
    return math.log2(3) - np.sum(density * h) * dx * dx


def test_true_mi_reference_values_are_sane():
    assert _true_mi_two_gaussians(1e-3) == pytest.approx(0.0, abs=1e-5)
    assert _true_mi_two_gaussians(8.0) == pytest.approx(1.0, abs=1e-6)
    # the quadrature agrees with a Monte Carlo estimate using the true posterior
    rng = np.random.default_rng(5)
    X, _ = _three_gaussians(200_000, 1.5, 2, rng)
    logits = X @ _triangle_means(1.5).T
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    mc = math.log2(3) + np.mean((post * np.log2(post)).sum(axis=1))
    assert _true_mi_three_gaussians(1.5) == pytest.approx(mc, abs=0.01)


@pytest.mark.parametrize("mu,d", [(0.5, 8), (1.0, 16)])
def test_linear_probe_recovers_known_mi_two_classes(mu, d):
    rng = np.random.default_rng(0)
    X_train, y_train = _two_gaussians(3000, mu, d, rng)
    X_test, y_test = _two_gaussians(3000, mu, d, rng)
    res = probe_information("linear", X_train, y_train, None, None, X_test, y_test, 2, bootstrap=200)
    row = res.rows[0]
    true = _true_mi_two_gaussians(mu)
    assert abs(row["mi_bits"] - true) < 0.05, (row["mi_bits"], true)
    assert row["mi_ci_low"] <= true + 0.01 and row["mi_ci_high"] >= true - 0.05


def test_linear_probe_recovers_known_mi_three_classes():
    rng = np.random.default_rng(1)
    X_train, y_train = _three_gaussians(3000, 1.5, 8, rng)
    X_test, y_test = _three_gaussians(3000, 1.5, 8, rng)
    row = probe_information("linear", X_train, y_train, None, None, X_test, y_test, 3, bootstrap=0).rows[0]
    assert abs(row["mi_bits"] - _true_mi_three_gaussians(1.5)) < 0.05


@pytest.mark.parametrize("n,d", [(3000, 16), (1000, 300)])
def test_shuffled_labels_give_about_zero_bits(n, d):
    """Also in high dimension, where a grid starting at C=0.01 overfits to about -0.13 bits."""
    rng = np.random.default_rng(2)
    X_train, y_train = _two_gaussians(n, 1.0, d, rng)
    X_test, y_test = _two_gaussians(n, 1.0, d, rng)
    real = probe_information("linear", X_train, y_train, None, None, X_test, y_test, 2, bootstrap=0)
    ctrl = shuffled_label_control("linear", X_train, y_train, None, None, X_test, y_test, 2, bootstrap=0)
    c = ctrl.rows[0]
    assert abs(c["mi_bits"]) < 0.02, c
    assert c["control"] == "shuffled_labels" and real.rows[0]["control"] == "none"
    assert c["h_y_bits"] == real.rows[0]["h_y_bits"]  # a permutation keeps the prior
    sel = selectivity(real.rows, ctrl.rows)
    assert sel["selectivity_bits"].iloc[0] == pytest.approx(real.rows[0]["mi_bits"] - c["mi_bits"])
    assert sel["selectivity_bits"].iloc[0] > 0.1


def test_shuffled_control_averages_permutations():
    """Under a prior shift (70/30 train, 50/50 test) with a real but weak signal, one
    permutation is one noisy draw; the averaged control is the mean of the draws and sits
    closer to 0 than the worst of them."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1600, 20))
    y = (X[:, 0] + rng.normal(scale=2.0, size=1600) > 0).astype(int)
    train = np.concatenate([np.flatnonzero(y == 1)[:420], np.flatnonzero(y == 0)[:180]])  # 70/30
    dev = np.concatenate([np.flatnonzero(y == 1)[420:560], np.flatnonzero(y == 0)[180:240]])
    test = np.concatenate([np.flatnonzero(y == 1)[560:760], np.flatnonzero(y == 0)[240:440]])  # 50/50
    args = (X[train], y[train], X[dev], y[dev], X[test], y[test], 2)
    single = [shuffled_label_control("linear", *args, bootstrap=0, permutation_seed=k).rows[0] for k in range(4)]
    avg = shuffled_label_control("linear", *args, bootstrap=200, permutations=4).rows[0]
    assert avg["permutations"] == 4 and single[0]["permutations"] == 1
    assert avg["mi_bits"] == pytest.approx(np.mean([r["mi_bits"] for r in single]), abs=1e-9)
    assert avg["control_std_bits"] == pytest.approx(np.std([r["mi_bits"] for r in single]), abs=1e-9)
    assert abs(avg["mi_bits"]) <= max(abs(r["mi_bits"]) for r in single) + 1e-12
    assert abs(avg["mi_bits"]) < 0.01 and avg["mi_ci_low"] <= avg["mi_bits"] <= avg["mi_ci_high"]
    assert avg["probe_params"].startswith("[") and avg["probe_params"].count("C") == 4
    with pytest.raises(ValueError, match="permutations=0"):
        shuffled_label_control("linear", *args, permutations=0)


# ---------------------------------------------------------------- exact small quantities
def test_entropy_bits_exact():
    assert entropy_bits([0, 1, 1, 1], 2) == pytest.approx(0.8112781244591328, abs=1e-12)
    assert entropy_bits([0, 1, 2, 3] * 5, 4) == pytest.approx(2.0)
    assert entropy_bits([2, 2, 2], 5) == 0.0
    assert entropy_bits([0, 1], 2) == entropy_bits([0, 1], 7)  # absent classes add nothing
    with pytest.raises(ValueError, match="empty"):
        entropy_bits([], 2)


def test_cross_entropy_bits_and_nats_conversion_by_hand():
    proba = np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])
    y = np.array([0, 1, 1])
    by_hand = (1.0 + math.log2(4 / 3) + math.log2(10)) / 3
    assert cross_entropy_bits(proba, y) == pytest.approx(by_hand, abs=1e-12)
    nats = -(math.log(0.5) + math.log(0.75) + math.log(0.1)) / 3
    assert cross_entropy_bits(proba, y) == pytest.approx(nats / math.log(2), abs=1e-12)
    assert nats_to_bits(math.log(8.0)) == pytest.approx(3.0)
    # a zero probability is clipped at EPS, not infinite
    assert -log2_likelihood([[1.0, 0.0]], [1])[0] == pytest.approx(-math.log2(EPS))
    with pytest.raises(ValueError, match="shape"):
        cross_entropy_bits(proba[:2], y)


def test_pvi_by_hand_and_mean_pvi_matches_rows():
    log2q = np.log2([0.9, 0.2, 0.5])
    null = null_log2q(y_train=[0, 0, 0, 1], y_eval=[0, 1, 1], n_classes=2)  # prior 3/4, 1/4
    np.testing.assert_allclose(null, np.log2([0.75, 0.25, 0.25]))
    np.testing.assert_allclose(pvi(log2q, null), [math.log2(0.9 / 0.75), math.log2(0.2 / 0.25), 1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        pvi(log2q, null[:2])

    rng = np.random.default_rng(3)
    X_train, y_train = _two_gaussians(400, 1.0, 4, rng)
    X_test, y_test = _two_gaussians(300, 1.0, 4, rng)
    res = probe_information("linear", X_train, y_train, None, None, X_test, y_test, 2, seeds=(0, 1), bootstrap=0)
    assert res.log2q.shape == (2, 300) and res.log2q_null.shape == (300,)
    row = res.rows[1]
    assert np.mean(pvi(res.log2q[1], res.log2q_null)) == pytest.approx(row["null_ce_bits"] - row["ce_bits"])


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    # bootstrap_mi_ci now takes the null model's per-example log2 probabilities (a paired
    # bootstrap of mean(log2q - log2q_null)) instead of a fixed H(y); a constant null of
    # -1 bit per example reproduces the old h_y=1 case.
    rng = np.random.default_rng(4)
    widths = []
    for n in (200, 5000):
        log2q = -rng.exponential(0.5, n)
        null = np.full(n, -1.0)
        lo, hi = bootstrap_mi_ci(log2q, null, n_boot=1000, ci=0.95, rng_seed=0)
        point = np.mean(log2q - null)
        assert lo < point < hi
        widths.append(hi - lo)
        # normal approximation of the mean's CI
        assert hi - lo == pytest.approx(2 * 1.96 * log2q.std() / math.sqrt(n), rel=0.15)
    assert widths[1] < widths[0] / 3  # sqrt(25) = 5 in theory
    assert bootstrap_mi_ci(log2q, null, 300, rng_seed=7) == bootstrap_mi_ci(log2q, null, 300, rng_seed=7)
    assert all(np.isnan(bootstrap_mi_ci(log2q, null, n_boot=0)))


def test_bootstrap_is_paired_over_examples():
    rng = np.random.default_rng(9)
    null = np.log2(rng.uniform(0.05, 0.95, 500))
    # a probe that gains exactly 0.3 bits on every example: the paired CI has no width
    lo, hi = bootstrap_mi_ci(null + 0.3, null, n_boot=500)
    assert lo == pytest.approx(0.3) and hi == pytest.approx(0.3)
    # an unpaired CI would be as wide as the spread of the null's losses
    assert np.std(null) / math.sqrt(500) > 0.02
    with pytest.raises(TypeError, match="null_log2q"):
        bootstrap_mi_ci(null, 1.0)
    with pytest.raises(ValueError, match="shapes"):
        bootstrap_mi_ci(null, null[:10])


# ---------------------------------------------------------------- rows and splits
class SpyProbe:
    """Records every row it is fitted on or asked about; predicts the train prior, or a
    confidently wrong label when ``wrong`` (to get negative information)."""

    name = "spy"

    def __init__(self, n_classes, seed=0, wrong=False, log=None):
        self.n_classes, self.seed, self.wrong, self.log = n_classes, seed, wrong, log

    def fit(self, X, y, X_dev=None, y_dev=None):
        self.log["fit"].append(np.array(X, copy=True))
        self.log["dev"].append(None if X_dev is None else np.array(X_dev, copy=True))
        self.prior_ = np.bincount(y, minlength=self.n_classes) / len(y)
        return self

    def predict_proba(self, X):
        self.log["predict"].append(np.array(X, copy=True))
        if self.wrong:
            return np.tile([0.99, 0.01], (len(X), 1))
        return np.tile(self.prior_, (len(X), 1))


def _rows_in(a, b):
    return {r.tobytes() for r in a} & {r.tobytes() for r in b}


def test_no_test_row_reaches_fit_and_rows_report_splits():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((90, 3))  # every row distinct
    y = np.r_[np.zeros(15, int), np.ones(45, int), rng.integers(0, 2, 30)]  # train prior 1/4, 3/4
    log = {"fit": [], "dev": [], "predict": []}
    res = probe_information(lambda s: SpyProbe(2, s, log=log), X[:60], y[:60], X[60:70], y[60:70],
                            X[70:], y[70:], 2, seeds=(0, 1, 2), bootstrap=100)
    assert len(log["fit"]) == 3
    for fitted, dev, predicted in zip(log["fit"], log["dev"], log["predict"]):
        assert not _rows_in(fitted, X[60:]), "a dev or test row reached fit"
        np.testing.assert_array_equal(fitted, X[:60])
        np.testing.assert_array_equal(dev, X[60:70])
        np.testing.assert_array_equal(predicted, X[70:])  # scored on test only
    assert [r["probe_seed"] for r in res.rows] == [0, 1, 2]
    row = res.rows[0]
    assert set(row) == ROW_KEYS
    assert row["probe"] == "spy" and (row["n"], row["n_train"], row["n_dev"]) == (20, 60, 10)
    assert row["h_y_bits"] == pytest.approx(0.8112781244591328)  # the TRAIN prior's entropy
    assert row["n_test"] == row["n"] == 20
    # mi_bits is now null_ce_bits - ce_bits (was h_y_bits - ce_bits, offset under prior shift)
    assert row["mi_bits"] == pytest.approx(row["null_ce_bits"] - row["ce_bits"], abs=1e-12)
    assert row["mi_ci_low"] <= row["mi_bits"] <= row["mi_ci_high"]
    assert row["ce_bits"] == pytest.approx(row["null_ce_bits"])  # the spy is the null model...
    assert row["mi_bits"] == pytest.approx(0.0, abs=1e-12)  # ...so it gets exactly 0 bits
    assert (row["probe_params"], row["grid_edge"]) == ("{}", "")  # the spy selects nothing

    # a probe whose fit takes no dev split is not handed one (LinearProbe itself now takes one)
    log_lin = []
    class Lin(LinearProbe):
        def fit(self, X, y):
            log_lin.append(len(X))
            return super().fit(X, y)
    probe_information(lambda s: Lin(2, seed=s), X[:60], y[:60], X[60:70], y[60:70], X[70:], y[70:], 2,
                      bootstrap=0)
    assert log_lin == [60]
    res = probe_information("linear", X[:60], y[:60], X[60:70], y[60:70], X[70:], y[70:], 2, bootstrap=0)
    assert '"C"' in res.rows[0]["probe_params"]


def test_negative_information_is_not_clipped():
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((40, 2)), np.r_[np.zeros(20, int), np.ones(20, int)]
    log = {"fit": [], "dev": [], "predict": []}
    row = probe_information(lambda s: SpyProbe(2, s, wrong=True, log=log), X[:20], y[::2], None, None,
                            X[20:], y[1::2], 2, bootstrap=0).rows[0]
    assert row["mi_bits"] < -1.0 and row["accuracy"] == 0.5


def test_bad_probe_output_and_bad_labels_are_reported():
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((30, 2)), rng.integers(0, 2, 30)
    with pytest.raises(ValueError, match="expected \\(10, 3\\)"):
        probe_information(lambda s: LinearProbe(2, seed=s), X[:20], y[:20], None, None, X[20:], y[20:], 3,
                          bootstrap=0)
    with pytest.raises(ValueError, match="test label 5"):
        probe_information("linear", X[:20], y[:20], None, None, X[20:], np.full(10, 5), 2)
    with pytest.raises(ValueError, match="unknown probe"):
        probe_information("svm", X[:20], y[:20], None, None, X[20:], y[20:], 2)


def test_mean_std_table_and_selectivity_join():
    df = pd.DataFrame({"layer": [1, 1, 2, 2, 2], "probe": ["linear"] * 5, "mi_bits": [0.1, 0.3, 0.5, 0.7, 0.9]})
    table = mean_std_table(df, by=["layer", "probe"])
    assert list(table.columns) == ["layer", "probe", "mean", "std", "count"]
    np.testing.assert_allclose(table["mean"], [0.2, 0.7])
    np.testing.assert_allclose(table["std"], [np.std([0.1, 0.3], ddof=1), 0.2])
    assert table["count"].tolist() == [2, 3]

    rows = [{"probe": "linear", "probe_seed": s, "layer": L, "mi_bits": 0.5 + L} for s in (0, 1) for L in (1, 2)]
    ctrl = [{"probe": "linear", "probe_seed": s, "layer": L, "mi_bits": -0.01} for s in (0, 1) for L in (1, 2)]
    sel = selectivity(rows, ctrl, on=("probe", "probe_seed", "layer"))
    assert len(sel) == 4 and np.allclose(sel["selectivity_bits"], sel["layer"] + 0.51)
    with pytest.raises(ValueError, match="no control row matches"):
        selectivity(rows, [{"probe": "mlp", "probe_seed": 0, "layer": 1, "mi_bits": 0.0}],
                    on=("probe", "probe_seed", "layer"))
    with pytest.raises(ValueError, match="several rows per.*'layer'"):
        selectivity(rows, ctrl)
    with pytest.raises(ValueError, match="lack column"):
        selectivity(rows, [{"probe": "linear", "mi_bits": 0.0}], on=("probe", "probe_seed", "layer"))


# ---------------------------------------------------------------- a class absent from probe-train
@pytest.mark.parametrize("probe", ["linear", "mlp"])
def test_class_absent_from_probe_train_is_refused(probe):
    """Pure noise, class 2 never in the training rows but 1/3 of the test rows: an unseen
    class cannot be learnt, and the estimate would measure how the probe and the null
    model guess it (the unsmoothed null gave ~11.8 bits on noise; an early-stopped MLP keeps
    mass on the unseen class and still scored +0.33 bits with a smoothed null): refused,
    naming the class, the counts and the fix."""
    rng = np.random.default_rng(0)
    X_tr, y_tr = rng.standard_normal((300, 8)), rng.integers(0, 2, 300)
    X_dv, y_dv = rng.standard_normal((150, 8)), rng.integers(0, 2, 150)
    X_te, y_te = rng.standard_normal((300, 8)), np.repeat([0, 1, 2], 100)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] occur in 100 of 300 test rows but never in the 300 "
                                         r"probe-train rows.*--probe-train-max"):
        probe_information(probe, X_tr, y_tr, X_dv, y_dv, X_te, y_te, n_classes=3, bootstrap=0)
    # a class absent from train AND test is fine: the probe and the null model are smoothed
    # alike (rule of succession), so noise still scores ~0 bits
    keep = y_te < 2
    res = probe_information(probe, X_tr, y_tr, X_dv, y_dv, X_te[keep], y_te[keep], n_classes=3, bootstrap=0)
    assert abs(res.rows[0]["mi_bits"]) < 0.05, res.rows[0]
    # the null model at the unseen class is (0 + 1) / (n + K), not EPS
    assert null_log2q(y_tr, [2], 3)[0] == pytest.approx(math.log2(1 / 303))


def test_null_prior_smooths_only_when_a_class_is_absent():
    from lpt_probe.probing import null_prior

    assert null_prior([0, 0, 1, 1], 2).tolist() == [0.5, 0.5]  # every class seen: the plain prior
    assert null_prior([0, 0, 0, 1], 3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])  # (count + 1) / (n + K)
    lin = LinearProbe(3).fit(np.random.default_rng(1).standard_normal((4, 2)), np.array([0, 0, 0, 1]))
    assert lin.smoothing_ == pytest.approx(3 / 7)  # the probes use the same weight
