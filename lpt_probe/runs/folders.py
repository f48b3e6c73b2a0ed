"""Run folders: what a finished run is, when it may be reused, and loading one back.

A run folder (written by ``lpt_probe.runs.run.train``) holds

- ``config.json``: the prompt and training configs, the resolved task spec (labels,
  label words, templates, text fields), the tokenizer-level label word ids, the template
  kind, the model identity (name, dtype, weights digest), the data fingerprints of the
  three encoded splits, the run ``key`` and the ``format`` version;
- ``meta.json``: status (``running`` / ``complete`` / ``failed`` / ``interrupted``), the
  same ``key``, the sha256 of every weight file it declares (``files``), UTC time, git
  commit, versions, device, data facts (sizes, label counts, overlap, truncation),
  tunable parameters, wall time, tokens/s and peak memory;
- ``prompt.safetensors`` (+ ``prompt_config.json``), ``curve.csv``, ``metrics.json`` and,
  with ``--save-every``, ``checkpoints/step-<N>.safetensors``;
- while it trains (and after it was killed), ``resume/train_state.pt``: what a rerun
  resumes from (``lpt_probe.runs.resume``), removed before ``meta.json`` says ``complete``
  and never read as a result.

The **key** is ``store.content_key`` of everything that determines the numbers: both
configs (less the device and the data's location), the task spec, the label word ids,
the model identity, the fingerprints of the encoded splits (so a changed data file,
tokenizer, template or ``max_length`` changes it) and ``RUN_FORMAT``. A folder is reused
only when its status is ``complete``, its stored key equals the key asked for, and every
declared file (the weights, ``config.json``, ``metrics.json`` and ``curve.csv``) is present
with the sha256 ``meta.json`` recorded (:func:`check_run`; folders written before the last
three were recorded are checked by the shape of ``config.json`` and its key, :func:`read_config`);
otherwise training redoes it, and :func:`load_run` refuses it with a message that names the
folder and what to do.

:func:`load_run` rebuilds the trained model from the folder alone (no data files, no task
YAML): ``Predictor``, ``project``, ``mi`` and ``influence`` all load runs through it.
Folders written before ``RUN_FORMAT`` 2 lack the task spec and key: retrain them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..data.tasks import TaskSpec
from ..model.backbone import Backbone
from ..model.late_prompt import LatePromptConfig, LatePromptModel
from ..model.loading import load_model, resolve_device
from ..model.prompt_weights import load_prompt_weights
from .trainer import TrainConfig

logger = logging.getLogger(__name__)
RUN_FORMAT = 2
# Settings that do not change a run's numbers: where it ran, where its data lives (the
# data's content is in the fingerprints) and where it reports its progress.
NOT_IN_KEY = ("device", "data_dir", "source", "task", "model", "report_to")
# Settings added later, keyed only when set: a run that does not use one keeps the key it had.
KEYED_WHEN_SET = {"patience": None}


class RunNotUsable(ValueError):
    """A run folder that cannot be loaded: unfinished, damaged, or from other settings."""


def key_material(prompt: dict, train: dict, task_spec: dict, label_word_ids, model_identity: dict,
                 data_fingerprints: dict) -> dict[str, Any]:
    """What a run's key hashes (see the module docstring)."""
    return {"format": RUN_FORMAT, "prompt": prompt,
            "train": {k: v for k, v in train.items()
                      if k not in NOT_IN_KEY and not (k in KEYED_WHEN_SET and v == KEYED_WHEN_SET[k])},
            "task": task_spec, "label_word_ids": label_word_ids, "model": model_identity,
            "data": data_fingerprints}


def _read(folder, name: str) -> dict:
    return store.read_json_object(store.join(folder, name))


# What load_run needs from a config.json of format RUN_FORMAT: part -> the JSON types it may have.
CONFIG_PARTS: dict[str, tuple[type, ...]] = {
    "key": (str,), "prompt": (dict,), "train": (dict,), "task_spec": (dict,), "label_word_ids": (list, type(None)),
    "model_identity": (dict,), "data": (dict,)}
