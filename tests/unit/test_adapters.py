"""Adapter, AdapterDrop and S-IDPG-PHM (issue 13) on tiny random models of every family:
identity at init, what trains, AdapterDrop = adapters with the lower ones removed and
served by the lower-layer cache, PHM = its Kronecker-structured dense layer, the
first pass, save/reload through a run folder, and the errors for what cannot be served."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from test_late_prompt import WORDS, synthetic
import tiny
from tiny import FAMILIES, random_batch, tiny_model

from lpt_probe.model import families
from lpt_probe.model.adapters import (
    AdaptedSublayer,
    adapter_layers,
    adapter_parameter_count,
    pin_layers,
)
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.cache import LowerLayerCache
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.model.phm import PHMLinear
from lpt_probe.runs.trainer import TrainConfig, Trainer


def hashes(named) -> dict[str, str]:
    return {n: hashlib.sha256(p.detach().float().numpy().tobytes()).hexdigest() for n, p in named}


def adapters_of(model: LatePromptModel) -> dict[int, list[AdaptedSublayer]]:
    """Adapted sublayers by layer (1-based)."""
    return {k + 1: [m for m in layer.modules() if isinstance(m, AdaptedSublayer)]
            for k, layer in enumerate(model.backbone.layers)}


def randomise(model: LatePromptModel, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def positions(bb: Backbone, mask: torch.Tensor) -> torch.Tensor:
    return (mask.sum(1) - 1) if bb.is_causal else torch.tensor([1, 2, 3])


# -- adapters --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_identity_adapters_leave_the_frozen_model_unchanged(family):
    model = tiny_model(family)
    lpt = LatePromptModel(Backbone(model), LatePromptConfig(method="adapter", adapter_size=8), 3, WORDS).eval()
    sites = adapters_of(lpt)
    assert all(len(s) == 2 for s in sites.values()) and len(sites) == 4  # after attention and after the MLP
    ids, mask = random_batch()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        adapted = lpt.backbone.model(input_ids=ids, attention_mask=mask).logits  # HF's own forward, adapted copy
    assert (adapted - ref).abs().max() <= 1e-6
    # every adapter is on the path: each up-projection gets a gradient from the first step
    out = lpt.train()(ids, mask, positions(lpt.backbone, mask))
    out["logits"].sum().backward()
    for layer in sites.values():
        for sub in layer:
            assert sub.adapter.up.weight.grad.abs().sum() > 0
    assert lpt.num_trainable() == adapter_parameter_count(32, 8, 4)


def test_adapters_train_with_the_classifier_only_and_leave_the_callers_model_alone():
    bb = Backbone(tiny_model("bert", head=False))
    before = hashes(bb.model.state_dict().items())
    lpt = LatePromptModel(bb, LatePromptConfig(method="adapter", adapter_layers="2-3", adapter_size=4), 3)
    names = {n for n, _ in lpt.trainable_named_parameters()}
    assert names == {n for n in names if ".adapter." in n or n.startswith("classifier.")}
    assert {n.split(".layer.")[1].split(".")[0] for n in names if ".adapter." in n} == {"1", "2"}  # layers 2, 3
    assert lpt.num_trainable() == adapter_parameter_count(32, 4, 2) + 32 * 3 + 3
    data = synthetic(32)
    Trainer(lpt, TrainConfig(steps=3, eval_every=3, batch_size=8, lr=1e-2, cache=False)).fit(data, data, progress=False)
    assert hashes(bb.model.state_dict().items()) == before
    assert not any(isinstance(m, AdaptedSublayer) for m in bb.model.modules())


@pytest.mark.parametrize("spec,layers,pinned", [
    ("all", [1, 2, 3, 4, 5, 6], "1-6"), ("upper-half", [4, 5, 6], "4-6"), ("4-", [4, 5, 6], "4-6"),
    ("2-3", [2, 3], "2-3"), ("1,3,5-6", [1, 3, 5, 6], "1,3,5-6"), ("6,5,4", [4, 5, 6], "4-6"),
])
def test_adapter_layer_specs(spec, layers, pinned):
    assert adapter_layers(spec, 6) == layers and pin_layers(spec, 6) == pinned


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_adapterdrop_from_k_equals_adapters_with_the_lower_ones_removed(family):
    k = 3
    model = tiny_model(family)
    full = LatePromptModel(Backbone(model), LatePromptConfig(method="adapter", adapter_size=8), 3, WORDS).eval()
    drop = LatePromptModel(Backbone(model), LatePromptConfig(method="adapterdrop", adapter_size=8,
                                                             adapter_layers=f"{k}-"), 3, WORDS).eval()
    assert drop.config.options.adapter_layers == "3-4" and drop.config.start_state == k - 1
    assert sorted(i for i, s in adapters_of(drop).items() if s) == [3, 4]
    randomise(full)
    own = dict(full.named_parameters())
    with torch.no_grad():  # the same adapters in layers k..L
        for name, p in drop.named_parameters():
            if ".adapter." in name:
                p.copy_(own[name])
    ids, mask = random_batch()
    pos = positions(full.backbone, mask)
    with torch.no_grad():
        a = full(ids, mask, pos)["logits"]
        for layer in range(1, k):  # remove the lower adapters: identity
            for sub in adapters_of(full)[layer]:
                sub.adapter.up.weight.zero_()
                sub.adapter.up.bias.zero_()
        b, c = full(ids, mask, pos)["logits"], drop(ids, mask, pos)["logits"]
    assert not torch.allclose(a, b, atol=1e-4)  # the lower adapters did something
    assert (b - c).abs().max() <= 1e-6


@pytest.mark.parametrize("family,method", [("roberta", "adapterdrop"), ("llama", "adapterdrop"), ("gpt2", "s-idpg")])
def test_cached_training_equals_uncached(family, method):
    data = synthetic(24, causal=family in ("llama", "gpt2"))
    curves, calls = [], []
    for cache in (True, False):
        bb = Backbone(tiny_model(family))
        torch.manual_seed(5)
        kw = dict(adapter_size=8) if method == "adapterdrop" else dict(phm_n=4, generator_dropout=0.0)
        lpt = LatePromptModel(bb, LatePromptConfig(method=method, **kw), 3, WORDS)
        state = lpt.config.start_state
        assert state == (2 if method == "adapterdrop" else 0)  # upper half of 4 layers: cache hidden state 2
        caches = {s: LowerLayerCache.build(bb, data, [state]) for s in ("train", "dev")} if cache else {}
        count = [0]
        hooks = [layer.register_forward_pre_hook(lambda *a, c=count: c.__setitem__(0, c[0] + 1))
                 for layer in lpt.backbone.layers[:state]]
        curve, _ = Trainer(lpt, TrainConfig(steps=4, eval_every=2, batch_size=8, seed=5, cache=cache)).fit(
            data, data, caches, progress=False)
        for h in hooks:
            h.remove()
        curves.append(curve)
        calls.append(count[0])
    if method == "adapterdrop":
        assert calls[0] == 0 and calls[1] > 0  # from the cache, the layers below K never run
    for col in ("train_loss", "dev_loss", "dev_metric"):
        np.testing.assert_allclose(curves[0][col], curves[1][col], atol=1e-5)


# -- S-IDPG-PHM -------------------------------------------------------------------------------
@pytest.mark.parametrize("d_in,d_out,n", [(32, 128, 16), (12, 18, 3), (8, 8, 1)])
def test_phm_layer_is_the_dense_layer_of_its_kronecker_weight(d_in, d_out, n):
    torch.manual_seed(0)
    phm = PHMLinear(d_in, d_out, n)
    W = sum(torch.kron(phm.A[i], phm.B[i]) for i in range(n))  # [out, in]
    assert W.shape == (d_out, d_in)
    dense = torch.nn.Linear(d_in, d_out)
    with torch.no_grad():
        dense.weight.copy_(W)
        dense.bias.copy_(phm.bias)
    x = torch.randn(5, 7, d_in)
    assert torch.allclose(phm(x), dense(x), atol=1e-6)
    assert torch.allclose(phm.weight, W, atol=1e-7)
    count = sum(p.numel() for p in phm.parameters())
    assert count == n ** 3 + d_in * d_out // n + d_out == PHMLinear.num_parameters(d_in, d_out, n)


@pytest.mark.parametrize("family,pooling", [("bert", "mean"), ("llama", "cls"), ("deberta-v2", "cls")])
def test_s_idpg_generator_reads_the_frozen_first_pass_and_joins_at_the_input(family, pooling):
    bb = Backbone(tiny_model(family))
    lpt = LatePromptModel(bb, LatePromptConfig(method="s-idpg", phm_n=4, sentence_pooling=pooling), 3, WORDS).eval()
    assert lpt.config.prompt_layer == 1 and lpt.l == 5
    assert lpt.num_trainable() == (PHMLinear.num_parameters(32, 128, 4) + PHMLinear.num_parameters(128, 5 * 32, 4))
    ids, mask = random_batch()
    with torch.no_grad():
        ref = bb.hidden_states(ids, mask)[-1]  # the frozen model's top layer (normed, as HF's)
    seen, first = {}, {}
    lpt.generator.register_forward_pre_hook(lambda m, a: seen.update(h=a[0]))
    lpt.backbone.layers[0].register_forward_pre_hook(
        lambda m, a, kw: first.setdefault("n", []).append((a[0] if a else kw["hidden_states"]).shape[1]),
        with_kwargs=True)
    with torch.no_grad():
        out = lpt(ids, mask, positions(bb, mask))
    keep = mask.bool()
    assert torch.allclose(seen["h"][keep], ref[keep], atol=1e-5)
    assert first["n"] == [ids.shape[1], ids.shape[1] + 5]  # first pass: text only; second: prompt in front
    p = out["prompt"]
    assert p.shape == (3, 5, 32) and not torch.allclose(p[0], p[1])  # instance-dependent
    lpt.train()(ids, mask, positions(bb, mask))["logits"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in lpt.trainable_named_parameters())
    assert all(p.grad is None for p in lpt.backbone.model.parameters())


# -- through a run folder -----------------------------------------------------------------------
def toy_task(folder):
    """The toy task of these run-folder tests: 20 training rows and 6 test rows per label."""
    return tiny.toy_task(folder, n_train=20, n_test=6)


@pytest.fixture(scope="module")
def tiny_bundle():
    """A tiny random BERT with an MLM head over the embedded MiniLM's tokenizer (no download)."""
    import transformers as T

    from lpt_probe.model.loading import preset_path

    try:
        tok = T.AutoTokenizer.from_pretrained(str(preset_path("minilm")))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=64)
    info = {"name": "tiny-bert", "identity": {"name": "tiny-bert", "model_class": "BertForMaskedLM",
                                              "dtype": "float32", "weights_sha256": None}}
    return T.BertForMaskedLM(cfg).eval(), tok, info


