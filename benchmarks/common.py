"""What the patching benchmarks share: a MemoryDT-sized model, random windows, a metric, a timer.

Imported by ``benchmarks/bench_activation_patching.py``,
``benchmarks/bench_path_patching.py`` and ``benchmarks/bench_circuits.py`` (its timer;
run them as scripts from the repository root: Python puts ``benchmarks/`` on the import
path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch

T = TypeVar("T")

#: timesteps per window (26 tokens: the MemoryDT's context)
N_STEPS = 9


def memorydt_sized_model() -> HookedDecisionTransformer:
    """3 layers, d_model 256, 8 heads, d_mlp 256, 26 tokens (the MemoryDT's shape)."""
    cfg = DTConfig(n_layers=3, d_model=256, n_heads=8, d_mlp=256, n_ctx=26, seed=0)
    return HookedDecisionTransformer(cfg).eval()


def random_batch(n: int, seed: int) -> TrajectoryBatch:
    """``n`` random one-hot-ish windows of ``N_STEPS`` steps."""
    g = torch.Generator().manual_seed(seed)
    return TrajectoryBatch(
        obs=torch.randint(0, 2, (n, N_STEPS, 7, 7, 20), generator=g).float(),
        actions=torch.randint(0, 7, (n, N_STEPS - 1), generator=g),
        rtg=torch.rand(n, N_STEPS, generator=g),
        timesteps=torch.arange(N_STEPS).repeat(n, 1),
    )


def metric(logits: Tensor) -> Tensor:
    """Logit difference left - right at the last state token, per pair."""
    return logits[:, -1, 0] - logits[:, -1, 1]


def best_time(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """The best wall time of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out
