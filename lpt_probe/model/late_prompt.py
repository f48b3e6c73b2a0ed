"""The late-prompt model: a frozen backbone, a prompt inserted at layer PL, a verbalizer.

Read ``LatePromptConfig`` (what is trained), then ``LatePromptModel.forward``:

1. hidden state PL-1 of the text, from the backbone (under ``no_grad``: nothing below PL
   trains) or from the lower-layer cache (``lpt_probe.model.cache``);
2. the prompt [batch, l, hidden] from the generator (``lpt_probe.generators``), prepended
   to it: positions 0..l-1 of the sequence above PL; the attention mask gains l ones, so
   every query attends to the prompt and to the real tokens and pad keys stay hidden (in
   a decoder the causal mask lets text attend to the prompt placed before it);
3. layers PL..L through ``Backbone.run_layers``, then the head at the prediction position
   only (shifted by l): the frozen MLM/LM head restricted to the label words, or a linear
   classifier for encoders without an MLM head.

PL=1 is classic prompt tuning: the prompt is concatenated to the embedding output (after
its LayerNorm and dropout) and gets no position embedding and no LayerNorm, as in the
authors' RoBERTa code. The authors' ``add_prompt_layer=k`` is our ``prompt_layer=k+1``.

Positions above PL for rotary (Llama-style) models: the prompt takes positions 0..l-1 and
the text l..l+n-1, as if the prompt had been at the input. Rotary attention depends only
on relative positions, so text-to-text interactions are exactly those of the frozen model;
the prompt sits "before" the text. DeBERTa's relative positions are rebuilt the same way.
Absolute-position models (BERT, RoBERTa, GPT-2) add positions only at the embeddings, so
the text keeps its own and the prompt has none.
"""

from __future__ import annotations

import copy
from numbers import Integral
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..layers import middle_prompt_layer, start_state
from .adapters import (
    adapter_layers,
    check_layers_syntax,
    first_adapted_layer,
    pin_layers,
)
from .backbone import Backbone
from .generators import DEFAULT_NUM_VIRTUAL_TOKENS, GENERATORS, build_generator
from .methods import METHOD_OPTIONS, METHODS, get_method, low_precision
from .phm import SENTENCE_POOLINGS, check_phm_sizes, generator_sizes

Tensor = torch.Tensor
HEADS = ("auto", "lm", "classifier")
DEFAULT_PREFIX_TOKENS = 20  # p-tuning-v2 / prefix-tuning: prefix length at every layer
LOSSES = ("vocab", "label_words")
PROMPT_INITS = ("normal", "states")


