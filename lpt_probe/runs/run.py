"""One training run, end to end: ``prepare`` the model and data, ``train``, write the folder.

``prepare(cfg)`` loads the model bundle and the task's splits and encodes them
(``Prepared``); ``train(prompt_cfg, cfg, out)`` trains one late prompt (or baseline) and
writes the run folder ``out``, or reuses it when it already holds this exact run (the
rules and the folder's contents: ``lpt_probe.runs.folders``). While a run trains its
``meta.json`` says ``running``; ``complete`` is written last, after every file; an error
marks it ``failed`` and Ctrl-C ``interrupted``, so an unfinished run is never mistaken for
a result, and rerunning the command trains it again, from the training state it kept after
its last dev evaluation (``lpt_probe.runs.resume``): the same files, byte for byte, as if it
had not stopped (timing apart). Two commands on one folder at once:
the second refuses. The folder is a ``outputs.ResumableOutput``, like every command's.

Sweeps and analyses pass ``prepared`` (and the lower-layer ``caches``) so that many runs
share one loaded model and one encoding of the data.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import store
from ..data.encoded import Encoded, encode_split
from ..data.sources import TaskData, is_task_file, load_custom_task, load_task, task_slug
from ..data.verbalizer import label_word_ids
from ..model.backbone import Backbone
from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptConfig, LatePromptModel
from ..model.loading import load_model, model_slug, resolve_device
from ..model.methods import get_method
from ..model.prompt_weights import save_prompt
from ..outputs import ResumableOutput, check_owned, check_url
from .config import SPLITS
from .folders import NOT_IN_KEY, check_run, config_record
from .reporting import Reporter, parse_report_to
from .resume import STATE_FILE, check_fits, read_state, remove_state, write_state
from .trainer import TrainConfig, Trainer, peak_memory_mb

logger = logging.getLogger(__name__)
# what a new training run into a used folder rebuilds: removed before meta.json says "running"
CHECKPOINTS = "checkpoints/step-*.safetensors"
STALE = ("metrics.json", "curve.csv", "test_predictions.csv", "dev_correct.npz", "prompt.safetensors",
         "prompt_config.json", CHECKPOINTS, "tensorboard/events.out.tfevents.*")


def stale_outputs(run_dir: Path | None, state: dict | None) -> tuple[str, ...]:
    """What a run into ``run_dir`` rebuilds (``STALE``); one that resumes from ``state`` keeps
    the checkpoints the state lists (saved before its step, sha256 checked) and rebuilds
    only the others."""
    if state is None or run_dir is None:
        return STALE
    later = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.glob(CHECKPOINTS))
    return (*(s for s in STALE if s != CHECKPOINTS), *(n for n in later if n not in state["files"]))


@dataclass
class Prepared:
    """A loaded model bundle with a task's three splits, encoded for it."""

    backbone: Backbone
    tokenizer: Any
    model_info: dict
    data: TaskData
    encoded: dict[str, Encoded]
    label_word_ids: list[int] | None  # one token id per label (None: classifier head)

    @property
    def kind(self) -> str:
        return self.backbone.template_kind

    @property
    def bundle(self) -> tuple:
        return self.backbone.model, self.tokenizer, self.model_info

    def fingerprints(self) -> dict[str, str]:
        return {s: self.encoded[s].fingerprint for s in SPLITS}

    def truncation(self) -> dict[str, dict]:
        return {s: self.encoded[s].truncation for s in SPLITS}


@dataclass
class TrainResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    curve: pd.DataFrame
    model: LatePromptModel | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    reused: bool = False


def load_data(cfg: TrainConfig, **override) -> TaskData:
    """The splits ``cfg`` names: a registered task, or a custom task's YAML file."""
    kw = dict(shots=cfg.shots, data_seed=cfg.data_seed, dev_size=cfg.dev_size, max_examples=cfg.max_examples,
              drop_overlap=cfg.drop_overlap, **override)
    if is_task_file(cfg.task):
        return load_custom_task(cfg.task, **kw)[1]
    return load_task(cfg.task, source=cfg.source, data_dir=cfg.data_dir, **kw)


def prepare(cfg: TrainConfig, bundle=None, data: TaskData | None = None) -> Prepared:
    """Load (or take) the model bundle and task data, and encode the three splits."""
    model, tokenizer, info = bundle if bundle is not None else load_model(cfg.model, device=cfg.device,
                                                                          dtype=cfg.dtype)
    data = data if data is not None else load_data(cfg)
    backbone = Backbone(model)
    encoded = {s: encode_split(data.task, getattr(data, s), tokenizer, backbone.template_kind, cfg.max_length, s,
                               max_positions=backbone.max_positions) for s in SPLITS}
    words = label_word_ids(data.task, tokenizer, backbone.template_kind) if backbone.has_lm_head else None
    return Prepared(backbone, tokenizer, info, data, encoded, words)


