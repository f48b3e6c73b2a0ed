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


def sweep_flags(args, *arm: str) -> list[str]:
    """The sweep's flags at the study settings, then the arm's own (e.g. ``--prompt-init states``)."""
    return ["--task", args.task, "--model", args.model, "--data-dir", str(Path(args.data_dir).resolve()),
            "--shots", "100", "--dev-size", str(args.dev_size), "--max-length", str(args.max_length),
            "--prompt-layers", args.prompt_layers, "--seeds", args.seeds, "--steps", str(args.steps),
            "--eval-every", str(args.eval_every), "--patience", str(args.patience), "--bucket", "--drop-overlap",
            *(["--generators", args.generator] if args.generator != "none" else []),
            *(["--lr", args.lr] if getattr(args, "lr", None) else []), *arm]


def summary(table: pd.DataFrame, arm: str = "prompt_init") -> tuple[pd.DataFrame, str]:
    """Mean over seeds per (arm, prompt layer), and the arm with the higher mean dev accuracy."""
    by = table.groupby([arm, "prompt_layer"])[["dev_metric", "test_metric", "stopped_step"]].mean()
    dev = table.groupby(arm)["dev_metric"].mean()
    return by.reset_index(), str(dev.idxmax())


def study_parser(doc: str):
    """The flags both prompt benchmarks share: the SmolLM2 study settings."""
    p = harness.parser(doc)
    p.add_argument("--task", default="trec")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--prompt-layers", default="default", help="'default' = 1, the middle, the last")
    p.add_argument("--seeds", default="13")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--dev-size", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--generator", default="none", choices=("none", "npg", "appg", "mppg"),
                   help="the prompt's generator (default none: a plain prompt; npg: the paper's Table 10 setting)")
    p.add_argument("--out", default=str(RESULTS))
    return p


def run_arms(args, arms: dict[str, list[str]], column: str) -> pd.DataFrame:
    """One sweep per arm into ``<work>/<arm>``, their tables stacked with the arm in ``column``."""
    rows = []
    for name, flags in arms.items():
        out = Path(args.work) / name
        harness.run_module("sweep", sweep_flags(args, *flags), out, record="sweep.json")
        table = store.read_csv(out / "sweep.csv")
        if (table["status"] != "complete").any():
            raise SystemExit(f"{out}: some cells failed; see {out / 'sweep.csv'}")
        rows.append(table.assign(**{column: name}))
    return pd.concat(rows, ignore_index=True)


def report(args, argv, table: pd.DataFrame, column: str, title: str, label: str) -> list[str]:
    """The markdown report: one row per (arm, layer), mean over seeds, and the dev choice."""
    means, best = summary(table, column)
    lines = harness.report_head(title, harness.command(sys.argv[0], argv))
    made = "" if args.generator == "none" else f", generator {args.generator}"
    lines += [f"{args.model}, {args.task}{made}, 100 shots, seeds {args.seeds}, trained until learned (patience "
              f"{args.patience} evaluations of every {args.eval_every} steps, cap {args.steps}). Mean over seeds.", "",
              f"| {label} | prompt layer | dev accuracy | test accuracy | stopped at step |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {getattr(r, column)} | {int(r.prompt_layer)} | {r.dev_metric:.3f} | {r.test_metric:.3f} | "
              f"{r.stopped_step:.0f} |" for r in means.itertuples()]
    dev = table.groupby(column)["dev_metric"].mean()
    lines += ["", "Mean dev accuracy over the layers: " + ", ".join(f"{k} {v:.3f}" for k, v in dev.items())
              + f". Chosen on dev: **{best}**.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__)
    p.add_argument("--lr", default=None, help="the prompt learning rate (default: the method's, 1e-3); "
                   "bench_prompt_lr.py chooses one on dev")
    p.add_argument("--work", default=str(REPO / "artifacts" / "bench_prompt_init"))
    args = p.parse_args(argv)
    table = run_arms(args, {init: ["--prompt-init", init] for init in INITS}, "prompt_init")
    cols = ["task", "model", "prompt_init", "prompt_layer", "seed", "dev_metric", "test_metric", "stopped_step",
            "best_step", "steps"]
    store.write_csv(Path(args.out) / "prompt_init.csv", table[cols])
    lines = report(args, argv, table, "prompt_init",
                   "Prompt initialisation: N(0, 1) against hidden states at the prompt's layer", "init")
    harness.write_report(Path(args.out) / "prompt_init.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
