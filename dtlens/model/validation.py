"""Checks of user input that are not a batch's: hook functions and head indices.

Importing this module imports no torch (circuit nodes and configs use it).

- :func:`checked_hook` wraps a user's hook function so that a wrong return value
  raises a :class:`~dtlens.errors.HookShapeError` naming the hook, instead of a
  ``RuntimeError`` from deep inside torch naming none.
- :func:`check_head` refuses a head index outside ``0..n_heads - 1``. Negative indices
  are refused on purpose: Python's ``-1`` would silently pick the last head, and
  every head in dtlens' results is labelled by its non-negative index (``L0H3``).

Examples:
    >>> import torch
    >>> from dtlens.model.validation import checked_hook, check_head
    >>> hook = checked_hook("hook_rtg_embed", lambda act, hook: act[..., :1])
    >>> hook(torch.zeros(2, 3, 8), hook=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dtlens.errors.HookShapeError: hook function <lambda> on 'hook_rtg_embed' returned ...
    >>> check_head(3, n_heads=4)  # None: a valid head
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

from dtlens.errors import HeadIndexError, HookShapeError

__all__ = ["check_head", "checked_hook", "is_head_index", "negative_head_hint"]


def checked_hook(name: str | Callable[[str], bool], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped so that it must return None or a tensor of its activation's shape.

    TransformerLens uses a forward hook's return value as the activation from then
    on. A tensor of another shape (a forgotten ``[..., None]``, a sliced head) would
    fail later inside torch with a message that names no hook; the wrapper raises
    at the hook instead.

    Args:
        name: the hook name (or name filter) the function is added under; a filter's
            hook is named by the hook point it fires at.
        fn: the hook function, called as ``fn(activation, hook=hook_point)``.

    Returns:
        A function with ``fn``'s name and docstring that returns what ``fn`` returns.

    Raises:
        HookShapeError: when the wrapped function returns a tensor of another shape,
            or something that is neither None nor a tensor (names the hook, the
            function and both shapes).

    Examples:
        >>> import torch
        >>> double = checked_hook("blocks.0.hook_resid_pre", lambda act, hook: 2 * act)
        >>> double(torch.ones(1, 2), hook=None).tolist()
        [[2.0, 2.0]]
    """
    from torch import Tensor  # here, so that importing this module costs no torch import

    @functools.wraps(fn)
    def wrapper(activation: Any, *args: Any, **kwargs: Any) -> Any:
        out = fn(activation, *args, **kwargs)
        if out is None or not isinstance(activation, Tensor):
            return out
        if isinstance(out, Tensor) and out.shape == activation.shape:
            return out
        got = (
            f"a tensor of shape {list(out.shape)}"
            if isinstance(out, Tensor)
            else f"a {type(out).__name__}"
        )
        hook_point = kwargs.get("hook", args[0] if args else None)
        raise HookShapeError(
            f"hook function {_fn_name(fn)} on {_hook_name(name, hook_point)!r} "
            f"returned {got}, but the activation has shape {list(activation.shape)}; "
            "return a tensor of the activation's shape (e.g. edit a copy: "
            "out = act.clone(); out[...] = ...; return out), or return None to leave "
            "the activation as it is."
        )

    return wrapper


def check_head(head: object, n_heads: int, what: str = "head") -> None:
    """Raise HeadIndexError unless ``head`` is an int in ``0..n_heads - 1``.

    Args:
        head: the index to check (bools, floats and negative ints are refused).
        n_heads: heads per layer (``model.cfg.n_heads``).
        what: how the message names the index.

    Examples:
        >>> check_head(-1, n_heads=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dtlens.errors.HeadIndexError: head=-1 must be an int in 0..3 (n_heads=4); negative ...
    """
    if is_head_index(head, n_heads):
        return
    got = "" if _as_int(head) is not None else f", got a {type(head).__name__}"
    raise HeadIndexError(
        f"{what}={head!r} must be an int in 0..{n_heads - 1} (n_heads={n_heads}){got}"
        f"{negative_head_hint(head, n_heads)}."
    )


def is_head_index(head: object, n_heads: int) -> bool:
    """Whether ``head`` is an integer (not a bool; numpy ints count) in ``0..n_heads - 1``."""
    index = _as_int(head)
    return index is not None and 0 <= index < n_heads


def negative_head_hint(head: object, n_heads: int) -> str:
    """The end of a message refusing a negative head index (empty for other values)."""
    index = _as_int(head)
    if index is not None and index < 0:
        return (
            f"; negative indices are refused (Python's -1 would silently pick the last "
            f"head): pass {n_heads - 1} for the last head"
        )
    return ""


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (``operator.index``), not a bool; else None."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _fn_name(fn: Callable[..., Any]) -> str:
    base = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(base, "__name__", None) or repr(fn)


def _hook_name(name: str | Callable[[str], bool], hook: Any) -> str:
    if isinstance(name, str):
        return name
    return str(getattr(hook, "name", None) or getattr(name, "__name__", "a name filter"))