def resolve_lr(prompt_cfg: LatePromptConfig, cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``lr`` set: the method's own default when none was given."""
    return cfg if cfg.lr is not None else replace(cfg, lr=get_method(prompt_cfg.method).default_lr)


def run_config(prompt_cfg: LatePromptConfig, cfg: TrainConfig, prepared: Prepared) -> dict[str, Any]:
    """The ``config.json`` (with its ``key``) that training ``prompt_cfg`` with ``cfg`` on
    ``prepared`` writes: a folder holding this key is this run."""
    cfg = resolve_lr(prompt_cfg, cfg)
    return config_record(prompt_cfg, cfg, prepared.data.task.to_dict(), prepared.label_word_ids, prepared.kind,
                         prepared.model_info["identity"], prepared.fingerprints())


def default_run_dir(prompt_cfg: LatePromptConfig, cfg: TrainConfig) -> Path:
    shots = f"k{cfg.shots}-d{cfg.data_seed}" if cfg.shots else "full"
    what = (f"pl{prompt_cfg.prompt_layer}-{prompt_cfg.generator}" if prompt_cfg.method == "lpt"
            else prompt_cfg.method)
    return Path("artifacts") / "runs" / task_slug(cfg.task) / model_slug(cfg.model) / f"{what}-{shots}-s{cfg.seed}"


def other_settings(run_dir: Path, config: dict) -> str:
    """The settings (prompt and training config with the model, less where it ran and where
    its data lives) in which the run in ``run_dir`` differs from ``config``, as
    ``name: old -> new``; '' when they agree (its data or the model's weights changed) or
    its config cannot be read (then it is redone anyway)."""
    try:
        old = store.read_json_object(run_dir / "config.json")
        parts = [(f"{k}", old[part].get(k), config[part].get(k)) for part in ("prompt", "train")
                 for k in sorted(set(old[part]) | set(config[part])) if k == "model" or k not in NOT_IN_KEY]
    except (OSError, ValueError, KeyError, AttributeError):
        return ""
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in parts if a != b)


def _reuse(run_dir: Path, key: str) -> TrainResult:
    logger.info("reusing complete run %s", run_dir)
    meta = store.read_json_object(run_dir / "meta.json")
    return TrainResult(run_dir, store.read_json_object(run_dir / "metrics.json"), pd.read_csv(run_dir / "curve.csv"),
                       meta=meta, key=key, reused=True)


def train(prompt_cfg: LatePromptConfig, cfg: TrainConfig, out: str | Path | None = None, *,
          bundle=None, data: TaskData | None = None, prepared: Prepared | None = None,
          caches: dict[str, LowerLayerCache] | None = None, progress: bool = True,
          reuse: bool = True, overwrite: bool = False, keep_other_settings: bool = False,
          resume: bool = True) -> TrainResult:
    """One run, end to end; writes the run folder ``out`` when given (reused if it holds
    this run, complete and intact). ``bundle`` / ``data`` / ``prepared`` hand over what is
    loaded already; ``caches`` the lower-layer cache of hidden state PL-1 per split.
    ``overwrite``: write into a folder of files lpt_probe did not write (refused otherwise).
    ``keep_other_settings`` (the ``train`` command without ``--overwrite``): refuse to replace
    a finished run trained with other settings (prompt or training config); by default it is
    trained again in place, as sweeps do with their cells. A run whose data or model
    weights changed under the same settings is trained again either way. An unfinished run
    of this key (interrupted, failed, killed) goes on from the training state it kept after
    its last dev evaluation (``lpt_probe.runs.resume``), with results identical to an
    uninterrupted run's; ``resume=False`` starts it over."""
    cfg = replace(resolve_lr(prompt_cfg, cfg), device=resolve_device(cfg.device))  # the run's device from here on
    if get_method(prompt_cfg.method).late_prompt and prompt_cfg.prompt_tokens < 1:
        raise ValueError(f"num_virtual_tokens={prompt_cfg.num_virtual_tokens}: method={prompt_cfg.method!r} "
                         f"trains a prompt, which needs at least 1 token (--num-virtual-tokens 1 or more); with "
                         f"none, only the classifier would train")
    check_url(str(out or ""), local_only=True)  # the command trains a URL's run in a local folder, then uploads
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        store.check_output_folder(run_dir)
        check_owned(run_dir, "meta.json", overwrite)  # before any work: a folder of other files is refused
    t_start = time.perf_counter()
    owned = bundle is None and prepared is None  # nobody else uses this model: no copy needed
    prepared = prepared or prepare(cfg, bundle, data)
    prompt_cfg.check_against(prepared.backbone)  # bad prompt layer / head: fail before writing anything
    config = run_config(prompt_cfg, cfg, prepared)
    key = config["key"]
    if run_dir is not None and reuse:
        ok, reason = check_run(run_dir, key)
        if ok:
            return _reuse(run_dir, key)
        if keep_other_settings and reason.startswith("it was trained with other settings"):
            changed = other_settings(run_dir, config)
            if changed:
                raise ValueError(f"--out {run_dir} holds a finished run of other settings ({changed}); give another "
                                 f"--out, or --overwrite to replace it")
        if (run_dir / "meta.json").exists() or (run_dir / "config.json").exists():
            logger.info("%s: training again: %s", run_dir, reason)
    state = read_state(run_dir, key, cfg.device) if resume else None
    # no folder (run_dir None): nothing is locked or written
    with ResumableOutput(run_dir, "meta.json", stale_outputs(run_dir, state), t0=t_start, list_outputs=False,
                         overwrite=overwrite) as output:
        metrics, curve, model = _train(prompt_cfg, cfg, output, prepared, config, caches, progress, owned, state)
    return TrainResult(run_dir, metrics, curve, model, output.meta, config["key"])


