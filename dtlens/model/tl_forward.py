"""``forward``'s TransformerLens arguments: ``return_type`` and a decision transformer's loss.

HookedTransformer's ``forward(input, return_type=...)`` returns ``"logits"``
(default), ``"loss"``, ``"both"`` (logits, loss) or nothing (``None``), and
``loss_per_token=True`` keeps the loss of each token. A decision transformer is
trained to predict, at each state token S_t, the action the trajectory took at step
t, so its loss (:func:`action_loss`) is the cross-entropy of the logits at S_t
against ``batch.actions[:, t]``, averaged over the steps that have an action and are
not padding; the mean squared error of the predicted actions for a model with
continuous actions. HookedTransformer's other keywords either have a dtlens
counterpart (:func:`check_forward_kwargs` names it) or no meaning here.

Examples:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model, batch = build_model(), build_batch()
    >>> logits, loss = model(batch, return_type="both")
    >>> bool(torch.isclose(loss, action_loss(model, batch, logits)))
    True
"""

from __future__ import annotations

from typing import Any, Literal, NoReturn

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from dtlens.errors import BatchError, DTLensError
from dtlens.model.batch import TrajectoryBatch

__all__ = [
    "RETURN_TYPES",
    "ReturnType",
    "action_loss",
    "check_forward_kwargs",
    "forward_output",
    "unsupported",
]

ReturnType = Literal["logits", "loss", "both"] | None

#: The ``return_type`` values ``forward`` accepts (TransformerLens' own).
RETURN_TYPES = ("logits", "loss", "both", None)

#: forward() keywords of HookedTransformer that a decision transformer replaces.
_FORWARD_ALTERNATIVES = {
    "start_at_layer": "model.forward_from_layer(resid, start_layer, batch) runs the blocks "
    "from a residual stream",
    "attention_mask": "padding is part of the input: TrajectoryBatch(..., padding_mask=) or "
    "model.pad_context(batch)",
    "tokens": "a decision transformer has no tokens; pass the TrajectoryBatch",
    "prepend_bos": "a decision transformer has no BOS token",
    "padding_side": "left padding is model.pad_context(batch)",
    "past_kv_cache": "dtlens.model.suffix re-runs the last positions of a window from a base run",
    "shortformer_pos_embed": "the positional embedding is added by the core (model.W_pos)",
}


def unsupported(name: str, instead: str) -> NoReturn:
    """Raise DTLensError: ``name`` has no meaning for a decision transformer; say what instead."""
    raise DTLensError(f"{name} does not apply to a decision transformer: {instead}.")


def check_forward_kwargs(kwargs: dict[str, Any], return_type: Any) -> None:
    """Raise DTLensError for a forward keyword or ``return_type`` a DT does not take."""
    for name in kwargs:
        instead = _FORWARD_ALTERNATIVES.get(name)
        if instead is None:
            raise DTLensError(
                f"forward() got an unexpected keyword {name!r}; a decision transformer's "
                "forward takes a TrajectoryBatch and return_type=, loss_per_token=, "
                "stop_at_layer=."
            )
        unsupported(f"forward({name}=...)", instead)
    if return_type not in RETURN_TYPES:
        raise DTLensError(
            f"return_type={return_type!r}; use one of {list(RETURN_TYPES)} (TransformerLens' "
            "values; the loss is the action cross-entropy, see dtlens.model.tl_forward)."
        )


def action_loss(
    model: Any,
    batch: TrajectoryBatch,
    logits: Float[Tensor, "batch pos action"],
    per_step: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch step"]:
    """The training loss of the actions the batch took, predicted at its state tokens.

    Step t is scored when the batch has its action (``batch.actions[:, t]``: all
    steps but the last for actions ``[B, T-1]``), the step is not padding
    (``batch.padding_mask``) and the action is not the padding action
    (``cfg.n_actions``). Discrete actions: cross-entropy of the logits at S_t;
    continuous actions: the squared error of the predicted action, averaged over
    its dimensions.

    Args:
        model: the model that gave ``logits``.
        batch: its input.
        logits: ``model(batch)``.
        per_step: return ``[batch, step]`` losses (0 where a step is not scored)
            instead of their mean over scored steps.

    Raises:
        BatchError: no step of the batch is scored (e.g. a single-step window
            without its action).

    Examples:
        >>> loss = action_loss(model, batch, model(batch))
        >>> bool(torch.isclose(loss, model(batch, return_type="loss")))
        True
    """
    n_act = batch.actions.shape[1]
    preds = logits[:, model.state_positions(batch.n_steps)[:n_act]]
    targets = batch.actions
    scored = torch.ones(targets.shape[:2], dtype=torch.bool, device=logits.device)
    if batch.padding_mask is not None:
        scored &= batch.padding_mask[:, :n_act].to(logits.device)
    if model.cfg.continuous_actions:
        losses = (preds - targets.to(preds)).pow(2).mean(-1)
    else:
        scored &= targets != model.cfg.n_actions
        safe = torch.where(scored, targets, torch.zeros_like(targets))
        losses = F.cross_entropy(preds.flatten(0, 1), safe.flatten(), reduction="none")
        losses = losses.view(targets.shape)
    losses = torch.where(scored, losses, torch.zeros_like(losses))
    if per_step:
        return losses
    if not bool(scored.any()):
        raise BatchError(
            "no step of the batch has an action to score (the loss reads batch.actions[:, t] "
            "at each state token S_t); pass actions for the steps, or use return_type='logits'."
        )
    return losses.sum() / scored.sum()


def forward_output(
    model: Any,
    batch: TrajectoryBatch,
    logits: Float[Tensor, "batch pos action"],
    return_type: ReturnType,
    loss_per_token: bool,
) -> Any:
    """What ``forward`` returns for ``return_type`` (TransformerLens' meanings, DT loss)."""
    if return_type == "logits":
        return logits
    if return_type is None:
        return None
    loss = action_loss(model, batch, logits, per_step=loss_per_token)
    return loss if return_type == "loss" else (logits, loss)
