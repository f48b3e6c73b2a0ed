"""Small synthetic result tables (the columns the compute stages write) and a PDF checker.

Used by test_plotting.py and test_figures_cli.py; no torch, no files unless asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LAYERS = 6  # a 6-layer model: hidden states 0..6, prompt layers 1..6


def sweep_table(seeds=(13, 42, 87), generators=("none", "npg"), rng=None) -> pd.DataFrame:
    """sweep.csv: accuracy rises then falls with the prompt layer; one failed run; a model-tuning row."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for gen in generators:
        for pl in range(1, LAYERS + 1):
            for seed in seeds:
                acc = 0.55 + 0.2 * np.sin(np.pi * pl / (LAYERS + 1)) + (0.03 if gen == "npg" else 0)
                acc += rng.normal(0, 0.02)
                rows.append(dict(task="rte", model="minilm", method="lpt", generator=gen, prompt_layer=pl, seed=seed,
                                 shots=100, data_seed=13, dev_metric=acc + 0.01, test_metric=acc, steps=500,
                                 tunable_params=10240, tokens_per_second=1000 + 100 * pl, peak_memory_mb=900 - 50 * pl,
                                 wall_seconds=30.0, status="complete"))
    rows.append({**rows[0], "seed": 99, "test_metric": 0.0, "status": "failed"})
    for seed in seeds:
        rows.append({**rows[0], "method": "model-tuning", "generator": "none", "prompt_layer": np.nan, "seed": seed,
                     "test_metric": 0.8 + rng.normal(0, 0.01), "status": "complete"})
    return pd.DataFrame(rows)


def curves_table(seeds=(13, 42), layers=range(1, LAYERS + 1), steps=range(0, 501, 50), rng=None) -> pd.DataFrame:
    """curves.csv: middle prompt layers converge fastest."""
    rng = rng or np.random.default_rng(1)
    rows = []
    for pl in layers:
        rate = 0.004 + 0.01 * np.sin(np.pi * pl / (LAYERS + 1))
        for seed in seeds:
            for step in steps:
                dev = 0.5 + 0.25 * (1 - np.exp(-rate * step)) + rng.normal(0, 0.01)
                rows.append(dict(task="rte", model="minilm", generator="none", prompt_layer=pl, seed=seed, step=step,
                                 train_loss=0.7 * np.exp(-rate * step) + 0.1, dev_metric=dev))
    return pd.DataFrame(rows)


def mi_table(prompt_layers=(1, 3, 6), seeds=(13, 42), probe_seeds=(0, 1), rng=None) -> pd.DataFrame:
    """mi.csv: information grows through the network faster for a well-placed prompt; controls near 0."""
    rng = rng or np.random.default_rng(2)
    h_y = 1.0
    conds = [("lpt", k, s) for k in prompt_layers for s in seeds] + [("frozen", 0, 0), ("random_weights", 0, 13)]
    rows = []
    for method, pl, seed in conds:
        for layer in range(LAYERS + 1):
            base = 0.1 + 0.4 * layer / LAYERS if method != "random_weights" else 0.02
            boost = 0.3 * (layer - pl + 1) / LAYERS * (1 - abs(pl - 3) / 4) if method == "lpt" and layer >= pl else 0
            for control in ("none", "shuffled_labels"):
                if method == "random_weights" and control != "none":
                    continue
                for ps in probe_seeds:
                    mi = (base + boost if control == "none" else -0.01) + rng.normal(0, 0.02)
                    rows.append(dict(task="rte", model="minilm", method=method, prompt_layer=pl, seed=seed, layer=layer,
                                     probe="linear", representation="mask", split="test", control=control,
                                     h_y_bits=h_y, ce_bits=h_y - mi, mi_bits=mi, accuracy=0.5 + mi / 2,
                                     macro_f1=0.5 + mi / 2, mi_ci_low=mi - 0.05, mi_ci_high=mi + 0.05, n=277,
                                     probe_seed=ps))
    return pd.DataFrame(rows)