def write_npz(path: Path, arrays: dict) -> Path:
    """Arrays as one ``.npz`` file, written atomically (``numpy.load`` reads it back)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return store.atomic_write_bytes(path, buf.getvalue())


def test_predictions(data: Encoded, preds) -> pd.DataFrame:
    """One row per test example: its row in the split (``example``), id, gold label and the
    kept weights' prediction: what the Section 4 verdicts resample (accuracy per example)."""
    return pd.DataFrame({"example": range(len(data)), "example_id": [str(i) for i in data.ids],
                         "label": data.labels, "pred": [int(p) for p in preds]})


@torch.no_grad()
def states_init(backbone: Backbone, train: Encoded, start_state: int, tokens: int, seed: int, device,
                cache: LowerLayerCache | None = None) -> torch.Tensor:
    """``prompt_init="states"``: hidden state ``start_state`` (PL-1) of ``tokens`` text tokens
    drawn (seeded, without replacement where there are enough) from the training examples,
    each in its own example's context; read from ``cache`` (the training split's lower-layer
    cache) when it holds that state, so a sweep that released the lower layers' weights can
    still start a prompt there. # [l, hidden]"""
    rng = np.random.default_rng(seed)
    spots = [(i, j) for i in range(len(train))
             for j in (np.flatnonzero(train.text_mask[i]) if train.text_mask is not None
                       else range(len(train.input_ids[i])))]
    pick = rng.choice(len(spots), size=tokens, replace=len(spots) < tokens)
    chosen = [spots[k] for k in pick]
    rows = sorted({i for i, _ in chosen})
    if cache is not None and start_state in cache.states:
        h = cache.batch(start_state, rows, device)  # [batch, seq, hidden]
    else:
        b = train.collate(rows, device)
        h = backbone.embed(b["input_ids"], b["attention_mask"])  # [batch, seq, hidden]
        if start_state > 0:
            h = backbone.run_layers(h, b["attention_mask"], 0, start_state)
    where = {i: r for r, i in enumerate(rows)}
    return torch.stack([h[where[i], j] for i, j in chosen]).float()


def initial_model(prompt_cfg: LatePromptConfig, seed: int, prepared: Prepared, device, copy_backbone: bool = True,
                  cache: LowerLayerCache | None = None) -> LatePromptModel:
    """The model a run starts from (``torch.manual_seed(seed)``, then the model; with
    ``prompt_init="states"`` the prompt taken from the training examples): what training
    starts from and what ``influence`` measures as ``init``."""
    torch.manual_seed(seed)
    model = LatePromptModel(prepared.backbone, prompt_cfg, prepared.data.task.num_labels, prepared.label_word_ids,
                            copy_backbone=copy_backbone).to(device)
    if prompt_cfg.prompt_init == "states":
        was = prepared.backbone.model.training
        prepared.backbone.model.eval()
        init = states_init(prepared.backbone, prepared.encoded["train"], prompt_cfg.start_state,
                           prompt_cfg.prompt_tokens, seed, device, cache)
        prepared.backbone.model.train(was)
        model.generator.prompt.data.copy_(init.to(model.generator.prompt.dtype))
    return model


