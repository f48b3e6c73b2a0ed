"""Label new text with a trained late prompt: ``Predictor.from_run(RUN).predict(texts)``.

A run folder holds everything needed (``lpt_probe.runs.folders.load_run``): the task
spec it was trained with (template, labels, label words), the tokenizer-level label word
ids, the model identity and the trained weights. No data file or task YAML is read, so a
moved or edited YAML changes nothing. ``from_run`` refuses a run that is not complete,
is damaged, or whose model weights differ from the ones it was trained on.
``predict`` renders each text with the task's template, runs the frozen model with the
late prompt and returns label names; ``predict_proba`` returns the label distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.encoded import encode_split
from ..data.sources import Example
from ..model.late_prompt import LatePromptModel
from .folders import load_run


class Predictor:
    """A loaded late prompt with its task; ``predict`` labels raw text."""

    def __init__(self, model: LatePromptModel, task, tokenizer, max_length: int = 256, batch_size: int = 64):
        self.model, self.task, self.tokenizer = model.eval(), task, tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", bundle=None) -> "Predictor":
        run = load_run(run_dir, device=device, bundle=bundle)
        return cls(run.model, run.task, run.tokenizer, run.train_config.max_length)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str | tuple[str, ...]]) -> np.ndarray:
        n_fields = len(self.task.text_fields)
        examples = []
        for i, t in enumerate(texts):
            fields = (t,) if isinstance(t, str) else tuple(t)
            if len(fields) != n_fields:
                raise ValueError(f"text {i} has {len(fields)} field(s); task {self.task.name!r} "
                                 f"needs {n_fields} ({', '.join(self.task.text_fields)})")
            examples.append(Example(id=str(i), texts=fields, label=0))
        backbone = self.model.backbone
        data = encode_split(self.task, examples, self.tokenizer, backbone.template_kind, self.max_length,
                            max_positions=backbone.max_positions)
        out = np.zeros((len(data), self.task.num_labels), dtype=np.float32)
        for idx in data.batches(self.batch_size):
            b = data.collate(idx, backbone.device)
            logits = self.model(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
            out[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str | tuple[str, ...]]) -> list[str]:
        return [self.task.label_names[i] for i in self.predict_proba(texts).argmax(-1)]
