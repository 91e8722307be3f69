"""`HookedDecisionTransformer`: a decision transformer every hook of which TransformerLens sees.

Background:
    A decision transformer (Chen et al. 2021) reads a trajectory as interleaved
    tokens R1, S1, A1, R2, S2, A2, ..., RT, ST (return-to-go, state, action) and
    predicts the action of step t at the state token S_t. Each token is the sum
    of its own embedding (a Linear on the RTG, a Linear on the flattened grid, an
    Embedding of the action) and the embedding of its environment timestep;
    a learned positional embedding over token positions is then added by the
    transformer core.

    Here the embeddings are ordinary torch modules, each followed by a HookPoint
    (``hook_rtg_embed``, ``hook_state_embed``, ``hook_action_embed``,
    ``hook_time_embed``); the interleaved tokens pass TransformerLens' own
    ``hook_embed``; the core (positional embedding, blocks, final norm, action
    head as ``unembed``) is a TransformerLens 4.x native bridge (see
    :mod:`dtlens.model.tl_core`). All hook points live in one ``hook_dict``, so one
    ``run_with_cache`` returns one ``ActivationCache`` holding everything.

    Continuous-control models converted from HuggingFace (``token_embedding=
    "huggingface"``, :mod:`dtlens.model.hf`) embed state vectors and continuous
    actions with biased Linear layers, normalise the interleaved tokens with
    ``embed_ln`` before ``hook_embed``, and may end in a tanh head.

Examples:
    >>> import torch
    >>> from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch
    >>> model = HookedDecisionTransformer(DTConfig(n_layers=1, d_model=16, n_heads=2,
    ...                                            d_mlp=32, n_ctx=8, seed=0))
    >>> batch = TrajectoryBatch(torch.zeros(1, 3, 7, 7, 20), torch.zeros(1, 2, dtype=torch.long),
    ...                         torch.full((1, 3), 0.9), torch.arange(3)[None])
    >>> logits, cache = model.run_with_cache(batch)
    >>> tuple(logits.shape), tuple(cache["hook_rtg_embed"].shape)
    ((1, 8, 7), (1, 3, 16))
    >>> model.token_labels(batch)
    ['R1', 'S1', 'A1', 'R2', 'S2', 'A2', 'R3', 'S3']

References:
    Chen et al., "Decision Transformer: Reinforcement Learning via Sequence
    Modeling" (2021); Bloom & Colognese, "Decision Transformer Interpretability".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.HookedRootModule import HookedRootModule

from dtlens.errors import BatchError
from dtlens.model import tl_core, tl_forward
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.config import DTConfig
from dtlens.model.hf import embedding as hf_embedding
from dtlens.model.tl_compat import TransformerLensMixin
from dtlens.model.tl_forward import ReturnType
from dtlens.torch_context import seeded

__all__ = ["EMBEDDING_HOOKS", "HookedDecisionTransformer"]

#: The DT embedding hook points, in token order.
EMBEDDING_HOOKS = ("hook_rtg_embed", "hook_state_embed", "hook_action_embed", "hook_time_embed")


class HookedDecisionTransformer(TransformerLensMixin, HookedRootModule):
    """A decision transformer (or behavioural clone) on a TransformerLens core.

    Args:
        cfg: the architecture. Weights are initialised from ``cfg.seed``.

    Attributes:
        cfg: the :class:`DTConfig`.
        core: the TransformerLens ``TransformerBridge`` holding the positional
            embedding, blocks, final norm and action head (``core.W_U``, ``core.b_U``,
            ``core.W_Q`` ... are TransformerLens' weight views).
        rtg_embed, state_embed, action_embed, time_embed: the DT embeddings.
        embed_ln: the LayerNorm over the interleaved tokens, only with
            ``token_embedding="huggingface"`` (HuggingFace models, :mod:`dtlens.model.hf`).
        metadata: free-form dict saved with checkpoints (env, training config...).
        checkpoint_dir: the dtlens checkpoint directory the model was loaded from (None
            for a new model or an original ``.pt``); files beside the weights, such as a
            shipped model's ``dynamics.json``, are read from there.
    """

    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.cfg = cfg
        self.metadata: dict[str, Any] = {}
        self.checkpoint_dir: Path | None = None
        with seeded(cfg.seed):
            if cfg.token_embedding == "huggingface":
                hf_embedding.add_embeddings(self, cfg)
            else:
                if cfg.model_type == "decision_transformer":
                    self.rtg_embed = nn.Linear(1, cfg.d_model, bias=False)
                self.state_embed = nn.Linear(cfg.state_dim, cfg.d_model, bias=False)
                self.action_embed = nn.Embedding(cfg.n_actions + 1, cfg.d_model)
                if cfg.time_embedding == "embedding":
                    self.time_embed = nn.Embedding(cfg.max_timestep + 1, cfg.d_model)
                else:
                    self.time_embed = nn.Linear(1, cfg.d_model, bias=cfg.time_embedding_bias)
                _init_embeddings(self, cfg)
        self.core = tl_core.build_core(cfg)
        for name in self.embedding_hook_names:
            tl_core.attach_hook_point(self.core, name)

    # ------------------------------------------------------------ hook plumbing
    def setup(self) -> None:
        """No-op: every hook point is owned and named by the TransformerLens core."""

    @property
    def hook_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Every hook name (canonical and alias spellings) -> HookPoint.

        Built once, like :attr:`mod_dict`: the bridge rebuilds it (copying its registry
        and resolving every alias) on each access, and TransformerLens' ``hooks()``
        reads it for every hook it adds and removes. The hook points are fixed after
        ``__init__``. A copy is returned, so a caller that edits it changes nothing.
        """
        cached = self.__dict__.get("_hook_dict")
        if cached is None:
            cached = self.core.hook_dict
            self.__dict__["_hook_dict"] = cached
        return dict(cached)

    def hook_points(self) -> list[Any]:  # type: ignore[override]
        """Every HookPoint once (``hook_dict`` lists aliased ones under several names)."""
        return list({id(point): point for point in self.core.hook_points()}.values())

    def remove_all_hook_fns(
        self,
        direction: Literal["fwd", "bwd", "both"] = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """TransformerLens' ``remove_all_hook_fns``, visiting only hook points with hooks.

        Same result (a point without hooks has nothing to remove); it runs at the end
        of every ``hooks()`` / ``run_with_cache`` block, where visiting all ~120 points
        cost about as much as a forward pass of a small model.
        """
        for hook_point in self.core.hook_points():
            if hook_point.fwd_hooks or hook_point.bwd_hooks:
                hook_point.remove_hooks(direction, including_permanent, level=level)

    @property
    def mod_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Module and hook names -> objects, as TransformerLens' ``hooks()`` expects.

        Built once: the bridge rebuilds it from ``named_modules()`` on every access,
        and ``hooks()`` / ``run_with_cache`` read it once per hook name, which cost
        more than a forward pass. The module tree is fixed after ``__init__``.
        """
        cached = self.__dict__.get("_mod_dict")
        if cached is None:
            cached = self.core.mod_dict
            self.__dict__["_mod_dict"] = cached
        return cached

    @property
    def embedding_hook_names(self) -> tuple[str, ...]:
        """The DT embedding hooks this model has (a clone has no ``hook_rtg_embed``)."""
        if self.cfg.model_type == "decision_transformer":
            return EMBEDDING_HOOKS
        return EMBEDDING_HOOKS[1:]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        batch: TrajectoryBatch,
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        *,
        stop_at_layer: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Action logits at every token position ``[batch, n_tokens, n_actions]``.

        For continuous actions these are the action predictions (after the head's
        tanh, if ``cfg.action_tanh``).

        The prediction for step t is at its state token (position 3t+1 for a
        decision transformer, 2t for a clone); :meth:`action_logits` picks those.

        TransformerLens' arguments (:mod:`dtlens.model.tl_forward`): ``return_type``
        ``"logits"``, ``"loss"`` (the mean action loss,
        :func:`~dtlens.model.tl_forward.action_loss`; ``[batch, step]`` with
        ``loss_per_token=True``), ``"both"`` (logits, loss) or None;
        ``stop_at_layer=L`` returns the residual stream entering block L
        (``blocks.L.hook_resid_pre``; ``ln_final``'s input for ``L = n_layers``).
        Other HookedTransformer keywords raise a DTLensError naming the dtlens way.

        Examples:
            >>> loss = model(batch, return_type="loss")  # cross-entropy of batch.actions
        """
        tl_forward.check_forward_kwargs(kwargs, return_type)
        tokens = self.embed(batch)
        core_kwargs = _core_kwargs(self.token_mask(batch))
        if stop_at_layer is not None:
            return self._stop_at_layer(tokens, stop_at_layer, core_kwargs)
        logits = self.core(tokens, **core_kwargs)
        return tl_forward.forward_output(self, batch, logits, return_type, loss_per_token)

    def _stop_at_layer(
        self, tokens: Tensor, layer: int, core_kwargs: dict[str, Any]
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block ``layer`` (the last one after ``n_layers``)."""
        n_layers = self.cfg.n_layers
        if not -n_layers <= layer <= n_layers:
            raise BatchError(
                f"stop_at_layer={layer} is outside -{n_layers}..{n_layers} (n_layers={n_layers})."
            )
        layer = layer + n_layers if layer < 0 else layer
        name = f"blocks.{layer}.hook_resid_pre" if layer < n_layers else "ln_final.hook_in"

        def stop(act: Tensor, hook: Any) -> None:
            raise _ForwardStoppedError(act)

        try:
            with self.hooks([(name, stop)]):
                self.core(tokens, **core_kwargs)
        except _ForwardStoppedError as stopped:
            return stopped.args[0]
        raise AssertionError(f"{name} did not fire")  # pragma: no cover

    def forward_from_layer(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        start_layer: int,
        batch: TrajectoryBatch | None = None,
    ) -> Float[Tensor, "batch pos action"]:
        """Logits from the residual stream entering block ``start_layer`` (``hook_resid_pre``).

        Runs only blocks ``start_layer..n_layers-1``, the final norm and the action
        head (hooks on them fire), so an intervention at layer L can reuse a cached
        prefix instead of recomputing layers < L. ``start_layer == n_layers``
        means ``resid`` is the final residual (``blocks.{n-1}.hook_resid_post``).
        ``batch`` supplies the padding mask, if any (its other fields are unused).

        Examples:
            >>> _, cache = model.run_with_cache(batch)
            >>> logits = model.forward_from_layer(cache["blocks.1.hook_resid_pre"], 1, batch)
        """
        n_layers = self.cfg.n_layers
        if not 0 <= start_layer <= n_layers:
            raise BatchError(f"start_layer={start_layer} is outside 0..{n_layers} (n_layers).")
        if resid.ndim != 3 or resid.shape[-1] != self.cfg.d_model:
            raise BatchError(
                f"resid must have shape [batch, pos, d_model={self.cfg.d_model}], "
                f"got {list(resid.shape)}."
            )
        token_mask = None if batch is None else self.token_mask(batch)
        if token_mask is not None and token_mask.shape != resid.shape[:2]:
            raise BatchError(
                f"batch padding covers {list(token_mask.shape)} tokens, resid has "
                f"{list(resid.shape[:2])}."
            )
        kwargs = _core_kwargs(token_mask)
        for block in self.core.blocks[start_layer:]:
            resid = block(resid, **kwargs)[0]
        return self.core.unembed(self.core.ln_final(resid))

    def embed(self, batch: TrajectoryBatch) -> Float[Tensor, "batch pos d_model"]:
        """The interleaved token embeddings (after ``hook_embed``, before positions).

        With ``token_embedding="huggingface"`` the interleaved tokens pass ``embed_ln``
        before ``hook_embed``.
        """
        self.validate(batch)
        cfg = self.cfg
        time = self.core.hook_time_embed(self._time_embedding(batch.timesteps))
        weight = self.state_embed.weight
        if cfg.token_embedding == "huggingface":
            state_in, action_in = batch.obs.to(weight), batch.actions.to(weight)
        else:
            state_in = rearrange(batch.obs, "b t x y c -> b t (c x y)").to(weight)
            action_in = batch.actions
        states = self.core.hook_state_embed(self.state_embed(state_in)) + time
        n_act = batch.actions.shape[1]
        actions = self.core.hook_action_embed(self.action_embed(action_in)) + time[:, :n_act]
        if n_act < batch.n_steps:  # no action token after the last state
            missing = actions.new_zeros(batch.batch_size, batch.n_steps - n_act, cfg.d_model)
            actions = torch.cat([actions, missing], dim=1)
        parts = [states, actions]
        if cfg.model_type == "decision_transformer":
            rtg = batch.rtg.to(self.rtg_embed.weight).unsqueeze(-1)
            parts.insert(0, self.core.hook_rtg_embed(self.rtg_embed(rtg)) + time)
        tokens = rearrange(torch.stack(parts, dim=2), "b t k d -> b (t k) d")
        tokens = tokens[:, : batch.n_tokens(cfg.tokens_per_step)]
        if cfg.token_embedding == "huggingface":
            tokens = self.embed_ln(tokens)
        return tl_core.embed_hook(self.core)(tokens)

    def _time_embedding(self, timesteps: Tensor) -> Float[Tensor, "batch step d_model"]:
        if self.cfg.time_embedding == "embedding":
            return self.time_embed(timesteps)
        return self.time_embed(timesteps.to(self.time_embed.weight).unsqueeze(-1))

    def action_logits(self, batch: TrajectoryBatch) -> Float[Tensor, "batch step action"]:
        """Logits for the action of every timestep, read at the state tokens."""
        return self.forward(batch)[:, self.state_positions(batch.n_steps)]

    # ----------------------------------------------------------------- padding
    @property
    def context_padding(self) -> str:
        """How this model expects short windows padded: ``"mask"`` or ``"tokens"``.

        dtlens trains with masked left padding, so its models (``"mask"``) give the
        same predictions for a window whether or not it is padded. The original
        project's models were trained and evaluated on left padding run as ordinary
        tokens (``"tokens"``, set when such a checkpoint is loaded) and act correctly
        only on full, padded windows. Stored in ``metadata["context_padding"]``.
        """
        return self.metadata.get("context_padding", "mask")

    def pad_context(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        """Left-pad a window to the full context, the way this model expects it.

        Use this before asking the model for an action from a short history (the
        first steps of an episode), so callers never need to know the recipe.

        Examples:
            >>> window = model.pad_context(batch)  # [B, n_timesteps, ...]
        """
        if batch.n_steps >= self.cfg.n_timesteps:
            return batch
        pad_action = 0.0 if self.cfg.continuous_actions else self.cfg.n_actions
        padded = batch.left_pad(self.cfg.n_timesteps, pad_action=pad_action)
        if self.context_padding == "tokens":
            return padded.replace(padding_mask=None)
        return padded

    # ------------------------------------------------------------ token layout
    def token_mask(self, batch: TrajectoryBatch) -> Tensor | None:
        """``[batch, n_tokens]`` bool, True at real tokens; None when nothing is padded."""
        if batch.padding_mask is None:
            return None
        mask = batch.padding_mask.repeat_interleave(self.cfg.tokens_per_step, dim=1)
        return mask[:, : batch.n_tokens(self.cfg.tokens_per_step)]

    def state_positions(self, n_steps: int) -> list[int]:
        """Token positions of S_1..S_T (3t+1 for a decision transformer, 2t for a clone)."""
        per, offset = self.cfg.tokens_per_step, self.cfg.tokens_per_step - 2
        return [per * t + offset for t in range(n_steps)]

    @property
    def token_kinds(self) -> str:
        """The kinds of one step's tokens, in order: ``"RSA"`` (RTG, state, action) for a
        decision transformer, ``"SA"`` for a clone (no RTG token).

        Example:
            >>> model.token_kinds
            'RSA'
        """
        return "RSA" if self.cfg.model_type == "decision_transformer" else "SA"

    def token_labels(self, batch_or_steps: TrajectoryBatch | int) -> list[str]:
        """``["R1", "S1", "A1", ..., "RT", "ST"]`` for plots (no R for a clone)."""
        if isinstance(batch_or_steps, TrajectoryBatch):
            n_steps = batch_or_steps.n_steps
            n_tokens = batch_or_steps.n_tokens(self.cfg.tokens_per_step)
        else:
            n_steps, n_tokens = batch_or_steps, self.cfg.tokens_per_step * batch_or_steps - 1
        return [f"{k}{t + 1}" for t in range(n_steps) for k in self.token_kinds][:n_tokens]

    # --------------------------------------------------------------- validation
    def validate(self, batch: TrajectoryBatch) -> None:
        """Raise BatchError if ``batch`` does not fit this model (shape, ranges, context)."""
        cfg = self.cfg
        if not isinstance(batch, TrajectoryBatch):
            raise BatchError(
                f"models take a TrajectoryBatch, got {type(batch).__name__}; build one with "
                "dtlens.TrajectoryBatch(obs=, actions=, rtg=, timesteps=)."
            )
        batch.check_values(("rtg",))  # an RTG set to NaN in place after the batch was built
        if tuple(batch.obs.shape[2:]) != cfg.obs_shape:
            raise BatchError(
                f"obs has per-step shape {list(batch.obs.shape[2:])} but this model reads "
                f"{list(cfg.obs_shape)} observations (obs_shape in its config)."
            )
        n_tokens = batch.n_tokens(cfg.tokens_per_step)
        if n_tokens > cfg.n_ctx:
            raise BatchError(
                f"{batch.n_steps} steps make {n_tokens} tokens, more than the model's "
                f"n_ctx={cfg.n_ctx} ({cfg.n_timesteps} steps); pass the last "
                f"{cfg.n_timesteps} steps of the trajectory."
            )
        if cfg.model_type == "decision_transformer" and batch.rtg is None:
            raise BatchError("a decision transformer needs rtg; the batch has rtg=None.")
        t_min, t_max = int(batch.timesteps.min()), int(batch.timesteps.max())
        if t_min < 0 or t_max > cfg.max_timestep:
            raise BatchError(
                f"timesteps range over [{t_min}, {t_max}] but this model's time embedding "
                f"covers [0, {cfg.max_timestep}] (max_timestep in its config)."
            )
        if batch.continuous_actions or cfg.continuous_actions:
            hf_embedding.check_actions(batch, cfg)
        elif batch.actions.numel():
            a_min, a_max = int(batch.actions.min()), int(batch.actions.max())
            if a_min < 0 or a_max > cfg.n_actions:
                raise BatchError(
                    f"actions range over [{a_min}, {a_max}] but this model has {cfg.n_actions} "
                    f"actions (0..{cfg.n_actions - 1}) plus the padding action {cfg.n_actions}."
                )

    # ------------------------------------------------------------- state dicts
    def state_dict(self, *args: Any, destination=None, prefix: str = "", keep_vars=False):  # type: ignore[override]
        """Embedding weights under their names, core weights under ``core.`` in bridge format."""
        out = {} if destination is None else destination
        for name, tensor in nn.Module.state_dict(self, keep_vars=keep_vars).items():
            if not name.startswith("core."):
                out[prefix + name] = tensor
        for name, tensor in self.core.state_dict(keep_vars=keep_vars).items():
            out[f"{prefix}core.{name}"] = tensor
        return out

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign=False):  # type: ignore[override]
        """Inverse of :meth:`state_dict` (strict by default: missing/extra keys raise)."""
        core_sd = {k[5:]: v for k, v in state_dict.items() if k.startswith("core.")}
        own_sd = {k: v for k, v in state_dict.items() if not k.startswith("core.")}
        own_keys = {k for k in nn.Module.state_dict(self) if not k.startswith("core.")}
        if strict and set(own_sd) != own_keys:
            missing, extra = sorted(own_keys - set(own_sd)), sorted(set(own_sd) - own_keys)
            raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {extra}")
        result = nn.Module.load_state_dict(self, own_sd, strict=False, assign=assign)
        core_result = self.core.load_state_dict(core_sd, strict=strict, assign=assign)
        own_missing = [k for k in result.missing_keys if not k.startswith("core.")]
        return nn.modules.module._IncompatibleKeys(
            own_missing + [f"core.{k}" for k in core_result.missing_keys],
            list(result.unexpected_keys) + [f"core.{k}" for k in core_result.unexpected_keys],
        )

    # ----------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.state_embed.weight.device

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"{c.model_type}: {c.n_layers} layers, d_model={c.d_model}, {c.n_heads} heads x "
            f"{c.d_head}, d_mlp={c.d_mlp}, n_ctx={c.n_ctx}, norm={c.normalization}, "
            f"act={c.act_fn}{' gated' if c.gated_mlp else ''}"
            + (f", {c.token_embedding} embedding" if c.token_embedding != "grid" else "")
            + (", tanh head" if c.action_tanh else "")
        )


class _ForwardStoppedError(Exception):
    """Carries the residual stream out of a forward stopped at a layer."""


def _core_kwargs(token_mask: Tensor | None) -> dict[str, Tensor]:
    """The core's keyword arguments for a padded window (none when nothing is padded): the
    attention mask, and position ids that count real tokens only (padding at 0)."""
    if token_mask is None:
        return {}
    return {
        "attention_mask": _attention_mask(token_mask),
        "position_ids": (token_mask.long().cumsum(-1) - 1).clamp(min=0),
    }


def _attention_mask(token_mask: Tensor) -> Tensor:
    """4-D bool mask, True = blocked: real queries see real keys; padding sees only itself.

    Letting a padding token attend to itself keeps its softmax row finite (a fully
    blocked row is NaN before TransformerLens zeroes it, which poisons gradients).
    """
    n = token_mask.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=token_mask.device)
    allowed = token_mask[:, None, None, :] | eye
    return ~allowed


def _init_embeddings(model: HookedDecisionTransformer, cfg: DTConfig) -> None:
    """Initialise embeddings as the original project did (small normal weights)."""
    with torch.no_grad():
        nn.init.normal_(model.state_embed.weight, std=0.02)
        nn.init.normal_(model.action_embed.weight, std=0.02)
        nn.init.normal_(model.time_embed.weight, std=0.02)
        if cfg.model_type == "decision_transformer":
            nn.init.normal_(model.rtg_embed.weight, std=1 / cfg.d_model)
