"""Late prompts outside lpt_probe: a peft-style folder, and a plain Hugging Face model that uses one.

Start at :class:`LatePrompt` (what a trained late prompt is, apart from its backbone), then
:func:`attach_late_prompt` (a plain ``AutoModelForMaskedLM`` / ``AutoModelForCausalLM`` /
``AutoModel`` that runs with it) and ``AttachedLatePrompt._run``, the forward it installs.

A folder written by ``LatePrompt.save_pretrained`` (the spirit of peft's
``adapter_config.json`` + ``adapter_model.safetensors``; written by ``lpt_probe.model.export``) holds

- ``late_prompt_config.json``: the ``LatePromptConfig`` fields (``prompt_layer``,
  ``generator``, ``num_virtual_tokens`` ...) at the top level, the read-out ``head_kind``
  and ``base_model``: the name, family, ``model_type``, class, depth, width and (from a run)
  the weights digest of the model the prompt was trained on;
- ``late_prompt_model.safetensors``: the trainable weights under ``LatePromptModel``'s
  names (``generator.*``, ``classifier.*`` for the linear head of encoders without an MLM
  head);
- ``late_prompt_task.json``: what using it needs besides weights: the template, its kind
  (``mlm``/``clm``), label names, label words and their token ids.

Attaching replaces the forward of the model's bare transformer (``model.bert``,
``model.model`` ... found through the family table) by one that drives the model through
``Backbone``: layers 1..PL-1 on the text, the prompt made from hidden state PL-1 and put in
front (positions 0..l-1), layers PL..L, the prompt positions dropped, the final norm. The
model's own head and ``generate`` run unchanged on top, so its logits at the text
positions equal ``LatePromptModel``'s. ``detach`` restores the original forward; nothing
else of the model is touched (its weights, flags and state dict stay as they were), so
its logits then equal the original ones bit for bit.

KV cache: a plain prompt (``generator="none"``) is the same for every input, so on the
decoder families with ``kv_cache`` in the family table (GPT-2, Llama) ``generate`` keeps
its cache: layers below PL cache the text's keys and values, layers PL..L the prompt's and
the text's, each new token runs once (``Backbone.run_layers_cached``), and greedy output
equals the uncached output. A generated prompt (npg/appg/mppg) depends on the whole input,
each generated token included, so keys and values above PL would go stale: attaching one
sets ``generation_config.use_cache=False`` and ``generate`` recomputes the sequence at
every step; a cache passed anyway is refused.

Limits, each refused with an error rather than computed wrongly: text positions 0..n-1 as in lpt_probe
(right padding; a left-padded batch in ``generate`` is refused: generate one sequence or
equal-length sequences at a time), ``input_ids`` only (no ``inputs_embeds``), no
attention probabilities. Only ``lpt`` and ``prompt-tuning`` prompts export: the other
methods change the backbone itself.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..compose import flat_fields
from ..store import DamagedFile, read_json_object
from .backbone import Backbone
from .export import CONFIG_NAME, FORMAT, TASK_NAME, WEIGHTS_NAME, export_parts, write_prompt_folder  # noqa: F401
from .families import FAMILIES
from .generators import build_generator
from .hub import push_to_hub
from .late_prompt import LatePromptConfig, LatePromptModel
from .loading import looks_like_path
from .prompt_checks import check_folder, check_model

Tensor = torch.Tensor
_MARK = "_lpt_probe_late_prompt"  # attribute of an attached bare transformer: its handle


@dataclass
class LatePrompt:
    """A trained late prompt: its config, its weights, the model and the task it was made for."""

    config: LatePromptConfig
    weights: dict[str, Tensor]  # LatePromptModel names: generator.*, classifier.*
    head_kind: str  # "lm" (the model's MLM/LM head) or "classifier" (a linear head, in ``weights``)
    base_model: dict[str, Any]  # name_or_path, family, model_type, model_class, num_hidden_layers, hidden_size
    task: dict[str, Any] = field(default_factory=dict)  # template, label words and their ids (see save_pretrained)

    # -- making one -------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: LatePromptModel, task=None, base_model_name: str | None = None) -> "LatePrompt":
        """From a trained ``LatePromptModel``; ``task``: its ``TaskSpec`` (adds template and words)."""
        return cls(**export_parts(model, task, base_model_name))

    @classmethod
    def from_run(cls, run) -> "LatePrompt":
        """From a run folder loaded by ``lpt_probe.runs.folders.load_run(folder)`` (a ``LoadedRun``):
        ``LatePrompt.from_run(load_run("artifacts/runs/trec-pl4-npg"))``."""
        prompt = cls.from_model(run.model, run.task, run.train_config.model)
        prompt.base_model["weights_sha256"] = run.model_info.get("identity", {}).get("weights_sha256")
        return prompt

    # -- the folder ---------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the three files (module docstring) into ``folder``; returns it."""
        return write_prompt_folder(folder, self.config, self.weights, self.head_kind, self.base_model, self.task)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None) -> "LatePrompt":
        """From a folder written by ``save_pretrained``, or a Hugging Face hub repository holding
        one; its weights and config are verified (``lpt_probe.model.prompt_checks``)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        folder = Path(name_or_path)
        if not folder.is_dir():
            if isinstance(name_or_path, Path) or looks_like_path(str(name_or_path)):
                raise FileNotFoundError(f"{name_or_path}: no such folder; give the folder LatePrompt.save_pretrained "
                                        f"wrote, or a hub repository id such as 'owner/name'")
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(name_or_path), revision=revision,
                                            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, TASK_NAME]))
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} holds no late prompt: {', '.join(missing)} missing (write one with "
                                    "LatePrompt.save_pretrained)")
        record = read_json_object(folder / CONFIG_NAME)
        fmt = record.get("format", 0)
        if isinstance(fmt, bool) or not isinstance(fmt, int):
            raise DamagedFile(f"{folder / CONFIG_NAME} is damaged (its format is {fmt!r}, expected {FORMAT}); export "
                              f"the prompt again")
        if fmt > FORMAT:
            raise ValueError(f"{folder / CONFIG_NAME} has format {fmt}; this lpt_probe reads up to {FORMAT}: upgrade "
                             f"lpt_probe")
        task = read_json_object(folder / TASK_NAME) if (folder / TASK_NAME).is_file() else {}
        try:  # verified first: the config is built only from what was exported
            with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
                metadata = f.metadata()
            check_folder(folder, WEIGHTS_NAME, record, task, metadata)
            weights = load_file(str(folder / WEIGHTS_NAME))
        except SafetensorError as exc:
            raise DamagedFile(f"{folder / WEIGHTS_NAME} is damaged ({exc}); export the prompt again") from None
        names = {f.name for f in flat_fields(LatePromptConfig)}  # its flat names, as to_dict writes them
        try:
            config = LatePromptConfig(**{k: v for k, v in record.items() if k in names})
        except TypeError as exc:  # a hand-written or older config of the wrong shape
            raise DamagedFile(f"{folder / CONFIG_NAME} is damaged ({exc}); export the prompt again") from None
        return cls(config, weights, record["head_kind"], record["base_model"], task)

    # -- using it -------------------------------------------------------------------------
    def render(self, *texts: str, mask_token: str | None = None) -> str:
        """The task's template filled with ``texts`` (and ``mask_token`` for a masked LM)."""
        if "template" not in self.task:
            raise ValueError("this late prompt was saved without its task (LatePrompt.from_model(model, task=...))")
        if self.task.get("template_kind") == "mlm" and mask_token is None:
            raise ValueError("a masked-LM template needs mask_token= (tokenizer.mask_token)")
        values = dict(zip(self.task["text_fields"], texts))
        return self.task["template"].format(**values, **({"mask": mask_token} if mask_token else {}))

    def build_generator(self, causal: bool | None = None) -> nn.Module:
        """The prompt generator with the trained weights (eval mode). ``causal`` (default: the
        base model's family) picks NPG's summary token: first for encoders, last for decoders."""
        c = self.config
        causal = FAMILIES[self.base_model["family"]].causal if causal is None else causal
        with torch.device("meta"):  # no random init: the trained weights are assigned below
            gen = build_generator(c.generator, c.prompt_tokens, int(self.base_model["hidden_size"]), c.bottleneck,
                                  c.generator_dropout, first_token=not causal, init_std=c.prompt_init_std)
        own = {k.removeprefix("generator."): v for k, v in self.weights.items() if k.startswith("generator.")}
        gen.load_state_dict(own, assign=True)
        return gen.eval()

    def classifier(self) -> nn.Linear | None:
        """The trained linear head (``head_kind == "classifier"``), else None."""
        if self.head_kind != "classifier":
            return None
        w, b = self.weights["classifier.weight"], self.weights["classifier.bias"]
        head = nn.Linear(w.shape[1], w.shape[0])
        head.load_state_dict({"weight": w, "bias": b})
        return head.eval()

    def label_logits(self, output, pred_positions: Tensor) -> Tensor:
        """Label logits [batch, num_labels] from an attached model's output at ``pred_positions``
        [batch]: the label words' logits (lm head) or the linear head on the last hidden state."""
        rows = torch.arange(pred_positions.shape[0], device=pred_positions.device)
        if self.head_kind == "lm":
            if getattr(output, "logits", None) is None:
                raise ValueError("this late prompt reads the model's MLM/LM head: load the model with it "
                                 "(AutoModelForMaskedLM / AutoModelForCausalLM)")
            return output.logits[rows, pred_positions][:, self.task["label_word_ids"]].float()
        h = output.last_hidden_state[rows, pred_positions]  # [batch, hidden]
        head = self.classifier().to(h.device)
        return head(h.float())

    def to_model(self, hf_model: nn.Module) -> LatePromptModel:
        """lpt_probe's own ``LatePromptModel`` with these weights around ``hf_model`` (which it
        freezes, as training does): the reference the attached model is tested against."""
        backbone = self.check(hf_model)
        model = LatePromptModel(backbone, LatePromptConfig(**self.config.to_dict()), int(self.task["num_labels"]),
                                self.task.get("label_word_ids"))
        own = dict(model.trainable_named_parameters())
        if set(own) != set(self.weights):
            raise ValueError(f"weights {sorted(self.weights)} do not fit the prompt config (expects {sorted(own)})")
        with torch.no_grad():
            for k, v in self.weights.items():
                own[k].copy_(v)
        return model.eval()

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str | None = None, revision: str | None = None) -> str:
        """Upload the folder ``save_pretrained`` writes, with a model card, to the hub repository
        ``repo_id`` (created if missing); returns the commit URL (``lpt_probe.model.hub``)."""
        return push_to_hub(self, repo_id, private=private, token=token, commit_message=commit_message,
                           revision=revision)

    def check(self, hf_model: nn.Module, strict: bool = True) -> Backbone:
        """``Backbone(hf_model)`` if the model is of the family, depth and width this prompt was
        trained for and (``strict``) has its weights and a head it reads; else one error naming
        the mismatch (``lpt_probe.model.prompt_checks.check_model``)."""
        return check_model(hf_model, self.head_kind, self.base_model, strict)

    def attach(self, hf_model: nn.Module, strict: bool = True) -> "AttachedLatePrompt":
        return attach_late_prompt(hf_model, self, strict)


