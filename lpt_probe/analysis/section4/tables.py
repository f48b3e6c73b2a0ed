"""A Section 4 study's tables on disk: the per-example files its verdicts resample
(:func:`study_examples`) and the export of a finished study's tables without weights
(:func:`export_tables`, ``python -m lpt_probe.section4 --export``), from which the verdicts
can be recomputed (``benchmarks/results/section4/`` holds the committed ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import store
from .verdicts import StudyExamples, anytime_dev, paper_layers

__all__ = ["EXPORTED", "cost_markdown", "export_tables", "learned_markdown", "study_examples"]


def study_examples(out: Path, sweep: pd.DataFrame, pvi: pd.DataFrame, L: int) -> StudyExamples:
    """The per-example tables of a finished study folder (``lpt_probe.analysis.section4.verdicts``):
    each sweep run's ``test_predictions.csv`` and ``dev_correct.npz`` at the paper's three
    layers, ``pvi.csv`` at the top hidden state, ``influence_examples.csv`` and
    ``influence_gram.npz``."""
    out = Path(out)
    layers = set(paper_layers(L).values())
    done = sweep[(sweep["status"] == "complete") & (sweep["method"] == "lpt") & sweep["prompt_layer"].isin(layers)]
    tc, histories, labels = [], {}, None
    for r in done.itertuples():
        run = out / "sweep" / r.run_dir
        if not (run / "test_predictions.csv").is_file():
            continue  # a run from before per-example outputs: its claims become not informative
        pred = store.read_csv(run / "test_predictions.csv")
        labels = pred["label"].to_numpy() if labels is None else labels
        tc.append(pd.DataFrame({"prompt_layer": int(r.prompt_layer), "seed": int(r.seed),
                                "example": pred["example"], "correct": (pred["label"] == pred["pred"]).astype(int)}))
        with np.load(run / "dev_correct.npz") as z:
            histories[(int(r.prompt_layer), int(r.seed))] = (z["step"], z["correct"])
    grid = np.unique(np.concatenate([h[0] for h in histories.values()])) if histories else np.array([])
    dev = [pd.DataFrame({"prompt_layer": k, "seed": s, "example": np.arange(c.shape[1]),
                         "value": anytime_dev(st, c, grid)}) for (k, s), (st, c) in histories.items()]
    majority = np.bincount(labels).argmax() if labels is not None else None
    top = pvi[(pvi["method"] == "lpt") & (pvi["layer"] == L)] if len(pvi) else pvi
    infl_csv, gram_npz = out / "influence" / "influence_examples.csv", out / "influence" / "influence_gram.npz"
    infl = store.read_csv(infl_csv) if infl_csv.is_file() else pd.DataFrame(
        columns=["prompt_layer", "seed", "checkpoint", "quantity", "position", "layer", "example", "value"])
    grams = {}
    if gram_npz.is_file():
        with np.load(gram_npz) as z:
            grams = {k: z[k] for k in z.files}
    empty = pd.DataFrame(columns=["prompt_layer", "seed", "example", "correct"])
    return StudyExamples(L, pd.concat(tc, ignore_index=True) if tc else empty,
                         (labels == majority) if labels is not None else np.zeros(0, dtype=bool),
                         pd.concat(dev, ignore_index=True) if dev else empty.rename(columns={"correct": "value"}),
                         top, infl, grams)


# What ``export_tables`` copies from a finished study: every table the verdicts and the
# guide read, none of the weights or stored representations.
EXPORTED = ("claims.csv", "contrasts.csv", "learned.csv", "section4.json", "sweep/sweep.csv", "sweep/curves.csv",
            "mi/mi.csv", "mi/mi_diff.csv", "influence/influence.csv", "influence/influence_gram.npz")


def export_tables(study: str | Path, dest: str | Path) -> list[Path]:
    """Copy a finished study's tables into ``dest`` (same layout): :data:`EXPORTED`, each
    sweep run's ``test_predictions.csv`` and ``dev_correct.npz`` at the paper's three layers,
    ``mi/pvi_top.csv`` (the late prompts' pointwise information at the top hidden state: the
    rows the verdicts read of ``pvi.csv``) and the rows of ``influence_examples.csv`` they read. From these alone :func:`study_examples` and
    ``verdicts.judge`` give the study's verdicts again. Returns the files written."""
    study, dest = Path(study), Path(dest)
    meta = store.read_json_object(study / "section4.json")
    if meta.get("status") != "complete":
        raise ValueError(f"{study}/section4.json says {meta.get('status')!r}: export a finished study (rerun "
                         "the section4 command to finish it)")
    L = int(meta["num_hidden_layers"])
    written = []
    for name in EXPORTED:
        written.append(store.atomic_write_bytes(dest / name, (study / name).read_bytes()))
    sweep = store.read_csv(study / "sweep" / "sweep.csv")
    layers = set(paper_layers(L).values())
    for r in sweep[(sweep["status"] == "complete") & sweep["prompt_layer"].isin(layers)].itertuples():
        for f in ("test_predictions.csv", "dev_correct.npz", "metrics.json"):
            written.append(store.atomic_write_bytes(dest / "sweep" / r.run_dir / f,
                                                    (study / "sweep" / r.run_dir / f).read_bytes()))
    infl = store.read_csv(study / "influence" / "influence_examples.csv")
    used = (((infl["checkpoint"] == "trained") & (infl["quantity"] == "logprob_drop_from")
             & (infl["layer"] == infl["prompt_layer"]))
            | ((infl["checkpoint"] == "init") & (infl["quantity"] == "grad_x_state_norm")
               & (infl["position"] == "prompt")))
    written.append(store.write_csv(dest / "influence" / "influence_examples.csv", infl[used]))  # the rows judged
    pvi = store.read_csv(study / "mi" / "pvi.csv")
    written.append(store.write_csv(dest / "mi" / "pvi_top.csv", pvi[(pvi["method"] == "lpt") & (pvi["layer"] == L)]))
    return written


