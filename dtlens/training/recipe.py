"""The recipes of the shipped MemoryDT: data, training and calibration settings in one place.

``dtlens build-memorydt`` (:mod:`dtlens.cli.build_memorydt`) runs one; the report's
calibration section reuses its planner settings for the data scatter, so the sample it
shows is drawn like the shipped model's training data.

Two architectures (``RECIPES``): ``"original"`` (the default, the shipped model) is the
original project's working Memory DT shape, 2 layers, d_model 128, 4 heads, gated ReLU
MLP; ``"seed"`` is the seed post's 3-layer, d_model 256, 8-head GELU shape. Both train
with the same curriculum: first temperature-1 episodes with every window ending at the
episode's end (the memory decision in every window), then the whole mix with a quarter
of every batch still drawn from the first phase's windows (``replay``).
docs/training.md records the runs that chose this. The module imports no torch, numpy
or gymnasium (``dtlens build-memorydt --help`` shows the recipe's values).

Examples:
    >>> MEMORYDT_RECIPE.sampling
    ('1:8000', '5:16000')
    >>> MEMORYDT_RECIPE.train.model.n_layers, RECIPES["seed"].train.model.n_layers
    (2, 3)
    >>> MEMORYDT_RECIPE.train.curriculum[0].groups
    ('temperature=1',)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dtlens.model.config import DTConfig
from dtlens.training.config import CurriculumPhase, TrainConfig
from dtlens.training.ppo_config import MEMORY_ENV_ID

__all__ = ["MEMORYDT_RECIPE", "REBUILD_COMMAND", "RECIPES", "Recipe", "customise_recipe"]

REBUILD_COMMAND = "dtlens build-memorydt --out dtlens/pretrained/memorydt"

#: The original project's working Memory DT shape (2 layers, d_model 128, gated ReLU MLP).
ORIGINAL_SHAPE = DTConfig(
    n_layers=2,
    d_model=128,
    n_heads=4,
    d_mlp=256,
    n_ctx=26,
    act_fn="relu",
    gated_mlp=True,
    normalization="LN",
    max_timestep=50,
    seed=0,
)
#: The seed post's MemoryDT shape (3 layers, d_model 256, 8 heads, GELU MLP 256).
SEED_SHAPE = DTConfig(
    n_layers=3,
    d_model=256,
    n_heads=8,
    d_mlp=256,
    n_ctx=26,
    act_fn="gelu",
    normalization="LN",
    max_timestep=50,
    seed=0,
)


def _training(model: DTConfig) -> TrainConfig:
    return TrainConfig(
        model=model,
        batch_size=128,
        lr=1e-3,
        lr_end=1e-4,
        weight_decay=0.01,
        warmup_steps=300,
        total_steps=6000,
        grad_clip=1.0,
        val_fraction=0.05,
        window_end_fraction=0.3,
        window_weighting="episode",
        curriculum=(
            CurriculumPhase(
                until_step=1000,
                groups=("temperature=1",),
                window_end_fraction=1.0,
                replay=0.25,
            ),
        ),
        eval_every=250,
        val_batches=8,
        online_eval_every=250,
        checkpoint_every=250,
        # dense while the memory forms (the escape comes within the first 500 steps)
        checkpoint_steps=tuple(range(25, 1000, 25)),
        seed=0,
        device="cpu",
        log_every=25,
    )


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the shipped MemoryDT (data, training, calibration).

    Attributes:
        sampling: planner sampling groups ``TEMPERATURE:EPISODES`` (the seed's mix).
        planner_scale: the planner's logit scale (temperature T samples
            ``softmax(scale * Q_steps / T)``, Q in units of one step's reward).
        collect_seed: root seed of every episode's env and action seeds.
        architecture: ``"original"`` or ``"seed"`` (the model shape; see the module).
        train: the TrainConfig (architecture, curriculum, optimiser, schedule).
        calibration_rtgs: RTGs of the calibration table.
        calibration_episodes: episodes per RTG (balanced over the 4 layouts, greedy).
        required_success_high / required_success_low: success at RTG 0.9 must be at
            least the first, at RTG 0 at most the second.
    """

    architecture: str = "original"
    sampling: tuple[str, ...] = ("1:8000", "5:16000")
    planner_scale: float = 2.5
    collect_seed: int = 0
    n_envs: int = 64
    env_id: str = MEMORY_ENV_ID
    max_steps: int = 50
    train: TrainConfig = field(default_factory=lambda: _training(ORIGINAL_SHAPE))
    calibration_rtgs: tuple[float, ...] = tuple(round(0.1 * i, 2) for i in range(11))
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
#: Every recipe by architecture name (``dtlens build-memorydt --architecture NAME``).
RECIPES: dict[str, Recipe] = {
    "original": MEMORYDT_RECIPE,
    "seed": replace(MEMORYDT_RECIPE, architecture="seed", train=_training(SEED_SHAPE)),
}


