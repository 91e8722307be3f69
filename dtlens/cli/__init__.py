"""The ``dtlens`` command: ``dtlens <subcommand> [options]``.

Each subcommand is a small module in this package with ``add_parser(subparsers)``
(argv -> options, with help for every option) and ``run(args)`` (options -> one
library call). The command never computes anything itself. Where a subcommand runs on
a config dataclass (``train``: TrainConfig and DTConfig, ``train-ppo``: PPOConfig,
``report``: ReportConfig), its flags are derived from the dataclass fields and their
docs (:mod:`dtlens.cli.flags`), and ``--config FILE.json`` reads one.

The subcommand modules are imported plainly here, and import only light modules at
their top (argparse, the config classes, which need no torch); torch, TransformerLens,
plotly and the analyses are imported inside ``run``. So ``dtlens --help``, every
``dtlens <subcommand> --help`` and argument errors answer without loading them
(``benchmarks/bench_cli_startup.py`` measures it).

Ctrl+C ends any command with one line on stderr and exit code 130. Commands with a
``resume_hint`` add what was left and how to go on: ``train`` and ``build-memorydt``
name the last checkpoint and how to resume, ``train-ppo`` the last saved agent and how
to continue from it, ``collect`` and ``report`` that nothing was written (their files
are written whole, at the end) or that the file is complete.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from dtlens.cli import (
    app,
    build_memorydt,
    calibrate,
    collect,
    dynamics,
    preferences,
    report,
    train,
    train_ppo,
)
from dtlens.errors import DTLensError

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: subcommand -> its module, in help order
SUBCOMMANDS: dict[str, ModuleType] = {
    "report": report,
    "app": app,
    "preferences": preferences,
    "collect": collect,
    "train": train,
    "calibrate": calibrate,
    "train-ppo": train_ppo,
    "build-memorydt": build_memorydt,
    "dynamics": dynamics,
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per module in ``SUBCOMMANDS``)."""
    parser = argparse.ArgumentParser(
        prog="dtlens",
        description="Mechanistic interpretability of decision transformers on gridworlds.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run, _resume=getattr(module, "resume_hint", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dtlens`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DTLensError as err:
        print(f"dtlens {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = args._resume(args) if args._resume is not None else None
        print(f"dtlens {args.command}: interrupted{f'; {hint}' if hint else ''}", file=sys.stderr)
        return 130
