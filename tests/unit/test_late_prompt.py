"""Late-prompt invariants on tiny random models of all five families."""

import hashlib

import numpy as np
import pytest
import torch
from tiny import FAMILIES, random_batch, tiny_model

from lpt_probe.data.encoded import Encoded
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.cache import LowerLayerCache
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.model.prompt_weights import load_prompt_weights, save_prompt
from lpt_probe.runs.trainer import TrainConfig, Trainer

WORDS = [20, 21, 22]


def state_hash(module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def synthetic(n=96, seed=0, causal=False, max_len=11) -> Encoded:
    """Label = which of tokens 10/11/12 follows the [MASK] (id 4) at position 1; decoders
    read the last token, with the marker at a random place."""
    rng = np.random.RandomState(seed)
    ids, pos, labels = [], [], []
    for i in range(n):
        y = i % 3
        length = rng.randint(4, max_len)
        seq = list(rng.randint(30, 100, size=length))
        if causal:
            seq[rng.randint(0, length)] = 10 + y
            pos.append(length - 1)
        else:
            seq[0], seq[1], seq[2] = 2, 4, 10 + y  # [CLS] [MASK] marker ...
            pos.append(1)
        ids.append([int(t) for t in seq])
        labels.append(y)
    return Encoded(ids, pos, labels, pad_id=1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pl", [1, 3])
def test_states_below_pl_equal_frozen_model(family, pl):
    model = tiny_model(family)
    bb = Backbone(model)
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=pl, generator="npg"), 3, WORDS).eval()
    ids, mask = random_batch()
    seen = {}  # input of each layer (0-based index i): hidden state i as the layer sees it
    hooks = [layer.register_forward_pre_hook(lambda m, a, kw, i=i: seen.__setitem__(i, a[0] if a else kw["hidden_states"]),
                                             with_kwargs=True)
             for i, layer in enumerate(bb.layers)]
    with torch.no_grad():
        ref = bb.hidden_states(ids, mask)
        out = lpt(ids, mask, torch.zeros(3, dtype=torch.long), return_states=True)
    for h in hooks:
        h.remove()
    keep = mask.bool()
    for i in range(pl - 1):  # layers below PL see no prompt: same inputs as in the frozen model
        assert seen[i].shape == ids.shape + (32,)
        assert torch.allclose(seen[i][keep], ref[i][keep], atol=1e-6)
    # layer PL gets hidden state PL-1 with the prompt in front
    assert seen[pl - 1].shape[1] == ids.shape[1] + lpt.l
    assert torch.allclose(seen[pl - 1][:, lpt.l:][keep], ref[pl - 1][keep], atol=1e-6)
    l = lpt.l
    upper = out["upper_states"]
    assert len(upper) == bb.num_hidden_layers - pl + 1
    assert upper[0].shape[1] == ids.shape[1] + l  # prompt prepended above PL
    # the prompt changes what the text computes above PL
    assert not torch.allclose(upper[-1][:, l:][keep], bb.run_layers(ref[pl - 1], mask, pl - 1)[keep], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_tuning_with_empty_prompt_equals_plain_model(family):
    model = tiny_model(family)
    bb = Backbone(model)
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=1, generator="none", num_virtual_tokens=0), 3, WORDS).eval()
    ids, mask = random_batch()
    pos = (mask.sum(1) - 1) if bb.is_causal else torch.tensor([1, 2, 3])
    with torch.no_grad():
        out = lpt(ids, mask, pos)
        ref = model(input_ids=ids, attention_mask=mask).logits[torch.arange(3), pos]
    assert torch.allclose(out["vocab_logits"], ref, atol=1e-4)
    assert torch.allclose(out["logits"], ref[:, WORDS], atol=1e-4)


@pytest.mark.parametrize("family", ["roberta", "llama"])
@pytest.mark.parametrize("generator", ["none", "appg"])
def test_cached_training_equals_uncached(family, generator):
    data = synthetic(48, causal=family == "llama")
    curves = []
    for cache in (True, False):
        model = tiny_model(family)
        bb = Backbone(model)
        torch.manual_seed(5)
        lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=3, generator=generator), 3, WORDS)
        cfg = TrainConfig(steps=12, eval_every=4, batch_size=8, seed=5, cache=cache)
        caches = ({s: LowerLayerCache.build(bb, data, [2]) for s in ("train", "dev")} if cache else {})
        curve, _ = Trainer(lpt, cfg).fit(data, data, caches, progress=False)
        curves.append(curve)
    for col in ("train_loss", "dev_loss", "dev_metric"):
        np.testing.assert_allclose(curves[0][col], curves[1][col], atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_only_prompt_parameters_train_and_backbone_is_unchanged(family):
    model = tiny_model(family)
    before = state_hash(model)
    bb = Backbone(model)
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, generator="mppg"), 3, WORDS)
    trainable = {n for n, p in lpt.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("generator.") for n in trainable)
    data = synthetic(32, causal=bb.is_causal)
    Trainer(lpt, TrainConfig(steps=5, eval_every=5, batch_size=8, cache=False)).fit(data, data, progress=False)
    assert state_hash(model) == before
    assert not model.training  # backbone stays in eval mode (no dropout) by default


def test_classifier_head_is_trainable_and_counted():
    bb = Backbone(tiny_model("bert", head=False))
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, generator="none", num_virtual_tokens=4), 3)
    assert lpt.head_kind == "classifier"
    assert lpt.num_trainable() == 4 * 32 + 32 * 3 + 3


