"""``dtlens build-memorydt``: rebuild the shipped MemoryDT end to end.

One call of :func:`dtlens.training.build.build_memorydt` with the recipe of
:mod:`dtlens.training.recipe` (the flags change its size: steps, batch, seed, ...):
collect planner demonstrations -> train
with the curriculum (checkpoints every 25 steps to 1000, then every 250) -> calibrate
(greedy, every RTG 0, 0.1, ..., 1.0; the bar also with mask-padded contexts) -> measure
the training dynamics over the checkpoints -> write the checkpoint (``config.json`` +
``model.safetensors``), ``calibration.json``, ``dynamics.json`` and ``MODEL_CARD.md``
into ``--out``. Intermediate files (demonstrations, training checkpoints) go to
``--run-dir`` (default ``runs/memorydt``, git-ignored); an interrupted build picks up
the saved demonstrations and resumes training from its last checkpoint.

``--model-type clone`` builds a behavioural clone (no RTG) with the same recipe on the
same demonstrations, into ``dtlens/pretrained/memorydt-clone`` (run dir
``runs/memorydt-clone``) unless ``--out`` / ``--run-dir`` say otherwise; its bar is
greedy success per layout (a clone has no RTG calibration).

Example:
    $ dtlens build-memorydt --out dtlens/pretrained/memorydt
    $ dtlens build-memorydt --model-type clone
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dtlens.errors import CheckpointError
from dtlens.training.recipe import MEMORYDT_RECIPE, RECIPES, Recipe, customise_recipe

__all__ = ["add_parser", "output_paths", "recipe_from_args", "resume_hint", "run"]

DT_OUT, DT_RUN_DIR = Path("dtlens/pretrained/memorydt"), Path("runs/memorydt")
#: where a clone build goes when --out / --run-dir are left at the DT's defaults
CLONE_OUT, CLONE_RUN_DIR = Path("dtlens/pretrained/memorydt-clone"), Path("runs/memorydt-clone")


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """``(out, run_dir)``: a clone build left at the DT's defaults goes to its own dirs.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> output_paths(add_parser(sub).parse_args(["--model-type", "clone"]))
        (PosixPath('dtlens/pretrained/memorydt-clone'), PosixPath('runs/memorydt-clone'))
    """
    out, run_dir = Path(getattr(args, "out", DT_OUT)), Path(args.run_dir)
    if getattr(args, "model_type", "decision_transformer") == "clone":
        out = CLONE_OUT if out == DT_OUT else out
        run_dir = CLONE_RUN_DIR if run_dir == DT_RUN_DIR else run_dir
    return out, run_dir


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args([]).out
        PosixPath('dtlens/pretrained/memorydt')
    """
    parser = subparsers.add_parser(
        "build-memorydt",
        help="rebuild the shipped MemoryDT: collect, train (curriculum), calibrate, dynamics",
        description=(
            "Collect the planner demonstrations, train a MemoryDT on them with the recipe's "
            "curriculum (checkpoints in --run-dir), measure its RTG calibration and its "
            "training dynamics, and write the checkpoint, calibration.json, dynamics.json "
            "and MODEL_CARD.md into --out. Defaults are the shipped model's recipe; an "
            "interrupted build resumes when run again."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dtlens/pretrained/memorydt"),
        help=(
            "where the model, calibration.json and MODEL_CARD.md go (with --model-type "
            f"clone and this left at its default: {CLONE_OUT})"
        ),
    )
    parser.add_argument(
        "--model-type",
        choices=("decision_transformer", "clone"),
        default="decision_transformer",
        help=(
            "'clone' trains a behavioural clone (S, A tokens, no RTG) with the same recipe "
            "on the same demonstrations; its bar is greedy success per layout"
        ),
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(RECIPES),
        default="original",
        help=(
            "model shape: 'original' (2 layers, d_model 128, gated ReLU MLP; the shipped "
            "model) or 'seed' (the seed post's 3 layers, d_model 256, GELU)"
        ),
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/memorydt"),
        help=(
            "intermediate files: demos.npz, training checkpoints (step_k/); with "
            f"--model-type clone and this left at its default: {CLONE_RUN_DIR}"
        ),
    )
    parser.add_argument(
        "--demos",
        type=Path,
        default=None,
        help="use this demonstrations file instead of collecting",
    )
    parser.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help=f"training steps (recipe: {MEMORYDT_RECIPE.train.total_steps})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"batch size (recipe: {MEMORYDT_RECIPE.train.batch_size})",
    )
    parser.add_argument("--device", default=None, help="training device (recipe: cpu)")
    parser.add_argument(
        "--seed", type=int, default=None, help="model and training seed (recipe: 0)"
    )
    parser.add_argument(
        "--calibration-episodes",
        type=int,
        default=None,
        help=f"episodes per RTG (recipe: {MEMORYDT_RECIPE.calibration_episodes})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is faster on a busy machine)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore demos and checkpoints already in --run-dir"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe of ``--architecture`` with the flags' changes (training in RUN_DIR/train).

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> args = add_parser(sub).parse_args(["--total-steps", "3000"])
        >>> recipe_from_args(args).train.total_steps
        3000
    """
    return customise_recipe(
        RECIPES[getattr(args, "architecture", "original")],
        output_paths(args)[1],
        total_steps=args.total_steps,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        calibration_episodes=args.calibration_episodes,
        model_type=getattr(args, "model_type", None),
    )


def run(args: argparse.Namespace) -> int:
    """Build (one library call); exit code 1 if the calibration misses its bar."""
    from dtlens.training.build import build_memorydt

    out, run_dir = output_paths(args)
    result = build_memorydt(
        recipe_from_args(args),
        out,
        run_dir,
        demos=args.demos,
        fresh=args.fresh,
        threads=args.threads,
        show_progress=not args.no_progress,
    )
    return 0 if result.passed else 1


def resume_hint(args: argparse.Namespace) -> str | None:
    """After Ctrl+C: the last training checkpoint, and that rerunning resumes from it.

    Example:
        >>> resume_hint(argparse.Namespace(run_dir=Path("/nonexistent")))
        'no training checkpoint was written yet; rerun the same command to start again'
    """
    from dtlens.training.run_dirs import latest_checkpoint

    try:
        last = latest_checkpoint(output_paths(args)[1] / "train")
    except CheckpointError:
        return "no training checkpoint was written yet; rerun the same command to start again"
    return f"last checkpoint {last}; rerun the same command to resume from it"
