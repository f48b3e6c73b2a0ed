"""Does a bf16 frozen backbone change what ``mi`` measures? fp32 and bf16 side by side.

    python benchmarks/bench_backbone_dtype.py --data-dir ../shared/data            # small TREC/MiniLM
    python benchmarks/bench_backbone_dtype.py --data-dir ../shared/data -- --steps 200 --probe-train-max 2000

Runs ``python -m lpt_probe.mi`` twice with the same settings (``SETTINGS``, plus anything after
``--``), once with ``--dtype fp32`` and once with ``--dtype bf16`` (the frozen backbone's
weights; prompts, generators, heads and probes stay fp32), two prompt seeds so that there is
a seed spread. It then compares, row by row of ``mi.csv`` (condition x hidden state, true
labels, mean over probe seeds), I(h;y) and the probe's test accuracy, and each prompt's test
accuracy (its run's ``metrics.json``), against the fp32 run's own noise: the shuffled-label
control's pooled null (half the width of its 95% interval) and, for prompts, the spread
(max - min) over prompt seeds of the same prompt layer at that hidden state. A difference
within the larger of the two is "within noise". The verdict says whether every difference is;
``--dtype``'s default stays fp32 unless it is (and unless the benchmark tasks agree, which
this small run alone does not show). Also records each run's wall time and phases. Results:
benchmarks/results/backbone_dtype.json and backbone_dtype.md. Run by hand, not in CI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import harness
from harness import RESULTS
from lpt_probe import store

SETTINGS = ["--task", "trec", "--model", "minilm", "--seeds", "13,21", "--steps", "60", "--eval-every", "30",
            "--probe-train-max", "1000", "--control-permutations", "3", "--bootstrap", "100", "--jobs", "1"]


def run(dtype: str, data_dir: str, extra: list[str], out: Path) -> dict:
    timed, record = harness.run_module("mi", [*SETTINGS, *extra, "--data-dir", data_dir, "--dtype", dtype], out)
    mi = store.read_csv(out / "mi.csv")
    real = mi[mi["control"] == "none"].groupby(["method", "prompt_layer", "seed", "layer"], as_index=False)[
        ["mi_bits", "accuracy"]].mean()
    tests = []
    for cond, folder in (record.get("runs") or {}).items():
        m = store.read_json_object(out / folder / "metrics.json")
        pl, seed = cond.split("-")[1][2:], cond.split("-")[2][1:]
        tests.append({"prompt_layer": int(pl), "seed": int(seed), "test_accuracy": float(m["test_accuracy"])})
    null = record.get("shuffled_label_null") or {}
    return {"wall_seconds": timed.wall_seconds, "load_before": timed.load_before, "load_after": timed.load_after,
            "phases": record.get("phase_seconds"), "rows": real, "tests": pd.DataFrame(tests),
            "null_half_width": (null["high"] - null["low"]) / 2 if null else float("nan")}


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--results", default=str(RESULTS))
    args, extra = p.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    scratch = Path(tempfile.mkdtemp(prefix="bench_backbone_dtype_"))
    data_dir = str(Path(args.data_dir).resolve())
    res = {d: run(d, data_dir, extra, scratch / d) for d in ("fp32", "bf16")}
    a, b = res["fp32"], res["bf16"]
    keys = ["method", "prompt_layer", "seed", "layer"]
    rows = a["rows"].merge(b["rows"], on=keys, suffixes=("_fp32", "_bf16"))
    lpt = a["rows"][a["rows"]["method"] == "lpt"]
    spread = (lpt.groupby(["prompt_layer", "layer"])[["mi_bits", "accuracy"]].agg(lambda v: v.max() - v.min())
              .rename(columns={"mi_bits": "mi_spread", "accuracy": "acc_spread"}).reset_index())
    rows = rows.merge(spread, on=["prompt_layer", "layer"], how="left").fillna({"mi_spread": 0.0, "acc_spread": 0.0})
    noise = a["null_half_width"]
    rows["mi_diff"] = rows["mi_bits_bf16"] - rows["mi_bits_fp32"]
    rows["acc_diff"] = rows["accuracy_bf16"] - rows["accuracy_fp32"]
    rows["mi_allowed"] = np.maximum(noise, rows["mi_spread"])
    rows["mi_within"] = rows["mi_diff"].abs() <= rows["mi_allowed"]
    tests = a["tests"].merge(b["tests"], on=["prompt_layer", "seed"], suffixes=("_fp32", "_bf16"))
    t_spread = a["tests"].groupby("prompt_layer")["test_accuracy"].agg(lambda v: v.max() - v.min()).rename("spread")
    tests = tests.merge(t_spread, on="prompt_layer")
    tests["diff"] = tests["test_accuracy_bf16"] - tests["test_accuracy_fp32"]
    tests["within"] = tests["diff"].abs() <= tests["spread"]
    within = bool(rows["mi_within"].all() and tests["within"].all())
    result = {"command": harness.command(__file__, argv), "settings": [*SETTINGS, *extra],
              **harness.machine(torch=True),
              "within_noise": within, "null_half_width_bits": noise,
              "max_abs_mi_diff_bits": float(rows["mi_diff"].abs().max()),
              "max_abs_probe_accuracy_diff": float(rows["acc_diff"].abs().max()),
              "mi_rows_within": int(rows["mi_within"].sum()), "mi_rows": int(len(rows)),
              "test_within": int(tests["within"].sum()), "tests": int(len(tests)),
              "runs": {d: {k: r[k] for k in ("wall_seconds", "load_before", "load_after", "phases")}
                       for d, r in res.items()},
              "rows": rows.to_dict("records"), "test_rows": tests.to_dict("records")}
    out = Path(args.results)
    harness.write_json(out / "backbone_dtype.json", result, indent=1)
    verdict = "within" if within else "NOT within"
    lines = [*harness.report_head("A bf16 frozen backbone against fp32 in `mi`", result["command"]),
             (f"`python -m lpt_probe.mi {' '.join(result['settings'])}` with `--dtype fp32` and `--dtype bf16`. "
              f"I(h;y): largest |bf16 - fp32| {result['max_abs_mi_diff_bits']:.3f} bits; "
              f"{result['mi_rows_within']} of {len(rows)} rows within noise (the fp32 run's shuffled-label null, "
              f"half-width {noise:.3f} bits, or the prompt-seed spread). Prompt test accuracy: {result['test_within']} "
              f"of {len(tests)} within the seed spread. Verdict: bf16 is **{verdict}** the fp32 run's noise here. "
              f"Wall time fp32 {a['wall_seconds']:.0f} s, bf16 {b['wall_seconds']:.0f} s (load average "
              f"{a['load_before']:.1f}/{b['load_before']:.1f} at their starts; "
              f"{harness.machine_line('default', 'threads', result)})."), "",
             "| method | PL | seed | hidden state | I fp32 | I bf16 | difference | allowed | probe acc fp32 | bf16 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['prompt_layer']} | {r['seed']} | {r['layer']} | {r['mi_bits_fp32']:+.3f} | "
              f"{r['mi_bits_bf16']:+.3f} | {r['mi_diff']:+.3f} | {r['mi_allowed']:.3f} | {r['accuracy_fp32']:.3f} | "
              f"{r['accuracy_bf16']:.3f} |" for r in result["rows"]]
    lines += ["", "| PL | seed | test acc fp32 | bf16 | difference | seed spread |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['prompt_layer']} | {r['seed']} | {r['test_accuracy_fp32']:.3f} | {r['test_accuracy_bf16']:.3f} | "
              f"{r['diff']:+.3f} | {r['spread']:.3f} |" for r in result["test_rows"]]
    harness.write_report(out / "backbone_dtype.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:8]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
