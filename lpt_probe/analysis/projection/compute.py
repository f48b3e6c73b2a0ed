"""Figure 6, compute side: project sentence representations and generated prompts to 2-D.

numpy, scikit-learn and umap-learn only (no torch): the arrays come from whoever
extracted them. Start with :func:`projection_table`, which takes the sentence
representations ``[n, d]``, the generated prompts ``[n, l, d]`` and the gold labels and
returns the long table :func:`lpt_probe.viz.plot_projection` draws (columns
example, space, x, y, cluster, label, method) plus an ``agreement`` dict;
:func:`save_projection` writes both as ``projection.csv`` and ``agreement.csv``.

A 2-D picture can suggest structure that is not there, so the agreement between the two
spaces is measured in the ORIGINAL spaces, never on the projection: the fraction of each
example's k nearest neighbours shared between sentence and prompt space
(:func:`knn_overlap`) and scikit-learn's trustworthiness of the prompt space with
respect to the sentence space, each beside a shuffled baseline (prompt rows permuted)
that shows what chance looks like (for the overlap, about k / (n - 1)).

Everything is deterministic for a fixed ``random_state``: UMAP runs single-threaded
(``n_jobs=1``), t-SNE starts from PCA, k-means uses a fixed seed. t-SNE also runs on
one OpenMP thread: on a small machine shared with other work, its thousand short
parallel iterations stalled at thread barriers (0.3 s became 60 s on 2 busy cores),
and for the few thousand points of a figure one thread is fast enough.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from ... import store
from ..config import PROJECTION_METHODS

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "project", "prompt_vectors", "knn_overlap", "neighbourhood_agreement",
           "projection_table", "save_projection", "load_projection"]

METHODS = PROJECTION_METHODS  # the flags' choices (lpt_probe.analysis.config, no sklearn)


def _matrix(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d]; got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return X


def project(X, method: str = "umap", random_state: int = 0, *, pca_dims: int | None = 50,
            **kwargs: Any) -> np.ndarray:
    """Project ``X`` [n, d] to [n, 2] with "umap", "tsne" or "pca"; deterministic per ``random_state``.

    For UMAP and t-SNE, inputs wider than ``pca_dims`` are first reduced with PCA (the
    usual practice; None disables it). ``n_neighbors`` (UMAP) and ``perplexity`` (t-SNE)
    default to 15 and 30, capped for small n; other ``kwargs`` go to the estimator.
    """
    X = _matrix(X, "X")
    n = len(X)
    if method not in METHODS:
        raise ValueError(f"projection method {method!r}: use one of {list(METHODS)}")
    if n < 4:
        raise ValueError(f"need at least 4 rows to project; got {n}")
    if method == "pca":
        return PCA(n_components=2, random_state=random_state, **kwargs).fit_transform(X)
    if pca_dims is not None and X.shape[1] > pca_dims:
        X = PCA(n_components=min(pca_dims, n), random_state=random_state).fit_transform(X)
    if method == "tsne":
        kwargs.setdefault("perplexity", float(min(30.0, max(1.0, (n - 1) / 3))))
        with threadpool_limits(limits=1):  # see the module docstring
            return TSNE(n_components=2, init="pca", random_state=random_state, **kwargs).fit_transform(X)
    with warnings.catch_warnings():  # "Tensorflow not installed; ParametricUMAP will be unavailable"
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # imported here: slow to import (numba)

    kwargs.setdefault("n_neighbors", int(min(15, n - 1)))
    reducer = umap.UMAP(n_components=2, random_state=random_state, n_jobs=1, **kwargs)
    return np.asarray(reducer.fit_transform(X), dtype=np.float64)


def prompt_vectors(prompts, how: str = "flatten") -> np.ndarray:
    """Generated prompts [n, l, d] -> [n, l*d] (``"flatten"``) or [n, d] (``"mean"`` over tokens).

    A 2-D input [n, m] is taken as already one vector per example and returned as is.
    """
    P = np.asarray(prompts, dtype=np.float64)
    if P.ndim == 2:
        return P
    if P.ndim != 3:
        raise ValueError(f"prompts must be [n, l, d] (or [n, m]); got shape {P.shape}")
    if how == "flatten":
        return P.reshape(len(P), -1)
    if how == "mean":
        return P.mean(axis=1)
    raise ValueError(f"how={how!r}: use 'flatten' or 'mean'")


def _neighbours(X: np.ndarray, k: int) -> np.ndarray:
    """Indices [n, k] of each row's k nearest other rows (the row itself excluded)."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    out = np.empty((len(X), k), dtype=np.int64)
    for i, row in enumerate(idx):
        row = row[row != i]  # with duplicate rows the row itself need not come first
        out[i] = row[:k]
    return out