def _train(prompt_cfg, cfg, output, prepared: Prepared, config, caches, progress, owned,
           resumed: dict | None = None):
    if torch.device(cfg.device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(cfg.device)  # peak_cuda_mb is this run's, even in a sweep
    backbone, data, encoded = prepared.backbone, prepared.data, prepared.encoded
    run_dir = output.out
    files: dict[str, str] = {}
    # "running" first (the folder is not a result); an error from here on marks it failed / interrupted
    meta = output.start(store.run_meta(status="running", key=config["key"], device=str(cfg.device),
                                       model=prepared.model_info, data=data.to_meta(),
                                       truncation=prepared.truncation(), torch_threads=torch.get_num_threads()))
    if run_dir is not None:
        files["config.json"] = store.file_sha256(store.write_json(run_dir / "config.json", config))
        if resumed is None:
            remove_state(run_dir)  # another run's, or unreadable: this one starts over
    use_cache = cfg.cache and get_method(prompt_cfg.method).cacheable
    state = prompt_cfg.start_state
    if use_cache and caches is None:  # built before the model: no random draw, so the initial prompt is the same
        backbone.model.eval()
        caches = {s: LowerLayerCache.build(backbone, encoded[s], [state], cfg.eval_batch_size,
                                           desc=f"cache {s} h{state}", progress=progress) for s in encoded}
    caches = caches if use_cache else {}
    model = initial_model(prompt_cfg, cfg.seed, prepared, cfg.device, copy_backbone=not owned,
                          cache=caches.get("train"))
    model.backbone_dropout = cfg.backbone_dropout
    misfit = check_fits(model, resumed) if resumed is not None else None
    if misfit:  # an edited state of this key: start over (the checkpoints it kept are saved again)
        logger.info("%s: not resumed from %s: %s; training starts over", run_dir, STATE_FILE, misfit)
        remove_state(run_dir)
        resumed = None
    if resumed is not None:
        files.update(resumed["files"])  # the checkpoints saved before the state's step, checked and kept
        meta["resumed_at_step"] = resumed["step"]
        logger.info("%s: resumed at step %d (the training state kept after its last dev evaluation)", run_dir,
                    resumed["step"])

    def checkpoint(step: int) -> None:
        if run_dir is not None:
            name = f"checkpoints/step-{step}.safetensors"
            files[name] = save_prompt(model, run_dir, name)

    def keep_state(training_state: dict) -> None:  # after each dev evaluation: what a rerun resumes from
        write_state(run_dir, training_state, config["key"],
                    {n: d for n, d in files.items() if n.startswith("checkpoints/")})

    trainer = Trainer(model, cfg, data.task.metric.value)
    name = run_dir.name if run_dir is not None else (f"{data.task.name}-pl{prompt_cfg.prompt_layer}-"
                                                     f"{prompt_cfg.generator}-s{cfg.seed}")
    reporter = Reporter(parse_report_to(cfg.report_to), name, run_dir, {**config["prompt"], **config["train"]})
    try:
        for row in resumed["curve"] if resumed is not None else []:  # the trackers get the whole curve
            reporter.log_evaluation(row)
        curve, stats = trainer.fit(encoded["train"], encoded["dev"], caches, progress, on_checkpoint=checkpoint,
                                   on_eval=reporter.log_evaluation, resume=resumed,
                                   on_state=keep_state if run_dir is not None else None)
        dev = trainer.best_dev_ or trainer.evaluate(encoded["dev"], caches.get("dev"))  # best_dev_: no rerun
        test = trainer.evaluate(encoded["test"], caches.get("test"))
        reporter.log({"test/metric": test["metric"], "test/accuracy": test["accuracy"]}, stats["stopped_step"])
    finally:
        reporter.close()
    metrics = {
        "task": data.task.name, "model": model_slug(cfg.model), "method": prompt_cfg.method,
        "prompt_layer": prompt_cfg.prompt_layer, "generator": prompt_cfg.generator,
        "num_virtual_tokens": prompt_cfg.num_virtual_tokens, "head": model.head_kind, "seed": cfg.seed,
        "shots": cfg.shots, "data_seed": cfg.data_seed, "metric_name": data.task.metric.value,
        "dev_metric": dev["metric"], "test_metric": test["metric"],
        "dev_accuracy": dev["accuracy"], "test_accuracy": test["accuracy"],
        "tunable_params": model.num_trainable(), "dtype": cfg.dtype, "lr": cfg.lr, "cache": use_cache, **stats,
    }
    meta.update(tunable_params=model.num_trainable(), wall_seconds=output.seconds,
                tokens_per_second=stats["tokens_per_second"], **peak_memory_mb(torch.device(cfg.device)))
    if run_dir is not None:
        files["prompt.safetensors"] = save_prompt(model, run_dir)
        files["curve.csv"] = store.file_sha256(store.write_csv(run_dir / "curve.csv", curve))
        files["test_predictions.csv"] = store.file_sha256(store.write_csv(
            run_dir / "test_predictions.csv", test_predictions(encoded["test"], test["preds"])))
        files["dev_correct.npz"] = store.file_sha256(write_npz(run_dir / "dev_correct.npz", trainer.dev_history_))
        files["metrics.json"] = store.file_sha256(store.write_json(run_dir / "metrics.json", metrics))
        meta["files"] = files
        remove_state(run_dir)  # every result is written: nothing to resume (before meta.json says complete)
    return metrics, curve, model  # leaving ``output``: meta.json "complete", last, after every file
