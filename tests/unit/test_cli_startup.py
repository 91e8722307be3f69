"""``dtlens --help``, every ``dtlens <command> --help`` and argument errors import nothing
heavy: no torch, TransformerLens, plotly, dash (nor numpy, gymnasium).

Checked on ``sys.modules`` in a fresh interpreter, not on the clock (the timings are
``benchmarks/bench_cli_startup.py``'s). The light modules that spell out a constant
of a heavy one (the Memory env id, the report's section names) agree with it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dtlens.cli import SUBCOMMANDS

HEAVY = ("torch", "transformer_lens", "plotly", "dash", "numpy", "gymnasium", "minigrid", "tqdm")

#: runs main(argv) in a fresh interpreter; prints the exit code and the heavy modules loaded
SCRIPT = """
import contextlib, io, json, sys
from dtlens.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        code = main({argv!r})
    except SystemExit as exit:
        code = exit.code
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules],
                  "output": out.getvalue()}}))
"""


def run_cli(argv: list[str]) -> dict:
    code = SCRIPT.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "argv",
    [["--help"], *([name, "--help"] for name in SUBCOMMANDS)],
    ids=lambda argv: " ".join(argv),
)
def test_help_imports_nothing_heavy(argv):
    result = run_cli(argv)
    assert result["code"] == 0 and "usage: dtlens" in result["output"]
    assert result["heavy"] == [], f"dtlens {' '.join(argv)} imported {result['heavy']}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["train"],  # --demos and --run-dir missing
        ["train", "--demos", "d.npz", "--run-dir", "r", "--total-steps", "x"],
        ["train-ppo", "--out", "o", "--gamma", "high"],
        ["report", "--sections", "nope"],
        ["collect", "--out", "d.npz"],
    ],
    ids=lambda argv: " ".join(argv) or "no command",
)
def test_argument_errors_import_nothing_heavy(argv):
    result = run_cli(argv)
    assert result["code"] == 2 and "error:" in result["output"]
    assert result["heavy"] == [], f"dtlens {' '.join(argv)} imported {result['heavy']}"


def test_import_time_report_has_no_heavy_module():
    """The same through ``python -X importtime``: what `dtlens train --help` imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dtlens.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "dtlens.cli.train" in imported and "dtlens.training.config" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


def test_light_copies_of_heavy_constants_agree():
    from dtlens.cli import calibrate, collect
    from dtlens.env import MEMORY_ENV_ID
    from dtlens.report import SECTIONS
    from dtlens.report.sections import SECTION_MODULES
    from dtlens.training import ppo_config
    from dtlens.training.recipe import Recipe

    assert ppo_config.MEMORY_ENV_ID == MEMORY_ENV_ID == Recipe().env_id
    assert calibrate.MEMORY_ENV_ID == collect.MEMORY_ENV_ID == MEMORY_ENV_ID
    assert tuple(SECTION_MODULES) == SECTIONS
