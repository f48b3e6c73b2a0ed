"""Prompt generators: where the late prompt's l x d vectors come from.

- ``none``  (``PlainPrompt``): one learned l x d prompt shared by all inputs, the paper's
  "LPT w/o PG". Initialised N(0, 1) as ``nn.Embedding`` in the authors' code.
- ``npg``   (``NaivePromptGenerator``, Eq. 1-2): p = W2 ReLU(W1 h + b1) + b2 reshaped to
  l x d (output block j of W2 is prompt token j); h is the first-token ([CLS]/<s>) state
  for encoders and the last non-pad token for decoders, taken at hidden state PL-1.
- ``appg`` / ``mppg`` (``PoolingPromptGenerator``, Eq. 3-4): p = W2 ReLU(Pool(W1 h + b1)) + b2:
  down-project every token, average / max pool over the *valid* tokens to length l, ReLU,
  up-project. Pooling comes before the ReLU (it matters for averaging).

Order of operations and dropout follow the authors' code (xyltt/LPT): linear layers keep
PyTorch's default initialisation and dropout acts on the generated prompt.

Pooling bins follow torch's adaptive pooling over the n valid tokens of each example:
bin j spans [floor(j*n/l), ceil((j+1)*n/l)) (bins may overlap), so results equal
``AdaptiveAvgPool1d`` / ``AdaptiveMaxPool1d`` on the unpadded sequence. The pooling is
vectorised (a [batch, l, seq] bin-membership matrix, no per-example loop) and invariant to
padding side and pad length: valid tokens are first compacted to the front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .specs import DEFAULT_NUM_VIRTUAL_TOKENS, GENERATORS  # noqa: F401  (re-exported)

Tensor = torch.Tensor

# The registry: the names, in order, and each one's default prompt length l live in
# ``lpt_probe.model.specs`` (no torch: the flags' choices read them); the specs, with the
# modules, are filled at the end of this module, and ``register_generator`` adds more.
GENERATOR_SPECS: dict[str, "GeneratorSpec"] = {}


class PlainPrompt(nn.Module):
    """A learned prompt, the same for every input."""

    def __init__(self, num_virtual_tokens: int, hidden_size: int, init_std: float = 1.0):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_virtual_tokens, hidden_size) * init_std)  # [l, hidden]

    def forward(self, h: Tensor, attention_mask: Tensor) -> Tensor:
        return self.prompt.unsqueeze(0).expand(h.shape[0], -1, -1)  # [batch, l, hidden]


def summary_index(attention_mask: Tensor, first_token: bool) -> Tensor:
    """Index of the token NPG reads: position 0 (encoders, right padding) or the last valid
    token (decoders). Works for either padding side. # [batch]"""
    keep = attention_mask.bool()
    n = keep.shape[1]
    pos = torch.arange(n, device=keep.device).expand_as(keep)
    if first_token:
        return torch.where(keep, pos, n).min(dim=1).values
    return torch.where(keep, pos, -1).max(dim=1).values


class NaivePromptGenerator(nn.Module):
    """NPG: a bottleneck MLP from one summary state to an l x d prompt."""

    def __init__(self, num_virtual_tokens: int, hidden_size: int, bottleneck: int = 128,
                 dropout: float = 0.1, first_token: bool = True):
        super().__init__()
        self.l, self.d, self.first_token = num_virtual_tokens, hidden_size, first_token
        self.proj_down = nn.Linear(hidden_size, bottleneck)
        self.proj_up = nn.Linear(bottleneck, num_virtual_tokens * hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, attention_mask: Tensor) -> Tensor:
        idx = summary_index(attention_mask, self.first_token)
        x = h[torch.arange(h.shape[0], device=h.device), idx]  # [batch, hidden]
        p = self.proj_up(torch.relu(self.proj_down(x)))  # [batch, l * hidden]
        return self.dropout(p.view(-1, self.l, self.d))  # [batch, l, hidden]


