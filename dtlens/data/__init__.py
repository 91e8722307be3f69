"""Demonstrations: agents that play the env, collection, the on-disk format, training windows.

Data flows one way: an agent (:mod:`dtlens.data.agents`) is played by
:func:`collect_demonstrations` into :class:`Demonstrations` (saved as ``.npz``), from
which :class:`WindowSampler` cuts the left-padded :class:`TrainingWindows` a trainer
consumes.

Examples:
    >>> from dtlens.data import BoltzmannPlanner, WindowSampler, collect_demonstrations
    >>> demos = collect_demonstrations(BoltzmannPlanner(), "MiniGrid-MemoryS7FixedStart-v0",
    ...                                ["greedy:2"], n_envs=2, show_progress=False)
    >>> windows = next(WindowSampler(demos, n_steps=8).iterate(batch_size=12))
    >>> windows.batch.obs.shape, int(windows.loss_mask.sum())
    (torch.Size([12, 8, 7, 7, 20]), 42)
"""

from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import SamplingSpec, collect_demonstrations, parse_sampling_spec
from dtlens.data.demonstrations import Demonstrations, Episode, merge_headers
from dtlens.data.windows import IGNORE_TARGET, TrainingWindows, WindowSampler, train_val_split

__all__ = [
    "IGNORE_TARGET",
    "BoltzmannPlanner",
    "Demonstrations",
    "Episode",
    "SamplingSpec",
    "TrainingWindows",
    "WindowSampler",
    "collect_demonstrations",
    "merge_headers",
    "parse_sampling_spec",
    "train_val_split",
]
