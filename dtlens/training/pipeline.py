"""The offline training pipeline: demonstrations -> window samplers -> a trained model.

``dtlens train`` and ``dtlens build-memorydt`` both call :func:`train_on_demonstrations`:
split the episodes into training and validation sets (:func:`make_samplers`; a
curriculum when the config has one), build or resume a
:class:`~dtlens.training.trainer.Trainer`, train.

Example:
    >>> trainer, history = train_on_demonstrations(config, demos)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dtlens.data.curriculum import Curriculum, group_episodes
from dtlens.data.demonstrations import Demonstrations
from dtlens.data.windows import WindowSampler, train_val_split
from dtlens.errors import ConfigError
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.config import TrainConfig
from dtlens.training.trainer import Trainer, TrainHistory, latest_checkpoint

__all__ = ["make_samplers", "train_on_demonstrations"]


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
        one_hot=config.model.obs_shape[-1] == 20,
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
