"""The model-family table: where each Hugging Face family keeps its parts.

One ``FamilySpec`` per family (pyvene-style address table, no ``if model_type == ...``
chains, no forked modeling files). A spec knows, for a loaded model (bare or with an
LM/MLM head):

- ``base``: the bare transformer inside the model (``model.bert``, ``model.model`` ...);
- ``embed``: how to compute hidden state 0 from token ids;
- ``layers``: the ``nn.ModuleList`` of transformer layers;
- ``context``: per-forward inputs every layer needs (attention mask in the family's format,
  rotary position embeddings, relative positions), built for a given sequence;
- ``call_layer``: how to call one layer;
- ``final_norm`` and ``head``: the final norm (decoders) and the LM/MLM head, if any;
- ``max_positions``: the most tokens one input may have (the position table's size);
- ``adapter_sites``: where, inside one layer, the attention block and the feed-forward
  block project back to the hidden size (before the residual add), where Houlsby adapters
  go (``lpt_probe.model.adapters``); empty = the family cannot take adapters.

``lpt_probe.model.backbone.Backbone`` turns a spec into the "run layers k..L" primitive.
Read ``FamilySpec`` first, then one of the ``_bert_like`` / ``_llama`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

Tensor = torch.Tensor


def additive_mask(keep: Tensor, dtype: torch.dtype, causal: bool, queries: int | None = None) -> Tensor:
    """A [batch, 1, q, k] additive float mask from a [batch, k] 0/1 key mask.

    0 where a query may attend, the dtype's most negative finite value where not (finite,
    so a fully masked row never turns into NaN). ``causal`` adds the lower-triangular
    constraint (query i sees keys <= i). ``queries`` (a KV-cached step): the queries are the
    last ``q`` of the ``k`` keys, so query i sees keys <= k - q + i.
    """
    b, n = keep.shape
    q = n if queries is None else queries
    allowed = keep[:, None, None, :].bool().expand(b, 1, q, n)  # [batch, 1, q, k]
    if causal:
        tri = torch.ones(q, n, dtype=torch.bool, device=keep.device).tril(diagonal=n - q)
        allowed = allowed & tri
    out = torch.zeros(allowed.shape, dtype=dtype, device=keep.device)
    return out.masked_fill(~allowed, torch.finfo(dtype).min)


def _position_table(config, offset: int = 0) -> int | None:
    """``max_position_embeddings`` less ``offset`` rows that are not token positions."""
    n = getattr(config, "max_position_embeddings", None)
    return int(n) - offset if isinstance(n, int) and n > 0 else None


@dataclass(frozen=True)
class FamilySpec:
    """How to drive one Hugging Face model family layer by layer."""

    name: str
    model_types: tuple[str, ...]  # HF ``config.model_type`` values this entry serves
    causal: bool  # decoder (causal attention) or encoder
    base: Callable[[nn.Module], nn.Module]  # model -> bare transformer
    embed: Callable[..., Tensor]  # (base, input_ids, attention_mask, token_type_ids) -> h0
    layers: Callable[[nn.Module], nn.ModuleList]  # base -> layer list
    context: Callable[..., dict[str, Any]]  # (base, keep[b,n], position_ids[b,n], dtype) -> kwargs
    call_layer: Callable[..., Tensor]  # (layer, h, ctx, index, base) -> h
    final_norm: Callable[[nn.Module], nn.Module | None]  # base -> final norm or None
    head: Callable[[nn.Module], Callable[[Tensor], Tensor] | None]  # model -> logits fn or None
    first_token_is_cls: bool = True  # encoders: position 0 is [CLS]/<s>
    # layer-relative addresses of the attention-output and feed-forward-output projections
    adapter_sites: tuple[str, ...] = ()
    # layer-relative address of the self-attention module that returns (output, probabilities
    # [batch, heads, q, k]) in eager mode (``Backbone.capture_attention``)
    attention: str = ""
    # (ctx, blocked [batch, q, k] bool) -> ctx in which a query never attends a blocked key
    block: Callable[[dict, Tensor], dict] | None = None
    # config -> the most tokens one input may have (its position table), None = no fixed limit
    max_positions: Callable[[Any], int | None] = _position_table
    # decoders whose ``embed`` takes ``position_ids`` and whose ``call_layer`` passes
    # ``ctx["cache"]`` (a transformers ``Cache``) on: ``Backbone.run_layers_cached`` (KV cache)
    kv_cache: bool = False


def _roberta_positions(config) -> int | None:
    # positions start after the padding index: 514 rows hold 512 tokens
    return _position_table(config, offset=int(getattr(config, "pad_token_id", 0) or 0) + 1)


def _deberta_positions(config) -> int | None:
    # no absolute position table unless position_biased_input; relative buckets take any length
    return _position_table(config) if getattr(config, "position_biased_input", True) else None


def _attr(path: str) -> Callable[[Any], Any]:
    def get(obj: Any) -> Any:
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    return get


def _base_from(*names: str) -> Callable[[nn.Module], nn.Module]:
    def get(model: nn.Module) -> nn.Module:
        for name in names:
            inner = getattr(model, name, None)
            if isinstance(inner, nn.Module):
                return inner
        return model  # already the bare model

    return get


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


# --- encoders: BERT and RoBERTa share a layer interface ---------------------------------


def _bert_embed(base, input_ids, attention_mask, token_type_ids=None):
    return base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)


def _encoder_context(base, keep, position_ids, dtype):
    return {"attention_mask": additive_mask(keep, dtype, causal=False)}


def _plain_call(layer, h, ctx, index, base):
    return _first(layer(h, attention_mask=ctx["attention_mask"]))


def _head_module(*paths: str) -> Callable[[nn.Module], Callable[[Tensor], Tensor] | None]:
    def get(model: nn.Module):
        for path in paths:
            mod = _attr(path)(model)
            if isinstance(mod, nn.Module):
                return mod
        return None

    return get


# --- DeBERTa-v2/v3: 0/1 product mask, relative positions, optional conv at layer 0 -------


def _deberta_embed(base, input_ids, attention_mask, token_type_ids=None):
    return base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)


def _deberta_context(base, keep, position_ids, dtype):
    enc = base.encoder
    # Relative positions are rebuilt for the sequence as given (prompt included when one is
    # prepended): text-to-text distances are unchanged, the prompt sits before the text.
    dummy = torch.empty(keep.shape[0], keep.shape[1], 1, device=keep.device)
    return {
        "attention_mask": enc.get_attention_mask(keep.to(torch.long)),
        "relative_pos": enc.get_rel_pos(dummy),
        "rel_embeddings": enc.get_rel_embedding(),
        "keep": keep,
    }


def _deberta_call(layer, h, ctx, index, base):
    out = _first(
        layer(
            h,
            ctx["attention_mask"],
            relative_pos=ctx["relative_pos"],
            rel_embeddings=ctx["rel_embeddings"],
            output_attentions=ctx.get("output_attentions", False),  # its probabilities only on request
        )
    )
    conv = base.encoder.conv
    if index == 0 and conv is not None:
        out = conv(h, out, ctx["keep"])
    return out


def _block_additive(ctx: dict, blocked: Tensor) -> dict:
    """Additive [batch, 1, q, k] float masks: a blocked pair gets the dtype's most negative value."""
    mask = ctx["attention_mask"]
    return {**ctx, "attention_mask": mask.masked_fill(blocked[:, None], torch.finfo(mask.dtype).min)}


