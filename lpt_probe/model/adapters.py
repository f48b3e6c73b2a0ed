"""Houlsby adapters, wired into any family through its ``FamilySpec.adapter_sites``.

Houlsby et al. (2019) put a bottleneck module after the attention block and after the
feed-forward block of every layer: on the sublayer's output y (after its projection back
to the hidden size, before the residual add and LayerNorm),

    adapter(y) = y + W_up f(W_down y + b_down) + b_up          # [batch, seq, hidden]

with W_down [m, hidden], W_up [hidden, m] (m = ``adapter_size``, 64 by default) and W_up,
b_up zero at the start, so an untrained adapter is the identity and training starts from
the frozen model (as LoRA's B = 0). W_down keeps PyTorch's default initialisation; f is
SiLU. Houlsby et al. also trained the layer norms; here only the adapters train (and the
head), so the count of tunable parameters is the adapters' own:
``2 * hidden * m + m + hidden`` per site, two sites per adapted layer.

Where: each family's entry names, relative to one layer, the two projections
(``attention.output.dense`` / ``output.dense`` for BERT, RoBERTa and DeBERTa-v2,
``attn.c_proj`` / ``mlp.c_proj`` for GPT-2, ``self_attn.o_proj`` / ``mlp.down_proj`` for
Llama). ``attach_adapters`` replaces each such module by ``AdaptedSublayer(module)``, a
module around it that applies the adapter to its output; the layer's own code (Hugging
Face's, unchanged) calls it as before. No modeling file is copied, no model type tested.

Which layers: ``adapter_layers`` (1-based layer numbers, see ``lpt_probe.layers``) is
``all``, ``upper-half`` (layers L//2+1..L), ``K-`` (K..L), ``K-J``, or a comma list of
those (``1,3,5-6``). Named specs depend on the model's depth; ``pin_layers`` turns them
into numbers once the depth is known (``LatePromptConfig.check_against``), so the run's
``config.json`` records the layers themselves. AdapterDrop (Rücklé et al. 2021) is the
same adapters in layers K..L only: nothing below K trains, so layers 1..K-1 run once,
from the lower-layer cache (hidden state K-1, the first adapted layer's input).

Why not a library: the AdapterHub ``adapters`` package pins ``transformers~=4.57`` and
this project runs transformers 5.x; peft has no Houlsby bottleneck adapter.

Read ``BottleneckAdapter``, then ``attach_adapters``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import (  # noqa: F401  (the layer specs, re-exported: they are torch-free)
    NAMED_LAYERS,
    SYNTAX,
    adapter_layers,
    check_layers_syntax,
    first_adapted_layer,
    pin_layers,
)
from .backbone import Backbone
from .specs import DEFAULT_ADAPTER_SIZE

Tensor = torch.Tensor


class BottleneckAdapter(nn.Module):
    """y + up(f(down(y))), computed in fp32 and returned in y's dtype; the identity at init."""

    def __init__(self, hidden_size: int, size: int = DEFAULT_ADAPTER_SIZE):
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.act = nn.SiLU()
        self.up = nn.Linear(size, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, y: Tensor) -> Tensor:
        z = self.up(self.act(self.down(y.float())))  # [batch, seq, hidden]
        return y + z.to(y.dtype)


class AdaptedSublayer(nn.Module):
    """A sublayer (``base_layer``, the frozen projection) followed by its adapter."""

    def __init__(self, base_layer: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        return self.adapter(self.base_layer(*args, **kwargs))


def attach_adapters(backbone: Backbone, layers: list[int], size: int, method: str = "adapter") -> int:
    """Wrap the adapter sites of ``layers`` (1-based) in ``AdaptedSublayer``; returns the
    number of adapters. Adapter weights are fp32 on the backbone's device, trainable."""
    sites = backbone.family.adapter_sites
    if not sites:
        raise ValueError(f"method {method!r}: the {backbone.family.name!r} family entry names no adapter sites "
                         f"(FamilySpec.adapter_sites: the attention-output and feed-forward-output projections "
                         f"of a layer); add them to its entry (lpt_probe.model.families), or use lora, bitfit or lpt")
    d, device = backbone.hidden_size, backbone.device
    n = 0
    for k in layers:
        layer = backbone.layers[k - 1]
        for site in sites:
            *path, name = site.split(".")
            parent = layer
            for part in path:
                parent = getattr(parent, part, None)
            target = getattr(parent, name, None) if parent is not None else None
            if not isinstance(target, nn.Module):
                raise ValueError(f"method {method!r}: layer {k} of {type(backbone.model).__name__} has no module "
                                 f"{site!r} (the {backbone.family.name!r} family's adapter site); is the family "
                                 f"entry right for this model?")
            if isinstance(target, AdaptedSublayer):
                raise ValueError(f"method {method!r}: layer {k} {site!r} has an adapter already")
            setattr(parent, name, AdaptedSublayer(target, BottleneckAdapter(d, size).to(device)))
            n += 1
    return n


def adapter_parameter_count(hidden_size: int, size: int, num_layers: int, sites: int = 2) -> int:
    """Tunable parameters of ``num_layers`` adapted layers (both bottleneck projections, biases)."""
    return num_layers * sites * (2 * hidden_size * size + size + hidden_size)
