"""``dtlens dynamics``: progress measures over a training run's checkpoints.

Loads every ``step_k/`` checkpoint of ``--run-dir``, takes the progress measures of
:mod:`dtlens.training.progress` (decision-square loss, greedy success per layout,
layer-0 attention to the instruction, the instruction-swap logit difference, probes)
and writes ``dynamics.json`` and ``dynamics.html`` (the figure) into ``--out``: one
call of :func:`dtlens.training.dynamics.run_dynamics`, then the files.

Example:
    $ dtlens dynamics --run-dir runs/memorydt/train --out runs/memorydt/dynamics
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dtlens.files import check_writable, write_text_atomic

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--run-dir", "r"]).run_dir
        PosixPath('r')
    """
    parser = subparsers.add_parser(
        "dynamics",
        help="progress measures over a training run's checkpoints (dynamics.json + figure)",
        description=(
            "Measure every step_k checkpoint of a training run: train/val loss, loss on the "
            "decision-square action, greedy success per layout at RTG 0.9 and at RTG 0, "
            "layer-0 attention from the decision state to the instruction state, the "
            "instruction-swap logit difference and instruction probes per layer."
        ),
    )
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="training run directory (step_k/ inside)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where dynamics.json/.html go (RUN_DIR/dynamics)"
    )
    parser.add_argument(
        "--demos",
        type=Path,
        default=None,
        help="the run's demonstrations (default: the file its checkpoints name)",
    )
    parser.add_argument("--no-probe", action="store_true", help="skip the instruction probes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def run(args: argparse.Namespace) -> int:
    """Measure the checkpoints (one library call), write the JSON and the figure, print
    the story."""
    import torch

    from dtlens.plotting.dynamics import plot_dynamics
    from dtlens.training.dynamics import DYNAMICS_FILE, run_dynamics

    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "dynamics"
    check_writable(out, "dir", "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dynamics = run_dynamics(
        args.run_dir, args.demos, probe=not args.no_probe, show_progress=not args.no_progress
    )
    path = dynamics.save(out / DYNAMICS_FILE)
    figure = plot_dynamics(dynamics)
    write_text_atomic(out / "dynamics.html", figure.to_html(include_plotlyjs=True))
    story = dynamics.story()
    print(f"{len(dynamics.steps)} checkpoints measured; wrote {path} and dynamics.html")
    print(f"plateau broke (success@0.9 >= 0.95 from then on) at step {story['plateau_broke_at']}")
    print("left the plateau: " + ", ".join(f"{k} at {v}" for k, v in story["moved_at"].items()))
    return 0
