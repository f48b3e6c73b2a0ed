"""mkdocs hooks for the docs site (``hooks:`` in mkdocs.yml); nothing here is part of the package.

What it does, so that the site never drifts from the code:

- ``on_files``: the notebooks live in ``notebooks/``, outside ``docs_dir``; they are added to
  the build as ``notebooks/<name>.ipynb`` (mkdocs-jupyter then renders them, unexecuted).
  No symlink and no copy in ``docs/``, so a clean clone builds on any OS.
- ``<!-- lpt-probe-help: COMMAND -->`` in a page becomes that command's ``--help`` text,
  formatted from its own ``build_parser()`` at build time (``reference/cli.md``). Every
  command of ``lpt_probe.__main__.COMMANDS`` must have its marker: a new command without
  one fails the strict build.
- ``<!-- lpt-probe-families -->`` becomes the model-family table of
  ``lpt_probe.model.families.FAMILIES``.
- ``on_config``: the package and the snippets (``--8<-- "CHANGELOG.md"``) are read from this
  checkout whatever the working directory (``mkdocs build -f path/to/mkdocs.yml``).

(The repository root goes first on ``sys.path``: the commands' help comes from this
checkout's package, not from whatever copy the environment has installed.)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

NOTEBOOKS = "notebooks"
HELP_MARKER = re.compile(r"<!-- lpt-probe-help: ([\w-]+) -->")
FAMILIES_MARKER = "<!-- lpt-probe-families -->"
HELP_WIDTH = "100"  # argparse wraps help text to $COLUMNS - 2


def _repo(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    repo = str(_repo(config))
    if sys.path[:1] != [repo]:
        sys.path.insert(0, repo)
    snippets = config.mdx_configs.get("pymdownx.snippets")
    if snippets is not None:  # its base_path is read from the working directory: anchor it here
        snippets["base_path"] = [str(Path(repo, p)) for p in snippets.get("base_path", ["."])]
    return config


@event_priority(100)  # before mkdocs-jupyter (priority 0) turns .ipynb files into pages
def on_files(files, config):
    repo = _repo(config)
    for path in sorted((repo / NOTEBOOKS).glob("*.ipynb")):
        uri = f"{NOTEBOOKS}/{path.name}"
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"{uri} is both in {config.docs_dir} and in {NOTEBOOKS}/: keep only {NOTEBOOKS}/{path.name}")
        files.append(File(uri, src_dir=str(repo), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


@contextlib.contextmanager
def _columns(width: str):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def command_help(name: str) -> str:
    """``python -m lpt_probe.<name> --help``, as the command prints it."""
    from lpt_probe.__main__ import COMMANDS

    if name not in COMMANDS:
        raise PluginError(f"<!-- lpt-probe-help: {name} -->: no such command; the commands are {', '.join(COMMANDS)}")
    module = importlib.import_module(f"lpt_probe.commands.{name}")
    parser = module.build_parser()
    parser.prog = f"python -m lpt_probe.{name}"
    with _columns(HELP_WIDTH):
        return parser.format_help()


def family_table() -> str:
    from lpt_probe.model.families import FAMILIES

    rows = ["| family | Hugging Face `config.model_type` | kind | Houlsby adapter sites (per layer) |",
            "|---|---|---|---|"]
    for spec in FAMILIES.values():
        kind = "decoder (causal LM head)" if spec.causal else "encoder (MLM head when the model has one)"
        sites = ", ".join(f"`{s}`" for s in spec.adapter_sites) or "none"
        types = ", ".join(f"`{t}`" for t in spec.model_types)
        rows.append(f"| `{spec.name}` | {types} | {kind} | {sites} |")
    return "\n".join(rows)


def _fence(text: str) -> str:
    return f"```text\n{text.rstrip()}\n```"


def on_page_markdown(markdown, page, config, files):
    names = HELP_MARKER.findall(markdown)
    if names:
        from lpt_probe.__main__ import COMMANDS, usage

        missing = [c for c in COMMANDS if c not in names]
        if missing:
            raise PluginError(f"{page.file.src_uri}: no <!-- lpt-probe-help: ... --> marker for {', '.join(missing)}")
        markdown = markdown.replace("<!-- lpt-probe-usage -->", _fence(usage()))
        markdown = HELP_MARKER.sub(lambda m: _fence(command_help(m.group(1))), markdown)
    if FAMILIES_MARKER in markdown:
        markdown = markdown.replace(FAMILIES_MARKER, family_table())
    return markdown