@pytest.mark.parametrize("method,kw", [("adapter", dict(adapter_size=8)), ("adapterdrop", {}),
                                       ("s-idpg", dict(phm_n=8))])
def test_save_reload_through_a_run_folder_predicts_identically(method, kw, tiny_bundle, tmp_path):
    from lpt_probe.runs.folders import load_run
    from lpt_probe.runs.run import prepare, train

    before = hashes(tiny_bundle[0].state_dict().items())
    tc = TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10, steps=3,
                     eval_every=3, batch_size=8)
    res = train(LatePromptConfig(method=method, **kw), tc, tmp_path / "run", bundle=tiny_bundle, progress=False)
    assert res.metrics["cache"] == (method != "adapter")  # adapterdrop and s-idpg train from the cache
    assert res.metrics["lr"] == {"adapter": 5e-4, "adapterdrop": 5e-4, "s-idpg": 1e-3}[method]
    run = load_run(tmp_path / "run", bundle=tiny_bundle)
    if method == "adapterdrop":
        assert run.prompt_config.options.adapter_layers == "3-4"  # pinned: config.json records the layers
    assert run.model.num_trainable() == res.metrics["tunable_params"] == res.model.num_trainable()
    test = prepare(tc, tiny_bundle).encoded["test"]
    loaded, trained = Trainer(run.model, tc).evaluate(test), Trainer(res.model, tc).evaluate(test)  # uncached
    assert torch.equal(loaded["logits"], trained["logits"])
    assert loaded["accuracy"] == pytest.approx(res.metrics["test_accuracy"], abs=1e-12)  # = the cached evaluation
    assert hashes(tiny_bundle[0].state_dict().items()) == before  # the shared model is untouched


