"""The README's benchmark commands run (with small settings): the other half of tests/test_readme.py,
in its own file so that scripts/test.sh runs it on the other worker."""

from __future__ import annotations

import pytest

from test_readme import readme_commands, is_benchmark, run_readme_commands


def test_readme_shows_benchmark_commands():
    assert sum(is_benchmark(c) for c in readme_commands()) >= 4


@pytest.mark.integration
def test_every_readme_benchmark_command_runs(data_dir, tmp_path):
    ran = run_readme_commands(data_dir, tmp_path, benchmarks=True)
    assert ran == [c for c in readme_commands() if is_benchmark(c)]
