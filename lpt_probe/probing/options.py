"""A probe family's own options, and what a study asks the probe about them.

Beyond its hyperparameter grid (chosen on dev, ``parse_probe_grid``) a probe family can
have options a study sets once: the transformer probe's depth, width, initialisation,
readout and which positions it reads (:class:`TransformerProbeOptions`). The linear and
MLP probes have none (:class:`ProbeOptions`). A family names its options class in its
``Options`` attribute; :func:`~.probes.probe_options` builds the chosen family's options
from a config's flat ``probe_<option>`` flags (``MIOptions.probe_layers`` is ``--probe-layers``,
the transformer probe's ``layers``), and the options check themselves, naming the flag.

Start at :class:`ProbeOptions`: its methods are every question ``lpt_probe.analysis.mi.study``
asks a probe (constructor arguments, what a cached piece's key holds, whether its probes
need the live backbone, which hidden states a prompt changes for it, what it reads), so
the analysis asks the probe instead of branching on its options.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, Callable, ClassVar

from ..layers import start_state

__all__ = ["ProbeOptions", "TransformerProbeOptions"]


def _count(value: Any) -> bool:
    """Whether ``value`` is an integer >= 1 (not a bool)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class ProbeOptions:
    """A vector probe's options (linear, mlp): none of its own; the base of every family's.

    ``default_mdl`` / ``default_permutations``: a study's defaults for ``--mdl`` and
    ``--control-permutations`` with this probe (each MDL code and each permutation refits it).
    """

    default_mdl: ClassVar[bool] = True
    default_permutations: ClassVar[int] = 3

    @classmethod
    def from_flags(cls, flags: Any) -> "ProbeOptions":
        """The options from ``flags``' ``probe_<option>`` attributes (e.g. an ``MIOptions``)."""
        return cls(**{f.name: getattr(flags, f"probe_{f.name}") for f in fields(cls)})

    def as_flags(self) -> dict[str, Any]:
        """The options as flat flags, as checked (``--probe-width 0`` reads as None)."""
        return {f"probe_{f.name}": getattr(self, f.name) for f in fields(self)}

    def probe_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments these options give the probe (JSON-able, keyed)."""
        return {}

    def settings(self, grid_kwargs: dict[str, Any]) -> dict[str, Any]:
        """What of the probe's construction a cached piece's key holds: its keyword arguments
        (the grid's, ``grid_kwargs``, then the options') and how it is initialised."""
        return {"kwargs": {**grid_kwargs, **self.probe_kwargs()}, "init": None}

    def live_kwargs(self, backbone: Any) -> dict[str, Any]:
        """Constructor arguments that hold the live ``backbone`` (not picklable, not keyed:
        :meth:`settings` names them); empty when the probe needs none."""
        return {}

    @property
    def in_process(self) -> bool:
        """Whether every probe must fit in the process that holds the backbone (see
        :meth:`live_kwargs`), not in worker processes."""
        return False

    @property
    def reads_prompt(self) -> bool:
        """Whether the probe reads the prompt's own positions where a prompt is present."""
        return False

    def first_changed_state(self, prompt_layer: int) -> int:
        """The first hidden state whose input to this probe differs from the frozen model's,
        for a prompt at ``prompt_layer`` (1-based): the text states change from PL on."""
        return prompt_layer

    def input_tag(self, representation: str, prompted: bool = True) -> str:
        """What the probe reads, as ``mi.csv``'s ``representation`` and a piece's input key
        name it: the vector (``representation``: cls, mask, mean). ``prompted``: the input
        is a late prompt's at or above :meth:`first_changed_state`."""
        return representation


@dataclass(frozen=True)
class TransformerProbeOptions(ProbeOptions):
    """The transformer probe's options (``--probe-<name>`` for each field).

    layers: encoder layers K (the paper used 6); width: an input projection to this width
    (None or 0: none, the backbone's width); init: ``scratch``, or ``backbone``: copies of the
    backbone's own top K layers (no projection; the probes hold the live backbone, so they
    fit in one process); input: at hidden states a prompt reaches, the ``text`` positions
    alone or ``text+prompt``, the prompt positions too (what the next layer sees, from
    hidden state PL-1 on); readout: the state at the prediction ``position``, or
    ``attention`` pooling.
    """

    INITS: ClassVar[tuple[str, ...]] = ("scratch", "backbone")
    INPUTS: ClassVar[tuple[str, ...]] = ("text", "text+prompt")
    READOUTS: ClassVar[tuple[str, ...]] = ("position", "attention")
    default_mdl: ClassVar[bool] = False  # an online code refits the probe ten times per layer
    default_permutations: ClassVar[int] = 1

    layers: int = 1
    width: int | None = 128
    init: str = "scratch"
    input: str = "text+prompt"
    readout: str = "position"

    def __post_init__(self):
        choices = {"init": self.INITS, "input": self.INPUTS, "readout": self.READOUTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--probe-{name} {getattr(self, name)!r} is unknown for the transformer probe; "
                                 f"choose one of {', '.join(allowed)}")
        if not _count(self.layers):
            raise ValueError(f"--probe-layers {self.layers!r} must be an integer >= 1 (the transformer probe's "
                             "encoder layers; the paper used 6)")
        if self.width == 0:
            object.__setattr__(self, "width", None)  # the flag's spelling of "no projection"
        if self.width is not None and not _count(self.width):
            raise ValueError(f"--probe-width {self.width!r} must be an integer >= 1, or 0 for no input projection "
                             "(the backbone's width)")

    def probe_kwargs(self) -> dict[str, Any]:
        # from the backbone's layers the states enter unprojected: no width
        return {"num_layers": self.layers, "readout": self.readout,
                "width": None if self.init == "backbone" else self.width}

    def settings(self, grid_kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**super().settings(grid_kwargs), "init": self.init}

    def live_kwargs(self, backbone: Any) -> dict[str, Callable[[], Any]]:
        if self.init != "backbone":
            return {}
        n = backbone.num_hidden_layers
        if self.layers > n:
            raise ValueError(f"--probe-layers {self.layers} with --probe-init backbone copies the backbone's top "
                             f"{self.layers} layers, but it has {n}; give --probe-layers {n} or fewer")
        return {"encoder_factory": lambda: backbone.layer_stack(n - self.layers, n, trainable=True)}

    @property
    def in_process(self) -> bool:
        return self.init == "backbone"

    @property
    def reads_prompt(self) -> bool:
        return self.input == "text+prompt"

    def first_changed_state(self, prompt_layer: int) -> int:
        # the prompt's positions join at hidden state PL-1 (the input of layer PL)
        return start_state(prompt_layer) if self.reads_prompt else prompt_layer

    def input_tag(self, representation: str, prompted: bool = True) -> str:
        return f"seq:{self.input if prompted else 'text'}"
