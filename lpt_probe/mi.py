"""Per-layer I(h;y) with and without a late prompt: ``python -m lpt_probe.mi --task rte``.

The paper's Section 4 (Figure 2 right) as one resumable command. For each prompt layer
in ``--prompt-layers`` (default: 1, the middle and the last layer) and each seed it

1. trains the late prompt (few-shot, ``--shots``), reusing a finished run folder;
2. extracts the representation of every example at every hidden state 0..L, once, to
   ``reps/`` (``lpt_probe.representations``);
3. fits one probe per hidden state on the probe train split, selects on dev, scores on
   test (``lpt_probe.probing``), with the controls: shuffled labels, the frozen model
   without a prompt (whose layer 0 is the embedding baseline) and the same architecture
   with random weights; plus MDL online codelength and per-example PVI.

Outputs in ``--out`` (default ``artifacts/mi/<task>/<model>/``): ``mi.csv`` (long format,
one row per condition x layer x probe seed), ``mdl.csv``, ``pvi.csv``, ``mi_by_layer.pdf``
and ``run.json`` (settings, versions, data fingerprints, status). Every piece is written
atomically and a rerun skips finished pieces, so an interrupted run resumes.

Probe data: the prompt is trained on the few-shot sample, but probes need more rows than
K=100 to estimate information; they use the task's full-data splits (train capped at
``--probe-train-max`` rows, stratified with a fixed seed). The test split is the same
held-out set in both, so no test row ever reaches a prompt or a probe during fitting.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import io
from .backbone import Backbone
from .cache import Encoded
from .late_prompt import LatePromptConfig, LatePromptModel
from .models import DEFAULT_MODEL, load_model, model_slug
from .representations import REPRESENTATIONS, extract, load_representations, save_representations
from .train import TrainConfig, _encode_split, cli_start, train

logger = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


def parse_prompt_layers(spec: str, num_layers: int) -> list[int]:
    """``"default"`` (1, middle, last), ``"all"`` or a comma list such as ``"1,4,6"``."""
    if spec == "default":
        return sorted({1, max(1, (num_layers + 1) // 2), num_layers})
    if spec == "all":
        return list(range(1, num_layers + 1))
    try:
        layers = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--prompt-layers {spec!r}: give 'default', 'all' or numbers like '1,4,6'") from None
    bad = [k for k in layers if not 1 <= k <= num_layers]
    if bad or not layers:
        raise ValueError(f"--prompt-layers {spec!r}: prompt layers must be in 1..{num_layers} (got {bad or 'none'})")
    return layers


def _subsample(encoded: Encoded, cap: int | None, seed: int = 0) -> Encoded:
    if cap is None or len(encoded) <= cap:
        return encoded
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(encoded)), train_size=cap, random_state=seed,
                               stratify=np.asarray(encoded.labels))
    keep = np.sort(keep)
    return Encoded([encoded.input_ids[i] for i in keep], [encoded.pred_positions[i] for i in keep],
                   [encoded.labels[i] for i in keep], [encoded.ids[i] for i in keep], encoded.pad_id)


class MIRun:
    """One ``mi`` invocation: settings, the loaded model and data, and the pieces on disk."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.bundle = load_model(args.model, device=args.device)
        self.backbone = Backbone(self.bundle[0])
        self.L = self.backbone.num_hidden_layers
        self.prompt_layers = parse_prompt_layers(args.prompt_layers, self.L)
        self.seeds = [int(s) for s in str(args.seeds).split(",")]
        self.probe_seeds = [int(s) for s in str(args.probe_seeds).split(",")]
        self.slug = model_slug(args.model)
        self.seconds = {"train": 0.0, "extract": 0.0, "probe": 0.0}  # this invocation's time per phase

    # -- data -------------------------------------------------------------------------
    def load_data(self) -> None:
        from .data import load_task

        a = self.args
        self.probe_data = load_task(a.task, source=a.source, data_dir=a.data_dir, shots=None,
                                    max_examples=a.max_examples)
        kind = "clm" if self.backbone.is_causal else "mlm"
        tok = self.bundle[1]
        enc = {s: _encode_split(self.probe_data.task, getattr(self.probe_data, s), tok, kind, a.max_length)
               for s in SPLITS}
        enc["train"] = _subsample(enc["train"], a.probe_train_max)
        self.encoded = enc
        self.n_classes = len(self.probe_data.task.label_names)
        from .probing import assert_disjoint

        assert_disjoint(*(enc[s].ids for s in SPLITS), names=list(SPLITS))

    def train_config(self, seed: int) -> TrainConfig:
        a = self.args
        return TrainConfig(task=a.task, model=a.model, data_dir=a.data_dir, source=a.source, shots=a.shots,
                           data_seed=a.data_seed, max_examples=a.max_examples, max_length=a.max_length,
                           seed=seed, steps=a.steps, eval_every=a.eval_every, lr=a.lr, device=a.device,
                           bucket=True)

    # -- pieces -----------------------------------------------------------------------
    def conditions(self) -> list[dict[str, Any]]:
        conds = [{"name": f"lpt-pl{k}-s{s}", "method": "lpt", "prompt_layer": k, "seed": s}
                 for k in self.prompt_layers for s in self.seeds]
        conds.append({"name": "frozen", "method": "frozen", "prompt_layer": 0, "seed": 0})
        if self.args.controls:
            conds.append({"name": f"random-s{self.seeds[0]}", "method": "random_weights", "prompt_layer": 0,
                          "seed": self.seeds[0]})
        return conds

    def model_for(self, cond: dict):
        if cond["method"] == "frozen":
            return self.backbone
        if cond["method"] == "random_weights":
            from .models import random_like

            return Backbone(random_like(self.bundle[0], cond["seed"]))
        pc = LatePromptConfig(prompt_layer=cond["prompt_layer"], generator=self.args.generator,
                              num_virtual_tokens=self.args.num_virtual_tokens)
        res = train(pc, self.train_config(cond["seed"]), self.out / "runs" / cond["name"],
                    bundle=self.bundle, progress=self.args.progress)
        if res.model is None:  # reused a finished run: rebuild and load its weights
            from .late_prompt import load_prompt_weights
            from .train import prepare

            backbone, _, _, data, _, words = prepare(self.train_config(cond["seed"]), self.bundle)
            model = LatePromptModel(backbone, pc, len(data.task.label_names), words)
            load_prompt_weights(model, res.run_dir / "prompt.safetensors")
            return model
        return res.model

    def representations(self, cond: dict) -> dict[str, dict[str, np.ndarray]]:
        folder = self.out / "reps" / cond["name"]
        done = folder / ".complete"
        if not done.exists():
            t0 = time.perf_counter()
            model = self.model_for(cond)
            t1 = time.perf_counter()
            self.seconds["train"] += t1 - t0
            info = {"condition": cond, "model": self.bundle[2], "task": self.args.task,
                    "fingerprints": {s: io.fingerprint(self.encoded[s].ids) for s in SPLITS}}
            for s in SPLITS:
                reps = extract(model, self.encoded[s], desc=f"{cond['name']} {s}")
                save_representations(folder, s, reps, info)
            io.atomic_write_text(done, io.utc_now() + "\n")
            self.seconds["extract"] += time.perf_counter() - t1
        return {s: load_representations(folder, s)[0] for s in SPLITS}

    def probe_piece(self, cond: dict, reps: dict) -> None:
        """Probe every layer of one condition (plus controls, MDL, PVI) -> pieces/*.csv."""
        from .probing import online_codelength, probe_information, pvi, shuffled_label_control

        a, name = self.args, f"{cond['name']}-{self.args.probe}-{self.args.representation}"
        paths = {k: self.out / "pieces" / f"{name}.{k}.csv" for k in ("mi", "mdl", "pvi")}
        if all(p.exists() for p in paths.values()):
            return
        base = {"task": self.probe_data.task.name, "model": self.slug, "method": cond["method"],
                "prompt_layer": cond["prompt_layer"], "seed": cond["seed"], "probe": a.probe,
                "representation": a.representation, "split": "test"}
        y = {s: reps[s]["labels"] for s in SPLITS}
        mi_rows, mdl_rows, pvi_rows = [], [], []
        for layer in tqdm(range(self.L + 1), desc=f"probe {cond['name']}", leave=False, disable=not a.progress):
            X = {s: reps[s][a.representation][layer] for s in SPLITS}
            args = (a.probe, X["train"], y["train"], X["dev"], y["dev"], X["test"], y["test"], self.n_classes)
            res = probe_information(*args, seeds=self.probe_seeds, bootstrap=a.bootstrap)
            rows = [{**base, "layer": layer, **r} for r in res.rows]
            if a.controls and cond["method"] != "random_weights":
                ctrl = shuffled_label_control(*args, seeds=self.probe_seeds, bootstrap=a.bootstrap)
                rows += [{**base, "layer": layer, **r} for r in ctrl.rows]
            mi_rows += rows
            scores = pvi(res.log2q[0], res.log2q_null)
            pvi_rows += [{**base, "layer": layer, "example_id": i, "label": int(t), "pvi_bits": float(v)}
                         for i, t, v in zip(self.encoded["test"].ids, y["test"], scores)]
            if a.mdl:
                m = online_codelength(a.probe, X["train"], y["train"], self.n_classes, seed=self.probe_seeds[0])
                mdl_rows.append({**base, "split": "train", "layer": layer,
                                 **{k: m[k] for k in ("online_codelength_bits", "uniform_codelength_bits",
                                                      "compression", "n")}})
        for key, rows in (("pvi", pvi_rows), ("mdl", mdl_rows), ("mi", mi_rows)):  # mi last: marks done
            io.write_csv(paths[key], pd.DataFrame(rows))

    def collect(self) -> dict[str, pd.DataFrame]:
        frames = {}
        for key in ("mi", "mdl", "pvi"):
            parts = [pd.read_csv(p) for p in sorted((self.out / "pieces").glob(f"*.{key}.csv"))
                     if p.stat().st_size > 1]
            frames[key] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            io.write_csv(self.out / f"{key}.csv", frames[key])
        return frames


