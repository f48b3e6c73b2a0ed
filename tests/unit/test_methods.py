"""Baselines in the same harness (lpt_probe.methods), mixed precision and gradient
accumulation, on tiny random models."""

import hashlib

import numpy as np
import pytest
import torch
from test_late_prompt import WORDS, synthetic
from tiny import FAMILIES, random_batch, tiny_model

from lpt_probe.model.backbone import Backbone
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.model.prompt_weights import load_prompt_weights, save_prompt
from lpt_probe.model.methods import METHODS
from lpt_probe.runs.trainer import TrainConfig, Trainer

BASELINES = ["prompt-tuning", "model-tuning", "bitfit", "lora", "p-tuning-v2", "prefix-tuning", "adapter",
             "adapterdrop", "s-idpg"]


def supported(method: str, family: str) -> bool:
    if method in ("p-tuning-v2", "prefix-tuning") and family == "deberta-v2":
        return False  # peft's prefix tuning has no DeBERTa-v2 support (tested below)
    return not (method == "bitfit" and family == "llama")  # Llama has no biases (tested below)


def tensor_hashes(named) -> dict[str, str]:
    return {n: hashlib.sha256(p.detach().float().cpu().numpy().tobytes()).hexdigest() for n, p in named}


def expected_trainable(method: str, name: str) -> bool:
    """Which parameter names each method may train (the classifier head excepted)."""
    if method == "model-tuning":
        return name.startswith("backbone.")
    if method == "bitfit":
        return name.startswith("backbone.") and name.endswith("bias")
    if method == "lora":
        return "lora_A" in name or "lora_B" in name
    if method in ("p-tuning-v2", "prefix-tuning"):
        return name.startswith("prefix_model.prompt_encoder.")
    if method in ("adapter", "adapterdrop"):
        return name.startswith("backbone.") and ".adapter." in name
    return name.startswith("generator.")  # lpt, prompt-tuning, s-idpg (its PHM generator)


def test_every_method_is_in_the_table():
    assert set(BASELINES) | {"lpt"} == set(METHODS)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", BASELINES)
