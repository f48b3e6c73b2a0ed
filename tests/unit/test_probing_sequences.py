"""The ragged Sequences container: construction, indexing as the estimators use it,
padded batches, input-kind errors, MDL and probe_information over Sequences, and the
package's import-time and naming rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lpt_probe.probing import (
    LinearProbe,
    Sequences,
    TransformerProbe,
    check_xy,
    online_codelength,
    probe_information,
)


def _toy(lengths=(3, 1, 4, 2), d=2):
    """Sequence i holds rows [i, t] for t = 0..len-1 (its id in column 0, the position in column 1)."""
    arrays = [np.c_[np.full(n, i), np.arange(n)].astype(np.float32) for i, n in enumerate(lengths)]
    return Sequences.from_list(arrays, readout=[n // 2 for n in lengths]), arrays


def test_construction_and_basic_properties():
    seqs, arrays = _toy()
    assert len(seqs) == 4 and seqs.d == 2 and seqs.n_tokens == 10 and seqs.max_length == 4
    np.testing.assert_array_equal(seqs.offsets, [0, 3, 4, 8, 10])
    np.testing.assert_array_equal(seqs[2], arrays[2])  # an int gives that sequence's [len, d] states
    np.testing.assert_array_equal(seqs[-1], arrays[3])
    assert Sequences(np.zeros((5, 3)), [2, 3]).readout.tolist() == [1, 2]  # default readout: last token
    assert Sequences(np.zeros((2, 3), np.float16), [1, 1]).dtype == np.float16  # float16 kept
    assert Sequences(np.zeros((2, 3)), [1, 1]).dtype == np.float32
    assert "n=4" in repr(seqs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(values=np.zeros((5, 2)), lengths=[2, 2]), "lengths sum to 4 but values has 5 rows"),
    (dict(values=np.zeros((2, 2)), lengths=[2, 0]), "sequence 1 has length 0"),
    (dict(values=np.zeros((4, 2)), lengths=[2, 2], readout=[0, 2]), r"readout\[1\]=2 is outside sequence 1"),
    (dict(values=np.zeros((4, 2)), lengths=[2, 2], readout=[0]), "1 entries for 2 sequences"),
    (dict(values=np.zeros(4), lengths=[4]), "2-D"),
])
def test_construction_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sequences(**kwargs)


@pytest.mark.parametrize("key", [np.array([2, 0, 0, 3]), slice(1, 3), slice(None, None, -1),
                                 np.array([True, False, True, True]), [3, 1]])
def test_indexing_returns_the_selected_sequences(key):
    seqs, arrays = _toy()
    ids = np.arange(4)[key]
    sub = seqs[key]
    assert isinstance(sub, Sequences) and len(sub) == len(ids)
    for j, i in enumerate(ids):
        np.testing.assert_array_equal(sub[j], arrays[i])
    np.testing.assert_array_equal(sub.readout, seqs.readout[ids])
    assert len(seqs[np.array([], dtype=int)]) == 0


def test_pooled_views_and_padded_batches():
    seqs, arrays = _toy()
    np.testing.assert_allclose(seqs.mean_pool(), [a.mean(axis=0) for a in arrays])
    np.testing.assert_array_equal(seqs.readout_vectors(), [a[r] for a, r in zip(arrays, seqs.readout)])
    h, mask = seqs.padded([3, 2])
    assert h.shape == (2, 4, 2) and h.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(h[0, :2], arrays[3])
    np.testing.assert_array_equal(h[0, 2:], 0)
    back = Sequences.from_padded(*seqs.padded(), readout=seqs.readout)
    np.testing.assert_array_equal(back.values, seqs.values)
    import torch

    ht, mt = seqs.pad_batch(np.array([1, 0]))
    assert ht.dtype == torch.float32 and ht.shape == (2, 3, 2) and mt.dtype == torch.bool
    np.testing.assert_array_equal(mt.numpy(), [[1, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="right padding"):
        Sequences.from_padded(np.zeros((1, 3, 2)), np.array([[0, 1, 1]]))
    one = Sequences.from_vectors(np.arange(6.0).reshape(3, 2))
    assert len(one) == 3 and one.lengths.tolist() == [1, 1, 1]


def test_a_probe_given_the_wrong_input_kind_says_what_to_do():
    seqs, _ = _toy()
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"LinearProbe reads one vector.*readout_vectors\(\)"):
        LinearProbe(2).fit(seqs, y)
    with pytest.raises(ValueError, match=r"TransformerProbe reads a sequence.*Sequences\.from_vectors"):
        TransformerProbe(2).fit(np.zeros((4, 2)), y)
    with pytest.raises(ValueError, match=r"LinearProbe reads one vector"):  # before any fitting
        probe_information("linear", seqs, y, None, None, seqs, y, 2, bootstrap=0)
    with pytest.raises(ValueError, match="all be arrays or all Sequences"):
        probe_information("linear", np.zeros((4, 2)), y, None, None, seqs, y, 2, bootstrap=0)
    X, y2 = check_xy(seqs, y, 2)  # either kind is fine when no probe kind is asked for
    assert X is seqs and y2.dtype == np.int64
    with pytest.raises(ValueError, match="NaN or inf"):
        check_xy(Sequences(np.full((2, 2), np.nan), [1, 1]), [0, 1], 2)


class SeqIdProbe:
    """A sequence probe that records which sequences (by the id in column 0) it saw and
    predicts the add-one label frequencies of its training rows."""

    input_kind = "sequence"

    def __init__(self, log):
        self.log = log

    def fit(self, X, y):
        assert isinstance(X, Sequences)
        self.log.append({"fit_ids": [int(X[i][0, 0]) for i in range(len(X))]})
        self.q_ = (np.bincount(y, minlength=2) + 1) / (len(y) + 2)
        return self

    def predict_proba(self, X):
        self.log[-1]["scored_ids"] = [int(X[i][0, 0]) for i in range(len(X))]
        return np.tile(self.q_, (len(X), 1))


def test_online_codelength_permutes_and_slices_sequences():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 5, 20)
    seqs = Sequences.from_list([np.full((n, 3), i, np.float32) for i, n in enumerate(lengths)])
    y = rng.integers(0, 2, 20)
    log = []
    res = online_codelength(lambda s: SeqIdProbe(log), seqs, y, 2, fractions=(0.1, 0.25, 0.5, 1.0), seed=3)
    order = np.random.default_rng(3).permutation(20)
    for call, (start, end) in zip(log, [(2, 5), (5, 10), (10, 20)]):
        assert call["fit_ids"] == order[:start].tolist()  # the preceding rows, in shuffled order
        assert call["scored_ids"] == order[start:end].tolist()
    assert res["block_ends"] == [2, 5, 10, 20] and np.isfinite(res["online_codelength_bits"])


def test_probe_information_passes_sequence_splits_through():
    seqs, _ = _toy((2, 3, 1, 2, 4, 1))
    y = np.array([0, 1, 0, 1, 0, 1])
    log = []
    res = probe_information(lambda s: SeqIdProbe(log), seqs[:4], y[:4], None, None, seqs[4:], y[4:], 2,
                            bootstrap=10)
    assert log[0] == {"fit_ids": [0, 1, 2, 3], "scored_ids": [4, 5]}
    assert res.rows[0]["n_test"] == 2 and res.rows[0]["mi_bits"] == pytest.approx(0.0)


# ---------------------------------------------------------------- package rules
def test_importing_probing_does_not_import_torch():
    code = "import sys, lpt_probe.probing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_private_names_imported_across_probing_modules():
    folder = Path(__file__).resolve().parents[2] / "lpt_probe" / "probing"
    pattern = re.compile(r"from \.+[a-z_.]* import .*\b_[a-z]")
    hits = [f"{p.name}: {line}" for p in folder.glob("*.py") for line in p.read_text().splitlines()
            if pattern.search(line)]
    assert hits == []


def test_standardisation_reads_text_tokens_only():
    """A late prompt's positions (``prefix``) lead the sequence a probe reads, but the
    moments it standardises with are the text tokens': huge prompt vectors in front do
    not change them, and indexing keeps each sequence's prefix."""
    rng = np.random.default_rng(0)
    text = [rng.standard_normal((n, 3)) for n in (4, 2, 5)]
    prompt = [100 + 50 * rng.standard_normal((2, 3)) for _ in text]  # [l=2, d] each, far off scale
    with_prompt = Sequences.from_list([np.concatenate([p, t]) for p, t in zip(prompt, text)])
    with_prompt = Sequences(with_prompt.values, with_prompt.lengths, prefix=[2, 2, 2])
    alone = Sequences.from_list(text)
    for got, want in zip(with_prompt.token_moments(), alone.token_moments()):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert with_prompt.text_token_mask().sum() == alone.n_tokens
    sub = with_prompt[[2, 0]]
    assert sub.prefix.tolist() == [2, 2] and sub[0].shape == (7, 3)
    with pytest.raises(ValueError, match="prefix"):
        Sequences(alone.values, alone.lengths, prefix=[4, 0, 0])  # no text token left in sequence 0
    from lpt_probe.probing import TransformerProbe

    probe = TransformerProbe(2, num_layers=1, width=8, grid={"lr": [1e-3]}, max_epochs=1, min_steps=1)
    probe.fit(with_prompt, np.array([0, 1, 0]), X_dev=with_prompt[[0, 1]], y_dev=np.array([0, 1]))
    np.testing.assert_allclose(probe.mean_, alone.token_moments()[0], rtol=1e-6)


