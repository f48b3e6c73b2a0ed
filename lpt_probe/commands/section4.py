"""The paper's Section 4 for one task and model in one command:
``python -m lpt_probe.section4 --task subj --model smollm2``.

The command-line front of ``lpt_probe.analysis.section4.study`` (every flag is a field of
``Section4Config``). It runs a layer sweep (accuracy and convergence against the prompt
layer), ``mi`` (I(h;y) per hidden state) and ``influence`` (the prompt's influence and the
label signal reaching it) on one shared set of trained prompts, writes ``sweep/``,
``mi/``, ``influence/``, ``claims.csv`` (each Section 4 claim, what was measured and a
verdict: yes / no / inconclusive / not informative, from paired contrasts between the
paper's three prompt layers), ``contrasts.csv``, ``learned.csv`` and ``section4.json`` into ``--out`` (default
``artifacts/section4/<task>/<model>/``), draws ``section4.pdf`` (2 x 3 panels; ``--png``
adds a PNG) and prints the claims. Rerunning resumes.

``--table DIR [DIR ...]`` prints one markdown table of the claims of finished studies
(the README's Section 4 table) instead of running one; ``--export DEST --out STUDY``
copies a finished study's tables (no weights, no representations) into DEST, from which
its verdicts can be recomputed (``benchmarks/results/section4/`` holds the committed ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.config import Section4Config
from .cli import STUDY_GROUPS, add_config_args, add_output_args, add_plan_flag, plain_text, study_main
from ..outputs import staged, staging_dir
from ..store import is_url

if TYPE_CHECKING:
    from ..analysis.results import Section4Result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.section4", description=plain_text(__doc__.split("\n")[0]),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The stages' own commands: python -m lpt_probe.sweep, python -m lpt_probe.mi, "
                                       "python -m lpt_probe.influence; the figure alone: python -m lpt_probe.figures "
                                       "section4 --sweep OUT/sweep --mi OUT/mi --influence OUT/influence")
    add_config_args(p, Section4Config, groups=STUDY_GROUPS)
    add_plan_flag(p._lpt_groups["hardware and output"])
    g = p.add_argument_group("output")
    g.add_argument("--png", action="store_true", help="also write section4.png (200 dpi) beside the PDF")
    g.add_argument("--table", nargs="+", metavar="DIR", default=None,
                   help="print the markdown tables of these finished studies (claims, each prompt layer against the "
                        "majority class, cost) and exit")
    g.add_argument("--export", metavar="DEST", default=None,
                   help="copy the finished study in --out's tables (claims, contrasts, learned, sweep, mi, influence "
                        "and the per-example files the verdicts read; no weights) into DEST and exit")
    add_output_args(p)
    return p


def draw(out: Path, res: Section4Result, png: bool = False) -> list[Path]:
    """``section4.pdf`` (and ``.png``): the result's figure (``Section4Result.plot``)."""
    import matplotlib  # here: the figure's backend is chosen before pyplot loads, after the run

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend

    from .. import viz as P  # plotting: loaded only when drawing

    with P.paper_style():
        fig = res.plot()
        written = P.save_figure(fig, out / "section4.pdf", png=png)
        plt.close(fig)
    return written


def table(args) -> int | None:
    """``--table DIR ...``: the claims of finished studies as one markdown table;
    ``--export DEST``: the finished study's tables into DEST."""
    if not (args.export or args.table):
        return None
    from ..analysis.section4.study import claims_markdown, export_tables  # here: torch, only for these modes
    from ..analysis.section4.tables import cost_markdown, learned_markdown  # here: pandas, only for these modes

    if args.export:
        if not args.out:
            raise ValueError("--export DEST copies a finished study: name it with --out STUDY")
        if is_url(args.out):
            raise ValueError(f"--out {args.out}: --export reads a finished study from a local folder; give its folder "
                             f"(a study computed for that URL is in {staging_dir(args.out)})")
        with staged(args.export, resume=False, flag="--export") as local:  # a URL DEST: exported locally, then uploaded
            written = export_tables(args.out, local)
        print(f"wrote {len(written)} files into {args.export}")
        return 0
    print(claims_markdown(args.table))
    print()
    print(learned_markdown(args.table))
    print()
    print(cost_markdown(args.table))
    return 0


def report(cfg: Section4Config, args) -> tuple[str, str]:
    if args.plan:
        from ..analysis.plan import plan_section4  # here: torch, only to run (--help and the parser need none)

        return plan_section4(cfg).render(), "nothing (--plan)"
    from ..analysis.section4.study import run_section4  # here: torch, only to run (--help and the parser need none)

    res = run_section4(cfg)
    written = draw(Path(cfg.out_dir), res, png=args.png)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in res["meta"]["stage_seconds"].items())
    return res.summary(), (f"{cfg.out_dir}/claims.csv, section4.json, {', '.join(w.name for w in written)} "
                              f"and sweep/, mi/, influence/ ({stages})")


def main(argv: list[str] | None = None) -> int:
    return study_main(build_parser(), argv, Section4Config, report, "section4.json", before=table)


if __name__ == "__main__":
    raise SystemExit(main())
