"""The one exception family dtlens raises for bad input.

Every error names what was wrong and what was expected, so a user can fix the
call without reading dtlens' source. Each class also derives from the builtin
exception a Python user would reach for (``ValueError``, ``KeyError``), so
``except ValueError`` keeps working.

Examples:
    >>> from dtlens.errors import DTLensError, BatchError
    >>> issubclass(BatchError, DTLensError) and issubclass(BatchError, ValueError)
    True
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "DTLensError",
    "DemonstrationsFileError",
    "DeviceError",
    "EnvError",
    "HookNameError",
    "HypothesisError",
    "ObservationError",
    "OutputPathError",
]


class DTLensError(Exception):
    """Base class of every error dtlens raises on purpose."""


class ConfigError(DTLensError, ValueError):
    """A config field has an invalid value (the message names field and value)."""


class OutputPathError(ConfigError):
    """An output path that cannot be written (a file where a directory is needed, a
    directory where a file is, no permission), or that holds earlier results a command
    would replace without ``--overwrite``. Raised before any work starts; the message
    names the path and the fix."""


class DeviceError(ConfigError):
    """A device string torch does not know (``"gpu"``), or a device this machine does
    not have (``"cuda"`` without CUDA, ``"cuda:7"`` with one GPU)."""


class HypothesisError(ConfigError):
    """A causal-scrubbing hypothesis that cannot be applied: an unknown feature, an edge
    or node the model's graph lacks, a child claim that does not feed its parent, or two
    claims giving one edge different values (the message names the claim and the fix)."""


class BatchError(DTLensError, ValueError):
    """A TrajectoryBatch (or a tensor meant for one) has the wrong shape, dtype or range."""


class ObservationError(DTLensError, ValueError):
    """An observation, or an edit of one, is invalid (bad cell, object, colour, state)."""


class CheckpointError(DTLensError, ValueError):
    """A checkpoint is missing, corrupt, foreign, unsafe, or of an unsupported variant."""


class DemonstrationsFileError(CheckpointError):
    """A demonstrations file that is missing, empty, truncated, corrupt, of another kind,
    or whose arrays disagree with each other or with the file's size."""


class HookNameError(DTLensError, KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class EnvError(DTLensError, ValueError):
    """An environment id, option or scenario that dtlens cannot build."""
