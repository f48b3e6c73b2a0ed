"""Project sentence representations and generated prompts: ``python -m lpt_probe.project RUN``.

The paper's Figure 6 (Section 6.6) for one trained run folder (``lpt_probe.train`` or a
sweep cell): for every example of ``--split`` it takes the sentence representation at
hidden state PL-1 (the generator's input; ``--representation cls`` is the state NPG
reads) and the generated prompt (flattened or averaged over prompt tokens), projects both
with UMAP, t-SNE or PCA (``--method``), colours points by k-means clusters of the sentence
representations (same colours on both panels) and measures how much the two neighbourhood
structures agree in the original spaces (k-NN overlap and trustworthiness, each with a
shuffled baseline). Writes ``projection.csv``, ``agreement.csv`` and ``projection.pdf``
into ``--out`` (default ``<RUN>/projection/``). Compute lives here; drawing in
``lpt_probe.plotting``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import io

logger = logging.getLogger(__name__)


def compute(run_dir: Path, split: str = "test", method: str = "umap", representation: str = "cls",
            how: str = "flatten", max_examples: int | None = 500, data_dir: str | None = None,
            random_state: int = 0):
    from .late_prompt import LatePromptConfig, LatePromptModel, load_prompt_weights
    from .projection import projection_table
    from .representations import extract
    from .train import TrainConfig, prepare

    cfg = io.read_json(run_dir / "config.json")
    meta = io.read_json(run_dir / "meta.json")
    if meta.get("status") != "complete":
        raise ValueError(f"{run_dir} is not a complete run (status {meta.get('status')!r}); train it first")
    pc = LatePromptConfig(**cfg["prompt"])
    tc = TrainConfig(**{**cfg["train"], **({"data_dir": data_dir} if data_dir else {})})
    backbone, _, _, data, encoded, words = prepare(tc)
    model = LatePromptModel(backbone, pc, len(data.task.label_names), words)
    load_prompt_weights(model, run_dir / "prompt.safetensors")
    enc = encoded[split]
    if max_examples and len(enc) > max_examples:
        from .mi import _subsample

        enc = _subsample(enc, max_examples)
    reps = extract(model, enc, desc=f"extract {split}")
    sentence = reps[representation][pc.prompt_layer - 1]  # [n, hidden]: the generator's input
    table, agreement = projection_table(sentence, reps["prompt"], reps["labels"], data.task.label_names,
                                        method=method, random_state=random_state, how=how, ids=enc.ids)
    agreement.update(run=str(run_dir), split=split, representation=representation,
                     prompt_layer=pc.prompt_layer, generator=pc.generator, n=len(enc))
    return table, agreement


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.project", description=__doc__.split("\n")[0])
    p.add_argument("run", help="a complete run folder (config.json, prompt.safetensors)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--method", default="umap", choices=["umap", "tsne", "pca"])
    p.add_argument("--representation", default="cls", choices=["cls", "mask", "mean"])
    p.add_argument("--prompt", dest="how", default="flatten", choices=["flatten", "mean"])
    p.add_argument("--max-examples", type=int, default=500)
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--seed", type=int, default=0, help="random_state of projection and k-means")
    p.add_argument("--out", default=None, help="default <RUN>/projection/")
    p.add_argument("--png", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = Path(args.run)
    if not (run / "config.json").exists():
        p.exit(2, f"error: {run} is not a run folder (no config.json); make one with python -m lpt_probe.train\n")
    try:
        table, agreement = compute(run, args.split, args.method, args.representation, args.how,
                                   args.max_examples, args.data_dir, args.seed)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        p.exit(2, f"error: {exc}\n")
    from .plotting import paper_style, plot_projection, save_figure
    from .projection import save_projection

    out = Path(args.out) if args.out else run / "projection"
    save_projection(out, table, agreement)
    with paper_style():
        fig = plot_projection(table, agreement=agreement)
        paths = save_figure(fig, out / "projection.pdf", png=args.png)
    print(f"k-NN overlap sentence vs prompt space: {agreement['knn_overlap']:.3f} "
          f"(shuffled {agreement['knn_overlap_shuffled']:.3f}); trustworthiness "
          f"{agreement['trustworthiness']:.3f} (shuffled {agreement['trustworthiness_shuffled']:.3f})")
    print("wrote " + ", ".join(str(x) for x in [out / "projection.csv", out / "agreement.csv", *paths]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
