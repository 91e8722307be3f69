"""Context managers over torch's global state: its thread count and its random generator.

- :func:`torch_threads`: run a block (or a function) with a set number of intra-op
  threads. Rollouts and replays forward many tiny batches: a second thread only adds
  synchronisation, and on a busy machine, where it waits for a core, it makes these
  small ops many times slower. The analyses that play episodes run on one thread.
- :func:`seeded`: run a block on a forked, seeded generator (models and agents built
  with a seed), leaving the caller's random state as it was.

Examples:
    >>> import torch
    >>> from dtlens.torch_context import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from dtlens.errors import ConfigError

__all__ = ["seeded", "torch_threads"]


def torch_threads(n: int | None) -> AbstractContextManager[None]:
    """Torch intra-op threads set to ``n`` inside the block, restored after it (even on
    an error); ``None`` leaves them unchanged. Also usable as a decorator.

    Args:
        n: the number of threads, a positive int, or None.

    Raises:
        ConfigError: ``n`` is not a positive int or None (raised on the call, before
            any block runs).

    Examples:
        >>> @torch_threads(1)
        ... def threads():
        ...     return torch.get_num_threads()
        >>> threads()
        1
        >>> torch_threads(0)
        Traceback (most recent call last):
        ...
        dtlens.errors.ConfigError: torch_threads needs a positive int or None, got 0.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"torch_threads needs a positive int or None, got {n!r}.")
    return _threads(n)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Fork torch's CPU generator and seed it with ``seed`` for the block (None: no fork,
    the caller's generator is used as it is); the caller's random state is restored after.

    Example:
        >>> state = torch.random.get_rng_state()
        >>> with seeded(0):
        ...     first = torch.rand(2)
        >>> with seeded(0):
        ...     bool(torch.equal(torch.rand(2), first))
        True
        >>> torch.equal(torch.random.get_rng_state(), state)
        True
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
