"""Decision transformer models: config, input batch, the hooked model, conversion, checkpoints.

Only :class:`DTConfig` is imported with the package; the model, the batch and the
HuggingFace converter (torch, TransformerLens) are imported on first use (PEP 562
``__getattr__``), so reading a config costs no torch import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtlens.lazy import lazy_attributes
from dtlens.model.config import DTConfig

if TYPE_CHECKING:
    from dtlens.model.batch import TrajectoryBatch
    from dtlens.model.hf.convert import from_hf
    from dtlens.model.hooked_dt import EMBEDDING_HOOKS, HookedDecisionTransformer
    from dtlens.model.locks import hooks_lock

#: name -> the module it is imported from on first use
_LAZY: dict[str, str] = {
    "EMBEDDING_HOOKS": "dtlens.model.hooked_dt",
    "HookedDecisionTransformer": "dtlens.model.hooked_dt",
    "TrajectoryBatch": "dtlens.model.batch",
    "from_hf": "dtlens.model.hf.convert",
    "hooks_lock": "dtlens.model.locks",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "EMBEDDING_HOOKS",
    "DTConfig",
    "HookedDecisionTransformer",
    "TrajectoryBatch",
    "from_hf",
    "hooks_lock",
]
