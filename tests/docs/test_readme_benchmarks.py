"""The README's benchmark commands run (with small settings): the other half of tests/docs/test_readme.py,
as chains of their own (``readme_chains``) that scripts/test.sh spreads over the test workers."""

from __future__ import annotations

import pytest

from test_readme import chain_params, is_benchmark, readme_commands, run_readme_commands


def test_readme_shows_benchmark_commands():
    assert sum(is_benchmark(c) for c in readme_commands()) >= 4


@pytest.mark.integration
@pytest.mark.parametrize("cmds, blocks", chain_params(benchmarks=True))
def test_every_readme_benchmark_command_runs(cmds, blocks, data_dir, tmp_path):
    assert run_readme_commands(data_dir, tmp_path, cmds, blocks) == cmds
