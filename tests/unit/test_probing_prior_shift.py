"""The headline estimate under prior shift: a probe that learns nothing gives ~0 bits
whatever the train and test label priors are."""

from __future__ import annotations

import numpy as np

from lpt_probe.probing import probe_information


def _uninformative(n, p1, d, rng):
    """Labels with P(y=1)=p1, features independent of them."""
    return rng.standard_normal((n, d)), (rng.random(n) < p1).astype(int)


def test_uninformative_features_give_zero_bits_under_prior_shift():
    rng = np.random.default_rng(0)
    X_train, y_train = _uninformative(3000, 0.3, 10, rng)  # train prior 70/30
    X_dev, y_dev = _uninformative(1000, 0.3, 10, rng)
    X_test, y_test = _uninformative(3000, 0.5, 10, rng)  # test prior 50/50
    for X_d, y_d in ((None, None), (X_dev, y_dev)):  # CV selection and dev selection
        row = probe_information("linear", X_train, y_train, X_d, y_d, X_test, y_test, 2, bootstrap=200).rows[0]
        # H(0.7) - CE(test 50/50, train prior 70/30) = 0.881 - 1.126 = -0.245 bits under the old formula
        assert abs(row["mi_bits"]) < 0.01, row
        assert row["mi_ci_low"] <= 0.0 <= row["mi_ci_high"] or abs(row["mi_bits"]) < 0.005, row
        assert row["h_y_bits"] - row["null_ce_bits"] < -0.2  # the prior shift really is there
