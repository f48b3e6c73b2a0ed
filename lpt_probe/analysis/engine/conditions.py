"""What every study of trained late prompts shares: ``mi``, ``influence`` and ``section4``.

A *study* trains (or reuses) late prompts at some prompt layers and seeds, on one task and
model, and then measures them. :class:`StudyConfig` holds the settings they share, as the
configs that own them: ``train`` (task, model, data, how the prompts train, hardware: a
``TrainConfig``), ``late_prompt`` (what the prompts are: a ``LatePromptConfig``), ``grid``
(prompt layers and seeds) and ``output`` (where the results go); ``MIConfig``,
``InfluenceConfig`` and ``Section4Config`` add their own options (``mi``, ``influence``;
all live in ``lpt_probe.analysis.config``, without torch, and are re-exported here).
:meth:`StudyConfig.train_config` and :meth:`StudyConfig.prompt_config` (``train`` with the
prompt's seed, ``late_prompt`` at its layer) are the one place
a study's prompts get their training settings, so every study of the same settings keys
its prompts alike and can reuse another's run folders. :class:`Condition` names one model
a study measures (a late prompt, the frozen model, random weights); ``StudyOutput`` is
``outputs.ResumableOutput``, the resumable output folder every study writes (lock, stale
outputs, ``run.json`` running / failed / interrupted / complete).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...outputs import ResumableOutput
from ...runs.folders import check_run, find_run
from ..config import StudyConfig, check_at_least, field_help  # noqa: F401  (re-exported: the settings live there)

__all__ = ["StudyConfig", "Condition", "StudyOutput", "field_help", "run_folder", "unique_conditions"]


@dataclass(frozen=True)
class Condition:
    """One model a study measures: a late prompt, the frozen model, or random weights."""

    name: str
    method: str  # "lpt", "frozen" or "random_weights"
    prompt_layer: int  # 0 for the frozen and random models
    seed: int

    @classmethod
    def lpt(cls, prompt_layer: int, seed: int) -> "Condition":
        return cls(f"lpt-pl{prompt_layer}-s{seed}", "lpt", int(prompt_layer), int(seed))


def unique_conditions(conds: list[Condition]) -> list[Condition]:
    """``conds``, asserted to have one name each: a condition's name keys its run folder,
    its representation files and its table rows, so two of one name would overwrite each
    other (the configs refuse repeated seeds and layers; this guards every other path)."""
    names = [c.name for c in conds]
    assert len(set(names)) == len(names), f"conditions share a name (and storage key): {names}"
    return conds


def run_folder(out: Path, cfg: StudyConfig, cond: Condition, key: str) -> Path:
    """Where a study's prompt ``cond`` with run key ``key`` is (or will be) trained:
    ``<out>/runs/<condition>-<key>``, or a finished run with the same key under the study's
    ``reuse_runs`` (``runs.folders.find_run``)."""
    own = Path(out) / "runs" / f"{cond.name}-{key[:10]}"
    if cfg.reuse_runs and not check_run(own, key)[0]:
        return find_run(cfg.reuse_runs, key) or own
    return own


# A study's resumable output folder (lock, stale outputs, ``run.json`` running / failed /
# interrupted / complete): the one context manager of every command, ``outputs.ResumableOutput``.
StudyOutput = ResumableOutput
