"""pyproject.toml and environment.yml name the same dependencies; the layout exists."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def expand_extra(py: dict, extra: str) -> list[str]:
    """An extra's requirements, the package's own extras it names (``lpt_probe[a,b]``) expanded."""
    out = []
    for req in py["project"]["optional-dependencies"][extra]:
        if _name(req) == py["project"]["name"]:
            for inner in req.split("[", 1)[1].rstrip("]").split(","):
                out += expand_extra(py, inner.strip())
        else:
            out.append(req)
    return out


def test_only_some_users_need_the_extras():
    """The model card's packages are required; ray, the GGUF reader and the docs tools are
    extras (issue 33), all installed by ``scripts/setup.sh dev`` (the tests)."""
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    base = {_name(r) for r in py["project"]["dependencies"]}
    assert {"torch", "transformers", "scikit-learn", "umap-learn", "seaborn", "jupyterlab", "datasets"} <= base
    assert not base & {"ray", "gguf", "mkdocs", "tensorboard"}
    dev = {_name(r) for r in expand_extra(py, "dev")}
    assert {"ray", "gguf", "accelerate", "mkdocs", "tensorboard", "pytest"} <= dev
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "bash scripts/setup.sh dev" in (REPO / "scripts" / "test.sh").read_text()
    demo = (REPO / "scripts" / "demo.sh").read_text().splitlines()
    assert "bash scripts/setup.sh" in [line.strip() for line in demo]  # the main job: no extras
    assert '".[$extras]"' in setup


def test_environment_yml_agrees_with_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip = [p for p in pip if not p.startswith("-e")]
    wanted = py["project"]["dependencies"] + expand_extra(py, "dev")
    assert sorted(pip) == sorted(wanted), "environment.yml pip list differs from pyproject.toml"
    models = py["tool"]["lpt_probe"]["embedded-models"]
    text = (REPO / "environment.yml").read_text()
    assert f"# embedded-models: {' '.join(models)}" in text


def test_layout():
    for path in ("lpt_probe", "notebooks", "artifacts/README.md", "artifacts/.gitignore", "tests",
                 "benchmarks", "environment.yml", "pyproject.toml", "README.md", ".ci/run"):
        assert (REPO / path).exists(), path


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (REPO / ".ci/run").read_text()


def test_smollm2_without_the_gguf_reader_says_which_extra(tmp_path, monkeypatch):
    """The GGUF reader is an extra: the embedded SmolLM2's first load without it is one line
    naming ``.[gguf]`` (before transformers' own ImportError)."""
    import importlib.util

    import pytest

    from lpt_probe.model import loading

    monkeypatch.setattr(loading, "cache_dir", lambda: tmp_path)  # no converted copy yet
    real = importlib.util.find_spec
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs the gguf package.*pip install -e '\.\[gguf\]'"):
        loading._smollm2_folder(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
