"""Running one model from several threads: :func:`hooks_lock`.

A model that runs hooks is **not thread-safe**. TransformerLens keeps hooks on the
model's modules (each ``HookPoint`` holds its forward hooks), not on the call:
``run_with_cache`` and ``run_with_hooks`` add hooks, run the forward and remove them,
and every analysis of :mod:`dtlens.analysis` (patching, attribution, path patching)
does the same. Two such calls on one model in two threads at once see each other's
hooks: a cache gets the other call's activations, a patch is applied to the other
call's forward, and one call's clean-up removes the other's hooks half-way. Even a plain
forward (no hooks of its own) runs any hook another thread has added meanwhile.

So whoever shares a model between threads (a web server answering requests in
parallel, a thread pool of analyses) holds the model's :func:`hooks_lock` around every
forward that may overlap another. The live app (:mod:`dtlens.app`) does so for every
forward it runs. Different models need no lock between them, and a model used by one
thread at a time needs none.

Example:
    >>> import threading, torch
    >>> from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch
    >>> model = HookedDecisionTransformer(DTConfig(n_layers=1, d_model=16, n_heads=2,
    ...                                            d_mlp=32, n_ctx=8, seed=0)).eval()
    >>> batch = TrajectoryBatch(torch.zeros(1, 3, 7, 7, 20), torch.zeros(1, 2, dtype=torch.long),
    ...                         torch.full((1, 3), 0.9), torch.arange(3)[None])
    >>> def analyse(results):
    ...     with hooks_lock(model), torch.no_grad():  # one hooked forward at a time
    ...         logits, cache = model.run_with_cache(batch)
    ...     results.append(cache["blocks.0.attn.hook_pattern"])
    >>> results = []
    >>> threads = [threading.Thread(target=analyse, args=(results,)) for _ in range(4)]
    >>> for thread in threads: thread.start()
    >>> for thread in threads: thread.join()
    >>> all(torch.equal(r, results[0]) for r in results)
    True
    >>> hooks_lock(model) is hooks_lock(model)  # one lock per model
    True
"""

from __future__ import annotations

import threading
import weakref

import torch

from dtlens.errors import ConfigError

__all__ = ["hooks_lock"]

#: model -> its lock; entries go away with their models.
_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
#: guards _LOCKS itself (two threads asking for a new model's lock get the same one).
_REGISTRY = threading.Lock()


def hooks_lock(model: torch.nn.Module) -> threading.RLock:
    """The lock to hold while running ``model`` when other threads may run it too.

    One lock per model (the same object on every call, for as long as the model
    lives), re-entrant: a thread holding it may take it again, so a function that
    locks can call another that locks. It serialises the forwards of one model; it
    does not make a forward faster or slower. When code holds other locks as well
    (the live app holds a page's lock), take this one last, so two threads never
    wait for each other.

    Args:
        model: the model (a :class:`~dtlens.model.HookedDecisionTransformer`, or any
            ``torch.nn.Module`` whose hooks live on its modules).

    Returns:
        A ``threading.RLock``; use it as ``with hooks_lock(model): ...``.

    Raises:
        ConfigError: ``model`` is not a ``torch.nn.Module``.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> with hooks_lock(layer):
        ...     out = layer(torch.zeros(1, 2))
        >>> hooks_lock("memorydt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.ConfigError: hooks_lock needs the model object ... got 'memorydt' (a str)...
    """
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"hooks_lock needs the model object (a torch.nn.Module), got {model!r} (a "
            f"{type(model).__name__}); load it first, e.g. hooks_lock(dtlens.load('memorydt'))."
        )
    with _REGISTRY:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