def knn_overlap(A, B, k: int = 10) -> float:
    """Mean fraction of each row's k nearest neighbours in ``A`` that are also among its k in ``B``.

    1 = identical neighbourhoods; chance (unrelated spaces) is about k / (n - 1).
    Euclidean distance, computed in the spaces given (not a projection).
    """
    A, B = _matrix(A, "A"), _matrix(B, "B")
    if len(A) != len(B):
        raise ValueError(f"A and B must have the same rows; got {len(A)} and {len(B)}")
    if not 1 <= k < len(A):
        raise ValueError(f"k={k} must be in 1..n-1 (n={len(A)})")
    na, nb = _neighbours(A, k), _neighbours(B, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(na, nb)]))


def neighbourhood_agreement(A, B, k: int = 10, random_state: int = 0) -> dict[str, float]:
    """kNN overlap and trustworthiness of ``B`` w.r.t. ``A``, each with a shuffled baseline.

    The baseline permutes ``B``'s rows (seeded by ``random_state``), breaking the pairing
    while keeping each space's own geometry. Trustworthiness needs k < n / 2.
    """
    A, B = _matrix(A, "A"), _matrix(B, "B")
    n = len(A)
    if not 1 <= k < n / 2:
        raise ValueError(f"k={k} must be in 1..n/2 for trustworthiness (n={n}); pass a smaller k")
    perm = np.random.default_rng(random_state).permutation(n)
    return {
        "n": n, "k": k,
        "knn_overlap": knn_overlap(A, B, k), "knn_overlap_shuffled": knn_overlap(A, B[perm], k),
        "knn_overlap_chance": k / (n - 1),
        "trustworthiness": float(trustworthiness(A, B, n_neighbors=k)),
        "trustworthiness_shuffled": float(trustworthiness(A, B[perm], n_neighbors=k)),
    }


def projection_table(sentence, prompts, labels, label_names: Sequence[str] | None = None,
                     method: str = "umap", n_clusters: int | None = None, random_state: int = 0, *,
                     k: int = 10, how: str = "flatten", ids: Sequence[Any] | None = None,
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Project both spaces, cluster the sentences, measure neighbourhood agreement.

    sentence [n, d]; prompts [n, l, d] (or [n, m]); labels [n] ints indexing
    ``label_names`` (or strings). ``n_clusters`` defaults to the number of distinct
    labels; k-means runs on the sentence representations in their original space and
    its cluster colours both panels. ``k`` is the neighbourhood size for the
    agreement (capped below n / 2). Returns (table, agreement): the table has one row
    per example x space with columns example, space, x, y, cluster, label, method.
    """
    S = _matrix(sentence, "sentence")
    P = _matrix(prompt_vectors(prompts, how), "prompts")
    labels = np.asarray(labels)
    n = len(S)
    if not len(P) == len(labels) == n:
        raise ValueError(f"sentence, prompts and labels must have the same n; got {n}, {len(P)}, {len(labels)}")
    if label_names is not None and np.issubdtype(labels.dtype, np.integer):
        names = np.asarray([str(label_names[int(i)]) for i in labels], dtype=object)
    else:
        names = labels.astype(str).astype(object)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    n_clusters = n_clusters or max(2, len(np.unique(names)))
    cluster = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit_predict(S)
    k_used = int(min(k, (n - 1) // 2))
    if k_used != k:
        logger.warning("k=%d is too large for n=%d; using k=%d", k, n, k_used)
    agreement = {"method": method, "how": how, "n_clusters": n_clusters,
                 **neighbourhood_agreement(S, P, k=k_used, random_state=random_state)}
    frames = []
    for space, X in (("sentence", S), ("prompt", P)):
        xy = project(X, method, random_state)
        frames.append(pd.DataFrame({"example": ids, "space": space, "x": xy[:, 0], "y": xy[:, 1],
                                    "cluster": cluster, "label": names, "method": method}))
    logger.info("projection %s n=%d: kNN overlap %.3f (shuffled %.3f), trustworthiness %.3f (shuffled %.3f)",
                method, n, agreement["knn_overlap"], agreement["knn_overlap_shuffled"],
                agreement["trustworthiness"], agreement["trustworthiness_shuffled"])
    return pd.concat(frames, ignore_index=True), agreement


def save_projection(folder: str | os.PathLike, table: pd.DataFrame, agreement: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``projection.csv`` and ``agreement.csv`` (one row) into ``folder``, atomically."""
    folder = Path(folder)
    return (store.write_csv(folder / "projection.csv", table),
            store.write_csv(folder / "agreement.csv", pd.DataFrame([agreement])))


def load_projection(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Read what :func:`save_projection` wrote; the agreement is None when its file is absent."""
    folder = Path(folder)
    table = pd.read_csv(folder / "projection.csv")
    path = folder / "agreement.csv"
    agreement = pd.read_csv(path).iloc[0].to_dict() if path.exists() else None
    return table, agreement
