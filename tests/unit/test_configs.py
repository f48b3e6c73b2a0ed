"""The config dataclasses compose rather than copy (issue 35): no field is declared by two
config classes; a study's config holds a ``TrainConfig``, a ``LatePromptConfig``, a
``PromptGrid`` and an ``OutputConfig``; a late prompt holds its method's own options (the
class registered with the method); flat keywords (as the flags name them) build the same
config as the nested objects; saved settings, flat (up to 0.2.0) or nested, load."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest

import lpt_probe
from lpt_probe.analysis.config import (InfluenceConfig, InfluenceOptions, MIConfig, MIOptions, Section4Config,
                                       StudyConfig, study_settings)
from lpt_probe.compose import flat_fields
from lpt_probe.model.config import LatePromptConfig
from lpt_probe.model.specs import METHODS, AdapterOptions, LoraOptions, SentencePromptOptions
from lpt_probe.runs.config import OutputConfig, PromptGrid, SweepConfig, TrainConfig

PACKAGE = Path(lpt_probe.__file__).resolve().parent
REPO = PACKAGE.parent
# The modules that hold the config dataclasses (torch-free: flags and configs build without it).
CONFIG_MODULES = ("lpt_probe.model.config", "lpt_probe.model.specs", "lpt_probe.runs.config",
                  "lpt_probe.analysis.config", "lpt_probe.probing.options")


REGISTRY_ENTRIES = {"MethodSpec", "Preset"}  # specs.py's table rows (what a --method name means), not settings


def _config_classes() -> list[type]:
    found = []
    for name in CONFIG_MODULES:
        module = importlib.import_module(name)
        found += [c for c in vars(module).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
                  and c.__module__ == name and c.__name__ not in REGISTRY_ENTRIES]
    return found


def _declared(cls: type) -> set[str]:
    """The dataclass fields ``cls`` declares itself (not inherited; ClassVars are no fields)."""
    own = vars(cls).get("__annotations__", {})
    return {f.name for f in dataclasses.fields(cls) if f.name in own}


def test_the_config_modules_hold_every_config_class():
    """Every class of the package that reads as a config (a ``*Config`` / ``*Options`` name,
    ``@composed``, or a dataclass with help texts in its fields' metadata) lives in
    ``CONFIG_MODULES``, so the test below sees all of them."""
    stray = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
            helped = "dataclass" in decorators and "metadata=" in ast.unparse(node)
            if (node.name.endswith(("Config", "Options")) or "composed" in decorators or helped) \
                    and module not in CONFIG_MODULES:
                stray.append(f"{module}.{node.name}")
    assert not stray, f"config classes outside {CONFIG_MODULES}: {stray}; add their module to CONFIG_MODULES"
    names = {c.__name__ for c in _config_classes()}
    assert {"LatePromptConfig", "TrainConfig", "SweepConfig", "ExecutorConfig", "StudyConfig", "MIConfig",
            "InfluenceConfig", "Section4Config", "MIOptions", "InfluenceOptions", "ProbeOptions",
            "TransformerProbeOptions", "PromptGrid", "OutputConfig", "LoraOptions", "AdapterOptions",
            "SentencePromptOptions"} <= names


def test_no_field_is_declared_by_two_config_classes():
    owners: dict[str, list[str]] = {}
    for cls in _config_classes():
        for name in _declared(cls):
            owners.setdefault(name, []).append(cls.__name__)
    twice = {name: classes for name, classes in sorted(owners.items()) if len(classes) > 1}
    assert not twice, f"fields declared by more than one config class (compose instead): {twice}"


def test_a_study_holds_the_configs_it_used_to_copy():
    cfg = MIConfig(task="trec", steps=7, seeds=(13, 21), generator="npg", out="x", probe="mlp", jobs=1)
    assert isinstance(cfg.train, TrainConfig) and isinstance(cfg.late_prompt, LatePromptConfig)
    assert isinstance(cfg.grid, PromptGrid) and isinstance(cfg.output, OutputConfig) and isinstance(cfg.mi, MIOptions)
    got = (cfg.train.task, cfg.train.steps, cfg.grid.seeds, cfg.late_prompt.generator, cfg.output.out, cfg.mi.probe)
    assert got == ("trec", 7, (13, 21), "npg", "x", "mlp")
    # the study's defaults, not TrainConfig's: 100 shots, 200 steps, lr 1e-3, 128 tokens, overlap dropped
    d = MIConfig(jobs=1).train
    assert (d.shots, d.steps, d.epochs, d.lr, d.max_length, d.drop_overlap) == (100, 200, None, 1e-3, 128, True)
    s4 = Section4Config(jobs=1)
    assert (s4.train.steps, s4.train.eval_every, s4.train.patience, s4.grid.prompt_layers, s4.mi.mdl) == (
        1000, 20, 5, "all", False)
    assert Section4Config(patience=0, jobs=1).train.patience is None and MIConfig(shots=0, jobs=1).train.shots is None
    i = InfluenceConfig(checkpoints=(50, 100), batch_size=8)
    assert (i.train.save_every, i.influence.measure_batch_size) == (50, 8)


def test_flat_keywords_and_nested_configs_build_the_same_config():
    flat = InfluenceConfig(task="trec", steps=40, seeds=(13,), generator="npg", checkpoints=(20,), batch_size=4)
    nested = InfluenceConfig(train=TrainConfig(task="trec", shots=100, steps=40, lr=1e-3, max_length=128,
                                               drop_overlap=True, save_every=20),
                             late_prompt=LatePromptConfig(generator="npg"), grid=PromptGrid(seeds=(13,)),
                             influence=InfluenceOptions(checkpoints=(20,), measure_batch_size=4))
    assert flat == nested
    assert dataclasses.replace(flat, steps=60).train.steps == 60  # replace routes flat names too
    assert dataclasses.replace(flat, steps=60).train.task == "trec"
    with pytest.raises(TypeError, match="no_such_setting"):
        MIConfig(no_such_setting=1)


@pytest.mark.parametrize("cls", [StudyConfig, MIConfig, InfluenceConfig, Section4Config, SweepConfig])
def test_every_flat_name_is_one_setting(cls):
    """Each flat name (flag) of a composed config resolves to exactly one field of one owner."""
    names = [f.name for f in flat_fields(cls)]
    assert len(names) == len(set(names))
    where = [(f.owner, f.field.name) for f in flat_fields(cls)]
    assert len(where) == len(set(where)), "two flags set the same field"


STUDIES = REPO / "benchmarks" / "results"


@pytest.mark.parametrize("cls, path", [(MIConfig, "demo/run.json"),
                                       (Section4Config, "section4/trec_minilm/section4.json")])
def test_old_flat_settings_still_load(cls, path):
    """A study folder written before configs were composed saved its settings flat: they
    load (``from_settings``), and its flat view is what the new nested settings give."""
    old = json.loads((STUDIES / path).read_text())["settings"]
    assert not any(isinstance(v, dict) for v in old.values())  # the committed file is the old, flat form
    cfg = cls.from_settings(old)
    saved = json.loads(json.dumps(asdict(cfg)))
    assert isinstance(saved["train"], dict) and cls.from_settings(saved) == cfg  # nested now, and round-trips
    flat = study_settings(cls, saved)
    assert set(flat) == set(old)
    resolved = {"num_virtual_tokens", "control_permutations", "jobs"}  # None then: the config fills them in
    assert {k: v for k, v in flat.items() if k not in resolved} == {k: v for k, v in old.items() if k not in resolved}
    assert study_settings(cls, old) == old  # a flat one is read as it is


def test_a_late_prompt_holds_its_methods_own_options():
    """Each method's options are one class registered with the method (``MethodSpec.options``,
    with its defaults); a config holds its method's, built from the flat names."""
    assert {m: type(METHODS[m].options) for m in ("lora", "adapter", "adapterdrop", "s-idpg")} == {
        "lora": LoraOptions, "adapter": AdapterOptions, "adapterdrop": AdapterOptions, "s-idpg": SentencePromptOptions}
    assert LatePromptConfig().options is None and LatePromptConfig(method="bitfit").options is None
    assert LatePromptConfig(method="lora", lora_rank=4).options == LoraOptions(lora_rank=4)
    assert LatePromptConfig(method="adapterdrop").options == AdapterOptions(64, "upper-half")
    assert LatePromptConfig(method="s-idpg", phm_n=4).options == SentencePromptOptions(4, "mean")
    given = LatePromptConfig(method="adapter", options=AdapterOptions(adapter_size=8))
    assert given.options == AdapterOptions(8, "all")
    with pytest.raises(ValueError, match="method='lpt' has no adapter_size"):
        LatePromptConfig(adapter_size=16)
    with pytest.raises(ValueError, match="method='adapter' has no lora_rank"):
        LatePromptConfig(method="adapter", lora_rank=4)
    # the flags give every option at its flag default, and a 0.2.0 config.json holds lora's: both load
    assert LatePromptConfig(lora_rank=8, lora_alpha=16.0, adapter_size=None).options is None
    # run keys as before: lora's options in every key (they were every config's fields), the others' where they apply
    assert LatePromptConfig().to_dict() == {
        "method": "lpt", "prompt_layer": None, "generator": "none", "num_virtual_tokens": 20, "bottleneck": 128,
        "generator_dropout": 0.1, "prompt_init_std": 1.0, "head": "auto", "loss": "vocab", "lora_rank": 8,
        "lora_alpha": 16.0, "lora_dropout": 0.0}
    d = LatePromptConfig(method="adapter", adapter_size=16).to_dict()
    assert (d["adapter_size"], d["adapter_layers"], d["lora_rank"]) == (16, "all", 8) and "phm_n" not in d
    assert LatePromptConfig(**d).to_dict() == d