# Files every complete run has; their sha256 is recorded in meta.json's ``files`` with the weights.
RESULT_FILES = ("config.json", "metrics.json", "curve.csv")


def read_config(folder: str | Path) -> dict:
    """A run's ``config.json``, checked: a whole-number ``format`` and, from ``RUN_FORMAT`` on,
    every part :func:`load_run` reads. A file that parses but is wrong raises ``DamagedFile``
    naming it (an older format is returned as it is: callers say so)."""
    path = store.join(folder, "config.json")
    config = store.read_json_object(path)
    fmt = config.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise store.damaged(path, f"its format is {fmt!r}, expected a whole number such as {RUN_FORMAT}")
    if fmt >= RUN_FORMAT:
        bad = [k for k, types in CONFIG_PARTS.items() if k not in config or not isinstance(config[k], types)]
        if bad:
            raise store.damaged(path, f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} missing or of the "
                                      f"wrong type")
    return config


def check_run(folder: str | Path, key: str | None = None) -> tuple[bool, str]:
    """(usable, reason): complete, with this ``key`` (if given), every declared file intact
    (the weights, and ``config.json``, ``metrics.json``, ``curve.csv`` of runs that record them)."""
    if not store.exists(store.join(folder, "meta.json")):
        return False, "no meta.json (never finished)"
    try:
        meta, config = _read(folder, "meta.json"), read_config(folder)
    except (store.DamagedFile, FileNotFoundError) as exc:
        return False, str(exc)
    if meta.get("status") != "complete":
        return False, f"its status is {meta.get('status')!r}, not 'complete'"
    if config.get("format", 1) < RUN_FORMAT or "key" not in meta:
        return False, f"written by an older lpt_probe (run format {config.get('format', 1)} < {RUN_FORMAT})"
    files = meta.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return False, "meta.json is damaged (its 'files' is not a table of file names and sha256s)"
    if config["key"] != meta["key"]:
        return False, "config.json is damaged (its key differs from the one meta.json recorded)"
    if key is not None and meta["key"] != key:
        return False, "it was trained with other settings, data or model weights"
    for name in ("metrics.json", "curve.csv"):
        if not store.exists(store.join(folder, name)):
            return False, f"{name} is missing"
    for name, digest in files.items():
        path = store.join(folder, name)
        if not store.exists(path):
            return False, f"{name} is missing"
        if store.file_sha256(path) != digest:
            return False, f"{name} is damaged (its sha256 differs from the one meta.json recorded)"
    return True, "complete"


@dataclass
class LoadedRun:
    """A trained run rebuilt from its folder."""

    folder: Path
    model: LatePromptModel
    task: TaskSpec
    tokenizer: Any
    prompt_config: LatePromptConfig
    train_config: TrainConfig
    config: dict
    meta: dict
    model_info: dict

    @property
    def data_fingerprints(self) -> dict[str, str]:
        return dict(self.config["data"])


