"""Does extraction memory stay bounded as examples grow? Measured at RoBERTa-large's shape (issue 26).

    python benchmarks/bench_memory.py --data-dir ../shared/data

On the random RoBERTa-large-shaped model of ``bench_paper_scale.py make-model`` (24 x 1024,
random weights: costs, not accuracies) and real task rows (``--task``, default TREC, the
Figure-2 task), for each ``--sizes`` n: the two extraction paths ``mi`` can take, each
streamed to disk (what ``mi`` does) and held in memory (what it did before: the arrays of
a whole split, saved at the end), each in a fresh process:

- ``vectors``: the frozen model and one late prompt at PL 13 in one pass
  (``extract_many``: three vectors and the prompt states per hidden state), into
  safetensors files (``into=``) or returned as arrays and then saved;
- ``sequences``: one late prompt's whole sequences at every hidden state, layer by layer
  (``layer_sequences``), into per-layer files with the running states on disk
  (``folder=``) or in memory, each layer consumed (read once) before the next.

Peak resident memory is read from the kernel (``VmHWM``, reset after the model and data
are loaded, so the peak is the extraction's own), minus the resident memory at that
moment: the memory the extraction itself added. ``a + b*n`` is fitted over the sizes;
``b`` (MB per example) is what grows. Results: benchmarks/results/memory_scale.{json,md}.
Run by hand, never in CI (a test runs it at a tiny shape).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from bench_paper_scale import SHAPES, fit_line, make_model
from harness import RESULTS

PATHS = ("vectors-streamed", "vectors-in-memory", "sequences-streamed", "sequences-in-memory")
PROMPT_LAYER = {"roberta-large": 13, "roberta-base": 7, "tiny": 3}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(args) -> dict:
    """One path at one size in this process: the extraction's added peak memory and time."""
    import numpy as np
    import torch

    from lpt_probe.analysis.mi import MIConfig, MIRun
    from lpt_probe.analysis.rep_files import StreamedSafetensors
    from lpt_probe.analysis.representations import (extract_many, layer_sequences, representation_specs,
                                                    save_representations)
    from lpt_probe.model.late_prompt import LatePromptModel

    torch.set_num_threads(args.threads)
    pl = PROMPT_LAYER[args.shape]
    cfg = MIConfig(task=args.task, model=args.model, data_dir=args.data_dir, device="cpu", prompt_layers=str(pl),
                   probe_train_max=args.n, max_length=args.max_length, progress=False, out=str(args.work / "mi"))
    run = MIRun(cfg)
    run.load_data()
    data = run.encoded["train"]
    prepared = run.prompt_prepared
    torch.manual_seed(0)
    lpt = LatePromptModel(run.backbone, cfg.prompt_config(pl), prepared.data.task.num_labels,
                          prepared.label_word_ids).eval()
    bb, out = run.backbone, args.work / "out"
    L, d, n = bb.num_hidden_layers, bb.hidden_size, len(data)
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    start_kb, t0 = _rss_kb("VmRSS"), time.perf_counter()
    if args.path.startswith("vectors"):
        models = {"frozen": None, "lpt": lpt}
        if args.path == "vectors-streamed":
            files = {k: StreamedSafetensors(out / f"{k}.safetensors",
                                            representation_specs(L, n, d, m.l if m is not None else None))
                     for k, m in models.items()}
            for f in files.values():
                f.__enter__()
            extract_many(bb, models, data, progress=False, into=files)
            for f in files.values():
                f.__exit__(None, None, None)
        else:
            reps = extract_many(bb, models, data, progress=False)
            for k, r in reps.items():
                save_representations(out, k, r, {})
    else:
        folder = out / "seq" if args.path == "sequences-streamed" else None
        for j, seqs in layer_sequences(bb, lpt, data, True, folder=folder):
            float(np.asarray(seqs.values[: seqs.n_tokens]).astype(np.float32).sum())  # read it once, as a probe would
            if folder is not None:
                (folder / f"h{j}.seq").unlink()
    seconds = time.perf_counter() - t0
    peak_kb = _rss_kb("VmHWM")
    return {"path": args.path, "n": n, "tokens": int(sum(data.lengths)), "longest": int(max(data.lengths)),
            "seconds": round(seconds, 1),
            "added_peak_mb": round((peak_kb - start_kb) / 1024, 1), "rss_before_mb": round(start_kb / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1)}


