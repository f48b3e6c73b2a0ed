"""Mid-run resume: a training run killed after some dev evaluations goes on, when rerun, from
the training state it kept (``lpt_probe.runs.resume``), and writes the bytes an
uninterrupted run writes (less the timing columns and fields). On a tiny random BERT over a
toy task: a plain prompt and a generated one (dropout: the random number generators'
state matters), with early stopping, with ``--save-every`` checkpoints, through a sweep;
a state of another run, a damaged one and one whose checkpoints changed are ignored."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch
from test_adapters import tiny_bundle, toy_task  # noqa: F401 (fixture)

from lpt_probe.model.late_prompt import LatePromptConfig
from lpt_probe.runs import resume
from lpt_probe.runs.folders import check_run
from lpt_probe.runs.run import train
from lpt_probe.runs.trainer import TrainConfig, Trainer

TIMING_COLUMNS = ("train_seconds",)  # curve.csv
TIMING_FIELDS = ("train_seconds", "tokens_per_second")  # metrics.json
SAME_BYTES = ("prompt.safetensors", "prompt_config.json", "test_predictions.csv", "dev_correct.npz", "config.json")


def config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(task=str(toy_task(tmp_path / "task")), model="tiny-bert", shots=20, dev_size=10,
                       batch_size=8, **{"steps": 12, "eval_every": 2, "lr": 3e-2, **kw})


def killed_at_evaluation(monkeypatch, n: int):
    """Patch ``Trainer.evaluate`` to raise KeyboardInterrupt (Ctrl-C) in its ``n``-th call."""
    real, calls = Trainer.evaluate, []

    def evaluate(self, *a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


def interrupt(pc, tc, folder, bundle, monkeypatch, n: int = 3):
    """Train into ``folder``, killed in the ``n``-th dev evaluation (after ``n - 1`` whole ones)."""
    with monkeypatch.context() as m:
        killed_at_evaluation(m, n)
        with pytest.raises(KeyboardInterrupt):
            train(pc, tc, folder, bundle=bundle, progress=False)
    assert json.loads((folder / "meta.json").read_text())["status"] == "interrupted"
    assert (folder / resume.STATE_FILE).is_file() and not check_run(folder)[0]


def assert_same_results(a, b):
    """Run folders ``a`` and ``b`` hold the same results, timing apart."""
    for name in SAME_BYTES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ca, cb = (pd.read_csv(d / "curve.csv", dtype=str) for d in (a, b))
    assert set(TIMING_COLUMNS) <= set(ca.columns)
    pd.testing.assert_frame_equal(ca.drop(columns=list(TIMING_COLUMNS)), cb.drop(columns=list(TIMING_COLUMNS)))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if k not in TIMING_FIELDS} == {k: v for k, v in mb.items()
                                                                       if k not in TIMING_FIELDS}
    fa, fb = (json.loads((d / "meta.json").read_text())["files"] for d in (a, b))
    assert fa.keys() == fb.keys()
    for name in fa:
        if name.endswith(".safetensors"):
            assert fa[name] == fb[name] and (a / name).read_bytes() == (b / name).read_bytes(), name


def resumed_at(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "resumed at step" in r.getMessage()]


@pytest.mark.parametrize("prompt, train_kw", [
    ({"generator": "none"}, {}), ({"generator": "npg"}, {}),  # npg: dropout on the generated prompt
    ({"generator": "none"}, {"backbone_dropout": True}),  # dropout in the frozen layers, no cache
    ({"method": "lora"}, {"lr": 1e-3})])  # a baseline (peft's weights)
def test_a_killed_run_resumes_and_writes_what_an_uninterrupted_run_writes(prompt, train_kw, tiny_bundle,  # noqa: F811
                                                                          tmp_path, monkeypatch, caplog):
    pc = LatePromptConfig(**{"prompt_layer": 3, **prompt}) if "method" not in prompt else LatePromptConfig(**prompt)
    tc = config(tmp_path, **train_kw)
    whole = train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    interrupt(pc, tc, tmp_path / "killed", tiny_bundle, monkeypatch)
    state = torch.load(tmp_path / "killed" / resume.STATE_FILE, weights_only=True)  # plain types and tensors
    assert state["step"] == 4 and state["key"] == whole.key and len(state["curve"]) == 2
    caplog.set_level(logging.INFO, logger="lpt_probe")
    again = train(pc, tc, tmp_path / "killed", bundle=tiny_bundle, progress=False)
    assert len(resumed_at(caplog)) == 1 and "resumed at step 4" in resumed_at(caplog)[0]
    assert not (tmp_path / "killed" / "resume").exists()  # removed once the run is complete
    assert check_run(tmp_path / "killed", whole.key)[0] and again.meta["resumed_at_step"] == 4
    assert_same_results(tmp_path / "whole", tmp_path / "killed")


def test_the_generators_state_is_part_of_what_resumes(tiny_bundle, tmp_path, monkeypatch):  # noqa: F811
    """npg applies dropout to its prompt: a resume without the saved random state would differ."""
    pc, tc = LatePromptConfig(prompt_layer=3, generator="npg"), config(tmp_path)
    train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    interrupt(pc, tc, tmp_path / "killed", tiny_bundle, monkeypatch)
    path = tmp_path / "killed" / resume.STATE_FILE
    state = torch.load(path, weights_only=True)
    state["rng"]["torch"] = torch.random.manual_seed(12345).get_state()  # another generator state
    torch.save(state, path)
    train(pc, tc, tmp_path / "killed", bundle=tiny_bundle, progress=False)
    whole, other = (pd.read_csv(tmp_path / d / "curve.csv").set_index("step") for d in ("whole", "killed"))
    assert whole.loc[:4, "train_loss"].equals(other.loc[:4, "train_loss"])  # from the state: the same
    assert (whole.loc[6:, "train_loss"] != other.loc[6:, "train_loss"]).all()  # other dropout masks after it


def test_early_stopping_resumes_to_the_same_stop(tiny_bundle, tmp_path, monkeypatch, caplog):  # noqa: F811
    pc, tc = LatePromptConfig(prompt_layer=3), config(tmp_path, steps=40, patience=3, lr=1e-6)
    whole = train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    assert whole.metrics["early_stopped"] and whole.metrics["stopped_step"] > 6
    interrupt(pc, tc, tmp_path / "killed", tiny_bundle, monkeypatch)
    meta = tmp_path / "killed" / "meta.json"  # as SIGKILL (the OOM killer) leaves it: nothing marked it
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "status": "running"}))
    caplog.set_level(logging.INFO, logger="lpt_probe")
    again = train(pc, tc, tmp_path / "killed", bundle=tiny_bundle, progress=False)
    assert "no command is at work there" in caplog.text
    assert resumed_at(caplog) and again.metrics["stopped_step"] == whole.metrics["stopped_step"]
    assert_same_results(tmp_path / "whole", tmp_path / "killed")


def test_checkpoints_saved_before_the_state_are_kept_and_later_ones_rebuilt(tiny_bundle, tmp_path,  # noqa: F811
                                                                            monkeypatch, caplog):
    pc, tc = LatePromptConfig(prompt_layer=3), config(tmp_path, save_every=1)
    train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    killed = tmp_path / "killed"
    interrupt(pc, tc, killed, tiny_bundle, monkeypatch)  # killed in step 6's evaluation: step-5 saved after the state
    state = torch.load(killed / resume.STATE_FILE, weights_only=True)
    assert sorted(state["files"]) == sorted(f"checkpoints/step-{s}.safetensors" for s in range(5))
    assert (killed / "checkpoints" / "step-5.safetensors").is_file()
    kept = {n: (killed / n).stat().st_mtime_ns for n in state["files"]}
    caplog.set_level(logging.INFO, logger="lpt_probe")
    train(pc, tc, killed, bundle=tiny_bundle, progress=False)
    assert resumed_at(caplog)
    assert {n: (killed / n).stat().st_mtime_ns for n in kept} == kept  # not written again
    files = json.loads((killed / "meta.json").read_text())["files"]
    assert sorted(n for n in files if n.startswith("checkpoints/")) == sorted(
        f"checkpoints/step-{s}.safetensors" for s in range(13))
    assert not [p for p in killed.rglob(".*") if p.name.endswith((".previous", ".tmp"))]
    assert_same_results(tmp_path / "whole", killed)


def test_a_changed_checkpoint_starts_the_run_over(tiny_bundle, tmp_path, monkeypatch, caplog):  # noqa: F811
    pc, tc = LatePromptConfig(prompt_layer=3), config(tmp_path, save_every=3, steps=8)
    train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    killed = tmp_path / "killed"
    interrupt(pc, tc, killed, tiny_bundle, monkeypatch)
    (killed / "checkpoints" / "step-3.safetensors").write_bytes(b"not the checkpoint")
    caplog.set_level(logging.INFO, logger="lpt_probe")
    train(pc, tc, killed, bundle=tiny_bundle, progress=False)
    assert not resumed_at(caplog)
    assert any("not resumed" in r.getMessage() and "step-3.safetensors changed" in r.getMessage()
               for r in caplog.records)
    assert_same_results(tmp_path / "whole", killed)


def cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_shape(path):
    state = torch.load(path, weights_only=True)
    name = next(iter(state["weights"]))
    state["weights"][name] = torch.zeros(3, 3)  # an edited file that still reads
    torch.save(state, path)


@pytest.mark.parametrize("damage, note", [(cut_short, "cannot be read"), (other_shape, "do not fit this model")])
def test_a_damaged_state_is_ignored_and_the_run_starts_over(damage, note, tiny_bundle, tmp_path,  # noqa: F811
                                                            monkeypatch, caplog):
    pc, tc = LatePromptConfig(prompt_layer=3), config(tmp_path, steps=8)
    train(pc, tc, tmp_path / "whole", bundle=tiny_bundle, progress=False)
    killed = tmp_path / "killed"
    interrupt(pc, tc, killed, tiny_bundle, monkeypatch)
    path = killed / resume.STATE_FILE
    damage(path)
    caplog.set_level(logging.INFO, logger="lpt_probe")
    train(pc, tc, killed, bundle=tiny_bundle, progress=False)
    notes = [r.getMessage() for r in caplog.records if "not resumed" in r.getMessage()]
    assert len(notes) == 1 and note in notes[0] and not resumed_at(caplog)
    assert not path.exists()
    assert_same_results(tmp_path / "whole", killed)


def test_a_state_of_another_run_is_ignored(tiny_bundle, tmp_path, monkeypatch, caplog):  # noqa: F811
    pc = LatePromptConfig(prompt_layer=3)
    folder = tmp_path / "run"
    interrupt(pc, config(tmp_path, steps=8), folder, tiny_bundle, monkeypatch)
    caplog.set_level(logging.INFO, logger="lpt_probe")
    other = train(pc, config(tmp_path, steps=8, seed=21), folder, bundle=tiny_bundle, progress=False)
    notes = [r.getMessage() for r in caplog.records if "not resumed" in r.getMessage()]
    assert len(notes) == 1 and "other settings" in notes[0] and not resumed_at(caplog)
    assert check_run(folder, other.key)[0] and not (folder / "resume").exists()
    assert "resumed_at_step" not in other.meta
    # and resume=False starts an unfinished run over, ignoring its state
    interrupt(pc, config(tmp_path, steps=8), folder, tiny_bundle, monkeypatch)
    caplog.clear()
    train(pc, config(tmp_path, steps=8), folder, bundle=tiny_bundle, progress=False, resume=False)
    assert not resumed_at(caplog) and not (folder / "resume").exists()


def test_a_killed_sweep_cell_resumes(tiny_bundle, tmp_path, monkeypatch, caplog):  # noqa: F811
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.sweep import SweepConfig, run_sweep

    base = config(tmp_path, steps=8)
    prepared = prepare(base, tiny_bundle)

    def sweep(out):
        return run_sweep(SweepConfig(methods=("lpt",), prompt_layers="3", generators=("npg",), seeds=(13,),
                                     out=str(tmp_path / out), progress=False), base, prepared=prepared)

    whole = sweep("whole")
    with monkeypatch.context() as m:
        killed_at_evaluation(m, 3)
        with pytest.raises(KeyboardInterrupt):
            sweep("killed")
    assert json.loads((tmp_path / "killed" / "sweep.json").read_text())["status"] == "interrupted"
    cell = tmp_path / "killed" / "runs" / "npg-pl3-s13"
    assert (cell / resume.STATE_FILE).is_file()
    caplog.set_level(logging.INFO, logger="lpt_probe")
    again = sweep("killed")
    assert len(resumed_at(caplog)) == 1 and "resumed at step 4" in resumed_at(caplog)[0]
    assert_same_results(tmp_path / "whole" / "runs" / "npg-pl3-s13", cell)
    timing = ["tokens_per_second", "peak_memory_mb", "rss_mb", "wall_seconds", "run_dir"]  # and memory
    cols = [c for c in whole.columns if c not in timing]
    pd.testing.assert_frame_equal(whole[cols], again[cols])
