"""Issue 36's speed defaults on tiny random models: length-bucketed training batches by
default (seeded, keyed: a run trained before under the old order is never taken for a
bucketed one), evaluation in length-sorted batches with every prediction in the split's own
order, and the frozen passes under ``torch.inference_mode`` (the lower-layer cache still
feeds training)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
import pytest
import torch
from test_adapters import tiny_bundle, toy_task  # noqa: F401 (fixture)
from test_late_prompt import WORDS, synthetic
from tiny import tiny_model

from lpt_probe.analysis.engine.representations import extract_many
from lpt_probe.commands.cli import add_config_args, config_from_args
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.cache import LowerLayerCache
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.runs.folders import key_material
from lpt_probe.runs.run import train
from lpt_probe.runs.trainer import TrainConfig, Trainer
from lpt_probe.store import content_key


def test_training_buckets_by_default_and_the_flags_give_either_order():
    assert TrainConfig().bucket is True
    p = argparse.ArgumentParser()
    add_config_args(p, TrainConfig)
    assert config_from_args(TrainConfig, p.parse_args([])).bucket is True
    assert config_from_args(TrainConfig, p.parse_args(["--bucket"])).bucket is True
    assert config_from_args(TrainConfig, p.parse_args(["--no-bucket"])).bucket is False
    with pytest.raises(SystemExit):
        p.parse_args(["--bucket", "--no-bucket"])


def test_bucketed_batches_are_seeded_and_pad_less():
    data = synthetic(160, seed=4, max_len=40)
    model = LatePromptModel(Backbone(tiny_model("bert")), LatePromptConfig(prompt_layer=2), 3, WORDS)

    def order(**kw):
        return Trainer(model, TrainConfig(batch_size=8, steps=40, **kw)).batch_order(data, 40)

    bucketed, again, other_seed, plain = order(seed=3), order(seed=3), order(seed=4), order(seed=3, bucket=False)
    assert bucketed == again and bucketed != other_seed  # reproducible under the seed, and it depends on it
    for batches in (bucketed, plain):  # each epoch (20 batches) still holds every example once
        assert sorted(i for b in batches[:20] for i in b) == list(range(160))

    def padded(batches):  # positions computed / real positions
        return sum(len(b) * max(len(data.input_ids[i]) for i in b) for b in batches) / sum(
            data.num_tokens(b) for b in batches)

    assert padded(bucketed) < 1.1 < padded(plain)


def test_no_bucket_gives_the_key_a_run_had_before_bucketing_became_the_default():
    """The key 0.2.0 gave a run with these settings (computed by the code of that release):
    ``--no-bucket`` keeps it, the new default does not."""
    def key(**kw):
        train = asdict(TrainConfig(task="rte", device="cpu", shots=100, **kw))
        return content_key(key_material({"prompt_layer": 3}, train, {}, None, {}, {}))

    assert key(bucket=False) == "290af892a4c9735f5f631c7bca44d0f84313d50126981a102c80819bcf9f0629"
    assert key() != key(bucket=False)


def test_a_run_of_the_old_order_keeps_its_key_and_is_not_reused_as_a_bucketed_one(tiny_bundle, tmp_path):  # noqa: F811
    kw = dict(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10, batch_size=8, steps=4,
              eval_every=2)
    old = TrainConfig(**kw, bucket=False)
    pc = LatePromptConfig(prompt_layer=3)
    first = train(pc, old, tmp_path / "run", bundle=tiny_bundle, progress=False)
    assert not first.reused
    assert train(pc, old, tmp_path / "run", bundle=tiny_bundle, progress=False).reused
    new = train(pc, TrainConfig(**kw), tmp_path / "run", bundle=tiny_bundle, progress=False)
    assert not new.reused and new.key != first.key  # retrained: an unbucketed run never stands in


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_length_sorted_evaluation_gives_every_example_its_own_prediction(family):
    """Evaluation runs batches sorted by length (padding differs from any other batching);
    its logits, in the split's order, equal each example run alone, without padding."""
    data = synthetic(50, seed=2, causal=family == "llama", max_len=30)
    assert list(data.batches(16))[0] != list(range(16))  # the batches really are reordered
    torch.manual_seed(1)
    lpt = LatePromptModel(Backbone(tiny_model(family)), LatePromptConfig(prompt_layer=2, generator="npg"), 3, WORDS)
    ev = Trainer(lpt, TrainConfig(eval_batch_size=16)).evaluate(data)
    with torch.no_grad():
        alone = torch.cat([lpt.eval()(**{k: v for k, v in data.collate([i]).items()
                                         if k in ("input_ids", "attention_mask", "pred_positions")})["logits"]
                           for i in range(len(data))])
    torch.testing.assert_close(ev["logits"], alone, atol=1e-5, rtol=1e-4)
    assert np.array_equal(ev["preds"], alone.argmax(-1).numpy())


def test_the_cache_and_extraction_run_without_autograd_and_the_cache_still_trains():
    data = synthetic(40)
    bb = Backbone(tiny_model("roberta"))
    cache = LowerLayerCache.build(bb, data, [1], progress=False)
    assert cache.states[1][0].is_inference()  # built under inference_mode
    batch = cache.batch(1, [0, 1, 2])
    assert not batch.is_inference()  # training reads ordinary tensors
    torch.manual_seed(3)
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2), 3, WORDS)
    trainer = Trainer(lpt, TrainConfig(steps=2, eval_every=1, batch_size=8))
    opt, sched = trainer.optimizer(2)
    before = lpt.generator.prompt.detach().clone()
    trainer.step(opt, sched, data, list(range(8)), cache)
    assert lpt.generator.prompt.grad is not None and not torch.equal(lpt.generator.prompt.detach(), before)
    reps = extract_many(bb, {"frozen": None, "lpt": lpt}, data, progress=False)
    assert np.isfinite(reps["lpt"]["mask"]).all()
    # an evaluation (inference_mode) in the middle of training leaves the model trainable
    trainer.evaluate(data, cache)
    trainer.step(opt, sched, data, list(range(8, 16)), cache)
    assert lpt.generator.prompt.grad.abs().sum() > 0