def measure(args, path: str, n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="lpt_mem_"))
    cmd = [sys.executable, __file__, "worker", "--path", path, "--n", str(n), "--model", str(args.model),
           "--data-dir", args.data_dir, "--task", args.task, "--shape", args.shape, "--threads", str(args.threads),
           "--max-length", str(args.max_length), "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode:
        raise SystemExit(f"{path} n={n} failed:\n{proc.stderr[-harness.TAIL:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(e: dict) -> str:
    lines = ["# Extraction memory as examples grow", "",
             (f"A random {e['shape']}-shaped model ({e['layers']} x {e['hidden']}, `bench_paper_scale.py make-model`), "
              f"{e['task']} rows at most {e['max_length']} tokens long, late prompt at PL {e['prompt_layer']}, "
              f"{e['threads']} thread(s); each row a fresh "
              "process. *Added peak* = the kernel's peak resident memory during extraction minus the resident "
              "memory when it began (model and data loaded)."), "",
             "| path | examples | tokens | longest | seconds | added peak [MB] | peak RSS [MB] |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in e["rows"]:
        lines.append(f"| {r['path']} | {r['n']} | {r['tokens']} | {r['longest']} | {r['seconds']:.0f} | "
                     f"{r['added_peak_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Fitted `added peak = a + b*n` over the sizes, and `b` scaled to the paper's largest split "
              f"({e['paper_examples']} examples of {e['task']}; an extrapolation of the slope, not a measurement):", "",
              "| path | a [MB] | b [MB per example] | b x paper examples [MB] |", "| --- | ---: | ---: | ---: |"]
    for path, f in e["fits"].items():
        lines.append(f"| {path} | {f['a']:.0f} | {f['b']:.3f} | {f['b'] * e['paper_examples']:.0f} |")
    lines += ["", harness.machine_line(f"{e['threads']}", info=e), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("mode", nargs="?", default="measure", choices=("measure", "worker"))
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--task", default="trec")
    p.add_argument("--shape", default="roberta-large", choices=sorted(SHAPES))
    p.add_argument("--model", default=None, help="a model folder made by make-model (default: make one in --work)")
    p.add_argument("--work", default=None, help="where the model folder is made (default: a temporary folder)")
    p.add_argument("--sizes", default="64,256,1024", help="examples (the probe's train split, --probe-train-max)")
    p.add_argument("--paths", default=",".join(PATHS), help=f"some of {', '.join(PATHS)}")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-length", type=int, default=128, help="max tokens per example (mi's --max-length)")
    p.add_argument("--results", default=str(RESULTS), help="where memory_scale.json / .md go")
    p.add_argument("--path", default=None, help="worker: the path to measure")
    p.add_argument("--n", type=int, default=None, help="worker: the examples")
    args = p.parse_args(argv)
    args.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lpt_mem_"))
    if args.mode == "worker":
        print(json.dumps(worker(args)))
        return 0
    from bench_paper_scale import PAPER_SIZES

    args.model = args.model or make_model(args.work / f"{args.shape}-random", args.shape)
    rows = []
    for path in args.paths.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(measure(args, path, n))
            r = rows[-1]
            print(f"{path} n={r['n']}: {r['seconds']:.0f} s, added peak {r['added_peak_mb']:.0f} MB", flush=True)
    fits = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        mine = [r for r in rows if r["path"] == path]
        a, b = fit_line([r["n"] for r in mine], [r["added_peak_mb"] for r in mine])
        fits[path] = {"a": a, "b": b}
    shape = SHAPES[args.shape]
    entry = {"shape": args.shape, "layers": shape["num_hidden_layers"], "hidden": shape["hidden_size"],
             "task": args.task, "max_length": args.max_length, "prompt_layer": PROMPT_LAYER[args.shape],
             "threads": args.threads,
             "paper_examples": sum(PAPER_SIZES.get(args.task, (0, 0))), "rows": rows, "fits": fits,
             **harness.machine(torch=True)}
    results = Path(args.results)
    harness.write_json(results / "memory_scale.json", entry)
    harness.write_report(results / "memory_scale.md", render(entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
