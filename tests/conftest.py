"""Shared factories for tests: tiny seeded models and batches, and the real checkpoints.

Use the ``build_*`` functions directly (they are plain functions, importable as
``from tests.conftest import build_model``) or through the fixtures below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHECKPOINTS = SHARED / "checkpoints"
ORIGINAL_DT = CHECKPOINTS / "dti_memory_gated_mlp.pt"
ORIGINAL_LSTM = CHECKPOINTS / "dti_memory_ppo_lstm.pt"


def requires_shared(path: Path):
    """Skip marker for tests that read a real file from ../shared."""
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"{path} is absent: the original project's checkpoints live in ../shared "
        "beside the repository (CI has them)",
    )


def build_config(**overrides) -> DTConfig:
    """A tiny decision-transformer config (2 layers, d_model 32, 4 heads, 4 steps)."""
    defaults = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=11, seed=0)
    return DTConfig(**{**defaults, **overrides})


def build_model(**overrides) -> HookedDecisionTransformer:
    """A tiny seeded model in eval mode.

    Biases and LayerNorm weights are randomised (initialisation leaves them at 0 and 1),
    so no term of a computation is trivially zero or one and a test cannot pass with,
    say, a forgotten ``ln.w``.
    """
    model = HookedDecisionTransformer(build_config(**overrides)).eval()
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") and torch.count_nonzero(param) == 0:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            elif ".ln" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * torch.randn(param.shape, generator=generator))
    return model


def build_batch(
    batch_size: int = 2,
    n_steps: int = 4,
    obs_shape: tuple[int, int, int] = (7, 7, 20),
    n_actions: int = 7,
    seed: int = 0,
    final_action: bool = False,
    start_timestep: int = 0,
) -> TrajectoryBatch:
    """A random batch of 0/1 observations, actions, RTGs in [0, 1) and consecutive timesteps."""
    g = torch.Generator().manual_seed(seed)
    n_act = n_steps if final_action else n_steps - 1
    return TrajectoryBatch(
        obs=torch.randint(0, 2, (batch_size, n_steps, *obs_shape), generator=g).float(),
        actions=torch.randint(0, n_actions, (batch_size, n_act), generator=g),
        rtg=torch.rand(batch_size, n_steps, generator=g),
        timesteps=(torch.arange(n_steps) + start_timestep).repeat(batch_size, 1),
    )


def planner_demos(*spec: str, seed: int = 0):
    """Memory demonstrations of the planner at the recipe's logit scale (a few seconds).

    ``spec``: sampling groups ``"TEMPERATURE:EPISODES"``, e.g. ``planner_demos("1:30")``.
    """
    from dtlens.data.agents.planner import BoltzmannPlanner
    from dtlens.data.collect import collect_demonstrations

    return collect_demonstrations(
        BoltzmannPlanner(logit_scale=2.5),
        "MiniGrid-MemoryS7FixedStart-v0",
        list(spec),
        n_envs=8,
        seed=seed,
        show_progress=False,
    )


@pytest.fixture
def tiny_model() -> HookedDecisionTransformer:
    return build_model()


@pytest.fixture
def tiny_batch() -> TrajectoryBatch:
    return build_batch()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    Tiny models gain nothing from threads, and on a busy 2-core machine a second thread
    that waits for a core makes small forwards many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
