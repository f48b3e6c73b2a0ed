"""Hostile inputs, round 3 (issue 34), the output side: every command writes an fsspec URL
(computed locally, then uploaded) or refuses it in one line; ``figures`` and ``project``
never replace files lpt_probe did not write; stored representations are checked before
an ``mi`` rerun sets any table aside, and an all-zero file is computed again. The embedded
MiniLM on the toy task at tiny settings, fsspec's ``memory://`` filesystem (no network)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path

import fsspec
import pytest
from figure_data import mi_table
from test_hostile_inputs import TINY, refused, toy_task

from lpt_probe import store
from lpt_probe.commands import figures, influence, mi, project, section4, sweep, train
from lpt_probe.outputs import MARKER, ForeignFolder, check_owned, mark_owned, publish_files, staged, staging_dir

REPO = Path(__file__).resolve().parents[2]
MI = ["--steps", "1", "--eval-every", "1", "--prompt-layers", "3", "--dev-size", "10", "--shots", "20",
      "--no-controls", "--no-mdl", "--bootstrap", "10", "--probe-dev-size", "10", "--no-progress", "--quiet"]
INF = ["--steps", "1", "--eval-every", "1", "--prompt-layers", "3", "--dev-size", "10", "--shots", "20",
       "--bootstrap", "10", "--influence-max", "8", "--no-progress", "--quiet"]


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    yield fs
    for top in ("/h4",):  # the memory filesystem lives as long as the process: leave nothing for other tests
        if fs.exists(top):
            fs.rm(top, recursive=True)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> str:
    return str(toy_task(tmp_path_factory.mktemp("task")))


@pytest.fixture(scope="module")
def study(task, tmp_path_factory) -> Path:
    """A finished tiny ``mi`` study; tests work on copies."""
    out = tmp_path_factory.mktemp("mi") / "study"
    assert mi.main(["--task", task, *MI, "--out", str(out)]) == 0
    return out


# -- URL outputs ---------------------------------------------------------------------------------------
def test_staged_uploads_on_success_status_last_and_nothing_on_an_error(tmp_path, memfs, monkeypatch):
    monkeypatch.setenv("LPT_PROBE_STAGING", str(tmp_path / "staging"))
    url = "memory://h4/staged"
    memfs.pipe_file("/h4/staged/run.json", b'{"status": "complete", "old": true}')
    memfs.pipe_file("/h4/staged/mi.csv", b"old table\n")
    with pytest.raises(RuntimeError, match="boom"):
        with staged(url, "run.json") as local:
            assert local == staging_dir(url) and str(tmp_path / "staging") in str(local)
            store.write_csv(local / "mi.csv", mi_table())
            raise RuntimeError("boom")
    assert memfs.cat_file("/h4/staged/mi.csv") == b"old table\n"  # an error uploads nothing
    puts = []
    real = type(memfs).put_file

    def spy(self, lpath, rpath, **kw):
        puts.append((Path(rpath).name, self.exists("/h4/staged/run.json")))
        return real(self, lpath, rpath, **kw)

    monkeypatch.setattr(type(memfs), "put_file", spy)
    with staged(url, "run.json") as again:
        assert again == local  # one URL, one staging folder: a rerun resumes there
        store.write_json(local / "run.json", {"status": "complete"})
        (local / ".lock").write_text("")
        (local / ".mi.csv.previous").write_text("set aside")
    assert [name for name, _ in puts][-1] == "run.json" and not any(seen for _, seen in puts)  # the old one gone first
    assert sorted(Path(p).name for p in memfs.find("/h4/staged")) == ["mi.csv", "run.json"]  # no lock, no aside
    assert json.loads(memfs.cat_file("/h4/staged/run.json")) == {"status": "complete", "url": url}
    assert local.is_dir()  # kept for reruns


def test_mi_and_influence_write_a_url_and_a_rerun_resumes_from_staging(task, tmp_path, memfs, monkeypatch, capsys):
    monkeypatch.setenv("LPT_PROBE_STAGING", str(tmp_path / "staging"))
    monkeypatch.chdir(tmp_path)
    url = "memory://h4/mi"
    assert mi.main(["--task", task, *MI, "--out", url]) == 0
    assert f"wrote {url}/mi.csv, mdl.csv, pvi.csv, mi_diff.csv, mi_by_layer.pdf, run.json" in capsys.readouterr().out
    meta = json.loads(memfs.cat_file("/h4/mi/run.json"))
    assert meta["status"] == "complete" and meta["url"] == url and meta["pieces_fitted"] > 0
    for name in ("mi.csv", "mi_diff.csv", "mi_by_layer.pdf", MARKER):
        assert memfs.exists(f"/h4/mi/{name}"), name
    assert not [p for p in memfs.find("/h4/mi") if p.endswith(".lock")]
    assert mi.main(["--task", task, *MI, "--out", url]) == 0  # resumed in the staging folder: nothing refitted
    assert json.loads(memfs.cat_file("/h4/mi/run.json"))["pieces_fitted"] == 0
    assert mi.main(["--task", task, *MI, "--out", url + "2", "--plan"]) == 0  # --plan uploads nothing
    assert not memfs.exists("/h4/mi2")
    inf = "memory://h4/influence"
    assert influence.main(["--task", task, *INF, "--out", inf]) == 0
    assert json.loads(memfs.cat_file("/h4/influence/run.json"))["status"] == "complete"
    assert memfs.exists("/h4/influence/influence.csv") and memfs.exists("/h4/influence/influence_by_layer.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"]  # no local folder named after a URL


def test_project_and_figures_write_a_url(task, tmp_path, memfs, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert train.main(["--task", task, *TINY, "--generator", "npg", "--out", str(run), "--quiet"]) == 0
    assert project.main([str(run), "--method", "pca", "--max-examples", "20", "--out", "memory://h4/proj",
                         "--quiet"]) == 0
    assert "wrote memory://h4/proj/projection.csv, memory://h4/proj/agreement.csv" in capsys.readouterr().out
    assert sorted(Path(p).name for p in memfs.find("/h4/proj")) == ["agreement.csv", "projection.csv",
                                                                    "projection.pdf"]
    mi_table().to_csv(tmp_path / "mi.csv", index=False)
    assert figures.main(["mi", str(tmp_path / "mi.csv"), "--out", "memory://h4/figs", "--png"]) == 0
    assert capsys.readouterr().out.split() == [f"memory://h4/figs/{n}" for n in
                                               ("mi_by_layer.pdf", "mi_by_layer.png", "mi_heatmap.pdf",
                                                "mi_heatmap.png")]
    assert memfs.cat_file("/h4/figs/mi_by_layer.pdf").startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mi.csv", "run"]


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_a_url_whose_filesystem_is_not_installed_is_one_line_from_every_command(task, study, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LPT_PROBE_STAGING", str(tmp_path / "staging"))
    url = "s3://bucket/x"
    need = (f"--out {url}: Install s3fs to access S3; install the filesystem of that URL (pip install it), or give a "
            "local folder")
    for main, argv in ((mi.main, ["--task", task, *MI]), (influence.main, ["--task", task, *INF]),
                       (section4.main, ["--task", task, "--steps", "1"]), (train.main, ["--task", task, *TINY]),
                       (sweep.main, ["--task", task, "--steps", "1"])):
        refused(main, [*argv, "--out", url], capsys, need)
    refused(section4.main, ["--export", url, "--out", str(study)], capsys, need.replace("--out", "--export"))
    refused(project.main, [str(study), "--out", url], capsys, need)  # before it looks at RUN
    mi_table().to_csv(tmp_path / "mi.csv", index=False)
    refused(figures.main, ["mi", str(tmp_path / "mi.csv"), "--out", url], capsys, need)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mi.csv"]  # nothing computed, staged or written


# -- figures and project replace only what lpt_probe wrote ---------------------------------------------
def test_figures_never_replace_a_file_lpt_probe_did_not_write(task, tmp_path, capsys):
    mi_table().to_csv(tmp_path / "mi.csv", index=False)
    figs = tmp_path / "paper"
    figs.mkdir()
    (figs / "notes.txt").write_text("mine")
    (figs / "mi_heatmap.pdf").write_text("my own drawing")
    argv = ["mi", str(tmp_path / "mi.csv"), "--out", str(figs)]
    refused(figures.main, argv, capsys, f"--out {figs}: would replace mi_heatmap.pdf, which lpt_probe did not write",
            "--overwrite to replace it")
    assert sorted(p.name for p in figs.iterdir()) == ["mi_heatmap.pdf", "notes.txt"]  # checked first: nothing written
    assert figures.main([*argv, "--name", "fig2"]) == 0  # new files beside the user's: fine
    assert json.loads((figs / MARKER).read_text())["files"] == ["fig2.pdf", "fig2_heatmap.pdf"]
    assert figures.main([*argv, "--name", "fig2", "--png"]) == 0  # its own files: replaced, the list grows
    assert json.loads((figs / MARKER).read_text())["files"] == ["fig2.pdf", "fig2.png", "fig2_heatmap.pdf",
                                                                "fig2_heatmap.png"]
    refused(figures.main, argv, capsys, "would replace mi_heatmap.pdf")  # the marker does not list the user's file
    assert figures.main([*argv, "--overwrite"]) == 0
    assert (figs / "mi_heatmap.pdf").read_bytes().startswith(b"%PDF") and (figs / "notes.txt").read_text() == "mine"
    refused(mi.main, ["--task", task, *MI, "--out", str(figs)], capsys,  # its marker lists figures only
            f"--out {figs}: the folder holds files lpt_probe did not write (notes.txt)")
    (figs / "notes.txt").unlink()
    check_owned(figs, "run.json")  # nothing but its figures: a command may take the folder over
    mark_owned(figs, status_file="run.json")
    assert "files" not in json.loads((figs / MARKER).read_text())  # the folder is the toolkit's now
    capsys.readouterr()


def test_figures_write_into_folders_the_toolkit_owns_whole(study, tmp_path, capsys):
    docs = json.loads((REPO / "docs" / "figures" / MARKER).read_text())  # the docs' commands redraw these in place
    assert docs["written_by"] == "lpt_probe" and "files" not in docs
    out = tmp_path / "study"
    shutil.copytree(study, out)
    marker = (out / MARKER).read_bytes()
    (out / "mi_by_layer.pdf").write_text("drawn by mi")
    assert figures.main(["mi", str(out), "--out", str(out)]) == 0  # mi's own folder: owned whole
    assert (out / MARKER).read_bytes() == marker and (out / "mi_by_layer.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ForeignFolder, match="would replace a.pdf"):
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "a.pdf").write_text("new")
        (tmp_path / "dst").mkdir()
        (tmp_path / "dst" / "a.pdf").write_text("old")
        publish_files(tmp_path / "src", ["a.pdf"], tmp_path / "dst")
    capsys.readouterr()


def test_project_refuses_a_folder_of_other_files_before_working(task, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert train.main(["--task", task, *TINY, "--generator", "npg", "--out", str(run), "--quiet"]) == 0
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    from lpt_probe.analysis.projection import run as prompt_projection  # the command imports it when it runs: patch it there

    real = prompt_projection.project_run

    def never(*a, **kw):
        raise AssertionError("project computed before checking --out")

    monkeypatch.setattr(prompt_projection, "project_run", never)
    refused(project.main, [str(run), "--out", str(folder), "--quiet"], capsys,
            f"--out {folder}: the folder holds files lpt_probe did not write (notes.txt)", "--overwrite")
    monkeypatch.setattr(prompt_projection, "project_run", real)
    argv = [str(run), "--method", "pca", "--max-examples", "20", "--quiet"]
    assert project.main([*argv, "--out", str(folder), "--overwrite"]) == 0
    assert (folder / MARKER).is_file() and (folder / "notes.txt").read_text() == "mine"
    assert project.main([*argv, "--out", str(folder)]) == 0  # now its folder
    legacy = run / "projection"  # the default folder, written before the marker: its own files only
    assert project.main(argv) == 0
    (legacy / MARKER).unlink()
    assert project.main(argv) == 0 and (legacy / MARKER).is_file()
    capsys.readouterr()


# -- stored representations: checked before anything is set aside ------------------------------------------
def _reps(out: Path, name: str) -> Path:
    (folder,) = (out / "reps").glob(f"{name}-*")
    return folder


def test_a_tampered_representation_with_a_missing_piece_deletes_nothing(task, study, tmp_path, capsys):
    out = tmp_path / "study"
    shutil.copytree(study, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    reps = _reps(out, "lpt-pl3-s13") / "test.safetensors"
    data = bytearray(reps.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte after the header
    reps.write_bytes(bytes(data))
    piece = sorted((out / "pieces").glob("h6-*.mi.csv"))[0]
    piece.unlink()  # so the rerun has a piece to fit, and reads the representations
    err = refused(mi.main, ["--task", task, *MI, "--out", str(out)], capsys)
    assert f"{reps} is damaged (sha256 differs from test.json)" in err and f"delete {reps.parent}" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # every table, run.json ("complete") and nothing set aside: checked before any of it
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_an_all_zero_representation_file_is_computed_again(task, study, tmp_path, caplog):
    out = tmp_path / "study"
    shutil.copytree(study, out)
    folder = _reps(out, "lpt-pl3-s13")
    good = {s: (folder / f"{s}.safetensors").read_bytes() for s in ("train", "dev", "test")}
    for s, data in good.items():  # what repeated --seeds left: the header, then zeros; its sha256 recorded
        size = struct.unpack("<Q", data[:8])[0] + 8
        zero = data[:size] + bytes(len(data) - size)
        (folder / f"{s}.safetensors").write_bytes(zero)
        info = json.loads((folder / f"{s}.json").read_text())
        (folder / f"{s}.json").write_text(json.dumps({**info, "sha256": store.file_sha256(folder / f"{s}.safetensors")}))
    assert mi.main(["--task", task, *MI, "--out", str(out)]) == 0
    assert "cannot be a real extraction (its labels are not the data's)" in caplog.text
    assert "computing the representations of lpt-pl3-s13 again, and its probe pieces" in caplog.text
    assert {s: (folder / f"{s}.safetensors").read_bytes() for s in good} == good  # extracted anew, as before
    assert json.loads((out / "run.json").read_text())["pieces_fitted"] > 0
    assert (out / "mi.csv").read_bytes() == (study / "mi.csv").read_bytes()
    caplog.clear()
    assert mi.main(["--task", task, *MI, "--out", str(out)]) == 0
    assert "cannot be a real extraction" not in caplog.text


def test_a_constant_matrix_with_the_right_labels_is_caught():
    import numpy as np

    from lpt_probe.analysis.engine.representations import constant_representation

    labels = np.array([0, 1, 1, 1])
    real = {"labels": labels, "cls": np.random.default_rng(0).normal(size=(3, 4, 5))}
    assert constant_representation(real, labels) is None
    flat = {"labels": labels, "cls": np.full((3, 4, 5), 0.5)}
    assert constant_representation(flat, labels) == "its cls vectors at hidden state 2 are all 0.5"
    assert constant_representation(real, labels[::-1]) == "its labels are not the data's"
