"""A grid of training runs: ``python -m lpt_probe.sweep --task trec --prompt-layers all``.

The propagation-distance study of the paper's Section 4 (Figure 2 left and middle), and
the comparison with the methods LPT was measured against, as one resumable command: the
command-line front of ``lpt_probe.runs.sweep`` (grid: ``SweepConfig``; every cell's
training: ``TrainConfig`` and the shared ``LatePromptConfig`` options; where cells run:
``ExecutorConfig``, ``--executor local|ray``). It prints the test metric per cell and
draws ``performance_vs_layer.pdf`` and ``convergence*.pdf`` into ``--out``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from .. import store

from .cli import (
    PROMPT_GROUPS,
    TRAIN_GROUPS,
    add_config_args,
    add_output_args,
    add_plan_flag,
    config_from_args,
    plain_text,
    run_main,
    setup_logging,
)
from ..model.config import LatePromptConfig
from ..outputs import stale_status
from ..runs.config import PROMPT_OPTIONS, ExecutorConfig, SweepConfig, TrainConfig


def draw(out: str | Path) -> list[Path]:
    """performance_vs_layer.pdf and convergence*.pdf from the tables in ``out``."""
    from ..viz import paper_style, plot_convergence, plot_performance_vs_layer, save_figure  # here: matplotlib, to draw

    sweep = store.read_csv(store.join(out, "sweep.csv"))
    done = sweep[sweep["status"] == "complete"]
    lpt = done[done["method"] == "lpt"]
    if lpt.empty:  # figures are about prompt layers: a baselines-only grid has none
        return []
    curves = store.read_csv(store.join(out, "curves.csv"))
    curves = curves[curves["method"] == "lpt"] if "method" in curves.columns else curves
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) if store.is_url(out) else Path(out)
        paths = []
        with paper_style():
            ax = plot_performance_vs_layer(done)
            paths += save_figure(ax.figure, local / "performance_vs_layer.pdf")
            generators = sorted(curves["generator"].unique())
            for g in generators:  # one convergence figure per generator
                ax = plot_convergence(curves, generator=g)
                name = "convergence.pdf" if len(generators) == 1 else f"convergence_{g}.pdf"
                paths += save_figure(ax.figure, local / name)
        if store.is_url(out):
            for p in paths:
                store.atomic_write_bytes(store.join(out, p.name), p.read_bytes())
            paths = [Path(p.name) for p in paths]
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.sweep", description=plain_text(__doc__.split("\n")[0]))
    add_config_args(p, TrainConfig, groups=TRAIN_GROUPS)
    g = p.add_argument_group("grid")
    add_config_args(g, SweepConfig, skip=("out", "progress", "overwrite"))
    add_config_args(p, LatePromptConfig, skip=("method", "prompt_layer", "generator"),
                    groups={"late prompt (every cell)": PROMPT_GROUPS["late prompt"],
                            "baseline options (with --methods)": PROMPT_GROUPS["baseline options (with --method)"]})
    ex = p.add_argument_group("execution")
    add_config_args(ex, ExecutorConfig)
    add_plan_flag(ex)
    add_config_args(p, SweepConfig, skip=("methods", "prompt_layers", "generators", "seeds"))
    add_output_args(p)
    return p


def configs(args: argparse.Namespace) -> tuple[SweepConfig, TrainConfig]:
    """The grid and every cell's base training config that the parsed flags describe (the run
    and ``--plan`` both start from them; so does ``benchmarks/bench_plan.py``)."""
    from ..runs.sweep import default_out  # here: torch, once the flags are parsed (--help needs none)

    base = config_from_args(TrainConfig, args, seed=args.seeds[0])
    sweep = config_from_args(SweepConfig, args, prompt={k: getattr(args, k) for k in PROMPT_OPTIONS},
                             progress=args.progress and not args.quiet)
    return replace(sweep, out=sweep.output.out or default_out(base)), base


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    setup_logging(args)
    t0 = time.perf_counter()

    def body() -> int:
        sweep, base = configs(args)
        execution = config_from_args(ExecutorConfig, args)
        if args.plan:
            from ..runs.sweep_plan import plan_sweep  # here: torch, only to run (--help and the parser need none)

            stale = stale_status(sweep.output.out, "sweep.json")  # a killed earlier sweep: say so
            print("\n".join([*([f"note: {stale}"] if stale else []), plan_sweep(sweep, base).render()]))
            return 0
        from ..runs.sweep import run_sweep  # here: torch, only to run (--help and the parser need none)

        table = run_sweep(sweep, base, execution)
        paths = draw(sweep.output.out)
        done = table[table["status"] == "complete"]
        if len(done):
            keys = ["method", "generator", "prompt_layer"]
            stats = (done.astype({"prompt_layer": object}).fillna({"prompt_layer": "-"})
                     .groupby(keys)["test_metric"].agg(["mean", "std", "count"]))
            print(stats.round(4).to_string())
        print(f"{len(done)}/{len(table)} cells complete in {time.perf_counter() - t0:.0f} s -> "
              f"{sweep.output.out}/sweep.csv"
              + "".join(f", {q.name}" for q in paths))
        return 0 if len(done) == len(table) else 1

    return run_main(p, body, interrupted="sweep marked 'interrupted' in sweep.json; rerun the command to resume "
                                         "(finished cells are kept)")


if __name__ == "__main__":
    raise SystemExit(main())