# -- what cannot be served --------------------------------------------------------------------
def test_a_family_without_adapter_sites_says_so(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "bert", dataclasses.replace(families.FAMILIES["bert"], adapter_sites=()))
    with pytest.raises(ValueError, match="'bert' family entry names no adapter sites"):
        LatePromptModel(Backbone(tiny_model("bert")), LatePromptConfig(method="adapter"), 3, WORDS)
    monkeypatch.setitem(families.FAMILIES, "bert", dataclasses.replace(families.FAMILIES["bert"],
                                                                       adapter_sites=("attention.out.dense",)))
    with pytest.raises(ValueError, match="layer 1 of BertForMaskedLM has no module 'attention.out.dense'"):
        LatePromptModel(Backbone(tiny_model("bert")), LatePromptConfig(method="adapter"), 3, WORDS)


@pytest.mark.parametrize("kw,match", [
    (dict(method="s-idpg", phm_n=5), r"phm_n=5 must divide .*hidden_size 32.* Choose --phm-n from \[1, 2, 4, 8"),
    (dict(method="s-idpg", phm_n=16, bottleneck=24), r"bottleneck is not divisible by 16.*\[1, 2, 4, 8\]"),
    (dict(method="adapterdrop", adapter_layers="1,3"), "every layer from K up.*--adapter-layers 1-"),
    (dict(method="adapter", adapter_layers="2-9"), r"must be in 1..4"),
    (dict(method="adapter", adapter_layers="top"), "cannot read 'top'"),
    (dict(method="lpt", adapter_size=8), "method='lpt' has no adapter_size .*adapter, adapterdrop"),
    (dict(method="adapter", phm_n=4), "has no phm_n .*s-idpg"),
    (dict(method="lora", sentence_pooling="cls"), "has no sentence_pooling"),
    (dict(method="s-idpg", prompt_layer=3), "prompt_layer=1"),
    (dict(method="s-idpg", generator="npg"), "builds its own"),
    (dict(method="adapter", num_virtual_tokens=4), "inserts no prompt"),
])
def test_bad_configs_say_what_to_do(kw, match):
    with pytest.raises(ValueError, match=match):
        LatePromptModel(Backbone(tiny_model("bert")), LatePromptConfig(**kw), 3, WORDS)


def test_sweep_cells_get_only_their_methods_options():
    from lpt_probe.runs.sweep import Cell, SweepConfig, cell_configs

    sweep = SweepConfig(methods=("lpt", "adapter", "adapterdrop", "s-idpg"),
                        prompt={"adapter_size": 16, "adapter_layers": None, "phm_n": 8, "sentence_pooling": None})
    got = {m: cell_configs(sweep, Cell(m, "none", 1, 13), TrainConfig(), num_hidden_layers=6)[0]
           for m in sweep.methods}
    assert got["lpt"].options is None  # each config holds its own method's options only
    assert "adapter_size" not in got["lpt"].to_dict()  # the other methods' run keys are unchanged
    assert (got["adapter"].options.adapter_size, got["adapter"].options.adapter_layers) == (16, "1-6")
    assert got["adapterdrop"].options.adapter_layers == "4-6" and got["adapterdrop"].start_state == 3
    assert (got["s-idpg"].options.phm_n, got["s-idpg"].options.sentence_pooling) == (8, "mean")
    assert "adapter_size" not in got["s-idpg"].to_dict() and "phm_n" not in got["adapter"].to_dict()