def test_learning_happens_on_a_separable_task():
    torch.manual_seed(0)
    # A frozen random BERT (init std 0.2 so signals do not wash out in 4 random layers) with
    # its MLM head: only the generated prompt trains, and it must steer the head.
    bb = Backbone(tiny_model("bert", dropout=0.0, init=0.2))
    cfg = LatePromptConfig(prompt_layer=2, generator="npg", generator_dropout=0.0, loss="label_words")
    lpt = LatePromptModel(bb, cfg, 3, WORDS)
    train, test = synthetic(240, seed=1, max_len=7), synthetic(120, seed=2, max_len=7)
    trainer = Trainer(lpt, TrainConfig(steps=300, eval_every=100, batch_size=16, lr=1e-2, seed=0))
    before = trainer.evaluate(test)["accuracy"]
    trainer.fit(train, test, progress=False)
    after = trainer.evaluate(test)["accuracy"]
    assert after >= 0.95 and after > before + 0.3


def test_save_reload_predicts_identically(tmp_path):
    bb = Backbone(tiny_model("roberta"))
    cfg = LatePromptConfig(prompt_layer=3, generator="appg")
    lpt = LatePromptModel(bb, cfg, 3, WORDS)
    data = synthetic(24)
    Trainer(lpt, TrainConfig(steps=3, eval_every=3, batch_size=8)).fit(data, data, progress=False)
    save_prompt(lpt, tmp_path)
    torch.manual_seed(123)
    fresh = LatePromptModel(bb, cfg, 3, WORDS)
    load_prompt_weights(fresh, tmp_path / "prompt.safetensors")
    b = data.collate(list(range(8)))
    lpt.eval(), fresh.eval()
    with torch.no_grad():
        a = lpt(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
        c = fresh(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
    assert torch.equal(a, c)
    wrong = LatePromptModel(bb, LatePromptConfig(prompt_layer=3, generator="npg"), 3, WORDS)
    with pytest.raises(ValueError, match="do not fit"):
        load_prompt_weights(wrong, tmp_path / "prompt.safetensors")


def test_causal_text_attends_to_prompt_before_it():
    bb = Backbone(tiny_model("llama"))
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, generator="none", num_virtual_tokens=3), 3, WORDS).eval()
    ids, mask = random_batch()
    pos = mask.sum(1) - 1
    with torch.no_grad():
        a = lpt(ids, mask, pos)["logits"]
        lpt.generator.prompt.mul_(2.0)
        b = lpt(ids, mask, pos)["logits"]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("kw,match", [
    (dict(prompt_layer=5), "out of range.*num_hidden_layers=4"),
    (dict(prompt_layer=0), "1-based"),
    (dict(generator="lstm"), "choose one of none, npg, appg, mppg"),
    (dict(head="lm"), "no LM/MLM head"),
    (dict(num_virtual_tokens=0, generator="npg"), ">= 1"),
])
def test_bad_prompt_configs_say_what_to_do(kw, match):
    with pytest.raises(ValueError, match=match):
        cfg = LatePromptConfig(**kw)
        LatePromptModel(Backbone(tiny_model("bert", head=False)), cfg, 3)


def test_nan_loss_stops_training_with_the_step():
    from lpt_probe.runs.trainer import TrainingDiverged

    bb = Backbone(tiny_model("bert", head=False))
    lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, num_virtual_tokens=2), 3)
    with torch.no_grad():
        lpt.classifier.weight.fill_(float("nan"))
    data = synthetic(16)
    with pytest.raises(TrainingDiverged, match="step 1"):
        Trainer(lpt, TrainConfig(steps=3, eval_every=3, batch_size=8)).fit(data, data, progress=False)


def test_same_seed_reproduces_the_same_numbers():
    curves = []
    for _ in range(2):
        bb = Backbone(tiny_model("roberta"))
        torch.manual_seed(7)
        lpt = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, generator="npg"), 3, WORDS)
        data = synthetic(40, seed=3)
        curve, _ = Trainer(lpt, TrainConfig(steps=8, eval_every=4, batch_size=8, seed=7)).fit(data, data, progress=False)
        curves.append(curve)
    np.testing.assert_array_equal(curves[0][["train_loss", "dev_loss"]].values, curves[1][["train_loss", "dev_loss"]].values)


def test_prompt_layer_defaults_to_the_middle_layer_once_the_model_is_known():
    """``LatePromptConfig()`` puts a late prompt at the middle layer L//2+1, as the commands
    do (issue 33); baselines without a prompt layer stay at 1; a start state asked for
    before the model is known is a clear error naming the field."""
    from lpt_probe.layers import middle_prompt_layer

    cfg = LatePromptConfig()
    assert cfg.prompt_layer is None
    with pytest.raises(ValueError, match="prompt_layer=None"):
        cfg.start_state  # noqa: B018
    bb = Backbone(tiny_model("bert"))
    model = LatePromptModel(bb, cfg, 3, WORDS)
    L = bb.num_hidden_layers
    assert cfg.prompt_layer == model.config.prompt_layer == middle_prompt_layer(L) > 1
    assert LatePromptConfig(prompt_layer=2).resolve(L).prompt_layer == 2  # a given layer is kept
    assert LatePromptConfig(method="prompt-tuning").prompt_layer == 1
    assert LatePromptConfig(method="lora").prompt_layer == 1
    with pytest.raises(ValueError, match="prompt_layer='3'"):
        LatePromptConfig(prompt_layer="3")
