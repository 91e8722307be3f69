"""`Trainer`: offline training of a decision transformer or behavioural clone, resumable.

Background:
    Offline training is supervised learning: sample windows of demonstrations (RTG,
    state, action tokens), predict every step's action at its state token, minimise
    the cross-entropy on real (non-padded) steps. The trainer is handed its data
    (a training and a validation sampler with ``sample(batch_size, generator)``, e.g.
    :class:`dtlens.data.windows.WindowSampler`), an optional evaluator
    (``model -> {metric: value}``, e.g. rollouts from
    :func:`dtlens.training.evaluate.make_rollout_evaluator`) and an optional checkpoint
    function, the SAELens way: it owns only the optimisation loop.

    AdamW (weight decay on matrices only, not on biases or norm gains), linear
    warm-up then cosine decay (:meth:`TrainConfig.lr_at`), global gradient-norm
    clipping. Validation loss every ``eval_every`` steps on fixed held-out windows.

    **Checkpoints** (``run_dir/step_{k}/``) hold the model as a dtlens checkpoint
    (``config.json`` + ``model.safetensors``, loadable with :func:`dtlens.load`), plus
    ``trainer_state.safetensors`` (AdamW moments and step counts, the window
    sampler's and torch's RNG states) and ``trainer_state.json`` (TrainConfig, step,
    AdamW hyper-parameters, history). Nothing is pickled. :meth:`Trainer.resume`
    continues a run bit-identically on the same device: N steps straight give the
    same weights as k steps, save, resume, N - k steps.

Examples:
    >>> from dtlens.training.trainer import Trainer
    >>> trainer = Trainer(config, train_sampler, val_sampler)  # doctest: +SKIP
    >>> history = trainer.train()  # doctest: +SKIP
    >>> history.val[-1]["val/loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.checkpoint_files import check_finite, read_json_file, sha256_hex
from dtlens.errors import CheckpointError, ConfigError, DTLensError
from dtlens.files import write_files_atomic
from dtlens.model.checkpoint import load as load_model
from dtlens.model.checkpoint import save as save_model
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.config import TrainConfig
from dtlens.training.loggers import JsonlLogger, Logger, make_logger
from dtlens.training.optimizer_state import optimizer_from_flat, optimizer_to_flat
from dtlens.training.run_dirs import STATE_JSON, STATE_TENSORS, latest_checkpoint

__all__ = [
    "CheckpointFn",
    "TrainHistory",
    "Trainer",
    "WindowSource",
    "masked_cross_entropy",
]

_STATE_FORMAT = "dtlens-trainer-state"
_STATE_VERSION = 1
#: offset of the validation windows' seed from the run seed (fixed windows every time)
_VAL_SEED_OFFSET = 1_000_003


class WindowSource(Protocol):
    """What the trainer samples from (e.g. :class:`dtlens.data.windows.WindowSampler`)."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Any:
        """Windows with ``.batch`` (TrajectoryBatch), ``.targets`` and ``.loss_mask`` [B, T]."""


CheckpointFn = Callable[["Trainer", int], Any]


@dataclass
class TrainHistory:
    """What happened during training, one dict per record.

    Attributes:
        train: ``{"step", "train/loss", "train/lr", "train/grad_norm"}`` every ``log_every``.
        val: ``{"step", "val/loss"}`` every ``eval_every`` (and at the end).
        eval: ``{"step", **evaluator metrics}`` every ``online_eval_every`` (and at the end).
    """

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    eval: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[dict[str, float]]]:
        """JSON-ready dict."""
        return asdict(self)


def masked_cross_entropy(
    logits: Float[Tensor, "batch step action"],
    targets: Int[Tensor, "batch step"],
    loss_mask: Bool[Tensor, "batch step"],
) -> Float[Tensor, ""]:
    """Mean cross-entropy of the action logits over the steps where ``loss_mask`` is True.

    Example:
        >>> logits = torch.zeros(1, 2, 7)
        >>> masked_cross_entropy(logits, torch.tensor([[3, -100]]), torch.tensor([[True, False]]))
        tensor(1.9459)
    """
    if logits.shape[:2] != targets.shape or targets.shape != loss_mask.shape:
        raise ConfigError(
            f"logits {list(logits.shape)}, targets {list(targets.shape)} and loss_mask "
            f"{list(loss_mask.shape)} must share [batch, step]."
        )
    if not bool(loss_mask.any()):
        raise ConfigError("loss_mask selects no step: a batch of only padding has no loss.")
    return F.cross_entropy(logits[loss_mask], targets[loss_mask])