def projection_frame(n=60, rng=None) -> pd.DataFrame:
    """projection.csv: three clusters in the sentence space, a noisy copy in the prompt space."""
    rng = rng or np.random.default_rng(3)
    cluster = np.arange(n) % 3
    centres = np.array([[0, 0], [4, 0], [2, 3]])
    sx = centres[cluster] + rng.normal(0, 0.6, (n, 2))
    px = sx @ np.array([[0.5, -1.0], [1.0, 0.6]]) + rng.normal(0, 0.5, (n, 2))
    label = np.where((cluster == 0) ^ (rng.random(n) < 0.2), "entailment", "not_entailment")
    return pd.concat([pd.DataFrame({"example": np.arange(n), "space": space, "x": xy[:, 0], "y": xy[:, 1],
                                    "cluster": cluster, "label": label, "method": "umap"})
                      for space, xy in (("sentence", sx), ("prompt", px))], ignore_index=True)


def agreement_row() -> dict:
    return dict(method="umap", how="flatten", n_clusters=3, n=60, k=10, knn_overlap=0.62, knn_overlap_shuffled=0.16,
                knn_overlap_chance=10 / 59, trustworthiness=0.91, trustworthiness_shuffled=0.49)


def throughput_table(with_accuracy=True) -> pd.DataFrame:
    """benchmarks/results/train_throughput.csv: the cache makes late prompts cheaper."""
    rows = [dict(model="minilm", method="model-tuning", generator="none", prompt_layer=np.nan, cache=False,
                 tokens_per_second=2000.0, peak_memory_mb=1500.0, tunable_params=22_700_000, accuracy=0.70),
            dict(model="minilm", method="prompt-tuning", generator="none", prompt_layer=1, cache=False,
                 tokens_per_second=3000.0, peak_memory_mb=900.0, tunable_params=7680, accuracy=0.58)]
    for gen in ("none", "npg"):
        for cache in (False, True):
            for pl in range(1, LAYERS + 1):
                speed = 3000.0 * (1 + (pl - 1) / LAYERS if cache else 1) * (0.95 if gen == "npg" else 1)
                rows.append(dict(model="minilm", method="lpt", generator=gen, prompt_layer=pl, cache=cache,
                                 tokens_per_second=speed, peak_memory_mb=900.0 - (60 * pl if cache else 20 * pl),
                                 tunable_params=7680 if gen == "none" else 300_000, accuracy=0.6 + 0.02 * min(pl, 4)))
    df = pd.DataFrame(rows)
    return df if with_accuracy else df.drop(columns="accuracy")


def write_results(root: Path) -> dict[str, Path]:
    """Write every table where its producer would: returns {subcommand: RESULTS folder}."""
    folders = {name: root / name for name in ("sweep", "mi", "projection", "bench")}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    sweep_table().to_csv(folders["sweep"] / "sweep.csv", index=False)
    curves_table().to_csv(folders["sweep"] / "curves.csv", index=False)
    mi_table().to_csv(folders["mi"] / "mi.csv", index=False)
    projection_frame().to_csv(folders["projection"] / "projection.csv", index=False)
    pd.DataFrame([agreement_row()]).to_csv(folders["projection"] / "agreement.csv", index=False)
    throughput_table().to_csv(folders["bench"] / "train_throughput.csv", index=False)
    return {"performance": folders["sweep"], "convergence": folders["sweep"], "mi": folders["mi"],
            "projection": folders["projection"], "efficiency": folders["bench"]}


def check_pdf(path: Path) -> list[str]:
    """Assert ``path`` is a one-page PDF whose fonts are all embedded TrueType; return the font names.

    matplotlib writes Type 42 text either as a simple /TrueType font or as a /Type0 font
    whose descendant is a /CIDFontType2 (TrueType outlines); either way the descriptor
    must carry the font program as /FontFile2. Type 3 (bitmap-like) fonts fail.
    """
    import pypdf

    reader = pypdf.PdfReader(str(path))
    assert len(reader.pages) == 1, f"{path}: {len(reader.pages)} pages"
    fonts = reader.pages[0]["/Resources"].get("/Font")
    assert fonts, f"{path}: no fonts on the page"
    names = []
    for font in fonts.values():
        font = font.get_object()
        if font["/Subtype"] == "/Type0":
            (font,) = [d.get_object() for d in font["/DescendantFonts"]]
            assert font["/Subtype"] == "/CIDFontType2", f"{path}: {font['/BaseFont']} is {font['/Subtype']}"
        else:
            assert font["/Subtype"] == "/TrueType", f"{path}: {font['/BaseFont']} is {font['/Subtype']}, not TrueType"
        assert "/FontFile2" in font["/FontDescriptor"].get_object(), f"{path}: {font['/BaseFont']} not embedded"
        names.append(str(font["/BaseFont"]))
    return names
