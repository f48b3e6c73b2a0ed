"""lpt_probe: where in a frozen transformer should a soft prompt go, and why.

The public API (every name below is importable from ``lpt_probe``; each is loaded on first
use, so ``import lpt_probe`` and the plotting code never import torch; the config classes
live in torch-free modules, ``lpt_probe.{model,runs,analysis}.config``, so importing one
imports no torch either)::

    from lpt_probe import TrainConfig, LatePromptConfig, train, Predictor
    from lpt_probe import MIConfig, run_mi, InfluenceConfig, run_influence
    from lpt_probe import SweepConfig, run_sweep, Section4Config, run_section4, load_custom_task

- Training: ``train(LatePromptConfig(...), TrainConfig(...), out=folder)`` -> ``TrainResult``
  (metrics, curve, model); ``Predictor.from_run(folder).predict(texts)``. (``lpt_probe.train``
  is ``lpt_probe.runs.run.train``; the command is ``lpt_probe.commands.train``.)
- Analyses: ``res = run_mi(MIConfig(...))`` -> an ``MIResult``: ``res.mi``, ``res.diff`` (DataFrames),
  ``res.summary()`` (the command's text), ``res.plot()`` (its figure); it still unpacks as
  ``run, tables, meta``. ``run_influence`` (``InfluenceResult``), ``run_section4``
  (``Section4Result``, the dict of tables it was) alike; ``run_sweep(SweepConfig(...),
  TrainConfig(...))``. ``summary_table(mi, cfg, diff)`` prints a ``mi.csv`` read back;
  ``probe_information(...)`` is the estimator on arrays of your own.
- Data: ``load_custom_task("task.yaml")`` -> (TaskSpec, TaskData).
- Hugging Face interop: ``LatePrompt.from_run(load_run(folder)).save_pretrained(dir)``,
  ``LatePrompt.from_pretrained(dir)``, ``attach_late_prompt(hf_model, prompt)`` -> a handle with
  ``detach()`` (``lpt_probe.model.interop``).

Where a reader starts in the code: ``lpt_probe.model`` (the family table, ``Backbone.run_layers``:
run layers k..L from a hidden state; the late-prompt model), ``lpt_probe.data`` (the task
registry), ``lpt_probe.runs`` (training runs, sweeps), ``lpt_probe.probing`` and
``lpt_probe.analysis`` (probes, I(h;y), influence, Section 4), ``lpt_probe.viz`` (figures,
no torch). Commands (``lpt_probe.commands``): ``lpt-probe <command>`` or
``python -m lpt_probe.<command>``.

Layer numbering, used everywhere: hidden state 0 is the embedding output, hidden state k
is the output of transformer layer k (as Hugging Face ``hidden_states``). Prompt layer
PL=k (1-based, the paper's) means the prompt joins the input of layer k, i.e. it is
concatenated to hidden state k-1; PL=1 is classic prompt tuning.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# public name -> the module that defines it (imported on first access: PEP 562)
_API = {
    "TrainConfig": "lpt_probe.runs.config",
    "LatePromptConfig": "lpt_probe.model.config",
    "LatePromptModel": "lpt_probe.model.late_prompt",
    "train": "lpt_probe.runs.run",
    "TrainResult": "lpt_probe.runs.run",
    "load_run": "lpt_probe.runs.folders",
    "Predictor": "lpt_probe.runs.predict",
    "SweepConfig": "lpt_probe.runs.config",
    "run_sweep": "lpt_probe.runs.sweep",
    "ExecutorConfig": "lpt_probe.runs.config",
    "PromptGrid": "lpt_probe.runs.config",
    "OutputConfig": "lpt_probe.runs.config",
    "MIOptions": "lpt_probe.analysis.config",
    "InfluenceOptions": "lpt_probe.analysis.config",
    "MIConfig": "lpt_probe.analysis.config",
    "run_mi": "lpt_probe.analysis.mi.study",
    "summary_table": "lpt_probe.analysis.mi.study",
    "MIResult": "lpt_probe.analysis.results",
    "InfluenceResult": "lpt_probe.analysis.results",
    "Section4Result": "lpt_probe.analysis.results",
    "probe_information": "lpt_probe.probing.estimates",
    "InfluenceConfig": "lpt_probe.analysis.config",
    "run_influence": "lpt_probe.analysis.influence.study",
    "Section4Config": "lpt_probe.analysis.config",
    "run_section4": "lpt_probe.analysis.section4.study",
    "load_custom_task": "lpt_probe.data.sources",
    "load_task": "lpt_probe.data.sources",
    "get_task": "lpt_probe.data.tasks",
    "list_tasks": "lpt_probe.data.tasks",
    "load_model": "lpt_probe.model.loading",
    "Backbone": "lpt_probe.model.backbone",
    "LatePrompt": "lpt_probe.model.interop",
    "attach_late_prompt": "lpt_probe.model.interop",
    "detach_late_prompt": "lpt_probe.model.interop",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'lpt_probe' has no attribute {name!r}; the public API is: {', '.join(__all__)}")
    mod = importlib.import_module(module)
    value = getattr(mod, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
