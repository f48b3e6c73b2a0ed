"""What the benchmarks stand on (issue 14), checked without timing anything:

- the bare loop (``lpt_probe.runs.bare``) computes the gradient ``Trainer.step`` computes
  on the same batch, before clipping and the update (to 1e-6), from the cache or not;
- a sweep trains cells that are the same model once: prompt tuning and LPT at prompt
  layer 1 without a generator share one run folder (``same_model``);
- a cell trained from the lower-layer cache while the sweep releases the cached layers and
  the layer weights it no longer needs gives the metrics of the same cell trained with
  nothing released.

Tiny random models: the five-family ones of ``tiny.py``, and a tiny BERT over the
embedded MiniLM's tokenizer (``test_adapters.tiny_bundle``) for the sweeps.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import test_adapters
import torch
from test_adapters import toy_task
from test_late_prompt import WORDS, synthetic
from tiny import tiny_model

from lpt_probe.model.backbone import Backbone
from lpt_probe.model.cache import LowerLayerCache
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.runs.bare import bare_batches, bare_gradients, time_bare
from lpt_probe.runs.trainer import TrainConfig, Trainer

tiny_bundle = test_adapters.tiny_bundle  # the module-scoped fixture: a tiny BERT over MiniLM's tokenizer

# -- (a) the bare loop's gradient is the trainer's ------------------------------------------------
def trainer_gradients(trainer: Trainer, data, idx, cache, monkeypatch) -> dict[str, torch.Tensor]:
    """The gradients ``Trainer.step`` holds when it clips (before clipping and the update)."""
    seen = {}
    real = torch.nn.utils.clip_grad_norm_

    def recording(params, *a, **kw):
        seen.update({n: p.grad.detach().clone() for n, p in trainer.model.trainable_named_parameters()})
        return real(params, *a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    opt, sched = trainer.optimizer(10)
    trainer.step(opt, sched, data, idx, cache, 0)
    assert seen, "Trainer.step did not clip (grad_clip > 0 expected)"
    return seen


CASES = [("bert", "lpt", 3, "none"), ("bert", "lpt", 3, "npg"), ("llama", "lpt", 2, "mppg"),
         ("roberta", "prompt-tuning", 1, "none"), ("bert", "s-idpg", 1, "none")]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("family,method,pl,generator", CASES)
def test_bare_gradient_equals_the_trainer_step(family, method, pl, generator, cached, monkeypatch):
    bb = Backbone(tiny_model(family))
    options = {"phm_n": 4} if method == "s-idpg" else {}
    torch.manual_seed(3)
    model = LatePromptModel(bb, LatePromptConfig(method=method, prompt_layer=pl, generator=generator, **options),
                            3, WORDS)
    data = synthetic(40, causal=bb.is_causal)
    trainer = Trainer(model, TrainConfig(batch_size=8, seed=5, cache=cached))
    plan = trainer.batch_order(data, 2)
    cache = LowerLayerCache.build(bb, data, [model.config.start_state], progress=False) if cached else None
    batches = bare_batches(model, data, plan, cache)
    assert len({b.h_low.shape[1] for b in batches}) >= 1 and batches[0].tokens == data.num_tokens(plan[0])
    model.train()  # as fit trains: dropout of generators is on, in both loops alike
    torch.manual_seed(11)
    bare = bare_gradients(model, batches[0])
    assert all(p.grad is None for _, p in model.trainable_named_parameters())  # nothing accumulated
    torch.manual_seed(11)
    step = trainer_gradients(trainer, data, plan[0], cache, monkeypatch)
    assert set(bare) == set(step) and len(bare) >= 1
    for name in bare:
        assert bare[name].abs().max() > 0, f"{name}: zero gradient, the comparison would prove nothing"
        torch.testing.assert_close(bare[name], step[name], atol=1e-6, rtol=0, msg=name)
    # the other batch gives another gradient: equality above is about this batch
    other = bare_gradients(model.eval(), batches[1])
    assert any(not torch.allclose(other[n], bare[n], atol=1e-6) for n in bare)


def test_bare_gradient_equals_a_step_split_in_micro_batches(monkeypatch):
    """grad_accum splits the batch; the step's gradient is still the full batch's."""
    bb = Backbone(tiny_model("bert"))
    torch.manual_seed(3)
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=3, generator="none"), 3, WORDS).train()
    data = synthetic(40)
    trainer = Trainer(model, TrainConfig(batch_size=8, seed=5, grad_accum=3))
    idx = trainer.batch_order(data, 1)[0]
    cache = LowerLayerCache.build(bb, data, [2], progress=False)
    bare = bare_gradients(model, bare_batches(model, data, [idx], cache)[0])
    step = trainer_gradients(trainer, data, idx, cache, monkeypatch)
    for name in bare:
        torch.testing.assert_close(bare[name], step[name], atol=1e-6, rtol=0, msg=name)


def test_time_bare_counts_the_timed_batches_and_refuses_what_it_cannot_time():
    bb = Backbone(tiny_model("bert"))
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=2), 3, WORDS)
    data = synthetic(24)
    plan = Trainer(model, TrainConfig(batch_size=8)).batch_order(data, 3)
    batches = bare_batches(model, data, plan)
    t = time_bare(model, batches, warmup=1)
    assert t["tokens"] == data.num_tokens(plan[1]) + data.num_tokens(plan[2]) and t["seconds"] > 0
    with pytest.raises(ValueError, match="leaves none"):
        time_bare(model, batches, warmup=3)
    lora = LatePromptModel(bb, LatePromptConfig(method="lora"), 3, WORDS)
    with pytest.raises(ValueError, match="the bare loop times a late prompt"):
        bare_batches(lora, data, plan)


# -- (b), (c) sweeps on a tiny BERT -----------------------------------------------------------------
def tiny_sweep(tmp_path, bundle, methods, layers, seeds=(13,), out="sweep", release_weights=None):
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.sweep import SweepConfig, run_sweep

    base = TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10, steps=3,
                       eval_every=1, batch_size=8)
    prepared = prepare(base, bundle)
    sweep = SweepConfig(methods=methods, prompt_layers=layers, generators=("none",), seeds=seeds,
                        out=str(tmp_path / out), progress=False)
    return run_sweep(sweep, base, prepared=prepared, release_weights=release_weights), base, prepared


def test_prompt_tuning_and_lpt_at_layer_1_share_one_run(tiny_bundle, tmp_path, monkeypatch):
    from lpt_probe.runs import executors

    trained = []
    real = executors.execute_cell

    def counting(pc, tc, run_dir, *a, **kw):
        trained.append(str(run_dir))
        return real(pc, tc, run_dir, *a, **kw)

    monkeypatch.setattr(executors, "execute_cell", counting)
    table, _, _ = tiny_sweep(tmp_path, tiny_bundle, ("prompt-tuning", "lpt"), "1", seeds=(13, 21))
    assert len(table) == 4 and (table.status == "complete").all()
    assert len(trained) == 2  # one run per seed, not two
    runs = sorted(p.name for p in (tmp_path / "sweep" / "runs").iterdir())
    assert runs == ["none-pl1-s13", "none-pl1-s21"]  # led by the lpt cell: its folder name
    for seed in (13, 21):
        rows = table[table.seed == seed]
        assert set(rows.method) == {"prompt-tuning", "lpt"}
        assert rows.run_dir.nunique() == 1 and rows.run_dir.iloc[0] == f"runs/none-pl1-s{seed}"
        assert rows.test_metric.nunique() == 1 and rows.dev_metric.nunique() == 1
    # sweep.csv names the shared folder on both rows; a rerun collects it, trains nothing
    csv = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(csv.run_dir) == list(table.run_dir)
    trained.clear()
    again, _, _ = tiny_sweep(tmp_path, tiny_bundle, ("prompt-tuning", "lpt"), "1", seeds=(13, 21))
    assert trained == [] and list(again.test_metric) == list(table.test_metric)


def test_a_sweep_with_another_prompt_length_does_not_share(tiny_bundle, tmp_path):
    """Only the same model shares: prompt tuning with NPG's prompt length is not PT's twin
    (the keys differ), so a grid of lpt npg at PL 1 and prompt tuning trains both."""
    from lpt_probe.runs.sweep import Cell, SweepConfig, cell_configs, same_model

    sweep = SweepConfig(methods=("prompt-tuning", "lpt"), generators=("none", "npg"))
    cells = [Cell("prompt-tuning", "none", 1, 13), Cell("lpt", "none", 1, 13), Cell("lpt", "npg", 1, 13),
             Cell("lpt", "none", 2, 13)]
    leaders = same_model({c: cell_configs(sweep, c, TrainConfig(), 4) for c in cells})
    assert leaders[cells[0]] is cells[1] and leaders[cells[1]] is cells[1]
    assert leaders[cells[2]] is cells[2] and leaders[cells[3]] is cells[3]


def test_cells_trained_while_the_sweep_releases_cache_layers_equal_unreleased(tiny_bundle, tmp_path, monkeypatch):
    from lpt_probe.model import cache as cache_mod
    from lpt_probe.runs import executors
    from lpt_probe.runs.run import train
    from lpt_probe.runs.sweep import Cell, SweepConfig, cell_configs

    built = []  # the sweep's full caches (one per split), to watch what it releases
    real_build = cache_mod.LowerLayerCache.build.__func__

    def keeping(cls, *a, **kw):
        built.append(real_build(cls, *a, **kw))
        return built[-1]

    monkeypatch.setattr(cache_mod.LowerLayerCache, "build", classmethod(keeping))
    seen = {}
    real_cell = executors.execute_cell

    def watching(pc, tc, run_dir, prepared, caches, progress):
        seen[str(run_dir).rsplit("/", 1)[-1]] = {
            "given": sorted({k for c in caches.values() for k in c.layers}),
            "still_held": sorted({k for c in built for k in c.layers}),
            "weights_released": prepared.backbone.released_layers}
        return real_cell(pc, tc, run_dir, prepared, caches, progress)

    monkeypatch.setattr(executors, "execute_cell", watching)
    own = (copy.deepcopy(tiny_bundle[0]), *tiny_bundle[1:])  # its weights get released: not the shared fixture
    table, base, prepared = tiny_sweep(tmp_path, own, ("lpt",), "2,3,4", release_weights=True)
    monkeypatch.undo()
    assert (table.status == "complete").all() and len(table) == 3
    # each cell got its own layer only, and the layers of finished cells were released
    # (and the weights of the layers below each cell's prompt layer: PL 4 runs layers 4.. only)
    assert seen == {"none-pl2-s13": {"given": [1], "still_held": [1, 2, 3], "weights_released": 1},
                    "none-pl3-s13": {"given": [2], "still_held": [2, 3], "weights_released": 2},
                    "none-pl4-s13": {"given": [3], "still_held": [3], "weights_released": 3}}
    assert all(c.layers == [] for c in built)  # all released at the end
    with pytest.raises(RuntimeError, match="layer 0 of this model was released"):
        LowerLayerCache.build(prepared.backbone, prepared.encoded["train"], [1], progress=False)
    # the same cells trained again on the whole model, from one full cache that is never released
    from lpt_probe.runs.run import prepare

    prepared = prepare(base, tiny_bundle)
    prepared.backbone.model.eval()
    full = {s: LowerLayerCache.build(prepared.backbone, prepared.encoded[s], [1, 2, 3], progress=False)
            for s in prepared.encoded}
    sweep = SweepConfig(methods=("lpt",), progress=False)
    for pl in (2, 3, 4):
        pc, tc = cell_configs(sweep, Cell("lpt", "none", pl, 13), base, prepared.backbone.num_hidden_layers)
        res = train(pc, tc, tmp_path / f"unreleased-{pl}", prepared=prepared, caches=full, progress=False)
        assert res.metrics["cache"] is True
        got = json.loads((tmp_path / "sweep" / "runs" / f"none-pl{pl}-s13" / "metrics.json").read_text())
        for key in ("dev_metric", "test_metric", "best_step", "tunable_params"):
            assert got[key] == res.metrics[key], (pl, key)
        curve = pd.read_csv(tmp_path / "sweep" / "runs" / f"none-pl{pl}-s13" / "curve.csv")
        np.testing.assert_allclose(curve.train_loss, res.curve.train_loss, rtol=0, atol=1e-7)
        np.testing.assert_allclose(curve.dev_loss, res.curve.dev_loss, rtol=0, atol=1e-7)
    assert all(c.layers == [1, 2, 3] for c in full.values())
