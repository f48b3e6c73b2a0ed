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
moment: the memory the extraction itself added (the weights paged in by the first batch
included). ``b``, the growth per example between the two largest sizes of a path, is what
grows with the data. A setting (shape, task, max length, threads, and any ``MALLOC_*``
variables set for glibc's allocator, e.g. ``MALLOC_ARENA_MAX=1``) is one entry; a rerun with
other ``--sizes`` or ``--paths`` adds its rows to the entry's. Results:
benchmarks/results/memory_scale.{json,md}.
Run by hand, never in CI (a test runs it at a tiny shape).
"""

from __future__ import annotations

import json
import os
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


class _AnonPeak:
    """The largest ``RssAnon`` (memory not backed by a file: arrays, tensors) seen by a
    thread sampling it every 20 ms until ``stop()``. Memory-mapped file pages (the layer
    files a probe reads, the weights) are in ``VmHWM`` but not here: the kernel can drop
    them and read them again."""

    def __init__(self):
        import threading

        self.peak, self._done = _rss_kb("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_kb("RssAnon"))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self.peak, _rss_kb("RssAnon"))


def worker(args) -> dict:
    """One path at one size in this process: the extraction's added peak memory and time."""
    import torch

    from lpt_probe.analysis.mi.study import MIConfig, MIRun
    from lpt_probe.analysis.engine.rep_files import StreamedSafetensors
    from lpt_probe.analysis.engine.representations import (extract_many, layer_sequences, representation_specs,
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
    with torch.no_grad():  # every weight read once: pages of the weights file a batch's new
        for w in bb.model.parameters():  # tokens would touch (embedding rows) are not the extraction's
            float(w.float().sum())
    with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) starts again from here
        f.write("5")
    start_kb, anon_kb, t0 = _rss_kb("VmRSS"), _rss_kb("RssAnon"), time.perf_counter()
    sampler = _AnonPeak()
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
            seqs.token_moments()  # read once, chunk by chunk, as a probe standardising its input does
            if folder is not None:
                (folder / f"h{j}.seq").unlink()
    seconds = time.perf_counter() - t0
    peak_kb, anon_peak_kb = _rss_kb("VmHWM"), sampler.stop()
    return {"path": args.path, "n": n, "tokens": int(sum(data.lengths)), "longest": int(max(data.lengths)),
            "seconds": round(seconds, 1),
            "added_peak_mb": round((peak_kb - start_kb) / 1024, 1), "rss_before_mb": round(start_kb / 1024, 1),
            "added_anon_peak_mb": round((anon_peak_kb - anon_kb) / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1)}


def measure(args, path: str, n: int) -> dict:
    """One path at one size in a fresh process; its files (hundreds of MB at RoBERTa-large's
    shape) are removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="lpt_mem_") as work:
        cmd = [sys.executable, __file__, "worker", "--path", path, "--n", str(n), "--model", str(args.model),
               "--data-dir", args.data_dir, "--task", args.task, "--shape", args.shape, "--threads",
               str(args.threads), "--max-length", str(args.max_length), "--work", work]
        proc = harness.run_timed(cmd, f"{path} n={n}", threads=args.threads)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(entries: dict) -> str:
    lines = ["# Extraction memory as examples grow", "",
             ("Each setting: a random model of the shape (`bench_paper_scale.py make-model`), task rows cut to the "
              "max length, a late prompt at the middle layer; each row a fresh process. *Added peak* = the "
              "kernel's peak resident memory during extraction minus the resident memory when it began (model "
              "and data loaded, every weight read once); *added anonymous peak* = the same for memory not "
              "backed by a file (arrays, tensors, the allocator's heap; memory-mapped layer files excluded), "
              "sampled every 20 ms."), ""]
    for label, e in entries.items():
        lines += [f"## {label}", "",
                  f"{e['layers']} x {e['hidden']}, {e['task']}, PL {e['prompt_layer']}.", "",
                  "| path | examples | tokens | longest | seconds | added peak [MB] | added anonymous peak [MB] "
                  "| peak RSS [MB] |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in e["rows"]:
            lines.append(f"| {r['path']} | {r['n']} | {r['tokens']} | {r['longest']} | {r['seconds']:.0f} | "
                         f"{r['added_peak_mb']:.0f} | {r['added_anon_peak_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
        lines += ["", "Growth `b` of the added peak per example between the two largest sizes of each path (past "
                  "the first batches), and `b` times the paper's "
                  f"{e['paper_examples']} {e['task']} examples (an extrapolation of the slope, not a measurement):",
                  "", "| path | sizes | b [MB per example] | b x paper examples [MB] | b anonymous [MB per example] "
                  "| b anonymous x paper examples [MB] |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for path, f in e["fits"].items():
            lines.append(f"| {path} | {' to '.join(map(str, f['sizes']))} | {f['b']:.3f} | "
                         f"{f['b'] * e['paper_examples']:.0f} | {f['b_anon']:.3f} | "
                         f"{f['b_anon'] * e['paper_examples']:.0f} |")
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
    args.model = args.model or make_model(args.work / f"{args.shape}-random", args.shape)
    rows = []
    for path in args.paths.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(measure(args, path, n))
            r = rows[-1]
            print(f"{path} n={r['n']}: {r['seconds']:.0f} s, added peak {r['added_peak_mb']:.0f} MB", flush=True)
    results = Path(args.results)
    shape = SHAPES[args.shape]
    malloc = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    setting = {"shape": args.shape, "layers": shape["num_hidden_layers"], "hidden": shape["hidden_size"],
               "task": args.task, "max_length": args.max_length, "prompt_layer": PROMPT_LAYER[args.shape],
               "threads": args.threads, "malloc": malloc}
    label = (f"{args.shape}, {args.task}, max length {args.max_length}, {args.threads} thread(s), "
             f"{'glibc malloc ' + malloc if malloc else 'default glibc malloc'}")
    stored = json.loads((results / "memory_scale.json").read_text()) if (results / "memory_scale.json").exists() \
        else {}
    old = stored.get(label, {})
    if old:  # the same setting: keep its other sizes and paths
        done = {(r["path"], r["n"]) for r in rows}
        rows = sorted([r for r in old["rows"] if (r["path"], r["n"]) not in done] + rows,
                      key=lambda r: (PATHS.index(r["path"]), r["n"]))
    fits = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        mine = [r for r in rows if r["path"] == path][-2:]  # the two largest sizes: past the first batches
        a, b = fit_line([r["n"] for r in mine], [r["added_peak_mb"] for r in mine])
        b_anon = fit_line([r["n"] for r in mine], [r["added_anon_peak_mb"] for r in mine])[1]
        fits[path] = {"a": a, "b": b, "b_anon": b_anon, "sizes": [r["n"] for r in mine]}
    from bench_paper_scale import PAPER_SIZES

    entry = {**setting, "paper_examples": sum(PAPER_SIZES.get(args.task, (0, 0))), "rows": rows, "fits": fits,
             **harness.machine(torch=True)}
    merged = harness.merge_entries(results / "memory_scale.json", {label: entry},
                                   reset=lambda old: "rows" in old)  # one entry, as the first version wrote
    harness.write_report(results / "memory_scale.md", render(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
