"""Training windows: fixed-length, left-padded slices of demonstrations for a trainer.

A window of ``n_steps`` ends at one step of one episode and holds that step and up to
``n_steps - 1`` steps before it. Windows that reach back before the episode's first
step are left-padded with :meth:`dtlens.model.TrajectoryBatch.left_pad`'s recipe (zero
observations, the pad action, the RTG of the first real step, timestep 0) and marked
in ``padding_mask``, so a model sees exactly the padding it gets at evaluation time.

Examples:
    >>> import numpy as np, torch
    >>> from dtlens.data.demonstrations import Demonstrations
    >>> demos = Demonstrations(
    ...     obs=np.zeros((3, 7, 7, 3), np.uint8), actions=np.array([2, 2, 1]),
    ...     rewards=np.array([0, 0, 0.9], np.float32), timesteps=np.array([0, 1, 2]),
    ...     episode_starts=np.array([0]), terminated=np.array([True]),
    ...     truncated=np.array([False]), header={})
    >>> windows = next(WindowSampler(demos, n_steps=2).iterate(batch_size=3))
    >>> windows.batch.actions.tolist(), windows.targets.tolist()
    ([[7], [2], [2]], [[-100, 2], [2, 2], [2, 1]])
    >>> windows.loss_mask.tolist()
    [[False, True], [True, True], [True, True]]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from dtlens.data.demonstrations import Demonstrations
from dtlens.env.encoding import encode_observation
from dtlens.errors import BatchError, ConfigError
from dtlens.model.batch import TrajectoryBatch

__all__ = ["IGNORE_TARGET", "WEIGHTINGS", "TrainingWindows", "WindowSampler", "train_val_split"]

#: target value at padded steps (PyTorch's default ``ignore_index`` of ``cross_entropy``)
IGNORE_TARGET = -100
#: how :meth:`WindowSampler.sample` weighs window ends: per step or per episode
WEIGHTINGS = ("step", "episode")


@dataclass(frozen=True, eq=False)
class TrainingWindows:
    """One batch of training windows: the model input, the labels and the loss mask.

    Attributes:
        batch: ``obs`` one-hot float ``[B, T, 7, 7, 20]`` (or raw indices as float
            ``[B, T, 7, 7, 3]`` with ``one_hot=False``), ``actions`` ``[B, T-1]`` long,
            ``rtg`` ``[B, T]`` float, ``timesteps`` ``[B, T]`` long, ``padding_mask``
            ``[B, T]`` bool (True = real step).
        targets: long ``[B, T]``, the action taken at each step: the label for the
            prediction read at ``S_t``. ``IGNORE_TARGET`` (-100) at padded steps, so
            ``F.cross_entropy(logits.flatten(0, 1), targets.flatten())`` skips them.
        loss_mask: bool ``[B, T]``, True where a target exists and the step is real
            (every real step of a demonstration has its action, so this equals
            ``batch.padding_mask``).
    """

    batch: TrajectoryBatch
    targets: Int[Tensor, "batch step"]
    loss_mask: Bool[Tensor, "batch step"]


class WindowSampler:
    """Cut fixed-length training windows out of :class:`Demonstrations`.

    **Sampling distribution.** Every step of every selected episode ends exactly one
    window (its context: the last ``min(t + 1, n_steps)`` steps up to and including step
    ``t``). :meth:`sample` draws window ends uniformly over all steps of the selected
    episodes, with replacement (so an episode is drawn in proportion to its length and
    every step is an equally weighted training example); :meth:`iterate` yields every
    window exactly once, episode by episode and step by step.

    **Episode weighting.** With ``weighting="episode"`` :meth:`sample` first draws an
    episode uniformly, then a window end uniformly among its steps, so every episode
    weighs the same whatever its length. In the seed's data mix (1/3 of episodes at
    temperature 1, about 8 steps long; 2/3 at temperature 5, about 39 steps) step
    weighting gives the short, purposeful episodes under a tenth of the windows.

    **End bias.** With ``end_fraction = p > 0``, each sampled window is, with
    probability p, replaced by the window ending at the last step of the same episode
    (the original project's ``prob_go_from_end``, 0.15 for its MemoryDT). In Memory the
    last step is where the agent commits to a target, the one decision that needs the
    instruction remembered from the first observations; uniform sampling shows it in
    about one window in thirty and training stalls at a coin flip there.

    Args:
        demos: The demonstrations.
        n_steps: Window length T in timesteps (the model's ``cfg.n_timesteps``).
        pad_action: Action id used at padded steps (the model's ``n_actions``; its
            embedding row is the padding row).
        one_hot: Encode observations one-hot (``[..., 7, 7, 20]``); with False the raw
            ``[..., 7, 7, 3]`` indices are returned as float32.
        episode_indices: Restrict windows to these episodes (e.g. a train/val split
            from :func:`train_val_split`); default all.
        end_fraction: Probability that :meth:`sample` moves a window's end to its
            episode's last step (see "End bias"); 0 (default) keeps sampling uniform.
        weighting: ``"step"`` (default: every step equally likely to end a window) or
            ``"episode"`` (every episode equally likely; see "Episode weighting").

    Raises:
        ConfigError: For ``n_steps < 1``, a negative ``pad_action``, an episode index
            out of range, ``end_fraction`` outside [0, 1] or an unknown ``weighting``;
            BatchError if no episode is
            selected.

    Examples:
        >>> import torch
        >>> from dtlens.data.demonstrations import Demonstrations
        >>> import numpy as np
        >>> d = Demonstrations(np.zeros((4, 7, 7, 3), np.uint8), np.array([2, 2, 2, 1]),
        ...     np.zeros(4, np.float32), np.array([0, 1, 0, 1]), np.array([0, 2]),
        ...     np.array([False, False]), np.array([True, True]), {})
        >>> w = WindowSampler(d, n_steps=3).sample(5, torch.Generator().manual_seed(0))
        >>> w.batch.obs.shape, w.targets.shape
        (torch.Size([5, 3, 7, 7, 20]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        demos: Demonstrations,
        n_steps: int,
        pad_action: int = 7,
        one_hot: bool = True,
        episode_indices: np.ndarray | None = None,
        end_fraction: float = 0.0,
        weighting: str = "step",
    ):
        if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
            raise ConfigError(f"n_steps must be a positive int, got {n_steps!r}")
        if isinstance(pad_action, bool) or not isinstance(pad_action, int | np.integer):
            raise ConfigError(f"pad_action must be an int, got {pad_action!r}")
        if pad_action < 0:
            raise ConfigError(f"pad_action must be >= 0 (the model's n_actions), got {pad_action}")
        self.demos = demos
        self.n_steps = int(n_steps)
        if isinstance(end_fraction, bool) or not isinstance(end_fraction, float | int):
            raise ConfigError(f"end_fraction must be a float in [0, 1], got {end_fraction!r}")
        if not 0.0 <= end_fraction <= 1.0:
            raise ConfigError(f"end_fraction must be in [0, 1], got {end_fraction}")
        self.pad_action = int(pad_action)
        self.one_hot = bool(one_hot)
        self.end_fraction = float(end_fraction)
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        if episode_indices is None:
            episodes = np.arange(demos.n_episodes)
        else:
            episodes = np.asarray(episode_indices).reshape(-1)
            if episodes.size and episodes.dtype.kind not in "iu":
                raise ConfigError(f"episode_indices must be integers, got dtype {episodes.dtype}")
            bad = episodes[(episodes < 0) | (episodes >= demos.n_episodes)]
            if bad.size:
                raise ConfigError(
                    f"episode index {int(bad[0])} out of range for {demos.n_episodes} episodes"
                )
        if episodes.size == 0:
            raise BatchError("no episodes to cut windows from (empty demonstrations or selection)")
        self.episode_indices = episodes.astype(np.int64)
        starts, lengths = demos.episode_starts[episodes], demos.episode_lengths[episodes]
        #: global index of every window's last step, and of its episode's first step
        self._ends = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)]
        )
        self._starts = np.repeat(starts, lengths)
        #: for every window, the index of the window ending at its episode's last step
        self._episode_last = np.repeat(np.cumsum(lengths) - 1, lengths)
        self._episode_first = np.cumsum(lengths) - lengths  # window index of each first step
        self._episode_lengths = lengths.astype(np.int64)
        self._rtg = torch.from_numpy(demos.rtg)

    def __len__(self) -> int:
        """The number of distinct windows (= steps of the selected episodes)."""
        return int(self._ends.size)

    def sample(self, batch_size: int, generator: torch.Generator) -> TrainingWindows:
        """``batch_size`` windows ending at steps drawn uniformly (with replacement).

        With ``weighting="episode"`` the episode is drawn first (uniformly), then the
        end among its steps. With ``end_fraction > 0`` each window then moves to its
        episode's last step with that probability (one extra uniform draw per window
        from ``generator``).

        Examples:
            >>> w = sampler.sample(64, torch.Generator().manual_seed(0))  # doctest: +SKIP
            >>> logits = model.action_logits(w.batch)  # doctest: +SKIP
            >>> loss = F.cross_entropy(logits.flatten(0, 1), w.targets.flatten())  # doctest: +SKIP
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if self.weighting == "episode":
            n_episodes = len(self._episode_first)
            episode = torch.randint(n_episodes, (batch_size,), generator=generator).numpy()
            offset = torch.rand(batch_size, generator=generator).numpy()
            within = np.floor(offset * self._episode_lengths[episode]).astype(np.int64)
            pick = self._episode_first[episode] + within
        else:
            pick = torch.randint(len(self), (batch_size,), generator=generator).numpy()
        if self.end_fraction > 0:
            to_end = torch.rand(batch_size, generator=generator).numpy() < self.end_fraction
            pick = np.where(to_end, self._episode_last[pick], pick)
        return self._windows(pick)

    def iterate(self, batch_size: int) -> Iterator[TrainingWindows]:
        """Every window once, in episode then step order (the last batch may be smaller).

        Examples:
            >>> n = sum(w.loss_mask.sum() for w in sampler.iterate(256))  # doctest: +SKIP
            >>> n == len(sampler)  # doctest: +SKIP
            True
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        for first in range(0, len(self), batch_size):
            yield self._windows(np.arange(first, min(first + batch_size, len(self))))

    def windows_ending_at(self, steps: np.ndarray) -> TrainingWindows:
        """The windows that end at these global step indices (steps of selected episodes).

        Raises:
            ConfigError: a step is not a step of the sampler's episodes.

        Examples:
            >>> w = sampler.windows_ending_at(np.array([5, 9]))  # doctest: +SKIP
            >>> w.targets[:, -1]  # doctest: +SKIP
            tensor([2, 1])
        """
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        order = np.argsort(self._ends, kind="stable")
        where = np.searchsorted(self._ends, steps, sorter=order)
        found = where < len(order)
        found[found] = self._ends[order[where[found]]] == steps[found]
        if not found.all():
            raise ConfigError(
                f"step {int(steps[~found][0])} is not a step of this sampler's episodes; "
                "pick steps from its episode_indices"
            )
        return self._windows(order[where])

    def _windows(self, pick: np.ndarray) -> TrainingWindows:
        ends, starts = self._ends[pick], self._starts[pick]
        index = ends[:, None] + np.arange(1 - self.n_steps, 1)[None, :]  # [B, T]
        real = index >= starts[:, None]
        first_real = np.maximum(index[:, 0], starts)
        safe = np.where(real, index, first_real[:, None])  # padded slots read a real step

        demos = self.demos
        real_t = torch.from_numpy(real)
        obs = torch.from_numpy(demos.obs[safe])
        obs = encode_observation(obs) if self.one_hot else obs.float()
        obs[~real_t] = 0  # padding: zero observations
        actions = torch.from_numpy(demos.actions[safe])
        timesteps = torch.from_numpy(demos.timesteps[safe]).masked_fill(~real_t, 0)
        targets = actions.masked_fill(~real_t, IGNORE_TARGET)
        rtg = self._rtg[torch.from_numpy(safe)]  # padded slots hold the first real step's RTG
        batch = TrajectoryBatch(
            obs=obs,
            actions=actions[:, :-1].masked_fill(~real_t[:, :-1], self.pad_action),
            rtg=rtg,
            timesteps=timesteps,
            padding_mask=real_t,
        )
        return TrainingWindows(batch=batch, targets=targets, loss_mask=real_t.clone())


def train_val_split(
    demos: Demonstrations, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split episodes (never steps of one episode) into train and validation sets.

    ``round(val_fraction * E)`` episodes, drawn uniformly without replacement with
    ``numpy.random.default_rng(seed)``, go to validation; both index arrays are sorted.

    Raises:
        ConfigError: If ``val_fraction`` is not in ``[0, 1)``.

    Examples:
        >>> from dtlens.data.demonstrations import Demonstrations
        >>> import numpy as np
        >>> d = Demonstrations(np.zeros((4, 7, 7, 3), np.uint8), np.zeros(4, np.int64),
        ...     np.zeros(4, np.float32), np.zeros(4, np.int64), np.arange(4),
        ...     np.ones(4, bool), np.zeros(4, bool), {})
        >>> train, val = train_val_split(d, 0.25, seed=0)
        >>> len(train), len(val), sorted(np.concatenate([train, val]).tolist())
        (3, 1, [0, 1, 2, 3])
    """
    if not isinstance(val_fraction, float | int) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = round(val_fraction * demos.n_episodes)
    order = np.random.default_rng(seed).permutation(demos.n_episodes)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)
