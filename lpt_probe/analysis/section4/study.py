"""The paper's Section 4 for one task and model, end to end: the library behind
``python -m lpt_probe.section4``.

Section 4 of Liu et al. (2022) claims a trade-off between a prompt's *propagation
distance* and its *influence*: (1) accuracy against the prompt layer rises then falls,
(2) training converges fastest for a mid-depth prompt, (3) the usable information
I(h;y) at the top is highest for a mid-depth prompt, and it explains them by (4) a
prompt's influence on the text falling with its layer and (5) the label signal reaching
an early prompt being weak. ``run_section4(cfg)`` measures all five on one task:

1. ``sweep/``: a layer sweep (``lpt_probe.runs.sweep``) at every prompt layer of
   ``prompt_layers`` for ``seeds`` (accuracy and dev curves: claims 1 and 2);
2. ``mi/``: ``lpt_probe.analysis.mi.study`` at ``analysis_layers`` (1, the middle and the last by
   default) with the frozen model and the controls (claim 3);
3. ``influence/``: ``lpt_probe.analysis.influence.study`` at the same layers (claims 4 and 5);
4. ``claims.csv``: one row per claim with its verdict (yes / no / inconclusive / not
   informative) read off paired contrasts between the paper's three prompt layers (PL 1,
   the middle, the last) with hierarchical-bootstrap intervals and Holm's correction
   (``lpt_probe.analysis.section4.verdicts``: the rules, the learned gate and the signal's null);
   ``contrasts.csv`` (every contrast), ``learned.csv`` (each prompt layer's test accuracy
   against the majority class) and ``section4.json``. The per-example tables the verdicts
   resample are the runs' ``test_predictions.csv`` / ``dev_correct.npz``, mi's ``pvi.csv``
   and influence's ``influence_examples.csv`` / ``influence_gram.npz``.

Prompts train until learned by default (``patience`` 5 evaluations, ``steps`` 1000 as the
cap; each run records where it stopped).

The three stages share one set of trained prompts: ``mi`` and ``influence`` are given the
sweep's ``runs/`` (``reuse_runs``) and every setting that enters a run's key is built once
(:meth:`Section4Config.mi_config`), so a prompt at an analysis layer is trained once, by
the sweep, from its lower-layer cache, and read back by the other two. Each stage keeps
its own resumable folder, so an interrupted ``section4`` resumes where it stopped.
Drawing is the command's job (``lpt_probe.section4`` draws ``section4.pdf`` with
``lpt_probe.viz.plot_section4``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from ... import store
from ...layers import parse_prompt_layers
from ...runs.sweep import SweepConfig, run_sweep
from ..config import Section4Config, study_settings  # noqa: F401  (re-exported: the settings live there)
from ..influence.study import run_influence
from ..mi.study import MIRun, run_mi
from ..results import Section4Result
from ..engine.conditions import StudyOutput
from .tables import export_tables, study_examples
from .verdicts import StudyExamples, judge, paper_layers

logger = logging.getLogger(__name__)

__all__ = ["Section4Config", "run_section4", "section4_claims", "CLAIMS", "claims_markdown", "default_out",
           "export_tables", "study_examples"]

RULES = {  # claim -> how its verdict is read (lpt_probe.analysis.section4.verdicts)
    "accuracy": "test accuracy per example: mid - PL1 > 0 and mid - L > 0",
    "convergence": "anytime dev accuracy (area under the kept weights' dev curve) per example: mid - PL1 > 0 and "
                   "mid - L > 0",
    "information": "pointwise I(h;y) at the top hidden state: mid - PL1 > 0 and mid - L > 0",
    "influence": "log p(gold) drop with the trained prompt hidden from PL up: PL1 - mid > 0 and mid - L > 0",
    "signal": "gradient coherence at the untrained prompt: mid - PL1 > 0 and L - mid > 0, above its random-sign null",
}
CLAIMS = {  # id -> (the paper's claim, what the paper shows for it)
    "accuracy": "accuracy rises then falls with the prompt layer",
    "convergence": "training converges fastest for a mid-depth prompt",
    "information": "I(h;y) at the top layer is highest for a mid-depth prompt",
    "influence": "a prompt's influence on the text falls with its layer",
    "signal": "the label signal reaching the prompt weakens with distance",
}


NOT_COST = ("paper", "progress", "out", "jobs", "device", "overwrite")  # settings that change no stage's work


def earlier_seconds(out: Path, cfg: Section4Config) -> dict[str, float]:
    """The seconds per stage that earlier invocations of the same study spent in ``out``
    (``section4.json``'s ``stage_seconds_total``, or its ``stage_seconds`` when older), so a
    study resumed or rerun after it finished still reports what it cost; nothing when the
    folder held a study of other settings."""
    try:
        old = store.read_json_object(Path(out) / "section4.json")
    except (FileNotFoundError, store.DamagedFile):
        return {}
    def flat(c: Section4Config) -> dict:  # the flags' names and values, defaults resolved
        return study_settings(Section4Config, json.loads(json.dumps(asdict(c), default=str)))

    try:  # settings saved flat (up to 0.2.0) or nested: built again, so defaults resolve alike
        theirs = flat(Section4Config.from_settings(old.get("settings") or {}))
    except (TypeError, ValueError):  # settings this version cannot build: another study
        return {}
    mine = flat(cfg)
    shared = (set(mine) & set(theirs)) - set(NOT_COST)  # a setting an older file does not know: not compared
    if not shared or any(mine[k] != theirs[k] for k in shared):
        return {}
    spent = old.get("stage_seconds_total") or old.get("stage_seconds") or {}
    return {k: float(v) for k, v in spent.items() if isinstance(v, (int, float))}


class StageClock:
    """Times a study's stages into ``seconds`` (this invocation) and ``total`` (what earlier
    invocations spent, plus this one's), and keeps the running status file's
    ``stage_seconds_total`` current: at each stage's end and every ``every`` seconds during
    one (a daemon thread). An invocation that is killed (a session's end, ``kill -9``) so
    still leaves what it spent, to within ``every`` seconds, for the next one to add up
    (:func:`earlier_seconds`). Enter it after the output's ``start`` and leave it before the
    output closes: it writes only over a ``running`` status, never after the final one."""

    def __init__(self, study: StudyOutput, seconds: dict[str, float], total: dict[str, float],
                 every: float = 60.0):
        self.study, self.seconds, self.total, self.every = study, seconds, total, every
        self._prior = dict(total)
        self._stage: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = study.status_path is not None and not store.is_url(study.out)

    def __enter__(self) -> "StageClock":
        if self.every and self._local:
            self._thread = threading.Thread(target=self._beat, name="section4-stage-clock", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def stage(self, name: str):
        """Time the block as stage ``name``; what it ran counts even when it raises."""
        with self._lock:
            self._stage = (name, time.perf_counter())
        try:
            yield
        finally:
            self._tick()
            with self._lock:
                self._stage = None
            self._write()

    def _tick(self) -> None:
        with self._lock:
            if self._stage is not None:
                name, t0 = self._stage
                self.seconds[name] = time.perf_counter() - t0
                self.total[name] = self._prior.get(name, 0.0) + self.seconds[name]

    def _write(self) -> None:
        if not self._local:
            return
        with self._lock:
            meta = {**self.study.meta, "stage_seconds": dict(self.seconds), "stage_seconds_total": dict(self.total)}
        if meta.get("status") == "running":
            store.write_status(self.study.status_path, meta)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._tick()
            self._write()


def default_out(cfg: Section4Config) -> Path:
    return cfg.default_out()


def run_section4(cfg: Section4Config) -> Section4Result:
    """Sweep, mi and influence into ``cfg.output.out``, then ``claims.csv`` and ``section4.json``;
    returns a :class:`~lpt_probe.analysis.results.Section4Result`: the dict of tables
    (``sweep``, ``curves``, ``mi``, ``diff``, ``influence``, ``claims``, ``contrasts``,
    ``learned``) and ``meta``, with ``.summary()`` (the command's lines) and ``.plot()``
    (its figure)."""
    out = cfg.out_dir
    cfg = replace(cfg, out=str(out))
    mi_cfg = cfg.mi_config()
    seconds: dict[str, float] = {}
    prior = earlier_seconds(out, cfg)  # what earlier invocations of this study spent (a resumed or rerun study)
    with StudyOutput(out, "section4.json", stale=("claims.csv", "contrasts.csv", "learned.csv", "section4.pdf",
                                                  "section4.png"), overwrite=cfg.output.overwrite) as study:
        mi_run = MIRun(mi_cfg)  # loads the model once; the sweep trains with it
        L = mi_run.L
        sweep_layers = parse_prompt_layers(cfg.grid.prompt_layers, L)
        missing = sorted(set(mi_run.prompt_layers) - set(sweep_layers))
        if missing:
            raise ValueError(f"--analysis-layers {cfg.analysis_layers!r} includes prompt layer(s) {missing} that "
                             f"the sweep's --prompt-layers {cfg.grid.prompt_layers!r} ({sweep_layers}) does not "
                             "train; add them to --prompt-layers")
        total = dict(prior)
        study.start(store.run_meta(status="running", settings=asdict(cfg), num_hidden_layers=L,
                                   stage_seconds=seconds, stage_seconds_total=total))
        mi_run.load_data()
        base = mi_run.train_config(cfg.grid.seeds[0])  # exactly what mi and influence key their prompts with
        with StageClock(study, seconds, total) as clock:
            with clock.stage("sweep"):
                sweep = run_sweep(SweepConfig(methods=("lpt",), generators=(cfg.late_prompt.generator,),
                                              grid=cfg.grid, prompt=cfg.sweep_prompt(), out=str(out / "sweep"),
                                              progress=cfg.output.progress),
                                  base, prepared=mi_run.prompt_prepared)
            curves = store.read_csv(out / "sweep" / "curves.csv")
            head = "lm" if mi_run.prompt_prepared.label_word_ids is not None else "classifier"
            del mi_run  # run_mi loads what it needs itself
            with clock.stage("mi"):
                _, frames, mi_meta = run_mi(mi_cfg)
            with clock.stage("influence"):
                _, influence, inf_meta = run_influence(cfg.influence_config())
        paper = read_paper_layers(cfg.paper) if cfg.paper else None
        examples = study_examples(out, sweep, frames["pvi"], L)
        claims, contrasts, gate, floor = section4_claims(sweep, curves, frames["mi"], frames["diff"], influence,
                                                         paper, examples=examples, bootstrap=cfg.bootstrap,
                                                         head=head)
        store.write_csv(out / "contrasts.csv", contrasts)
        store.write_csv(out / "learned.csv", gate)
        store.write_csv(out / "claims.csv", claims)
        study.meta.update(signal_floor=floor, paper_layers=paper_layers(L),
                          stopped_steps={r.run_dir: int(r.stopped_step) for r in sweep.itertuples()
                                         if r.status == "complete" and r.stopped_step == r.stopped_step})
        reused = {"mi": len([r for r in mi_meta.get("runs", {}).values() if not r.startswith("runs")]),
                  "influence": len([r for r in inf_meta.get("runs", {}).values() if not r.startswith("runs")])}
        study.meta.update(prompts_reused_from_sweep=reused, sweep_cells=int(len(sweep)),
                          failed_cells=int((sweep["status"] != "complete").sum()))
    return Section4Result({"sweep": sweep, "curves": curves, "mi": frames["mi"], "diff": frames["diff"],
                           "influence": influence, "claims": claims, "contrasts": contrasts, "learned": gate,
                           "meta": study.meta}, out)


# -- the claims ---------------------------------------------------------------------------
def read_paper_layers(path: str | Path) -> pd.DataFrame:
    """The paper's accuracy against the prompt layer (RoBERTa-large, RTE): Table 10's LPT
    rows at prompt layers 7/13/19 and its prompt tuning row (prompt layer 1), as
    (method, prompt_layer, accuracy, std)."""
    df = store.read_csv(path)
    need = {"source", "method", "prompt_layer", "rte_acc", "rte_std"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: expected the paper's Tables 5/10 CSV with columns {sorted(need)}, got "
                         f"{sorted(df.columns)}")
    t10 = df[df["source"] == "Table 10"]
    rows = [{"method": "Prompt Tuning", "prompt_layer": 1, "accuracy": r.rte_acc, "std": r.rte_std}
            for r in t10[t10["method"] == "Prompt Tuning"].itertuples()]
    rows += [{"method": r.method, "prompt_layer": int(r.prompt_layer), "accuracy": r.rte_acc, "std": r.rte_std}
             for r in t10[t10["prompt_layer"].notna()].itertuples()]
    return pd.DataFrame(rows)


def _by_layer(df: pd.DataFrame, value: str) -> pd.DataFrame:
    return df.groupby("prompt_layer")[value].agg(["mean", "std", "count"]).sort_index()


def _fmt_layers(s: pd.Series, digits: int = 3) -> str:
    return ", ".join(f"PL{int(k)} {v:.{digits}f}" for k, v in s.items())


HEAD_NOTE = {"classifier": "linear head: the model has no LM/MLM head, so every prompt trains with a fresh linear "
                          "classifier (not the paper's verbalizer) and the untrained prompt's gradients pass through "
                          "a random classifier"}


def section4_claims(sweep: pd.DataFrame, curves: pd.DataFrame, mi: pd.DataFrame, diff: pd.DataFrame,
                    influence: pd.DataFrame, paper: pd.DataFrame | None = None,
                    examples: StudyExamples | None = None, bootstrap: int = 1000, head: str = "lm"
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """One row per claim of :data:`CLAIMS` and the tables behind the verdicts: (claims,
    contrasts, learned, signal floor).

    ``claims.csv``: ``claim``, ``statement``, ``verdict`` (yes / no / inconclusive / not
    informative), ``contrasts`` (the paired contrasts between the paper's three prompt
    layers with their 95% intervals and Holm-adjusted p-values), ``reason`` (why not
    informative; a disagreement of the signal's two measures), ``rule``, ``measured``
    (the whole sweep as context: means over seeds, no verdict rests on them), ``paper``,
    ``head`` and its ``head_note``. The verdicts are :func:`lpt_probe.analysis.section4.verdicts.judge`
    on ``examples`` (the per-example tables; without them every claim is not informative).
    """
    done = sweep[(sweep["status"] == "complete") & (sweep["method"] == "lpt")]
    acc = _by_layer(done, "test_metric")
    best = acc["mean"].idxmax()
    paper_text = ""
    if paper is not None and len(paper):
        npg = paper[paper["method"].isin(["Prompt Tuning", "LPT w/ NPG"])].sort_values("prompt_layer")
        paper_text = "RTE (Table 10, NPG; PL1 = prompt tuning): " + ", ".join(
            f"PL{int(r.prompt_layer)} {r.accuracy:.1f}" for r in npg.itertuples())
        task, generators = str(sweep["task"].iloc[0]).lower(), set(done["generator"].dropna())
        if task != "rte" or generators != {"npg"}:  # Table 10 is RTE with NPG: say what differs
            paper_text += (f" (not this study's setting: {task}, generator {', '.join(sorted(generators)) or '-'}; "
                           "shown for the paper's shape only)")
    measured = {"accuracy": f"test accuracy: {_fmt_layers(acc['mean'])}; best PL{int(best)} "
                            f"(seed std {acc.loc[best, 'std']:.3f})"}
    c = curves[curves["method"] == "lpt"] if "method" in curves.columns else curves
    c = c.dropna(subset=["dev_metric"])
    aulc = c.groupby(["prompt_layer", "seed"])["dev_metric"].mean().groupby("prompt_layer").mean()
    measured["convergence"] = f"mean dev metric over the recorded curve: {_fmt_layers(aulc)}"
    real = mi[(mi["control"] == "none")]
    top = real["layer"].max()
    info = _by_layer(real[(real["layer"] == top) & (real["method"] == "lpt")], "mi_bits")["mean"]
    frozen = real[(real["layer"] == top) & (real["method"] == "frozen")]["mi_bits"].mean()
    measured["information"] = f"I(h;y) at hidden state {int(top)} (bits): {_fmt_layers(info)}; frozen {frozen:.3f}"
    trained = influence[influence["checkpoint"] == "trained"]
    drop = trained[(trained["quantity"] == "logprob_drop_from") & (trained["layer"] == trained["prompt_layer"])]
    mass = trained[(trained["quantity"] == "attention_mass") & (trained["position"] == "prediction")
                   & (trained["layer"] == trained["layer"].max())]
    measured["influence"] = (f"log p(gold) drop when the trained prompt is hidden from PL up (nats): "
                             f"{_fmt_layers(_by_layer(drop, 'value')['mean'])}; its attention mass at the top layer: "
                             f"{_fmt_layers(_by_layer(mass, 'value')['mean'])}")
    init = influence[influence["checkpoint"] == "init"]
    coh = _by_layer(init[(init["quantity"] == "grad_coherence") & (init["position"] == "prompt")], "value")["mean"]
    scaled = _by_layer(init[(init["quantity"] == "grad_x_state_norm") & (init["position"] == "prompt")],
                       "value")["mean"]
    measured["signal"] = (f"gradient coherence at the untrained prompt: {_fmt_layers(coh, 4)}; ||g|| ||prompt||: "
                          f"{_fmt_layers(scaled)}")
    papers = {"accuracy": paper_text, "convergence": "Fig. 2 (middle); no numbers given",
              "information": "Fig. 2 (right); no numbers given", "influence": "argued in Section 4; not measured",
              "signal": "argued in Section 4; not measured"}
    if examples is not None:
        verdicts, contrasts, gate, floor = judge(examples, bootstrap)
    else:
        verdicts = pd.DataFrame({"claim": list(CLAIMS), "verdict": "not informative", "contrasts": "",
                                 "reason": "no per-example tables (a study from before lpt_probe 0.3)"})
        contrasts, gate, floor = pd.DataFrame(), pd.DataFrame(), {}
    out = verdicts.assign(statement=verdicts["claim"].map(CLAIMS), rule=verdicts["claim"].map(RULES),
                          measured=verdicts["claim"].map(measured), paper=verdicts["claim"].map(papers),
                          head=head, head_note=HEAD_NOTE.get(head, ""))
    head_row = sweep.iloc[0]
    out = out.assign(task=head_row["task"], model=head_row["model"])
    cols = ["claim", "statement", "verdict", "contrasts", "reason", "rule", "measured", "paper", "head", "head_note",
            "task", "model"]
    return out[cols], contrasts, gate, floor


def _cell(text: str) -> str:
    """Text for one markdown table cell: a ``|`` (as in ``||g||``) would split the cell."""
    return text.replace("|", "\\|")


_NOT_THIS_SETTING = " (not this study's setting"


def _paper_cell(papers: list[tuple[str, str]]) -> str:
    """The paper's column of one claim, from each study's ``paper`` text: when some studies
    ran the paper's setting and others did not, the column names the ones that did; when
    none did, it keeps the first study's text, which says what differs."""
    if not papers:
        return ""
    matching = [study for study, text in papers if _NOT_THIS_SETTING not in text]
    if not matching or len(matching) == len(papers):
        return papers[0][1]
    base = next(text for _, text in papers if _NOT_THIS_SETTING not in text)
    return f"{base} (the setting of {', '.join(matching)}; the other studies' settings differ)"


def claims_markdown(folders: list[str | Path]) -> str:
    """One markdown table from several studies' ``claims.csv``: the paper's claim, what the
    paper shows, then per study (task / model) the verdict, marked "(linear head)" for a
    model without an LM head, the contrasts it rests on and, where one applies, the reason
    (not informative, or the signal's two measures disagree)."""
    tables = []
    for f in folders:
        path = Path(f) / "claims.csv" if Path(f).is_dir() else Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; `python -m lpt_probe.section4 ... --out {f}` writes it")
        tables.append(store.read_csv(path))
    studies = [f"{t['task'].iloc[0]} / {t['model'].iloc[0]}" for t in tables]
    lines = ["| paper's claim | paper (RoBERTa-large) | " + " | ".join(studies) + " |",
             "|---|---|" + "---|" * len(studies)]
    for claim, statement in CLAIMS.items():
        cells, papers = [], []  # papers: (study, the paper's text beside it)
        for study, t in zip(studies, tables):
            r = t[t["claim"] == claim]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            if isinstance(r["paper"], str) and r["paper"]:
                papers.append((study, r["paper"]))
            if "contrasts" not in r:  # a claims.csv from before the contrast verdicts
                cells.append(f"**{r['verdict']}** (old rule): {_cell(r['measured'])}")
                continue
            linear = " (linear head)" if r.get("head") == "classifier" else ""
            why = f" {r['reason']}." if isinstance(r.get("reason"), str) and r["reason"] else ""
            cells.append(f"**{r['verdict']}**{linear}: {_cell(str(r['contrasts']))}.{_cell(why)}")
        lines.append(f"| {statement} | {_cell(_paper_cell(papers)) or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