def test_indexing_shares_the_states_and_whole_set_passes_read_in_chunks(monkeypatch, tmp_path):
    """A selection of sequences reads the same ``values`` (no copy of a layer's states: a
    memmap stays a memmap); the moments, finiteness check and pooled views read chunk by
    chunk and equal the whole-array computation."""
    from lpt_probe.probing import sequences as seqmod

    g = np.random.default_rng(0)
    lengths = g.integers(1, 9, size=50)
    values = g.normal(size=(lengths.sum(), 3)).astype(np.float16)
    path = tmp_path / "h.seq"
    values.tofile(path)
    mm = np.memmap(path, dtype=np.float16, mode="r", shape=values.shape)
    prefix = np.where(lengths > 2, 2, 0)
    full = Sequences(mm, lengths, prefix=prefix)
    sub = full[np.array([7, 3, 3, 40])]
    assert sub.values is mm and isinstance(sub.values, np.memmap)
    np.testing.assert_array_equal(sub[1], values[full.starts[3]:full.starts[3] + lengths[3]])
    np.testing.assert_array_equal(sub.compact().values, np.concatenate([full[i] for i in (7, 3, 3, 40)]))
    text = np.concatenate([full[i][prefix[i]:] for i in range(50)]).astype(np.float64)
    for chunk in (5, 1 << 16):  # tokens: a chunk smaller than some sequences, and one chunk for all
        monkeypatch.setattr(seqmod, "CHUNK_BYTES", chunk * 8 * 3)
        mean, std = full.token_moments()
        np.testing.assert_allclose(mean, text.mean(0), rtol=1e-12)
        np.testing.assert_allclose(std, text.std(0), rtol=1e-12)
        np.testing.assert_allclose(full.mean_pool(), [full[i].astype(np.float32).mean(0) for i in range(50)],
                                   rtol=1e-6)
        assert full.all_finite()
        bad = values.copy()
        bad[-1, 0] = np.nan
        assert not Sequences(bad, lengths).all_finite()
    assert sub.row_digests()[1] == sub.row_digests()[2] != sub.row_digests()[0]
    with pytest.raises(ValueError, match="starts must hold 2 rows"):
        Sequences(np.zeros((4, 2)), [2, 2], starts=[0, 3])
