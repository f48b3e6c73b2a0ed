"""Does fitting the linear probe on float32 features change I(h;y)? Checked on real features.

    python benchmarks/bench_probe_dtype.py                      # runs a small TREC/MiniLM mi first
    python benchmarks/bench_probe_dtype.py artifacts/mi/trec/x  # or reads finished mi folders

``LinearProbe`` casts its features to float64 by default; ``dtype="float32"`` scales and fits
them in float32 (scikit-learn's lbfgs keeps float32; the stored representations are float16,
so both read the same values). For every distinct layer representation stored in the ``mi``
output folders (``reps/*/{train,dev,test}.safetensors``, the vectors the run's
``--representation`` chose), this computes I(h;y) with ``probe_information`` (C chosen on dev,
scored on test) once per dtype, with the true labels and with ``--permutations`` shuffled
labellings (train and dev permuted, as the shuffled-label control does), and records the
difference in bits, whether the same C was chosen, and each fit's time (one thread, as the
probes fit). Without folders it first runs ``python -m lpt_probe.mi`` on TREC with MiniLM at
small settings (``MI_ARGS``) into ``--out``. The verdict: float32 is within ``--tolerance``
(1e-3 bits) on every fit, or not. Results: benchmarks/results/probe_dtype.json and
probe_dtype.md. Run by hand, not in CI.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import numpy as np

import harness
from bench_probe_path import distinct_layers
from harness import RESULTS
from lpt_probe import store
from lpt_probe.analysis.config import MIConfig, study_settings

MI_ARGS = ["--task", "trec", "--model", "minilm", "--steps", "60", "--eval-every", "30", "--probe-train-max", "1000",
           "--control-permutations", "1", "--bootstrap", "100", "--jobs", "1"]


def information(X, y, n_classes: int, dtype: str) -> dict:
    from lpt_probe.probing import LinearProbe, probe_information

    probes = []

    def factory(seed):
        probes.append(LinearProbe(n_classes, seed=seed, dtype=dtype))
        return probes[-1]

    t0 = time.perf_counter()
    res = probe_information(factory, X["train"], y["train"], X["dev"], y["dev"], X["test"], y["test"], n_classes,
                            seeds=(0,), bootstrap=0)
    row = res.rows[0]
    return {"seconds": time.perf_counter() - t0, "mi_bits": float(row["mi_bits"]), "accuracy": float(row["accuracy"]),
            "C": probes[0].C_}


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("folders", nargs="*", help="mi output folders (with reps/ and run.json); none: run a small one")
    p.add_argument("--out", default="artifacts/bench/probe_dtype/trec-minilm", help="where the small mi run goes")
    p.add_argument("--mi-args", default="", help="more mi flags for the small run (they override MI_ARGS')")
    p.add_argument("--permutations", type=int, default=1, help="shuffled labellings per layer")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest |difference| in bits that counts as equal")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    load0, t0 = harness.load_average(), time.perf_counter()
    folders = list(map(Path, args.folders))
    if not folders:
        harness.run_module("mi", [*MI_ARGS, *shlex.split(args.mi_args), "--data-dir", args.data_dir], args.out)
        folders = [Path(args.out)]
    rows, settings = [], {}
    for folder in folders:
        run = store.read_json_object(folder / "run.json")
        settings[str(folder)] = run["settings"]  # how the mi run was made
        saved = study_settings(MIConfig, run["settings"])  # nested, or flat in folders written up to 0.2.0
        rep, task = saved["representation"], saved["task"]
        for cond, layer, X, y in distinct_layers(folder, rep):
            K = int(max(y[s].max() for s in y)) + 1
            cases = [("true labels", y)]
            for k in range(args.permutations):
                rng = np.random.default_rng(k)
                cases.append((f"shuffled labels {k}", {"train": y["train"][rng.permutation(len(y["train"]))],
                                                       "dev": y["dev"][rng.permutation(len(y["dev"]))],
                                                       "test": y["test"]}))
            for what, labels in cases:
                a, b = information(X, labels, K, "float64"), information(X, labels, K, "float32")
                rows.append({"task": task, "folder": str(folder), "condition": cond, "layer": layer, "case": what,
                             "mi_bits_float64": a["mi_bits"], "mi_bits_float32": b["mi_bits"],
                             "diff_bits": b["mi_bits"] - a["mi_bits"], "accuracy_float64": a["accuracy"],
                             "accuracy_float32": b["accuracy"], "C_float64": a["C"], "C_float32": b["C"],
                             "seconds_float64": a["seconds"], "seconds_float32": b["seconds"]})
                print(f"{task} {cond} h{layer} {what}: {a['mi_bits']:+.4f} vs {b['mi_bits']:+.4f} bits "
                      f"({a['seconds']:.2f} s vs {b['seconds']:.2f} s)", flush=True)
    worst = max(abs(r["diff_bits"]) for r in rows)
    s64, s32 = sum(r["seconds_float64"] for r in rows), sum(r["seconds_float32"] for r in rows)
    same_c = sum(r["C_float64"] == r["C_float32"] for r in rows)
    summary = {"command": harness.command(__file__, argv),
               "mi_args": [*MI_ARGS, *shlex.split(args.mi_args)] if not args.folders else None,
               "mi_settings": settings,
               "fits": len(rows), "max_abs_diff_bits": worst, "tolerance_bits": args.tolerance,
               "within_tolerance": bool(worst <= args.tolerance), "same_C": same_c,
               "seconds_float64": s64, "seconds_float32": s32, **harness.machine(), "load_before": load0,
               "load_after": harness.load_average(), "wall_seconds": time.perf_counter() - t0, "rows": rows}
    out = Path(args.results)
    harness.write_json(out / "probe_dtype.json", summary, indent=1)
    n_layers = len({(r["folder"], r["condition"], r["layer"]) for r in rows})
    verdict = "within" if summary["within_tolerance"] else "NOT within"
    lines = [*harness.report_head("The linear probe on float32 features against float64, on real features",
                                  summary["command"]),
             (f"{len(rows)} estimates ({n_layers} distinct layer representations x true labels and "
              f"{args.permutations} shuffled labelling(s)): largest |I(h;y) float32 - float64| "
              f"**{worst:.2g} bits**, {verdict} the tolerance of {args.tolerance:g} bits; the same C in {same_c} of "
              f"{len(rows)}. Probe time, one thread: float64 {s64:.1f} s, float32 {s32:.1f} s "
              f"({s64 / max(s32, 1e-9):.2f}x); load average {load0:.1f} before, {summary['load_after']:.1f} after "
              "(a shared machine: the times are measured under that load)."), "",
             "| condition | layer | case | float64 bits | float32 bits | difference | C float64 | C float32 |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['condition']} | {r['layer']} | {r['case']} | {r['mi_bits_float64']:+.4f} | "
              f"{r['mi_bits_float32']:+.4f} | {r['diff_bits']:+.1e} | {r['C_float64']:g} | {r['C_float32']:g} |"
              for r in rows]
    harness.write_report(out / "probe_dtype.md", "\n".join(lines) + "\n")
    print(f"max |diff| {worst:.2g} bits ({verdict} {args.tolerance:g}); float64 {s64:.1f} s, float32 {s32:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
