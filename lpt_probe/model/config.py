"""``LatePromptConfig``: what a late prompt is, with its constants, and no torch.

A config dataclass in the style of peft's ``PromptTuningConfig``: one field per setting with
its help text (the command-line flags are generated from them, ``lpt_probe.commands.cli``), checks in
``__post_init__``, saved as JSON beside a run. It lives apart from the model
(``lpt_probe.model.late_prompt``, which re-exports it) so that ``--help`` and building a
config import no torch: the methods and generators it checks against are the torch-free
tables of ``lpt_probe.model.specs``.
"""

from __future__ import annotations

from dataclasses import asdict, field, fields, replace
from numbers import Integral
from typing import TYPE_CHECKING, Any, ClassVar

from ..compose import OWN, Flat, collected, composed, flat_fields, via
from ..layers import (
    adapter_layers,
    first_adapted_layer,
    middle_prompt_layer,
    pin_layers,
    start_state,
)
from .specs import DEFAULT_NUM_VIRTUAL_TOKENS, GENERATORS, METHODS, OPTION_CLASSES, LoraOptions, get_method

if TYPE_CHECKING:
    from .backbone import Backbone

HEADS = ("auto", "lm", "classifier")
DEFAULT_PREFIX_TOKENS = 20  # p-tuning-v2 / prefix-tuning: prefix length at every layer
LOSSES = ("vocab", "label_words")
PROMPT_INITS = ("normal", "states")
KEYED_LORA = LoraOptions()  # what every run key holds for lora's options when its method has none (to_dict)


@composed
class LatePromptConfig:
    """What a late prompt is: where it goes, how it is made, how it is read out.

    ``method`` picks the late prompt (``lpt``, the default) or a baseline trained in the
    same harness (``lpt_probe.model.methods``): for ``prompt-tuning`` the prompt layer is 1 and
    the generator ``none``; ``model-tuning``, ``bitfit`` and ``lora`` insert no prompt
    (``num_virtual_tokens`` 0); for ``p-tuning-v2`` / ``prefix-tuning``
    ``num_virtual_tokens`` is the length of the key/value prefix at every layer.
    ``lora`` takes ``lora_rank``, ``lora_alpha`` and ``lora_dropout``, ``adapter`` /
    ``adapterdrop`` ``adapter_size`` and ``adapter_layers``, ``s-idpg`` (an input prompt,
    l = 5 by default) ``phm_n`` and ``sentence_pooling``; ``check_against`` pins
    ``adapter_layers`` to layer numbers.

    Those are each method's own options: ``options`` holds the chosen method's (an instance
    of the options class registered with it, ``MethodSpec.options``: ``LoraOptions``,
    ``AdapterOptions``, ``SentencePromptOptions``; None for a method without), built from the
    flat keywords and flags, which keep their names (``LatePromptConfig(method="lora",
    lora_rank=4)``, ``--lora-rank 4``; ``lpt_probe.compose``).
    """

    FLAT: ClassVar[dict[str, Flat]] = {
        **{name: OWN for name in ("method", "prompt_layer", "generator", "num_virtual_tokens", "bottleneck",
                                  "generator_dropout", "prompt_init_std", "prompt_init", "head", "loss")},
        **{f.name: via("options", holder=cls) for cls in OPTION_CLASSES for f in fields(cls)},
    }

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
    options: Any = collected()  # the method's own options (MethodSpec.options): LoraOptions, ... or None

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
        """``options`` as the method's own options object: the given values (a dict of flat
        names, or an options object) over the method's defaults (``MethodSpec.options``),
        checked by its class. Another method's option is an error, unless left at its
        default (the flags give every option; a saved config of 0.2.0 holds lora's)."""
        given = self.options if isinstance(self.options, dict) else (
            asdict(self.options) if self.options is not None else {})
        mine = spec.option_defaults
        for name, value in given.items():
            holder = next((c for c in OPTION_CLASSES if name in c.__dataclass_fields__), None)
            if holder is None:
                raise TypeError(f"LatePromptConfig got an unexpected option {name!r}")
            if name not in mine and value is not None and value != holder.__dataclass_fields__[name].default:
                users = ", ".join(m.name for m in METHODS.values() if name in m.option_defaults)
                raise ValueError(f"method={self.method!r} has no {name} (an option of {users}); drop "
                                 f"--{name.replace('_', '-')} {value} (or choose one of those methods)")
        self.options = None if spec.options is None else replace(
            spec.options, **{k: v for k, v in given.items() if k in mine and v is not None})

    def pin(self, num_hidden_layers: int) -> "LatePromptConfig":
        """Write depth-relative settings as numbers for a model of ``num_hidden_layers``
        layers (``adapter_layers`` 'upper-half' -> '4-6'), in place; returns self."""
        layers = getattr(self.options, "adapter_layers", None)
        if layers is not None:
            self.options = replace(self.options, adapter_layers=pin_layers(layers, num_hidden_layers))
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
            layers = adapter_layers(self.options.adapter_layers, L)
            if layers != list(range(layers[0], L + 1)):
                raise ValueError(f"method={self.method!r} keeps adapters in every layer from K up (the layers below "
                                 f"run once, from the cache); adapter_layers={self.options.adapter_layers!r} is not "
                                 f"K..{L}: give --adapter-layers {layers[0]}- (any other set of layers is --method "
                                 "adapter)")
        phm_n = getattr(self.options, "phm_n", None)
        if phm_n is not None:
            from .phm import check_phm_sizes, generator_sizes  # here: torch (phm's layers), with a backbone only

            check_phm_sizes(phm_n, generator_sizes(self.prompt_tokens, backbone.hidden_size, self.bottleneck))

    @property
    def start_state(self) -> int:
        """The hidden state the prompt joins (PL-1; ``lpt_probe.layers``): layers PL..L run on it,
        and the lower-layer cache holds it. With adapters: the first adapted layer's input."""
        layers = getattr(self.options, "adapter_layers", None)
        if layers is not None:
            return first_adapted_layer(layers) - 1
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
        """The config flat, as run keys and ``prompt_config.json`` hold it: the fields and the
        method's options under their flat names, less ``prompt_init`` at its default, so
        adding an option leaves the run keys of those that do not use it as they were. lora's
        options were every config's fields up to 0.2.0, so every key holds them: a method
        without them keeps lora's defaults there."""
        values = {**asdict(KEYED_LORA), **(asdict(self.options) if self.options is not None else {})}
        out = {}
        for f in flat_fields(LatePromptConfig):
            if f.owner == "options" and f.name not in values:
                continue  # another method's option
            value = values[f.name] if f.owner == "options" else getattr(self, f.name)
            if not (f.name == "prompt_init" and value == "normal"):
                out[f.name] = value
        return out
