"""Metrics on a model's action logits, and the normalised effect of a patch.

All metrics read logits shaped ``[batch, n_tokens, n_actions]`` (what ``model(batch)``
returns; extra leading dimensions are allowed) at the *state token* of one timestep,
where a decision transformer predicts that step's action, and return one value per
batch row.

Which token position: a window of T steps has tokens ``R1, S1, A1, ..., RT, ST[, AT]``
(``3T - 1`` tokens, or ``3T`` with the final action), so S_t (t counted from 0) sits at
``3t + 1``. A behavioural clone (``S, A`` per step, ``tokens_per_step=2``) has S_t at
``2t``. ``tokens_per_step=1`` means the logits are already one per step (e.g.
``model.action_logits(batch)``). Pass ``model=`` to take ``tokens_per_step`` from its
config (and the state positions from ``model.state_positions``); otherwise pass
``tokens_per_step`` (default 3, a decision transformer). ``timestep`` indexes the
window, negative from the end; the default ``-1`` is the last step, the one whose
action the model is asked for.

Patching directions (for :func:`patching_effect` and activation-patching sweeps):

- ``"denoise"``: run the *corrupt* input and patch in activations from the *clean*
  run. ``(patched - corrupt) / (clean - corrupt)`` (= :func:`restored_logit_diff`):
  0 = the patch has no effect, 1 = it fully restores the clean metric.
- ``"noise"``: run the *clean* input and patch in activations from the *corrupt* run.
  ``(clean - patched) / (clean - corrupt)`` (= 1 - restored): 0 = no effect,
  1 = the patch alone turns the clean metric into the corrupt one.

In both, ``clean`` and ``corrupt`` are the metric on the unpatched clean and corrupt
runs and ``patched`` the metric on the patched run; values outside [0, 1] mean the
patch overshoots.

Examples:
    >>> import torch
    >>> logits = torch.zeros(1, 5, 7)  # 2 steps: R1 S1 A1 R2 S2
    >>> logits[0, 4, 0], logits[0, 4, 1] = 3.0, 1.0  # at S2: left 3, right 1
    >>> logit_diff(logits, "left", "right").tolist()
    [2.0]
    >>> metric = make_logit_diff_metric("left", "right")
    >>> metric.name, metric(logits).tolist()
    ('logit diff left - right at S[-1]', [2.0])
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.env.actions import ACTION_INDEX, ACTION_NAMES
from dtlens.errors import BatchError, ConfigError, DTLensError, MetricError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "Metric",
    "MetricFn",
    "action_entropy",
    "action_probability",
    "logit_diff",
    "make_action_entropy_metric",
    "make_action_probability_metric",
    "make_logit_diff_metric",
    "metric_name",
    "metric_values",
    "patching_effect",
    "restored_logit_diff",
    "state_token_position",
]

Logits = Float[Tensor, "*batch pos action"]
Action = int | str

#: The one metric type of every analysis: ``logits [B, n_tokens, n_actions]`` -> either
#: ``[B]``, one value per clean/corrupt pair (per-pair restored fractions, per-pair
#: ``info``), or a 0-d tensor, one number for the B pairs as a TransformerLens user
#: writes it (``lambda logits: (logits[:, -1, 0] - logits[:, -1, 1]).mean()``). Analyses
#: call it once per patch on that patch's B rows, so both kinds mean the same thing as
#: in a one-forward-per-patch loop. :class:`Metric` is a named one.
MetricFn = Callable[[Logits], Float[Tensor, " batch"] | Float[Tensor, ""]]


@dataclass(frozen=True)
class Metric:
    """A named metric ``logits [batch, pos, action] -> [batch]`` for patching sweeps.

    Attributes:
        name: a human-readable name (plot titles, ``PatchingResult.metric_name``).
        fn: the function computing it.

    Examples:
        >>> import torch
        >>> m = Metric("sum of logits", lambda logits: logits.sum((-1, -2)))
        >>> m(torch.ones(2, 5, 7)).tolist(), m.name
        ([35.0, 35.0], 'sum of logits')
    """

    name: str
    fn: Callable[[Logits], Float[Tensor, "*batch"]]

    def __call__(self, logits: Logits) -> Float[Tensor, "*batch"]:
        """The metric of each batch row."""
        return self.fn(logits)


def metric_values(metric: MetricFn, logits: Logits, n_pairs: int) -> Float[Tensor, " value"]:
    """``metric(logits)`` checked and flattened: ``[n_pairs]`` (per pair) or ``[1]`` (a scalar).

    Args:
        metric: a :data:`MetricFn`.
        logits: the logits of one run (or one patch) of ``n_pairs`` rows.
        n_pairs: B, the number of rows.

    Raises:
        MetricError: the metric returned something else (the message shows its shape and
            both accepted ones), or a value that is NaN or infinite (a DTLensError).

    Examples:
        >>> logits = torch.zeros(3, 5, 7)
        >>> metric_values(lambda x: x[:, -1, 0] - x[:, -1, 1], logits, 3).shape
        torch.Size([3])
        >>> metric_values(lambda x: (x[:, -1, 0] - x[:, -1, 1]).mean(), logits, 3).shape
        torch.Size([1])
    """
    values = metric(logits)
    if not isinstance(values, Tensor) or tuple(values.shape) not in ((n_pairs,), ()):
        got = list(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise MetricError(
            f"a metric must map logits [B, n_tokens, n_actions] = {list(logits.shape)} to one "
            f"value per pair, shape [B] = [{n_pairs}], or to one scalar (shape []); got {got}. "
            "Reduce over positions and actions (e.g. logits[:, -1, 0] - logits[:, -1, 1]), "
            "and over the batch only for a scalar (.mean())."
        )
    values = values.detach().float().reshape(-1)
    if not bool(torch.isfinite(values).all()):
        raise MetricError(
            f"the metric returned non-finite values {values[~torch.isfinite(values)][:5].tolist()}"
            "; check it on the clean and corrupt logits (a log of 0? a division by a zero gap?)."
        )
    return values


def metric_name(metric: MetricFn, normalize: bool = False) -> str:
    """The name an analysis shows for ``metric``: its ``name``, its function name or "metric".

    With ``normalize`` it is the restored fraction of that metric.

    Example:
        >>> metric_name(make_logit_diff_metric("left", "right"), normalize=True)
        'restored fraction of logit diff left - right at S[-1]'
    """
    name = getattr(metric, "name", None) or getattr(metric, "__name__", "metric")
    name = "metric" if name == "<lambda>" else str(name)
    return f"restored fraction of {name}" if normalize else name


def state_token_position(
    n_tokens: int,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
) -> int:
    """Token position of the state token S_t whose logits predict step ``timestep``.

    Args:
        n_tokens: the logits' position axis length (``3T - 1`` or ``3T`` for a DT).
        timestep: window index of the step, negative from the end.
        model: take ``tokens_per_step`` and state positions from this model.
        tokens_per_step: 3 (R, S, A), 2 (S, A) or 1 (logits already per step);
            default 3, or the model's.

    Raises:
        ConfigError: if ``tokens_per_step`` is not 1, 2 or 3, or disagrees with ``model``.
        BatchError: if ``n_tokens`` is no valid window length or ``timestep`` is out
            of range.

    Examples:
        >>> state_token_position(26, -1), state_token_position(26, 4), state_token_position(9, 0)
        (25, 13, 1)
    """
    per = _tokens_per_step(model, tokens_per_step)
    n_steps = math.ceil(n_tokens / per)
    if n_tokens <= 0 or n_tokens < per * n_steps - 1:
        raise BatchError(
            f"logits have {n_tokens} token positions; with {per} tokens per step a window of "
            f"T steps has {per}T - 1 or {per}T (e.g. {per * n_steps - per - 1} or "
            f"{per * n_steps - per}), ending with a state token"
        )
    if isinstance(timestep, bool) or not isinstance(timestep, int):
        raise BatchError(f"timestep must be an int window index, got {timestep!r}")
    if not -n_steps <= timestep < n_steps:
        raise BatchError(
            f"timestep {timestep} is out of range for logits of a {n_steps}-step window "
            f"({n_tokens} tokens); expected -{n_steps}..{n_steps - 1}"
        )
    if model is not None and per > 1:
        return model.state_positions(n_steps)[timestep]
    return per * (timestep % n_steps) + max(per - 2, 0)


def logit_diff(
    logits: Logits,
    action_a: Action,
    action_b: Action,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
    exclude_bias: bool = False,
) -> Float[Tensor, "*batch"]:
    """``logit[action_a] - logit[action_b]`` at the state token of ``timestep``.

    Args:
        logits: ``[batch, n_tokens, n_actions]`` from ``model(batch)``.
        action_a: the action whose preference is measured (index or name, e.g. ``"left"``).
        action_b: the action compared against.
        timestep: window index (default the last step); see the module docstring.
        model: supplies ``tokens_per_step`` and, for ``exclude_bias``, ``b_U``.
        tokens_per_step: used without ``model`` (default 3).
        exclude_bias: subtract the head bias' share ``b_U[a] - b_U[b]``, leaving the
            part of the difference the residual stream writes (as direct logit
            attribution sees it). Needs ``model``.

    Raises:
        BatchError: for a bad logits shape, timestep or action index.
        DTLensError: for ``exclude_bias`` without ``model``.

    Examples:
        >>> import torch
        >>> logits = torch.arange(2 * 8 * 7.0).reshape(2, 8, 7)  # 3 steps, no final action
        >>> logit_diff(logits, 2, 0, timestep=0).tolist()  # at S1 (position 1)
        [2.0, 2.0]
    """
    a, b = _action(action_a, logits), _action(action_b, logits)
    at = _at_state(logits, timestep, model, tokens_per_step)
    diff = at[..., a] - at[..., b]
    if exclude_bias:
        if model is None:
            raise DTLensError(
                "logit_diff(exclude_bias=True) needs model= to read the head bias b_U"
            )
        b_u = model.b_U.detach().to(diff)
        diff = diff - (b_u[a] - b_u[b])
    return diff


def action_probability(
    logits: Logits,
    action: Action,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
) -> Float[Tensor, "*batch"]:
    """Softmax probability of ``action`` at the state token of ``timestep``.

    Examples:
        >>> import torch
        >>> action_probability(torch.zeros(3, 5, 4), "forward").tolist()
        [0.25, 0.25, 0.25]
    """
    a = _action(action, logits)
    return _at_state(logits, timestep, model, tokens_per_step).softmax(-1)[..., a]


def action_entropy(
    logits: Logits,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
) -> Float[Tensor, "*batch"]:
    """Entropy (in nats) of the action distribution at the state token of ``timestep``.

    The seed post notes RTG 0 makes MemoryDT's preferences far more diffuse; this
    measures that.

    Examples:
        >>> import torch
        >>> round(action_entropy(torch.zeros(1, 5, 4)).item(), 4) == round(math.log(4), 4)
        True
    """
    log_p = _at_state(logits, timestep, model, tokens_per_step).log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def restored_logit_diff(
    patched: Float[Tensor, "..."] | float,
    clean: Float[Tensor, "..."] | float,
    corrupt: Float[Tensor, "..."] | float,
    *,
    tol: float = 1e-5,
) -> Float[Tensor, "..."]:
    """``(patched - corrupt) / (clean - corrupt)``, elementwise with broadcasting.

    1 where the patched metric equals the clean one, 0 where it equals the corrupt one,
    whichever run was patched (see the module docstring for the two directions).

    Args:
        patched: metric of the patched run(s), e.g. ``[layer, pos, batch]`` or ``[batch]``.
        clean: metric of the clean run, broadcastable (e.g. ``[batch]``).
        corrupt: metric of the corrupt run, broadcastable.
        tol: ``|clean - corrupt|`` at or below this is treated as no difference.

    Raises:
        DTLensError: where ``clean`` and ``corrupt`` are within ``tol`` (the ratio would
            be meaningless); the message shows the values.

    Examples:
        >>> restored_logit_diff(torch.tensor([1.0, 2.0, 3.0]), 3.0, 1.0).tolist()
        [0.0, 0.5, 1.0]
    """
    patched, clean, corrupt = (
        torch.as_tensor(v, dtype=torch.float32) for v in (patched, clean, corrupt)
    )
    gap = clean - corrupt
    degenerate = gap.abs() <= tol
    if bool(degenerate.any()):
        where = degenerate.nonzero()[:5].tolist()
        clean_b, corrupt_b = torch.broadcast_tensors(clean, corrupt)
        pairs = [(float(clean_b[tuple(i)]), float(corrupt_b[tuple(i)])) for i in where]
        raise DTLensError(
            f"clean and corrupt metrics are equal within tol={tol} at {len(degenerate.nonzero())} "
            f"entries, e.g. index {where} with (clean, corrupt) = {pairs}; the restored "
            "fraction is undefined there. Pick a pair the model tells apart."
        )
    return (patched - corrupt) / gap


def restored_fraction(
    patched: Float[Tensor, "..."], clean: Float[Tensor, "..."], corrupt: Float[Tensor, "..."]
) -> Float[Tensor, "..."]:
    """:func:`restored_logit_diff` for the analyses with a ``normalize`` flag.

    The same ratio; its error also tells the caller that ``normalize=False`` gives
    the raw metric (used by the patching sweeps, path patching and the circuit runs).

    Raises:
        DTLensError: where ``clean`` and ``corrupt`` are equal (message ends with the
            ``normalize=False`` hint).

    Examples:
        >>> restored_fraction(torch.tensor([2.0]), torch.tensor([3.0]), torch.tensor([1.0]))
        tensor([0.5000])
        >>> restored_fraction(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0]))
        Traceback (most recent call last):
        dtlens.errors.DTLensError: clean and corrupt ... Or pass normalize=False for the raw metric.
    """
    try:
        return restored_logit_diff(patched, clean, corrupt)
    except DTLensError as err:
        raise DTLensError(f"{err} Or pass normalize=False for the raw metric.") from None


def patching_effect(
    patched: Float[Tensor, "..."] | float,
    clean: Float[Tensor, "..."] | float,
    corrupt: Float[Tensor, "..."] | float,
    direction: Literal["denoise", "noise"] = "denoise",
    *,
    tol: float = 1e-5,
) -> Float[Tensor, "..."]:
    """The patch's effect as a fraction of the clean-corrupt gap; 0 = no effect.

    ``"denoise"`` (corrupt run, clean activations): ``restored_logit_diff``, 1 = fully
    restored. ``"noise"`` (clean run, corrupt activations): ``1 - restored``, 1 = the
    patch alone fully corrupts.

    Raises:
        ConfigError: for another ``direction``.
        DTLensError: where ``clean`` and ``corrupt`` are within ``tol``.

    Examples:
        >>> patching_effect(3.0, 3.0, 1.0, "noise").item(), patching_effect(1.0, 3.0, 1.0).item()
        (0.0, 0.0)
    """
    if direction not in ("denoise", "noise"):
        raise ConfigError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    restored = restored_logit_diff(patched, clean, corrupt, tol=tol)
    return restored if direction == "denoise" else 1 - restored


def make_logit_diff_metric(
    action_a: Action,
    action_b: Action,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
    exclude_bias: bool = False,
) -> Metric:
    """:func:`logit_diff` with its arguments fixed, as a named ``Metric``.

    Examples:
        >>> make_logit_diff_metric(0, "right", timestep=4).name
        'logit diff left - right at S[4]'
    """
    kwargs = dict(model=model, tokens_per_step=tokens_per_step, exclude_bias=exclude_bias)
    name = f"logit diff {_name(action_a)} - {_name(action_b)} at S[{timestep}]"
    return Metric(
        name + (" (no head bias)" if exclude_bias else ""),
        partial(_logit_diff_fn, action_a, action_b, timestep, kwargs),
    )


def make_action_probability_metric(
    action: Action,
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
) -> Metric:
    """:func:`action_probability` as a named ``Metric``.

    Examples:
        >>> make_action_probability_metric("forward").name
        'P(forward) at S[-1]'
    """
    return Metric(
        f"P({_name(action)}) at S[{timestep}]",
        partial(
            _probability_fn, action, timestep, dict(model=model, tokens_per_step=tokens_per_step)
        ),
    )


def make_action_entropy_metric(
    timestep: int = -1,
    *,
    model: HookedDecisionTransformer | None = None,
    tokens_per_step: int | None = None,
) -> Metric:
    """:func:`action_entropy` as a named ``Metric``.

    Examples:
        >>> make_action_entropy_metric().name
        'action entropy at S[-1]'
    """
    return Metric(
        f"action entropy at S[{timestep}]",
        partial(_entropy_fn, timestep, dict(model=model, tokens_per_step=tokens_per_step)),
    )


def _logit_diff_fn(a: Action, b: Action, timestep: int, kwargs: dict, logits: Logits) -> Tensor:
    return logit_diff(logits, a, b, timestep, **kwargs)


def _probability_fn(action: Action, timestep: int, kwargs: dict, logits: Logits) -> Tensor:
    return action_probability(logits, action, timestep, **kwargs)


def _entropy_fn(timestep: int, kwargs: dict, logits: Logits) -> Tensor:
    return action_entropy(logits, timestep, **kwargs)


def _tokens_per_step(model: HookedDecisionTransformer | None, tokens_per_step: int | None) -> int:
    if model is not None:
        per = model.cfg.tokens_per_step
        if tokens_per_step is not None and tokens_per_step != per:
            raise ConfigError(
                f"tokens_per_step={tokens_per_step} disagrees with the model's {per}; "
                "pass only one of them"
            )
        return per
    per = 3 if tokens_per_step is None else tokens_per_step
    if isinstance(per, bool) or per not in (1, 2, 3):
        raise ConfigError(
            f"tokens_per_step must be 3 (R, S, A), 2 (S, A) or 1 (per-step logits), got {per!r}"
        )
    return per


def _at_state(
    logits: Logits,
    timestep: int,
    model: HookedDecisionTransformer | None,
    tokens_per_step: int | None,
) -> Float[Tensor, "*batch action"]:
    if not isinstance(logits, Tensor) or logits.ndim < 3:
        shape = list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise BatchError(
            f"logits must have shape [batch, n_tokens, n_actions] (what model(batch) returns), "
            f"got {shape}; add a batch dimension with logits[None]"
        )
    position = state_token_position(
        logits.shape[-2], timestep, model=model, tokens_per_step=tokens_per_step
    )
    return logits[..., position, :]


def _action(action: Action, logits: Tensor) -> int:
    n_actions = logits.shape[-1] if isinstance(logits, Tensor) and logits.ndim else 0
    if isinstance(action, str):
        if action not in ACTION_INDEX:
            raise BatchError(f"unknown action {action!r}; valid names: {', '.join(ACTION_NAMES)}")
        action = ACTION_INDEX[action]
    if not isinstance(action, bool | str):
        with contextlib.suppress(TypeError):  # a non-integer is reported below
            action = operator.index(action)  # numpy / torch integer scalars, IntEnum
    if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < n_actions:
        raise BatchError(
            f"action {action!r} is out of range for logits with {n_actions} actions; "
            f"expected an int in 0..{n_actions - 1} or a name ({', '.join(ACTION_NAMES)})"
        )
    return int(action)


def _name(action: Action) -> str:
    if isinstance(action, str):
        return action
    return ACTION_NAMES[action] if 0 <= int(action) < len(ACTION_NAMES) else str(int(action))
