"""``dtlens train``: train a decision transformer (or behavioural clone) on demonstrations.

Reads a demonstrations ``.npz`` (``dtlens collect``), splits its episodes into train and
validation sets, trains with :class:`dtlens.training.trainer.Trainer` (checkpoints in
``--run-dir/step_k/``, resumable with ``--resume``) and saves the final model as a
dtlens checkpoint (``--out``, default ``RUN_DIR/final``).

``--run-dir`` and ``--out`` are checked before any work: they must be writable, and a
run directory (or ``--out``) that holds an earlier run needs ``--resume`` (continue
it) or ``--overwrite`` (replace it). Every file is written atomically; Ctrl+C exits
with code 130 and one line naming the last checkpoint and how to resume.

Example:
    $ dtlens train --demos runs/demos.npz --run-dir runs/dt --total-steps 3000
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from dtlens.data.demonstrations import Demonstrations
from dtlens.errors import CheckpointError, ConfigError, OutputPathError
from dtlens.files import check_writable
from dtlens.model.checkpoint import CONFIG_FILE, save
from dtlens.training.config import LOGGERS, TrainConfig
from dtlens.training.evaluate import make_rollout_evaluator
from dtlens.training.pipeline import train_on_demonstrations
from dtlens.training.trainer import Trainer, TrainHistory, latest_checkpoint

__all__ = ["add_parser", "config_from_args", "resume_hint", "run"]

#: checkpoints a run writes when --checkpoint-every is not given (total_steps // this)
DEFAULT_CHECKPOINTS = 10
#: model flags -> DTConfig fields (defaults: the MemoryDT architecture)
_MODEL_FLAGS = {
    "n_layers": (int, 3),
    "d_model": (int, 256),
    "n_heads": (int, 8),
    "d_mlp": (int, 256),
    "n_ctx": (int, 26),
    "act_fn": (str, "gelu"),
    "max_timestep": (int, 50),
}
#: training flags -> TrainConfig fields (None: TrainConfig's default)
_TRAIN_FLAGS = {
    "batch_size": int,
    "lr": float,
    "lr_end": float,
    "weight_decay": float,
    "warmup_steps": int,
    "total_steps": int,
    "lr_cycles": int,
    "grad_clip": float,
    "val_fraction": float,
    "window_end_fraction": float,
    "window_weighting": str,
    "eval_every": int,
    "val_batches": int,
    "online_eval_every": int,
    "checkpoint_every": int,
    "seed": int,
    "device": str,
    "log_every": int,
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--demos", "d.npz", "--run-dir", "r"]).run_dir
        PosixPath('r')
    """
    parser = subparsers.add_parser(
        "train",
        help="train a decision transformer or behavioural clone on demonstrations",
        description=(
            "Train on a demonstrations .npz (from `dtlens collect`): AdamW with warm-up and "
            "cosine decay, validation loss on held-out episodes, resumable checkpoints in "
            "--run-dir. Model flags default to the MemoryDT architecture."
        ),
    )
    parser.add_argument("--demos", required=True, type=Path, help="demonstrations .npz file")
    parser.add_argument(
        "--run-dir",
        required=True,
        type=Path,
        help="where checkpoints (step_k/) and metrics.jsonl go",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="final model checkpoint directory (default RUN_DIR/final)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a TrainConfig JSON file; flags given explicitly override it",
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
        "--model-type",
        choices=("decision_transformer", "clone"),
        default=None,
        help="decision transformer (default) or clone",
    )
    for name, (kind, default) in _MODEL_FLAGS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"model {name} (default {default})",
        )
    for name, kind in _TRAIN_FLAGS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"TrainConfig.{name} (default {_default(name)})"
            + (
                f"; dtlens train's default: total_steps // {DEFAULT_CHECKPOINTS}"
                if name == "checkpoint_every"
                else ""
            ),
        )
    parser.add_argument(
        "--logger",
        choices=[x for x in LOGGERS if x],
        default=None,
        help="optional tracker (needs the package installed)",
    )
    parser.add_argument(
        "--eval-rtgs",
        type=float,
        nargs="+",
        default=[0.0, 0.9],
        help="RTGs of the online rollout evaluation (with --online-eval-every)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags (over ``--config``, over the defaults) describe.

    Example:
        >>> ns = argparse.Namespace(config=None, run_dir=Path("r"), model_type=None,
        ...     logger=None, **{k: None for k in [*_MODEL_FLAGS, *_TRAIN_FLAGS]})
        >>> config_from_args(ns).model.d_model
        256
    """
    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"--config {args.config}: cannot read a JSON TrainConfig: {err}"
            ) from err
    model = dict(data.get("model", {}))
    for name, (_, default) in _MODEL_FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            model[name] = value
        else:
            model.setdefault(name, default)
    if args.model_type is not None:
        model["model_type"] = args.model_type
    data["model"] = model
    for name in _TRAIN_FLAGS:
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    if args.logger is not None:
        data["logger"] = args.logger
    data["run_dir"] = str(args.run_dir)
    if data.get("checkpoint_every") is None:
        # checkpoint by default, so an interrupted run can always resume
        total = data.get("total_steps", _default("total_steps"))
        data["checkpoint_every"] = max(1, int(total) // DEFAULT_CHECKPOINTS)
    return TrainConfig.from_dict(data)


def _existing_run(run_dir: Path) -> list[Path]:
    """What an earlier run left in ``run_dir``: step_k/, final/ and metrics.jsonl."""
    if not run_dir.is_dir():
        return []
    names = [p for p in run_dir.iterdir() if p.name.startswith("step_") or p.name == "final"]
    metrics = run_dir / "metrics.jsonl"
    return sorted(names) + ([metrics] if metrics.exists() else [])


def _clear_run(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def run(args: argparse.Namespace) -> int:
    """Load the demonstrations, train, save the final model, print the last losses."""
    config = config_from_args(args)
    earlier = _existing_run(Path(args.run_dir))
    if earlier and not (args.resume or args.overwrite):
        raise OutputPathError(
            f"{args.run_dir} already holds a run ({', '.join(p.name for p in earlier[:4])}"
            f"{', ...' if len(earlier) > 4 else ''}); pass --resume to continue it or "
            "--overwrite to replace it, or choose another --run-dir"
        )
    if args.resume and args.overwrite:
        raise ConfigError(
            "--resume continues the run in --run-dir, --overwrite replaces it: pick one"
        )
    check_writable(args.run_dir, "dir", "--run-dir")
    if args.out is not None:
        check_writable(args.out, "dir", "--out")
        if (Path(args.out) / CONFIG_FILE).exists() and not (args.resume or args.overwrite):
            raise OutputPathError(
                f"--out {args.out} already holds a model ({CONFIG_FILE}); pass --overwrite "
                "to replace it (or --resume to continue the run that wrote it), or choose "
                "another --out"
            )
    demos = Demonstrations.load(args.demos)
    if args.overwrite:
        _clear_run(earlier)
    evaluator = None
    if config.online_eval_every is not None:
        evaluator = make_rollout_evaluator(
            demos.header.get("env_id", "MiniGrid-MemoryS7FixedStart-v0"),
            rtgs=args.eval_rtgs,
            max_steps=int(demos.header.get("max_steps", 50)),
        )
    start = time.perf_counter()
    trainer, history = train_on_demonstrations(
        config,
        demos,
        resume=args.resume,
        evaluator=evaluator,
        show_progress=not args.no_progress,
        data_file=args.demos,
    )
    out = args.out or Path(config.run_dir) / "final"
    save(
        trainer.model,
        out,
        metadata={
            **trainer.metadata,
            "training": _training_summary(trainer, history, time.perf_counter() - start),
        },
    )
    last_val = history.val[-1]["val/loss"] if history.val else float("nan")
    print(
        f"trained {trainer.step} steps: train loss {history.train[-1]['train/loss']:.4f}, "
        f"val loss {last_val:.4f}; model saved to {out}"
    )
    return 0


def _training_summary(trainer: Trainer, history: TrainHistory, seconds: float) -> dict[str, Any]:
    return {
        "config": trainer.config.to_dict(),
        "step": trainer.step,
        "train_loss": history.train[-1]["train/loss"] if history.train else None,
        "val_loss": history.val[-1]["val/loss"] if history.val else None,
        "wall_seconds_this_session": round(seconds, 1),
    }


def _default(name: str) -> Any:
    return TrainConfig.__dataclass_fields__[name].default


def resume_hint(args: argparse.Namespace) -> str | None:
    """After Ctrl+C: where the last checkpoint is and the command that resumes from it.

    Example:
        >>> resume_hint(argparse.Namespace(run_dir=Path("/nonexistent")))
        'no checkpoint was written yet'
    """
    try:
        last = latest_checkpoint(args.run_dir)
    except CheckpointError:
        return "no checkpoint was written yet"
    return f"last checkpoint {last}; resume with the same command plus --resume"
