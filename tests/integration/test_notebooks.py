"""Every notebook runs top to bottom (nbclient) at its small default settings and writes
its figures; committed notebooks carry no outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIGURES = {
    "01_propagation_distance": ["performance_vs_layer.pdf", "convergence.pdf"],
    "02_mutual_information": ["mi_by_layer.pdf", "mi_heatmap.pdf"],
    "03_prompt_projection": ["projection.pdf"],
    "04_propagation": ["influence_by_layer.pdf", "coherence_vs_prompt_layer.pdf"],
}


def test_every_notebook_is_listed_and_stripped():
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(FIGURES)
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path.name


@pytest.mark.integration
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group(f"notebook-{n}"))
                                  for n in sorted(FIGURES)])  # each its own group: they spread over the workers
def test_notebook_runs(name, data_dir, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("LPT_PROBE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LPT_PROBE_NB_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for fig in FIGURES[name]:
        path = tmp_path / "figures" / fig
        assert path.exists(), fig
        assert len(PdfReader(str(path)).pages) == 1
