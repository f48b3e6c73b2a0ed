"""Shared test fixtures: seeds, the shared data folder, offline hub settings; the marks and
the order of the three folders of tests (tests/suite_layout.py says what each holds)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from suite_layout import SLOW_FIRST, is_integration, misplaced

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


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # slowest first (SLOW_FIRST); the rest stable
    for item in items:  # xdist's own hook runs after this one and reads the groups (--dist loadgroup)
        real = "data_dir" in getattr(item, "fixturenames", ())
        problem = misplaced(item.path, real, item.get_closest_marker("integration") is not None)
        if problem:  # the folders mean something: a test in the wrong one stops the run before it starts
            raise pytest.UsageError(f"{item.nodeid}: {problem}")
        if is_integration(item.path, real) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)  # marked by its folder or the fixture it uses, never forgotten
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
