"""``dtlens train``: train a decision transformer (or behavioural clone) on demonstrations.

Reads a demonstrations ``.npz`` (``dtlens collect``), splits its episodes into train and
validation sets, trains with :class:`dtlens.training.trainer.Trainer` (checkpoints in
``--run-dir/step_k/``, resumable with ``--resume``) and saves the final model as a
dtlens checkpoint (``--out``, default ``RUN_DIR/final``): one call of
:func:`dtlens.training.pipeline.train_to_checkpoint`.

Every field of :class:`~dtlens.training.config.TrainConfig` and of its model's
:class:`~dtlens.model.config.DTConfig` is a flag (derived from the dataclasses, with
their docs: :mod:`dtlens.cli.flags`); ``--config FILE.json`` reads a TrainConfig that
explicitly given flags override. Model flags default to the MemoryDT architecture.

``--run-dir`` and ``--out`` are checked before any work: they must be writable, and a
run directory (or ``--out``) that holds an earlier run needs ``--resume`` (continue
it) or ``--overwrite`` (replace it). Every file is written atomically; Ctrl+C exits
with code 130 and one line naming the last checkpoint and how to resume.

Example:
    $ dtlens train --demos runs/demos.npz --run-dir runs/dt --total-steps 3000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dtlens.cli.flags import (
    ConfigFlags,
    add_config_flags,
    config_from_args,
    given_values,
    read_config_file,
)
from dtlens.errors import CheckpointError
from dtlens.training.config import TrainConfig

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "MODEL_DEFAULTS",
    "add_parser",
    "build_config",
    "resume_hint",
    "run",
]

#: checkpoints a run writes when --checkpoint-every is not given (total_steps // this)
DEFAULT_CHECKPOINTS = 10
#: the model flags' defaults: the MemoryDT architecture (DTConfig has no defaults for these)
MODEL_DEFAULTS: dict[str, Any] = {
    "n_layers": 3,
    "d_model": 256,
    "n_heads": 8,
    "d_mlp": 256,
    "n_ctx": 26,
    "act_fn": "gelu",
    "max_timestep": 50,
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--demos", "d.npz", "--run-dir", "r"]).run_dir
        'r'
    """
    parser = subparsers.add_parser(
        "train",
        help="train a decision transformer or behavioural clone on demonstrations",
        description=(
            "Train on a demonstrations .npz (from `dtlens collect`): AdamW with warm-up and "
            "cosine decay, validation loss on held-out episodes, resumable checkpoints in "
            "--run-dir. Every TrainConfig and DTConfig field is a flag; model flags default "
            "to the MemoryDT architecture."
        ),
    )
    parser.add_argument(
        "--demos",
        required=True,
        help="demonstrations: an .npz file, or minari:DATASET_ID for a local Minari dataset "
        "(see docs/data.md)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="final model checkpoint directory (default RUN_DIR/final)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --run-dir"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --run-dir (its checkpoints, metrics and final model)",
    )
    parser.add_argument(
        "--eval-rtgs",
        type=float,
        nargs="+",
        default=[0.0, 0.9],
        help="RTGs of the online rollout evaluation (with --online-eval-every)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    flags = add_config_flags(
        parser,
        TrainConfig,
        defaults={"model": MODEL_DEFAULTS},
        shown={
            "checkpoint_every": f"total_steps // {DEFAULT_CHECKPOINTS} in dtlens train, so "
            "that an interrupted run can resume",
            "run_dir": "required",
        },
        options={"run_dir": {"required": True, "metavar": "DIR"}},
    )
    parser.set_defaults(_flags=flags)
    return parser


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags (over ``--config``, over the defaults) describe.

    ``checkpoint_every`` defaults to ``total_steps // DEFAULT_CHECKPOINTS`` when neither
    the flags nor the file set it, so a run can always resume.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> args = add_parser(parser.add_subparsers()).parse_args(
        ...     ["--demos", "d.npz", "--run-dir", "r", "--total-steps", "500"])
        >>> cfg = build_config(args)
        >>> cfg.model.d_model, cfg.checkpoint_every, cfg.run_dir
        (256, 50, 'r')
    """
    flags: ConfigFlags = args._flags
    fixed: dict[str, Any] = {}
    explicit = given_values(args, flags)
    given = {**read_config_file(args, flags), **explicit}
    if given.get("checkpoint_every") is None and "checkpoint_every" not in explicit:
        total = given.get("total_steps", TrainConfig.__dataclass_fields__["total_steps"].default)
        fixed["checkpoint_every"] = max(1, int(total) // DEFAULT_CHECKPOINTS)
    return config_from_args(args, flags, **fixed)


def run(args: argparse.Namespace) -> int:
    """Build the config, train and save (one library call), print the last losses."""
    from dtlens.training.pipeline import train_to_checkpoint

    result = train_to_checkpoint(
        build_config(args),
        args.demos,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_rtgs=args.eval_rtgs,
        show_progress=not args.no_progress,
    )
    print(result.summary())
    return 0


def resume_hint(args: argparse.Namespace) -> str | None:
    """After Ctrl+C: where the last checkpoint is and the command that resumes from it.

    Example:
        >>> resume_hint(argparse.Namespace(run_dir="/nonexistent"))
        'no checkpoint was written yet'
    """
    from dtlens.training.run_dirs import latest_checkpoint

    try:
        last = latest_checkpoint(args.run_dir)
    except CheckpointError:
        return "no checkpoint was written yet"
    return f"last checkpoint {last}; resume with the same command plus --resume"
