"""The methods a late prompt is compared with, in one harness (``--method``).

A method says which parameters train and where trainable vectors enter the frozen
model. Everything else is shared: task, template, label words, head, data splits,
seeds, optimiser and step budget, so a comparison isolates the method. One
``MethodSpec`` per method in ``METHODS`` (a table, not ``if method == ...`` chains):

=============== ========================================================= ============
method          what trains                                               lower cache
=============== ========================================================= ============
lpt             the late prompt (or its generator) at prompt layer PL     hidden PL-1
prompt-tuning   a learned prompt at PL=1 (Lester et al. 2021)             hidden 0
model-tuning    every weight of the model                                 no
bitfit          the bias terms of the transformer (Ben Zaken et al. 2022) no
lora            low-rank updates of attention (peft ``LoraConfig``)       no
p-tuning-v2     deep prompts: key/value prefixes at every layer           no
                (peft ``PrefixTuningConfig``, Liu et al. 2022)
prefix-tuning   the same, reparameterised by an MLP (Li and Liang 2021)   no
adapter         Houlsby adapters after the attention and the feed-forward  no
                block of every layer (``--adapter-layers``: which layers)
adapterdrop     the same adapters in layers K..L only (Rücklé et al.      hidden K-1
                2021); default the upper half, K = L/2+1
s-idpg          S-IDPG-PHM (Wu et al. 2022): a PHM generator makes an     hidden 0
                instance-dependent input prompt (PL=1) from a frozen
                first pass's sentence vector
=============== ========================================================= ============

Adapters are this package's own (``lpt_probe.model.adapters``: wired through the family
table's ``adapter_sites``; the AdapterHub ``adapters`` library pins transformers 4.57), as
are PHM layers and the S-IDPG generator (``lpt_probe.model.phm``). Options that only some
methods have live in each method's own options class, registered with the method with its
defaults (``MethodSpec.options``: ``LoraOptions`` for lora, ``AdapterOptions`` for adapter
and adapterdrop, ``SentencePromptOptions`` for s-idpg; ``METHOD_OPTIONS`` lists their
fields); a config holds its method's (``LatePromptConfig.options``), and giving one to
another method is an error.

Learning rates differ by method as in their papers (``MethodSpec.default_lr``: 1e-3 for
prompts and the S-IDPG generator, 2e-5 model tuning, 5e-4 BitFit, LoRA, adapters and
prefix tuning, 5e-3 P-tuning v2); the CLI uses them when ``--lr`` is not given, and
records the value used in ``config.json``.

Encoders without an MLM head (the ``minilm`` preset) read labels with a linear classifier
on the prediction-position state; it trains with every method and is counted as tunable.

LoRA and deep prompts come from ``peft``, not re-implemented. LoRA layers are injected into
the backbone's own modules, so ``Backbone.run_layers`` drives them unchanged. Deep prompts
live in Hugging Face's key/value cache, so those two methods run the peft-wrapped bare
transformer end to end (``MethodSpec.full_forward``) and read its output at the prediction
position; peft's prefix tuning does not support DeBERTa-v2 (a clear error says so).

The frozen backbone runs in eval mode for every method unless ``--backbone-dropout``
(the same regime for all, so dropout is not what a comparison measures). Methods that
train backbone weights (model tuning, BitFit) need fp32 weights: ``--dtype bf16/fp16``
is refused for them; LoRA and Houlsby adapters, generators and prompts are kept in fp32
over a low-precision backbone.

The table itself (``MethodSpec``, ``METHODS``, ``register_method``, ``get_method``) lives in
``lpt_probe.model.specs``, without torch, so that ``--help`` lists the methods without
loading them; its entries name the hooks below (``attach``, ``make_generator``) as
``"lpt_probe.model.methods:<hook>"`` references, imported when a model is built. This
module re-exports the table: ``register_method`` from here or from ``specs`` is the same.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .adapters import adapter_layers, attach_adapters
from .backbone import Backbone
from .phm import SentencePromptGenerator
from .specs import METHOD_OPTIONS, METHODS, MethodSpec, get_method, register_method  # noqa: F401  (re-exported)


def unfreeze_all(owner, backbone: Backbone, config) -> None:
    """Model tuning: every weight of the model trains."""
    for p in backbone.model.parameters():
        p.requires_grad_(True)


def unfreeze_biases(owner, backbone: Backbone, config) -> None:
    """BitFit: every bias of the bare transformer (embeddings, attention, MLP, norms)."""
    n = 0
    for name, p in backbone.base.named_parameters():
        if name.endswith("bias"):
            p.requires_grad_(True)
            n += 1
    if n == 0:
        raise ValueError(f"bitfit: {type(backbone.base).__name__} has no bias terms to train "
                         "(e.g. Llama-style models); choose another method")


def inject_lora(owner, backbone: Backbone, config) -> None:
    """Inject peft LoRA layers into the backbone's attention (peft's default targets)."""
    import peft
    from peft.tuners.tuners_utils import cast_adapter_dtype

    opts = config.options  # LoraOptions
    lora = peft.LoraConfig(r=opts.lora_rank, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout)
    with warnings.catch_warnings():  # GPT-2's Conv1D: peft sets fan_in_fan_out itself and says so
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        try:
            peft.inject_adapter_in_model(lora, backbone.base)
        except ValueError as exc:
            raise ValueError(f"lora: peft could not find target modules in {type(backbone.base).__name__} "
                             f"({exc}); this family is not in peft's default LoRA targets") from exc
    cast_adapter_dtype(backbone.base, "default", autocast_adapter_dtype=True)  # fp32 adapters
    for name, p in backbone.base.named_parameters():
        p.requires_grad_("lora_" in name)


def _prefix_model(backbone: Backbone, config, projection: bool) -> nn.Module:
    import peft

    if backbone.family.name == "deberta-v2":
        raise ValueError(f"method {config.method!r}: peft's prefix tuning does not support DeBERTa-v2 "
                         "(it has no key/value cache); use lora, bitfit, model-tuning or lpt")
    cfg = peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=config.num_virtual_tokens,
                                  prefix_projection=projection, encoder_hidden_size=config.bottleneck)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = peft.get_peft_model(backbone.base, cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("prompt_encoder."))
    return model


def attach_p_tuning_v2(owner, backbone: Backbone, config) -> nn.Module:
    """P-tuning v2: key/value prefixes at every layer (peft, no reparameterisation)."""
    return _prefix_model(backbone, config, projection=False)


def attach_prefix_tuning(owner, backbone: Backbone, config) -> nn.Module:
    """Prefix tuning: the same prefixes, made by an MLP (peft ``prefix_projection=True``)."""
    return _prefix_model(backbone, config, projection=True)


def attach_method_adapters(owner, backbone: Backbone, config) -> None:
    """Houlsby adapters in the configured layers (``lpt_probe.model.adapters``)."""
    layers = adapter_layers(config.options.adapter_layers, backbone.num_hidden_layers)  # AdapterOptions
    attach_adapters(backbone, layers, config.options.adapter_size, config.method)


def sentence_generator(config, hidden_size: int, first_token: bool) -> nn.Module:
    opts = config.options  # SentencePromptOptions
    return SentencePromptGenerator(config.num_virtual_tokens, hidden_size, config.bottleneck, opts.phm_n,
                                   opts.sentence_pooling, config.generator_dropout, first_token)


def low_precision(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)