class Trainer:
    """Trains ``HookedDecisionTransformer(config.model)`` on windows from ``train_sampler``.

    Args:
        config: the :class:`TrainConfig`.
        train_sampler: training windows (``sample(batch_size, generator)``); a source
            with ``at(step)`` (a :class:`~dtlens.data.curriculum.Curriculum`) gives each
            step's own source.
        val_sampler: held-out windows for the validation loss (None: no validation).
        evaluator: ``model -> {name: value}`` run every ``config.online_eval_every``
            steps and at the end (e.g. rollout success rates).
        checkpoint_fn: ``(trainer, step) -> Any`` called at every step where
            ``config.checkpoints_at(step)``: before the first step (step 0, the initial
            weights), every ``checkpoint_every`` steps, at ``checkpoint_steps`` and at
            the end; default (when
            ``config.run_dir`` is set) :meth:`save_checkpoint` into ``run_dir/step_{k}``.
        logger: anything with ``log(metrics, step)`` and ``close()``; default the one
            ``config.logger`` names, plus a JSON-lines file in ``run_dir`` when set.
        model: start from this model instead of a fresh one (its config must equal
            ``config.model``).

    Attributes:
        model: the model being trained.
        optimizer: the AdamW optimiser.
        step: optimiser steps done.
        history: the training and validation records so far.
        generator: the RNG of window sampling.
        metadata: merged into every checkpoint's ``config.json``.

    Example:
        >>> trainer = Trainer(config, train_sampler, val_sampler)  # doctest: +SKIP
        >>> trainer.train(show_progress=False).val[-1]  # doctest: +SKIP
        {'step': 2000, 'val/loss': 0.41}
    """

    def __init__(
        self,
        config: TrainConfig,
        train_sampler: WindowSource,
        val_sampler: WindowSource | None = None,
        evaluator: Callable[[HookedDecisionTransformer], dict[str, float]] | None = None,
        checkpoint_fn: CheckpointFn | None = None,
        logger: Logger | None = None,
        model: HookedDecisionTransformer | None = None,
    ):
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}.")
        self.config = config
        self.device = config.resolved_device()
        if model is None:
            model = HookedDecisionTransformer(config.model)
        elif model.cfg != config.model:
            raise ConfigError(
                f"the model's config {model.cfg} differs from config.model {config.model}."
            )
        self.model = model.to(self.device).train()
        self.train_sampler, self.val_sampler = train_sampler, val_sampler
        self.evaluator = evaluator
        if checkpoint_fn is None and config.checkpoint_every is not None:
            if config.run_dir is None:
                raise ConfigError(
                    f"checkpoint_every={config.checkpoint_every} needs run_dir (where step_k/ "
                    "directories go) or a checkpoint_fn."
                )
            checkpoint_fn = _save_to_run_dir
        self.checkpoint_fn = checkpoint_fn
        self.loggers: list[Logger] = [] if logger is None else [logger]
        if logger is None and config.logger is not None:
            self.loggers.append(make_logger(config.logger, config.run_dir, config.to_dict()))
        if config.run_dir is not None:
            self.loggers.append(JsonlLogger(Path(config.run_dir) / "metrics.jsonl"))
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, config.weight_decay),
            lr=config.lr_at(0),
            betas=config.betas,
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history = TrainHistory()
        self.metadata: dict[str, Any] = {}
        self._val_windows: list[Any] | None = None

    # ----------------------------------------------------------------- training
    def train(self, show_progress: bool = True, stop_at: int | None = None) -> TrainHistory:
        """Optimise until ``config.total_steps`` (or ``stop_at``); returns the history.

        ``stop_at`` pauses early (e.g. to hand the machine back) without changing the
        schedule; calling ``train`` again, or :meth:`resume` from a checkpoint, goes on.

        Example:
            >>> history = trainer.train(show_progress=False)  # doctest: +SKIP
        """
        cfg = self.config
        end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
        bar = tqdm(total=end, initial=self.step, disable=not show_progress, desc="train")
        if self.step == 0 and self.checkpoint_fn is not None and cfg.checkpoints_at(0):
            self.checkpoint_fn(self, 0)  # the initial weights: where training dynamics start
        try:
            while self.step < end:
                record = self.train_step()
                bar.update(1)
                step, last = self.step, self.step == cfg.total_steps
                if step % cfg.log_every == 0 or last:
                    self.history.train.append(record)
                    self._log(record)
                    bar.set_postfix(loss=f"{record['train/loss']:.4f}")
                if self.val_sampler is not None and (step % cfg.eval_every == 0 or last):
                    val = {"step": step, "val/loss": self.validation_loss()}
                    self.history.val.append(val)
                    self._log(val)
                every = cfg.online_eval_every
                if self.evaluator is not None and ((every and step % every == 0) or last):
                    metrics = {"step": step, **self._evaluate()}
                    self.history.eval.append(metrics)
                    self._log(metrics)
                if self.checkpoint_fn is not None and cfg.checkpoints_at(step):
                    self.checkpoint_fn(self, step)
        finally:
            bar.close()
            if self.step >= cfg.total_steps:
                for logger in self.loggers:
                    logger.close()
        return self.history

    def train_step(self) -> dict[str, float]:
        """One optimiser step on one sampled batch; returns its loss, lr and grad norm."""
        cfg = self.config
        windows = self.source_at(self.step).sample(cfg.batch_size, self.generator)
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self._loss(windows)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = math.inf if cfg.grad_clip is None else cfg.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.step += 1
        return {
            "step": self.step,
            "train/loss": float(loss.detach()),
            "train/lr": lr,
            "train/grad_norm": float(grad_norm),
        }

    def source_at(self, step: int) -> WindowSource:
        """The training window source of step ``step`` (a curriculum's phase, if any)."""
        at = getattr(self.train_sampler, "at", None)
        return self.train_sampler if at is None else at(step)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the fixed validation windows (``val_batches`` batches)."""
        if self.val_sampler is None:
            raise ConfigError("validation_loss needs a val_sampler; the trainer has none.")
        if self._val_windows is None:
            gen = torch.Generator().manual_seed(self.config.seed + _VAL_SEED_OFFSET)
            self._val_windows = [
                self.val_sampler.sample(self.config.batch_size, gen)
                for _ in range(self.config.val_batches)
            ]
        self.model.eval()
        try:
            total, count = 0.0, 0
            for windows in self._val_windows:
                n = int(windows.loss_mask.sum())
                total += float(self._loss(windows)) * n
                count += n
        finally:
            self.model.train()
        return total / count

    def _loss(self, windows: Any) -> Float[Tensor, ""]:
        batch = windows.batch.to(self.device)
        logits = self.model.action_logits(batch)
        return masked_cross_entropy(
            logits, windows.targets.to(self.device), windows.loss_mask.to(self.device)
        )

    def _evaluate(self) -> dict[str, float]:
        self.model.eval()
        try:
            return {f"eval/{k}": float(v) for k, v in self.evaluator(self.model).items()}
        finally:
            self.model.train()

    def _log(self, record: dict[str, float]) -> None:
        metrics = {k: v for k, v in record.items() if k != "step"}
        for logger in self.loggers:
            logger.log(metrics, int(record["step"]))

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write the model and the full training state into ``directory`` (no pickle).

        Example:
            >>> trainer.save_checkpoint("runs/dt/step_500")  # doctest: +SKIP
        """
        directory = Path(directory)
        training = {"config": self.config.to_dict(), "step": self.step}
        if self.history.train:
            training["train_loss"] = self.history.train[-1]["train/loss"]
        if self.history.val:
            training["val_loss"] = self.history.val[-1]["val/loss"]
        save_model(self.model, directory, metadata={**self.metadata, "training": training})
        tensors, opt_meta = optimizer_to_flat(self.optimizer.state_dict())
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.torch_cpu"] = torch.random.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.torch_cuda"] = torch.cuda.get_rng_state(self.device)
        data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        state = {
            "format": _STATE_FORMAT,
            "format_version": _STATE_VERSION,
            "step": self.step,
            "train_config": self.config.to_dict(),
            "optimizer": opt_meta,
            "param_names": [name for name, _ in self.model.named_parameters()],
            "history": self.history.to_dict(),
            "metadata": self.metadata,
            "tensors_sha256": sha256_hex(data),
        }
        # trainer_state.json last: a step_k without it is not a checkpoint (step_dirs)
        write_files_atomic(
            {
                directory / STATE_TENSORS: data,
                directory / STATE_JSON: json.dumps(state, indent=1) + "\n",
            }
        )
        return directory

    @classmethod
    def resume(
        cls,
        path: str | Path,
        train_sampler: WindowSource,
        val_sampler: WindowSource | None = None,
        evaluator: Callable[[HookedDecisionTransformer], dict[str, float]] | None = None,
        checkpoint_fn: CheckpointFn | None = None,
        logger: Logger | None = None,
        device: str | None = None,
    ) -> Trainer:
        """A trainer in the exact state saved at ``path`` (a ``step_k`` dir or a run dir).

        Args:
            path: a checkpoint directory written by :meth:`save_checkpoint`, or a run
                directory (its latest ``step_k`` is used).
            train_sampler: as for ``__init__`` (the data is not stored in
                checkpoints; pass the same).
            val_sampler: as for ``__init__``.
            evaluator: as for ``__init__``.
            checkpoint_fn: as for ``__init__``.
            logger: as for ``__init__``.
            device: override the saved config's device (e.g. resume a GPU run on CPU;
                bit-identity then no longer holds).

        Raises:
            CheckpointError: ``path`` holds no trainer checkpoint, or a corrupt one.

        Example:
            >>> trainer = Trainer.resume("runs/dt", train_sampler, val_sampler)  # doctest: +SKIP
            >>> trainer.train()  # doctest: +SKIP
        """
        directory = latest_checkpoint(path)
        state = read_json_file(directory / STATE_JSON, "a dtlens trainer state")
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise CheckpointError(f"{directory / STATE_JSON} is not a dtlens trainer state.")
        try:
            data = (directory / STATE_TENSORS).read_bytes()
        except OSError as err:
            raise CheckpointError(f"cannot read the trainer state in {directory}: {err}") from err
        recorded = state.get("tensors_sha256")
        if recorded is not None and recorded != sha256_hex(data):
            raise CheckpointError(
                f"{directory / STATE_TENSORS} is not the file {STATE_JSON} was saved with "
                "(its SHA-256 differs): it was changed or damaged after saving; resume from "
                "an earlier step_k checkpoint (move this one away) or start again"
            )
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, ValueError) as err:
            raise CheckpointError(f"cannot read the trainer state in {directory}: {err}") from err
        check_finite(tensors, str(directory / STATE_TENSORS))
        try:
            config_dict = dict(state["train_config"])
            if device is not None:
                config_dict["device"] = device
            config = TrainConfig.from_dict(config_dict)
            model = load_model(directory)
            if model.cfg != config.model:
                raise CheckpointError(
                    f"{directory}: the saved model config differs from the saved TrainConfig's."
                )
            model.metadata = {}
            trainer = cls(
                config, train_sampler, val_sampler, evaluator, checkpoint_fn, logger, model
            )
            names = [name for name, _ in trainer.model.named_parameters()]
            if names != state["param_names"]:
                raise CheckpointError(
                    f"{directory}: the model's parameters do not match the saved optimizer state."
                )
            trainer.optimizer.load_state_dict(optimizer_from_flat(tensors, state["optimizer"]))
            trainer.generator.set_state(tensors["rng.generator"])
            torch.random.set_rng_state(tensors["rng.torch_cpu"])
            if "rng.torch_cuda" in tensors and trainer.device.type == "cuda":
                torch.cuda.set_rng_state(tensors["rng.torch_cuda"], trainer.device)
            trainer.step = int(state["step"])
            trainer.history = TrainHistory(**state["history"])
            trainer.metadata = dict(state.get("metadata", {}))
        except DTLensError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"{directory / STATE_JSON} is damaged or was written by another dtlens "
                f"({type(err).__name__}: {err}); resume from an earlier step_k checkpoint "
                "(move this one away) or start the run again"
            ) from err
        return trainer


# --------------------------------------------------------------------- helpers
def _save_to_run_dir(trainer: Trainer, step: int) -> Path:
    return trainer.save_checkpoint(Path(trainer.config.run_dir) / f"step_{step}")


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (ndim >= 2); never biases or norm gains (ndim 1)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    keep = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]
