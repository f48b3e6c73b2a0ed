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


# The slowest files first, in this order (seconds on a quiet 2-core machine, roughly: README
# commands ~900, notebooks ~700, README benchmark commands ~740, trust ~250): with two
# workers and one file per worker at a time (scripts/test.sh: --dist loadfile
# --no-loadscope-reorder), the long files start at once and the short ones fill the gaps,
# instead of a long file starting last and running alone.
SLOW_FIRST = ["test_readme.py", "test_notebooks.py", "test_readme_benchmarks.py", "test_trust.py",
              "test_integration.py", "test_sweep_executors.py", "test_study_executors.py", "test_influence.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
