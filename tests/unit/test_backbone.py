"""The family table and the partial-forward primitive, for all five families."""

import pytest
import torch
from tiny import FAMILIES as NAMES
from tiny import random_batch, tiny_model

from lpt_probe.model.backbone import Backbone
from lpt_probe.model.families import FAMILIES, additive_mask, family_for


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize("head", [True, False])
def test_hidden_states_equal_hf(family, head):
    model = tiny_model(family, head=head)
    bb = Backbone(model)
    assert bb.family.name == family
    assert bb.num_hidden_layers == 4 and bb.has_lm_head == head
    ids, mask = random_batch()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        ours = bb.hidden_states(ids, mask)
    assert len(ours) == len(ref) == 5
    keep = mask.bool()
    for k, (a, b) in enumerate(zip(ours, ref)):
        assert torch.allclose(a[keep], b[keep], atol=1e-5), f"hidden state {k} differs"


@pytest.mark.parametrize("family", NAMES)
def test_run_from_cached_state_equals_full_pass(family):
    model = tiny_model(family)
    bb = Backbone(model)
    ids, mask = random_batch()
    with torch.no_grad():
        full = bb.hidden_states(ids, mask)
        for k in range(bb.num_hidden_layers):  # hidden state L is already normed (as HF)
            top = bb.run_layers(full[k], mask, start=k)
            assert torch.allclose(bb.final(top)[mask.bool()], full[-1][mask.bool()], atol=1e-5), k
        mid = bb.run_layers(full[1], mask, start=1, stop=3)
        assert torch.allclose(mid[mask.bool()], full[3][mask.bool()], atol=1e-5)
        logits = model(input_ids=ids, attention_mask=mask).logits
        ours = bb.lm_logits(bb.run_layers(full[2], mask, start=2))
        assert torch.allclose(ours[mask.bool()], logits[mask.bool()], atol=1e-4)


def test_run_layers_validates_range():
    bb = Backbone(tiny_model("bert"))
    ids, mask = random_batch()
    h = bb.embed(ids, mask)
    with pytest.raises(ValueError, match="start=3, stop=2"):
        bb.run_layers(h, mask, start=3, stop=2)
    with pytest.raises(ValueError, match="num_hidden_layers=4"):
        bb.run_layers(h, mask, start=0, stop=5)
    with pytest.raises(ValueError, match="disagree"):
        bb.run_layers(h, mask[:, :-1])


def test_unknown_family_lists_supported():
    class Cfg:
        model_type = "t5"

    with pytest.raises(ValueError) as err:
        family_for(Cfg())
    for name in FAMILIES:
        assert name in str(err.value)
    assert "'t5'" in str(err.value)


def test_model_without_head_says_how_to_fix():
    bb = Backbone(tiny_model("bert", head=False))
    with pytest.raises(ValueError, match="classifier"):
        bb.lm_logits(torch.zeros(1, 32))


def test_additive_mask_shapes_and_values():
    keep = torch.tensor([[1, 1, 0]])
    m = additive_mask(keep, torch.float32, causal=True)
    assert m.shape == (1, 1, 3, 3)
    allowed = m[0, 0] == 0
    assert allowed.tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert torch.isfinite(m).all()