class AttachedLatePrompt:
    """The handle of an attached late prompt: ``detach()``, or ``with attach_late_prompt(...):``."""

    def __init__(self, hf_model: nn.Module, prompt: LatePrompt, strict: bool = True):
        self.prompt = prompt
        self.backbone = prompt.check(hf_model, strict)
        self.base: nn.Module = self.backbone.base
        if _MARK in self.base.__dict__:
            raise ValueError(f"{type(hf_model).__name__} already has a late prompt attached (prompt_layer="
                             f"{self.base.__dict__[_MARK].prompt.config.prompt_layer}); detach it first "
                             "(handle.detach() or detach_late_prompt(model))")
        self.generator = prompt.build_generator(self.backbone.is_causal)
        self.model = hf_model
        self._saved_forward = self.base.__dict__.get("forward")  # another tool's wrapper, if any
        self._signature = inspect.signature(self.base.forward)
        gen_config = getattr(hf_model, "generation_config", None)
        self._saved_use_cache = getattr(gen_config, "use_cache", None)
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions  # heavy: on use

        self._output = BaseModelOutputWithPoolingAndCrossAttentions

        def forward(*args, **kwargs):  # keeps the original's name and signature for inspect (pipelines)
            return self._run(*args, **kwargs)

        self._forward = functools.wraps(self.base.forward)(forward)
        object.__setattr__(self.base, "forward", self._forward)
        object.__setattr__(self.base, _MARK, self)
        # see the module docstring: only a plain prompt on a kv_cache family keeps the KV cache
        self.cacheable = prompt.config.generator == "none" and self.backbone.family.kv_cache
        if gen_config is not None and not self.cacheable:
            gen_config.use_cache = False

    @property
    def attached(self) -> bool:
        return self.base.__dict__.get(_MARK) is self

    def detach(self) -> nn.Module:
        """Restore the model's own forward (a second call does nothing); returns the model."""
        if not self.attached:
            return self.model
        if self.base.__dict__.get("forward") is not self._forward:
            raise RuntimeError(f"the forward of {type(self.base).__name__} was replaced after the late prompt was "
                               "attached; undo that first, then detach")
        del self.base.__dict__[_MARK]
        if self._saved_forward is None:
            del self.base.__dict__["forward"]
        else:
            object.__setattr__(self.base, "forward", self._saved_forward)
        if getattr(self.model, "generation_config", None) is not None:
            self.model.generation_config.use_cache = self._saved_use_cache
        return self.model

    def __enter__(self) -> "AttachedLatePrompt":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def _run(self, *args, **kwargs):
        """The bare transformer's forward with the late prompt (module docstring)."""
        bound = self._signature.bind(*args, **kwargs).arguments
        for p in self._signature.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                bound.update(bound.pop(p.name, {}))
        ids, mask = bound.get("input_ids"), bound.get("attention_mask")
        _refuse(bound, ids)
        cache = bound.get("cache")
        cache = bound.get("past_key_values") if cache is None else cache
        if cache is None and bound.get("use_cache") and self.cacheable:
            from transformers import DynamicCache  # heavy: on use

            cache = DynamicCache(config=self.model.config)
        if cache is not None:
            return self._run_cached(ids, mask, bound, cache)
        bb, start = self.backbone, self.prompt.config.start_state
        mask = torch.ones_like(ids) if mask is None else mask
        _check_positions(bound.get("position_ids"), mask)
        asked = bound.get("output_hidden_states")  # None: the config's setting, as HF models do
        all_states = bool(getattr(self.model.config, "output_hidden_states", False) if asked is None else asked)
        h = bb.embed(ids, mask, bound.get("token_type_ids"))  # hidden state 0 # [batch, seq, hidden]
        low = bb.run_layers(h, mask, 0, start, return_all=all_states)
        h_low = (low[-1] if low else h) if all_states else low  # hidden state PL-1
        prompt = self._prompt(h_low, mask)
        b, n, l = ids.shape[0], ids.shape[1], prompt.shape[1]
        full = torch.cat([prompt, h_low], dim=1)  # [batch, l + seq, hidden]
        full_mask = torch.cat([torch.ones(b, l, dtype=mask.dtype, device=mask.device), mask], dim=1)
        positions = torch.arange(l + n, device=h.device).expand(b, l + n)  # prompt 0..l-1, text l..
        up = bb.run_layers(full, full_mask, start, None, positions, return_all=all_states)
        top = bb.final((up[-1] if all_states else up)[:, l:])  # text positions only, normed as HF reports
        pooler = getattr(self.base, "pooler", None)  # BertModel's, when the bare encoder is the model
        pooled = pooler(top) if isinstance(pooler, nn.Module) else None
        states = (h, *low, *(s[:, l:] for s in up[:-1]), top) if all_states else None  # HF's L + 1
        return self._output(last_hidden_state=top, pooler_output=pooled, hidden_states=states)

    def _prompt(self, h_low: Tensor, mask: Tensor) -> Tensor:
        """The prompt from hidden state PL-1, as ``LatePromptModel.insert`` makes it. # [batch, l, hidden]"""
        gen = self.generator
        if next(gen.parameters()).device != h_low.device:
            gen.to(h_low.device)
        gen.train(self.base.training)
        return gen(h_low.float(), mask).to(h_low.dtype)

    def _run_cached(self, ids: Tensor, mask: Tensor | None, bound: dict, cache: Any):
        """One KV-cached step (module docstring): the new tokens ``ids`` after the ``past`` text
        tokens in ``cache``; the prompt runs (and is cached above PL) on the first step only."""
        if not self.cacheable:
            raise ValueError("an attached late prompt with a generated prompt (generator="
                             f"{self.prompt.config.generator!r}) runs without a KV cache (the prompt depends on the "
                             "whole input); call generate(..., use_cache=False), as attaching sets in generation_config")
        if bound.get("output_hidden_states"):
            raise ValueError("output_hidden_states with a KV cache is not supported with an attached late prompt; "
                             "call the model without a cache (use_cache=False) to get the hidden states")
        bb, start, l = self.backbone, self.prompt.config.start_state, self.prompt.config.num_virtual_tokens
        b, q = ids.shape
        past = cache.get_seq_length(0) if start > 0 else max(cache.get_seq_length(0) - l, 0)  # text tokens seen
        mask = torch.ones(b, past + q, dtype=torch.long, device=ids.device) if mask is None else mask
        if mask.shape[1] != past + q:
            raise ValueError(f"attention_mask covers {mask.shape[1]} tokens, but the cache holds {past} and the "
                             f"step brings {q}: pass the mask of the whole sequence")
        if not bool(mask.bool().all()):
            raise ValueError("a padded batch is not supported with a KV cache and an attached late prompt; "
                             "generate one sequence (or equal-length ones) at a time")
        positions = torch.arange(past, past + q, device=ids.device).expand(b, q)  # text positions, as lpt_probe
        given = bound.get("position_ids")
        if given is not None and not torch.equal(given.expand(b, q), positions):
            raise ValueError("position_ids other than the text positions past..past+q-1 are not supported with an "
                             "attached late prompt")
        h = bb.embed(ids, mask[:, past:], bound.get("token_type_ids"), position_ids=positions)
        h_low = bb.run_layers_cached(h, mask, 0, start, positions, cache) if start else h  # hidden state PL-1
        ones = torch.ones(b, l, dtype=mask.dtype, device=mask.device)
        if past == 0:  # first step: the prompt joins at PL and its keys and values stay in the cache above it
            prompt = self._prompt(h_low, mask)
            up = bb.run_layers_cached(torch.cat([prompt, h_low], dim=1), torch.cat([ones, mask], dim=1), start,
                                      bb.num_hidden_layers, torch.arange(l + q, device=ids.device).expand(b, l + q),
                                      cache)[:, l:]
        else:
            up = bb.run_layers_cached(h_low, torch.cat([ones, mask], dim=1), start, bb.num_hidden_layers,
                                      positions + l, cache)
        return self._output(last_hidden_state=bb.final(up), cache=cache)


