"""``dtlens report``: reproduce the MemoryDT findings on a model as one HTML page.

``--out`` is checked before any section runs. The report's two files
(``report.html``, ``report.json``) are written together and atomically when every
section is done; an earlier report in ``--out`` is replaced, and the command says so
before it starts. Ctrl+C exits with code 130 and one line saying nothing was written.

Every field of :class:`~dtlens.report.config.ReportConfig` is a flag (derived from the
dataclass, with its docs: :mod:`dtlens.cli.flags`); ``--config FILE.json`` reads a
ReportConfig that explicitly given flags override.

Example:
    $ dtlens report --model memorydt --out report/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dtlens.cli.flags import add_config_flags, config_from_args
from dtlens.files import check_writable
from dtlens.report import REPORT_FILES, SECTIONS, ReportConfig

__all__ = ["add_parser", "resume_hint", "run"]


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
    parser.set_defaults(_flags=add_config_flags(parser, ReportConfig))
    return parser


def run(args: argparse.Namespace) -> int:
    """Check ``--out``, load the model, build the report, print where it is."""
    from dtlens.model.checkpoint import load
    from dtlens.report import build_report

    config = config_from_args(args, args._flags)
    out = check_writable(args.out, "dir", "--out")
    earlier = [name for name in REPORT_FILES if (out / name).exists()]
    if earlier:
        print(f"{out} holds an earlier report: {' and '.join(earlier)} will be replaced")
    model = load(args.model)
    path = build_report(
        model, args.out, config, sections=args.sections, model_name=Path(str(args.model)).name
    )
    args.report_written = True
    replaced = " (replacing the earlier report)" if earlier else ""
    print(f"wrote {path} and {path.with_suffix('.json')}{replaced}")
    return 0


def resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C: the report's files are written only when every section is done.

    Example:
        >>> resume_hint(argparse.Namespace(out="/nonexistent/report"))
        'no file was written (the report is written when every section is done; /nonexistent/report is unchanged); rerun the same command'
    """  # noqa: E501
    if getattr(args, "report_written", False):
        return f"after the report was written to {args.out} (complete)"
    return (
        "no file was written (the report is written when every section is done; "
        f"{args.out} is unchanged); rerun the same command"
    )
