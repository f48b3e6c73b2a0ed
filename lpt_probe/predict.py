"""Label new text with a trained late prompt: ``Predictor.from_run(RUN).predict(texts)``.

A run folder (``lpt_probe.train``) holds everything needed: ``config.json`` names the
task (its template and label words), the model and the prompt config, and
``prompt.safetensors`` the trained weights. ``predict`` renders each text with the task's
template, runs the frozen model with the late prompt and returns label names;
``predict_proba`` returns the label distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import io
from .backbone import Backbone
from .cache import Encoded
from .late_prompt import LatePromptConfig, LatePromptModel, load_prompt_weights


class Predictor:
    """A loaded late prompt with its task; ``predict`` labels raw text."""

    def __init__(self, model: LatePromptModel, task, tokenizer, max_length: int = 256, batch_size: int = 64):
        self.model, self.task, self.tokenizer = model.eval(), task, tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", bundle=None) -> "Predictor":
        from .models import load_model
        from .tasks import get_task
        from .train import is_task_file
        from .verbalizer import label_word_ids

        run_dir = Path(run_dir)
        if not (run_dir / "prompt.safetensors").exists():
            raise FileNotFoundError(f"{run_dir} holds no prompt.safetensors; train one with python -m lpt_probe.train")
        cfg = io.read_json(run_dir / "config.json")
        task = cfg["train"]["task"]
        if is_task_file(task):
            from .data import load_custom_task

            t = cfg["train"]
            spec = load_custom_task(task, shots=t["shots"], data_seed=t["data_seed"], dev_size=t["dev_size"],
                                    max_examples=t["max_examples"])[0]
        else:
            spec = get_task(task)
        model, tokenizer, _ = (bundle if bundle is not None else
                               load_model(cfg["train"]["model"], device=device, dtype=cfg["train"].get("dtype", "fp32")))
        backbone = Backbone(model)
        kind = "clm" if backbone.is_causal else "mlm"
        words = label_word_ids(spec, tokenizer, kind) if backbone.has_lm_head else None
        lpt = LatePromptModel(backbone, LatePromptConfig(**cfg["prompt"]), len(spec.label_names), words,
                              copy_backbone=bundle is not None).to(device)
        load_prompt_weights(lpt, run_dir / "prompt.safetensors")
        return cls(lpt, spec, tokenizer, cfg["train"]["max_length"])

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str | tuple[str, ...]]) -> np.ndarray:
        from .data import Example
        from .verbalizer import encode

        n_fields = len(self.task.text_fields)
        examples = []
        for i, t in enumerate(texts):
            fields = (t,) if isinstance(t, str) else tuple(t)
            if len(fields) != n_fields:
                raise ValueError(f"text {i} has {len(fields)} field(s); task {self.task.name!r} "
                                 f"needs {n_fields} ({', '.join(self.task.text_fields)})")
            examples.append(Example(id=str(i), texts=fields, label=0))
        backbone = self.model.backbone
        enc = encode(self.task, examples, self.tokenizer, "clm" if backbone.is_causal else "mlm",
                     max_length=self.max_length)
        data = Encoded([list(map(int, x)) for x in enc["input_ids"]], [int(p) for p in enc["pred_positions"]],
                       [0] * len(examples), pad_id=int(self.tokenizer.pad_token_id or 0))
        out = np.zeros((len(data), len(self.task.label_names)), dtype=np.float32)
        for idx in data.batches(self.batch_size):
            b = data.collate(idx, backbone.device)
            logits = self.model(b["input_ids"], b["attention_mask"], b["pred_positions"])["logits"]
            out[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str | tuple[str, ...]]) -> list[str]:
        return [self.task.label_names[i] for i in self.predict_proba(texts).argmax(-1)]
