"""Training until the prompt has learned (``--patience``), the per-example outputs a run
keeps for the Section 4 verdicts, and the prompt initialised from hidden states
(``prompt_init="states"``), on a tiny random BERT over a toy task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_adapters import tiny_bundle, toy_task  # noqa: F401 (fixture)

from lpt_probe.model.late_prompt import LatePromptConfig
from lpt_probe.runs.folders import check_run, key_material
from lpt_probe.runs.run import initial_model, prepare, states_init, train
from lpt_probe.runs.trainer import TrainConfig


def config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10,
                       batch_size=8, **{"steps": 30, "eval_every": 2, **kw})


def test_patience_stops_when_dev_stops_improving_and_keeps_the_best(tiny_bundle, tmp_path):  # noqa: F811
    tc = config(tmp_path, patience=2, lr=1e-6)  # a learning rate too small to move dev: it stops early
    res = train(LatePromptConfig(prompt_layer=3), tc, tmp_path / "run", bundle=tiny_bundle, progress=False)
    m = res.metrics
    assert m["early_stopped"] and m["stopped_step"] < 30 and m["steps"] == 30
    assert m["stopped_step"] - m["best_step"] == 2 * tc.eval_every  # two evaluations without improvement
    assert list(res.curve["step"]) == list(range(2, m["stopped_step"] + 1, 2))
    full = train(LatePromptConfig(prompt_layer=3), config(tmp_path, lr=1e-6), tmp_path / "full", bundle=tiny_bundle,
                 progress=False)
    assert not full.metrics["early_stopped"] and full.metrics["stopped_step"] == 30


def test_a_run_keeps_per_example_test_predictions_and_dev_correctness(tiny_bundle, tmp_path):  # noqa: F811
    tc = config(tmp_path, steps=6)
    res = train(LatePromptConfig(prompt_layer=3), tc, tmp_path / "run", bundle=tiny_bundle, progress=False)
    pred = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    assert list(pred["example"]) == list(range(len(pred)))
    assert (pred["label"] == pred["pred"]).mean() == pytest.approx(res.metrics["test_accuracy"])
    with np.load(tmp_path / "run" / "dev_correct.npz") as z:
        assert list(z["step"]) == [2, 4, 6] and z["correct"].shape == (3, 10)
        assert z["correct"][list(z["step"]).index(res.metrics["best_step"])].mean() == pytest.approx(
            res.metrics["dev_accuracy"])
    assert check_run(tmp_path / "run", res.key)[0]
    (tmp_path / "run" / "test_predictions.csv").write_text("example,label,pred\n0,0,0\n")  # tampered
    assert not check_run(tmp_path / "run", res.key)[0]


def test_unset_new_options_leave_run_keys_as_they_were():
    train = {"steps": 10, "patience": None}
    assert "patience" not in key_material({}, train, {}, None, {}, {})["train"]
    assert key_material({}, {**train, "patience": 3}, {}, None, {}, {})["train"]["patience"] == 3
    assert "prompt_init" not in LatePromptConfig().to_dict()
    assert LatePromptConfig(prompt_init="states").to_dict()["prompt_init"] == "states"


def test_states_init_starts_the_prompt_at_the_scale_of_the_states_it_joins(tiny_bundle, tmp_path):  # noqa: F811
    tc = config(tmp_path)
    prepared = prepare(tc, tiny_bundle)
    pc = LatePromptConfig(prompt_layer=3, prompt_init="states", num_virtual_tokens=4)
    model = initial_model(pc, 13, prepared, "cpu", copy_backbone=False)
    prompt = model.generator.prompt.detach()
    again = states_init(prepared.backbone, prepared.encoded["train"], pc.start_state, 4, 13, "cpu")
    assert torch.equal(prompt, again)  # seeded: influence's "init" rebuilds exactly this prompt
    normal = initial_model(LatePromptConfig(prompt_layer=3, num_virtual_tokens=4), 13, prepared, "cpu",
                           copy_backbone=False).generator.prompt.detach()
    h = prepared.backbone.embed(*[prepared.encoded["train"].collate([0])[k] for k in ("input_ids", "attention_mask")])
    h = prepared.backbone.run_layers(h, prepared.encoded["train"].collate([0])["attention_mask"], 0, pc.start_state)
    scale = h[0].norm(dim=-1).mean()
    assert abs(prompt.norm(dim=-1).mean() - scale) < 0.5 * scale  # the states' scale, not N(0, 1)'s
    assert not torch.allclose(prompt, normal)
    with pytest.raises(ValueError, match="prompt_init='states'"):
        LatePromptConfig(prompt_layer=3, generator="npg", prompt_init="states")


def test_states_init_reads_the_lower_layer_cache_when_the_layers_are_gone(tiny_bundle, tmp_path):  # noqa: F811
    """A sweep releases the lower layers' weights once their cache is built: the initial
    prompt then comes from the cache, and equals the one the layers give."""
    from lpt_probe.model.cache import LowerLayerCache

    prepared = prepare(config(tmp_path), tiny_bundle)
    train_split = prepared.encoded["train"]
    cache = LowerLayerCache.build(prepared.backbone, train_split, [2], 16, progress=False)
    direct = states_init(prepared.backbone, train_split, 2, 4, 13, "cpu")
    cached = states_init(None, train_split, 2, 4, 13, "cpu", cache)  # no backbone at all: the cache alone
    assert torch.allclose(direct, cached, atol=1e-5)
