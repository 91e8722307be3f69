"""``dtlens preferences``: play a model greedily in each Memory layout and print its preferences."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtlens.analysis.edits.routine import GreedyRun

__all__ = ["add_parser", "format_run", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "preferences",
        help="play a model greedily in each Memory layout and print its action preferences",
        description=(
            "Load a model, play it greedily (argmax action each step) in the four layouts of "
            "MiniGrid-MemoryS7FixedStart-v0 and print, for every step, the action it took and "
            "its full action distribution. A quick look at the 'set routine'."
        ),
    )
    parser.add_argument(
        "--model",
        default="memorydt",
        help="'memorydt' (shipped, default), a dtlens checkpoint directory, or an original .pt",
    )
    parser.add_argument(
        "--rtg",
        type=float,
        action="append",
        help="return-to-go to condition on; repeat for several (default: 0.9 and 0.0)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=50, help="episode length limit (default 50)"
    )
    parser.add_argument("--seed", type=int, default=0, help="env seed (default 0)")
    return parser


def format_run(run: GreedyRun) -> str:
    """A fixed-width table of one greedy run: step, action taken, probabilities."""
    from dtlens.env import ACTION_NAMES

    header = f"{'step':>4}  {'action':<8}" + "".join(f"{name:>8}" for name in ACTION_NAMES)
    lines = [
        f"{run.scenario.name}  RTG={run.rtg:.2f}  reward={run.reward:.3f}  "
        f"({'reached a target' if run.terminated else 'truncated'})",
        header,
    ]
    for step, (action, probs) in enumerate(zip(run.action_names, run.probs, strict=True)):
        cells = "".join(f"{float(p):8.3f}" for p in probs)
        lines.append(f"{step + 1:>4}  {action:<8}{cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load the model, play every layout at every RTG, print the tables."""
    from dtlens.analysis.edits.routine import play_greedy
    from dtlens.env import SCENARIOS
    from dtlens.model.checkpoint import load

    model = load(args.model)
    for rtg in args.rtg or [0.9, 0.0]:
        for scenario in SCENARIOS:
            result = play_greedy(model, scenario, rtg=rtg, max_steps=args.max_steps, seed=args.seed)
            print(format_run(result), end="\n\n")
    return 0
