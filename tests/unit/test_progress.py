"""Progress off a terminal (``lpt_probe.progress``): a few plain log lines per loop, the
outermost loop only, nothing when disabled; and ``--help`` of the entry point without torch."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from lpt_probe import progress
from lpt_probe.progress import LogProgress, bar


@pytest.fixture
def lines(caplog, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    caplog.set_level(logging.INFO, logger="lpt_probe.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "lpt_probe.progress"]


def test_off_a_terminal_a_loop_logs_each_tenth_and_its_end(lines, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # every tenth gets its line (no time between them here)
    assert isinstance(bar(range(3), desc="x"), LogProgress)  # pytest captures stderr: not a terminal
    assert list(bar(range(20), desc="extract train")) == list(range(20))
    got = lines()
    assert got[0].startswith("extract train: 10% (2/20)") and "s left" in got[0]
    assert len(got) == 10 and got[-1].startswith("extract train: done (20/20) in")  # 10%..90%, then done


def test_lines_are_rate_limited_and_short_loops_are_silent(lines):
    for _ in bar(range(50), desc="quick"):  # far under LOG_INTERVAL seconds: nothing to say
        pass
    assert lines() == []


def test_only_the_outermost_loop_reports_and_postfix_rides_along(lines):
    outer = LogProgress(total=2, desc="sweep cells", interval=0)
    for _ in range(2):
        inner = LogProgress(total=10, desc="PL=2 none", interval=0)
        for _ in range(10):
            inner.update(1)
        inner.close()
        outer.set_postfix(dev="0.500")
        outer.update(1)
    outer.close()
    got = lines()
    assert got and all(g.startswith("sweep cells:") for g in got)  # the nested training loops stayed silent
    assert got[0] == "sweep cells: 50% (1/2), 0 s, about 0 s left [dev 0.500]"
    assert got[-1].startswith("sweep cells: done (2/2)")
    after = LogProgress(total=1, desc="next", interval=0)  # the closed loops no longer count as running
    assert not after.silent
    after.close()


def test_disabled_or_tqdm_disable_writes_nothing(lines, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    assert not isinstance(bar(range(3), enabled=False), LogProgress)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for _ in bar(range(20), desc="off"):
        pass
    assert lines() == []


def test_entry_point_help_imports_no_torch():
    """``lpt-probe --help`` lists the commands without loading torch (the commands' own
    ``--help`` builds their parsers from the config dataclasses, whose modules import torch)."""
    code = ("import sys\nfrom lpt_probe.__main__ import main\nassert main(['--help']) == 0\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "commands:" in out.stdout and "mi" in out.stdout
