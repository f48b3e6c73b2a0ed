"""``mi --plan``: what an invocation will do, counted with the run's own keys before it runs.

The counts are checked against what the run then does (prompts trained, pieces fitted,
bytes of representations on disk) and against a resumed folder (nothing left to do). The
time estimate is a model calibrated on the machine: tests only check that it is there and
finite (benchmarks/bench_plan.py compares it with measured runs; tests never time). On
real TREC from ../shared/data with the embedded MiniLM (tiny settings)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lpt_probe.commands import influence, mi, sweep
from lpt_probe.analysis.mi.study import MIConfig
from lpt_probe.analysis.plan import plan_mi
from lpt_probe.runs.planning import timing_batches

pytestmark = pytest.mark.integration

MI = ["--task", "trec", "--prompt-layers", "1,4", "--seeds", "13", "--steps", "2", "--eval-every", "1", "--shots", "20",
      "--dev-size", "20", "--max-examples", "60", "--probe-train-max", "60", "--probe-dev-size", "20", "--bootstrap",
      "20", "--control-permutations", "1", "--jobs", "1", "--no-progress", "-q"]


def flat(text: str) -> str:
    """The printed plan with runs of spaces as one (its columns align to the longest label)."""
    return " ".join(text.split())


def config(data_dir, out, **kw) -> MIConfig:
    settings = dict(task="trec", data_dir=str(data_dir), out=str(out), prompt_layers="1,4", seeds=(13,), steps=2,
                    eval_every=1, shots=20, dev_size=20, max_examples=60, probe_train_max=60, probe_dev_size=20,
                    bootstrap=20, control_permutations=1, jobs=1, progress=False)
    return MIConfig(**{**settings, **kw})


def test_plan_counts_what_the_run_then_does_and_nothing_after_it(data_dir, tmp_path, capsys):
    out = tmp_path / "mi"
    assert mi.main([*MI, "--data-dir", str(data_dir), "--out", str(out), "--plan"]) == 0
    printed = flat(capsys.readouterr().out)
    assert "plan for" in printed and "prompts to train 2 of 2" in printed and "total" in printed
    assert not out.exists()  # a plan writes nothing

    plan = plan_mi(config(data_dir, out), calibrate=False)
    c = plan.counts
    # frozen, two prompts, random weights; 7 hidden states; a prompt's states below PL are
    # the frozen model's piece: 7 + 6 (PL 1: 1..6) + 3 (PL 4: 4, 5, 6) + 7
    assert (c["prompts_to_train"], c["conditions"], c["to_extract"], c["pieces_to_fit"]) == (2, 4, 4, 23)
    assert c["train_steps"] == 4 and c["hidden_states"] == 7
    assert json.loads(json.dumps(plan.to_dict()))["memory_bytes"] == plan.memory_bytes > 0  # plain JSON numbers

    assert mi.main([*MI, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["pieces_fitted"] == c["pieces_to_fit"] and len(meta["runs"]) == c["prompts_to_train"]
    stored = sum(p.stat().st_size for p in (out / "reps").rglob("*.safetensors"))
    assert abs(stored - plan.disk_bytes) <= 0.01 * stored  # the arrays; safetensors headers are the rest

    after = plan_mi(config(data_dir, out), calibrate=False).counts
    assert (after["prompts_to_train"], after["to_extract"], after["pieces_to_fit"]) == (0, 0, 0)


def test_the_estimate_is_calibrated_on_this_machine(data_dir, tmp_path):
    plan = plan_mi(config(data_dir, tmp_path / "mi", prompt_layers="2,6"))
    assert set(plan.seconds) == {"train", "extract", "probe"}
    assert all(math.isfinite(v) and v > 0 for v in plan.seconds.values())
    assert {"layer_seconds", "piece_seconds", "step_seconds_lpt_none_pl2", "step_seconds_lpt_none_pl6"} <= set(plan.calibration)
    assert math.isclose(plan.total_seconds, sum(plan.seconds.values()))
    assert not (tmp_path / "mi").exists()


SWEEP = ["--task", "trec", "--methods", "lpt,prompt-tuning", "--prompt-layers", "1,6", "--generators", "none",
         "--seeds", "13", "--steps", "2", "--eval-every", "1", "--shots", "20", "--dev-size", "20",
         "--max-examples", "60", "--no-progress", "-q"]


def test_sweep_plan_counts_the_runs_the_sweep_then_trains(data_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [*SWEEP, "--data-dir", str(data_dir), "--out", str(out)]
    assert sweep.main([*args, "--plan"]) == 0
    printed = flat(capsys.readouterr().out)
    # three cells; prompt tuning is LPT at PL 1 without a generator: one run for both
    assert "plan for" in printed and "cells 3 (2 distinct runs" in printed and "runs to train 2 (4 steps" in printed
    assert "time (estimate)" in printed and not out.exists()
    assert sweep.main(args) == 0
    assert len(list((out / "runs").iterdir())) == 2
    # the run records the phases the plan estimates (bench_plan.py compares them)
    assert set(json.loads((out / "sweep.json").read_text())["phase_seconds"]) == {"cache", "train"}
    assert sweep.main([*args, "--plan"]) == 0
    assert "runs to train 0 (0 steps" in flat(capsys.readouterr().out)


INFLUENCE = ["--task", "trec", "--prompt-layers", "6", "--seeds", "13", "--steps", "2", "--eval-every", "1",
             "--max-examples", "24", "--influence-max", "4", "--bootstrap", "20", "--checkpoints", "0",
             "--no-progress", "-q"]


def test_influence_plan_counts_the_pieces_the_run_then_measures(data_dir, tmp_path, capsys):
    out = tmp_path / "influence"
    args = [*INFLUENCE, "--data-dir", str(data_dir), "--out", str(out)]
    assert influence.main([*args, "--plan"]) == 0
    printed = flat(capsys.readouterr().out)
    # one prompt; checkpoints init, step-0 and trained
    assert "prompts to train 1 of 1" in printed and "pieces to measure 3 of 3" in printed
    assert "measure" in printed and not out.exists()
    assert influence.main(args) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["pieces_measured"] == 3 and set(meta["phase_seconds"]) == {"train", "measure"}
    assert influence.main([*args, "--plan"]) == 0
    assert "pieces to measure 0 of 3" in flat(capsys.readouterr().out)


def test_runs_that_build_their_own_cache_are_planned_one_cache_each(monkeypatch):
    """A sweep and ``mi`` share one lower-layer cache (the highest start state, once);
    ``influence`` trains each prompt on its own, each building its cache: one per run."""
    from types import SimpleNamespace

    from lpt_probe.model.late_prompt import LatePromptConfig
    from lpt_probe.runs import planning
    from lpt_probe.runs.trainer import TrainConfig

    monkeypatch.setattr(planning, "step_seconds", lambda prepared, pc, tc: 1.0)  # no model: counts only
    prepared = SimpleNamespace(backbone=SimpleNamespace(num_hidden_layers=6),
                               encoded={"train": range(10), "dev": range(5), "test": range(5)})
    runs = [(LatePromptConfig(prompt_layer=k), TrainConfig(task="trec", steps=2, eval_every=1)) for k in (3, 6)]
    shared, _ = planning.training_seconds(prepared, runs, 0.5)
    own, _ = planning.training_seconds(prepared, runs, 0.5, shared_cache=False)
    assert shared["cache"] == 20 * 5 * 0.5  # 20 examples through hidden states 1..5, once
    assert own["cache"] == 20 * (2 + 5) * 0.5  # PL 3 and PL 6: their own caches
    assert own["train"] == shared["train"]


@pytest.mark.parametrize("prompt_layer", [1, 3, 4])
def test_an_influence_piece_runs_the_layer_passes_the_plan_counts(prompt_layer):
    """The plan scales the timed influence piece by each piece's layer passes: counted here
    as the layers' forward calls of one batch (forward measures, then the gradient's
    forward), plus the backward through the upper layers the count takes as 2 x above."""
    import torch

    from lpt_probe.analysis.influence.measures import forward_measures, gradient_measures
    from lpt_probe.analysis.plan import influence_layer_passes
    from lpt_probe.model.backbone import Backbone
    from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
    from tiny import random_batch, tiny_model

    bb = Backbone(tiny_model("bert"))
    L = bb.num_hidden_layers
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=prompt_layer), 2, [7, 8]).eval()
    frozen = Backbone(tiny_model("bert"))
    calls = []
    for layers in (bb.layers, frozen.layers):
        for layer in layers:
            layer.register_forward_hook(lambda *a: calls.append(1))
    ids, mask = random_batch()
    batch = {"input_ids": ids, "attention_mask": mask, "pred_positions": torch.tensor([1, 2, 1]),
             "labels": torch.tensor([0, 1, 0])}
    with torch.no_grad():
        _, low = forward_measures(model, frozen, batch)
    gradient_measures(model, low, batch)
    above = L - prompt_layer + 1
    assert len(calls) + 2 * above == influence_layer_passes(L, prompt_layer)


def test_layer_seconds_times_batches_of_similar_lengths_across_the_data():
    """Runs batch examples sorted by length (``Encoded.batches``), so the timed batches are
    rows consecutive in length order, at the quartiles of the lengths: not the first rows,
    padded to their longest (RTE's extract phase was planned at 1.6x its measured time that
    way)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 300, size=500)
    batches = timing_batches(lengths, batch_size=16)
    assert len(batches) == 2 and all(len(b) == 16 for b in batches)
    order = list(np.argsort(lengths, kind="stable"))
    for b, q in zip(batches, (0.25, 0.75)):
        at = [order.index(i) for i in b]
        assert at == list(range(at[0], at[0] + 16))  # consecutive in length order
        assert abs(np.median(lengths[b]) - np.quantile(lengths, q)) < 10
        assert lengths[b].max() - lengths[b].min() < 20  # little padding, unlike rows 0..15
    assert lengths[:16].max() - lengths[:16].min() > 100
    assert timing_batches([5, 3, 9], batch_size=16) == [[1, 0, 2], [1, 0, 2]]  # fewer rows than a batch: all
