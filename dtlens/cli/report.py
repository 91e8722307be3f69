"""``dtlens report``: reproduce the MemoryDT findings on a model as one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from dtlens.model.checkpoint import load
from dtlens.report import SECTIONS, ReportConfig, build_report

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="run the MemoryDT analyses on a model and write one self-contained HTML report",
        description=(
            "Run every analysis of the MemoryDT post (set routine, look-back exception, RTG-0 "
            "entropy, ...) on a model and write OUT/report.html (self-contained, opens "
            "offline) and OUT/report.json (all numbers)."
        ),
    )
    parser.add_argument(
        "--model",
        default="memorydt",
        help="'memorydt' (shipped, default), a dtlens checkpoint directory, or an original .pt",
    )
    parser.add_argument("--out", default="report", help="output directory (default ./report)")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"run only these sections (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--calibration-episodes",
        type=int,
        default=ReportConfig.calibration_episodes,
        help="episodes per RTG for the calibration curve (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model, build the report, print where it is."""
    model = load(args.model)
    config = ReportConfig(calibration_episodes=args.calibration_episodes, seed=args.seed)
    path = build_report(
        model, args.out, config, sections=args.sections, model_name=Path(str(args.model)).name
    )
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
