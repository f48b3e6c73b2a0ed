"""The late-prompt model: a frozen backbone, a prompt inserted at layer PL, a verbalizer.

Read ``LatePromptConfig`` (what is trained; ``lpt_probe.model.config``, no torch, re-exported
here), then ``LatePromptModel.forward``:

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
from pathlib import Path

import torch
from torch import nn

from .backbone import Backbone
from .config import (  # noqa: F401  (the config and its constants, re-exported from their torch-free module)
    DEFAULT_PREFIX_TOKENS,
    HEADS,
    LOSSES,
    PROMPT_INITS,
    LatePromptConfig,
)
from .export import export_parts, write_prompt_folder
from .generators import build_generator
from .methods import get_method, low_precision

Tensor = torch.Tensor


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
        (``Backbone.run_layers``); ``lpt_probe.analysis.influence.study`` hides the prompt with it."""
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
        """A peft-style folder that plain transformers code can use (``lpt_probe.model.export``,
        read back by ``lpt_probe.model.interop.LatePrompt``: config, weights, and with ``task``
        (its ``TaskSpec``) the template and label words)."""
        return write_prompt_folder(folder, **export_parts(self, task, base_model_name))

    def loss(self, out: dict[str, Tensor], labels: Tensor) -> Tensor:
        if self.head_kind == "lm" and self.config.loss == "vocab":
            return nn.functional.cross_entropy(out["vocab_logits"], self.label_word_ids[labels])
        return nn.functional.cross_entropy(out["logits"], labels)
