"""The plain prompt's initialisation: N(0, 1) against hidden states of training tokens at
its own layer (``--prompt-init states``), at the paper's three prompt layers (issue 32).

    python benchmarks/bench_prompt_init.py --data-dir ../shared/data

Two ``python -m lpt_probe.sweep`` runs that differ only in ``--prompt-init`` (default
SmolLM2, TREC, 100 shots, prompt layers 1, the middle and the last, trained until learned:
``--patience``; the settings of the committed SmolLM2 Section 4 studies), into ``--work``
(default ``artifacts/bench_prompt_init``; a rerun resumes the finished cells, and a
study's run folder copied into ``<work>/normal/runs/`` is reused when its key matches). N(0, 1) puts every prompt token at norm about sqrt(hidden)
whatever the layer, while the text's states grow through a decoder; ``states`` starts the
prompt where the states it joins are. The default is chosen on **dev** (mean best dev
accuracy over the three layers and the seeds); test accuracy is reported beside it, not
used. Writes ``prompt_init.csv`` (one row per run) and ``prompt_init.md`` into ``--out``
(default benchmarks/results).
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness
import pandas as pd
from harness import REPO, RESULTS
from lpt_probe import store

INITS = ("normal", "states")


def sweep_flags(args, init: str) -> list[str]:
    return ["--task", args.task, "--model", args.model, "--data-dir", str(Path(args.data_dir).resolve()),
            "--shots", "100", "--dev-size", str(args.dev_size), "--max-length", str(args.max_length),
            "--prompt-layers", args.prompt_layers, "--seeds", args.seeds, "--steps", str(args.steps),
            "--eval-every", str(args.eval_every), "--patience", str(args.patience), "--bucket", "--drop-overlap",
            "--prompt-init", init]


def summary(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Mean over seeds per (init, prompt layer), and the init with the higher mean dev accuracy."""
    by = table.groupby(["prompt_init", "prompt_layer"])[["dev_metric", "test_metric", "stopped_step"]].mean()
    dev = table.groupby("prompt_init")["dev_metric"].mean()
    return by.reset_index(), str(dev.idxmax())


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--task", default="trec")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--prompt-layers", default="default", help="'default' = 1, the middle, the last")
    p.add_argument("--seeds", default="13")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--dev-size", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--work", default=str(REPO / "artifacts" / "bench_prompt_init"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    rows = []
    for init in INITS:
        out = Path(args.work) / init
        timed, _ = harness.run_module("sweep", sweep_flags(args, init), out, record="sweep.json")
        table = store.read_csv(out / "sweep.csv")
        if (table["status"] != "complete").any():
            raise SystemExit(f"{out}: some cells failed; see {out / 'sweep.csv'}")
        rows.append(table.assign(prompt_init=init))
    table = pd.concat(rows, ignore_index=True)
    cols = ["task", "model", "prompt_init", "prompt_layer", "seed", "dev_metric", "test_metric", "stopped_step",
            "best_step", "steps"]
    store.write_csv(Path(args.out) / "prompt_init.csv", table[cols])
    means, best = summary(table)
    lines = harness.report_head("Prompt initialisation: N(0, 1) against hidden states at the prompt's layer",
                                harness.command(__file__, argv))
    lines += [f"{args.model}, {args.task}, 100 shots, seeds {args.seeds}, trained until learned (patience "
              f"{args.patience} evaluations of every {args.eval_every} steps, cap {args.steps}). Mean over seeds.", "",
              "| init | prompt layer | dev accuracy | test accuracy | stopped at step |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.prompt_init} | {int(r.prompt_layer)} | {r.dev_metric:.3f} | {r.test_metric:.3f} | "
              f"{r.stopped_step:.0f} |" for r in means.itertuples()]
    dev = table.groupby("prompt_init")["dev_metric"].mean()
    lines += ["", f"Mean dev accuracy over the layers: " + ", ".join(f"{k} {v:.3f}" for k, v in dev.items())
              + f". Chosen on dev: **{best}**.", ""]
    harness.write_report(Path(args.out) / "prompt_init.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
