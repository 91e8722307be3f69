"""Direct logit attribution, logit lens and residual decomposition from one cached run.

Background:
    The residual stream at the last state token is a sum of component outputs:
    the token embedding (``hook_embed``: the DT's R/S/A embedding plus its time
    embedding), the positional embedding, and every attention layer and MLP. The
    final LayerNorm is linear once its scale ``σ`` (cached as ``ln_final.hook_scale``)
    is fixed, so the action logits split exactly into one term per component plus
    a constant:

        logits = Σ_c ((c - mean(c)) / σ) * w @ W_U  +  (b @ W_U + b_U)

    (``LNPre``: no ``w``, ``b``; no normalisation: ``Σ_c c @ W_U + b_U``). Direct logit
    attribution (DLA) reports each term, the last one as ``"bias"``; the terms sum to
    the model's logits. Per head, an attention layer's output is ``Σ_h z_h W_O[h] + b_O``:
    the head terms are computed from ``hook_z`` and ``W_O`` (native bridges have no
    ``hook_result``), and ``b_O`` is its own component ``"{l}_attn_bias"``.

    Unlike ``ActivationCache.logit_attrs`` (which, without weight processing, skips
    ``ln_final.w``) these functions apply the whole final norm, so the numbers are
    those of the model as loaded, with no weight folding (raw logits, not shifted).

Logit lens:
    :func:`logit_lens` reads the accumulated residual after each layer with the
    final norm and the action head. ``scale="own"`` (default) normalises each
    layer's residual with its *own* σ, i.e. the real ``ln_final`` applied to it (what
    the model would output if the later layers were removed). ``scale="final"`` uses
    the final residual's cached σ for every layer, TransformerLens'
    ``apply_ln_to_stack`` convention: the lens is then linear and its layer-to-layer
    steps equal the DLA of that layer's components. Both end at the model's logits.

Examples:
    >>> from tests.conftest import build_batch, build_model
    >>> model, batch = build_model(), build_batch()
    >>> logits, cache = model.run_with_cache(batch)
    >>> dla = direct_logit_attribution(cache, model)
    >>> dla.labels
    ('embed', 'pos_embed', '0_attn_out', '0_mlp_out', '1_attn_out', '1_mlp_out', 'bias')
    >>> bool(torch.allclose(dla.total(), logits[:, -1], atol=1e-4))
    True
    >>> lens = logit_lens(cache, model)
    >>> lens.labels
    ('0_pre', '1_pre', 'final_post')
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache

from dtlens.analysis.metrics import state_token_position
from dtlens.analysis.weights.embeddings import action_index, action_labels
from dtlens.errors import ConfigError, HookNameError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "LogitAttribution",
    "ResidualDecomposition",
    "direct_logit_attribution",
    "logit_lens",
    "residual_decomposition",
]

Actions = None | int | str | tuple[int | str, int | str]


@dataclass(frozen=True)
class ResidualDecomposition:
    """The residual stream after the last block, split into additive components.

    Args:
        components: ``[component, batch, pos, d_model]``; summed over components they
            give ``blocks.{n_layers-1}.hook_resid_post``.
        labels: one label per component (see :func:`residual_decomposition`).
    """

    components: Float[Tensor, "component batch pos d_model"]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LogitAttribution:
    """Logit contributions (DLA) or per-layer logits (logit lens) at one state token.

    Args:
        values: ``[row, batch, action]``, or ``[row, batch]`` when one action or one
            logit difference was asked for.
        labels: one label per row (components, ``"bias"``, or residual stages).
        actions: the action labels of the last axis, or the one label of a
            single action (``"left"``) / difference (``"left - right"``).
        position: the token position read (the state token of ``timestep``).
        timestep: the window index asked for.
        kind: ``"direct logit attribution"``, ``"logit lens"`` ...
    """

    values: Float[Tensor, "row batch *action"]
    labels: tuple[str, ...]
    actions: tuple[str, ...] | str
    position: int
    timestep: int
    kind: str

    def total(self) -> Float[Tensor, " batch *action"]:
        """Sum over rows: the model's logits (or logit difference) for a DLA.

        Examples:
            >>> logits = model(batch)
            >>> dla = direct_logit_attribution(cache, model, actions=("left", "right"))
            >>> bool(torch.allclose(dla.total(), logits[:, -1, 0] - logits[:, -1, 1], atol=1e-4))
            True
        """
        return self.values.sum(0)

    def row(self, label: str) -> Float[Tensor, " batch *action"]:
        """The values of one row by label, e.g. ``row("1_mlp_out")``.

        Raises:
            ConfigError: for a label that is not a row.

        Examples:
            >>> direct_logit_attribution(cache, model).row("bias").shape
            torch.Size([2, 7])
        """
        if label not in self.labels:
            raise ConfigError(f"{label!r} is not a row; rows: {list(self.labels)}.")
        return self.values[self.labels.index(label)]

    def to_long_records(self) -> list[dict[str, Any]]:
        """One dict per entry (``row``, ``batch``, ``action``, ``value``) for plots.

        Examples:
            >>> direct_logit_attribution(cache, model).to_long_records()[0]["row"]
            'embed'
        """
        batch = range(self.values.shape[1])
        actions = self.actions if isinstance(self.actions, tuple) else (self.actions,)
        flat = self.values.detach().reshape(-1).tolist()
        return [
            {"row": r, "batch": b, "action": a, "value": v}
            for (r, b, a), v in zip(
                itertools.product(self.labels, batch, actions), flat, strict=True
            )
        ]


def residual_decomposition(
    cache: ActivationCache,
    by: Literal["component", "head"] = "component",
    split_embed: bool = False,
) -> ResidualDecomposition:
    """Split the final residual stream into the outputs that were added to it.

    Components, in order: ``"embed"`` (``hook_embed``: DT embedding + time
    embedding), ``"pos_embed"``, then per layer ``"{l}_attn_out"`` and
    ``"{l}_mlp_out"``. With ``by="head"`` each attention layer becomes its heads
    ``"L{l}H{h}"`` (``hook_z[..., h, :] @ W_O[l, h]``) and ``"{l}_attn_bias"`` (``b_O``).
    With ``split_embed`` ``"embed"`` becomes ``"rtg_embed"``, ``"state_embed"``,
    ``"action_embed"`` (each at its own tokens) and ``"time_embed"`` (at every token).

    Args:
        cache: from ``model.run_with_cache(batch)`` (unfiltered, or holding the hooks
            named in the error if not).
        by: ``"component"`` or ``"head"``.
        split_embed: split the token embedding by DT embedding.

    Raises:
        HookNameError: if the cache lacks a hook this needs.
        ConfigError: for an unknown ``by``.

    Examples:
        >>> dec = residual_decomposition(cache, by="head")
        >>> dec.labels[:4], tuple(dec.components.shape)
        (('embed', 'pos_embed', 'L0H0', 'L0H1'), (14, 2, 11, 32))
    """
    if by not in ("component", "head"):
        raise ConfigError(f"by={by!r} must be 'component' or 'head'.")
    core = cache.model
    parts: list[Tensor] = []
    labels: list[str] = []
    if split_embed:
        for label, part in _split_embedding(cache).items():
            labels.append(label)
            parts.append(part)
    else:
        labels.append("embed")
        parts.append(_get(cache, "hook_embed"))
    labels.append("pos_embed")
    parts.append(_get(cache, "hook_pos_embed").expand_as(parts[0]))
    for layer in range(core.cfg.n_layers):
        if by == "head":
            z = _get(cache, f"blocks.{layer}.attn.hook_z")
            heads = einsum(
                z, core.W_O[layer].detach(), "batch pos head d_head, head d_head d_model "
                "-> head batch pos d_model",
            )  # fmt: skip
            parts.extend(heads)
            labels.extend(f"L{layer}H{h}" for h in range(heads.shape[0]))
            parts.append(core.b_O[layer].detach().expand_as(parts[0]))
            labels.append(f"{layer}_attn_bias")
        else:
            parts.append(_get(cache, f"blocks.{layer}.hook_attn_out"))
            labels.append(f"{layer}_attn_out")
        parts.append(_get(cache, f"blocks.{layer}.hook_mlp_out"))
        labels.append(f"{layer}_mlp_out")
    return ResidualDecomposition(torch.stack(parts), tuple(labels))


def direct_logit_attribution(
    cache: ActivationCache,
    model: HookedDecisionTransformer,
    actions: Actions = None,
    timestep: int = -1,
    by: Literal["component", "head"] = "component",
    split_embed: bool = False,
) -> LogitAttribution:
    """Each component's direct contribution to the action logits at a state token.

    The components (see :func:`residual_decomposition`) are centred, divided by the
    cached final-norm scale at that token, multiplied by ``ln_final.w`` and projected
    on ``W_U``; ``ln_final.b @ W_U + b_U`` is the last row, ``"bias"``. The rows sum to
    the model's logits there (see the module docstring).

    Args:
        cache: from ``model.run_with_cache(batch)``.
        model: the model that made the cache.
        actions: None (every action: values ``[row, batch, action]``), one action
            (name or index: ``[row, batch]``), or a pair ``(a, b)`` for the logit
            difference ``a - b`` (``[row, batch]``).
        timestep: window index of the step whose state token is read (default last).
        by: ``"component"`` or ``"head"`` (per-head terms plus ``b_O``).
        split_embed: split ``"embed"`` by DT embedding (see
            :func:`residual_decomposition`).

    Raises:
        HookNameError: if the cache lacks a needed hook.
        ConfigError: for bad actions or ``by``.
        BatchError: for a timestep outside the window.

    Examples:
        >>> dla = direct_logit_attribution(cache, model, actions=("left", "right"), by="head")
        >>> dla.actions, tuple(dla.values.shape)
        ('left - right', (15, 2))
    """
    decomposition = residual_decomposition(cache, by=by, split_embed=split_embed)
    n_tokens = decomposition.components.shape[2]
    position = state_token_position(n_tokens, timestep, model=model)
    stack = decomposition.components[:, :, position]
    normalized = _apply_final_norm(stack, cache, model, position, scale="final")
    direction, action_label = _direction(model, actions)
    values = normalized @ (_final_w_u(model) @ direction)
    bias = _head_bias(model) @ direction
    values = torch.cat([values, bias.expand_as(values[:1])])
    return LogitAttribution(
        values.squeeze(-1) if isinstance(action_label, str) else values,
        (*decomposition.labels, "bias"),
        action_label,
        position,
        timestep,
        "direct logit attribution",
    )


def logit_lens(
    cache: ActivationCache,
    model: HookedDecisionTransformer,
    timestep: int = -1,
    scale: Literal["own", "final"] = "own",
    incl_mid: bool = False,
    probs: bool = False,
) -> LogitAttribution:
    """Action logits (or probabilities) read from the residual stream after each layer.

    Rows are ``cache.accumulated_resid`` stages: ``"0_pre"`` (the embeddings),
    ``"1_pre"``, ... ``"final_post"`` (plus ``"{l}_mid"`` with ``incl_mid``), each passed
    through the final norm and the action head. ``"final_post"`` is the model's output.

    Args:
        cache: from ``model.run_with_cache(batch)``.
        model: the model that made the cache.
        timestep: window index of the step whose state token is read.
        scale: ``"own"`` (each stage normalised by its own σ: the real ``ln_final``)
            or ``"final"`` (the final σ for every stage, as ``apply_ln_to_stack``);
            see the module docstring.
        incl_mid: include the residual between attention and MLP of each layer.
        probs: softmax over actions.

    Raises:
        HookNameError: if the cache lacks a needed hook.
        ConfigError: for an unknown ``scale``.
        BatchError: for a timestep outside the window.

    Examples:
        >>> lens = logit_lens(cache, model, probs=True)
        >>> tuple(lens.values.shape), bool(torch.allclose(lens.values.sum(-1), torch.ones(3, 2)))
        ((3, 2, 7), True)
    """
    if scale not in ("own", "final"):
        raise ConfigError(f"scale={scale!r} must be 'own' or 'final'.")
    n_layers = cache.model.cfg.n_layers
    needed = ["hook_embed", f"blocks.{n_layers - 1}.hook_resid_post"]
    needed += [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)]
    needed += [f"blocks.{i}.hook_resid_mid" for i in range(n_layers) if incl_mid]
    for name in needed:
        _get(cache, name)
    position = state_token_position(_get(cache, "hook_embed").shape[1], timestep, model=model)
    stages, labels = cache.accumulated_resid(
        layer=None, incl_mid=incl_mid, return_labels=True, pos_slice=None
    )
    normalized = _apply_final_norm(stages[:, :, position], cache, model, position, scale)
    logits = normalized @ _final_w_u(model) + _head_bias(model)
    if probs:
        logits = logits.softmax(-1)
    return LogitAttribution(
        logits,
        tuple(labels),
        action_labels(model.cfg.n_actions, model.cfg.continuous_actions),
        position,
        timestep,
        "logit lens (probabilities)" if probs else "logit lens",
    )


# ------------------------------------------------------------------ internals
def _final_w_u(model: HookedDecisionTransformer) -> Float[Tensor, "d_model action"]:
    # diag(ln_final.w) @ W_U for "LN" (W_U otherwise): the head after the norm's scale.
    w_u = model.W_U.detach()
    weight = getattr(model.core.ln_final, "w", None)
    if model.cfg.normalization == "LN" and weight is not None:
        return weight.detach()[:, None] * w_u
    return w_u


def _head_bias(model: HookedDecisionTransformer) -> Float[Tensor, " action"]:
    # ln_final.b @ W_U + b_U: the part of the logits no component writes.
    bias = model.b_U.detach()
    ln_bias = getattr(model.core.ln_final, "b", None)
    if model.cfg.normalization == "LN" and ln_bias is not None:
        bias = bias + ln_bias.detach() @ model.W_U.detach()
    return bias


def _apply_final_norm(
    stack: Float[Tensor, "row batch d_model"],
    cache: ActivationCache,
    model: HookedDecisionTransformer,
    position: int,
    scale: str,
) -> Float[Tensor, "row batch d_model"]:
    """Centre and divide by σ (cached final σ, or each row's own); no ``w``, no ``b``."""
    if model.cfg.normalization is None:
        return stack
    centred = stack - stack.mean(-1, keepdim=True)
    if scale == "own":
        sigma = (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    else:
        sigma = _get(cache, "ln_final.hook_scale")[:, position]
    return centred / sigma


def _direction(
    model: HookedDecisionTransformer, actions: Actions
) -> tuple[Float[Tensor, "action out"], tuple[str, ...] | str]:
    """Action-space read-out: identity (all), a one-hot column, or ``e_a - e_b``."""
    n_actions, continuous = model.cfg.n_actions, model.cfg.continuous_actions
    names = action_labels(n_actions, continuous)
    eye = torch.eye(n_actions, dtype=model.W_U.dtype, device=model.W_U.device)
    if actions is None:
        return eye, names
    if isinstance(actions, int | str):
        a = action_index(actions, n_actions, continuous)
        return eye[:, a : a + 1], names[a]
    if isinstance(actions, Sequence) and len(actions) == 2:
        a, b = (action_index(x, n_actions, continuous) for x in actions)
        return (eye[:, a] - eye[:, b])[:, None], f"{names[a]} - {names[b]}"
    raise ConfigError(
        f"actions={actions!r} must be None, one action (name or index) or a pair (a, b) "
        "for the logit difference a - b."
    )


def _split_embedding(cache: ActivationCache) -> dict[str, Tensor]:
    """``hook_embed`` as the DT embeddings at their token positions (sums to it).

    Raises:
        ConfigError: the parts do not sum to ``hook_embed``, as in a model whose tokens
            pass a LayerNorm after the embeddings are summed (HuggingFace's ``embed_ln``).
    """
    embed = _get(cache, "hook_embed")
    n_tokens = embed.shape[1]
    has_rtg = "hook_rtg_embed" in cache.model.hook_dict  # a clone's core has no RTG hook
    kinds = ("rtg", "state", "action") if has_rtg else ("state", "action")
    time = _get(cache, "hook_time_embed")
    per = len(kinds)
    out = {}
    for offset, kind in enumerate(kinds):
        rows = _get(cache, f"hook_{kind}_embed")
        part = torch.zeros_like(embed)
        positions = torch.arange(offset, n_tokens, per)[: rows.shape[1]]
        part[:, positions] = rows[:, : len(positions)]
        out[f"{kind}_embed"] = part
    time_part = time.repeat_interleave(per, dim=1)[:, :n_tokens]
    if "hook_action_embed" in cache.cache_dict:
        # positions of action tokens without an action embedding get no time either
        n_act = cache["hook_action_embed"].shape[1]
        missing = torch.arange(per - 1, n_tokens, per)[n_act:]
        time_part = time_part.clone()
        time_part[:, missing] = 0
    out["time_embed"] = time_part
    if not torch.allclose(sum(out.values()), embed, atol=1e-4, rtol=1e-4):
        raise ConfigError(
            "split_embed=True splits hook_embed into the DT embeddings, but in this model they "
            "do not sum to it (a HuggingFace decision transformer normalises their sum with "
            "embed_ln), so no such split exists; pass split_embed=False (one 'embed' component)."
        )
    return out


def _get(cache: ActivationCache, name: str) -> Tensor:
    if name not in cache.cache_dict:
        raise HookNameError(
            f"the cache has no {name!r}; run model.run_with_cache(batch) without "
            f"names_filter, or include {name!r} in it."
        )
    return cache.cache_dict[name]