def test_each_method_trains_exactly_its_parameters(method, family):
    if not supported(method, family):
        pytest.skip("unsupported pair (its error is tested below)")
    bb = Backbone(tiny_model(family))
    caller = tensor_hashes(bb.model.state_dict().items())
    torch.manual_seed(0)
    model = LatePromptModel(bb, LatePromptConfig(method=method), 3, WORDS)
    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert trainable and all(expected_trainable(method, n) for n in trainable), sorted(trainable)[:5]
    before = tensor_hashes(model.named_parameters())
    data = synthetic(32, causal=bb.is_causal)
    Trainer(model, TrainConfig(steps=3, eval_every=3, batch_size=8, lr=1e-2, cache=False)).fit(data, data, progress=False)
    after = tensor_hashes(model.named_parameters())
    changed = {n for n in before if before[n] != after[n]}
    assert changed <= trainable  # nothing outside the method's parameters moved
    assert len(changed) >= 0.5 * len(trainable)  # and the method's parameters really train
    if method == "model-tuning":
        assert model.num_trainable() == sum(p.numel() for p in bb.model.parameters())
    assert not model.backbone.model.training  # backbone in eval mode for every method by default
    assert tensor_hashes(bb.model.state_dict().items()) == caller  # the caller's model is untouched


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["model-tuning", "bitfit", "lora", "adapter", "adapterdrop"])
def test_weight_methods_start_from_the_frozen_model(method, family):
    """Before training, model tuning / BitFit / LoRA (B = 0 at init) / adapters (up = 0)
    compute the plain model."""
    if not supported(method, family):
        pytest.skip("unsupported pair")
    model = tiny_model(family)
    ids, mask = random_batch()
    pos = (mask.sum(1) - 1) if model.config.model_type in ("gpt2", "llama") else torch.tensor([1, 2, 3])
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits[torch.arange(3), pos]
        out = LatePromptModel(Backbone(model), LatePromptConfig(method=method), 3, WORDS).eval()(ids, mask, pos)
    assert torch.allclose(out["vocab_logits"], ref, atol=1e-4)


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "llama"])
def test_deep_prompts_reach_every_layer(family):
    """P-tuning v2: the prefix changes the output, and the gradient reaches it."""
    bb = Backbone(tiny_model(family, dropout=0.0))
    model = LatePromptModel(bb, LatePromptConfig(method="p-tuning-v2", num_virtual_tokens=4), 3, WORDS).eval()
    ids, mask = random_batch()
    pos = (mask.sum(1) - 1) if bb.is_causal else torch.tensor([1, 2, 3])
    emb = model.prefix_model.prompt_encoder["default"].embedding.weight  # [l, layers * 2 * hidden]
    assert emb.shape[0] == 4
    out = model(ids, mask, pos)
    out["logits"].sum().backward()
    grad = emb.grad.view(4, bb.num_hidden_layers, 2, -1)  # [l, layer, key/value, hidden]
    assert (grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # every layer's prefix gets a gradient
    with torch.no_grad():
        emb.mul_(3.0)
        assert not torch.allclose(model(ids, mask, pos)["logits"], out["logits"].detach(), atol=1e-4)


@pytest.mark.parametrize("method,cfg_kw", [("lora", dict(lora_rank=2)), ("p-tuning-v2", {}),
                                           ("bitfit", {}), ("prompt-tuning", dict(num_virtual_tokens=3)),
                                           ("adapter", dict(adapter_size=8)), ("adapterdrop", {}),
                                           ("s-idpg", dict(phm_n=4))])
def test_save_reload_predicts_identically_for_baselines(method, cfg_kw, tmp_path):
    data = synthetic(24)
    cfg = LatePromptConfig(method=method, **cfg_kw)
    torch.manual_seed(0)
    model = LatePromptModel(Backbone(tiny_model("roberta")), cfg, 3, WORDS)
    Trainer(model, TrainConfig(steps=3, eval_every=3, batch_size=8, lr=1e-2, cache=False)).fit(data, data, progress=False)
    save_prompt(model, tmp_path)
    torch.manual_seed(99)
    fresh = LatePromptModel(Backbone(tiny_model("roberta")), LatePromptConfig(**cfg.to_dict()), 3, WORDS)
    load_prompt_weights(fresh, tmp_path / "prompt.safetensors")
    b = data.collate(list(range(8)))
    with torch.no_grad():
        a = model.eval()(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
        c = fresh.eval()(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
    assert torch.equal(a, c)


@pytest.mark.parametrize("method", ["model-tuning", "lora", "p-tuning-v2"])
def test_baselines_learn_a_separable_task(method):
    bb = Backbone(tiny_model("bert", dropout=0.0, init=0.2))
    torch.manual_seed(0)
    model = LatePromptModel(bb, LatePromptConfig(method=method, loss="label_words"), 3, WORDS)
    train, test = synthetic(240, seed=1, max_len=7), synthetic(120, seed=2, max_len=7)
    lr = 1e-3 if method == "model-tuning" else 1e-2
    trainer = Trainer(model, TrainConfig(steps=150, eval_every=50, batch_size=16, lr=lr, seed=0, cache=False))
    before = trainer.evaluate(test)["accuracy"]
    trainer.fit(train, test, progress=False)
    assert trainer.evaluate(test)["accuracy"] >= max(0.9, before + 0.3)


@pytest.mark.parametrize("kw,family,match", [
    (dict(method="prompt-tuning", prompt_layer=3), "bert", "prompt_layer=1"),
    (dict(method="prompt-tuning", generator="npg"), "bert", "no prompt generator"),
    (dict(method="lora", generator="npg"), "bert", "no prompt generator"),
    (dict(method="lora", num_virtual_tokens=5), "bert", "inserts no prompt"),
    (dict(method="bitfit", prompt_layer=2), "bert", "no prompt layer"),
    (dict(method="p-tuning-v2", num_virtual_tokens=0), "bert", ">= 1"),
    (dict(method="adapters"), "bert", "choose one of lpt, prompt-tuning"),
    (dict(method="bitfit"), "llama", "no bias terms"),
    (dict(method="p-tuning-v2"), "deberta-v2", "does not support DeBERTa-v2"),
    (dict(method="bitfit", adapter_size=16), "bert", "has no adapter_size"),
    (dict(method="adapterdrop", adapter_layers="2,4"), "bert", "every layer from K up"),
    (dict(method="s-idpg", phm_n=3), "bert", "must divide"),
])
def test_bad_method_configs_say_what_to_do(kw, family, match):
    with pytest.raises(ValueError, match=match):
        LatePromptModel(Backbone(tiny_model(family)), LatePromptConfig(**kw), 3, WORDS)


@pytest.mark.parametrize("method", ["model-tuning", "bitfit"])
def test_low_precision_backbone_refused_for_weight_training(method):
    bb = Backbone(tiny_model("bert").to(torch.bfloat16))
    with pytest.raises(ValueError, match="use --dtype fp32"):
        LatePromptModel(bb, LatePromptConfig(method=method), 3, WORDS)


@pytest.mark.parametrize("method,cache", [("lpt", True), ("lpt", False), ("lora", False), ("p-tuning-v2", False)])
def test_bf16_backbone_with_fp32_trainable_parameters(method, cache):
    from lpt_probe.model.cache import LowerLayerCache

    data = synthetic(32)
    logits = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = tiny_model("roberta", dropout=0.0).to(dtype)
        bb = Backbone(model)
        torch.manual_seed(0)
        cfg = LatePromptConfig(method=method, prompt_layer=3 if method == "lpt" else 1,
                               generator="npg" if method == "lpt" else "none")
        lpt = LatePromptModel(bb, cfg, 3, WORDS)
        assert all(p.dtype == torch.float32 for _, p in lpt.trainable_named_parameters())
        assert lpt.backbone.dtype == dtype
        caches = {s: LowerLayerCache.build(bb, data, [2]) for s in ("train", "dev")} if cache else {}
        trainer = Trainer(lpt, TrainConfig(steps=4, eval_every=4, batch_size=8, cache=cache))
        curve, _ = trainer.fit(data, data, caches, progress=False)
        assert np.isfinite(curve.train_loss).all()
        logits[dtype] = trainer.evaluate(data, caches.get("dev"))["logits"]
    # bf16 keeps about 3 significant digits: the same model, to that precision
    assert torch.allclose(logits[torch.float32], logits[torch.bfloat16], atol=0.15)


@pytest.mark.parametrize("method,generator,cache", [("lpt", "appg", True), ("lpt", "none", False),
                                                    ("model-tuning", "none", False)])
def test_gradient_accumulation_gives_the_same_updates(method, generator, cache):
    from lpt_probe.model.cache import LowerLayerCache

    data = synthetic(48)
    curves = []
    for accum in (1, 3):
        bb = Backbone(tiny_model("roberta"))
        torch.manual_seed(5)
        cfg = LatePromptConfig(method=method, prompt_layer=3 if method == "lpt" else 1, generator=generator,
                               generator_dropout=0.0)
        lpt = LatePromptModel(bb, cfg, 3, WORDS)
        caches = {s: LowerLayerCache.build(bb, data, [2]) for s in ("train", "dev")} if cache else {}
        tc = TrainConfig(steps=6, eval_every=2, batch_size=8, seed=5, cache=cache, grad_accum=accum)
        curve, _ = Trainer(lpt, tc).fit(data, data, caches, progress=False)
        curves.append(curve)
    for col in ("train_loss", "dev_loss"):
        np.testing.assert_allclose(curves[0][col], curves[1][col], rtol=1e-4, atol=1e-5)


def test_grad_accum_is_checked():
    with pytest.raises(ValueError, match="cannot exceed batch_size"):
        TrainConfig(batch_size=4, grad_accum=8)
    with pytest.raises(ValueError, match="dtype='fp8'"):
        TrainConfig(dtype="fp8")
