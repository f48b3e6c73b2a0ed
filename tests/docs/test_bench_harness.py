"""What the benchmarks stand on (issue 14), checked without timing anything:

- the bare loop (``lpt_probe.runs.bare``) computes the gradient ``Trainer.step`` computes
  on the same batch, before clipping and the update (to 1e-6), from the cache or not;
- a sweep trains cells that are the same model once: prompt tuning and LPT at prompt
  layer 1 without a generator share one run folder (``same_model``);
- a cell trained from the lower-layer cache while the sweep releases the cached layers and
  the layer weights it no longer needs gives the metrics of the same cell trained with
  nothing released.

And what the benchmark scripts share (issue 25, ``benchmarks/harness.py``): the command
line, machine facts, timed subprocesses, result files written atomically in the format the
committed results have, table cells; no script takes another's private names or calls the
shared pieces itself.

Tiny random models: the five-family ones of ``tiny.py``, and a tiny BERT over the
embedded MiniLM's tokenizer (``test_adapters.tiny_bundle``) for the sweeps.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_adapters
import torch
from test_adapters import toy_task
from test_late_prompt import WORDS, synthetic
from tiny import tiny_model

from lpt_probe.model.backbone import Backbone
from lpt_probe.model.cache import LowerLayerCache
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
import lpt_probe.runs.bare as bare_module
from lpt_probe.runs.bare import bare_batches, bare_gradients, synchronize, time_bare
from lpt_probe.runs.trainer import TrainConfig, Trainer

tiny_bundle = test_adapters.tiny_bundle  # the module-scoped fixture: a tiny BERT over MiniLM's tokenizer

# -- (a) the bare loop's gradient is the trainer's ------------------------------------------------
def trainer_gradients(trainer: Trainer, data, idx, cache, monkeypatch) -> dict[str, torch.Tensor]:
    """The gradients ``Trainer.step`` holds when it clips (before clipping and the update)."""
    seen = {}
    real = torch.nn.utils.clip_grad_norm_

    def recording(params, *a, **kw):
        seen.update({n: p.grad.detach().clone() for n, p in trainer.model.trainable_named_parameters()})
        return real(params, *a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    opt, sched = trainer.optimizer(10)
    trainer.step(opt, sched, data, idx, cache, 0)
    assert seen, "Trainer.step did not clip (grad_clip > 0 expected)"
    return seen


CASES = [("bert", "lpt", 3, "none"), ("bert", "lpt", 3, "npg"), ("llama", "lpt", 2, "mppg"),
         ("roberta", "prompt-tuning", 1, "none"), ("bert", "s-idpg", 1, "none")]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("family,method,pl,generator", CASES)
def test_bare_gradient_equals_the_trainer_step(family, method, pl, generator, cached, monkeypatch):
    bb = Backbone(tiny_model(family))
    options = {"phm_n": 4} if method == "s-idpg" else {}
    torch.manual_seed(3)
    model = LatePromptModel(bb, LatePromptConfig(method=method, prompt_layer=pl, generator=generator, **options),
                            3, WORDS)
    data = synthetic(40, causal=bb.is_causal)
    trainer = Trainer(model, TrainConfig(batch_size=8, seed=5, cache=cached))
    plan = trainer.batch_order(data, 2)
    cache = LowerLayerCache.build(bb, data, [model.config.start_state], progress=False) if cached else None
    batches = bare_batches(model, data, plan, cache)
    assert len({b.h_low.shape[1] for b in batches}) >= 1 and batches[0].tokens == data.num_tokens(plan[0])
    model.train()  # as fit trains: dropout of generators is on, in both loops alike
    torch.manual_seed(11)
    bare = bare_gradients(model, batches[0])
    assert all(p.grad is None for _, p in model.trainable_named_parameters())  # nothing accumulated
    torch.manual_seed(11)
    step = trainer_gradients(trainer, data, plan[0], cache, monkeypatch)
    assert set(bare) == set(step) and len(bare) >= 1
    for name in bare:
        assert bare[name].abs().max() > 0, f"{name}: zero gradient, the comparison would prove nothing"
        torch.testing.assert_close(bare[name], step[name], atol=1e-6, rtol=0, msg=name)
    # the other batch gives another gradient: equality above is about this batch
    other = bare_gradients(model.eval(), batches[1])
    assert any(not torch.allclose(other[n], bare[n], atol=1e-6) for n in bare)


def test_bare_gradient_equals_a_step_split_in_micro_batches(monkeypatch):
    """grad_accum splits the batch; the step's gradient is still the full batch's."""
    bb = Backbone(tiny_model("bert"))
    torch.manual_seed(3)
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=3, generator="none"), 3, WORDS).train()
    data = synthetic(40)
    trainer = Trainer(model, TrainConfig(batch_size=8, seed=5, grad_accum=3))
    idx = trainer.batch_order(data, 1)[0]
    cache = LowerLayerCache.build(bb, data, [2], progress=False)
    bare = bare_gradients(model, bare_batches(model, data, [idx], cache)[0])
    step = trainer_gradients(trainer, data, idx, cache, monkeypatch)
    for name in bare:
        torch.testing.assert_close(bare[name], step[name], atol=1e-6, rtol=0, msg=name)


def test_time_bare_counts_the_timed_batches_and_refuses_what_it_cannot_time():
    bb = Backbone(tiny_model("bert"))
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=2), 3, WORDS)
    data = synthetic(24)
    plan = Trainer(model, TrainConfig(batch_size=8)).batch_order(data, 3)
    batches = bare_batches(model, data, plan)
    t = time_bare(model, batches, warmup=1)
    assert t["tokens"] == data.num_tokens(plan[1]) + data.num_tokens(plan[2]) and t["seconds"] > 0
    with pytest.raises(ValueError, match="leaves none"):
        time_bare(model, batches, warmup=3)
    lora = LatePromptModel(bb, LatePromptConfig(method="lora"), 3, WORDS)
    with pytest.raises(ValueError, match="the bare loop times a late prompt"):
        bare_batches(lora, data, plan)


def test_time_bare_waits_for_the_device_around_every_timed_batch(monkeypatch):
    """On a GPU the kernels run after the call returns: each timed batch is bracketed by a
    wait on the batches' device (a CPU wait is a no-op; torch.cuda's is called for cuda)."""
    bb = Backbone(tiny_model("bert"))
    model = LatePromptModel(bb, LatePromptConfig(prompt_layer=2), 3, WORDS)
    data = synthetic(24)
    batches = bare_batches(model, data, Trainer(model, TrainConfig(batch_size=8)).batch_order(data, 3))
    waits = []
    monkeypatch.setattr(bare_module, "synchronize", lambda device: waits.append(torch.device(device)))
    time_bare(model, batches, warmup=1)
    assert waits == [torch.device("cpu")] * 4  # before and after each of the 2 timed batches
    monkeypatch.undo()
    cuda = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: cuda.append(device))
    synchronize("cpu")
    assert cuda == []
    synchronize("cuda:0")
    assert cuda == [torch.device("cuda:0")]


# -- (b), (c) sweeps on a tiny BERT -----------------------------------------------------------------
def tiny_sweep(tmp_path, bundle, methods, layers, seeds=(13,), out="sweep", release_weights=None):
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.sweep import SweepConfig, run_sweep

    base = TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10, steps=3,
                       eval_every=1, batch_size=8)
    prepared = prepare(base, bundle)
    sweep = SweepConfig(methods=methods, prompt_layers=layers, generators=("none",), seeds=seeds,
                        out=str(tmp_path / out), progress=False)
    return run_sweep(sweep, base, prepared=prepared, release_weights=release_weights), base, prepared


def test_prompt_tuning_and_lpt_at_layer_1_share_one_run(tiny_bundle, tmp_path, monkeypatch):
    from lpt_probe.runs import executors

    trained = []
    real = executors.execute_cell

    def counting(pc, tc, run_dir, *a, **kw):
        trained.append(str(run_dir))
        return real(pc, tc, run_dir, *a, **kw)

    monkeypatch.setattr(executors, "execute_cell", counting)
    table, _, _ = tiny_sweep(tmp_path, tiny_bundle, ("prompt-tuning", "lpt"), "1", seeds=(13, 21))
    assert len(table) == 4 and (table.status == "complete").all()
    assert len(trained) == 2  # one run per seed, not two
    runs = sorted(p.name for p in (tmp_path / "sweep" / "runs").iterdir())
    assert runs == ["none-pl1-s13", "none-pl1-s21"]  # led by the lpt cell: its folder name
    for seed in (13, 21):
        rows = table[table.seed == seed]
        assert set(rows.method) == {"prompt-tuning", "lpt"}
        assert rows.run_dir.nunique() == 1 and rows.run_dir.iloc[0] == f"runs/none-pl1-s{seed}"
        assert rows.test_metric.nunique() == 1 and rows.dev_metric.nunique() == 1
    # sweep.csv names the shared folder on both rows; a rerun collects it, trains nothing
    csv = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(csv.run_dir) == list(table.run_dir)
    trained.clear()
    again, _, _ = tiny_sweep(tmp_path, tiny_bundle, ("prompt-tuning", "lpt"), "1", seeds=(13, 21))
    assert trained == [] and list(again.test_metric) == list(table.test_metric)


def test_a_sweep_with_another_prompt_length_does_not_share(tiny_bundle, tmp_path):
    """Only the same model shares: prompt tuning with NPG's prompt length is not PT's twin
    (the keys differ), so a grid of lpt npg at PL 1 and prompt tuning trains both."""
    from lpt_probe.runs.sweep import Cell, SweepConfig, cell_configs, same_model

    sweep = SweepConfig(methods=("prompt-tuning", "lpt"), generators=("none", "npg"))
    cells = [Cell("prompt-tuning", "none", 1, 13), Cell("lpt", "none", 1, 13), Cell("lpt", "npg", 1, 13),
             Cell("lpt", "none", 2, 13)]
    leaders = same_model({c: cell_configs(sweep, c, TrainConfig(), 4) for c in cells})
    assert leaders[cells[0]] is cells[1] and leaders[cells[1]] is cells[1]
    assert leaders[cells[2]] is cells[2] and leaders[cells[3]] is cells[3]


def test_cells_trained_while_the_sweep_releases_cache_layers_equal_unreleased(tiny_bundle, tmp_path, monkeypatch):
    from lpt_probe.model import cache as cache_mod
    from lpt_probe.runs import executors
    from lpt_probe.runs.run import train
    from lpt_probe.runs.sweep import Cell, SweepConfig, cell_configs

    built = []  # the sweep's full caches (one per split), to watch what it releases
    real_build = cache_mod.LowerLayerCache.build.__func__

    def keeping(cls, *a, **kw):
        built.append(real_build(cls, *a, **kw))
        return built[-1]

    monkeypatch.setattr(cache_mod.LowerLayerCache, "build", classmethod(keeping))
    seen = {}
    real_cell = executors.execute_cell

    def watching(pc, tc, run_dir, prepared, caches, progress):
        seen[str(run_dir).rsplit("/", 1)[-1]] = {
            "given": sorted({k for c in caches.values() for k in c.layers}),
            "still_held": sorted({k for c in built for k in c.layers}),
            "weights_released": prepared.backbone.released_layers}
        return real_cell(pc, tc, run_dir, prepared, caches, progress)

    monkeypatch.setattr(executors, "execute_cell", watching)
    own = (copy.deepcopy(tiny_bundle[0]), *tiny_bundle[1:])  # its weights get released: not the shared fixture
    table, base, prepared = tiny_sweep(tmp_path, own, ("lpt",), "2,3,4", release_weights=True)
    monkeypatch.undo()
    assert (table.status == "complete").all() and len(table) == 3
    # each cell got its own layer only, and the layers of finished cells were released
    # (and the weights of the layers below each cell's prompt layer: PL 4 runs layers 4.. only)
    assert seen == {"none-pl2-s13": {"given": [1], "still_held": [1, 2, 3], "weights_released": 1},
                    "none-pl3-s13": {"given": [2], "still_held": [2, 3], "weights_released": 2},
                    "none-pl4-s13": {"given": [3], "still_held": [3], "weights_released": 3}}
    assert all(c.layers == [] for c in built)  # all released at the end
    with pytest.raises(RuntimeError, match="layer 0 of this model was released"):
        LowerLayerCache.build(prepared.backbone, prepared.encoded["train"], [1], progress=False)
    # the same cells trained again on the whole model, from one full cache that is never released
    from lpt_probe.runs.run import prepare

    prepared = prepare(base, tiny_bundle)
    prepared.backbone.model.eval()
    full = {s: LowerLayerCache.build(prepared.backbone, prepared.encoded[s], [1, 2, 3], progress=False)
            for s in prepared.encoded}
    sweep = SweepConfig(methods=("lpt",), progress=False)
    for pl in (2, 3, 4):
        pc, tc = cell_configs(sweep, Cell("lpt", "none", pl, 13), base, prepared.backbone.num_hidden_layers)
        res = train(pc, tc, tmp_path / f"unreleased-{pl}", prepared=prepared, caches=full, progress=False)
        assert res.metrics["cache"] is True
        got = json.loads((tmp_path / "sweep" / "runs" / f"none-pl{pl}-s13" / "metrics.json").read_text())
        for key in ("dev_metric", "test_metric", "best_step", "tunable_params"):
            assert got[key] == res.metrics[key], (pl, key)
        curve = pd.read_csv(tmp_path / "sweep" / "runs" / f"none-pl{pl}-s13" / "curve.csv")
        np.testing.assert_allclose(curve.train_loss, res.curve.train_loss, rtol=0, atol=1e-7)
        np.testing.assert_allclose(curve.dev_loss, res.curve.dev_loss, rtol=0, atol=1e-7)
    assert all(c.layers == [1, 2, 3] for c in full.values())


# -- (d) benchmarks/harness.py: what the benchmark scripts share ----------------------------------
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import harness  # noqa: E402

from lpt_probe import store  # noqa: E402

SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def test_command_records_the_script_and_its_arguments(monkeypatch):
    assert harness.command("/x/benchmarks/bench_mi.py", ["--task", "trec"]) == \
        "python benchmarks/bench_mi.py --task trec"
    assert harness.command(BENCH / "bench_sweep.py", []) == "python benchmarks/bench_sweep.py"  # no trailing space
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--models", "minilm"])
    assert harness.command("bench_train.py", None) == "python benchmarks/bench_train.py --models minilm"


def test_parser_and_report_head():
    p = harness.parser("First line.\n\nMore.")
    assert p.description == "First line." and p.parse_args([]).data_dir == "../shared/data"
    assert not hasattr(harness.parser("Doc.", data_dir=False).parse_args([]), "data_dir")
    assert harness.report_head("T", "python a") == ["# T", "", "Command:", "", "    python a", ""]
    assert harness.report_head("T", ["python a", "python b"]) == \
        ["# T", "", "Commands:", "", "    python a", "    python b", ""]
    # a list of one command is still a list of the commands a report accumulates
    assert harness.report_head("T", ["python a"])[2] == "Commands:"


def test_machine_facts_and_line():
    info = harness.machine()
    assert list(info) == ["cpu_count", "machine"] and info["cpu_count"] == os.cpu_count()
    assert info["machine"] == platform.machine()
    assert harness.machine(torch=True)["torch"] == torch.__version__
    line = harness.machine_line(4, "torch threads", {"machine": "arm64", "cpu_count": 8, "torch": "9.9"})
    assert line == "Machine: arm64, 8 CPU cores, torch 9.9, 4 torch threads"
    assert harness.machine_line(2).endswith(f"torch {torch.__version__}, 2 threads")
    assert isinstance(harness.load_average(), float)


def test_run_timed_sets_the_environment_and_times_the_command():
    code = ("import os, time; time.sleep(0.2); "
            "print(os.environ['TQDM_DISABLE'], os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'], "
            "os.getcwd())")
    got = harness.run_timed([sys.executable, "-c", code], threads=3, cwd=BENCH)
    assert got.returncode == 0 and got.stdout.split() == ["1", "3", "3", str(BENCH)]
    assert 0.2 <= got.wall_seconds < 60
    assert isinstance(got.load_before, float) and isinstance(got.load_after, float)


def test_run_timed_stops_on_a_failing_command_with_its_error_tail():
    code = "import sys; sys.stderr.write('x' * 5000 + 'the real error'); sys.exit(3)"
    with pytest.raises(SystemExit) as exc:
        harness.run_timed([sys.executable, "-c", code], "the thing")
    message = str(exc.value.code)
    assert message.startswith("the thing failed (3):\n") and message.endswith("the real error")
    assert len(message) == len("the thing failed (3):\n") + harness.TAIL  # the tail only
    with pytest.raises(SystemExit, match=r"failed \(2\)$"):  # output not captured: status only
        harness.run_timed([sys.executable, "-c", "raise SystemExit(2)"], capture=False)


def test_run_module_runs_the_lpt_probe_command_and_reads_its_run_json(tmp_path, monkeypatch):
    seen = []

    def fake(cmd, what=None, **kw):
        seen.append((cmd, what))
        out = Path(cmd[cmd.index("--out") + 1])
        store.write_json(out / "run.json", {"status": "complete", "phase_seconds": {"train": 1.5}})
        return harness.Timed(0, "table", "", 2.0, 0.1, 0.2)

    monkeypatch.setattr(harness, "run_timed", fake)
    timed, run = harness.run_module("mi", ["--task", "trec"], tmp_path / "mi")
    assert seen == [([sys.executable, "-m", "lpt_probe.mi", "--out", str(tmp_path / "mi"), "--no-progress",
                      "--task", "trec"], "mi")]
    assert run == {"status": "complete", "phase_seconds": {"train": 1.5}} and timed.wall_seconds == 2.0
    store.write_json(tmp_path / "sweep" / "sweep.json", {"phase_seconds": {"cache": 0.5}})  # a sweep's record
    _, run = harness.run_module("sweep", [], tmp_path / "sweep", record="sweep.json")
    assert run == {"phase_seconds": {"cache": 0.5}}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")  # what a command killed mid-write could leave
    monkeypatch.setattr(harness, "run_timed", lambda cmd, what=None, **kw: None)
    with pytest.raises(store.DamagedFile, match="run.json is damaged"):
        harness.run_module("influence", [], tmp_path / "bad")


def test_write_json_keeps_the_committed_format(tmp_path):
    """Key order and indentation as the results already have them: rewriting each committed
    JSON result gives the same bytes (the helpers change no results file)."""
    for name, indent in (("mi_time.json", 2), ("influence_time.json", 2), ("sweep_vs_ideal.json", 2),
                         ("probe_path.json", 1)):
        committed = BENCH / "results" / name
        if not committed.exists():
            continue
        text = committed.read_text()
        harness.write_json(tmp_path / name, json.loads(text), indent=indent)
        assert (tmp_path / name).read_text() == text, name
    harness.write_json(tmp_path / "deep" / "x.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "deep" / "x.json").read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["x.json"]  # no temporary file left


def test_merge_entries_adds_replaces_in_place_and_refuses_a_damaged_file(tmp_path):
    path = tmp_path / "results" / "t.json"
    assert harness.merge_entries(path, {"cmd a": {"wall": 1}}) == {"cmd a": {"wall": 1}}
    harness.merge_entries(path, {"cmd b": {"wall": 2}})
    merged = harness.merge_entries(path, {"cmd a": {"wall": 3}})
    assert list(merged) == ["cmd a", "cmd b"] and merged["cmd a"] == {"wall": 3}  # replaced where it stood
    assert json.loads(path.read_text()) == merged
    assert path.read_text() == json.dumps(merged, indent=2) + "\n"
    # an earlier version's file (one entry, not keyed by command): dropped when reset says so
    path.write_text(json.dumps({"command": "old", "wall_seconds": 1}))
    assert harness.merge_entries(path, {"new": 1}, reset=lambda old: "command" in old) == {"new": 1}
    assert harness.merge_entries(path, {"newer": 2}, reset=lambda old: "command" in old) == {"new": 1, "newer": 2}
    path.write_text('{"cmd a": {"wall"')  # a truncated file: results are not thrown away silently
    with pytest.raises(store.DamagedFile, match="t.json is damaged"):
        harness.merge_entries(path, {"cmd c": {}})
    assert path.read_text() == '{"cmd a": {"wall"'


def test_write_report_writes_and_echoes(tmp_path, capsys):
    harness.write_report(tmp_path / "r" / "a.md", "# A\n")
    assert (tmp_path / "r" / "a.md").read_text() == "# A\n" and capsys.readouterr().out == "# A\n\n"
    harness.write_report(tmp_path / "r" / "b.md", "# B\n", echo=False)
    assert (tmp_path / "r" / "b.md").read_text() == "# B\n" and capsys.readouterr().out == ""


def test_table_cells():
    nan = float("nan")
    assert [harness.missing(v) for v in (None, nan, 0, 0.0, "")] == [True, True, False, False, False]
    assert harness.cell(nan) == "-" and harness.cell(None, "{:.0f}") == "-" and harness.cell(1234.5, "{:,.0f}") == "1,234"
    assert harness.cell(0.314, "{:.0%}") == "31%"
    row = {"x": 1.87, "x_min": 1.821, "x_max": 1.99, "repeats": 3}
    assert harness.span(row, "x") == "1.87 (1.82-1.99)"
    assert harness.span({**row, "repeats": 1}, "x") == "1.87"
    assert harness.span({"x": 1.87}, "x") == "1.87" and harness.span({"x": nan}, "x") == "-"
    assert harness.span({**row, "x_min": nan}, "x", "{:.0f}") == "2"
    assert harness.span({}, "x") == "-"
    assert [harness.prompt_layer_cell({"prompt_layer": v}) for v in (None, nan, 4.0, 13)] == ["-", "-", "4", "13"]
    assert [harness.cache_cell({"cache": v}) for v in (True, "True", "true", 1, "yes", False, "False", 0, nan)] == \
        ["yes"] * 5 + ["no"] * 4
    assert harness.not_timed(["m bitfit: no bias", "m bitfit: no bias", "m x: y"]) == \
        "\nNot timed: m bitfit: no bias\n\nNot timed: m x: y\n"


def _imports(path: Path):
    """(module, name) for each ``from module import name``, and (module, attribute) for each
    ``module.attribute`` of a module brought in by ``import module``."""
    tree = ast.parse(path.read_text())
    imported = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.module, a.name) for a in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
            yield imported[node.value.id], node.attr


def private_uses(path: Path, ours: set[str]) -> list[str]:
    """The names starting with ``_`` that ``path`` takes from another module of ``ours``."""
    return [f"{m}.{n}" for m, n in _imports(path) if m in ours - {path.stem} and n.startswith("_")]


def test_no_bench_script_uses_another_scripts_private_names(tmp_path):
    assert len(SCRIPTS) >= 6
    ours = {p.stem for p in SCRIPTS} | {"harness"}
    for path in SCRIPTS:
        assert private_uses(path, ours) == [], f"{path.name} uses private names of other benchmark scripts"
    # the check sees both forms of import, and a script's own private names are its own
    probe = tmp_path / "bench_probe.py"
    probe.write_text("import bench_train as bt\nfrom harness import _x, cell\nbt._pl(1)\nbt.span\n"
                     "import bench_probe\nbench_probe._mine\n")
    assert private_uses(probe, ours | {"bench_probe"}) == ["harness._x", "bench_train._pl"]


def test_the_scripts_leave_the_shared_pieces_to_the_harness():
    """Machine facts, load averages, timed subprocesses and result writing live in harness.py
    only: no script calls them itself (the duplicates issue 25 removed)."""
    banned = {("subprocess", "run"), ("platform", "machine"), ("os", "getloadavg"), ("os", "cpu_count"),
              ("json", "dump"), ("sys", "path")}
    for path in SCRIPTS:
        used = set(_imports(path))
        assert not (used & banned), f"{path.name} calls {sorted(used & banned)} itself: use harness"
        assert any(m == "harness" for m, _ in used), f"{path.name} does not use harness"
        text = path.read_text()
        assert ".write_text(" not in text and ".to_csv(" not in text, f"{path.name} writes a result non-atomically"


def test_run_timed_can_leave_progress_on_and_merge_the_streams(monkeypatch):
    """``progress`` keeps ``TQDM_DISABLE`` out of the command's environment (what a user gets),
    ``merge`` gives one stream in order, as a log file holds it (bench_demo.py)."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    code = ("import os, sys; print('out', flush=True); sys.stderr.write('err\\n'); sys.stderr.flush(); "
            "print(os.environ.get('TQDM_DISABLE', 'unset'))")
    got = harness.run_timed([sys.executable, "-c", code], progress=True, merge=True)
    assert got.stdout.split() == ["out", "err", "unset"] and got.stderr is None
    with pytest.raises(SystemExit, match="the merged tail"):
        harness.run_timed([sys.executable, "-c", "print('the merged tail'); raise SystemExit(4)"], merge=True)
