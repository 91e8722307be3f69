"""`Curriculum`: training windows that change with the optimiser step.

A curriculum is a list of phases, each a window source used until a step; the
:class:`~dtlens.training.trainer.Trainer` asks it for the source of the step it is
about to take (:meth:`Curriculum.at`), so a resumed run picks the same phase as an
uninterrupted one. :func:`group_episodes` selects a phase's episodes by the sampling
groups recorded in the demonstrations' header.

Example:
    >>> curriculum = Curriculum([(1000, easy_sampler)], then=full_sampler)  # doctest: +SKIP
    >>> curriculum.at(0) is easy_sampler, curriculum.at(1000) is full_sampler  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dtlens.data.demonstrations import Demonstrations
from dtlens.data.windows import TrainingWindows
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch

__all__ = ["Curriculum", "Mixture", "group_episodes"]


class Mixture:
    """Each batch: fixed shares of windows from some sources, the rest from ``main``.

    ``sample(B)`` draws ``round(share * B)`` windows from each ``(share, source)`` in
    order, then the rest from ``main``, and concatenates them (the same generator, so
    a batch is reproducible).

    Example:
        >>> mix = Mixture([(0.25, replayed)], main=full)  # doctest: +SKIP
        >>> mix.sample(128, generator).batch.batch_size  # doctest: +SKIP
        128
    """

    def __init__(self, parts: Sequence[tuple[float, Any]], main: Any):
        shares = [float(share) for share, _ in parts]
        if any(not 0.0 <= x <= 1.0 for x in shares) or sum(shares) > 1.0:
            raise ConfigError(f"mixture shares must be in [0, 1] and sum to <= 1, got {shares}")
        self.parts = [(float(share), source) for share, source in parts]
        self.main = main

    def counts(self, batch_size: int) -> list[int]:
        """Windows drawn from each part, then from ``main``: they sum to ``batch_size``.

        Example:
            >>> Mixture([(0.25, "a"), (0.1, "b")], main="c").counts(128)
            [32, 13, 83]
        """
        counts = [round(share * batch_size) for share, _ in self.parts]
        return [*counts, batch_size - sum(counts)]

    def sample(self, batch_size: int, generator: torch.Generator) -> TrainingWindows:
        """``batch_size`` windows: the parts' shares first, then ``main``'s."""
        sources = [source for _, source in self.parts] + [self.main]
        pieces = [
            source.sample(n, generator)
            for n, source in zip(self.counts(batch_size), sources, strict=True)
            if n > 0
        ]
        if len(pieces) == 1:
            return pieces[0]
        return TrainingWindows(
            batch=TrajectoryBatch.cat([p.batch for p in pieces]),
            targets=torch.cat([p.targets for p in pieces]),
            loss_mask=torch.cat([p.loss_mask for p in pieces]),
        )


class Curriculum:
    """Phase i's window source for steps before ``until_step_i``, then ``then``.

    A phase may be *replayed* after it ends: ``replay`` (one share per phase) keeps
    drawing that share of every later batch from the phase's windows (a
    :class:`Mixture`), so what a phase taught stays in the data.

    Args:
        phases: ``(until_step, source)`` pairs with rising ``until_step``.
        then: the source after the last phase.
        replay: per phase, the share of each later batch drawn from its source
            (default none).

    Example:
        >>> c = Curriculum([(2, "a"), (5, "b")], then="c")
        >>> "".join(c.at(s) for s in (0, 1, 2, 4, 5, 99))
        'aabbcc'
        >>> later = Curriculum([(2, "a")], then="c", replay=[0.25]).at(2)
        >>> later.parts, later.main
        ([(0.25, 'a')], 'c')
    """

    def __init__(
        self,
        phases: Sequence[tuple[int, Any]],
        then: Any,
        replay: Sequence[float] | None = None,
    ):
        ends = [int(until) for until, _ in phases]
        if any(b <= a for a, b in itertools.pairwise(ends)):
            raise ConfigError(f"curriculum phase ends must rise, got {ends}")
        replay = [0.0] * len(ends) if replay is None else [float(r) for r in replay]
        if len(replay) != len(ends):
            raise ConfigError(f"replay needs one share per phase ({len(ends)}), got {replay}")
        self.phases = [(int(until), source) for until, source in phases]
        self.then = then
        self.replay = replay
        self._later: dict[int, Any] = {}

    def at(self, step: int) -> Any:
        """The window source of optimiser step ``step`` (0-based)."""
        for i, (until, source) in enumerate(self.phases):
            if step < until:
                return self._with_replay(i, source)
        return self._with_replay(len(self.phases), self.then)

    def _with_replay(self, index: int, source: Any) -> Any:
        """``source``, mixed with the replayed shares of the phases before ``index``."""
        parts = [
            (share, phase)
            for share, (_, phase) in zip(self.replay[:index], self.phases[:index], strict=True)
            if share > 0
        ]
        if not parts:
            return source
        if index not in self._later:
            self._later[index] = Mixture(parts, main=source)
        return self._later[index]

    def sample(self, batch_size: int, generator: torch.Generator) -> Any:
        """Windows from the main (last) source: what a caller without a step gets."""
        return self.then.sample(batch_size, generator)


def group_episodes(demos: Demonstrations, labels: Sequence[str]) -> np.ndarray:
    """Sorted episode indices of the sampling groups named by ``labels``.

    A label is a full group label (``"part0/temperature=1"``) or one without its part
    (``"temperature=1"``: that group in every collection part).

    Raises:
        ConfigError: a label matches no group (the message lists the groups).

    Example:
        >>> group_episodes(demos, ["temperature=1"])[:3]  # doctest: +SKIP
        array([0, 1, 2])
    """
    groups = demos.groups()
    chosen = []
    for label in labels:
        hits = [idx for name, idx in groups.items() if label in (name, name.split("/", 1)[-1])]
        if not hits:
            raise ConfigError(
                f"no sampling group {label!r} in the demonstrations; they have "
                f"{sorted(groups) or 'no recorded groups'}"
            )
        chosen.extend(hits)
    return np.unique(np.concatenate(chosen)).astype(np.int64)
