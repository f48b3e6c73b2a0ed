"""A probe family's own options (``lpt_probe.probing.options``): the transformer probe
checks its ``--probe-*`` flags itself, ``mi`` asks the probe instead of branching on them,
and moving them there changed no cached piece's key (pinned digests of the keys the code
computed before the move)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from lpt_probe import store
from lpt_probe.analysis.mi.store import ProbePieces
from lpt_probe.analysis.mi.study import MIConfig, MIRun
from lpt_probe.analysis.engine.conditions import Condition
from lpt_probe.probing import (PROBES, LinearProbe, ProbeOptions, TransformerProbe, TransformerProbeOptions,
                               probe_options)

REPO = Path(__file__).resolve().parents[2]
OPTION_FLAGS = {"probe_layers", "probe_width", "probe_init", "probe_readout", "probe_input", "sequence_probe"}


class KeyRun(MIRun):
    """An ``MIRun`` without a model: just what the piece keys read."""

    def __init__(self, cfg: MIConfig):
        self.cfg, self.out, self.L, self.n_classes = cfg, Path("/x"), 6, 6
        self.fingerprints = {"train": "a", "dev": "b", "test": "c"}
        self.prompt_layers, self.model_keys = [3], {}
        self.pieces = ProbePieces(cfg, self.out, self.L, self.n_classes, encoded={}, backbone=None, models=self,
                                  task="t", model="m")

    def model_key(self, cond: Condition) -> str:
        return "model-" + cond.name


CASES = {
    "linear": {}, "linear-grid": {"probe_grid": "C=1e-3,1e-2", "representation": "cls"},
    "mlp": {"probe": "mlp"}, "mlp-grid": {"probe": "mlp", "probe_grid": "hidden=64;lr=1e-3", "mdl": False},
    "transformer": {"probe": "transformer"},
    "transformer-text": {"probe": "transformer", "probe_input": "text", "probe_layers": 2, "probe_width": 64,
                         "probe_readout": "attention", "probe_grid": "lr=1e-3"},
    "transformer-width0": {"probe": "transformer", "probe_width": 0},
    "transformer-backbone": {"probe": "transformer", "probe_init": "backbone", "probe_layers": 2},
    "transformer-backbone-text": {"probe": "transformer", "probe_init": "backbone", "probe_input": "text",
                                  "controls": False},
}
# content_key of the list of every piece key (conditions x hidden states 0..6) and mi.csv's
# representation, as the code computed them while the options were MIConfig's own branches
BEFORE = {
    "linear": ("4dcc430638d61ab38dde493d583f9146cf52dffb3c85039123a391cc35323f01", "mask"),
    "linear-grid": ("3ce37e45dbb569e1bd46046917af971b970ecfbc72455db4d5220817c7d9d364", "cls"),
    "mlp": ("8e92accbc3251622ad8256fcb5a05a1b7c68a19efdaf1a10f903057b449c1c5a", "mask"),
    "mlp-grid": ("5d22e74327257b2caa769089373e444af78e525efb903f6aec6e41d2897c69b5", "mask"),
    "transformer": ("94cdb294f47770e2afcf1ceb78abadc6e07c1def277501ee89fa1a486cd26285", "seq:text+prompt"),
    "transformer-text": ("0ad4c7714d6a442c042230fba2e79c2f79765346d1c18b023aa3785c5a1ca942", "seq:text"),
    "transformer-width0": ("de6d7357e626b0913e8a648d9899de371c64e2fdb74fea597ced5e1fac4e63f7", "seq:text+prompt"),
    "transformer-backbone": ("39578ec6b6278d34e21615735dc452ca191d4a9340bb36865286ad0ad2761c56", "seq:text+prompt"),
    "transformer-backbone-text": ("2163311f3fb4c5d2ac273ff00182b19810fc53f0a38d601e32f0e7bee597df3b", "seq:text"),
}


def old_construction(cfg: MIConfig) -> dict:
    """The piece key's ``kwargs`` and ``init`` as ``ProbePieces.probe_settings`` built them by hand."""
    from lpt_probe.probing import parse_probe_grid

    c = cfg.mi
    kw = parse_probe_grid(c.probe, c.probe_grid)
    seq = c.probe == "transformer"
    if seq:
        kw.update(num_layers=c.probe_layers, readout=c.probe_readout,
                  width=None if c.probe_init == "backbone" else c.probe_width)
    return {"kwargs": kw, "init": c.probe_init if seq else None}


@pytest.mark.parametrize("case", list(CASES))
def test_piece_keys_are_unchanged(case):
    run = KeyRun(MIConfig(jobs=2, **CASES[case]))
    conds = run.conditions()
    keys = [run.pieces.piece_paths(c, layer)[1] for c in conds for layer in range(7)]
    assert (store.content_key(keys), run.pieces.representation_label) == BEFORE[case]
    settings = run.pieces.probe_settings(conds[1])
    assert {k: settings[k] for k in ("kwargs", "init")} == old_construction(run.cfg)


