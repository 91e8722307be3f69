"""The command line shared by the stand-alone scripts in ``analyses/``.

Each script reproduces one finding: ``python analyses/NAME.py --model PATH --out DIR``
loads the model, runs the section of the same name and writes its numbers
(``NAME.json``) and figures (``NAME_N.html``) to ``DIR``.

Examples:
    >>> run_section_script("look_back", ["--model", "memorydt", "--out", "out/"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dtlens.model.checkpoint import load
from dtlens.report.config import ReportConfig
from dtlens.report.section import write_section
from dtlens.report.sections import SECTION_MODULES

__all__ = ["run_section_script"]


def run_section_script(section: str, argv: Sequence[str] | None = None) -> int:
    """Parse ``--model/--out/--seed``, run one report section, write its outputs."""
    module = SECTION_MODULES[section]
    parser = argparse.ArgumentParser(
        prog=f"analyses/{section}.py", description=(module.__doc__ or "").strip()
    )
    parser.add_argument(
        "--model",
        default="memorydt",
        help="'memorydt' (shipped, default), a dtlens checkpoint directory, or an original .pt",
    )
    parser.add_argument("--out", default=f"out/{section}", help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    args = parser.parse_args(argv)
    result = module.run(load(args.model), ReportConfig(seed=args.seed))
    for path in write_section(result, args.out):
        print(path)
    print(result.this_model)
    return 0
