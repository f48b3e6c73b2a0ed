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

from ..layers import middle_prompt_layer
from .backbone import Backbone

Tensor = torch.Tensor
DEFAULT_ADAPTER_SIZE = 64
# named layer sets -> (first layer, last layer) for a model of depth L
NAMED_LAYERS = {
    "all": lambda L: (1, L),
    "upper-half": lambda L: (middle_prompt_layer(L), L),  # the layers from the middle prompt layer up
}
SYNTAX = "all, upper-half (L/2+1..L), K- (K..L), K-J, or a comma list such as 1,3,5-6"


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


def _parse(spec: str) -> list[tuple[int, int | None]]:
    """``K``, ``K-J``, ``K-`` items of a comma list -> (first, last or None = the top)."""
    items = []
    for item in str(spec).split(","):
        item = item.strip()
        try:
            if item.endswith("-"):
                items.append((int(item[:-1]), None))
            elif "-" in item:
                a, b = item.split("-")
                items.append((int(a), int(b)))
            else:
                items.append((int(item), int(item)))
        except ValueError:
            raise ValueError(f"adapter_layers={spec!r}: cannot read {item!r}; give {SYNTAX}") from None
    bad = [(a, b) for a, b in items if a < 1 or (b is not None and b < a)]
    if bad:
        raise ValueError(f"adapter_layers={spec!r}: layers are 1-based and ranges K-J need J >= K; give {SYNTAX}")
    return items


def check_layers_syntax(spec: str) -> None:
    """Fail on a spec that no model could read (the range is checked by ``adapter_layers``)."""
    if spec not in NAMED_LAYERS:
        _parse(spec)


def first_adapted_layer(spec: str) -> int:
    """The lowest adapted layer (1-based), without knowing the depth where possible."""
    if spec == "all":
        return 1
    if spec in NAMED_LAYERS:
        raise ValueError(f"adapter_layers={spec!r} depends on the model's depth: pin it first "
                         f"(LatePromptConfig.check_against(backbone), as LatePromptModel and training do) "
                         f"or give layer numbers such as 4-6")
    return min(a for a, _ in _parse(spec))


def adapter_layers(spec: str, num_hidden_layers: int) -> list[int]:
    """The adapted layers (1-based, sorted) of a model with ``num_hidden_layers`` layers."""
    L = int(num_hidden_layers)
    if spec in NAMED_LAYERS:
        a, b = NAMED_LAYERS[spec](L)
        return list(range(a, b + 1))
    layers = sorted({k for a, b in _parse(spec) for k in range(a, (L if b is None else b) + 1)})
    out = [k for k in layers if k > L]
    if out or not layers:
        raise ValueError(f"adapter_layers={spec!r}: layers must be in 1..{L} for a model with "
                         f"num_hidden_layers={L} (got {out or 'none'})")
    return layers


def pin_layers(spec: str, num_hidden_layers: int) -> str:
    """The same layers as numbers (``upper-half`` -> ``4-6`` for 6 layers; ``K-`` -> ``K-L``)."""
    layers = adapter_layers(spec, num_hidden_layers)
    runs, start, prev = [], layers[0], layers[0]
    for k in layers[1:] + [None]:
        if k != prev + 1:  # a run of consecutive layers ends at prev
            runs.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = k
        prev = k
    return ",".join(runs)


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