def find_run(roots, key: str) -> Path | None:
    """A finished run folder with ``key`` among the subfolders of ``roots`` (a folder or a
    list of them, e.g. a sweep's ``runs/``), or None: how ``mi``, ``influence`` and
    ``section4`` reuse prompts another command trained with the same settings instead of
    training them again. A folder counts only when :func:`check_run` accepts it."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots or [])
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for meta in sorted(root.glob("*/meta.json")):
            try:
                if store.read_json_object(meta).get("key") != key:
                    continue
            except store.DamagedFile:
                continue
            if check_run(meta.parent, key)[0]:
                return meta.parent
    return None


def load_run(folder: str | Path, device: str = "cpu", bundle=None, checkpoint: str | None = None,
             require_complete: bool = True) -> LoadedRun:
    """The model, task spec and tokenizer of a finished run, from the folder alone.

    ``bundle``: an already loaded ``(model, tokenizer, info)`` of the same weights (it is
    copied, not changed). ``checkpoint``: a weight file other than ``prompt.safetensors``
    (``checkpoints/step-100.safetensors``). Raises ``RunNotUsable`` naming the folder when
    the run is unfinished (unless ``require_complete=False``), damaged, from an older
    format, or when the model's weights differ from the ones the prompt was trained on.
    ``device``: any ``--device`` name (``auto``: CUDA when present)."""
    folder = Path(folder)
    device = resolve_device(device)
    if not (folder / "config.json").is_file():
        raise RunNotUsable(f"{folder} is not a run folder (no config.json); make one with python -m lpt_probe.train")
    config = read_config(folder)
    if config.get("format", 1) < RUN_FORMAT:
        raise RunNotUsable(f"{folder} was written by an older lpt_probe (run format {config.get('format', 1)}): it "
                           f"lacks the task spec and key; rerun the training command that made it")
    ok, reason = check_run(folder)
    if not ok and (require_complete or "damaged" in reason):
        raise RunNotUsable(f"{folder}: {reason}; delete the folder or rerun the command that trained it")
    if not ok:
        logger.warning("%s: %s; loading it anyway (require_complete=False)", folder, reason)
    meta = _read(folder, "meta.json") if (folder / "meta.json").exists() else {}
    try:
        tc = TrainConfig(**{**config["train"], "device": device})
        pc = LatePromptConfig(**config["prompt"])
    except TypeError as exc:  # a setting this version does not know (hand-edited, or another version's)
        raise store.damaged(folder / "config.json", f"its settings do not fit this lpt_probe: {exc}") from None
    model, tokenizer, info = bundle if bundle is not None else load_model(tc.model, device=device, dtype=tc.dtype)
    want = config["model_identity"].get("weights_sha256")
    have = info.get("identity", {}).get("weights_sha256")
    if want and have and want != have:
        raise RunNotUsable(f"{folder}: the model {tc.model!r} loaded here has other weights than the ones this "
                           f"prompt was trained on (weights digest {have[:12]} vs {want[:12]}); load the same "
                           f"checkpoint, or train again")
    spec = TaskSpec.from_dict(config["task_spec"])
    lpt = LatePromptModel(Backbone(model), pc, spec.num_labels, config["label_word_ids"],
                          copy_backbone=bundle is not None).to(device)
    name = checkpoint or "prompt.safetensors"
    declared = meta.get("files", {})
    if checkpoint is not None and checkpoint not in declared:
        raise RunNotUsable(f"{folder}: no checkpoint {checkpoint!r} (saved: {sorted(declared)}); train with "
                           f"--save-every N to save intermediate weights")
    load_prompt_weights(lpt, folder / name)
    lpt.eval()
    return LoadedRun(folder, lpt, spec, tokenizer, pc, tc, config, meta, info)


def checkpoint_names(meta: dict) -> list[str]:
    """The intermediate weight files a run saved, by step (``checkpoints/step-<N>.safetensors``)."""
    names = [n for n in meta.get("files", {}) if n.startswith("checkpoints/step-")]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1].split(".")[0]))


def config_record(prompt_cfg: LatePromptConfig, cfg: TrainConfig, task_spec: dict, label_word_ids, kind: str,
                  model_identity: dict, data_fingerprints: dict) -> dict[str, Any]:
    """``config.json`` of a run, its key included."""
    prompt, train = prompt_cfg.to_dict(), asdict(cfg)
    key = store.content_key(key_material(prompt, train, task_spec, label_word_ids, model_identity,
                                         data_fingerprints))
    return {"format": RUN_FORMAT, "key": key, "prompt": prompt, "train": train, "task_spec": task_spec,
            "label_word_ids": label_word_ids, "template_kind": kind, "model_identity": model_identity,
            "data": data_fingerprints}
