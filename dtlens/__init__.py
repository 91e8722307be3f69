"""dtlens: TransformerLens-native mechanistic interpretability of decision transformers.

The public API is the names in ``__all__`` (pinned by ``tests/unit/test_public_api.py``).
Importing dtlens has no side effects; ``import dtlens.env`` registers the MiniGrid
environments with gymnasium.

Examples:
    >>> import dtlens
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> logits, cache = model.run_with_cache(batch)  # doctest: +SKIP
"""

from dtlens.errors import (
    BatchError,
    CheckpointError,
    ConfigError,
    DTLensError,
    HookNameError,
    ObservationError,
)
from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch
from dtlens.model.checkpoint import load, save
from dtlens.model.convert import convert_original

__version__ = "0.1.0"

__all__ = [
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "DTConfig",
    "DTLensError",
    "HookNameError",
    "HookedDecisionTransformer",
    "ObservationError",
    "TrajectoryBatch",
    "__version__",
    "convert_original",
    "load",
    "save",
]
