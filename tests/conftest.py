"""Shared test fixtures: seeds, the shared data folder, offline hub settings."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # scripts/test.sh runs two workers on two cores: one thread each
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # plotting-only environments
        pass
SHARED_DATA = Path(os.environ.get("LPT_PROBE_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # plotting-only environments
        pass
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        msg = f"real task data not found at {SHARED_DATA} (set LPT_PROBE_DATA_DIR)"
        if os.environ.get("CI"):  # CI always has ../shared beside the clone: never skip there
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


# The slowest first (seconds on a quiet 2-core machine, roughly: README commands ~1500 in
# all, README benchmark commands ~740, notebooks ~700, trust ~250). scripts/test.sh runs
# two workers with --dist loadgroup --no-loadscope-reorder: a group runs on one worker, in
# this order. Every test is grouped by its file, so a file's fixtures stay in one process,
# except the README's commands: each chain of them (tests/docs/test_readme.py: readme_chains)
# is a group of its own, so they spread over both workers instead of one long test holding
# one worker. The long groups start first and the short files fill the gaps.
SLOW_FIRST = ["test_readme.py", "test_notebooks.py", "test_readme_benchmarks.py", "test_trust.py",
              "test_integration.py", "test_sweep_executors.py", "test_study_executors.py", "test_influence.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    for item in items:  # xdist's own hook runs after this one and reads the groups (--dist loadgroup)
        if "data_dir" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)  # real data: marked by the fixture it uses, never forgotten
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