def compact_valid(x: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's valid tokens to the front, keeping their order.

    Returns (x_compact [batch, seq, m], lengths [batch]). Makes everything downstream
    independent of padding side and pad length.
    """
    keep = attention_mask.bool()
    # Stable sort puts valid positions (key 0) before pads (key 1), in original order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # [batch, seq]
    xc = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return xc, keep.sum(dim=1)


def adaptive_bins(lengths: Tensor, num_bins: int, seq: int) -> Tensor:
    """Bin membership [batch, l, seq] of torch's adaptive pooling over ``lengths`` tokens."""
    j = torch.arange(num_bins, device=lengths.device)[None, :]  # [1, l]
    n = lengths[:, None]  # [batch, 1]
    start = torch.div(j * n, num_bins, rounding_mode="floor")
    end = torch.div((j + 1) * n + num_bins - 1, num_bins, rounding_mode="floor")
    t = torch.arange(seq, device=lengths.device)[None, None, :]  # [1, 1, seq]
    return (t >= start[..., None]) & (t < end[..., None])  # [batch, l, seq]


def masked_adaptive_pool(x: Tensor, attention_mask: Tensor, num_bins: int, mode: str) -> Tensor:
    """Adaptive avg/max pooling of [batch, seq, m] over valid tokens to [batch, l, m]."""
    xc, lengths = compact_valid(x, attention_mask)
    if int(lengths.min()) < 1:
        raise ValueError("masked_adaptive_pool: an example has no valid token (all-pad row)")
    member = adaptive_bins(lengths, num_bins, xc.shape[1])  # [batch, l, seq]
    if mode == "avg":
        w = member.to(xc.dtype)
        return (w @ xc) / w.sum(-1, keepdim=True)  # [batch, l, m]
    if mode == "max":
        neg = torch.finfo(xc.dtype).min
        vals = xc.unsqueeze(1).masked_fill(~member.unsqueeze(-1), neg)  # [batch, l, seq, m]
        return vals.max(dim=2).values
    raise ValueError(f"pooling mode {mode!r}: choose 'avg' or 'max'")


class PoolingPromptGenerator(nn.Module):
    """APPG / MPPG: down-project every token, pool to l tokens, ReLU, up-project."""

    def __init__(self, num_virtual_tokens: int, hidden_size: int, bottleneck: int = 128,
                 dropout: float = 0.1, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"pooling mode {mode!r}: choose 'avg' or 'max'")
        self.l, self.mode = num_virtual_tokens, mode
        self.proj_down = nn.Linear(hidden_size, bottleneck)
        self.proj_up = nn.Linear(bottleneck, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, attention_mask: Tensor) -> Tensor:
        z = self.proj_down(h)  # [batch, seq, m]
        pooled = masked_adaptive_pool(z, attention_mask, self.l, self.mode)  # [batch, l, m]
        return self.dropout(self.proj_up(torch.relu(pooled)))  # [batch, l, hidden]


@dataclass(frozen=True)
class GeneratorSpec:
    """One prompt generator: its ``--generator`` name, how to build it and its default l.

    ``build(num_virtual_tokens, hidden_size, bottleneck, dropout, first_token, init_std)``
    returns an ``nn.Module`` whose ``forward(h [batch, seq, hidden], attention_mask
    [batch, seq])`` gives the prompt ``[batch, l, hidden]`` from hidden state PL-1."""

    name: str
    build: Callable[..., nn.Module]
    default_tokens: int
    help: str = ""


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    """Add a generator (one call: it is then a ``--generator`` choice of every command,
    with its default prompt length); a name already taken is an error."""
    if spec.name in GENERATOR_SPECS:
        raise ValueError(f"generator {spec.name!r} is registered already; choose another name")
    if spec.default_tokens < 0:
        raise ValueError(f"generator {spec.name!r}: default_tokens={spec.default_tokens} must be >= 0")
    named = DEFAULT_NUM_VIRTUAL_TOKENS.get(spec.name)
    if named is not None and named != spec.default_tokens:  # the torch-free table and the module must agree
        raise ValueError(f"generator {spec.name!r}: default_tokens={spec.default_tokens}, but "
                         f"lpt_probe.model.specs names it with l={named}; make them one")
    GENERATOR_SPECS[spec.name] = spec
    if spec.name not in GENERATORS:  # the built-in ones are named in lpt_probe.model.specs already
        GENERATORS.append(spec.name)
    DEFAULT_NUM_VIRTUAL_TOKENS[spec.name] = spec.default_tokens
    return spec


def build_generator(kind: str, num_virtual_tokens: int, hidden_size: int, bottleneck: int = 128,
                    dropout: float = 0.1, first_token: bool = True, init_std: float = 1.0) -> nn.Module:
    """The generator ``kind`` of the registry, built for a model of ``hidden_size``."""
    if kind not in GENERATOR_SPECS:
        raise ValueError(f"generator {kind!r} is unknown; choose one of {', '.join(GENERATORS)}")
    return GENERATOR_SPECS[kind].build(num_virtual_tokens, hidden_size, bottleneck, dropout, first_token, init_std)


register_generator(GeneratorSpec("none", lambda l, d, m, p, first, std: PlainPrompt(l, d, std), 20,
                                 "one learned l x d prompt for every input (LPT w/o PG)"))
register_generator(GeneratorSpec("npg", lambda l, d, m, p, first, std: NaivePromptGenerator(l, d, m, p, first), 5,
                                 "a bottleneck MLP on the first-token state"))
register_generator(GeneratorSpec("appg", lambda l, d, m, p, first, std: PoolingPromptGenerator(l, d, m, p, "avg"), 10,
                                 "down-project every token, average-pool to l, up-project"))
register_generator(GeneratorSpec("mppg", lambda l, d, m, p, first, std: PoolingPromptGenerator(l, d, m, p, "max"), 10,
                                 "down-project every token, max-pool to l, up-project"))