def test_keyword_construction_builds_the_probes_options():
    cfg = MIConfig(probe="transformer", probe_layers=2, probe_width=0, probe_init="backbone", probe_input="text",
                   probe_readout="attention", jobs=1)
    assert cfg.mi.probe_options == TransformerProbeOptions(layers=2, width=None, init="backbone", input="text",
                                                        readout="attention")
    assert cfg.mi.probe_width is None  # the flag as the probe reads it
    assert (cfg.mi.mdl, cfg.mi.control_permutations) == (False, 1)
    assert cfg.mi.probe_options.in_process and not cfg.mi.probe_options.reads_prompt
    lin = MIConfig(probe="linear", jobs=1)
    assert type(lin.mi.probe_options) is ProbeOptions and (lin.mi.mdl, lin.mi.control_permutations) == (True, 3)
    assert not lin.mi.probe_options.in_process and lin.mi.probe_options.probe_kwargs() == {}
    assert TransformerProbe.Options is TransformerProbeOptions and not hasattr(LinearProbe, "Options")
    assert probe_options("transformer") == TransformerProbeOptions()
    with pytest.raises(ValueError, match="unknown probe 'nope'"):
        probe_options("nope")


@pytest.mark.parametrize("flags, message", [
    ({"probe_layers": 0}, "--probe-layers 0 must be an integer >= 1"),
    ({"probe_layers": 1.5}, "--probe-layers 1.5 must be an integer >= 1"),
    ({"probe_width": -4}, "--probe-width -4 must be an integer >= 1, or 0 for no input projection"),
    ({"probe_init": "pretrained"}, "--probe-init 'pretrained' is unknown for the transformer probe; choose one of "
                                   "scratch, backbone"),
    ({"probe_input": "prompt"}, "--probe-input 'prompt' is unknown .*choose one of text, text\\+prompt"),
    ({"probe_readout": "cls"}, "--probe-readout 'cls' is unknown .*choose one of position, attention"),
])
def test_the_transformer_probe_checks_its_options(flags, message):
    with pytest.raises(ValueError, match=message):
        MIConfig(probe="transformer", jobs=1, **flags)
    with pytest.raises(ValueError, match=message):
        TransformerProbeOptions(**{k.removeprefix("probe_"): v for k, v in flags.items()})


def test_backbone_init_copies_the_backbones_top_layers():
    calls = []
    backbone = SimpleNamespace(num_hidden_layers=6, layer_stack=lambda *a, **kw: calls.append((a, kw)) or "stack")
    live = TransformerProbeOptions(layers=2, init="backbone").live_kwargs(backbone)
    assert live["encoder_factory"]() == "stack" and calls == [((4, 6), {"trainable": True})]
    assert TransformerProbeOptions(layers=2).live_kwargs(backbone) == {}
    with pytest.raises(ValueError, match="--probe-layers 7 with --probe-init backbone .* give --probe-layers 6 or"):
        TransformerProbeOptions(layers=7, init="backbone").live_kwargs(backbone)


@dataclass(frozen=True)
class EverywhereOptions(ProbeOptions):
    """A made-up family whose input differs from the frozen model's at every hidden state."""

    default_permutations = 2

    @property
    def in_process(self) -> bool:
        return True

    def first_changed_state(self, prompt_layer: int) -> int:
        return 0

    def input_tag(self, representation: str, prompted: bool = True) -> str:
        return f"everywhere:{representation}:{prompted}"


class EverywhereProbe(LinearProbe):
    Options = EverywhereOptions


def test_mi_asks_the_probe(monkeypatch):
    monkeypatch.setitem(PROBES, "everywhere", EverywhereProbe)
    run = KeyRun(MIConfig(probe="everywhere", jobs=3))
    assert run.cfg.mi.control_permutations == 2 and run.cfg.mi.probe_options.in_process
    lpt = Condition.lpt(3, 13)
    assert not any(run.shares_frozen_input(lpt, layer) for layer in range(7))
    assert run.pieces.representation_label == "everywhere:mask:True"
    assert run.input_key(lpt, 1) == store.content_key({"model": "model-" + lpt.name, "layer": 1,
                                                       "input": "everywhere:mask:True", "data": run.fingerprints})


def test_mi_no_longer_branches_on_the_transformer_probes_options():
    """mi (``mi/study.py``, ``mi/store.py``) and the executors read none of the option flags (MIConfig only declares
    them) and ask ``cfg.mi.probe_options``; what is left is one dispatch on the probe's input
    kind, where ``MIRun.phases`` declares vector or sequence pieces (the executors know
    neither)."""
    for name, allowed in (("mi/study.py", {"sequence_probe": 1}), ("mi/store.py", {}), ("engine/executors.py", {})):
        tree = ast.parse((REPO / "lpt_probe" / "analysis" / name).read_text())
        read: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in OPTION_FLAGS:
                read[node.attr] = read.get(node.attr, 0) + 1
        assert read == allowed, (name, read)
