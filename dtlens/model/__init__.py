"""Decision transformer models: config, input batch, the hooked model, conversion, checkpoints."""

from dtlens.model.batch import TrajectoryBatch
from dtlens.model.config import DTConfig
from dtlens.model.hf.convert import from_hf
from dtlens.model.hooked_dt import EMBEDDING_HOOKS, HookedDecisionTransformer

__all__ = ["EMBEDDING_HOOKS", "DTConfig", "HookedDecisionTransformer", "TrajectoryBatch", "from_hf"]
