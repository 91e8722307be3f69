"""Optional experiment trackers for the trainer: a JSON-lines file, wandb or tensorboard.

None of them is required. wandb and tensorboard are imported only when chosen, and a
clear :class:`~dtlens.errors.ConfigError` says how to install the one that is missing.
A logger has two methods, ``log(metrics, step)`` and ``close()``; anything with them
can be handed to :class:`~dtlens.training.trainer.Trainer`.

Example:
    >>> from dtlens.training.loggers import JsonlLogger
    >>> logger = JsonlLogger("/tmp/dtlens_doc_run/metrics.jsonl")
    >>> logger.log({"train/loss": 1.2}, step=10); logger.close()
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol

from dtlens.errors import ConfigError
from dtlens.files import append_line

__all__ = ["JsonlLogger", "Logger", "TensorboardLogger", "WandbLogger", "make_logger"]


class Logger(Protocol):
    """What the trainer calls: ``log`` a dict of scalars at a step, ``close`` at the end."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar ``metrics`` at optimiser step ``step``."""

    def close(self) -> None:
        """Flush and release resources."""


class JsonlLogger:
    """Append one JSON object per ``log`` call (``{"step": k, **metrics}``) to a file.

    Example:
        >>> JsonlLogger("/tmp/dtlens_doc_run/m.jsonl").log({"val/loss": 0.5}, step=1)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Append ``{"step": step, **metrics}`` as one line (all or nothing: a write that
        fails half-way leaves no partial line, see :func:`dtlens.files.append_line`)."""
        append_line(self.path, json.dumps({"step": step, **metrics}))

    def close(self) -> None:
        """Nothing to release (every call opens and closes the file)."""


class WandbLogger:
    """Log to Weights & Biases (``pip install wandb``); ``config`` is the run's config.

    Example:
        >>> logger = WandbLogger(project="dtlens", config={"lr": 3e-4})  # doctest: +SKIP
    """

    def __init__(
        self,
        project: str = "dtlens",
        config: dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
    ):
        wandb = _optional_import("wandb", "logger='wandb'", "pip install wandb")
        self._run = wandb.init(
            project=project, config=config or {}, dir=None if run_dir is None else str(run_dir)
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Send ``metrics`` at ``step``."""
        self._run.log(metrics, step=step)

    def close(self) -> None:
        """Finish the wandb run."""
        self._run.finish()


class TensorboardLogger:
    """Write tensorboard scalars to ``log_dir`` (``pip install tensorboard``).

    Example:
        >>> logger = TensorboardLogger("runs/tb")  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path):
        _optional_import("tensorboard", "logger='tensorboard'", "pip install tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One scalar per metric at ``step``."""
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


def make_logger(
    kind: str | None, run_dir: str | Path | None, config: dict[str, Any] | None = None
) -> Logger | None:
    """The logger a :class:`~dtlens.training.config.TrainConfig` asks for.

    Args:
        kind: None (no tracker), ``"wandb"`` or ``"tensorboard"``.
        run_dir: where tensorboard writes (``run_dir/tensorboard``); required for it.
        config: the run's config, sent to wandb.

    Raises:
        ConfigError: an unknown kind, a missing package, or tensorboard without a run_dir.

    Example:
        >>> make_logger(None, None) is None
        True
    """
    if kind is None:
        return None
    if kind == "wandb":
        return WandbLogger(config=config, run_dir=run_dir)
    if kind == "tensorboard":
        if run_dir is None:
            raise ConfigError("logger='tensorboard' needs run_dir (where event files go).")
        return TensorboardLogger(Path(run_dir) / "tensorboard")
    raise ConfigError(f"logger={kind!r} is not supported; use None, 'wandb' or 'tensorboard'.")


def _optional_import(module: str, chosen: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"{chosen} was chosen but the {module!r} package is not installed; "
            f"run `{install}` or set logger=None."
        ) from err
