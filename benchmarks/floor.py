"""The bare work of trained prompts and of a frozen pass, timed in this process: what
``bench_sweep.py``'s ideal (issue 14) and ``bench_study_speed.py``'s floor (issue 36) share.

    work = bare_work(prepared, [BareRun(name, prompt_cfg, train_cfg, steps, dev_evals), ...])
    seconds = frozen_pass(backbone, encoded_splits)

``bare_work``: one lower-layer pass per split (``LowerLayerCache.build`` of every hidden state
PL-1 the runs start from, timed per split), then for each run ``lpt_probe.runs.bare.time_bare``
over exactly the batches its trainer draws for its first ``steps`` steps
(``Trainer.batch_order``, the run's own seed and batch settings: a run that stopped early is
timed over the steps it ran), and its evaluations bare (layers PL..L forward under
``torch.inference_mode``, as ``Trainer.evaluate``, on the cached states: dev ``dev_evals`` times, test ``test_evals`` times).
``frozen_pass``: one forward pass of the frozen model over every example of the given splits
(embeddings, layers 1..L, the final norm, in batches of the extraction's size, under
``torch.inference_mode``), as ``mi`` extraction runs it for each batch, and nothing else.

A module, not a script: it writes nothing. The scripts import it as ``floor`` (the benchmarks
folder is first on ``sys.path`` when they run; tests put it there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass
class BareRun:
    """One trained prompt to time bare: its configs, the steps its trainer ran (the batches
    timed are the first ``steps`` of ``Trainer.batch_order``) and the evaluations it made."""

    name: str
    prompt: Any  # lpt_probe.model.late_prompt.LatePromptConfig
    train: Any  # lpt_probe.runs.trainer.TrainConfig
    steps: int
    dev_evals: int
    test_evals: int = 1


def bare_work(prepared, runs: Sequence[BareRun], cache_batch_size: int, label: str = "bare") -> dict:
    """Time ``runs`` bare on ``prepared`` (``lpt_probe.runs.run.Prepared``: the model and the
    encoded splits the runs trained on). Returns ``extract`` (split -> seconds of its
    lower-layer pass), ``cached_states`` and ``runs``: one row per run with ``steps``,
    ``bare_train_seconds``, ``bare_tokens`` (text tokens of the timed batches: the trainer's
    ``train_tokens`` over the same steps), ``bare_tokens_per_second`` and ``bare_eval_seconds``.
    Prints one line per run, starting with ``label``."""
    import torch

    from lpt_probe.model.cache import LowerLayerCache
    from lpt_probe.model.late_prompt import LatePromptModel
    from lpt_probe.runs.bare import bare_batches, synchronize, time_bare
    from lpt_probe.runs.trainer import Trainer

    bb, enc = prepared.backbone, prepared.encoded
    device = bb.device
    need = sorted({r.prompt.start_state for r in runs})
    bb.model.eval()
    caches, extract = {}, {}
    for split in ("train", "dev", "test"):
        t = time.perf_counter()
        caches[split] = LowerLayerCache.build(bb, enc[split], need, cache_batch_size, progress=False)
        extract[split] = time.perf_counter() - t
    rows = []
    for run in runs:
        pc, tc = run.prompt, run.train
        torch.manual_seed(tc.seed)
        model = LatePromptModel(bb, pc, prepared.data.task.num_labels, prepared.label_word_ids,
                                copy_backbone=False).to(device)
        trainer = Trainer(model, tc)
        k = pc.start_state
        plan = trainer.batch_order(enc["train"], run.steps)
        train = time_bare(model, bare_batches(model, enc["train"], plan, caches["train"].only(k), device))
        eval_seconds = 0.0
        model.eval()
        for split, times in (("dev", run.dev_evals), ("test", run.test_evals)):
            batches = bare_batches(model, enc[split], list(enc[split].batches(tc.eval_batch_size)),
                                   caches[split].only(k), device)
            with torch.inference_mode():  # as Trainer.evaluate
                for _ in range(times):
                    synchronize(device)
                    t = time.perf_counter()
                    for b in batches:
                        model.upper(b.h_low, b.attention_mask, b.pred_positions)
                    synchronize(device)
                    eval_seconds += time.perf_counter() - t
        rows.append({"name": run.name, "steps": run.steps, "dev_evals": run.dev_evals, "test_evals": run.test_evals,
                     "bare_train_seconds": train["seconds"], "bare_tokens": train["tokens"],
                     "bare_tokens_per_second": train["tokens_per_second"], "bare_eval_seconds": eval_seconds})
        print(f"{label} {run.name}: bare train {train['seconds']:.2f} s, eval {eval_seconds:.2f} s", flush=True)
        del model, trainer
    return {"extract": extract, "cached_states": need, "runs": rows}


def frozen_pass(backbone, splits: Mapping[str, Any], batch_size: int | None = None) -> dict:
    """One forward pass of the frozen ``backbone`` over every example of ``splits`` (name ->
    ``Encoded``): embeddings, layers 1..L with every hidden state kept, the final norm, in
    batches of ``batch_size`` (default: the extraction's, ``EXTRACT_BATCH``), under
    ``torch.inference_mode``. Returns ``seconds`` (the passes alone: collation included, as
    extraction collates too) and ``examples`` per split."""
    import torch

    from lpt_probe.analysis.engine.representations import EXTRACT_BATCH
    from lpt_probe.runs.bare import synchronize

    size = batch_size or EXTRACT_BATCH
    L, dev = backbone.num_hidden_layers, backbone.device
    backbone.model.eval()
    seconds = 0.0
    with torch.inference_mode():
        for data in splits.values():
            synchronize(dev)
            t = time.perf_counter()
            for idx in data.batches(size):
                b = data.collate(idx, dev)
                h0 = backbone.embed(b["input_ids"], b["attention_mask"])
                states = backbone.run_layers(h0, b["attention_mask"], 0, L, return_all=True)
                backbone.final(states[-1])
            synchronize(dev)
            seconds += time.perf_counter() - t
    return {"seconds": seconds, "examples": {s: len(d) for s, d in splits.items()}, "batch_size": size}