def _block_product(ctx: dict, blocked: Tensor) -> dict:
    """DeBERTa's 0/1 [batch, 1, q, k] product mask: a blocked pair becomes 0."""
    mask = ctx["attention_mask"]
    return {**ctx, "attention_mask": mask * (~blocked[:, None]).to(mask.dtype)}


def _deberta_head(model: nn.Module):
    if isinstance(getattr(model, "cls", None), nn.Module):
        return model.cls
    lm = getattr(model, "lm_predictions", None)
    if isinstance(lm, nn.Module):
        emb = model.deberta.embeddings.word_embeddings
        return lambda h: lm(h, emb)
    return None


# --- decoders ----------------------------------------------------------------------------


def _gpt2_embed(base, input_ids, attention_mask, token_type_ids=None, position_ids=None):
    n = input_ids.shape[1]
    pos = torch.arange(n, device=input_ids.device)[None, :] if position_ids is None else position_ids  # [1|b, seq]
    return base.drop(base.wte(input_ids) + base.wpe(pos))


def _cached(ctx: dict) -> dict:
    """The layer kwargs of a KV-cached step (``run_layers_cached``), none otherwise."""
    return {"cache": ctx["cache"], "use_cache": True} if "cache" in ctx else {}


def _causal_context(base, keep, position_ids, dtype):
    return {"attention_mask": additive_mask(keep, dtype, causal=True)}