def _studies(folders) -> list[tuple[str, Path]]:
    out = []
    for f in folders:
        claims = store.read_csv(Path(f) / "claims.csv")
        out.append((f"{claims['task'].iloc[0]} / {claims['model'].iloc[0]}", Path(f)))
    return out


def learned_markdown(folders) -> str:
    """Each study's ``learned.csv`` as one markdown table: the test accuracy of every prompt
    layer with its 95% interval beside the majority-class rate, and whether it learned."""
    lines = ["| study | prompt layer | seeds | test accuracy [95%] | majority class | learned |",
             "|---|---:|---:|---|---:|---|"]
    for name, f in _studies(folders):
        for r in store.read_csv(f / "learned.csv").itertuples():
            lines.append(f"| {name} | {r.prompt_layer} | {r.seeds} | {r.test_accuracy:.3f} [{r.ci_low:.3f}, "
                         f"{r.ci_high:.3f}] | {r.majority_rate:.3f} | {'yes' if r.learned else 'no'} |")
    return "\n".join(lines)


def cost_markdown(folders) -> str:
    """Each study's wall time per stage (``section4.json``'s ``stage_seconds_total``: every
    invocation of the study added up), the steps its prompts trained before they stopped
    (``sweep.csv``) and the seconds their training steps took (``sweep/curves.csv``: each
    prompt's ``train_seconds`` at its last evaluation, summed). The last is carried across
    resumes, so it holds training done by an invocation that was killed before it could record
    its stage's time (studies run before the stage clock: ``StageClock``); it leaves out
    evaluations, loading and steps redone after a kill."""
    lines = ["| study | prompts | steps trained (cap) | training steps | sweep | mi | influence | total |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, f in _studies(folders):
        meta = store.read_json_object(f / "section4.json")
        sweep = store.read_csv(f / "sweep" / "sweep.csv")
        curves = store.read_csv(f / "sweep" / "curves.csv")
        trained = curves.groupby(["generator", "prompt_layer", "seed"])["train_seconds"].max().sum()
        st = meta.get("stage_seconds_total") or meta["stage_seconds"]
        steps = ", ".join(str(int(v)) for v in sweep["stopped_step"])
        lines.append(f"| {name} | {len(sweep)} | {steps} ({int(sweep['steps'].iloc[0])}) | {trained:,.0f} s | "
                     f"{st['sweep']:,.0f} s | {st['mi']:,.0f} s | {st['influence']:,.0f} s | "
                     f"{sum(st.values()) / 60:.0f} min |")
    return "\n".join(lines)
