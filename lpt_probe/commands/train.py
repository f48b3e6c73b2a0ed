"""Train a late prompt: ``python -m lpt_probe.train --task trec --prompt-layer 4``.

The command-line front of ``lpt_probe.runs.run.train``: the flags are the fields of
``LatePromptConfig`` (what is trained) and ``TrainConfig`` (how), the run folder is
``--out`` (default ``artifacts/runs/<task>/<model>/<what>-<shots>-s<seed>``; an fsspec URL
such as ``s3://bucket/run`` is trained in a local staging folder kept for reruns and
uploaded, ``meta.json`` last: ``lpt_probe.outputs.staged``), and the one printed line
summarises ``metrics.json``.
``--method`` trains a baseline in the same harness (``lpt_probe.model.methods``).
Rerunning the same command reuses the finished run; a failed or damaged one, or one whose
data or model weights changed, is trained again; a finished run of other settings, and a
folder of files lpt_probe did not write, are refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import (
    PROMPT_GROUPS,
    TRAIN_GROUPS,
    add_config_args,
    add_output_args,
    config_from_args,
    plain_text,
    run_main,
    setup_logging,
)
from ..layers import middle_prompt_layer
from ..model.config import LatePromptConfig
from ..outputs import check_owned, check_url, staged, staging_dir
from ..runs.config import TrainConfig
from ..store import check_output_folder, is_url


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.train", description=plain_text(__doc__.split("\n")[0]))
    add_config_args(p, LatePromptConfig, defaults={"prompt_layer": None}, groups=PROMPT_GROUPS)
    add_config_args(p, TrainConfig, groups=TRAIN_GROUPS)
    p._lpt_groups["hardware"].add_argument("--out", default=None,
                                           help="run folder (default artifacts/runs/<task>/<model>/...)")
    p._lpt_groups["hardware"].add_argument("--overwrite", action="store_true",
                                           help="replace what --out holds: a finished run of other settings, or "
                                                "files lpt_probe did not write (both refused otherwise)")
    add_output_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    setup_logging(args)
    state = {"out": None}

    def body() -> int:
        from ..model.loading import load_model  # here: torch, only to run (--help and the parser need none)
        from ..runs.run import default_run_dir, train  # here: torch, only to run
        from ..runs.trainer import TrainingDiverged  # here: torch, only to run

        tc = config_from_args(TrainConfig, args)
        if args.out:  # before the model loads: --out may be the model's own folder
            check_url(args.out)  # a URL whose filesystem is not installed: one line naming the package
            check_output_folder(args.out)
            check_owned(args.out, "meta.json", args.overwrite)
        bundle = load_model(tc.model, device=tc.device, dtype=tc.dtype)
        layers = bundle[0].config.num_hidden_layers
        pl = args.prompt_layer
        if pl is None:
            pl = middle_prompt_layer(layers) if args.method == "lpt" else 1
        pc = config_from_args(LatePromptConfig, args, prompt_layer=pl)
        url = args.out if is_url(args.out) else None
        out = url or (Path(args.out) if args.out else default_run_dir(pc, tc))
        state["out"] = staging_dir(url) if url else out  # where meta.json says failed or interrupted
        try:  # a URL: trained in its local staging folder, then uploaded (meta.json last)
            with staged(url, "meta.json") as local:
                res = train(pc, tc, local or out, bundle=bundle, progress=not args.quiet, overwrite=args.overwrite,
                            keep_other_settings=not args.overwrite)
        except TrainingDiverged as exc:
            p.exit(1, f"error: training diverged: {exc}; run marked failed in {state['out']}/meta.json\n")
        m = res.metrics
        what = (f"PL={m['prompt_layer']} {m['generator']}" if m["method"] == "lpt"
                else m["method"] if m["method"] != "prompt-tuning" else "prompt-tuning PL=1")
        print(f"{m['task']} {m['model']} {what}: "
              f"dev {m['metric_name']} {m['dev_metric']:.4f}, test {m['test_metric']:.4f} "
              f"(best step {m['best_step']}/{m['steps']}, {m['tunable_params']:,} tunable params, "
              f"{m['tokens_per_second']:.0f} train tokens/s) -> {out}")
        return 0

    return run_main(p, body, interrupted=lambda: f"run marked 'interrupted' in {state['out']}/meta.json; "
                                               "rerun the command to train it")


if __name__ == "__main__":
    raise SystemExit(main())
