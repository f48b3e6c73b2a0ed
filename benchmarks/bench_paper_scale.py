"""Paper scale without a download: ``mi`` on a random RoBERTa-large-shaped model (issue 26).

    python benchmarks/bench_paper_scale.py make-model --out /tmp/rl           # the model folder only
    python benchmarks/bench_paper_scale.py simulate --data-dir ../shared/data  # CPU: time and memory vs n
    python benchmarks/bench_paper_scale.py gpu --data-dir DATA --model /tmp/rl # a lent GPU, bf16

The paper's Figure 2 runs on RoBERTa-large (24 layers x 1024). Nothing can be downloaded
here, so ``make-model`` builds a model of exactly that shape from a config
(``RobertaForMaskedLM``: 24 layers, hidden 1024, 16 heads, FFN 4096, 50265-word vocabulary,
514 positions) with seeded random weights and the embedded MiniLM's WordPiece tokenizer
(its ids all fall inside the vocabulary; the [CLS]/[SEP]/[MASK]/[PAD] tokens take the
roles of <s>/</s>/<mask>/<pad>). Its numbers are costs, not accuracies: random weights
carry no task information, but every matrix a RoBERTa-large forward multiplies has its
real size, so time, memory and disk per example are RoBERTa-large's.

- ``simulate`` (CPU): the default ``mi`` command (PL 1, 13, 24; one seed; linear probe;
  controls) at ``--sizes`` examples per split (``--max-examples``), each in a fresh folder
  and a fresh process: wall time per phase, the peak resident memory of the largest
  process (the run's own or a probe worker), representation bytes on disk. Each phase is
  fitted as ``a + b * n`` over the sizes and extrapolated to the paper's data sizes
  (``PAPER_SIZES``); with ``--sequence`` the same for the transformer probe, whose
  sequence representations grow with n x tokens.
- ``gpu``: the default ``mi`` (RTE) and the Figure-2 every-layer run (TREC, every prompt
  layer) on ``--device cuda --dtype bf16``, each under ``--limit`` seconds (a run stopped
  at the limit is recorded as such, with the phases it finished).

Results: benchmarks/results/paper_scale.json (one entry per mode and machine, replaced by
a rerun) and paper_scale.md. Run by hand, never in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import RESULTS

SHAPES = {  # RobertaConfig fields; vocabulary and positions as the hub's roberta-large
    "roberta-large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096,
                          vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
    "roberta-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                         vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
    "tiny": dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                 vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
}
# the paper's data sizes (GLUE / SentEval splits as the hub serves them): train pool, test
PAPER_SIZES = {"rte": (2490, 277), "trec": (5452, 500), "subj": (8000, 2000)}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def minilm_tokenizer_folder() -> Path:
    from lpt_probe.model.loading import preset_path
    return preset_path("minilm")


def make_model(out: str | Path, shape: str = "roberta-large", tokenizer: str | Path | None = None,
               seed: int = 0) -> Path:
    """A ``RobertaForMaskedLM`` of ``shape`` with seeded random weights and a WordPiece
    tokenizer, saved as a model folder ``--model`` reads. Reused when its config matches."""
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    out = Path(out)
    tok = Path(tokenizer) if tokenizer else minilm_tokenizer_folder()
    want = {**SHAPES[shape], "pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102}
    done = out / "lpt_paper_shape.json"
    if done.exists() and json.loads(done.read_text()) == {"shape": shape, "seed": seed, **want}:
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(RobertaConfig(**want))
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tok / name).exists():
            shutil.copy(tok / name, out / name)
    harness.write_json(done, {"shape": shape, "seed": seed, **want})  # last: the folder is complete
    return out


def run_mi(flags: list[str], limit: float | None = None) -> dict:
    """One ``mi`` command in a fresh folder and a fresh process (that process's largest
    descendant's peak memory is read through a wrapper): wall time, phases, status, disk."""
    out = Path(tempfile.mkdtemp(prefix="lpt_paper_")) / "mi"
    wrapper = ("import resource, signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
               "r = subprocess.run(sys.argv[1:], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))"
               ".returncode; print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "file=sys.stderr); sys.exit(r)")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "lpt_probe.mi", "--out", str(out), "--no-progress",
           *flags]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    print("+ python -m lpt_probe.mi", " ".join(flags), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # mi records "interrupted" and the phases it finished
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        stopped = True
    wall = time.perf_counter() - t0
    peak = [ln.split()[1] for ln in stderr.splitlines() if ln.startswith("PEAK_RSS_KB")]
    run = {}
    if (out / "run.json").exists():
        run = json.loads((out / "run.json").read_text())
    if proc.returncode and not stopped:
        raise SystemExit(f"mi failed ({proc.returncode}):\n{stderr[-harness.TAIL:]}")
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    reps = sum(f.stat().st_size for f in (out / "reps").rglob("*") if f.is_file()) if (out / "reps").exists() else 0
    shutil.rmtree(out.parent, ignore_errors=True)
    return {"command": "python -m lpt_probe.mi " + " ".join(flags), "wall_seconds": round(wall, 1),
            "stopped_at_limit": stopped, "limit_seconds": limit, "status": run.get("status", "none"),
            "phase_seconds": {k: round(v, 1) for k, v in (run.get("phase_seconds") or {}).items()},
            "peak_rss_mb": round(int(peak[0]) / 1024, 1) if peak else None,
            "prompts_trained": sum(1 for ln in stderr.splitlines() if ": trained (" in ln),
            "pieces_fitted": run.get("pieces_fitted"),
            "disk_mb": round(disk / 2**20, 1), "representation_mb": round(reps / 2**20, 1),
            "stdout_tail": stdout[-2500:], "stderr_tail": stderr[-1500:]}


def fit_line(ns: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b * n`` (b = 0 with a single size)."""
    import numpy as np
    if len(set(ns)) < 2:
        return float(np.mean(ys)), 0.0
    b, a = np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def simulate(args) -> dict:
    """The default ``mi`` at each size on the random RoBERTa-large-shaped model (CPU)."""
    folder = make_model(args.work / f"{args.shape}-random", args.shape, args.tokenizer)
    base = ["--task", args.task, "--model", str(folder), "--data-dir", args.data_dir, "--device", "cpu",
            "--steps", str(args.steps), "--eval-every", str(args.steps), "--dev-size", str(args.dev_size),
            "--jobs", str(args.jobs), "--prompt-layers", args.prompt_layers, *args.extra]
    variants = {"linear": []}
    if args.sequence:
        variants["transformer"] = ["--probe", "transformer", "--no-controls"]
    runs = {}
    for name, flags in variants.items():
        rows = []
        for n in args.sizes:
            r = run_mi([*base, "--max-examples", str(n), *flags])
            r["n"] = n
            rows.append(r)
            print(f"  {name} n={n}: {r['wall_seconds']:.0f} s, phases {r['phase_seconds']}, "
                  f"peak {r['peak_rss_mb']} MB, reps {r['representation_mb']} MB", flush=True)
        pool, test = PAPER_SIZES[args.task]
        # examples the run extracts and probes: the pool and the test split, each capped at n
        ns = [r["n"] + min(r["n"], test) for r in rows]
        fits = {ph: fit_line(ns, [r["phase_seconds"].get(ph, 0.0) for r in rows]) for ph in ("extract", "probe")}
        fits["representation_mb"] = fit_line(ns, [r["representation_mb"] for r in rows])
        scaled = {k: a + b * (pool + test) for k, (a, b) in fits.items()}
        # peak memory is not extrapolated: it grows with the extraction batch (64 examples x every
        # hidden state; the rows stream to disk batch by batch), not with n
        # prompt training scales with steps (and the dev/test evaluations), not with the pool
        scaled["train_seconds_per_step"] = sum(r["phase_seconds"].get("train", 0.0) for r in rows) / (
            len(rows) * args.steps * len(args.prompt_layers.split(",")))
        runs[name] = {"rows": rows, "fits": {k: {"a": a, "b_per_example": b} for k, (a, b) in fits.items()},
                      "paper_examples": pool + test, "scaled": scaled}
    return {"mode": "simulate", "shape": args.shape, "task": args.task, "steps": args.steps, "jobs": args.jobs,
            "prompt_layers": args.prompt_layers, "max_length": 128,
            **harness.machine(torch=True), "variants": runs}


def gpu(args) -> dict:
    """The default ``mi`` and the Figure-2 every-layer run, bf16 on CUDA, each under ``--limit``."""
    import torch
    folder = Path(args.model) if args.model else make_model(args.work / f"{args.shape}-random", args.shape,
                                                            args.tokenizer)
    common = ["--model", str(folder), "--data-dir", args.data_dir, "--device", args.device, "--dtype", args.dtype,
              *args.extra]
    commands = {"default": ["--task", "rte", *common],
                "figure2": ["--task", "trec", "--prompt-layers", "all", "--seeds", args.figure2_seeds, *common]}
    runs = {}
    for name in args.runs:
        runs[name] = run_mi(commands[name], limit=args.limit)
        r = runs[name]
        print(f"  {name}: {r['wall_seconds']:.0f} s ({r['status']}), phases {r['phase_seconds']}", flush=True)
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"mode": "gpu", "shape": args.shape, "gpu": gpu_name, "dtype": args.dtype, "torch": torch.__version__,
            **harness.machine(), "runs": runs}


def render(entries: dict) -> str:
    lines = ["# Paper scale: `mi` on a random RoBERTa-large-shaped model", "",
             ("A `RobertaForMaskedLM` of roberta-large's shape (24 x 1024, from a config, random weights; "
              "`bench_paper_scale.py make-model`): costs, not accuracies."), ""]
    for key, e in entries.items():
        lines += [f"## {key}", ""]
        if e["mode"] == "simulate":
            lines += [f"{e['cpu_count']} CPU cores, torch {e['torch']}; task {e['task']}, prompt layers "
                      f"{e.get('prompt_layers', '1,13,24')}, {e['steps']} prompt steps, probe jobs {e['jobs']}; each size "
                      "a fresh folder and process.", ""]
            for name, v in e["variants"].items():
                lines += [f"### {name} probe", "",
                          "| examples per split | wall [s] | train [s] | extract [s] | probe [s] | pieces | s per piece "
                          "| peak RSS [MB] | representations [MB] |",
                          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
                for r in v["rows"]:
                    ph, k = r["phase_seconds"], r.get("pieces_fitted")
                    per = ph.get("probe", 0) / k if k else None
                    lines.append(f"| {r['n']} | {r['wall_seconds']:.0f} | {ph.get('train', 0):.0f} | "
                                 f"{ph.get('extract', 0):.0f} | {ph.get('probe', 0):.0f} | {harness.cell(k, '{:.0f}')} | "
                                 f"{harness.cell(per, '{:.2f}')} | {harness.cell(r['peak_rss_mb'], '{:.0f}')} "
                                 f"| {r['representation_mb']:.1f} |")
                s = v["scaled"]
                lines += ["", (f"Fitted `a + b*n` per phase and scaled to the paper's {v['paper_examples']} examples "
                               f"({e['task']}: train pool + test): extract {s['extract']:.0f} s, "
                               f"probe {s['probe']:.0f} s, representations {s['representation_mb']:.0f} MB (an extrapolation, "
                               f"not a measurement; peak memory is not extrapolated: it follows the extraction batch of "
                               f"64 examples and the extraction group, not n). Prompt training (with the lower-"
                               f"layer cache and its dev and test evaluations, which grow with n) averaged "
                               f"{s['train_seconds_per_step']:.2f} s per step and prompt at these sizes."), ""]
        else:
            lines += [f"{e['gpu']}, {e['cpu_count']} CPU cores, torch {e['torch']}, {e['dtype']} backbone.", "",
                      "| run | command | wall [s] | status | prompts trained | train [s] | extract [s] | probe [s] "
                      "| peak RSS [MB] |", "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
            for name, r in e["runs"].items():
                ph = r["phase_seconds"]
                status = r["status"] + (f" (stopped at the {r['limit_seconds']:.0f} s limit)"
                                        if r["stopped_at_limit"] else "")
                lines.append(f"| {name} | `{r['command']}` | {r['wall_seconds']:.0f} | {status} | {r['prompts_trained']} | "
                             f"{ph.get('train', 0):.0f} | {ph.get('extract', 0):.0f} | {ph.get('probe', 0):.0f} | "
                             f"{harness.cell(r['peak_rss_mb'], '{:.0f}')} |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("mode", choices=("make-model", "simulate", "gpu"))
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default=None, help="make-model: the model folder")
    p.add_argument("--shape", default="roberta-large", choices=sorted(SHAPES))
    p.add_argument("--model", default=None, help="gpu: a model folder made by make-model (default: make one)")
    p.add_argument("--work", default=None, help="where the model folder is made (default: a temporary folder)")
    p.add_argument("--tokenizer", default=None, help="folder with a WordPiece tokenizer (default: the MiniLM preset's)")
    p.add_argument("--task", default="rte", choices=sorted(PAPER_SIZES))
    p.add_argument("--sizes", default="64,128,256", help="simulate: examples per split (--max-examples)")
    p.add_argument("--steps", type=int, default=20, help="simulate: prompt training steps")
    p.add_argument("--dev-size", type=int, default=32, help="simulate: the prompt's dev rows")
    p.add_argument("--jobs", type=int, default=2, help="simulate: probe worker processes")
    p.add_argument("--prompt-layers", default="1,13,24", help="simulate: the prompt layers (default: mi's default)")
    p.add_argument("--sequence", action="store_true", help="simulate: also the transformer probe")
    p.add_argument("--runs", default="default,figure2", help="gpu: which runs (default,figure2)")
    p.add_argument("--figure2-seeds", default="13,21,42")
    p.add_argument("--device", default="cuda", help="gpu: the device (cpu to try the mode here)")
    p.add_argument("--dtype", default="bf16", help="gpu: the backbone's precision")
    p.add_argument("--limit", type=float, default=None, help="gpu: seconds per run before it is stopped")
    p.add_argument("--results", default=str(RESULTS), help="where paper_scale.json / .md go")
    args, extra = p.parse_known_args(argv)
    args.extra = extra
    args.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lpt_shape_"))
    if args.mode == "make-model":
        print(make_model(args.out or args.work / f"{args.shape}-random", args.shape, args.tokenizer))
        return 0
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.runs = args.runs.split(",")
    entry = simulate(args) if args.mode == "simulate" else gpu(args)
    key = f"{entry['mode']} ({entry.get('gpu') or str(entry['cpu_count']) + ' CPU cores'})"
    results = Path(args.results)
    merged = harness.merge_entries(results / "paper_scale.json", {key: entry})
    harness.write_report(results / "paper_scale.md", render(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
