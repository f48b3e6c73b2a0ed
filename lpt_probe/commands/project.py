"""Project sentence representations and generated prompts: ``python -m lpt_probe.project RUN``.

The paper's Figure 6 (Section 6.6) for one trained run folder (``lpt_probe.train`` or a
sweep cell): for every example of ``--split`` it takes the sentence representation at
hidden state PL-1 (the generator's input; ``--representation cls`` is the state NPG
reads) and the generated prompt (flattened or averaged over prompt tokens), projects both
with UMAP, t-SNE or PCA (``--method``), colours points by k-means clusters of the sentence
representations (same colours on both panels) and measures how much the two neighbourhood
structures agree in the original spaces (k-NN overlap and trustworthiness, each with a
shuffled baseline). Writes ``projection.csv``, ``agreement.csv`` and ``projection.pdf``
into ``--out`` (default ``<RUN>/projection/``; a folder of other files is refused unless
``--overwrite``; an fsspec URL is written in a temporary folder and uploaded). Compute:
``lpt_probe.analysis``; drawing:
``lpt_probe.viz``. A run without a generator is refused (its prompt is the same for
every input).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.config import PROJECTION_METHODS, REPRESENTATIONS
from .cli import add_output_args, plain_text, run_main, setup_logging
from ..outputs import check_owned, check_url, mark_owned, staged
from ..store import check_output_folder, is_url, join


OWN_FILES = ("projection.csv", "agreement.csv", "projection.pdf", "projection.png")  # what this command writes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.project", description=plain_text(__doc__.split("\n")[0]))
    p.add_argument("run", help="a complete run folder (config.json, prompt.safetensors)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--method", default="umap", choices=list(PROJECTION_METHODS))
    p.add_argument("--representation", default="cls", choices=list(REPRESENTATIONS))
    p.add_argument("--prompt", dest="how", default="flatten", choices=["flatten", "mean"])
    p.add_argument("--max-examples", type=int, default=500)
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--seed", type=int, default=0, help="random_state of projection and k-means")
    p.add_argument("--out", default=None, help="output folder or fsspec URL (default <RUN>/projection/)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files lpt_probe did not write (refused otherwise)")
    p.add_argument("--png", action="store_true")
    add_output_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    setup_logging(args)

    def body() -> int:
        run = Path(args.run)
        out = args.out if is_url(args.out) else Path(args.out) if args.out else run / "projection"
        check_url(str(out))  # a URL whose filesystem is not installed: one line naming the package
        if args.out or run.is_dir():  # before the work, not after it (no run folder: project_run says so)
            check_output_folder(out)
            check_owned(out, None, args.overwrite, own_files=OWN_FILES)
        from ..analysis.projection.compute import save_projection  # here: sklearn, only to run (--help needs none)
        from ..analysis.projection.run import project_run  # here: torch, only to run (--help needs none)
        from ..viz import paper_style, plot_projection, save_figure  # here: matplotlib, to draw

        table, agreement = project_run(run, args.split, args.method, args.representation, args.how,
                                       args.max_examples, args.data_dir, args.seed)
        with staged(out, resume=False) as local:  # a URL: written in a temporary folder, then uploaded
            save_projection(local, table, agreement)
            with paper_style():
                fig = plot_projection(table, agreement=agreement)
                paths = save_figure(fig, local / "projection.pdf", png=args.png)
            if not is_url(out):
                mark_owned(out)
        print(f"k-NN overlap sentence vs prompt space: {agreement['knn_overlap']:.3f} "
              f"(shuffled {agreement['knn_overlap_shuffled']:.3f}); trustworthiness "
              f"{agreement['trustworthiness']:.3f} (shuffled {agreement['trustworthiness_shuffled']:.3f})")
        names = ["projection.csv", "agreement.csv", *(q.name for q in paths)]
        print("wrote " + ", ".join(str(join(out, n)) for n in names))
        return 0

    return run_main(p, body)


if __name__ == "__main__":
    raise SystemExit(main())
