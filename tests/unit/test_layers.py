"""Layer numbering, written down once: the middle prompt layer and --prompt-layers parsing."""

import pytest

from lpt_probe.layers import middle_prompt_layer, parse_prompt_layers, start_state
from lpt_probe.model.adapters import adapter_layers


@pytest.mark.parametrize("L, middle", [(6, 4), (24, 13), (30, 16), (12, 7), (1, 1), (2, 2), (3, 2)])
def test_middle_prompt_layer_is_half_the_layers_plus_one(L, middle):
    # the paper's "most intermediate layer" of RoBERTa-large is PL 13 of 24 (add_prompt_layer=12)
    assert middle_prompt_layer(L) == middle
    assert start_state(middle) == L // 2 or L == 1  # the prompt joins hidden state L//2


def test_middle_prompt_layer_refuses_no_layers():
    with pytest.raises(ValueError, match="num_hidden_layers=0"):
        middle_prompt_layer(0)


def test_default_prompt_layers_use_the_middle():
    assert parse_prompt_layers("default", 6) == [1, 4, 6]
    assert parse_prompt_layers("default", 24) == [1, 13, 24]
    assert parse_prompt_layers("default", 30) == [1, 16, 30]
    assert parse_prompt_layers("all", 3) == [1, 2, 3]
    assert parse_prompt_layers("6,1,4", 6) == [1, 4, 6]
    with pytest.raises(ValueError, match="1..6"):
        parse_prompt_layers("7", 6)


def test_adapterdrop_upper_half_starts_at_the_middle_prompt_layer():
    for L in (6, 24, 30):
        layers = adapter_layers("upper-half", L)
        assert min(layers) == middle_prompt_layer(L) and max(layers) == L


def test_figures_select_prompt_layers_with_the_same_grammar():
    from lpt_probe.layers import select_prompt_layers

    present = [1, 2, 3, 4, 5, 6]
    assert select_prompt_layers("default", present) == [1, 4, 6]
    assert select_prompt_layers("all", present) == present == select_prompt_layers(None, present)
    assert select_prompt_layers("6,1", present) == [1, 6]
    assert select_prompt_layers("default", [1, 8, 16, 23, 30]) == [1, 16, 30]
    with pytest.raises(ValueError, match="'default', 'all' or numbers"):
        select_prompt_layers("middle", present)
