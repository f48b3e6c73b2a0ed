"""Probe pieces (``lpt_probe.analysis.engine.pieces``): the same files in one process or in worker
processes, for vector and sequence probes; a repeated piece is fitted once; the sidecar is
written last and names the files' hashes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lpt_probe import store
from lpt_probe.analysis.engine import pieces
from lpt_probe.probing import Sequences


def _vectors(rng, n, d=12):
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, d)) + np.eye(3, d)[y] * 1.5, y


def _sequences(rng, n, d=6):
    y = rng.integers(0, 2, n)
    lengths = rng.integers(3, 7, n)
    values = rng.standard_normal((int(lengths.sum()), d)).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values[starts, 0] += np.where(y == 1, 2.0, -2.0)  # the label sits on the first token
    return Sequences(values, lengths), y


def _jobs(folder, kind: str, seed: int = 0) -> list[pieces.PieceJob]:
    rng = np.random.default_rng(seed)
    make = _vectors if kind == "vector" else _sequences
    out = []
    for layer in range(3):
        splits = {s: make(rng, n) for s, n in (("train", 90), ("dev", 40), ("test", 50))}
        X, y = {s: v[0] for s, v in splits.items()}, {s: v[1] for s, v in splits.items()}
        if kind == "vector":
            factory, K = pieces.ProbeFactory("linear", 3), 3
        else:
            factory, K = pieces.ProbeFactory("transformer", 2, {"width": 8, "num_heads": 2, "max_epochs": 3,
                                                                "min_steps": 6, "grid": {"lr": [1e-2]}}), 2
        stem = folder / f"h{layer}"
        paths = {k: stem.with_name(f"{stem.name}.{k}.csv") for k in ("mi", "mdl", "pvi")}
        out.append(pieces.PieceJob(key=f"{kind}-{layer}", paths=paths | {"done": stem.with_name(f"{stem.name}.json")},
                                   sidecar={"layer": layer}, layer=layer, probe=factory.name,
                                   representation="mask", n_classes=K, probe_seeds=(0,), bootstrap=20,
                                   controls=True, permutations=2 if kind == "vector" else 1,
                                   mdl=kind == "vector", test_ids=list(range(50)), X=X, y=y, factory=factory))
    return out


@pytest.mark.parametrize("kind", ["vector", "sequence"])
def test_pieces_in_worker_processes_equal_pieces_in_this_process(tmp_path, kind):
    one, two = tmp_path / "one", tmp_path / "two"
    assert pieces.run_pieces(iter(_jobs(one, kind)), 3, n_jobs=1, progress=False) == 3
    jobs = _jobs(two, kind)
    assert pieces.run_pieces(iter(jobs + jobs[:1]), 3, n_jobs=2, progress=False) == 3  # the repeat: once
    for path in sorted(one.iterdir()):
        assert path.read_bytes() == (two / path.name).read_bytes(), path.name
    done = json.loads((one / "h1.json").read_text())
    assert done["key"] == f"{kind}-1" and done["layer"] == 1
    assert done["files"]["mi"] == store.file_sha256(one / "h1.mi.csv")


def test_default_jobs_is_the_usable_cores_capped():
    assert 1 <= pieces.default_jobs() <= 8


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_pieces_scratch_files_go_when_it_is_done(tmp_path, n_jobs):
    """A sequence piece's layer files (memory-mapped by the worker) are removed once it has
    been fitted, and a repeated piece's at once; the results equal in-memory states'."""
    import dataclasses

    from lpt_probe.analysis.engine.rep_files import SequenceFile

    jobs, mapped = _jobs(tmp_path / "ram", "sequence"), []
    for job in jobs:
        X, files = {}, []
        for s, seqs in job.X.items():
            f = SequenceFile(tmp_path / "scratch" / f"h{job.layer}.{s}.seq", seqs.lengths, seqs.d, np.float32)
            for i in range(len(seqs)):
                f.put(i, seqs[i])
            X[s] = f.sequences(seqs.readout, seqs.prefix)
            files.append(f.path)
        mapped.append(dataclasses.replace(job, X=X, scratch=tuple(files),
                                          paths={k: tmp_path / "disk" / p.name for k, p in job.paths.items()}))
    assert pieces.run_pieces(iter(jobs), 3, n_jobs=1, progress=False) == 3
    repeat = dataclasses.replace(mapped[0], scratch=(tmp_path / "scratch" / "extra.seq",))
    repeat.scratch[0].write_bytes(b"x")
    assert pieces.run_pieces(iter(mapped + [repeat]), 3, n_jobs=n_jobs, progress=False) == 3
    assert list((tmp_path / "scratch").iterdir()) == []
    for path in sorted((tmp_path / "ram").iterdir()):
        assert path.read_bytes() == (tmp_path / "disk" / path.name).read_bytes(), path.name


def test_a_piece_is_done_only_with_its_key_and_its_files_as_sealed(tmp_path):
    """The one piece store of every study (``engine.seal_piece`` / ``piece_done``): the
    sidecar is written last with the key and each file's sha256; a piece counts as done
    only for that key and while every file keeps its hash. An influence sidecar of the
    older layout (hashes at the top level) is still read."""
    from lpt_probe.analysis.engine.base import piece_done, seal_piece

    files = {"csv": tmp_path / "p.csv", "npz": tmp_path / "p.npz"}
    files["csv"].write_text("a,b\n1,2\n")
    files["npz"].write_bytes(b"\x00\x01")
    sidecar = tmp_path / "p.json"
    assert not piece_done(sidecar, "k1", files)  # no sidecar yet
    seal_piece(sidecar, "k1", files, condition="lpt-pl1-s13")
    record = json.loads(sidecar.read_text())
    assert set(record) == {"key", "files", "condition"} and set(record["files"]) == {"csv", "npz"}
    assert piece_done(sidecar, "k1", files)
    assert not piece_done(sidecar, "k2", files)  # asked for another key
    files["npz"].write_bytes(b"\x00\x02")
    assert not piece_done(sidecar, "k1", files)  # a file changed after sealing
    files["npz"].write_bytes(b"\x00\x01")
    files["csv"].unlink()
    assert not piece_done(sidecar, "k1", files)  # a file gone
    files["csv"].write_text("a,b\n1,2\n")
    sidecar.write_text("{not json")
    assert not piece_done(sidecar, "k1", files)  # a damaged sidecar
    legacy = {"csv": "sha256", "npz": "examples_sha256"}
    sidecar.write_text(json.dumps({"key": "k1", "sha256": record["files"]["csv"],
                                   "examples_sha256": record["files"]["npz"]}))
    assert piece_done(sidecar, "k1", files, legacy) and not piece_done(sidecar, "k1", files)