def _gpt2_call(layer, h, ctx, index, base):
    return _first(layer(h, attention_mask=ctx["attention_mask"], **_cached(ctx)))


def _llama_embed(base, input_ids, attention_mask, token_type_ids=None, position_ids=None):
    return base.embed_tokens(input_ids)


def _llama_context(base, keep, position_ids, dtype):
    dummy = torch.empty(1, 1, 1, dtype=dtype, device=keep.device)
    return {
        "attention_mask": additive_mask(keep, dtype, causal=True),
        "position_ids": position_ids,
        "position_embeddings": base.rotary_emb(dummy, position_ids=position_ids),
    }


def _llama_call(layer, h, ctx, index, base):
    return _first(
        layer(
            h,
            attention_mask=ctx["attention_mask"],
            position_ids=ctx["position_ids"],
            position_embeddings=ctx["position_embeddings"],
            **_cached(ctx),
        )
    )


FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    FAMILIES[spec.name] = spec
    return spec


register_family(FamilySpec(
    name="bert", model_types=("bert",), causal=False,
    base=_base_from("bert"), embed=_bert_embed, layers=_attr("encoder.layer"),
    context=_encoder_context, call_layer=_plain_call, final_norm=lambda base: None,
    head=_head_module("cls"), adapter_sites=("attention.output.dense", "output.dense"),
    attention="attention.self", block=_block_additive,
))
register_family(FamilySpec(
    name="roberta", model_types=("roberta", "xlm-roberta", "camembert"), causal=False,
    base=_base_from("roberta"), embed=_bert_embed, layers=_attr("encoder.layer"),
    context=_encoder_context, call_layer=_plain_call, final_norm=lambda base: None,
    head=_head_module("lm_head"), adapter_sites=("attention.output.dense", "output.dense"),
    attention="attention.self", block=_block_additive, max_positions=_roberta_positions,
))
register_family(FamilySpec(
    name="deberta-v2", model_types=("deberta-v2",), causal=False,
    base=_base_from("deberta"), embed=_deberta_embed, layers=_attr("encoder.layer"),
    context=_deberta_context, call_layer=_deberta_call, final_norm=lambda base: None,
    head=_deberta_head, adapter_sites=("attention.output.dense", "output.dense"),
    attention="attention.self", block=_block_product, max_positions=_deberta_positions,
))
register_family(FamilySpec(
    name="gpt2", model_types=("gpt2",), causal=True,
    base=_base_from("transformer"), embed=_gpt2_embed, layers=_attr("h"),
    context=_causal_context, call_layer=_gpt2_call, final_norm=_attr("ln_f"),
    head=_head_module("lm_head"), first_token_is_cls=False, adapter_sites=("attn.c_proj", "mlp.c_proj"),
    attention="attn", block=_block_additive, kv_cache=True,
))
register_family(FamilySpec(
    name="llama", model_types=("llama", "mistral", "qwen2"), causal=True,
    base=_base_from("model"), embed=_llama_embed, layers=_attr("layers"),
    context=_llama_context, call_layer=_llama_call, final_norm=_attr("norm"),
    head=_head_module("lm_head"), first_token_is_cls=False,
    adapter_sites=("self_attn.o_proj", "mlp.down_proj"), attention="self_attn", block=_block_additive,
    kv_cache=True,
))


def family_for(model_or_config: Any) -> FamilySpec:
    """The family entry for a model (or its config); unknown -> error listing the known."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    known = ", ".join(f"{s.name} ({'/'.join(s.model_types)})" for s in FAMILIES.values())
    raise ValueError(
        f"model_type {model_type!r} is not in lpt_probe's model-family table. "
        f"Supported families: {known}. Add an entry with lpt_probe.model.families.register_family."
    )
