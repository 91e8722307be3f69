"""``dtlens calibrate``: the RTG calibration curve of a model, as a table, JSON and a figure.

Plays ``--episodes-per-rtg`` episodes at each RTG (batched, see
:func:`dtlens.training.calibration.calibration_curve`) and prints success rate and mean
reward per RTG with 95% intervals; ``--out`` writes the per-episode results as JSON,
``--html`` the calibration figure (``dtlens.plotting.calibration.plot_calibration``).
Both paths are checked before any episode is played: writable, and not an existing
file unless ``--overwrite`` is given. Both files are written atomically.

Example:
    $ dtlens calibrate --model memorydt --episodes-per-rtg 100 --out calibration.json
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dtlens.errors import ConfigError, OutputPathError
from dtlens.files import check_writable, write_text_atomic
from dtlens.training.ppo_config import MEMORY_ENV_ID

if TYPE_CHECKING:
    from dtlens.training.calibration import CalibrationResult

__all__ = ["add_parser", "run", "write_figure"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--rtgs", "0", "0.9"]).rtgs
        [0.0, 0.9]
    """
    parser = subparsers.add_parser(
        "calibrate",
        help="RTG calibration curve of a model: reward and success rate per RTG asked",
        description=(
            "Play a model at several RTGs in batched rollouts and report, per RTG, the "
            "success rate (95%% Wilson interval) and mean reward (95%% normal interval)."
        ),
    )
    parser.add_argument(
        "--model",
        default="memorydt",
        help="'memorydt' (shipped, default), a dtlens checkpoint dir or a .pt",
    )
    parser.add_argument(
        "--rtgs",
        type=float,
        nargs="+",
        default=None,
        help="RTGs to ask for (default 0, 0.1, ..., 1.0)",
    )
    parser.add_argument("--episodes-per-rtg", type=int, default=100, help="episodes per RTG")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 = greedy actions (default); > 0 samples softmax(logits / T)",
    )
    parser.add_argument("--env", default=MEMORY_ENV_ID, help="MiniGrid env id")
    parser.add_argument("--max-steps", type=int, default=50, help="episode length limit")
    parser.add_argument("--seed", type=int, default=0, help="episode j of every RTG: seed + j")
    parser.add_argument(
        "--layouts",
        choices=("balanced", "random"),
        default="balanced",
        help="Memory only: cycle the 4 layouts (default) or draw from the seed",
    )
    parser.add_argument(
        "--padding",
        choices=("none", "masked", "original"),
        default=None,
        help=(
            "how short contexts are fed (see dtlens.training.evaluate); default the model's "
            "own: none for dtlens models, original for original checkpoints"
        ),
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--html", type=Path, default=None, help="write the figure as HTML")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing --out / --html files"
    )
    return parser


def write_figure(result: CalibrationResult, path: Path) -> bool:
    """Write ``plot_calibration``'s figure to ``path`` if dtlens.plotting has it.

    Returns False (and writes nothing) when the plotting module is not installed.

    Example:
        >>> write_figure(result, Path("calibration.html"))  # doctest: +SKIP
        True
    """
    try:
        plotting = importlib.import_module("dtlens.plotting.calibration")
    except ImportError:
        return False
    fig = plotting.plot_calibration(result.rtgs, result.rewards, result.success)
    write_text_atomic(path, fig.to_html(include_plotlyjs=True))
    return True


def run(args: argparse.Namespace) -> int:
    """Load, calibrate, print the table; write JSON / HTML when asked."""
    import numpy as np

    from dtlens.model.checkpoint import load
    from dtlens.training.calibration import calibration_curve

    if args.layouts == "balanced" and args.env != MEMORY_ENV_ID:
        raise ConfigError(f"--layouts balanced needs --env {MEMORY_ENV_ID}; use --layouts random")
    for flag, path in (("--out", args.out), ("--html", args.html)):
        if path is None:
            continue
        check_writable(path, "file", flag)
        if path.exists() and not args.overwrite:
            raise OutputPathError(
                f"{flag} {path} exists (an earlier result); pass --overwrite to replace it "
                "or choose another path"
            )
    model = load(args.model)
    rtgs = np.linspace(0.0, 1.0, 11) if args.rtgs is None else np.asarray(args.rtgs)
    start = time.perf_counter()
    result = calibration_curve(
        model,
        rtgs=rtgs,
        episodes_per_rtg=args.episodes_per_rtg,
        env_id=args.env,
        temperature=args.temperature,
        max_steps=args.max_steps,
        seed=args.seed,
        layouts=None if args.layouts == "random" else "balanced",
        padding=args.padding,
        show_progress=True,
    )
    seconds = time.perf_counter() - start
    print(result.table())
    print(f"{result.n_episodes} episodes per RTG, {seconds:.1f} s")
    if args.out is not None:
        write_text_atomic(args.out, result.to_json(indent=1) + "\n")
        print(f"results written to {args.out}")
    if args.html is not None:
        if write_figure(result, args.html):
            print(f"figure written to {args.html}")
        else:
            print("dtlens.plotting.calibration is not available: no figure written")
    return 0
