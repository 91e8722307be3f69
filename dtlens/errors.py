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
    "EmptyBatchError",
    "EnvError",
    "HeadIndexError",
    "HookNameError",
    "HookShapeError",
    "HypothesisError",
    "MetricError",
    "NonFiniteError",
    "ObservationError",
    "OneHotError",
    "OutputPathError",
    "PaddingMaskError",
    "RequestError",
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


class EmptyBatchError(BatchError):
    """A TrajectoryBatch with no windows (``B = 0``), often a row selection that kept
    nothing (``batch[mask]`` with an all-False mask)."""


class NonFiniteError(BatchError):
    """NaN or inf in a batch's observations or returns-to-go, or in an RTG value given to
    :func:`~dtlens.analysis.edits.set_rtg` (the message counts them and gives the first
    position)."""


class PaddingMaskError(BatchError):
    """A ``padding_mask`` that is not left padding: in some row a padding step (False)
    follows a real one (True), or the last step is padding. Windows are padded on the
    left only (:meth:`~dtlens.model.TrajectoryBatch.left_pad`)."""


class HeadIndexError(ConfigError, BatchError):
    """A head index outside ``0..n_heads - 1``, negative ones included (Python's ``-1``
    would silently pick the last head). A ConfigError, and also a BatchError because
    selecting a head from a cached activation raised that before."""


class ObservationError(DTLensError, ValueError):
    """An observation, or an edit of one, is invalid (bad cell, object, colour, state)."""


class OneHotError(ObservationError):
    """Grid observations ``[B, T, x, y, 20]`` holding values other than 0 and 1: a raw
    MiniGrid image, normalised or noisy values. Encode images with
    :func:`dtlens.encode_observation`."""


class CheckpointError(DTLensError, ValueError):
    """A checkpoint is missing, corrupt, foreign, unsafe, or of an unsupported variant."""


class DemonstrationsFileError(CheckpointError):
    """A demonstrations file that is missing, empty, truncated, corrupt, of another kind,
    or whose arrays disagree with each other or with the file's size."""


class HookNameError(DTLensError, KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class HookShapeError(DTLensError, ValueError):
    """A hook function that returned something other than None or a tensor of its
    activation's shape (the message names the hook, the function and both shapes)."""


class MetricError(DTLensError, ValueError):
    """A metric that returned neither one value per pair (``[B]``) nor a scalar, or a
    value that is NaN or inf; every analysis that takes a metric raises it."""


class EnvError(DTLensError, ValueError):
    """An environment id, option or scenario that dtlens cannot build."""


class RequestError(DTLensError, ValueError):
    """A request to the live app (``dtlens app``) that its page would never send: a body
    that is not a JSON object, an unknown callback, inputs or outputs that do not match
    the callback's, or a malformed session id. The server answers it with HTTP 400 and
    the message; reloading the page sends well-formed requests again."""
