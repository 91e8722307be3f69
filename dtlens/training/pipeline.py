"""The offline training pipeline: demonstrations -> window samplers -> a trained model.

``dtlens train`` and ``dtlens build-memorydt`` both call :func:`train_on_demonstrations`:
split the episodes into training and validation sets (:func:`make_samplers`; a
curriculum when the config has one), build or resume a
:class:`~dtlens.training.trainer.Trainer`, train. :func:`train_to_checkpoint` is the
whole of ``dtlens train``: check the outputs, read the demonstrations file, train
(resuming or replacing an earlier run only when asked) and save the final model.

Example:
    >>> trainer, history = train_on_demonstrations(config, demos)  # doctest: +SKIP
    >>> result = train_to_checkpoint(config, "runs/demos.npz")  # doctest: +SKIP
    >>> result.out  # doctest: +SKIP
    PosixPath('runs/dt/final')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtlens.data.curriculum import Curriculum, group_episodes
from dtlens.data.demonstrations import Demonstrations
from dtlens.data.minari_bridge import load_demonstrations
from dtlens.data.windows import WindowSampler, train_val_split
from dtlens.errors import ConfigError, OutputPathError
from dtlens.files import check_writable
from dtlens.model.checkpoint import CONFIG_FILE, save
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.config import TrainConfig
from dtlens.training.run_dirs import (
    earlier_run,
    latest_checkpoint,
    refuse_earlier_run,
    remove_run,
)
from dtlens.training.trainer import Trainer, TrainHistory

__all__ = ["TrainResult", "make_samplers", "train_on_demonstrations", "train_to_checkpoint"]


def make_samplers(
    demos: Demonstrations, config: TrainConfig
) -> tuple[WindowSampler | Curriculum, WindowSampler | None]:
    """Train / validation window samplers over an episode split of ``demos``.

    With ``config.curriculum`` the training source is a :class:`Curriculum` whose
    phases sample the training episodes of their groups.

    Example:
        >>> train, val = make_samplers(demos, config)  # doctest: +SKIP
    """
    train_idx, val_idx = train_val_split(demos, config.val_fraction, seed=config.seed)
    common = dict(
        n_steps=config.n_steps,
        pad_action=config.model.n_actions,
        one_hot=config.model.one_hot_obs,
    )
    train = WindowSampler(
        demos,
        episode_indices=train_idx,
        end_fraction=config.window_end_fraction,
        weighting=config.window_weighting,
        **common,
    )
    val = WindowSampler(demos, episode_indices=val_idx, **common) if len(val_idx) else None
    if config.curriculum:
        phases = []
        for phase in config.curriculum:
            episodes = train_idx
            if phase.groups is not None:
                episodes = np.intersect1d(train_idx, group_episodes(demos, phase.groups))
            sampler = WindowSampler(
                demos,
                episode_indices=episodes,
                end_fraction=phase.window_end_fraction,
                weighting=config.window_weighting,
                **common,
            )
            phases.append((phase.until_step, sampler))
        replay = [phase.replay for phase in config.curriculum]
        return Curriculum(phases, then=train, replay=replay), val
    return train, val


def train_on_demonstrations(
    config: TrainConfig,
    demos: Demonstrations,
    resume: bool = False,
    evaluator: Callable[[HookedDecisionTransformer], dict[str, float]] | None = None,
    show_progress: bool = True,
    data_file: str | Path | None = None,
) -> tuple[Trainer, TrainHistory]:
    """Split, sample and train (or resume from ``config.run_dir``); the trainer and history.

    ``data_file`` (where ``demos`` was loaded from) is recorded in the checkpoints'
    metadata, so :func:`dtlens.training.dynamics.training_dynamics` can find the data.

    Example:
        >>> trainer, history = train_on_demonstrations(config, demos)  # doctest: +SKIP
    """
    train, val = make_samplers(demos, config)
    if resume:
        if config.run_dir is None:
            raise ConfigError("resume needs config.run_dir (where the checkpoints are).")
        trainer = Trainer.resume(latest_checkpoint(config.run_dir), train, val, evaluator)
        if trainer.config.to_dict() | {"device": None} != config.to_dict() | {"device": None}:
            raise ConfigError(
                f"the checkpoint in {config.run_dir} was trained with a different TrainConfig; "
                "pass the same flags (or --config) as the original run, or a new --run-dir."
            )
    else:
        trainer = Trainer(config, train, val, evaluator)
    trainer.metadata["data"] = {
        "header": demos.header,
        "n_episodes": demos.n_episodes,
        "n_steps": demos.n_steps,
        "val_fraction": config.val_fraction,
    }
    if data_file is not None:
        trainer.metadata["data"]["file"] = str(data_file)
    return trainer, trainer.train(show_progress=show_progress)


@dataclass
class TrainResult:
    """What :func:`train_to_checkpoint` did: the trainer, its history, the saved model."""

    trainer: Trainer
    history: TrainHistory
    out: Path

    def summary(self) -> str:
        """One line: steps, the last train and validation losses, where the model is."""
        history = self.history
        last_val = history.val[-1]["val/loss"] if history.val else float("nan")
        return (
            f"trained {self.trainer.step} steps: train loss "
            f"{history.train[-1]['train/loss']:.4f}, val loss {last_val:.4f}; model saved "
            f"to {self.out}"
        )


def train_to_checkpoint(
    config: TrainConfig,
    demos_path: str | Path,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    eval_rtgs: Sequence[float] = (0.0, 0.9),
    show_progress: bool = True,
) -> TrainResult:
    """Train on a demonstrations file and save the final model (``dtlens train``).

    Before any work: ``config.run_dir`` and ``out`` (default ``RUN_DIR/final``) must
    be writable, and a run directory or ``out`` that holds an earlier run needs
    ``resume`` (continue it) or ``overwrite`` (replace it: its checkpoints, metrics and
    final model are removed once the demonstrations have been read). Then train
    (checkpoints as the config says; rollouts at ``eval_rtgs`` every
    ``config.online_eval_every`` steps) and save the final model with a training
    summary in its metadata.

    Raises:
        OutputPathError: an output path cannot be written, or holds an earlier run
            and neither ``resume`` nor ``overwrite`` is given.
        ConfigError: both ``resume`` and ``overwrite``, or no ``config.run_dir``.
    """
    from dtlens.training.evaluate import make_rollout_evaluator

    if config.run_dir is None:
        raise ConfigError("train_to_checkpoint needs config.run_dir (--run-dir).")
    run_dir = Path(config.run_dir)
    earlier = earlier_run(run_dir, "step_", "metrics.jsonl")
    if not (resume or overwrite):
        refuse_earlier_run(
            str(run_dir),
            earlier,
            "pass --resume to continue it or --overwrite to replace it, or choose another "
            "--run-dir",
        )
    if resume and overwrite:
        raise ConfigError(
            "--resume continues the run in --run-dir, --overwrite replaces it: pick one"
        )
    check_writable(run_dir, "dir", "--run-dir")
    if out is not None:
        check_writable(out, "dir", "--out")
        if (Path(out) / CONFIG_FILE).exists() and not (resume or overwrite):
            raise OutputPathError(
                f"--out {out} already holds a model ({CONFIG_FILE}); pass --overwrite "
                "to replace it (or --resume to continue the run that wrote it), or choose "
                "another --out"
            )
    demos = load_demonstrations(demos_path)  # an .npz file or 'minari:DATASET_ID'
    if overwrite:
        remove_run(earlier)
    evaluator = None
    if config.online_eval_every is not None:
        evaluator = make_rollout_evaluator(
            demos.header.get("env_id", "MiniGrid-MemoryS7FixedStart-v0"),
            rtgs=list(eval_rtgs),
            max_steps=int(demos.header.get("max_steps", 50)),
        )
    start = time.perf_counter()
    trainer, history = train_on_demonstrations(
        config,
        demos,
        resume=resume,
        evaluator=evaluator,
        show_progress=show_progress,
        data_file=demos_path,
    )
    final = Path(out) if out is not None else run_dir / "final"
    summary = _training_summary(trainer, history, time.perf_counter() - start)
    save(trainer.model, final, metadata={**trainer.metadata, "training": summary})
    return TrainResult(trainer, history, final)


def _training_summary(trainer: Trainer, history: TrainHistory, seconds: float) -> dict[str, Any]:
    return {
        "config": trainer.config.to_dict(),
        "step": trainer.step,
        "train_loss": history.train[-1]["train/loss"] if history.train else None,
        "val_loss": history.val[-1]["val/loss"] if history.val else None,
        "wall_seconds_this_session": round(seconds, 1),
    }
