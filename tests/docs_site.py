"""What the README tests and the docs tests read from the docs site: the pages in nav order
(mkdocs.yml) and the fenced code blocks of a page. Reads files only: no mkdocs needed."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def mkdocs_config(root: Path = REPO) -> dict:
    return yaml.safe_load((root / "mkdocs.yml").read_text())


def nav_entries(root: Path = REPO) -> list[str]:
    """Every page the nav of mkdocs.yml names (paths relative to docs_dir), in nav order."""

    def walk(node) -> list[str]:
        if isinstance(node, str):
            return [] if "://" in node else [node]
        if isinstance(node, dict):
            return [p for value in node.values() for p in walk(value)]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        return []

    return walk(mkdocs_config(root).get("nav", []))


def docs_dir(root: Path = REPO) -> Path:
    return root / mkdocs_config(root).get("docs_dir", "docs")


def excluded(rel: str, root: Path = REPO) -> bool:
    """Whether ``exclude_docs`` of mkdocs.yml leaves this docs file out of the build (its
    patterns are gitignore-style; the ones used here are plain globs relative to docs_dir)."""
    patterns = [p.strip() for p in str(mkdocs_config(root).get("exclude_docs") or "").splitlines()]
    return any(p and not p.startswith("#") and fnmatch.fnmatch(rel, p.lstrip("/")) for p in patterns)


def markdown_pages(root: Path = REPO) -> list[Path]:
    """The Markdown pages under docs_dir that the site builds: those in the nav first, in nav
    order (a command on a later page may read what an earlier page's command wrote), then
    any others, sorted."""
    base = docs_dir(root)
    found = sorted(p for p in base.rglob("*.md") if not excluded(p.relative_to(base).as_posix(), root))
    in_nav = [base / e for e in nav_entries(root) if e.endswith(".md")]
    return [p for p in in_nav if p in found] + [p for p in found if p not in in_nav]


def fenced_blocks(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a Markdown text, in order."""
    return re.findall(rf"```{re.escape(lang)}\n(.*?)```", text, flags=re.S)
