"""Per-layer representations on tiny random models of every family: what ``extract`` and
``layer_sequences`` return equals the backbone's own hidden states and the late-prompt
forward; a late prompt's layers below PL are the frozen pass's, bit for bit; float16
storage stays within a stated tolerance of float32, for the arrays and for an estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpt_probe.analysis.engine.representations import (StoredArray, extract, extract_many, frozen_vectors, layer_sequences,
                                                load_representations, open_representations, save_representations)
from lpt_probe.data.encoded import Encoded
from lpt_probe.model.backbone import Backbone
from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
from lpt_probe.probing import probe_information

from tiny import FAMILIES, V, tiny_model

WORDS = [7, 8, 9]


def encoded(n=7, seed=0, causal=False) -> Encoded:
    g = np.random.default_rng(seed)
    ids, pred, text = [], [], []
    for i in range(n):
        length = int(g.integers(5, 11))
        ids.append([int(t) for t in g.integers(5, V, size=length)])
        pred.append(length - 1 if causal else 1)
        text.append([0, 0] + [1] * (length - 3) + [0])  # two template tokens, the text, a closing token
    return Encoded(ids, pred, [i % 3 for i in range(n)], [f"x{i}" for i in range(n)], pad_id=1, text_mask=text)


def lpt_for(bb: Backbone, pl: int, generator: str = "npg") -> LatePromptModel:
    torch.manual_seed(pl)
    return LatePromptModel(bb, LatePromptConfig(prompt_layer=pl, generator=generator), 3,
                           WORDS if bb.has_lm_head else None).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_vectors_equal_the_backbone_hidden_states(family):
    bb = Backbone(tiny_model(family))
    data = encoded(causal=bb.is_causal)
    reps = extract(bb, data, batch_size=3, progress=False)
    for i in range(len(data)):
        ids = torch.tensor([data.input_ids[i]])
        with torch.no_grad():
            states = bb.hidden_states(ids, torch.ones_like(ids))
        keep = torch.tensor(data.text_mask[i], dtype=torch.bool)
        for k, h in enumerate(states):
            h = h[0]
            np.testing.assert_allclose(reps["mask"][k, i], h[data.pred_positions[i]].numpy(), atol=1e-5)
            np.testing.assert_allclose(reps["cls"][k, i], h[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(reps["mean"][k, i], h[keep].mean(0).numpy(), atol=1e-5)  # text tokens only


@pytest.mark.parametrize("family", FAMILIES)
def test_late_prompt_vectors_equal_its_forward_and_the_frozen_pass_below_pl(family):
    bb = Backbone(tiny_model(family))
    data = encoded(causal=bb.is_causal)
    pl = 3
    model = lpt_for(bb, pl)
    frozen = extract(bb, data, batch_size=4, progress=False)
    alone = extract(model, data, batch_size=4, progress=False)
    for k in range(pl):  # hidden states 0..PL-1: the frozen model's, exactly
        for r in ("cls", "mask", "mean"):
            np.testing.assert_array_equal(alone[r][k], frozen[r][k])
        assert np.isnan(alone["prompt_states"][k]).all()
    b = data.collate(list(range(len(data))))
    with torch.no_grad():
        out = model(b["input_ids"], b["attention_mask"], b["pred_positions"], return_states=True)
    l = model.l
    for j, s in enumerate(out["upper_states"]):
        k = pl + j
        if k == bb.num_hidden_layers:
            s = bb.final(s)
        rows = torch.arange(len(data))
        np.testing.assert_allclose(alone["mask"][k], s[rows, b["pred_positions"] + l].numpy(), atol=1e-5)
        np.testing.assert_allclose(alone["prompt_states"][k], s[:, :l].mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(alone["prompt"], out["prompt"].numpy(), atol=1e-6)


def test_joint_extraction_equals_one_model_at_a_time():
    bb = Backbone(tiny_model("roberta"))
    data = encoded()
    models = {"frozen": None, "pl2": lpt_for(bb, 2), "pl4": lpt_for(bb, 4, "none")}
    joint = extract_many(bb, models, data, batch_size=3, progress=False)
    for name, m in models.items():
        alone = extract(m if m is not None else bb, data, batch_size=3, progress=False)
        for key in alone:
            np.testing.assert_array_equal(joint[name][key], alone[key], err_msg=f"{name} {key}")
    other = Backbone(tiny_model("roberta"))
    with pytest.raises(ValueError, match="wraps another backbone"):
        extract_many(other, {"pl2": models["pl2"]}, data)


@pytest.mark.parametrize("family", ["bert", "deberta-v2", "llama"])
@pytest.mark.parametrize("include_prompt", [True, False])
def test_layer_sequences_equal_the_hidden_states(family, include_prompt):
    bb = Backbone(tiny_model(family))
    data = encoded(causal=bb.is_causal)
    pl = 2
    model = lpt_for(bb, pl)
    b = data.collate(list(range(len(data))))
    with torch.no_grad():
        lower = bb.hidden_states(b["input_ids"], b["attention_mask"])
        up = model(b["input_ids"], b["attention_mask"], b["pred_positions"], return_states=True)
    L, l = bb.num_hidden_layers, model.l
    seen = []
    for j, seqs in layer_sequences(bb, model, data, include_prompt, batch_size=3, dtype=np.float32):
        seen.append(j)
        assert len(seqs) == len(data)
        for i in range(len(data)):
            n = len(data.input_ids[i])
            if j < pl - 1 or (j == pl - 1 and not include_prompt):
                want = lower[j][i, :n]
            elif j == pl - 1:  # the prompt joins hidden state PL-1: it is in front of the frozen text states
                want = torch.cat([up["prompt"][i], lower[j][i, :n]])
            else:
                s = up["upper_states"][j - pl]
                s = bb.final(s) if j == L else s
                want = s[i, : l + n] if include_prompt else s[i, l: l + n]
            np.testing.assert_allclose(seqs[i], want.numpy(), atol=1e-5, err_msg=f"layer {j} row {i}")
            shift = l if include_prompt and j >= pl - 1 else 0
            assert seqs.readout[i] == data.pred_positions[i] + shift
    assert seen == list(range(L + 1))


def test_float16_storage_is_within_tolerance_of_float32(tmp_path):
    bb = Backbone(tiny_model("bert"))
    data = encoded(n=9)
    reps = extract(bb, data, progress=False)
    save_representations(tmp_path, "test", reps, {"key": "k"})
    back, info = load_representations(tmp_path, "test")
    for r in ("cls", "mask", "mean"):
        scale = np.abs(reps[r]).max()
        assert np.abs(back[r] - reps[r]).max() <= 1e-3 * scale  # half precision: ~3 decimal digits
    assert info["key"] == "k" and len(info["sha256"]) == 64
    # the estimate barely moves: Gaussian classes, features stored in float16 vs float32
    g = np.random.default_rng(0)
    y = g.integers(0, 2, 3000)
    X = g.normal(size=(3000, 64)) + 0.4 * y[:, None] * g.normal(size=64)[None, :]
    split = lambda Z: (Z[:1800], y[:1800], Z[1800:2400], y[1800:2400], Z[2400:], y[2400:])  # noqa: E731
    full = probe_information("linear", *split(X), 2, bootstrap=0).rows[0]["mi_bits"]
    half = probe_information("linear", *split(X.astype(np.float16).astype(np.float64)), 2, bootstrap=0).rows[0]
    assert abs(half["mi_bits"] - full) < 0.005
    (tmp_path / "test.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="damaged"):
        load_representations(tmp_path, "test")


def test_open_representations_reads_one_hidden_state_at_a_time(tmp_path):
    """The lazy reader gives exactly the eager reader's arrays, layer by layer (mi feeds its
    probe pieces this way, so memory holds the layers being fitted, not every layer)."""
    bb = Backbone(tiny_model("bert"))
    reps = extract(bb, encoded(n=9), progress=False)
    save_representations(tmp_path, "test", reps, {"key": "k"})
    eager, info = load_representations(tmp_path, "test")
    lazy, info2 = open_representations(tmp_path, "test")
    assert info == info2 and isinstance(lazy["labels"], np.ndarray)
    np.testing.assert_array_equal(lazy["labels"], eager["labels"])
    for r in ("cls", "mask", "mean"):
        assert isinstance(lazy[r], StoredArray) and lazy[r].shape == eager[r].shape
        for k in range(eager[r].shape[0]):
            got = lazy[r][k]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, eager[r][k])
        np.testing.assert_array_equal(np.asarray(lazy[r]), eager[r])
    (tmp_path / "test.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="damaged"):
        open_representations(tmp_path, "test")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_frozen_vectors_are_extracts_vectors_at_that_hidden_state(family):
    """``frozen_vectors`` runs layers 1..k only and gives what ``extract`` gives at hidden state k."""
    bb = Backbone(tiny_model(family))
    data = encoded(n=9, causal=family == "llama")
    reps = extract(bb, data, progress=False)
    for k in (0, 1, bb.num_hidden_layers):
        for r in ("cls", "mask", "mean"):
            np.testing.assert_allclose(frozen_vectors(bb, data, k, r), reps[r][k], atol=1e-5)


def test_which_hidden_states_share_the_frozen_models_piece():
    """Below PL a late prompt's text states are the frozen model's (one piece for both);
    a sequence probe reading the prompt positions too sees the prompt from PL-1 on."""
    from types import SimpleNamespace

    from lpt_probe.analysis.mi.study import Condition, MIConfig, MIRun

    cond = Condition("lpt-pl3-s13", "lpt", 3, 13)
    frozen = Condition("frozen", "frozen", 0, 0)
    for probe, probe_input, shared in (("linear", "text+prompt", [0, 1, 2]), ("transformer", "text", [0, 1, 2]),
                                       ("transformer", "text+prompt", [0, 1])):
        run = SimpleNamespace(cfg=MIConfig(probe=probe, probe_input=probe_input, jobs=1))
        assert [j for j in range(7) if MIRun.shares_frozen_input(run, cond, j)] == shared, (probe, probe_input)
        assert not any(MIRun.shares_frozen_input(run, frozen, j) for j in range(7))


# -- streamed to disk: the same bytes, one batch in memory -------------------------------------------
def _files(folder, models, L, n, d):
    from lpt_probe.analysis.engine.rep_files import StreamedSafetensors
    from lpt_probe.analysis.engine.representations import representation_specs

    return {name: StreamedSafetensors(folder / f"{name}.safetensors",
                                      representation_specs(L, n, d, m.l if m is not None else None))
            for name, m in models.items()}


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_streamed_extraction_writes_the_bytes_of_the_arrays_saved_at_once(tmp_path, family):
    """Writing each batch's rows into the files gives byte for byte the safetensors file the
    arrays saved whole give (same header, order and float16 values), so stored
    representations do not depend on how they were written."""
    from contextlib import ExitStack

    bb = Backbone(tiny_model(family))
    data = encoded(n=11, causal=bb.is_causal)
    models = {"frozen": None, "pl2": lpt_for(bb, 2), "pl3": lpt_for(bb, 3, "appg")}
    whole = extract_many(bb, models, data, batch_size=4, progress=False)
    with ExitStack() as stack:
        files = {k: stack.enter_context(f) for k, f in _files(tmp_path, models, bb.num_hidden_layers, len(data),
                                                                bb.hidden_size).items()}
        assert extract_many(bb, models, data, batch_size=4, progress=False, into=files) is None
    for name in models:
        save_representations(tmp_path / "whole", name, whole[name], {"key": "k"})
        whole_file = tmp_path / "whole" / f"{name}.safetensors"
        assert (tmp_path / f"{name}.safetensors").read_bytes() == whole_file.read_bytes()
    assert np.isnan(whole["pl2"]["prompt_states"][:2]).all() and not np.isnan(whole["pl2"]["prompt_states"][2:]).any()


def test_an_interrupted_streamed_file_leaves_nothing(tmp_path):
    from lpt_probe.analysis.engine.rep_files import StreamedSafetensors

    with pytest.raises(RuntimeError, match="stop"):
        with StreamedSafetensors(tmp_path / "x.safetensors", {"a": (np.float16, (3, 2))}) as f:
            f.put("a", [0], np.ones((1, 2)))
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def _numpy_peak(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streamed_extraction_holds_a_batch_not_the_split(tmp_path):
    """The arrays extraction allocates (numpy's, as tracemalloc sees them) grow with the
    examples when returned in memory, and stay the size of a batch when streamed to files."""
    from contextlib import ExitStack

    bb = Backbone(tiny_model("bert"))
    models = {"frozen": None, "pl2": lpt_for(bb, 2)}
    L, d = bb.num_hidden_layers, bb.hidden_size

    data = {n: encoded(n=n) for n in (40, 320)}

    def streamed(n):
        with ExitStack() as stack:
            files = {k: stack.enter_context(f) for k, f in _files(tmp_path / str(n), models, L, n, d).items()}
            extract_many(bb, models, data[n], batch_size=8, progress=False, into=files)

    streamed(40)  # once before measuring: first-call allocations are not the examples'
    in_memory = [_numpy_peak(lambda n=n: extract_many(bb, models, data[n], batch_size=8, progress=False))
                 for n in data]
    on_disk = [_numpy_peak(lambda n=n: streamed(n)) for n in data]
    assert in_memory[1] > 5 * in_memory[0]  # 8x the examples: the arrays grow with them
    # streamed: what grows is the per-example bookkeeping (row indices, labels), a small
    # fraction of the states' growth in memory
    assert on_disk[1] - on_disk[0] < (in_memory[1] - in_memory[0]) / 20 and on_disk[1] < in_memory[1] / 10


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_layer_sequences_on_disk_equal_those_in_memory(tmp_path, family):
    """With a folder, each hidden state's sequences are a memmap of a file there, equal to
    the in-memory ones; the running states between layers are on disk and removed at the
    end, also when the consumer stops early."""
    bb = Backbone(tiny_model(family))
    data = encoded(n=9, causal=bb.is_causal)
    model = lpt_for(bb, 3)
    ram = dict(layer_sequences(bb, model, data, True, batch_size=4))
    chains = []
    for j, seqs in layer_sequences(bb, model, data, True, batch_size=4, start=1, folder=tmp_path / "s"):
        assert isinstance(seqs.values, np.memmap) and (tmp_path / "s" / f"h{j}.seq").exists()
        chains.append((tmp_path / "s" / "chain").exists())
        for attr in ("lengths", "readout", "prefix"):
            np.testing.assert_array_equal(getattr(seqs, attr), getattr(ram[j], attr))
        np.testing.assert_array_equal(seqs.values, ram[j].values)
    assert all(chains) and not (tmp_path / "s" / "chain").exists()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(f"h{j}.seq" for j in range(1, len(ram)))
    gen = layer_sequences(bb, model, data, False, batch_size=4, folder=tmp_path / "t", stop=2)
    assert [j for j, _ in gen] == [0, 1, 2]
    gen = layer_sequences(bb, model, data, True, batch_size=4, folder=tmp_path / "u")
    next(gen)
    gen.close()  # stopped early: the chain goes
    assert not (tmp_path / "u" / "chain").exists()