def _refuse(bound: dict, ids: Tensor | None) -> None:
    if ids is None:
        raise ValueError("a model with an attached late prompt needs input_ids (inputs_embeds are not supported: "
                         "the lower layers start from the token ids)")
    for name in ("inputs_embeds", "encoder_hidden_states"):
        if bound.get(name) is not None:
            raise ValueError(f"{name} is not supported with an attached late prompt; pass input_ids")
    if bound.get("output_attentions"):
        raise ValueError("output_attentions is not supported with an attached late prompt; lpt_probe's "
                         "Backbone.capture_attention records attention probabilities")


def _check_positions(position_ids: Tensor | None, mask: Tensor) -> None:
    """Text positions are 0..n-1 (right padding), as in lpt_probe; refuse others."""
    if position_ids is None:
        return
    keep = mask.bool()
    want = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if not torch.equal(position_ids.expand_as(mask)[keep], want[keep]):
        raise ValueError("position_ids other than 0..n-1 at the real tokens (a left-padded batch?) are not "
                         "supported with an attached late prompt, which numbers text positions as lpt_probe "
                         "does: pad on the right, or generate one sequence (or equal-length ones) at a time")


def attach_late_prompt(hf_model: nn.Module, prompt: LatePrompt | str | os.PathLike,
                       strict: bool = True) -> AttachedLatePrompt:
    """Make ``hf_model`` (a plain Hugging Face model of a family in the family table) run with
    ``prompt`` (a ``LatePrompt``, or a folder / hub id for ``LatePrompt.from_pretrained``).

    Returns the handle: ``handle.detach()`` restores the model; ``with attach_late_prompt(m, p):``
    detaches on exit. Attaching an attached model is refused, and (``strict``, the default) so
    is a model with other weights than the prompt was trained on, or a head it does not read
    (``lpt_probe.model.prompt_checks``)."""
    if not isinstance(prompt, LatePrompt):
        prompt = LatePrompt.from_pretrained(prompt)
    return AttachedLatePrompt(hf_model, prompt, strict)


def detach_late_prompt(hf_model: nn.Module) -> nn.Module:
    """Remove the late prompt attached to ``hf_model`` (nothing attached: nothing to do)."""
    handle = Backbone(hf_model).base.__dict__.get(_MARK)
    return hf_model if handle is None else handle.detach()
