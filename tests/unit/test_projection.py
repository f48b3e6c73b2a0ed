"""lpt_probe.projection: deterministic 2-D projections and neighbourhood agreement in the original spaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpt_probe.analysis.projection.compute import (
    knn_overlap,
    load_projection,
    neighbourhood_agreement,
    project,
    projection_table,
    prompt_vectors,
    save_projection,
)


def sentences(n=60, d=8, seed=0):
    """Three well-separated clusters in d dimensions; labels follow the clusters."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(0, 4, (3, d))
    return centres[labels] + rng.normal(0, 1, (n, d)), labels


def linear_prompts(S, l=4, m=6, seed=1):
    """Prompts that are a linear function of the sentences: [n, l, m]."""
    W = np.random.default_rng(seed).normal(size=(S.shape[1], l * m))
    return (S @ W).reshape(len(S), l, m)


def test_prompt_vectors_shapes():
    P = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    assert prompt_vectors(P).shape == (2, 12)
    np.testing.assert_allclose(prompt_vectors(P, "mean"), P.mean(axis=1))
    assert prompt_vectors(P[:, 0]).shape == (2, 4)  # already one vector per example
    with pytest.raises(ValueError, match="flatten"):
        prompt_vectors(P, "max")
    with pytest.raises(ValueError, match=r"\[n, l, d\]"):
        prompt_vectors(np.zeros(3))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_project_is_deterministic(method):
    X, _ = sentences(40)
    a, b = project(X, method, random_state=0), project(X, method, random_state=0)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_umap_is_deterministic():
    """UMAP with a fixed random_state runs single-threaded; the first call JIT-compiles (~10 s)."""
    X, _ = sentences(30)
    a, b = project(X, "umap", random_state=0), project(X, "umap", random_state=0)
    assert a.shape == (30, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="umap"):
        project(np.zeros((10, 3)), "mds")
    with pytest.raises(ValueError, match="2-D"):
        project(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((10, 3), np.nan), "pca")


def test_knn_overlap_bounds():
    X, _ = sentences(60)
    assert knn_overlap(X, X, k=5) == 1.0
    assert knn_overlap(X, 3 * X + 1, k=5) == 1.0  # invariant to scaling and shifting
    noise = np.random.default_rng(5).normal(size=(60, 8))
    assert knn_overlap(X, noise, k=5) < 0.3
    with pytest.raises(ValueError, match="k=60"):
        knn_overlap(X, X, k=60)


def test_agreement_high_for_linear_prompts_and_chance_for_independent_ones():
    S, _ = sentences(60)
    linked = neighbourhood_agreement(S, prompt_vectors(linear_prompts(S)), k=5)
    assert linked["knn_overlap"] > 0.6 > linked["knn_overlap_shuffled"] + 0.3
    assert linked["trustworthiness"] > 0.9 > linked["trustworthiness_shuffled"] + 0.2
    assert linked["knn_overlap_chance"] == pytest.approx(5 / 59)
    # Independent prompts with no cluster structure: nothing beyond chance.
    independent = np.random.default_rng(7).normal(size=(60, 24))
    free = neighbourhood_agreement(S, independent, k=5)
    assert abs(free["knn_overlap"] - free["knn_overlap_shuffled"]) < 0.1
    assert abs(free["knn_overlap"] - free["knn_overlap_chance"]) < 0.1
    assert abs(free["trustworthiness"] - free["trustworthiness_shuffled"]) < 0.1


def test_projection_table_contract_and_round_trip(tmp_path):
    S, labels = sentences(45)
    table, agreement = projection_table(S, linear_prompts(S), labels, ["contradiction", "entailment", "neutral"],
                                        method="pca", k=5, ids=[f"ex{i}" for i in range(45)])
    assert list(table.columns) == ["example", "space", "x", "y", "cluster", "label", "method"]
    assert len(table) == 90 and set(table.space) == {"sentence", "prompt"}
    by_space = {s: g.set_index("example") for s, g in table.groupby("space")}
    pd.testing.assert_series_equal(by_space["sentence"]["cluster"], by_space["prompt"]["cluster"])  # same colours
    assert set(table.label) == {"contradiction", "entailment", "neutral"}
    assert table.cluster.nunique() == 3  # default: the number of labels
    # k-means finds the three clusters: each cluster is one label.
    assert (by_space["sentence"].groupby("cluster")["label"].nunique() == 1).all()
    assert agreement["knn_overlap"] > agreement["knn_overlap_shuffled"]
    again, _ = projection_table(S, linear_prompts(S), labels, ["contradiction", "entailment", "neutral"],
                                method="pca", k=5, ids=[f"ex{i}" for i in range(45)])
    pd.testing.assert_frame_equal(table, again)

    paths = save_projection(tmp_path, table, agreement)
    assert [p.name for p in paths] == ["projection.csv", "agreement.csv"]
    loaded, agree = load_projection(tmp_path)
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    assert agree["knn_overlap"] == pytest.approx(agreement["knn_overlap"])


def test_projection_table_checks_shapes_and_caps_k(caplog):
    S, labels = sentences(12)
    with pytest.raises(ValueError, match="same n"):
        projection_table(S, linear_prompts(S)[:-1], labels, method="pca")
    table, agreement = projection_table(S, linear_prompts(S), labels, method="pca", k=10)
    assert agreement["k"] == 5 and "too large" in caplog.text
    assert set(table.label) == {"0", "1", "2"}  # no label names: the labels as text
