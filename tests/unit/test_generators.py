"""Prompt generators: the authors' pooling semantics, padding invariance, shapes."""

import pytest
import torch

from lpt_probe.model.generators import (
    NaivePromptGenerator,
    PoolingPromptGenerator,
    adaptive_bins,
    build_generator,
    masked_adaptive_pool,
    summary_index,
)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("n,l", [(7, 3), (5, 5), (3, 8), (20, 6), (1, 4)])
def test_pool_matches_torch_adaptive_pool_on_unpadded(mode, n, l):
    x = torch.randn(1, n, 6)
    ref_pool = torch.nn.AdaptiveAvgPool1d(l) if mode == "avg" else torch.nn.AdaptiveMaxPool1d(l)
    ref = ref_pool(x.transpose(1, 2)).transpose(1, 2)  # [1, l, m]
    padded = torch.cat([x, torch.randn(1, 4, 6)], dim=1)
    mask = torch.tensor([[1] * n + [0] * 4])
    assert torch.allclose(masked_adaptive_pool(padded, mask, l, mode), ref, atol=1e-6)


@pytest.mark.parametrize("kind", ["appg", "mppg", "npg"])
def test_generators_are_padding_invariant(kind):
    torch.manual_seed(0)
    gen = build_generator(kind, 4, 16, bottleneck=8, dropout=0.0, first_token=(kind != "npg"))
    gen.eval()
    lengths = [5, 9, 2]
    valid = [torch.randn(n, 16) for n in lengths]

    def pack(side: str, total: int):
        h = torch.randn(len(valid), total, 16) * 100  # garbage in pad slots
        mask = torch.zeros(len(valid), total, dtype=torch.long)
        for r, v in enumerate(valid):
            sl = slice(0, len(v)) if side == "right" else slice(total - len(v), total)
            h[r, sl], mask[r, sl] = v, 1
        return h, mask

    outs = [gen(*pack(side, total)) for side in ("right", "left") for total in (9, 14)]
    for o in outs[1:]:
        assert torch.allclose(o, outs[0], atol=1e-5)
    assert outs[0].shape == (3, 4, 16)


def test_pooling_comes_before_relu():
    gen = PoolingPromptGenerator(1, 2, bottleneck=1, dropout=0.0, mode="avg")
    with torch.no_grad():
        gen.proj_down.weight.fill_(1.0)
        gen.proj_down.bias.zero_()
        gen.proj_up.weight.fill_(1.0)
        gen.proj_up.bias.zero_()
    h = torch.tensor([[[1.0, 0.0], [-3.0, 0.0]]])  # projected: 1, -3 -> mean -1 -> relu 0
    out = gen(h, torch.ones(1, 2, dtype=torch.long))
    assert torch.allclose(out, torch.zeros(1, 1, 2))  # relu(mean) = 0; mean(relu) would be 0.5


def test_npg_reads_first_or_last_valid_token_and_blocks_are_tokens():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    assert summary_index(mask, first_token=True).tolist() == [0, 1]
    assert summary_index(mask, first_token=False).tolist() == [2, 3]
    gen = NaivePromptGenerator(3, 4, bottleneck=5, dropout=0.0)
    h = torch.randn(2, 4, 4)
    out = gen(h, mask)
    flat = gen.proj_up(torch.relu(gen.proj_down(h[[0, 1], [0, 1]])))
    assert torch.allclose(out[:, 1], flat[:, 4:8])  # output block j of W2 is prompt token j


def test_bins_overlap_like_torch():
    bins = adaptive_bins(torch.tensor([5]), 3, 5)[0]
    # torch: [0,2), [1,4), [3,5)
    assert bins.int().tolist() == [[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 1, 1]]


def test_unknown_generator_lists_choices():
    with pytest.raises(ValueError, match="none, npg, appg, mppg"):
        build_generator("lstm", 5, 8)


def test_register_generator_makes_a_new_choice_everywhere():
    """One call registers a generator: it builds, trains in a LatePromptModel and is a
    --generator choice of the commands; a taken name is refused."""
    import torch
    from torch import nn

    from lpt_probe.commands import mi
    from lpt_probe.model.generators import (DEFAULT_NUM_VIRTUAL_TOKENS, GENERATOR_SPECS, GENERATORS, GeneratorSpec,
                                            register_generator)
    from lpt_probe.model.late_prompt import LatePromptConfig

    class MeanPrompt(nn.Module):  # the mean token state, repeated l times
        def __init__(self, l, d):
            super().__init__()
            self.l, self.proj = l, nn.Linear(d, d)

        def forward(self, h, attention_mask):
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            mean = (h * w).sum(1) / w.sum(1)  # [batch, hidden]
            return self.proj(mean).unsqueeze(1).expand(-1, self.l, -1)

    try:
        register_generator(GeneratorSpec("meanpg", lambda l, d, m, p, first, std: MeanPrompt(l, d), 3))
        assert "meanpg" in GENERATORS and LatePromptConfig(generator="meanpg").num_virtual_tokens == 3
        gen = build_generator("meanpg", 3, 8)
        out = gen(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.long))
        assert out.shape == (2, 3, 8)
        choices = {a.dest: a for a in mi.build_parser()._actions}["generator"].choices
        assert "meanpg" in choices
        with pytest.raises(ValueError, match="registered already"):
            register_generator(GeneratorSpec("npg", lambda *a: None, 5))
    finally:
        GENERATORS.remove("meanpg") if "meanpg" in GENERATORS else None
        GENERATOR_SPECS.pop("meanpg", None)
        DEFAULT_NUM_VIRTUAL_TOKENS.pop("meanpg", None)
