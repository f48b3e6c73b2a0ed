"""The public API: every name ``lpt_probe`` promises imports (lazily: ``import lpt_probe``
and the plotting code never import torch), and the ``lpt-probe`` entry point dispatches."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lpt_probe
from lpt_probe.__main__ import COMMANDS, main

ISSUE_23 = ["train", "run_mi", "run_influence", "run_sweep", "Predictor", "MIConfig", "InfluenceConfig",
            "SweepConfig", "TrainConfig", "LatePromptConfig", "load_custom_task"]


def test_every_public_name_imports():
    assert set(ISSUE_23) <= set(lpt_probe.__all__)
    for name in lpt_probe.__all__:
        assert getattr(lpt_probe, name) is not None, name
    assert lpt_probe.MIConfig().train.task and callable(lpt_probe.run_mi)
    with pytest.raises(AttributeError, match="public API"):
        lpt_probe.no_such_thing  # noqa: B018


def test_import_is_light():
    code = ("import sys, lpt_probe; from lpt_probe import __version__; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == lpt_probe.__version__


def test_version_matches_the_package_metadata():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert meta["project"]["version"] == lpt_probe.__version__
    assert meta["project"]["scripts"]["lpt-probe"] == "lpt_probe.__main__:main"


def test_lpt_probe_command_dispatches(capsys):
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(c in listing for c in COMMANDS)
    assert main(["--version"]) == 0 and lpt_probe.__version__ in capsys.readouterr().out
    assert main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["mi", "--help"])
    assert exc.value.code == 0 and "--prompt-layers" in capsys.readouterr().out
    for name in COMMANDS:  # every command module has main(argv)
        __import__(f"lpt_probe.commands.{name}")
        assert callable(sys.modules[f"lpt_probe.commands.{name}"].main)


def test_train_is_the_library_function_whatever_was_imported_first():
    """``from lpt_probe import train`` gives ``lpt_probe.runs.run.train`` (the command is
    ``lpt_probe.commands.train``), whatever ran before, the ``train`` command included;
    ``import lpt_probe.train`` (the ``python -m`` shim) is refused, naming both."""
    for first in ("import lpt_probe.commands.train", "from lpt_probe import run_mi", "pass",
                  "from lpt_probe.__main__ import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass"):
        code = (f"{first}\nfrom lpt_probe import train\nfrom lpt_probe.runs.run import train as f\n"
                "import lpt_probe\nassert train is f and lpt_probe.train is f, train\n"
                "import inspect\nassert inspect.signature(f).parameters")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, (first, out.stderr)
    out = subprocess.run([sys.executable, "-c", "import lpt_probe.train"], capture_output=True, text=True)
    assert out.returncode == 1 and "the train command's module is lpt_probe.commands.train" in out.stderr
