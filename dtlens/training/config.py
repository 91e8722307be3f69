"""`TrainConfig`: every knob of offline decision-transformer / behavioural-clone training.

One validated, JSON-round-trippable dataclass: the model architecture (a
:class:`~dtlens.model.config.DTConfig`), the context length, the AdamW optimiser and
its warm-up + cosine schedule, gradient clipping, the validation split and how often
to validate, evaluate online and checkpoint, the seed and the device. It is saved in
every training checkpoint, so a run can be resumed (and audited) from its directory.
``dtlens train`` derives its flags from these fields (and their docs below). The module
imports no torch (only :meth:`TrainConfig.resolved_device` does).

Example:
    >>> from dtlens.training.config import TrainConfig
    >>> cfg = TrainConfig(model=dict(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=11),
    ...                   batch_size=16, total_steps=100, warmup_steps=10)
    >>> cfg.n_steps, cfg.model.model_type
    (4, 'decision_transformer')
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from dtlens.config_io import (
    ConfigIO,
    check,
    check_choice,
    check_int,
    check_number,
    is_int,
    is_real,
)
from dtlens.errors import ConfigError
from dtlens.model.config import DTConfig

if TYPE_CHECKING:
    import torch

__all__ = ["LOGGERS", "CurriculumPhase", "TrainConfig"]

#: Optional experiment trackers (see :mod:`dtlens.training.loggers`).
LOGGERS = (None, "wandb", "tensorboard")
_MODEL_TYPES = ("decision_transformer", "clone")


@dataclass(frozen=True)
class CurriculumPhase(ConfigIO):
    """One phase of a training curriculum: which episodes, which windows, until when.

    Args:
        until_step: the phase trains optimiser steps up to this one (exclusive); the
            next phase (or the main data) starts there.
        groups: sampling-group labels of the demonstrations to train on, as
            :meth:`Demonstrations.groups` names them (``"part0/temperature=1"``) or
            without the part (``"temperature=1"``: that group in every part); None:
            every training episode.
        window_end_fraction: the phase's :class:`~dtlens.data.windows.WindowSampler`
            ``end_fraction``.
        replay: after the phase ends, this share of every batch is still drawn from the
            phase's windows (0: none), so what the phase taught stays in the data.

    Example:
        >>> phase = CurriculumPhase(until_step=1000, groups=("temperature=1",),
        ...                         window_end_fraction=1.0)
        >>> phase.to_dict() == {"until_step": 1000, "groups": ["temperature=1"],
        ...                     "window_end_fraction": 1.0, "replay": 0.0}
        True
    """

    until_step: int
    groups: tuple[str, ...] | None = None
    window_end_fraction: float = 0.0
    replay: float = 0.0

    def __post_init__(self) -> None:
        check_int(self, "until_step")
        if self.groups is not None:
            groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
            ok = bool(groups) and all(isinstance(g, str) and g for g in groups)
            rule = "None or a non-empty list of group labels such as 'temperature=1'"
            check(self, "groups", ok, rule)
            object.__setattr__(self, "groups", groups)
        check_number(self, "window_end_fraction", 0.0, 1.0)
        check_number(self, "replay", 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class TrainConfig(ConfigIO):
    """How to train a decision transformer (or behavioural clone) on demonstrations.

    Args:
        model: the architecture, a :class:`DTConfig` or a dict of its fields.
        n_steps: context length in timesteps of each training window; defaults to
            ``model.n_timesteps`` (the most that fits in ``n_ctx``) and may not exceed it.
        batch_size: windows per optimiser step.
        lr: peak learning rate (reached at the end of warm-up).
        lr_end: learning rate at ``total_steps`` (cosine decay from ``lr`` to it).
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's ``(beta1, beta2)``.
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr``.
        total_steps: optimiser steps of the whole run.
        lr_cycles: cosine cycles after warm-up (warm restarts): the steps after
            warm-up are split into this many equal cycles, each decaying from ``lr`` to
            ``lr_end`` (``transformers``' "cosine with hard restarts"); 1: one decay.
        grad_clip: max global gradient norm (None: no clipping).
        val_fraction: fraction of episodes held out for the validation loss.
        window_end_fraction: probability that a training window is moved to end at its
            episode's last step (:class:`dtlens.data.windows.WindowSampler`'s
            ``end_fraction``; the original project used 0.15). Validation windows stay
            uniform, so the validation loss is comparable across configs.
        window_weighting: ``"step"`` (every step equally likely to end a training
            window) or ``"episode"`` (every episode equally likely, whatever its length;
            :class:`dtlens.data.windows.WindowSampler`'s ``weighting``).
        curriculum: phases that come before the main data: each a
            :class:`CurriculumPhase` (or a dict of its fields) trains on some sampling
            groups of the demonstrations with its own window end fraction until its
            ``until_step``; after the last phase, all training episodes with
            ``window_end_fraction``. Empty (default): no curriculum.
        eval_every: validate every this many steps (and at the last step).
        val_batches: batches of ``batch_size`` windows per validation (the same
            windows every time, so the curve is comparable across steps).
        online_eval_every: run the trainer's evaluator (rollouts) every this many
            steps; None: only if an evaluator is given, at the last step.
        checkpoint_every: save a resumable checkpoint every this many steps (and at
            the last step); None: never.
        checkpoint_steps: further steps to checkpoint at (with ``checkpoint_every``
            set), e.g. dense early checkpoints for a training-dynamics study (as Pythia
            keeps log-spaced early steps).
        run_dir: where the default checkpoint function writes ``step_{k}/``.
        seed: seeds the model initialisation (when ``model.seed`` is None) and the
            sampling of training windows.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        model_type: ``"decision_transformer"`` or ``"clone"``; defaults to the
            model's. A value that contradicts ``model.model_type`` is an error.
        logger: ``None``, ``"wandb"`` or ``"tensorboard"`` (optional packages).
        log_every: record the training loss every this many steps.

    Raises:
        ConfigError: a field has an invalid value (the message names it).
    """

    model: DTConfig
    n_steps: int | None = None
    batch_size: int = 128
    lr: float = 3e-4
    lr_end: float = 3e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    total_steps: int = 2000
    lr_cycles: int = 1
    grad_clip: float | None = 1.0
    val_fraction: float = 0.1
    window_end_fraction: float = 0.0
    window_weighting: Literal["step", "episode"] = "step"
    curriculum: tuple[CurriculumPhase, ...] = ()
    eval_every: int = 250
    val_batches: int = 8
    online_eval_every: int | None = None
    checkpoint_every: int | None = None
    checkpoint_steps: tuple[int, ...] = ()
    run_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    model_type: Literal["decision_transformer", "clone"] | None = None
    logger: Literal["wandb", "tensorboard"] | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        model = self.model
        if isinstance(model, dict):
            model = dict(model)
            if self.model_type is not None:
                model.setdefault("model_type", self.model_type)
            model = DTConfig.from_dict(model)
        if not isinstance(model, DTConfig):
            raise ConfigError(
                f"TrainConfig.model must be a DTConfig or a dict of its fields, got "
                f"{type(model).__name__}."
            )
        if self.model_type is not None:
            check_choice(self, "model_type", _MODEL_TYPES)
        if self.model_type is not None and self.model_type != model.model_type:
            raise ConfigError(
                f"model_type={self.model_type!r} contradicts the model config's "
                f"model_type={model.model_type!r}; set one of them."
            )
        if model.seed is None:
            model = replace(model, seed=self.seed)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "model_type", model.model_type)
        n_steps = model.n_timesteps if self.n_steps is None else self.n_steps
        check_int(self, "n_steps", value=n_steps)
        if n_steps > model.n_timesteps:
            raise ConfigError(
                f"TrainConfig.n_steps={n_steps} exceeds the model's context of {model.n_timesteps} "
                f"timesteps (n_ctx={model.n_ctx}, {model.tokens_per_step} tokens a step)."
            )
        object.__setattr__(self, "n_steps", n_steps)
        for name in ("batch_size", "total_steps", "eval_every", "val_batches", "log_every"):
            check_int(self, name)
        steps = self.checkpoint_steps
        ok = not isinstance(steps, str | int) and all(
            is_int(k) and 0 < k <= self.total_steps for k in steps
        )
        check(self, "checkpoint_steps", ok, "a list of steps in 1..total_steps")
        if steps and self.checkpoint_every is None:
            raise ConfigError("checkpoint_steps needs checkpoint_every (and a run_dir).")
        object.__setattr__(self, "checkpoint_steps", tuple(sorted(set(steps))))
        for name in ("online_eval_every", "checkpoint_every"):
            check_int(self, name, optional=True)
        check_int(self, "warmup_steps", minimum=0)
        check_int(self, "seed", minimum=0)
        if self.warmup_steps > self.total_steps:
            raise ConfigError(
                f"TrainConfig.warmup_steps={self.warmup_steps} exceeds "
                f"total_steps={self.total_steps}."
            )
        check_number(self, "lr", 0.0, low_open=True)
        check_number(self, "lr_end", 0.0)
        if self.lr_end > self.lr:
            raise ConfigError(f"TrainConfig.lr_end={self.lr_end} must not exceed lr={self.lr}.")
        check_number(self, "weight_decay", 0.0)
        betas = tuple(self.betas) if isinstance(self.betas, tuple | list) else ()
        ok = len(betas) == 2 and all(is_real(b) and 0.0 <= b < 1.0 for b in betas)
        check(self, "betas", ok, "two floats in [0, 1)")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        check_number(self, "grad_clip", 0.0, low_open=True, optional=True)
        check_number(self, "val_fraction", 0.0, 1.0, high_open=True)
        check_number(self, "window_end_fraction", 0.0, 1.0)
        check_choice(self, "window_weighting", ("step", "episode"))
        check_int(self, "lr_cycles")
        object.__setattr__(self, "curriculum", _phases(self.curriculum, self.total_steps))
        check_choice(self, "logger", LOGGERS)
        ok = isinstance(self.device, str) and _valid_device(self.device)
        check(self, "device", ok, "a device: 'auto', 'cpu', 'cuda' or 'cuda:N'")
        ok = self.run_dir is None or isinstance(self.run_dir, str)
        check(self, "run_dir", ok, "a str path or None")

    # ------------------------------------------------------------------ derived
    def resolved_device(self) -> torch.device:
        """The torch device to train on (``"auto"``: CUDA if available, else CPU).

        Example:
            >>> TrainConfig(model=dict(n_layers=1, d_model=8, n_heads=1, d_mlp=8, n_ctx=5),
            ...             device="cpu").resolved_device()
            device(type='cpu')
        """
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={self.device!r} but CUDA is not available here.")
        return device

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine.

        Warm-up: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``; then
        with ``p = (step - warmup_steps) / (total_steps - warmup_steps)`` (capped at 1)
        and ``c = lr_cycles``: ``lr_end + (lr - lr_end) * (1 + cos(pi * q)) / 2`` where
        ``q = (c * p) mod 1`` before the end and ``q = 1`` at ``p = 1``: ``c`` cosine
        decays, each restarting at ``lr``.

        Examples:
            >>> c = TrainConfig(model=dict(n_layers=1, d_model=8, n_heads=1, d_mlp=8, n_ctx=5),
            ...                 lr=1.0, lr_end=0.0, warmup_steps=2, total_steps=4)
            >>> [c.lr_at(s) for s in range(5)]
            [0.5, 1.0, 1.0, 0.5, 0.0]
            >>> c = TrainConfig(model=dict(n_layers=1, d_model=8, n_heads=1, d_mlp=8, n_ctx=5),
            ...                 lr=1.0, lr_end=0.0, warmup_steps=0, total_steps=4, lr_cycles=2)
            >>> [c.lr_at(s) for s in range(5)]
            [1.0, 0.5, 1.0, 0.5, 0.0]
        """
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        within = 1.0 if progress >= 1.0 else (self.lr_cycles * progress) % 1.0
        return self.lr_end + (self.lr - self.lr_end) * 0.5 * (1.0 + math.cos(math.pi * within))

    def checkpoints_at(self, step: int) -> bool:
        """Whether a run checkpoints after optimiser step ``step`` (0: the initial weights).

        Example:
            >>> c = TrainConfig(model=dict(n_layers=1, d_model=8, n_heads=1, d_mlp=8, n_ctx=5),
            ...                 total_steps=10, warmup_steps=0, checkpoint_every=4,
            ...                 checkpoint_steps=[1, 2], run_dir="r")
            >>> list(filter(c.checkpoints_at, range(11)))
            [0, 1, 2, 4, 8, 10]
        """
        every = self.checkpoint_every
        if every is None:
            return False
        return step % every == 0 or step in self.checkpoint_steps or step == self.total_steps


def _phases(phases: Any, total_steps: int) -> tuple[CurriculumPhase, ...]:
    """Validate a curriculum: phases (or dicts of their fields) with rising until_step."""
    if isinstance(phases, dict | str) or not hasattr(phases, "__iter__"):
        raise ConfigError(f"curriculum={phases!r} must be a list of phases.")
    out = []
    for phase in phases:
        if isinstance(phase, dict):
            phase = CurriculumPhase.from_dict(phase)
        if not isinstance(phase, CurriculumPhase):
            raise ConfigError(
                f"curriculum phase {phase!r} must be a CurriculumPhase or a dict of its fields."
            )
        if out and phase.until_step <= out[-1].until_step:
            raise ConfigError(
                f"curriculum until_step values must rise: {phase.until_step} follows "
                f"{out[-1].until_step}."
            )
        out.append(phase)
    if sum(phase.replay for phase in out) >= 1.0:
        raise ConfigError(
            f"the curriculum's replay shares sum to {sum(p.replay for p in out):g}; they must "
            "leave room for the main data (sum < 1)."
        )
    if out and out[-1].until_step > total_steps:
        raise ConfigError(
            f"the curriculum's last phase ends at step {out[-1].until_step}, after "
            f"total_steps={total_steps}."
        )
    return tuple(out)


#: Device strings accepted without importing torch; others are checked by torch.device.
_PLAIN_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps(:\d+)?|meta")


def _valid_device(device: str) -> bool:
    if _PLAIN_DEVICE.fullmatch(device):
        return True
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        return False
    return True