def customise_recipe(
    base: Recipe,
    run_dir: str | Path,
    *,
    total_steps: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    calibration_episodes: int | None = None,
    model_type: str | None = None,
) -> Recipe:
    """``base`` with its training checkpoints in ``run_dir/train`` and the given changes.

    A different ``total_steps`` scales the schedule with it: the warm-up is capped at
    it, every curriculum phase end and dense checkpoint step is scaled by
    ``total_steps / base.train.total_steps``. ``seed`` seeds both the training and the
    model initialisation. ``model_type="clone"`` trains a behavioural clone (S, A tokens,
    no RTG) of the same shape on the same data, with ``n_ctx`` shrunk to the same number
    of timesteps (``2T - 1`` tokens instead of ``3T - 1``).

    Example:
        >>> r = customise_recipe(MEMORYDT_RECIPE, "runs/x", total_steps=3000, seed=2)
        >>> r.train.curriculum[0].until_step, r.train.model.seed, r.train.run_dir
        (500, 2, 'runs/x/train')
        >>> c = customise_recipe(MEMORYDT_RECIPE, "runs/c", model_type="clone").train.model
        >>> c.model_type, c.n_ctx, c.n_timesteps
        ('clone', 17, 9)
    """
    train = base.train
    changes: dict[str, Any] = {"run_dir": str(Path(run_dir) / "train")}
    if total_steps is not None:
        changes["total_steps"] = total_steps
        changes["warmup_steps"] = min(train.warmup_steps, total_steps)
        changes["curriculum"] = _scaled_curriculum(train, total_steps)
        scale = total_steps / train.total_steps
        changes["checkpoint_steps"] = sorted(
            {round(k * scale) for k in train.checkpoint_steps} & set(range(1, total_steps))
        )
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if device is not None:
        changes["device"] = device
    if seed is not None:
        changes["seed"] = seed
        changes["model"] = train.model.to_dict() | {"seed": seed}
    if model_type is not None and model_type != train.model.model_type:
        steps = train.model.n_timesteps
        n_ctx = steps * (2 if model_type == "clone" else 3) - 1
        model = changes.get("model", train.model.to_dict())
        changes["model"] = model | {"model_type": model_type, "n_ctx": n_ctx}
        changes["model_type"] = model_type
    recipe = replace(base, train=TrainConfig.from_dict(train.to_dict() | changes))
    if calibration_episodes is not None:
        recipe = replace(recipe, calibration_episodes=calibration_episodes)
    return recipe


def _scaled_curriculum(train: TrainConfig, total_steps: int) -> list[dict[str, Any]]:
    """The recipe's curriculum with every phase end scaled to ``total_steps``."""
    scale = total_steps / train.total_steps
    phases, last = [], 0
    for phase in train.curriculum:
        until = max(last + 1, round(phase.until_step * scale))
        if until > total_steps:
            break
        phases.append(phase.to_dict() | {"until_step": until})
        last = until
    return phases
