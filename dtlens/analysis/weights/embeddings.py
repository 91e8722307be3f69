"""The DT's embeddings as labelled matrices, and reading vectors through LayerNorm.

Shared by :mod:`dtlens.analysis.weights.qk_ov`, :mod:`dtlens.analysis.weights.congruence` and
:mod:`dtlens.analysis.decomposition`. Sources of :func:`embedding_matrix`: ``"state"``
(``state_embed.weight.T``, one row per one-hot feature in the model's ``(c x y)``
order, labelled ``"object:key@(3,6)"``), ``"rtg"``, ``"action"``, ``"time"`` and
``"pos"`` (``W_pos``); see :mod:`dtlens.analysis.weights.qk_ov` for the LayerNorm convention.

Examples:
    >>> from tests.conftest import build_model
    >>> rows = embedding_matrix(build_model(), "action")
    >>> rows.labels[-1], tuple(rows.weight.shape)
    ('pad', (8, 32))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.env.channels import N_CHANNELS, channel_names
from dtlens.errors import ConfigError
from dtlens.model.validation import check_head

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "SOURCES",
    "EmbeddingRows",
    "action_index",
    "action_labels",
    "effective_unembed",
    "embedding_matrix",
    "fold_layer_norm",
    "state_feature_labels",
]

Source = Literal["state", "rtg", "action", "time", "pos"]
#: The embedding sources :func:`embedding_matrix` knows.
SOURCES: tuple[str, ...] = ("state", "rtg", "action", "time", "pos")


# --------------------------------------------------------------------- labels
def action_labels(n_actions: int, continuous: bool = False) -> tuple[str, ...]:
    """Names of a model's actions: MiniGrid's names, ``"action7"``... beyond them.

    A model with continuous actions (``cfg.continuous_actions``, e.g. a HuggingFace
    decision transformer) has action dimensions ``"a0"``, ``"a1"``, ...

    Examples:
        >>> action_labels(3), action_labels(3, continuous=True)
        (('left', 'right', 'forward'), ('a0', 'a1', 'a2'))
    """
    if continuous:
        return tuple(f"a{i}" for i in range(n_actions))
    return tuple(
        ACTION_NAMES[i] if i < len(ACTION_NAMES) else f"action{i}" for i in range(n_actions)
    )


def action_index(action: int | str, n_actions: int, continuous: bool = False) -> int:
    """Index of an action given by index or name (:func:`action_labels`), checked.

    Raises:
        ConfigError: for an unknown name or an index outside ``0..n_actions-1``.

    Examples:
        >>> action_index("forward", 7), action_index(6, 7), action_index("a1", 3, continuous=True)
        (2, 6, 1)
    """
    if isinstance(action, str):
        names = action_labels(n_actions, continuous)
        if action not in names:
            raise ConfigError(f"unknown action {action!r}; valid names: {', '.join(names)}.")
        return names.index(action)
    if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < n_actions:
        raise ConfigError(
            f"action {action!r} must be a name or an int in 0..{n_actions - 1} "
            f"(the model has {n_actions} actions)."
        )
    return action


def state_feature_labels(obs_shape: tuple[int, int, int]) -> tuple[str, ...]:
    """Labels of the flattened state features, in the model's ``(c x y)`` order.

    One-hot views (20 channels) get ``"object:key@(x,y)"``; other channel counts
    ``"ch2@(x,y)"``.

    Examples:
        >>> labels = state_feature_labels((7, 7, 20))
        >>> labels[0], labels[1], labels[49 * 5 + 7 * 3 + 6], len(labels)
        ('object:unseen@(0,0)', 'object:unseen@(0,1)', 'object:key@(3,6)', 980)
    """
    n_x, n_y, n_c = obs_shape
    names = channel_names() if n_c == N_CHANNELS else [f"ch{c}" for c in range(n_c)]
    return tuple(
        f"{names[c]}@({x},{y})" for c in range(n_c) for x in range(n_x) for y in range(n_y)
    )


# ----------------------------------------------------------------- embeddings
@dataclass(frozen=True)
class EmbeddingRows:
    """The embedding vectors of one input kind, one labelled row per input.

    Args:
        source: one of :data:`SOURCES`.
        weight: ``[n_inputs, d_model]`` residual-stream vectors (detached).
        labels: one label per row.
    """

    source: str
    weight: Float[Tensor, "n_inputs d_model"]
    labels: tuple[str, ...]


def embedding_matrix(
    model: HookedDecisionTransformer, source: Source, pos: int | None = None
) -> EmbeddingRows:
    """The rows a DT embedding writes into the residual stream, labelled.

    Args:
        model: the decision transformer.
        source: ``"state"``, ``"rtg"``, ``"action"``, ``"time"`` or ``"pos"`` (see the
            module docstring for rows and labels).
        pos: if given, ``W_pos[pos]`` is added to every row (a token of this kind at
            token position ``pos``); not allowed with ``source="pos"``.

    Raises:
        ConfigError: for an unknown source, ``"rtg"`` on a behavioural clone, or a
            bad ``pos``.

    Examples:
        >>> rows = embedding_matrix(model, "action")
        >>> tuple(rows.weight.shape), rows.labels[:2]
        ((8, 32), ('left', 'right'))
    """
    cfg = model.cfg
    with torch.no_grad():
        if source == "state":
            weight, labels = model.state_embed.weight.T, state_feature_labels(cfg.obs_shape)
        elif source == "rtg":
            if cfg.model_type != "decision_transformer":
                raise ConfigError(
                    f"source='rtg' needs a decision transformer; this model is a "
                    f"{cfg.model_type!r} with no RTG embedding (sources: state, action, "
                    "time, pos)."
                )
            weight, labels = model.rtg_embed.weight.T, ("rtg",)
        elif source == "action":
            weight, labels = model.action_embed.weight, (*action_labels(cfg.n_actions), "pad")
        elif source == "time":
            weight, labels = _time_rows(model)
        elif source == "pos":
            if pos is not None:
                raise ConfigError("pos= adds W_pos[pos] to another source; not to source='pos'.")
            weight, labels = model.core.W_pos, _position_labels(model)
        else:
            raise ConfigError(f"unknown embedding source {source!r}; use one of {SOURCES}.")
        weight = weight.detach().clone()
        if pos is not None:
            if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < cfg.n_ctx:
                raise ConfigError(
                    f"pos={pos!r} must be an int token position in 0..{cfg.n_ctx - 1}."
                )
            weight = weight + model.core.W_pos[pos].detach()
            labels = tuple(f"{label}+{_position_labels(model)[pos]}" for label in labels)
    return EmbeddingRows(source, weight, tuple(labels))


def _time_rows(model: HookedDecisionTransformer) -> tuple[Tensor, tuple[str, ...]]:
    embed = model.time_embed
    if model.cfg.time_embedding == "embedding":
        return embed.weight, tuple(f"t{i}" for i in range(embed.weight.shape[0]))
    rows, labels = [embed.weight.T], ["time (per step)"]
    if embed.bias is not None:
        rows.append(embed.bias[None])
        labels.append("time bias")
    return torch.cat(rows), tuple(labels)


def _position_labels(model: HookedDecisionTransformer) -> list[str]:
    cfg = model.cfg
    labels = model.token_labels(cfg.n_timesteps)
    return [*labels, *(f"pos{i}" for i in range(len(labels), cfg.n_ctx))][: cfg.n_ctx]


# ----------------------------------------------------------------- LayerNorm
def fold_layer_norm(
    vectors: Float[Tensor, "... d_model"],
    model: HookedDecisionTransformer,
    norm: Literal["ln1", "ln2", "ln_final"],
    layer: int | None = None,
) -> Float[Tensor, "... d_model"]:
    """Residual vectors as the given LayerNorm reads them, minus its ``1/σ`` scale.

    ``(v - mean(v)) * w`` for ``"LN"``, ``v - mean(v)`` for ``"LNPre"``, ``v`` without
    normalisation; the LN bias is not added (it does not depend on ``v``).

    Args:
        vectors: residual-stream vectors (last axis ``d_model``).
        model: the model whose norm is used.
        norm: ``"ln1"`` (before attention), ``"ln2"`` (before the MLP) of ``layer``,
            or ``"ln_final"`` (before the action head).
        layer: the block, for ``"ln1"`` / ``"ln2"``.

    Raises:
        ConfigError: for an unknown norm or a missing / out-of-range layer.

    Examples:
        >>> v = torch.randn(5, model.cfg.d_model)
        >>> folded = fold_layer_norm(v, model, "ln_final")
        >>> bool(folded.mean(-1).abs().max() < 1) and folded.shape == v.shape
        True
    """
    if norm == "ln_final":
        module = model.core.ln_final
    elif norm in ("ln1", "ln2"):
        _check_layer(model, layer)
        module = getattr(model.core.blocks[layer], norm)
    else:
        raise ConfigError(f"norm={norm!r} must be 'ln1', 'ln2' or 'ln_final'.")
    if model.cfg.normalization is None:
        return vectors
    centred = vectors - vectors.mean(-1, keepdim=True)
    weight = getattr(module, "w", None) if model.cfg.normalization == "LN" else None
    return centred if weight is None else centred * weight.detach()


def effective_unembed(
    model: HookedDecisionTransformer, fold_ln: bool = True
) -> Float[Tensor, "d_model action"]:
    """The action head as the residual stream sees it: ``W_U`` behind ``ln_final``.

    With ``fold_ln`` this is ``(I - 11^T/d) diag(w) W_U``, so ``v @ effective_unembed``
    equals ``((v - mean v) * w) @ W_U`` (see the module docstring); without, ``W_U``.

    Examples:
        >>> W = effective_unembed(model)
        >>> v = torch.randn(model.cfg.d_model)
        >>> ref = fold_layer_norm(v, model, "ln_final") @ model.W_U
        >>> bool(torch.allclose(v @ W, ref, atol=1e-5))
        True
    """
    with torch.no_grad():
        W_U = model.W_U.detach()
        if not fold_ln:
            return W_U.clone()
        eye = torch.eye(model.cfg.d_model, dtype=W_U.dtype, device=W_U.device)
        return fold_layer_norm(eye, model, "ln_final") @ W_U


def _check_layer(model: HookedDecisionTransformer, layer: int | None) -> None:
    n = model.cfg.n_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise ConfigError(f"layer={layer!r} must be an int in 0..{n - 1} (n_layers={n}).")


def _check_head(model: HookedDecisionTransformer, layer: int, head: int) -> None:
    _check_layer(model, layer)
    check_head(head, model.cfg.n_heads)  # HeadIndexError, a ConfigError; -1 refused too
