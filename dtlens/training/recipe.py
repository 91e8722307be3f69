"""The recipe of the shipped MemoryDT: data, training and calibration settings in one place.

``dtlens build-memorydt`` (:mod:`dtlens.cli.build_memorydt`) runs it; the report's
calibration section reuses its planner settings for the data scatter, so the sample it
shows is drawn like the shipped model's training data.

Examples:
    >>> MEMORYDT_RECIPE.sampling
    ('1:8000', '5:16000')
    >>> MEMORYDT_RECIPE.train.model.n_layers
    3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtlens.env import MEMORY_ENV_ID
from dtlens.model.config import DTConfig
from dtlens.training.config import TrainConfig

__all__ = ["MEMORYDT_RECIPE", "REBUILD_COMMAND", "Recipe"]

REBUILD_COMMAND = "dtlens build-memorydt --out dtlens/pretrained/memorydt"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the shipped MemoryDT (data, training, calibration).

    Attributes:
        sampling: planner sampling groups ``TEMPERATURE:EPISODES`` (the seed's mix).
        planner_scale: the planner's logit scale (temperature T samples
            ``softmax(scale * Q_steps / T)``, Q in units of one step's reward).
        collect_seed: root seed of every episode's env and action seeds.
        train: the TrainConfig (architecture of the seed's MemoryDT).
        calibration_rtgs: RTGs of the calibration table.
        calibration_episodes: episodes per RTG (balanced over the 4 layouts, greedy).
        required_success_high / required_success_low: success at RTG 0.9 must be at
            least the first, at RTG 0 at most the second.
    """

    sampling: tuple[str, ...] = ("1:8000", "5:16000")
    planner_scale: float = 2.5
    collect_seed: int = 0
    n_envs: int = 64
    env_id: str = MEMORY_ENV_ID
    max_steps: int = 50
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            model=DTConfig(
                n_layers=3,
                d_model=256,
                n_heads=8,
                d_mlp=256,
                n_ctx=26,
                act_fn="gelu",
                normalization="LN",
                max_timestep=50,
                seed=0,
            ),
            batch_size=128,
            lr=1e-3,
            lr_end=1e-4,
            weight_decay=0.01,
            warmup_steps=300,
            total_steps=8000,
            grad_clip=1.0,
            val_fraction=0.05,
            window_end_fraction=0.15,
            window_weighting="episode",
            eval_every=250,
            val_batches=8,
            online_eval_every=250,
            checkpoint_every=250,
            seed=0,
            device="cpu",
            log_every=25,
        )
    )
    calibration_rtgs: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 2).tolist())
    calibration_episodes: int = 500
    required_success_high: float = 0.95
    required_success_low: float = 0.15

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "train"}
        out["sampling"] = list(self.sampling)
        out["calibration_rtgs"] = list(self.calibration_rtgs)
        out["train"] = self.train.to_dict()
        return out


#: The recipe of the shipped model.
MEMORYDT_RECIPE = Recipe()
