"""Project sentence representations and generated prompts: ``python -m lpt_probe.project RUN``.

The paper's Figure 6 (Section 6.6) for one trained run folder (``lpt_probe.train`` or a
sweep cell): for every example of ``--split`` it takes the sentence representation at
hidden state PL-1 (the generator's input; ``--representation cls`` is the state NPG
reads) and the generated prompt (flattened or averaged over prompt tokens), projects both
with UMAP, t-SNE or PCA (``--method``), colours points by k-means clusters of the sentence
representations (same colours on both panels) and measures how much the two neighbourhood
structures agree in the original spaces (k-NN overlap and trustworthiness, each with a
shuffled baseline). Writes ``projection.csv``, ``agreement.csv`` and ``projection.pdf``
into ``--out`` (default ``<RUN>/projection/``). Compute: ``lpt_probe.analysis``; drawing:
``lpt_probe.viz``. A run without a generator is refused (its prompt is the same for
every input).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .analysis.projection import METHODS, save_projection
from .analysis.prompt_projection import project_run
from .analysis.representations import REPRESENTATIONS
from .cli import add_output_args, plain_text, run_main, setup_logging
from .outputs import check_url
from .store import check_output_folder
from .viz import paper_style, plot_projection, save_figure


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.project", description=plain_text(__doc__.split("\n")[0]))
    p.add_argument("run", help="a complete run folder (config.json, prompt.safetensors)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--method", default="umap", choices=list(METHODS))
    p.add_argument("--representation", default="cls", choices=list(REPRESENTATIONS))
    p.add_argument("--prompt", dest="how", default="flatten", choices=["flatten", "mean"])
    p.add_argument("--max-examples", type=int, default=500)
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--seed", type=int, default=0, help="random_state of projection and k-means")
    p.add_argument("--out", default=None, help="default <RUN>/projection/")
    p.add_argument("--png", action="store_true")
    add_output_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    setup_logging(args)

    def body() -> int:
        run = Path(args.run)
        check_url(args.out or "", local_only=True)  # a local folder only
        out = Path(args.out) if args.out else run / "projection"
        if args.out or run.is_dir():  # before the work, not after it (no run folder: project_run says so)
            check_output_folder(out)
        table, agreement = project_run(run, args.split, args.method, args.representation, args.how,
                                       args.max_examples, args.data_dir, args.seed)
        save_projection(out, table, agreement)
        with paper_style():
            fig = plot_projection(table, agreement=agreement)
            paths = save_figure(fig, out / "projection.pdf", png=args.png)
        print(f"k-NN overlap sentence vs prompt space: {agreement['knn_overlap']:.3f} "
              f"(shuffled {agreement['knn_overlap_shuffled']:.3f}); trustworthiness "
              f"{agreement['trustworthiness']:.3f} (shuffled {agreement['trustworthiness_shuffled']:.3f})")
        print("wrote " + ", ".join(str(x) for x in [out / "projection.csv", out / "agreement.csv", *paths]))
        return 0

    return run_main(p, body)


if __name__ == "__main__":
    raise SystemExit(main())
