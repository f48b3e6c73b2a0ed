"""Does the linear probe's early stop on the C path change what it chooses? Checked on real features.

    python benchmarks/bench_probe_path.py artifacts/mi/trec/all-layers [more mi folders ...]

``LinearProbe()`` walks the C grid upward and stops once the held-out log-loss has not
improved for ``patience`` grid points (its default, or ``--patience``); ``patience=None``
fits all eight Cs. For every distinct layer representation stored in the given ``mi`` output folders
(``reps/*/{train,dev,test}.safetensors``, the vectors ``--representation`` chose, read
from each folder's ``run.json``), this fits both with the true labels and with
``--permutations`` shuffled labellings (train and dev permuted, as the shuffled-label
control does), selecting C on dev, and once more by 3-fold CV on the first 1000 train rows
(how the MDL online code selects). It records whether the chosen C and the test
probabilities are the same, and the fitting time of each (one thread, as the probes fit).
Results: benchmarks/results/probe_path.json and probe_path.md. Run by hand, not in CI.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

import harness
from harness import RESULTS
from lpt_probe import store
from lpt_probe.analysis.config import MIConfig, study_settings


def distinct_layers(folder: Path, representation: str):
    """(condition, layer, {split: X}, {split: y}) for every distinct stored layer representation."""
    from lpt_probe.analysis.engine.representations import load_representations

    seen = set()
    for reps in sorted((folder / "reps").iterdir()):
        arrays = {s: load_representations(reps, s)[0] for s in ("train", "dev", "test")}
        layers = arrays["train"][representation].shape[0]
        for j in range(layers):
            X = {s: arrays[s][representation][j] for s in arrays}
            digest = hashlib.sha256(b"".join(np.ascontiguousarray(X[s]).tobytes() for s in X)).hexdigest()
            if digest in seen:
                continue  # a prompt's layers below PL are the frozen model's
            seen.add(digest)
            yield reps.name, j, X, {s: arrays[s]["labels"] for s in arrays}


def default_patience() -> int:
    import inspect

    from lpt_probe.probing import LinearProbe

    return inspect.signature(LinearProbe).parameters["patience"].default


def compare(X, y, n_classes: int, dev: bool, patience: int, rows: int | None = None) -> dict:
    from lpt_probe.probing import LinearProbe

    out = {}
    for name, patience in (("full", None), ("early", patience)):
        Xtr, ytr = (X["train"][:rows], y["train"][:rows]) if rows else (X["train"], y["train"])
        t0 = time.perf_counter()
        probe = LinearProbe(n_classes, patience=patience)
        probe.fit(Xtr, ytr, *((X["dev"], y["dev"]) if dev else (None, None)))
        out[name] = {"seconds": time.perf_counter() - t0, "C": probe.C_, "proba": probe.predict_proba(X["test"]),
                     "fitted": len(probe.selection_["scores"])}
    return {"same_C": out["full"]["C"] == out["early"]["C"],
            "max_proba_diff": float(np.abs(out["full"]["proba"] - out["early"]["proba"]).max()),
            "C_full": out["full"]["C"], "C_early": out["early"]["C"], "fitted_early": out["early"]["fitted"],
            "seconds_full": out["full"]["seconds"], "seconds_early": out["early"]["seconds"]}


def main(argv=None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("folders", nargs="+", help="mi output folders (with reps/ and run.json)")
    p.add_argument("--permutations", type=int, default=3, help="shuffled labellings per layer")
    p.add_argument("--patience", type=int, default=None, help="the early stop to check (default: LinearProbe's)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    patience = args.patience or default_patience()
    rows, load0, t0 = [], harness.load_average(), time.perf_counter()
    for folder in map(Path, args.folders):
        run = store.read_json_object(folder / "run.json")
        saved = study_settings(MIConfig, run["settings"])  # nested, or flat in folders written up to 0.2.0
        rep, task = saved["representation"], saved["task"]
        for cond, layer, X, y in distinct_layers(folder, rep):
            K = int(max(y[s].max() for s in y)) + 1
            cases = [("true labels, C on dev", y, True, None)]
            for k in range(args.permutations):
                rng = np.random.default_rng(k)
                shuffled = {"train": y["train"][rng.permutation(len(y["train"]))],
                            "dev": y["dev"][rng.permutation(len(y["dev"]))], "test": y["test"]}
                cases.append((f"shuffled labels {k}, C on dev", shuffled, True, None))
            cases.append(("true labels, 3-fold CV on 1000 train rows", y, False, 1000))
            for what, labels, dev, n in cases:
                r = compare(X, labels, K, dev, patience, n)
                rows.append({"task": task, "folder": str(folder), "condition": cond, "layer": layer, "case": what, **r})
            print(f"{task} {cond} h{layer}: {sum(r['same_C'] for r in rows[-len(cases):])}/{len(cases)} same C",
                  flush=True)
    out = Path(args.results)
    same = sum(r["same_C"] for r in rows)
    full, early = sum(r["seconds_full"] for r in rows), sum(r["seconds_early"] for r in rows)
    summary = {"command": harness.command(__file__, argv),
               "patience": patience, "fits": len(rows), "same_C": same,
               "max_proba_diff": max(r["max_proba_diff"] for r in rows),
               "seconds_full": full, "seconds_early": early, **harness.machine(),
               "load_before": load0, "load_after": harness.load_average(),
               "wall_seconds": time.perf_counter() - t0, "rows": rows}
    harness.write_json(out / "probe_path.json", summary, indent=1)
    differ = [r for r in rows if not r["same_C"]]
    n_layers = len({(r["folder"], r["condition"], r["layer"]) for r in rows})
    lines = [*harness.report_head("The linear probe's early stop on the C path, checked on real features",
                                  summary["command"]),
             (f"{len(rows)} probe selections ({n_layers} distinct layer representations x true labels, "
              f"{args.permutations} shuffled labellings and CV): the early stop (patience {patience}) chose "
              f"the full grid's C in **{same} of {len(rows)}**; largest "
              f"difference in a test probability {summary['max_proba_diff']:.2g}. Fitting time, one thread: full grid "
              f"{full:.0f} s, early stop {early:.0f} s ({full / max(early, 1e-9):.1f}x faster); load average "
              f"{load0:.1f} before, {summary['load_after']:.1f} after."), ""]
    if differ:
        lines += ["Selections that differ:", "", "| task | condition | layer | case | C full | C early |",
                  "|---|---|---:|---|---:|---:|"]
        lines += [f"| {r['task']} | {r['condition']} | {r['layer']} | {r['case']} | {r['C_full']:g} | "
                  f"{r['C_early']:g} |" for r in differ]
    harness.write_report(out / "probe_path.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
