"""The three folders of tests and what each means, in one place (tests/conftest.py applies it).

- ``tests/unit/``: no real data (no ``data_dir``, no ``integration`` mark): tiny random
  models built from configs, synthetic tasks (some through the embedded MiniLM at tiny
  settings, the commands' default model), committed result files;
- ``tests/integration/``: the real task files in ../shared/data with the embedded models,
  Ray, the notebooks, the slow end-to-end studies: every test here is marked ``integration``;
- ``tests/docs/``: the README, the docs pages, the numbers they quote and the benchmark
  scripts; a test here that reads the real data (``data_dir``) is marked ``integration`` too.

So ``-m "not integration"`` leaves out every test that reads ../shared/data, and
``bash scripts/test.sh tests/unit`` runs one folder. The helpers shared by all three
(``tiny.py``, ``figure_data.py``, ``docs_site.py``, this module) stay in ``tests/``, which
pyproject's ``pythonpath`` puts on ``sys.path`` with ``tests/unit/`` (whose modules the
other folders import helpers from); test file names stay unique across the folders
(pytest imports each test module by its bare name).
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "integration", "docs")

# The slowest test files first (tests/conftest.py sorts the collected tests by it; seconds
# on a quiet 2-core machine, roughly: README commands ~1500 in all, README benchmark
# commands ~740, notebooks ~700, trust ~250). scripts/test.sh runs two workers with
# --dist loadgroup --no-loadscope-reorder: a group runs on one worker, in this order. Every
# test is grouped by its file, so a file's fixtures stay in one process, except the README's
# commands: each chain of them (tests/docs/test_readme.py: readme_chains) is a group of its
# own, so they spread over both workers instead of one long test holding one worker. The
# long groups start first and the short files fill the gaps. File names are unique across
# the three folders, so the bare name is the key.
SLOW_FIRST = ["test_readme.py", "test_notebooks.py", "test_readme_benchmarks.py", "test_trust.py",
              "test_integration.py", "test_sweep_executors.py", "test_study_executors.py", "test_influence_command.py"]


def layer_of(path: Path) -> str | None:
    """The folder of ``tests/`` a test file lives in (``None``: directly in ``tests/``, or
    outside it)."""
    path = Path(path).resolve()
    parts = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ()
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else None


def misplaced(path: Path, reads_real_data: bool, marked_integration: bool) -> str | None:
    """Why a test does not belong where it is, or ``None``: ``reads_real_data`` is whether it
    uses the ``data_dir`` fixture, ``marked_integration`` whether it carries the mark itself."""
    path = Path(path).resolve()
    if not path.is_relative_to(TESTS):
        return None  # not this suite's (pytest given another folder)
    layer = layer_of(path)
    if layer is None:
        return "a test file lives in tests/unit/, tests/integration/ or tests/docs/ (tests/suite_layout.py)"
    if layer == "unit" and (reads_real_data or marked_integration):
        why = "reads the real data (data_dir)" if reads_real_data else "is marked integration"
        return f"a test that {why} lives in tests/integration/, not tests/unit/ (tests/suite_layout.py)"
    return None


def is_integration(path: Path, reads_real_data: bool) -> bool:
    """Whether a test gets the ``integration`` mark: it lives in tests/integration/ or reads
    the real data (``data_dir``) wherever it is."""
    return reads_real_data or layer_of(path) == "integration"
