"""pyproject.toml and environment.yml name the same dependencies; the layout exists."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip = [p for p in pip if not p.startswith("-e")]
    wanted = py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]
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
