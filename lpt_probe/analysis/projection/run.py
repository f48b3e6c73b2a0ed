"""Figure 6 for one trained run: its sentence representations beside its generated prompts.

``project_run(run_dir)`` loads the run from its folder (``lpt_probe.runs.folders.load_run``),
encodes the chosen split of the task it was trained on (data read again from the run's
settings; ``data_dir`` overrides where the files are, and a warning says when their
fingerprint differs from the one recorded at training), extracts the sentence
representation at hidden state PL-1 (the generator's input) and the generated prompt of
every example, and hands both to ``lpt_probe.analysis.projection.compute.projection_table``.
A run without a generator is refused: a plain prompt is the same vector for every input,
so there is nothing to project.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ...data.encoded import encode_split
from ...runs.folders import load_run
from ...runs.run import load_data
from .compute import projection_table
from ..engine.representations import extract

logger = logging.getLogger(__name__)


def project_run(run_dir: str | Path, split: str = "test", method: str = "umap", representation: str = "cls",
                how: str = "flatten", max_examples: int | None = 500, data_dir: str | None = None,
                random_state: int = 0, device: str = "cpu") -> tuple[pd.DataFrame, dict]:
    """(projection table, agreement dict) for ``split`` of the run in ``run_dir``."""
    run = load_run(run_dir, device=device)
    pc = run.prompt_config
    if pc.generator == "none":
        raise ValueError(f"{run_dir} trained a plain prompt (--generator none): it is the same for every input, so "
                         f"there is nothing to project; project a run with --generator npg, appg or mppg")
    tc = run.train_config if data_dir is None else replace(run.train_config, data_dir=data_dir)
    data = load_data(tc)
    enc = encode_split(run.task, getattr(data, split), run.tokenizer, run.model.backbone.template_kind,
                       tc.max_length, split, max_positions=run.model.backbone.max_positions)
    if enc.fingerprint != run.data_fingerprints.get(split):
        logger.warning("%s: the %s split read now differs from the one this run was trained and scored with "
                       "(data files changed or moved?)", run_dir, split)
    if max_examples and len(enc) > max_examples:
        enc = enc.subsample(max_examples)
    reps = extract(run.model, enc, desc=f"extract {split}")
    sentence = reps[representation][pc.start_state]  # [n, hidden]: the generator's input
    table, agreement = projection_table(sentence, reps["prompt"], reps["labels"], run.task.label_names,
                                        method=method, random_state=random_state, how=how, ids=enc.ids)
    agreement.update(run=str(run_dir), split=split, representation=representation,
                     prompt_layer=pc.prompt_layer, generator=pc.generator, n=len(enc))
    return table, agreement
