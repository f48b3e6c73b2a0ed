"""``lpt_probe.influence``, the command end to end on real TREC with the embedded MiniLM
(tiny settings): resume, recompute, init = the run's step 0. The measures on tiny random
models are in tests/unit/test_influence.py."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lpt_probe.commands import influence as cli
from lpt_probe.analysis.influence.study import COLUMNS, Condition, InfluenceConfig, InfluenceRun
from lpt_probe.runs.folders import load_run


# -- the command end to end ------------------------------------------------------------
@pytest.mark.integration
def test_command_resumes_recomputes_and_init_is_step_zero(data_dir, tmp_path, capsys):
    out = tmp_path / "inf"
    argv = ["--task", "trec", "--data-dir", str(data_dir), "--prompt-layers", "6", "--steps", "4",
            "--eval-every", "2", "--max-examples", "24", "--influence-max", "4", "--bootstrap", "20",
            "--checkpoints", "0", "--no-progress", "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "3 piece(s) measured, 0 reused" in first
    table = pd.read_csv(out / "influence.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["checkpoint"]) == {"init", "step-0", "trained"}
    assert (out / "influence_by_layer.pdf").stat().st_size > 0
    # the untrained prompt measured is the run's own step 0, bit for bit
    run = load_run(next((out / "runs").glob("lpt-pl6-s13-*")), bundle=None, checkpoint="checkpoints/step-0.safetensors")
    ir = InfluenceRun(InfluenceConfig(task="trec", data_dir=str(data_dir), prompt_layers="6", steps=4,
                                      eval_every=2, max_examples=24, checkpoints=(0,)))
    ir.load_data()
    init = ir.model_for(Condition.lpt(6, 13), "init")
    for k, v in init.trainable_state_dict().items():
        assert torch.equal(v, run.model.trainable_state_dict()[k]), k
    key = ["prompt_layer", "layer", "quantity", "position"]
    a = table[table["checkpoint"] == "init"].set_index(key)["value"]
    b = table[table["checkpoint"] == "step-0"].set_index(key)["value"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
    assert (table.loc[(table["quantity"] == "displacement") & (table["layer"] < table["prompt_layer"]), "value"]
            == 0).all()
    # a rerun reuses every piece; a changed measurement setting recomputes them all; more
    # training steps keep the init pieces
    assert cli.main(argv) == 0
    assert "0 piece(s) measured, 3 reused" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "influence.csv"), table)
    assert cli.main(argv[:-4] + ["--bootstrap", "30"] + argv[-4:]) == 0
    assert "3 piece(s) measured, 0 reused" in capsys.readouterr().out
    assert cli.main(argv + ["--steps", "6", "--bootstrap", "30"]) == 0
    assert "2 piece(s) measured, 1 reused" in capsys.readouterr().out
