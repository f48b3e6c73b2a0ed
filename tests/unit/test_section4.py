"""Section 4's claims read off synthetic tables, and what a rerun keeps of a study's cost.
The command end to end on real data is in tests/integration/test_section4_command.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from figure_data import LAYERS, curves_table, mi_table, sweep_table
from test_verdicts import study as synthetic_study

from lpt_probe.analysis.section4.study import CLAIMS, section4_claims


def influence_table(falls=True, rises=True, layers=(1, 3, 6), seeds=(13, 42)) -> pd.DataFrame:
    rows = []
    for pl in layers:
        for seed in seeds:
            drop = (1.0 - pl / 10) if falls else pl / 10
            coh = (0.02 + pl / 100) if rises else (0.1 - pl / 100)
            for ckpt in ("init", "trained"):
                rows += [dict(checkpoint=ckpt, quantity="logprob_drop_from", position="prediction", layer=pl,
                              value=drop),
                         dict(checkpoint=ckpt, quantity="attention_mass", position="prediction", layer=LAYERS,
                              value=0.5 - pl / 20),
                         dict(checkpoint=ckpt, quantity="grad_coherence", position="prompt", layer=pl - 1, value=coh),
                         dict(checkpoint=ckpt, quantity="grad_x_state_norm", position="prompt", layer=pl - 1,
                              value=1.0)]
            for r in rows[-8:]:
                r.update(prompt_layer=pl, seed=seed)
    return pd.DataFrame(rows).assign(task="rte", model="minilm", generator="none", method="lpt")


def diff_table(effect: bool) -> pd.DataFrame:
    return pd.DataFrame([{"prompt_layer": k, "seed": pd.NA, "layer": LAYERS, "diff_bits": 0.2 if k == 3 else 0.0,
                          "ci_low": 0.1 if k == 3 else -0.1, "ci_high": 0.3 if k == 3 else 0.1,
                          "effect": effect and k == 3} for k in (1, 3, 6)]).astype({"seed": "Int64"})


def test_claims_take_their_verdicts_from_the_per_example_contrasts():
    """The measured text is context; the verdict is the engine's on the per-example tables
    (tests/unit/test_verdicts.py builds a study for every verdict)."""
    ex = synthetic_study()
    claims, contrasts, gate, floor = section4_claims(sweep_table(), curves_table(), mi_table(), diff_table(True),
                                                     influence_table(), examples=ex, bootstrap=300)
    assert list(claims["claim"]) == list(CLAIMS)
    assert dict(zip(claims["claim"], claims["verdict"])) == {c: "yes" for c in CLAIMS}
    acc = claims.set_index("claim").loc["accuracy"]
    assert "PL1 " in acc["measured"] and "PL4 - PL1" in acc["contrasts"] and "p_holm" in acc["contrasts"]
    assert gate["learned"].all() and set(contrasts["side"]) == {"paper"} and floor["L"]["p"] < 0.05


def test_claims_without_per_example_tables_are_not_informative_and_a_linear_head_is_named():
    claims, *_ = section4_claims(sweep_table(), curves_table(), mi_table(), diff_table(False), influence_table(),
                                 head="classifier")
    assert set(claims["verdict"]) == {"not informative"} and "per-example" in claims["reason"].iloc[0]
    assert set(claims["head"]) == {"classifier"} and "linear head" in claims["head_note"].iloc[0]


def test_a_rerun_keeps_what_the_study_cost(tmp_path):
    """section4.json's stage_seconds_total adds every invocation of the same study (a
    resumed or rerun study still reports its cost); another study's seconds are not added."""
    import dataclasses

    from lpt_probe.analysis.section4.study import Section4Config, earlier_seconds

    cfg = Section4Config(task="trec", out=str(tmp_path), steps=40, device="cpu")
    settings = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    (tmp_path / "section4.json").write_text(json.dumps({"settings": {**settings, "paper": "x.csv"},
                                                        "stage_seconds": {"sweep": 100.0, "mi": 20.0}}))
    assert earlier_seconds(tmp_path, cfg) == {"sweep": 100.0, "mi": 20.0}
    assert earlier_seconds(tmp_path, dataclasses.replace(cfg, steps=50)) == {}


def test_a_killed_invocation_still_leaves_what_it_spent(tmp_path):
    """The stage clock keeps section4.json's stage_seconds_total current during a stage (so a
    process killed mid-stage leaves its seconds for the next invocation to add), counts a stage
    that raised, and never writes over the final status."""
    import dataclasses
    import time

    from lpt_probe.analysis.engine.conditions import StudyOutput
    from lpt_probe.analysis.section4.study import Section4Config, StageClock, earlier_seconds

    cfg = Section4Config(task="trec", out=str(tmp_path), steps=40, device="cpu")
    settings = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    status = tmp_path / "section4.json"

    def read():
        return json.loads(status.read_text())

    seconds, total = {}, {"sweep": 100.0}  # an earlier invocation's sweep
    with pytest.raises(RuntimeError):
        with StudyOutput(tmp_path, "section4.json") as study:
            study.start({"settings": settings, "stage_seconds": seconds, "stage_seconds_total": total})
            with StageClock(study, seconds, total, every=0.05) as clock:
                with clock.stage("sweep"):
                    time.sleep(0.3)
                    mid = read()  # what a kill here would leave behind
                with clock.stage("mi"):
                    raise RuntimeError("mi failed")
    assert mid["status"] == "running" and 100.1 < mid["stage_seconds_total"]["sweep"] < 100.3 + 5
    assert earlier_seconds(tmp_path, cfg)["sweep"] == read()["stage_seconds_total"]["sweep"] >= 100.3
    assert read()["status"] == "failed" and "mi" in read()["stage_seconds_total"]

    seconds, total = {}, earlier_seconds(tmp_path, cfg)
    with StudyOutput(tmp_path, "section4.json") as study:
        study.start({"settings": settings, "stage_seconds": seconds, "stage_seconds_total": total})
        with StageClock(study, seconds, total, every=0.01) as clock:
            with clock.stage("sweep"):
                time.sleep(0.05)
    time.sleep(0.1)  # a beat after the output closed would have rewritten it by now
    done = read()
    assert done["status"] == "complete" and done["stage_seconds_total"]["sweep"] >= 100.35
    assert done["stage_seconds"]["sweep"] < 1.0


def test_the_paper_column_names_the_studies_that_ran_the_papers_setting():
    from lpt_probe.analysis.section4.study import _paper_cell

    table10 = "RTE (Table 10, NPG; PL1 = prompt tuning): PL1 58.2, PL13 69.5"
    other = table10 + " (not this study's setting: trec, generator none; shown for the paper's shape only)"
    assert _paper_cell([]) == ""
    assert _paper_cell([("trec / minilm", other)]) == other  # none ran it: the first says what differs
    assert _paper_cell([("rte / smollm2", table10)]) == table10
    assert _paper_cell([("trec / minilm", other), ("rte / smollm2", table10)]) == (
        table10 + " (the setting of rte / smollm2; the other studies' settings differ)")
