"""PHM layers and the S-IDPG-PHM prompt generator (``--method s-idpg``).

``PHMLinear`` (parameterized hypercomplex multiplication, Zhang et al. 2021) is a linear
layer whose weight is a sum of n Kronecker products,

    W = sum_i A_i ⊗ B_i,   A_i [n, n],  B_i [out/n, in/n],   y = x W^T + b

so it holds n^3 + in * out / n + out parameters instead of in * out + out (n must divide
both sizes). ``PHMLinear.weight`` builds W, and the layer is exactly ``F.linear`` with it.

``SentencePromptGenerator`` is S-IDPG-PHM (Wu et al. 2022, "IDPG: an instance-dependent
prompt generation method"): a first pass of the frozen model gives a sentence
representation s of the text (the mean of the top layer's states over the real tokens,
or the first token, [CLS]/<s>; decoders read their last token instead), and a bottleneck
of two PHM layers turns it into an l x d prompt, p = W2 ReLU(W1 s + b1) + b2, which joins
at the input (prompt layer 1) for the second pass, the one that trains. It is NPG's shape
(``lpt_probe.model.generators``) with PHM layers and a different input: the frozen model's
top layer instead of the hidden state below the prompt. ``LatePromptModel`` runs the first
pass (``MethodSpec.first_pass``) and hands the generator its output.

Initialisation: A_i ~ N(0, 1/n) and B_i, b uniform in ±1/sqrt(in), so W has about the
variance of ``nn.Linear``'s default. Read ``PHMLinear``, then ``SentencePromptGenerator``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .generators import summary_index
from .specs import DEFAULT_PHM_N, SENTENCE_POOLINGS  # noqa: F401  (re-exported)

Tensor = torch.Tensor


def common_divisors(sizes) -> list[int]:
    g = 0
    for s in sizes:
        g = math.gcd(g, int(s))
    return [k for k in range(1, g + 1) if g % k == 0]


def check_phm_sizes(n: int, sizes: dict[str, int]) -> None:
    """n must divide every size of the PHM layers; otherwise say which fail and what fits."""
    if n < 1:
        raise ValueError(f"phm_n={n} must be >= 1 (the number of Kronecker products)")
    bad = [k for k, v in sizes.items() if v % n]
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise ValueError(f"phm_n={n} must divide every size of the PHM layers ({shown}); "
                         f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not divisible by {n}. "
                         f"Choose --phm-n from {common_divisors(sizes.values())} (or change the sizes)")


class PHMLinear(nn.Module):
    """A linear layer with weight sum_i A_i ⊗ B_i (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, n: int, bias: bool = True):
        super().__init__()
        check_phm_sizes(n, {"in_features": in_features, "out_features": out_features})
        self.in_features, self.out_features, self.n = in_features, out_features, n
        self.A = nn.Parameter(torch.randn(n, n, n) / math.sqrt(n))  # [n, n, n]: n matrices A_i
        bound = 1 / math.sqrt(in_features)
        self.B = nn.Parameter(torch.empty(n, out_features // n, in_features // n).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    @property
    def weight(self) -> Tensor:
        """W = sum_i kron(A_i, B_i). # [out, in]"""
        n, p, q = self.B.shape
        # kron(A_i, B_i)[a*p + c, b*q + d] = A_i[a, b] B_i[c, d]
        return torch.einsum("iab,icd->acbd", self.A, self.B).reshape(n * p, n * q)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    @staticmethod
    def num_parameters(in_features: int, out_features: int, n: int, bias: bool = True) -> int:
        return n ** 3 + in_features * out_features // n + (out_features if bias else 0)


def sentence_representation(h: Tensor, attention_mask: Tensor, pooling: str, first_token: bool) -> Tensor:
    """One vector per example from top-layer states [batch, seq, hidden]: the mean over
    real tokens, or the first token (encoders) / last real token (decoders). # [batch, hidden]"""
    if pooling == "mean":
        w = attention_mask.to(h.dtype).unsqueeze(-1)  # [batch, seq, 1]
        return (h * w).sum(1) / w.sum(1).clamp(min=1)
    if pooling == "cls":
        return h[torch.arange(h.shape[0], device=h.device), summary_index(attention_mask, first_token)]
    raise ValueError(f"sentence_pooling={pooling!r}: choose one of {', '.join(SENTENCE_POOLINGS)}")


class SentencePromptGenerator(nn.Module):
    """S-IDPG-PHM: a PHM bottleneck from the first pass's sentence vector to an l x d prompt."""

    def __init__(self, num_virtual_tokens: int, hidden_size: int, bottleneck: int = 128, n: int = DEFAULT_PHM_N,
                 pooling: str = "mean", dropout: float = 0.1, first_token: bool = True):
        super().__init__()
        if pooling not in SENTENCE_POOLINGS:
            raise ValueError(f"sentence_pooling={pooling!r}: choose one of {', '.join(SENTENCE_POOLINGS)}")
        check_phm_sizes(n, generator_sizes(num_virtual_tokens, hidden_size, bottleneck))
        self.l, self.d, self.pooling, self.first_token = num_virtual_tokens, hidden_size, pooling, first_token
        self.proj_down = PHMLinear(hidden_size, bottleneck, n)
        self.proj_up = PHMLinear(bottleneck, num_virtual_tokens * hidden_size, n)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h_top: Tensor, attention_mask: Tensor) -> Tensor:
        s = sentence_representation(h_top, attention_mask, self.pooling, self.first_token)  # [batch, hidden]
        p = self.proj_up(torch.relu(self.proj_down(s)))  # [batch, l * hidden]
        return self.dropout(p.view(-1, self.l, self.d))  # [batch, l, hidden]


def generator_sizes(num_virtual_tokens: int, hidden_size: int, bottleneck: int) -> dict[str, int]:
    """The sizes n must divide: hidden_size, the bottleneck, and l x hidden (the prompt)."""
    return {"hidden_size": hidden_size, "bottleneck": bottleneck,
            f"prompt l x hidden = {num_virtual_tokens}x{hidden_size}": num_virtual_tokens * hidden_size}
