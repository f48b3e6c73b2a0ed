"""``lpt_probe.influence``: the prompt's influence and the gradient signal, on tiny random
models of every family in the family table (exact values where they are known), its
settings and figures. The command end to end on real data (resume, recompute, init = the
run's step 0) is in tests/integration/test_influence_command.py."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import FAMILIES, random_batch, tiny_model

from lpt_probe.commands import influence as cli
from lpt_probe.analysis.influence.study import (
    COLUMNS,
    InfluenceConfig,
    coherence,
    coherence_replicates,
    forward_measures,
    gold_logprob,
    gradient_measures,
    measure,
    measure_batch,
    prompt_keys_blocked,
    resample_counts,
    summarise_coherence,
)
from lpt_probe.data.encoded import Encoded
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.families import FAMILIES as TABLE
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel

WORDS = [20, 21, 22]
L = 4  # tiny models: 4 layers


def test_every_family_of_the_table_is_tested():
    assert sorted(FAMILIES) == sorted(TABLE)


def lpt(family, pl, l=3, generator="none", dtype=torch.float32, model=None):
    model = model if model is not None else tiny_model(family, dropout=0.0)
    bb = Backbone(model.to(dtype))
    torch.manual_seed(1)
    m = LatePromptModel(bb, LatePromptConfig(prompt_layer=pl, generator=generator, num_virtual_tokens=l), 3,
                        WORDS).eval()
    if generator == "none":  # a plain prompt in the backbone's dtype (generators read fp32 by design)
        m.to(dtype)
    return m, bb


def batch(causal, seed=0):
    ids, mask = random_batch(seed=seed)
    n = mask.sum(1)
    pred = (n - 1) if causal else torch.ones(3, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "pred_positions": pred, "labels": torch.tensor([0, 1, 2])}


def frozen_logits(m, bb, b):
    """The frozen model's own label logits (tiny models have an LM/MLM head)."""
    assert m.head_kind == "lm"
    top = bb.hidden_states(b["input_ids"], b["attention_mask"])[-1]  # normed, as the head reads it
    return m.read_out(top[torch.arange(3), b["pred_positions"]], {}, normed=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_below_pl_displacement_is_exactly_zero_and_attention_only_from_pl(family):
    m, bb = lpt(family, pl=3)
    res, _ = forward_measures(m, bb, batch(bb.is_causal))
    for j in range(3):
        for p in ("prediction", "text_mean"):
            assert torch.equal(res["displacement", p, j], torch.zeros(3))
            assert torch.allclose(res["cosine", p, j], torch.ones(3), atol=1e-6)
    attn = sorted(j for q, _, j in res if q == "attention_mass")
    assert set(attn) == {3, 4}
    for j in (3, 4):
        v = res["attention_mass", "prediction", j]
        assert ((v >= 0) & (v <= 1)).all()
        assert (res["displacement", "prediction", j] > 0).all()  # above PL the prompt moves the text
    assert {j for q, _, j in res if q.startswith("logprob_drop")} == {3, 4}


def zero_query_key(model):
    """Zero every query/key projection: every attention score equal, attention uniform."""
    names = ("query", "key", "query_proj", "key_proj", "pos_key_proj", "pos_query_proj", "q_proj", "k_proj")
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.rsplit(".", 1)[-1] in names:
                mod.weight.zero_()
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
            if name.endswith("attn.c_attn"):  # GPT-2: one Conv1D [hidden, 3 hidden] for q, k, v
                d = mod.weight.shape[0]
                mod.weight[:, : 2 * d] = 0
                mod.bias[: 2 * d] = 0
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_attention_gives_l_over_visible_keys_and_zero_when_hidden(family):
    l, pl = 3, 2
    m, bb = lpt(family, pl, l, model=zero_query_key(tiny_model(family, dropout=0.0)))
    b = batch(bb.is_causal)
    res, h_low = forward_measures(m, bb, b)
    keep, pred = b["attention_mask"], b["pred_positions"]
    n = keep.sum(1).to(torch.float64)
    if bb.is_causal:  # query t sees the l prompt keys and the text keys 0..t
        per_query = l / (l + torch.arange(keep.shape[1], dtype=torch.float64) + 1)
        want_pred = per_query[pred]
        want_mean = (per_query * keep).sum(1) / n
    else:  # every query sees the l prompt keys and the n real text keys
        want_pred = want_mean = l / (l + n)
    for j in range(pl, L + 1):
        torch.testing.assert_close(res["attention_mass", "prediction", j].double(), want_pred, atol=1e-6, rtol=0)
        torch.testing.assert_close(res["attention_mass", "text_mean", j].double(), want_mean, atol=1e-6, rtol=0)
    hide = prompt_keys_blocked(3, l, keep.shape[1])
    with torch.no_grad(), bb.capture_attention() as probs:
        m.upper(h_low, keep, pred, blocked={i: hide for i in range(pl - 1, L)})
    real = keep.bool()[:, None, :, None]  # (a pad query's fully masked row may be uniform: not text)
    for i in range(pl - 1, L):
        assert (probs[i][:, :, l:, :l] * real).sum() == 0  # real text queries put exactly nothing on it


@pytest.mark.parametrize("family", FAMILIES)
def test_hiding_the_prompt_from_every_layer_gives_the_frozen_logits(family):
    """Exactly, up to float64 rounding; for rotary models (Llama) up to the float32 rounding
    of the rotation angles at positions shifted by l (HF computes them in float32)."""
    m, bb = lpt(family, pl=2, generator="npg", dtype=torch.float64)
    b = batch(bb.is_causal)
    keep, pred = b["attention_mask"], b["pred_positions"]
    res, h_low = forward_measures(m, bb, b)
    hide = prompt_keys_blocked(3, m.l, keep.shape[1])
    with torch.no_grad():
        hidden = m.upper(h_low, keep, pred, blocked={i: hide for i in range(1, L)})
        ref = frozen_logits(m, bb, b)
        intact = m.upper(h_low, keep, pred)
        alone = m.upper(h_low, keep, pred, blocked={2: hide})
    tol = 1e-5 if family == "llama" else 1e-10
    torch.testing.assert_close(hidden["logits"], ref["logits"], atol=tol, rtol=0)
    assert not torch.allclose(intact["logits"], ref["logits"], atol=1e-4)  # the prompt does matter
    # the command's resumed passes (from hidden state j-1) agree with the full forward
    want_from = gold_logprob(m, intact, b["labels"]) - gold_logprob(m, ref, b["labels"])
    torch.testing.assert_close(res["logprob_drop_from", "prediction", 2], want_from, atol=tol * 10, rtol=0)
    want_alone = gold_logprob(m, intact, b["labels"]) - gold_logprob(m, alone, b["labels"])
    torch.testing.assert_close(res["logprob_drop_layer", "prediction", 3], want_alone, atol=tol, rtol=0)


def _loss_of(m, b, i, h_low=None, state=None, j=None, prompt=None):
    """Loss of example i alone, in float64 (the model's read-out casts its logits to fp32);
    from hidden state PL-1 (text) or from hidden state j (prompt in front)."""
    keep, pred, y = b["attention_mask"][i:i + 1], b["pred_positions"][i:i + 1], b["labels"][i:i + 1]
    with torch.no_grad():
        if prompt is not None:
            m.generator.prompt.copy_(prompt)
        if state is not None:
            mask = torch.cat([torch.ones(1, m.l, dtype=keep.dtype), keep], 1)
            top = m.backbone.run_layers(state, mask, j, L, torch.arange(mask.shape[1])[None])
        else:
            top = m.upper(h_low, keep, pred, return_states=True)["upper_states"][-1]
        vocab = m.backbone.lm_logits(top[:, pred[0] + m.l])  # [1, vocab], float64
        return float(torch.nn.functional.cross_entropy(vocab, m.label_word_ids[y]))


@pytest.mark.parametrize("family, eps, rel", [("bert", 1e-5, 1e-4),
                                              ("llama", 1e-3, 1e-3)])  # Llama's RMSNorm computes in fp32
def test_gradient_norms_match_finite_differences(family, eps, rel):
    m, bb = lpt(family, pl=2, dtype=torch.float64)
    b = batch(bb.is_causal)
    keep, pred = b["attention_mask"], b["pred_positions"]
    with torch.no_grad():
        h_low = bb.run_layers(bb.embed(b["input_ids"], keep), keep, 0, 1)
    g = gradient_measures(m, h_low, b)
    p0 = m.generator.prompt.detach().clone()
    with torch.no_grad():
        states = m.upper(h_low, keep, pred, return_states=True)["upper_states"]  # hidden states 2..4
    for i in range(3):
        n_i = int(keep[i].sum())
        hi = h_low[i:i + 1, :n_i]
        b_i = {k: v[i:i + 1, :n_i] if v.dim() == 2 else v[i:i + 1] for k, v in b.items()}
        # the prompt: the derivative along the gradient's direction is its norm
        gp = g["prompt", 1][i].view_as(p0)
        u = gp / gp.norm()
        fd = (_loss_of(m, b_i, 0, hi, prompt=p0 + eps * u) - _loss_of(m, b_i, 0, hi, prompt=p0 - eps * u)) / (2 * eps)
        m.generator.prompt.data.copy_(p0)
        assert fd == pytest.approx(float(gp.norm()), rel=rel)
        # hidden state PL-1 at the prediction position
        gv = g["prediction", 1][i]
        d = torch.zeros_like(hi)
        d[0, pred[i]] = gv / gv.norm()
        fd = (_loss_of(m, b_i, 0, hi + eps * d) - _loss_of(m, b_i, 0, hi - eps * d)) / (2 * eps)
        assert fd == pytest.approx(float(gv.norm()), rel=rel)
        # hidden state 3 (an upper state, prompt in front) at the prediction position
        s = states[1][i:i + 1, : m.l + n_i]
        gv = g["prediction", 3][i]
        d = torch.zeros_like(s)
        d[0, m.l + pred[i]] = gv / gv.norm()
        fd = (_loss_of(m, b_i, 0, state=s + eps * d, j=3) - _loss_of(m, b_i, 0, state=s - eps * d, j=3)) / (2 * eps)
        assert fd == pytest.approx(float(gv.norm()), rel=rel)
        # the scale-free measure: g . h is the loss's derivative along h itself (the state
        # at the prediction position scaled by 1 + eps), and ||g|| ||h|| bounds it
        d = torch.zeros_like(hi)
        d[0, pred[i]] = hi[0, pred[i]]
        fd = (_loss_of(m, b_i, 0, hi + eps * d) - _loss_of(m, b_i, 0, hi - eps * d)) / (2 * eps)
        assert fd == pytest.approx(float(g["dot", "prediction", 1][i]), rel=rel, abs=1e-9)
        scaled = float(g["scaled", "prediction", 1][i])
        assert scaled == pytest.approx(float(g["prediction", 1][i].norm() * hi[0, pred[i]].norm()), rel=1e-9)
        assert abs(fd) <= scaled * (1 + 1e-6)


def test_gold_logprob_is_over_the_label_words_only():
    """Moving logit mass between tokens that are not label words changes the vocabulary's
    log-probability of the gold word but not log p(gold) among the labels."""
    m, bb = lpt("roberta", pl=2, dtype=torch.float64)
    b = batch(bb.is_causal)
    with torch.no_grad():
        out = m.upper(bb.run_layers(bb.embed(b["input_ids"], b["attention_mask"]), b["attention_mask"], 0, 1),
                      b["attention_mask"], b["pred_positions"])
    got = gold_logprob(m, out, b["labels"])
    want = torch.log_softmax(out["vocab_logits"][:, m.label_word_ids].double(), -1)[torch.arange(3), b["labels"]]
    torch.testing.assert_close(got, want)
    other = out["vocab_logits"].clone()
    other[:, [i for i in range(other.shape[1]) if i not in set(m.label_word_ids.tolist())][:5]] += 7.0
    moved = {**out, "vocab_logits": other}
    torch.testing.assert_close(gold_logprob(m, moved, b["labels"]), got)
    assert not torch.allclose(m.loss(moved, b["labels"]), m.loss(out, b["labels"]))  # the vocab loss did move


def test_coherence_is_one_for_identical_examples_and_about_one_over_n_for_noise():
    rng = np.random.default_rng(0)
    row = rng.normal(size=300)
    assert coherence(np.tile(row, (20, 1))) == pytest.approx(1.0)
    for n in (10, 50):
        assert coherence(rng.normal(size=(n, 5000))) == pytest.approx(1 / n, rel=0.1)
    for g in (rng.normal(size=(40, 300)), rng.normal(size=(40, 300)) + 0.3):  # noise; a shared direction
        value, lo, hi = summarise_coherence(g, resample_counts(40, 400, seed=3))
        assert lo <= value <= hi
    assert lo > 1 / 40 * 2  # the shared direction is seen through the noise
    g = rng.normal(size=(12, 40))  # a resample without repeats is the sample itself
    assert coherence_replicates(g @ g.T, np.ones((1, 12)))[0] == pytest.approx(coherence(g))
    value, lo, hi = summarise_coherence(np.tile(row, (8, 1)), resample_counts(8, 50))
    assert value == pytest.approx(1) and lo == pytest.approx(1) and hi == pytest.approx(1)


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_measure_identical_examples_have_coherence_one(family):
    m, bb = lpt(family, pl=2)
    seq = [5, 30, 4, 40, 41, 42] if not bb.is_causal else [30, 40, 41, 42, 43]
    pred = 2 if not bb.is_causal else len(seq) - 1
    data = Encoded([seq] * 5, [pred] * 5, [1] * 5, pad_id=1)
    table = measure(m, bb, data, batch_size=2, bootstrap=50, progress=False)
    coh = table[table["quantity"] == "grad_coherence"]
    assert len(coh) and np.allclose(coh["value"], 1.0, atol=1e-5)
    assert set(coh["position"]) == {"prediction", "text_mean", "prompt"}
    assert set(table[table["quantity"] == "grad_norm"]["layer"]) == set(range(1, L + 1))  # PL-1..L
    for q in ("grad_x_state_norm", "grad_dot_state"):  # beside every grad_norm row
        assert set(map(tuple, table[table["quantity"] == q][["layer", "position"]].values)) == \
            set(map(tuple, table[table["quantity"] == "grad_norm"][["layer", "position"]].values))
    assert (table["n"] == 5).all() and (table["ci_low"] <= table["value"] + 1e-9).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_eager_and_sdpa_give_the_same_numbers(family):
    base = tiny_model(family, dropout=0.0)
    models = {}
    for impl in ("eager", "sdpa"):
        try:
            mod = type(base)._from_config(copy.deepcopy(base.config), attn_implementation=impl)
        except (ValueError, ImportError) as exc:
            pytest.skip(f"{family} has no {impl} attention in this transformers: {exc}")
        mod.load_state_dict(base.state_dict())
        assert mod.config._attn_implementation == impl
        models[impl] = mod.eval()
    got = {}
    for impl, mod in models.items():
        m, bb = lpt(family, pl=2, model=mod)
        got[impl] = measure_batch(m, bb, batch(bb.is_causal))
        assert mod.config._attn_implementation == impl  # capture_attention restored it
    for key, v in got["eager"]["scalars"].items():
        torch.testing.assert_close(got["sdpa"]["scalars"][key], v, atol=1e-5, rtol=1e-4)


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--checkpoints 3 are not multiples of --save-every 2"):
        InfluenceConfig(checkpoints=(2, 3), save_every=2)
    with pytest.raises(ValueError, match="--checkpoints 500"):
        InfluenceConfig(checkpoints=(500,), steps=200)
    assert InfluenceConfig(checkpoints=(50, 100)).train.save_every == 50
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--split", "nope"])


# -- figures ------------------------------------------------------------------------------
def influence_table(prompt_layers=(1, 3, 6), seeds=(13, 42), layers=6) -> pd.DataFrame:
    """A synthetic influence.csv with the columns and row sets the command writes."""
    rng = np.random.default_rng(0)
    rows = []
    for pl in prompt_layers:
        for seed in seeds:
            for ck in ("init", "trained"):
                head = {"task": "trec", "model": "minilm", "method": "lpt", "generator": "none", "prompt_layer": pl,
                        "seed": seed, "checkpoint": ck, "n": 50}
                vals = []  # (quantity, position, layer, value)
                for j in range(layers + 1):
                    up = j - pl + 1 if j >= pl else 0
                    for p in ("prediction", "text_mean"):
                        vals += [("displacement", p, j, 0.1 * up), ("cosine", p, j, 1 - 0.05 * up)]
                        if j >= pl:
                            vals.append(("attention_mass", p, j, 0.3 + rng.normal(0, 0.02)))
                        if j >= pl - 1:
                            vals += [("grad_norm", p, j, np.exp(-0.2 * (layers - j))),
                                     ("grad_coherence", p, j, 0.1 + 0.01 * j)]
                    if j >= pl:
                        vals += [("logprob_drop_layer", "prediction", j, 0.1 / j),
                                 ("logprob_drop_from", "prediction", j, 0.2 * (layers - j + 1) / layers)]
                vals += [("grad_norm", "prompt", pl - 1, 0.5),
                         ("grad_coherence", "prompt", pl - 1, 0.05 * pl + (ck == "trained") * 0.01)]
                rows += [{**head, "quantity": q, "position": p, "layer": j, "value": v, "ci_low": v - 0.01,
                          "ci_high": v + 0.01} for q, p, j, v in vals]
    return pd.DataFrame(rows)[COLUMNS]


def test_figures_influence_and_section4(tmp_path, capsys):
    from figure_data import check_pdf, write_results

    from lpt_probe.commands import figures

    res = write_results(tmp_path / "res")
    inf = tmp_path / "inf"
    inf.mkdir()
    influence_table().to_csv(inf / "influence.csv", index=False)
    out = tmp_path / "figs"
    assert figures.main(["influence", str(inf), "--out", str(out)]) == 0
    assert figures.main(["influence", str(inf / "influence.csv"), "--out", str(out), "--checkpoint", "init",
                         "--name", "init"]) == 0
    assert figures.main(["section4", "--sweep", str(res["performance"]), "--mi", str(res["mi"]), "--influence",
                         str(inf), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".lpt_probe", "influence_by_layer.pdf", "init.pdf",
                                                    "section4.pdf"]  # the marker lists the figures
    for p in out.glob("*.pdf"):
        check_pdf(p)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        figures.main(["influence", str(inf), "--out", str(out), "--checkpoint", "step-7"])
    assert exc.value.code == 2 and "no checkpoint 'step-7'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        figures.main(["section4", "--sweep", str(res["performance"]), "--mi", str(tmp_path), "--influence",
                      str(inf), "--out", str(out)])
    assert exc.value.code == 2 and "python -m lpt_probe.mi" in capsys.readouterr().err
