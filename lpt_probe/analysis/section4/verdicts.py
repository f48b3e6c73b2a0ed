"""The Section 4 verdicts: each of the paper's claims as paired contrasts between its three
prompt layers, with intervals over every source of variance, one multiplicity rule and a
"did it learn" gate. Pure numpy / pandas: no model, no files.

The paper compares three prompt layers: PL 1 (prompt tuning), the middle ``L//2 + 1``
and the last, ``L``. A claim is one or two *contrasts* between them, each with the side
the paper predicts (:data:`CONTRASTS`):

==============  ===========================================  ======================
claim           measure (per example)                        contrasts (paper: > 0)
==============  ===========================================  ======================
accuracy        test prediction correct (0/1)                mid - PL1, mid - L
convergence     anytime dev accuracy: correct under the      mid - PL1, mid - L
                weights kept so far, averaged over the
                evaluation steps (area under the curve)
information     pointwise V-information at the top hidden    mid - PL1, mid - L
                state (``pvi.csv``), probe seeds resampled
influence       log p(gold) drop when the trained prompt is  PL1 - mid, mid - L
                hidden from layers PL..L
signal          gradient coherence at the untrained prompt   mid - PL1, L - mid
==============  ===========================================  ======================

**Intervals.** A hierarchical bootstrap (``lpt_probe.analysis.section4.contrasts``): prompt seeds,
then test examples within each seed slot (shared by every layer, so a contrast stays
paired), then probe seeds; 95% percentile intervals; p-values from the bootstrap standard
error.

**Multiplicity.** Holm's step-down over every contrast of the study that is tested (the
family is the study; the secondary signal measure is reported, not tested): a contrast
is *decided* when its Holm-adjusted p-value is below ``alpha`` (0.05), on the paper's side
or on the other side by the sign of its estimate.

**Verdict** per claim: ``yes`` when every contrast is decided on the paper's side;
``no`` when one is decided on the other side; ``inconclusive`` otherwise; ``not
informative`` when a precondition fails:

- *the prompts learned* (accuracy, convergence, information, influence): the test
  accuracy of the PL 1 and the middle prompt beats the majority-class rate (the paired
  per-example difference, correct minus "the gold label is the majority class", has its
  95% interval above 0; :func:`learned_gate`). A prompt that never learned says nothing
  about where a prompt should go; the gate's table reports every layer.
- *the signal stands above its noise floor* (signal): coherence has a known floor, about
  1/n for n examples pushing in unrelated directions; the null is the same examples'
  gradients with random signs (:func:`coherence_null`), which keeps every norm and
  destroys only the agreement. When neither the middle nor the last prompt's coherence
  exceeds its null (one-sided p < alpha), the gradients carry no measurable label signal
  and the claim is not informative.

Why coherence decides the signal claim and ||g||·||h|| does not: coherence asks whether
the examples agree on which way to move the prompt (what a learning signal is), it is
dimensionless and has a floor to test against. ||g||·||h|| is a magnitude: it also grows
with loss directions common to every input (e.g. mass on non-label tokens under the
full-vocabulary loss) and with the layer's scale, so a falling ||g||·||h|| does not say
the label signal weakens. It is reported with its own contrasts beside, and the claim's
row says when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contrasts import ALPHA, CoherenceStat, Contrast, MeanStat, coherence_null, contrast_table, learned_gate

__all__ = ["CONTRASTS", "NEEDS_LEARNED", "VERDICTS", "StudyExamples", "anytime_dev", "decide", "judge",
           "paper_layers"]

VERDICTS = ("yes", "no", "inconclusive", "not informative")
# claim -> the contrasts (a, b): the paper predicts statistic(a) - statistic(b) > 0
CONTRASTS: dict[str, tuple[tuple[str, str], ...]] = {
    "accuracy": (("mid", "PL1"), ("mid", "L")),
    "convergence": (("mid", "PL1"), ("mid", "L")),
    "information": (("mid", "PL1"), ("mid", "L")),
    "influence": (("PL1", "mid"), ("mid", "L")),
    "signal": (("mid", "PL1"), ("L", "mid")),
}
NEEDS_LEARNED = ("accuracy", "convergence", "information", "influence")  # claims on trained prompts
GATED_ROLES = ("PL1", "mid")  # the prompts that must beat the majority class


def paper_layers(L: int) -> dict[str, int]:
    """The paper's three prompt layers of an L-layer model: role -> prompt layer."""
    return {"PL1": 1, "mid": L // 2 + 1, "L": L}


def decide(sides: list[str]) -> str:
    """A claim's verdict from its contrasts' sides (module docstring)."""
    if sides and all(s == "paper" for s in sides):
        return "yes"
    if any(s == "other" for s in sides):
        return "no"
    return "inconclusive"



# -- one study ----------------------------------------------------------------------------
@dataclass
class StudyExamples:
    """The per-example tables of one Section 4 study (what :func:`judge` resamples).

    ``test_correct``: prompt_layer, seed, example, correct (0/1) of every trained prompt on
    the test split; ``is_majority`` [n_test]: the gold label is the majority class;
    ``dev_anytime``: prompt_layer, seed, example, value (:func:`anytime_dev`); ``pvi``:
    prompt_layer, seed, probe_seed, example_id, pvi_bits of the late prompts at the top
    hidden state; ``influence``: ``influence_examples.csv``; ``grams``: ``influence_gram.npz``
    (``pl<PL>-s<seed>-<checkpoint>`` -> [n, n]). A table may be empty: its claims are then
    not informative."""

    L: int
    test_correct: pd.DataFrame
    is_majority: np.ndarray
    dev_anytime: pd.DataFrame
    pvi: pd.DataFrame
    influence: pd.DataFrame
    grams: dict


def anytime_dev(steps: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per dev example, the mean over ``grid`` steps of its correctness under the weights a
    run keeps so far (best dev accuracy up to that step; the first best on ties, as the
    trainer keeps it; after the run stopped, what it kept). ``steps`` [E], ``correct``
    [E, n]; a grid step before the first evaluation counts 0."""
    steps, correct = np.asarray(steps), np.asarray(correct, dtype=np.float64)
    out = np.zeros(correct.shape[1])
    best, kept, e = -np.inf, np.zeros(correct.shape[1]), 0
    for t in grid:
        while e < len(steps) and steps[e] <= t:
            if correct[e].mean() > best:
                best, kept = correct[e].mean(), correct[e]
            e += 1
        out += kept
    return out / max(len(grid), 1)


def _by_seed(df: pd.DataFrame, layer: int, value: str, example: str = "example",
             probe: str | None = None) -> np.ndarray | None:
    """[seeds, (probe_seeds,) n] of one prompt layer's rows, examples in a fixed order."""
    part = df[df["prompt_layer"] == layer]
    if part.empty:
        return None
    if probe is None:
        return part.pivot_table(index="seed", columns=example, values=value, aggfunc="mean").to_numpy()
    cube = part.pivot_table(index=["seed", probe], columns=example, values=value, aggfunc="mean")
    seeds = cube.index.get_level_values(0).unique()
    return np.stack([cube.loc[s].to_numpy() for s in seeds])


def _stats(ex: StudyExamples, layers: dict[str, int]) -> tuple[dict, dict[str, str]]:
    """measure -> role -> statistic, and measure -> why it is missing."""
    infl = ex.influence
    trained_drop = infl[(infl["checkpoint"] == "trained") & (infl["quantity"] == "logprob_drop_from")
                        & (infl["layer"] == infl["prompt_layer"])] if len(infl) else infl
    scaled = infl[(infl["checkpoint"] == "init") & (infl["quantity"] == "grad_x_state_norm")
                  & (infl["position"] == "prompt")] if len(infl) else infl
    sources = {"test accuracy": (ex.test_correct, "correct", "example", None),
               "anytime dev accuracy": (ex.dev_anytime, "value", "example", None),
               "I(h;y) at the top (bits)": (ex.pvi, "pvi_bits", "example_id", "probe_seed"),
               "log p(gold) drop (nats)": (trained_drop, "value", "example", None),
               "||g||·||prompt|| at init": (scaled, "value", "example", None)}
    stats, missing = {}, {}
    for measure, (df, value, example, probe) in sources.items():
        got = {}
        for role, k in layers.items():
            arr = _by_seed(df, k, value, example, probe) if len(df) else None
            if arr is None or np.isnan(arr).any():
                missing[measure] = f"no complete per-example rows at PL {k}"
                break
            got[role] = MeanStat(arr)
        else:
            stats[measure] = got
    got = {}
    for role, k in layers.items():
        grams = [g for name, g in sorted(ex.grams.items()) if name.startswith(f"pl{k}-s") and name.endswith("-init")]
        if not grams:
            missing["gradient coherence at init"] = f"no gradients of the untrained prompt at PL {k}"
            break
        got[role] = CoherenceStat(np.stack(grams))
    else:
        stats["gradient coherence at init"] = got
    return stats, missing


CLAIM_MEASURES = {"accuracy": ("test accuracy",), "convergence": ("anytime dev accuracy",),
                  "information": ("I(h;y) at the top (bits)",), "influence": ("log p(gold) drop (nats)",),
                  "signal": ("gradient coherence at init", "||g||·||prompt|| at init")}


def judge(ex: StudyExamples, bootstrap: int = 1000, alpha: float = ALPHA, seed: int = 0
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """The verdicts of one study: (claims: claim, verdict, reason, contrasts; contrasts:
    :func:`contrast_table`; gate: :func:`learned_gate`; floor: the signal's null)."""
    layers = paper_layers(ex.L)
    stats, missing = _stats(ex, layers)
    correct = {k: _by_seed(ex.test_correct, k, "correct") for k in sorted(ex.test_correct["prompt_layer"].unique())} \
        if len(ex.test_correct) else {}
    gate = learned_gate(correct, ex.is_majority, bootstrap, alpha, seed) if correct else pd.DataFrame(
        columns=["prompt_layer", "learned"])
    learned = dict(zip(gate["prompt_layer"], gate["learned"]))
    not_learned = [f"PL {layers[r]}" for r in GATED_ROLES if not learned.get(layers[r], False)]
    floor: dict = {}
    if "gradient coherence at init" in stats:
        for role in ("mid", "L"):
            obs, null = coherence_null(stats["gradient coherence at init"][role].grams, bootstrap, seed)
            floor[role] = {"prompt_layer": layers[role], "coherence": obs, "null_mean": float(null.mean()),
                           "null_q95": float(np.quantile(null, 1 - alpha)),
                           "p": float((np.sum(null >= obs) + 1) / (len(null) + 1))}
    above_floor = any(f["p"] < alpha / len(floor) for f in floor.values())  # Bonferroni over the two
    reasons: dict[str, str] = {}
    contrasts = []
    for claim, pairs in CONTRASTS.items():
        primary, *secondary = CLAIM_MEASURES[claim]
        if primary in missing:
            reasons[claim] = f"{primary}: {missing[primary]}"
        elif claim in NEEDS_LEARNED and not_learned:
            reasons[claim] = (f"the prompt at {' and '.join(not_learned)} did not beat the majority class "
                              f"({gate['majority_rate'].iloc[0]:.3f}) on test: a prompt that never learned says "
                              "nothing about where a prompt should go")
        elif claim == "signal" and not above_floor:
            reasons[claim] = ("neither the middle nor the last prompt's gradient coherence exceeds its random-sign "
                              "null: no measurable label signal to compare")
        for m in (primary, *secondary):
            if m in stats:
                contrasts += [Contrast(claim, m, a, b, tested=(m == primary and claim not in reasons))
                              for a, b in pairs]
    table = contrast_table(contrasts, {m: s for m, s in stats.items()}, layers, bootstrap, alpha, seed) \
        if contrasts else pd.DataFrame(columns=["claim", "measure", "side", "tested"])
    rows = []
    for claim in CONTRASTS:
        mine = table[table["claim"] == claim]
        prim = mine[mine["measure"] == CLAIM_MEASURES[claim][0]]
        verdict = "not informative" if claim in reasons else decide(list(prim["side"]))
        text = "; ".join(f"{r.contrast} {r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                         f"{'' if not r.tested else f' p_holm {r.p_holm:.3f}'}" for r in prim.itertuples())
        note = reasons.get(claim, "")
        sec = mine[mine["measure"] != CLAIM_MEASURES[claim][0]]
        if len(sec):
            other = decide(list(sec["side"]))
            text += f"; {sec['measure'].iloc[0]}: " + "; ".join(
                f"{r.contrast} {r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in sec.itertuples())
            if verdict in ("yes", "no") and other in ("yes", "no") and other != verdict:
                note = (note + "; " if note else "") + f"{sec['measure'].iloc[0]} says {other}: they disagree"
        if claim == "signal" and floor:
            text += "; null (random signs) " + ", ".join(
                f"PL{f['prompt_layer']} {f['coherence']:.4f} vs {f['null_mean']:.4f} (p {f['p']:.3f})"
                for f in floor.values())
        rows.append({"claim": claim, "verdict": verdict, "contrasts": text, "reason": note})
    return pd.DataFrame(rows), table, gate, floor
