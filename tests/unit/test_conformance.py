"""Every registered probe and generator meets its registry's contract (scikit-learn's
``parametrize_with_checks`` idea): a family added with ``register_probe`` or to
``GENERATORS`` is checked here without a test of its own. (Every method is checked by
``tests/unit/test_methods.py::test_each_method_trains_exactly_its_parameters``, which
``test_every_method_is_in_the_table`` keeps complete.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import random_batch, tiny_model

from lpt_probe.model.backbone import Backbone
from lpt_probe.model.generators import GENERATORS
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.probing import PROBES, make_probe
from lpt_probe.probing.sequences import Sequences

# small settings per family, so the check stays fast; a new family runs at its defaults
SMALL = {"mlp": dict(hidden=8, max_epochs=5, grid={}), "transformer": dict(width=16, grid={"lr": [1e-3]},
                                                                       max_epochs=2, min_steps=0)}


def data(kind: str, n: int = 60, d: int = 6, seed: int = 0):
    """Rows with a signal in the first feature; labels 0 and 1 only (class 2 absent)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    if kind == "vector":
        X = rng.standard_normal((n, d)).astype(np.float32)
        X[:, 0] += 2.0 * y
        return X, y
    lengths = rng.integers(2, 6, size=n)
    values = rng.standard_normal((int(lengths.sum()), d)).astype(np.float32)
    ends = np.cumsum(lengths) - 1
    values[ends, 0] += 2.0 * y  # the readout (last token) carries the label
    return Sequences(values, lengths), y


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_follows_the_estimator_conventions(name):
    cls = PROBES[name]
    kind = getattr(cls, "input_kind", None)
    assert kind in ("vector", "sequence"), f"{name}: declare input_kind 'vector' or 'sequence'"
    kw = SMALL.get(name, {})
    probe = make_probe(name, 3, seed=0, **kw)
    # parameters stored unchanged by __init__, nothing learned yet
    for key, value in {"n_classes": 3, "seed": 0, **kw}.items():
        assert getattr(probe, key) == value, f"{name}.__init__ changed {key}"
    before = set(vars(probe))
    assert not [k for k in before if k.endswith("_") and not k.startswith("_")], f"{name}: learned state before fit"
    X, y = data(kind)
    assert probe.fit(X, y) is probe, f"{name}.fit must return self"
    learned = set(vars(probe)) - before
    assert learned and all(k.endswith("_") for k in learned if not k.startswith("_")), sorted(learned)
    assert hasattr(probe, "selected_params_") and hasattr(probe, "selection_")
    proba = probe.predict_proba(X)
    assert proba.shape == (len(y), 3), f"{name}: n_classes columns even with a class absent from fit"
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5) and (proba >= 0).all()
    again = make_probe(name, 3, seed=0, **kw).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(again, proba, atol=1e-6, err_msg=f"{name}: the same seed must give the same fit")


@pytest.mark.parametrize("generator", list(GENERATORS))
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_every_generator_makes_a_prompt_the_model_reads(generator, family):
    """A registered generator: a [batch, l, hidden] prompt at its config's length, finite,
    trainable, and the label logits move when its weights do."""
    bb = Backbone(tiny_model(family, dropout=0.0))
    torch.manual_seed(0)
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=2, generator=generator), 3, [20, 21, 22]).eval()
    ids, mask = random_batch()
    pos = (mask.sum(1) - 1) if bb.is_causal else torch.tensor([1, 2, 3])
    h_low = model.lower(ids, mask)
    prompt = model.generator(h_low.float(), mask)
    assert prompt.shape == (3, model.config.num_virtual_tokens, bb.hidden_size)
    assert torch.isfinite(prompt).all()
    params = [p for _, p in model.trainable_named_parameters() if p.requires_grad]
    assert params, f"{generator}: nothing to train"
    with torch.no_grad():
        before = model(ids, mask, pos)["logits"].clone()
        for p in params:
            p.add_(0.5 * torch.randn_like(p))
        after = model(ids, mask, pos)["logits"]
    assert not torch.allclose(before, after), f"{generator}: the label logits ignore the generator's weights"