@dataclass
class LatePromptConfig:
    """What a late prompt is: where it goes, how it is made, how it is read out.

    ``method`` picks the late prompt (``lpt``, the default) or a baseline trained in the
    same harness (``lpt_probe.model.methods``): for ``prompt-tuning`` the prompt layer is 1 and
    the generator ``none``; ``model-tuning``, ``bitfit`` and ``lora`` insert no prompt
    (``num_virtual_tokens`` 0); for ``p-tuning-v2`` / ``prefix-tuning``
    ``num_virtual_tokens`` is the length of the key/value prefix at every layer.
    ``adapter`` / ``adapterdrop`` take ``adapter_size`` and ``adapter_layers``, ``s-idpg``
    (an input prompt, l = 5 by default) ``phm_n`` and ``sentence_pooling``; those stay None
    for the other methods, and ``check_against`` pins ``adapter_layers`` to layer numbers.
    """

    method: str = field(default="lpt", metadata={
        "help": "lpt (late prompt) or a baseline in the same harness: " + "; ".join(
            f"{m.name}: {m.help}" for m in METHODS.values() if m.name != "lpt"),
        "choices": lambda: list(METHODS)})
    prompt_layer: int | None = field(default=None, metadata={
        "help": "PL, 1-based: the prompt joins the input of layer PL (1 = prompt tuning); default: the middle "
                "layer L//2+1 for lpt (set once the model is known), 1 for the other methods"})
    generator: str = field(default="none", metadata={"help": "prompt generator", "choices": GENERATORS})
    num_virtual_tokens: int | None = field(
        default=None, metadata={"help": "prompt length l; default 20 (none), 5 (npg), 10 (appg/mppg)"}
    )
    bottleneck: int = field(default=128, metadata={"help": "generator bottleneck m"})
    generator_dropout: float = field(default=0.1, metadata={"help": "dropout on the generated prompt",
                                                              "cli": False})
    prompt_init_std: float = field(default=1.0, metadata={"help": "std of the plain prompt's N(0, std) init",
                                                          "cli": False})
    prompt_init: str = field(default="normal", metadata={
        "help": "the plain prompt's initialisation: normal = N(0, prompt_init_std) (the default); states = the "
                "hidden states PL-1 of l text tokens drawn from the training examples (the analogue, at the "
                "prompt's layer, of Lester et al.'s vocabulary init: the prompt starts at the scale of the states "
                "it joins)", "choices": PROMPT_INITS})
    head: str = field(default="auto", metadata={"help": "lm (frozen MLM/LM head), classifier, or auto",
                                                "choices": HEADS})
    loss: str = field(
        default="vocab",
        metadata={"help": "lm head: 'vocab' = CE over the whole vocabulary at the prediction "
                          "position (the authors'), or 'label_words' = CE over the label words",
                  "choices": LOSSES},
    )
    lora_rank: int = field(default=8, metadata={"help": "lora: rank r of the update"})
    lora_alpha: float = field(default=16.0, metadata={"help": "lora: scaling alpha (update x alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "lora: dropout on the adapter input",
                                                         "cli": False})
    adapter_size: int | None = field(default=None, metadata={
        "help": "adapter, adapterdrop: bottleneck size m of each adapter (default 64)"})
    adapter_layers: str | None = field(default=None, metadata={
        "help": "adapter, adapterdrop: the layers (1-based) with adapters: all, upper-half (L/2+1..L), K- (K..L), "
                "K-J or a comma list such as 1,3,5-6; default all (adapter), upper-half (adapterdrop, which "
                "takes K..L only)"})
    phm_n: int | None = field(default=None, metadata={
        "help": "s-idpg: n of its PHM layers (weights are sums of n Kronecker products; n must divide the hidden "
                "size, --bottleneck and l x hidden; default 16)"})
    sentence_pooling: str | None = field(default=None, metadata={
        "help": "s-idpg: the frozen first pass's sentence vector: mean (over the tokens) or cls (the first "
                "token; the last for decoders); default mean", "choices": SENTENCE_POOLINGS})

    def __post_init__(self):
        spec = get_method(self.method)
        if self.prompt_layer is None and (spec.input_prompt or not spec.late_prompt):
            self.prompt_layer = 1  # the input, or no prompt at all: nothing to choose
        if self.generator not in GENERATORS:
            raise ValueError(f"generator={self.generator!r} is unknown; choose one of {', '.join(GENERATORS)}")
        if self.method != "lpt" and self.generator != "none":
            own = " to choose (it builds its own)" if spec.make_generator else ""
            raise ValueError(f"method={self.method!r} has no prompt generator{own} (got generator={self.generator!r}); "
                             "a generated prompt is --method lpt (at --prompt-layer 1 for the input)")
        if spec.input_prompt and self.prompt_layer not in (None, 1):
            raise ValueError(f"method={self.method!r} puts the prompt at the input (prompt_layer=1), got "
                             f"prompt_layer={self.prompt_layer}; a later prompt is --method lpt")
        if not spec.late_prompt and not spec.full_forward and self.num_virtual_tokens:
            raise ValueError(f"method={self.method!r} inserts no prompt; drop num_virtual_tokens="
                             f"{self.num_virtual_tokens} (or use --method lpt)")
        if not spec.late_prompt and self.prompt_layer not in (None, 1):
            raise ValueError(f"method={self.method!r} has no prompt layer (the whole stack runs); got "
                             f"prompt_layer={self.prompt_layer}: leave it at 1")
        if self.num_virtual_tokens is None:
            self.num_virtual_tokens = ((spec.default_tokens or DEFAULT_NUM_VIRTUAL_TOKENS[self.generator])
                                       if spec.late_prompt else DEFAULT_PREFIX_TOKENS if spec.full_forward else 0)
        if spec.full_forward and self.num_virtual_tokens < 1:
            raise ValueError(f"method={self.method!r}: num_virtual_tokens={self.num_virtual_tokens} must be >= 1 "
                             "(the prefix length at every layer)")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank={self.lora_rank} must be >= 1")
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck={self.bottleneck} (--bottleneck) must be >= 1 (the generator's hidden size m)")
        if self.num_virtual_tokens < 0 or (self.generator != "none" and self.num_virtual_tokens < 1):
            raise ValueError(f"num_virtual_tokens={self.num_virtual_tokens}: must be >= 1 (>= 0 for 'none', an "
                             f"empty prompt: the frozen model itself, which training refuses)")
        pl = self.prompt_layer
        if pl is not None and (isinstance(pl, bool) or not isinstance(pl, Integral) or pl < 1):
            raise ValueError(f"prompt_layer={pl!r}: give a whole number >= 1 (1-based; 1 = prompt tuning), or None "
                             "for the middle layer")
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}: choose one of {', '.join(HEADS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.prompt_init not in PROMPT_INITS:
            raise ValueError(f"prompt_init={self.prompt_init!r}: choose one of {', '.join(PROMPT_INITS)}")
        if self.prompt_init != "normal" and (not spec.late_prompt or self.generator != "none"):
            raise ValueError(f"prompt_init={self.prompt_init!r} initialises a plain late prompt; method="
                             f"{self.method!r} with generator={self.generator!r} has none (use --prompt-init normal)")
        self._method_options(spec)

    def _method_options(self, spec) -> None:
        """Options of some methods only (``METHOD_OPTIONS``): an error for the others, the
        method's default when not given, then checked."""
        own = spec.option_defaults
        for name in METHOD_OPTIONS:
            value = getattr(self, name)
            if name not in own and value is not None:
                users = ", ".join(m.name for m in METHODS.values() if name in m.option_defaults)
                raise ValueError(f"method={self.method!r} has no {name} (an option of {users}); drop "
                                 f"--{name.replace('_', '-')} {value} (or choose one of those methods)")
            if name in own and value is None:
                setattr(self, name, own[name])
        if self.adapter_size is not None and self.adapter_size < 1:
            raise ValueError(f"adapter_size={self.adapter_size} must be >= 1 (the adapters' bottleneck size)")
        if self.adapter_layers is not None:
            check_layers_syntax(self.adapter_layers)
        if self.phm_n is not None and self.phm_n < 1:
            raise ValueError(f"phm_n={self.phm_n} must be >= 1 (the number of Kronecker products)")
        if self.sentence_pooling is not None and self.sentence_pooling not in SENTENCE_POOLINGS:
            raise ValueError(f"sentence_pooling={self.sentence_pooling!r}: choose one of {', '.join(SENTENCE_POOLINGS)}")

    def pin(self, num_hidden_layers: int) -> "LatePromptConfig":
        """Write depth-relative settings as numbers for a model of ``num_hidden_layers``
        layers (``adapter_layers`` 'upper-half' -> '4-6'), in place; returns self."""
        if self.adapter_layers is not None:
            self.adapter_layers = pin_layers(self.adapter_layers, num_hidden_layers)
        return self

    def resolve(self, num_hidden_layers: int) -> "LatePromptConfig":
        """``prompt_layer`` None -> the middle layer L//2+1 (the commands' default), in place; returns self."""
        self.prompt_layer = middle_prompt_layer(num_hidden_layers) if self.prompt_layer is None else self.prompt_layer
        return self

    def check_against(self, backbone: Backbone) -> None:
        L = backbone.num_hidden_layers
        self.resolve(L)
        if not 1 <= self.prompt_layer <= L:
            raise ValueError(f"prompt_layer={self.prompt_layer} is out of range for a model with "
                             f"num_hidden_layers={L}: choose 1..{L} (1 = classic prompt tuning)")
        if self.head == "lm" and not backbone.has_lm_head:
            raise ValueError(f"head='lm' but {type(backbone.model).__name__} has no LM/MLM head; "
                             "use head='classifier' (or 'auto')")
        self.pin(L)  # the run's config records the adapted layers themselves
        spec = get_method(self.method)
        if spec.top_adapters:
            layers = adapter_layers(self.adapter_layers, L)
            if layers != list(range(layers[0], L + 1)):
                raise ValueError(f"method={self.method!r} keeps adapters in every layer from K up (the layers below "
                                 f"run once, from the cache); adapter_layers={self.adapter_layers!r} is not K..{L}: "
                                 f"give --adapter-layers {layers[0]}- (any other set of layers is --method adapter)")
        if self.phm_n is not None:
            check_phm_sizes(self.phm_n, generator_sizes(self.prompt_tokens, backbone.hidden_size, self.bottleneck))

    @property
    def start_state(self) -> int:
        """The hidden state the prompt joins (PL-1; ``lpt_probe.layers``): layers PL..L run on it,
        and the lower-layer cache holds it. With adapters: the first adapted layer's input."""
        if self.adapter_layers is not None:
            return first_adapted_layer(self.adapter_layers) - 1
        if self.prompt_layer is None:
            raise ValueError("prompt_layer=None (the middle layer) is set once the model is known: call config.resolve"
                             "(num_hidden_layers) or check_against(backbone) first, or give prompt_layer")
        return start_state(self.prompt_layer)

    @property
    def prompt_tokens(self) -> int:
        """Length l of the prompt inserted at the prompt layer (0 for methods without one)."""
        return int(self.num_virtual_tokens) if get_method(self.method).late_prompt else 0

    def resolved_head(self, backbone: Backbone) -> str:
        if self.head != "auto":
            return self.head
        return "lm" if backbone.has_lm_head else "classifier"

    def to_dict(self) -> dict:
        """The fields, less the method options that do not apply (None) and ``prompt_init`` at
        its default: adding an option leaves the run keys of those that do not use it as they
        were."""
        return {k: v for k, v in asdict(self).items()
                if not (k in METHOD_OPTIONS and v is None) and not (k == "prompt_init" and v == "normal")}


class LatePromptModel(nn.Module):
    """A frozen backbone with a trainable late prompt (and, where used, a classifier).

    With a baseline method (``config.method``, see ``lpt_probe.model.methods``) it trains that
    method's parameters instead; such methods get a copy of the backbone unless
    ``copy_backbone=False`` hands the model over (benchmarks measuring memory do).
    """

    def __init__(self, backbone: Backbone, config: LatePromptConfig, num_labels: int,
                 label_word_ids: list[int] | None = None, copy_backbone: bool = True):
        super().__init__()
        config.check_against(backbone)
        self.method = get_method(config.method)
        if self.method.attach is not None and copy_backbone:
            # Baselines change the backbone (trained weights, injected LoRA layers): work on a
            # copy, so the caller's model (shared by a sweep's cells) stays the frozen model.
            backbone = Backbone(copy.deepcopy(backbone.model))
        if self.method.trains_backbone and low_precision(backbone.dtype):
            raise ValueError(f"method={config.method!r} trains backbone weights, which needs fp32 weights; "
                             f"the backbone is {backbone.dtype}: use --dtype fp32")
        self.backbone = backbone.freeze()
        self.config = config
        self.head_kind = config.resolved_head(backbone)
        d = backbone.hidden_size
        # The late prompt (l = 0 for methods without one: then it inserts nothing).
        if self.method.make_generator is not None:  # a method's own generator (S-IDPG's PHM one)
            self.generator = self.method.make_generator(config, d, not backbone.is_causal)
        else:
            self.generator = build_generator(
                config.generator, config.prompt_tokens, d, config.bottleneck,
                config.generator_dropout, first_token=not backbone.is_causal, init_std=config.prompt_init_std,
            )
        # Baselines: unfreeze backbone weights or attach peft modules (lpt_probe.model.methods).
        attached = self.method.attach(self, backbone, config) if self.method.attach else None
        self.prefix_model = attached if self.method.full_forward else None
        if self.head_kind == "lm":
            if not label_word_ids or len(label_word_ids) != num_labels:
                raise ValueError(f"the lm head needs {num_labels} label word ids, got {label_word_ids}")
            self.register_buffer("label_word_ids", torch.tensor(label_word_ids, dtype=torch.long))
            self.classifier = None
        else:
            self.label_word_ids = None
            self.classifier = nn.Linear(d, num_labels)
        self.num_labels = num_labels
        self.backbone_dropout = False  # True: frozen layers keep dropout active (authors' regime)

    # -- which parameters train -----------------------------------------------------
    def trainable_named_parameters(self):
        for name, p in self.named_parameters():
            if p.requires_grad and p.numel():  # (an empty prompt, l = 0, has nothing to train)
                yield name, p

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self.trainable_named_parameters()}

    def num_trainable(self) -> int:
        return sum(p.numel() for _, p in self.trainable_named_parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        # The backbone stays in eval mode (deterministic, cacheable) for every method unless
        # the authors' regime with dropout in the backbone layers was asked for.
        self.backbone.train(mode and self.backbone_dropout)
        return self

    # -- forward ---------------------------------------------------------------------
    @property
    def l(self) -> int:
        return self.config.prompt_tokens

    def lower(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Hidden state PL-1 of the text (no prompt; ``config.start_state``). # [batch, seq, hidden]"""
        with torch.set_grad_enabled(not self.method.cacheable and torch.is_grad_enabled()):
            h = self.backbone.embed(input_ids, attention_mask, token_type_ids)
            return self.backbone.run_layers(h, attention_mask, 0, self.config.start_state)

    @torch.no_grad()
    def first_pass(self, h_low: Tensor, attention_mask: Tensor) -> Tensor:
        """The frozen model's top hidden state L of the text alone (normed, as HF reports it),
        from hidden state PL-1: what S-IDPG's generator reads. # [batch, seq, hidden]"""
        top = self.backbone.run_layers(h_low, attention_mask, self.config.start_state)
        return self.backbone.final(top)

    def insert(self, h_low: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Prepend the prompt to hidden state PL-1: (h, mask, prompt) with l more positions."""
        source = self.first_pass(h_low, attention_mask) if self.method.first_pass else h_low
        # The prompt's parameters stay fp32; it joins a low-precision backbone in its dtype.
        prompt = self.generator(source.float(), attention_mask).to(h_low.dtype)  # [batch, l, hidden]
        b = h_low.shape[0]
        ones = torch.ones(b, prompt.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
        return torch.cat([prompt, h_low], dim=1), torch.cat([ones, attention_mask], dim=1), prompt

    def upper(self, h_low: Tensor, attention_mask: Tensor, pred_positions: Tensor,
              return_states: bool = False, blocked: dict[int, Tensor] | None = None) -> dict[str, Tensor]:
        """From hidden state PL-1 (text only) to label logits at the prediction position.

        ``blocked`` (opt-in, default None = the plain forward): layer index -> [batch, q, k]
        bool over the l + seq positions, pairs that layer must not attend
        (``Backbone.run_layers``); ``lpt_probe.analysis.influence`` hides the prompt with it."""
        h, mask, prompt = self.insert(h_low, attention_mask)
        n = h.shape[1]
        positions = torch.arange(n, device=h.device).expand(h.shape[0], n)  # [batch, l + seq]
        start = self.config.start_state
        out: dict[str, Tensor] = {"prompt": prompt}
        if return_states:
            states = self.backbone.run_layers(h, mask, start, None, positions, return_all=True, blocked=blocked)
            out["upper_states"] = states  # hidden states PL..L, prompt included
            top = states[-1] if states else h
        else:
            top = self.backbone.run_layers(h, mask, start, None, positions, blocked=blocked)
        idx = pred_positions + prompt.shape[1]
        h_pred = top[torch.arange(top.shape[0], device=top.device), idx]  # [batch, hidden]
        return self.read_out(h_pred, out)

    def read_out(self, h_pred: Tensor, out: dict[str, Tensor], normed: bool = False) -> dict[str, Tensor]:
        """Label logits from the top-layer state at the prediction position. # [batch, hidden]"""
        if self.head_kind == "lm":
            vocab = self.backbone.lm_logits(h_pred, normed=normed).float()  # [batch, vocab]: that position only
            out["vocab_logits"] = vocab
            out["logits"] = vocab[:, self.label_word_ids]  # [batch, num_labels]
        else:
            out["logits"] = self.classifier(h_pred.float())
        return out

    def full_forward(self, input_ids: Tensor, attention_mask: Tensor, pred_positions: Tensor,
                     token_type_ids: Tensor | None = None) -> dict[str, Tensor]:
        """Deep-prompt methods: the peft-wrapped bare transformer end to end, then the head."""
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        top = self.prefix_model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        h_pred = top[torch.arange(top.shape[0], device=top.device), pred_positions]  # [batch, hidden]
        return self.read_out(h_pred, {}, normed=True)  # HF's last state is already normed

    def forward(self, input_ids=None, attention_mask=None, pred_positions=None, token_type_ids=None,
                h_low=None, return_states=False) -> dict[str, Tensor]:
        if self.prefix_model is not None:
            if h_low is not None or return_states:
                raise ValueError(f"method {self.config.method!r} runs the whole model: it takes no cached "
                                 "lower states and returns no per-layer states")
            return self.full_forward(input_ids, attention_mask, pred_positions, token_type_ids)
        if h_low is None:
            h_low = self.lower(input_ids, attention_mask, token_type_ids)
        return self.upper(h_low, attention_mask, pred_positions, return_states)

    def save_pretrained(self, folder: str | Path, task=None, base_model_name: str | None = None) -> Path:
        """A peft-style folder that plain transformers code can use (``lpt_probe.model.interop``:
        config, weights, and with ``task`` (its ``TaskSpec``) the template and label words)."""
        from .interop import LatePrompt  # interop builds on this module: imported on use, not at the top

        return LatePrompt.from_model(self, task, base_model_name).save_pretrained(folder)

    def loss(self, out: dict[str, Tensor], labels: Tensor) -> Tensor:
        if self.head_kind == "lm" and self.config.loss == "vocab":
            return nn.functional.cross_entropy(out["vocab_logits"], self.label_word_ids[labels])
        return nn.functional.cross_entropy(out["logits"], labels)
