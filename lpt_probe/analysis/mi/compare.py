"""Differences between conditions, with the uncertainty that decides whether they are effects.

``mi.csv`` holds one I(h;y) estimate per condition and hidden state; reading "the PL 4
prompt raises hidden state 6 by 0.05 bits" off two of its rows ignores that both
estimates share the same test examples (their noise is correlated) and that a prompt is
one draw of its seed. :func:`condition_differences` takes ``pvi.csv`` (the pointwise
V-information of every test example, per condition, hidden state and probe seed) and, for
every late prompt and hidden state, returns the difference to the frozen model at the
same hidden state:

- per prompt seed: the mean of the per-example PVI differences (probe seeds averaged per
  example) with a **paired** percentile bootstrap interval over test examples
  (:func:`lpt_probe.probing.paired_difference`);
- pooled over the prompt seeds (``seed`` empty), when there are several: the per-example
  differences averaged over seeds, their paired bootstrap interval, the std of the per-seed
  differences, and ``effect``: True only when the interval excludes 0 AND every seed's
  difference has the same sign. With one prompt seed the pooled row would repeat the seed's
  own, so there is only the seed's row (``n_seeds`` 1; its ``effect``: the interval alone).

:func:`pooled_rows` picks the row a reader quotes for each prompt layer and hidden state
(the pooled one, or the only seed's).

The README and the docs read a difference as an effect only when ``effect`` is True.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...probing import paired_difference

__all__ = ["DIFF_COLUMNS", "condition_differences", "effects_table", "pooled_rows"]

DIFF_COLUMNS = ["task", "model", "probe", "representation", "method", "prompt_layer", "seed", "layer", "versus",
                "diff_bits", "ci_low", "ci_high", "n_test", "n_probe_seeds", "n_seeds", "seed_std_bits", "effect"]


def _per_example(pvi: pd.DataFrame) -> pd.Series:
    """Mean PVI over probe seeds per (method, prompt_layer, seed, layer, example_id)."""
    return pvi.groupby(["method", "prompt_layer", "seed", "layer", "example_id"], sort=True)["pvi_bits"].mean()


def condition_differences(pvi: pd.DataFrame, bootstrap: int = 1000, ci: float = 0.95,
                          versus: str = "frozen") -> pd.DataFrame:
    """Every late prompt minus the ``versus`` condition, per hidden state (see the module
    docstring); one row per (prompt layer, seed, hidden state) and, for a prompt layer with
    several seeds, one pooled row per hidden state with ``seed`` empty. Empty when there is
    no late prompt or no ``versus`` condition."""
    if pvi.empty or not {"lpt", versus} <= set(pvi["method"]):
        return pd.DataFrame(columns=DIFF_COLUMNS)
    head = {c: pvi[c].iloc[0] for c in ("task", "model", "probe", "representation") if c in pvi.columns}
    n_probe_seeds = int(pvi["probe_seed"].nunique()) if "probe_seed" in pvi.columns else 1
    ex = _per_example(pvi)
    ref = ex.xs(versus, level="method").droplevel(["prompt_layer", "seed"])  # (layer, example_id) -> bits
    lpt = ex.xs("lpt", level="method")
    rows = []
    for (pl, layer), part in lpt.groupby(level=["prompt_layer", "layer"], sort=True):
        per_seed = {}
        for seed, vals in part.groupby(level="seed", sort=True):
            vals = vals.droplevel(["prompt_layer", "seed"])
            base = ref.loc[vals.index]  # the same test examples, in the same order
            a, b = vals.to_numpy(), base.to_numpy()
            mean, lo, hi = paired_difference(a, b, bootstrap, ci)
            per_seed[int(seed)] = (a - b, mean)
            rows.append({**head, "method": "lpt", "prompt_layer": int(pl), "seed": int(seed), "layer": int(layer),
                         "versus": versus, "diff_bits": mean, "ci_low": lo, "ci_high": hi, "n_test": len(a),
                         "n_probe_seeds": n_probe_seeds, "n_seeds": 1, "seed_std_bits": float("nan"),
                         "effect": bool(bootstrap and (lo > 0 or hi < 0))})
        if len(per_seed) == 1:  # the pooled row would repeat the seed's own
            continue
        diffs = np.stack([d for d, _ in per_seed.values()])  # [seeds, n_test]
        means = np.array([m for _, m in per_seed.values()])
        avg = diffs.mean(axis=0)
        mean, lo, hi = paired_difference(avg, np.zeros_like(avg), bootstrap, ci)
        agree = bool(np.all(np.sign(means) == np.sign(mean))) if mean != 0 else False
        rows.append({**head, "method": "lpt", "prompt_layer": int(pl), "seed": float("nan"), "layer": int(layer),
                     "versus": versus, "diff_bits": mean, "ci_low": lo, "ci_high": hi, "n_test": diffs.shape[1],
                     "n_probe_seeds": n_probe_seeds, "n_seeds": len(means),
                     "seed_std_bits": float(means.std(ddof=1)) if len(means) > 1 else float("nan"),
                     "effect": bool(bootstrap and (lo > 0 or hi < 0) and agree)})
    out = pd.DataFrame(rows).reindex(columns=DIFF_COLUMNS)
    out["seed"] = out["seed"].astype("Int64")  # empty on the pooled rows
    return out


def pooled_rows(diff: pd.DataFrame) -> pd.DataFrame:
    """One row per (prompt layer, hidden state): the pooled row (``seed`` empty) where the
    prompt layer has several seeds, the seed's own row where it has one."""
    if diff.empty:
        return diff
    alone = diff.groupby(["prompt_layer", "layer"])["layer"].transform("size") == 1
    return diff[diff["seed"].isna() | alone]


def effects_table(diff: pd.DataFrame) -> str:
    """The pooled differences (:func:`pooled_rows`) as a printed table (hidden state x prompt
    layer, bits), a ``*`` after each that is an effect."""
    pooled = pooled_rows(diff)
    if pooled.empty:
        return ""
    cell = pooled.assign(text=[f"{v:+.3f}{'*' if e else ' '}" for v, e in zip(pooled["diff_bits"], pooled["effect"])])
    view = cell.pivot(index="layer", columns="prompt_layer", values="text")
    view.columns = [f"PL {c}" for c in view.columns]
    view.index.name = "layer"
    return view.to_string()
