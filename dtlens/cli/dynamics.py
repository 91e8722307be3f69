"""``dtlens dynamics``: progress measures over a training run's checkpoints.

Loads every ``step_k/`` checkpoint of ``--run-dir``, takes the progress measures of
:mod:`dtlens.training.progress` (decision-square loss, greedy success per layout,
layer-0 attention to the instruction, the instruction-swap logit difference, probes)
and writes ``dynamics.json`` and ``dynamics.html`` (the figure) into ``--out``.

Example:
    $ dtlens dynamics --run-dir runs/memorydt/train --out runs/memorydt/dynamics
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dtlens.errors import CheckpointError, ConfigError
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
    """Measure the checkpoints, write the JSON and the figure, print the story."""
    import torch

    from dtlens.data.demonstrations import Demonstrations
    from dtlens.plotting.dynamics import plot_dynamics
    from dtlens.training.config import TrainConfig
    from dtlens.training.dynamics import DYNAMICS_FILE, checkpoint_steps, training_dynamics
    from dtlens.training.pipeline import make_samplers
    from dtlens.training.progress import DecisionData
    from dtlens.training.trainer import STATE_JSON

    if args.out is None:
        args.out = args.run_dir / "dynamics"
    check_writable(args.out, "dir", "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    checkpoints = checkpoint_steps(args.run_dir)
    state = json.loads((checkpoints[-1][1] / STATE_JSON).read_text())
    demos_path = args.demos or _data_file(state)
    if demos_path is None:
        raise ConfigError(
            f"the checkpoints in {args.run_dir} do not name their demonstrations; pass --demos"
        )
    config = TrainConfig.from_dict(state["train_config"])
    demos = Demonstrations.load(demos_path)
    _, val = make_samplers(demos, config)
    if val is None:
        raise ConfigError("the run has no validation split (val_fraction=0): nothing held out")
    data = DecisionData.from_demonstrations(demos, val)
    dynamics = training_dynamics(
        args.run_dir, data, probe=not args.no_probe, show_progress=not args.no_progress
    )
    path = dynamics.save(Path(args.out) / DYNAMICS_FILE)
    figure = plot_dynamics(dynamics)
    write_text_atomic(Path(args.out) / "dynamics.html", figure.to_html(include_plotlyjs=True))
    story = dynamics.story()
    print(f"{len(dynamics.steps)} checkpoints measured; wrote {path} and dynamics.html")
    print(f"plateau broke (success@0.9 >= 0.95 from then on) at step {story['plateau_broke_at']}")
    print("left the plateau: " + ", ".join(f"{k} at {v}" for k, v in story["moved_at"].items()))
    return 0


def _data_file(state: dict) -> Path | None:
    try:
        name = state["metadata"]["data"]["file"]
    except (KeyError, TypeError):
        return None
    path = Path(name)
    if not path.exists():
        raise CheckpointError(
            f"the run's demonstrations {name!r} are not there any more; pass --demos"
        )
    return path
