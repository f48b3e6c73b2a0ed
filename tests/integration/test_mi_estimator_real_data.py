"""The estimator fix of issue 22 on real TREC: probe rows disjoint from the prompt's rows.
The other estimator fixes, on synthetic rows, are in tests/unit/test_mi_estimator.py."""

from __future__ import annotations

import pytest

from lpt_probe.analysis.mi.study import MIConfig, MIRun


@pytest.mark.integration
def test_mi_probes_never_see_the_prompts_rows(data_dir):
    """On real TREC: the prompt's 100 shots and its 1000 dev rows are in neither probe split;
    every condition is probed on the same rows; pool rows repeating a test text are gone."""
    cfg = MIConfig(task="trec", data_dir=str(data_dir), prompt_layers="4", probe_train_max=300, probe_dev_size=100,
                   progress=False, jobs=1)
    run = MIRun(cfg)
    run.load_data()
    prompt = run.prompt_prepared.data
    prompt_ids = set(prompt.train.ids) | set(prompt.dev.ids)
    assert len(prompt_ids) == 1100
    for s in ("train", "dev"):
        assert not prompt_ids & set(run.encoded[s].ids), s
    assert len(run.encoded["train"]) == 300 and len(run.encoded["dev"]) == 100
    assert run.probe_rows["excluded_prompt_rows"] == 1100
    test_texts = {e.texts for e in run.probe_data.test}
    assert not any(e.texts in test_texts for s in ("train", "dev") for e in getattr(run.probe_data, s))
    assert cfg.train.drop_overlap and run.train_config(13).drop_overlap and run.train_config(13).dev_size == 1000
