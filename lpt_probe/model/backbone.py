"""The partial forward: run transformer layers k..L from a given hidden state.

``Backbone`` wraps any model in the family table (``lpt_probe.model.families``) and offers one
first-class operation, ``run_layers(h, attention_mask, start=k, stop=L)``: continue the
forward pass from hidden state ``k`` to hidden state ``stop``. Everything else is built on
it: ``hidden_states`` (all of 0..L, as HF's ``output_hidden_states``), prompt insertion
(run 0..PL-1, prepend the prompt, run PL-1..L), the lower-layer cache and probing.

Layer numbering (see the package docstring): hidden state 0 is the embedding output and
hidden state k the output of layer k. ``run_layers(h, m, start=k, stop=j)`` takes hidden
state k and applies layers k+1..j (1-based), i.e. ``layers[k:j]``.

Decoders (GPT-2, Llama) apply a final norm before the LM head. Hugging Face reports the
*normed* state as the last entry of ``hidden_states``; we follow it so that our hidden
state L is the same tensor users know (``hidden_states(...)[L]`` = norm(output of layer
L)), while ``run_layers`` never normalises: ``final(h)`` does, and the head calls it.

Sequences are right-padded; ``attention_mask`` is the usual [batch, seq] 0/1 key mask.
For rotary families ``position_ids`` default to ``0..seq-1``; callers that prepend a
prompt pass positions covering prompt and text (see ``lpt_probe.model.late_prompt``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from .families import FamilySpec, additive_mask, family_for

Tensor = torch.Tensor


class Backbone(nn.Module):
    """A frozen-or-not HF model driven layer by layer through its family entry."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.family: FamilySpec = family_for(model)
        self.base = self.family.base(model)
        self.layers: nn.ModuleList = self.family.layers(self.base)
        if self.layers is None:
            raise ValueError(
                f"could not find the layer list of {type(model).__name__} with the "
                f"{self.family.name!r} family entry; is this model of that family?"
            )
        self._norm = self.family.final_norm(self.base)
        self._head = self.family.head(model)
        self._capturing: dict | None = None  # set by capture_attention

    # -- facts ----------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def num_hidden_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def is_causal(self) -> bool:
        return self.family.causal

    @property
    def template_kind(self) -> str:
        """Which template the verbalizer renders for this model: "clm" (decoders) or "mlm"."""
        return "clm" if self.is_causal else "mlm"

    @property
    def max_positions(self) -> int | None:
        """The most tokens one input may have (the family's ``max_positions``; None: no limit)."""
        return self.family.max_positions(self.config)

    @property
    def has_lm_head(self) -> bool:
        return self._head is not None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- the primitive ---------------------------------------------------------------
    def embed(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
              position_ids: Tensor | None = None) -> Tensor:
        """Hidden state 0: the embedding output. # [batch, seq, hidden]

        ``position_ids`` (a KV-cached step of a ``kv_cache`` family: the new tokens' positions)."""
        if position_ids is None:
            return self.family.embed(self.base, input_ids, attention_mask, token_type_ids)
        return self.family.embed(self.base, input_ids, attention_mask, token_type_ids, position_ids=position_ids)

    def context(self, attention_mask: Tensor, position_ids: Tensor | None = None, dtype=None) -> dict:
        """Per-forward layer inputs (mask format, rotary/relative positions) for a sequence."""
        b, n = attention_mask.shape
        if position_ids is None:
            position_ids = torch.arange(n, device=attention_mask.device).expand(b, n)  # [batch, seq]
        return self.family.context(self.base, attention_mask, position_ids, dtype or self.dtype)

    def run_layers(
        self,
        h: Tensor,
        attention_mask: Tensor,
        start: int = 0,
        stop: int | None = None,
        position_ids: Tensor | None = None,
        return_all: bool = False,
        blocked: dict[int, Tensor] | None = None,
    ) -> Tensor | list[Tensor]:
        """Continue the forward pass from hidden state ``start`` to hidden state ``stop``.

        ``h``: hidden state ``start`` [batch, seq, hidden]; ``attention_mask`` [batch, seq].
        Returns hidden state ``stop`` (un-normed), or with ``return_all`` the list of hidden
        states ``start+1..stop``. ``blocked``: layer index (0-based, the layer that makes
        hidden state index+1) -> [batch, q, k] bool of query-key pairs that layer must not
        attend (e.g. text queries to prompt keys: the prompt hidden from that layer).
        """
        L = self.num_hidden_layers
        stop = L if stop is None else stop
        if not 0 <= start <= stop <= L:
            raise ValueError(
                f"run_layers needs 0 <= start <= stop <= num_hidden_layers={L}; "
                f"got start={start}, stop={stop}"
            )
        if h.shape[:2] != attention_mask.shape:
            raise ValueError(
                f"hidden state {tuple(h.shape)} and attention_mask {tuple(attention_mask.shape)} "
                "disagree on [batch, seq]"
            )
        outs: list[Tensor] = []
        if start == stop:
            return outs if return_all else h
        ctx = self.context(attention_mask, position_ids, h.dtype)
        if self._capturing is not None:
            ctx["output_attentions"] = True  # families that return probabilities only on request
        for index in range(start, stop):
            layer_ctx = ctx
            if blocked and index in blocked:
                if self.family.block is None:
                    raise ValueError(f"the {self.family.name!r} family entry has no `block` rule: it cannot hide "
                                     "keys from queries; add one to its FamilySpec")
                layer_ctx = self.family.block(ctx, blocked[index].to(attention_mask.device))
            if self._capturing is not None:
                self._capturing["index"] = index
            h = self.family.call_layer(self.layers[index], h, layer_ctx, index, self.base)
            if return_all:
                outs.append(h)
        return outs if return_all else h

    def run_layers_cached(self, h: Tensor, key_mask: Tensor, start: int, stop: int, position_ids: Tensor,
                          cache: Any) -> Tensor:
        """``run_layers`` for one step of KV-cached decoding (decoders with ``kv_cache`` only).

        ``h``: hidden state ``start`` of the step's new positions [batch, q, hidden];
        ``key_mask`` [batch, k]: every key the step's layers see (the ``k - q`` already in
        ``cache`` for these layers, then the ``q`` new ones); ``position_ids`` [batch, q]: the
        new positions. Each layer appends its keys and values to ``cache`` (a transformers
        ``Cache``, indexed by the layer's own index) and its queries attend causally to all of
        them. Returns hidden state ``stop`` of the new positions."""
        if not self.family.kv_cache:
            raise ValueError(f"the {self.family.name!r} family entry has no KV-cache support (kv_cache=False)")
        q, k = h.shape[1], key_mask.shape[1]
        if k < q or position_ids.shape[-1] != q:
            raise ValueError(f"a cached step needs keys k >= queries q and q position ids; got k={k}, q={q}, "
                             f"position_ids {tuple(position_ids.shape)}")
        ctx = self.family.context(self.base, key_mask[:, k - q:], position_ids, h.dtype)  # rotary at the new positions
        ctx["attention_mask"] = additive_mask(key_mask, h.dtype, causal=True, queries=q)
        ctx["cache"] = cache
        for index in range(start, stop):
            h = self.family.call_layer(self.layers[index], h, ctx, index, self.base)
        return h

    def release_layers(self, stop: int) -> int:
        """Drop the weights of layers 0..stop-1 (the ones that make hidden states 1..stop)
        once nothing will run them again: a sweep training from the lower-layer cache calls
        it as its cells move up (``lpt_probe.runs.executors.run_local``). Each released layer
        becomes a :class:`ReleasedLayer` that refuses to run. Returns the number of
        parameters freed by this call."""
        if not 0 <= stop <= self.num_hidden_layers:
            raise ValueError(f"release_layers needs 0 <= stop <= {self.num_hidden_layers}; got {stop}")
        freed = 0
        for index in range(stop):
            if not isinstance(self.layers[index], ReleasedLayer):
                freed += sum(p.numel() for p in self.layers[index].parameters())
                self.layers[index] = ReleasedLayer(index)
        return freed

    @property
    def released_layers(self) -> int:
        """How many of the lowest layers :meth:`release_layers` has dropped."""
        return sum(isinstance(layer, ReleasedLayer) for layer in self.layers)

    @contextlib.contextmanager
    def capture_attention(self) -> Iterator[dict[int, Tensor]]:
        """Inside the block, every layer that ``run_layers`` calls records its attention
        probabilities: yields {layer index: [batch, heads, q, k]} (the last call's).

        The model runs its eager attention path meanwhile (SDPA and flash kernels return no
        probabilities; eager computes the same softmax(QK^T) explicitly), through a forward
        hook on each layer's self-attention module (``FamilySpec.attention``): no modeling
        file is changed, and the implementation is restored on exit."""
        if not self.family.attention:
            raise ValueError(f"the {self.family.name!r} family entry names no attention module; add "
                             "`attention=` to its FamilySpec")
        probs: dict[int, Tensor] = {}
        state = {"index": None}
        config = self.model.config
        saved = config._attn_implementation
        handles = []

        def hook(module, args, output):
            weights = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(f"{type(module).__name__} returned no attention probabilities in eager mode")
            probs[state["index"]] = weights.detach()

        for layer in self.layers:
            module = _get_path(layer, self.family.attention)
            if module is None:
                raise ValueError(f"{self.family.name}: no module {self.family.attention!r} in "
                                 f"{type(layer).__name__}; fix `attention=` in its FamilySpec")
            handles.append(module.register_forward_hook(hook))
        config._attn_implementation = "eager"
        self._capturing = state
        try:
            yield probs
        finally:
            self._capturing = None
            config._attn_implementation = saved
            for h in handles:
                h.remove()

    def final(self, h: Tensor) -> Tensor:
        """The final norm of decoder families (identity for encoders)."""
        return h if self._norm is None else self._norm(h)

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> list[Tensor]:
        """All hidden states 0..L, equal to HF's ``output_hidden_states`` (see module doc)."""
        h0 = self.embed(input_ids, attention_mask, token_type_ids)
        states = [h0] + self.run_layers(h0, attention_mask, 0, self.num_hidden_layers, return_all=True)
        states[-1] = self.final(states[-1])
        return states

    def lm_logits(self, h_last: Tensor, normed: bool = False) -> Tensor:
        """LM/MLM head logits for top-layer states [..., hidden] -> [..., vocab].

        ``h_last`` is un-normed (``run_layers`` output) unless ``normed`` says the final
        norm was applied already (HF's own last hidden state)."""
        if self._head is None:
            raise ValueError(
                f"{type(self.model).__name__} has no LM/MLM head; load it with its head "
                "(e.g. AutoModelForMaskedLM / AutoModelForCausalLM) or use head='classifier'"
            )
        return self._head(h_last if normed else self.final(h_last))

    def layer_stack(self, start: int, stop: int | None = None, trainable: bool = False) -> nn.Module:
        """Copies of layers ``start+1..stop`` as one module ``(h, key_mask) -> h`` that runs
        them from hidden state ``start`` (e.g. a transformer probe initialised from the
        backbone's own top layers). The copies train when ``trainable``; the original
        layers are untouched."""
        stop = self.num_hidden_layers if stop is None else stop
        if not 0 <= start < stop <= self.num_hidden_layers:
            raise ValueError(f"layer_stack needs 0 <= start < stop <= {self.num_hidden_layers}; got {start}, {stop}")
        return LayerStack(self, start, stop, trainable)

    def freeze(self) -> "Backbone":
        """Freeze every backbone weight (requires_grad=False)."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self


class ReleasedLayer(nn.Module):
    """Stands in for a layer whose weights :meth:`Backbone.release_layers` dropped."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, *args, **kwargs):
        raise RuntimeError(
            f"layer {self.index} of this model was released (its weights dropped) after the sweep cells "
            "that needed it had trained from the lower-layer cache; load the model again "
            "(lpt_probe.runs.run.prepare) to run the lower layers"
        )


def _get_path(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


class LayerStack(nn.Module):
    """Copies of a backbone's layers ``start+1..stop``, run from hidden state ``start``
    (see ``Backbone.layer_stack``). ``key_mask`` [batch, seq] is True/1 at real tokens."""

    def __init__(self, backbone: Backbone, start: int, stop: int, trainable: bool = False):
        super().__init__()
        import copy

        self.start, self.stop = start, stop
        self.layers = nn.ModuleList(copy.deepcopy(backbone.layers[i]) for i in range(start, stop))
        for p in self.layers.parameters():
            p.requires_grad_(trainable)
        self._family = backbone.family
        # the bare model builds each forward's context (rotary / relative positions); kept
        # unregistered so the stack's parameters and state dict are its own layers only
        object.__setattr__(self, "_base", backbone.base)
        self._dtype = backbone.dtype

    def forward(self, h: Tensor, key_mask: Tensor) -> Tensor:
        keep = key_mask.long()
        b, n = keep.shape
        positions = torch.arange(n, device=keep.device).expand(b, n)  # [batch, seq]
        ctx = self._family.context(self._base, keep, positions, h.dtype)
        for i, layer in enumerate(self.layers):
            h = self._family.call_layer(layer, h, ctx, self.start + i, self._base)
        return h
