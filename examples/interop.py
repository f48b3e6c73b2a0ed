"""A late prompt trained by lpt_probe, used from plain transformers code (docs/guides/interop.md).

Offline, on the embedded MiniLM's files, in two parts:

1. Masked LM. The embedded MiniLM has no MLM head, so a small random ``BertForMaskedLM``
   over MiniLM's tokenizer stands in for a real one (roberta-large, say): saved as a model
   folder, trained on with lpt_probe (``examples/sentiment``), the prompt exported from the
   run folder, loaded again, attached to ``AutoModelForMaskedLM.from_pretrained(folder)``,
   used by ``model(**batch)`` and ``pipeline("fill-mask")``, detached. Its label
   probabilities equal lpt_probe's ``Predictor``; on a random backbone they mean nothing.
2. The embedded MiniLM itself (a ``BertModel``, no MLM head): lpt_probe trains a linear
   head with the prompt (``head_kind == "classifier"``), so the attached ``AutoModel``
   gives hidden states and ``LatePrompt.label_logits`` reads labels through that head.

    python examples/interop.py --out artifacts/interop
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import transformers as T

from lpt_probe.model.interop import LatePrompt, attach_late_prompt
from lpt_probe.model.late_prompt import LatePromptConfig
from lpt_probe.model.loading import preset_path
from lpt_probe.runs.folders import load_run
from lpt_probe.runs.predict import Predictor
from lpt_probe.runs.run import train
from lpt_probe.runs.trainer import TrainConfig

TASK = Path(__file__).resolve().parent / "sentiment" / "task.yaml"
TEXTS = ["a gripping, moving film", "dull and far too long"]


def make_mlm(folder: Path) -> Path:
    """A small random BertForMaskedLM with MiniLM's tokenizer, saved like any checkpoint."""
    tok = T.AutoTokenizer.from_pretrained(str(preset_path("minilm")))
    torch.manual_seed(0)
    config = T.BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                          intermediate_size=128)
    T.BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def export(model: str, out: Path, steps: int) -> Path:
    """Train a late prompt with lpt_probe, export it from its run folder; returns the prompt folder."""
    cfg = TrainConfig(task=str(TASK), model=model, shots=32, dev_size=16, steps=steps, eval_every=steps)
    run_dir = out / f"run-{Path(model).name}"
    train(LatePromptConfig(prompt_layer=3, generator="npg"), cfg, run_dir, progress=False)
    return LatePrompt.from_run(load_run(run_dir)).save_pretrained(out / f"late-prompt-{Path(model).name}")


def masked_lm(out: Path, steps: int) -> None:
    folder = make_mlm(out / "tiny-bert-mlm") if not (out / "tiny-bert-mlm").is_dir() else out / "tiny-bert-mlm"
    saved = export(str(folder), out, steps)
    # -- plain transformers code from here: a folder, a checkpoint, a tokenizer ------------------
    prompt = LatePrompt.from_pretrained(saved)
    tok = T.AutoTokenizer.from_pretrained(folder)
    model = T.AutoModelForMaskedLM.from_pretrained(folder).eval()
    texts = [prompt.render(t, mask_token=tok.mask_token) for t in TEXTS]
    batch = tok(texts, return_tensors="pt", padding=True)
    where = (batch["input_ids"] == tok.mask_token_id).nonzero()[:, 1]  # [batch]: the mask positions
    with torch.no_grad():
        before = model(**batch).logits
        with attach_late_prompt(model, prompt):
            probs = prompt.label_logits(model(**batch), where).softmax(-1)  # [batch, num_labels]
            fill = T.pipeline("fill-mask", model=model, tokenizer=tok)(texts[0], targets=prompt.task["label_words"])
        after = model(**batch).logits
    assert torch.equal(before, after), "detaching restores the model"
    reference = torch.from_numpy(Predictor.from_run(out / f"run-{folder.name}").predict_proba(TEXTS))
    assert torch.allclose(probs, reference, atol=1e-5), (probs, reference)
    print(f"masked LM: label probabilities {_rounded(probs)} (= lpt_probe's Predictor); "
          f"fill-mask: {[(r['token_str'], round(r['score'], 5)) for r in fill]}")


def minilm(out: Path, steps: int) -> None:
    saved = export("minilm", out, steps)
    prompt = LatePrompt.from_pretrained(saved)
    folder = preset_path("minilm")
    tok, model = T.AutoTokenizer.from_pretrained(folder), T.AutoModel.from_pretrained(folder).eval()
    batch = tok([prompt.render(t, mask_token=tok.mask_token) for t in TEXTS], return_tensors="pt", padding=True)
    where = (batch["input_ids"] == tok.mask_token_id).nonzero()[:, 1]
    with torch.no_grad(), attach_late_prompt(model, prompt):
        probs = prompt.label_logits(model(**batch), where).softmax(-1)  # through the trained linear head
    reference = torch.from_numpy(Predictor.from_run(out / "run-minilm").predict_proba(TEXTS))
    assert torch.allclose(probs, reference, atol=1e-5), (probs, reference)
    labels = [prompt.task["label_names"][i] for i in probs.argmax(-1)]
    print(f"minilm: {dict(zip(TEXTS, labels))} (probabilities {_rounded(probs)})")


def _rounded(probs: torch.Tensor) -> list[list[float]]:
    return [[round(float(p), 3) for p in row] for row in probs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/interop"), help="where runs and prompts go")
    parser.add_argument("--steps", type=int, default=60, help="training steps of each late prompt")
    args = parser.parse_args(argv)
    T.utils.logging.disable_progress_bar()
    masked_lm(args.out, args.steps)
    minilm(args.out, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