def draw(out: Path, mi: pd.DataFrame) -> Path | None:
    from .plotting import paper_style, plot_mi_by_layer, save_figure

    with paper_style():
        ax = plot_mi_by_layer(mi)
        title = f"{mi['task'].iloc[0]} / {mi['model'].iloc[0]}"
        ax.set_title(title)
        return save_figure(ax.figure, out / "mi_by_layer.pdf")[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.mi", description=__doc__.split("\n")[0])
    p.add_argument("--task", default="rte")
    p.add_argument("--model", default=DEFAULT_MODEL, help="minilm (default), smollm2, a hub id or a folder")
    p.add_argument("--data-dir", default=None, help="local task files (e.g. ../shared/data); default: the hub")
    p.add_argument("--source", default="auto", choices=["auto", "hub", "local"])
    p.add_argument("--prompt-layers", default="default", help="'default' (1, middle, last), 'all' or '1,4,6'")
    p.add_argument("--generator", default="none", choices=["none", "npg", "appg", "mppg"])
    p.add_argument("--num-virtual-tokens", type=int, default=None)
    p.add_argument("--seeds", default="13", help="prompt seeds, comma separated")
    p.add_argument("--shots", type=int, default=100, help="few-shot K for prompt training (0 = full data)")
    p.add_argument("--data-seed", type=int, default=13)
    p.add_argument("--steps", type=int, default=200, help="prompt training steps (paper few-shot: 1000)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--probe", default="linear", choices=["linear", "mlp"])
    p.add_argument("--probe-seeds", default="0", help="probe seeds, comma separated")
    p.add_argument("--representation", default="mask", choices=list(REPRESENTATIONS))
    p.add_argument("--probe-train-max", type=int, default=2000, help="cap on probe train rows")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="skip the shuffled-label and random-weights controls")
    p.add_argument("--no-mdl", dest="mdl", action="store_false", help="skip MDL online codelength")
    p.add_argument("--max-examples", type=int, default=None, help="cap every split (quick runs)")
    p.add_argument("--max-length", type=int, default=128, help="max tokens per example")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="default artifacts/mi/<task>/<model>/")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    cli_start(args)
    args.shots = args.shots or None
    args.out = args.out or str(Path("artifacts") / "mi" / args.task / model_slug(args.model))
    t0 = time.perf_counter()
    try:
        run = MIRun(args)
        run.load_data()
    except (ValueError, KeyError, FileNotFoundError) as exc:
        p.exit(2, f"error: {exc}\n")
    out = run.out
    settings = {k: v for k, v in vars(args).items()}
    meta = io.run_meta(status="running", settings=settings, prompt_layers=run.prompt_layers,
                       model=run.bundle[2], probe_data=run.probe_data.to_meta(),
                       probe_fingerprints={s: io.fingerprint(run.encoded[s].ids) for s in SPLITS},
                       probe_label_counts={s: np.bincount(run.encoded[s].labels, minlength=run.n_classes).tolist()
                                           for s in SPLITS})
    io.write_json(out / "run.json", meta)
    conds = run.conditions()
    for cond in tqdm(conds, desc="conditions", disable=not args.progress):
        reps = run.representations(cond)
        t_probe = time.perf_counter()
        run.probe_piece(cond, reps)
        run.seconds["probe"] += time.perf_counter() - t_probe
    frames = run.collect()
    pdf = draw(out, frames["mi"])
    meta.update(status="complete", wall_seconds=time.perf_counter() - t0, phase_seconds=run.seconds,
                outputs=sorted(p.name for p in out.iterdir() if p.is_file()))
    io.write_json(out / "run.json", meta)
    mi = frames["mi"]
    view = mi[mi["control"] == "none"].pivot_table(index="layer", columns=["method", "prompt_layer"],
                                                   values="mi_bits", aggfunc="mean")
    print(view.round(3).to_string())
    print(f"wrote {out}/mi.csv, mdl.csv, pvi.csv, {pdf.name if pdf else ''}, run.json "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
