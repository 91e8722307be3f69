"""transformers' ``DecisionTransformerModel`` token embedding (``token_embedding="huggingface"``).

transformers embeds a continuous-control trajectory as (verified against
``transformers/models/decision_transformer/modeling_decision_transformer.py``, 5.24):

* ``R_t = embed_return(rtg_t) + embed_timestep(t)``, a ``Linear(1, d)`` with bias;
* ``S_t = embed_state(s_t) + embed_timestep(t)``, a ``Linear(state_dim, d)`` with bias;
* ``A_t = embed_action(a_t) + embed_timestep(t)``, a ``Linear(act_dim, d)`` with bias;
* the interleaved ``R1, S1, A1, ...`` then pass ``embed_ln`` (a LayerNorm, eps 1e-5),
  and the GPT-2 encoder adds its position embedding with ``position_ids`` all zero:
  ``wpe[0]`` on every token.

:class:`dtlens.model.hooked_dt.HookedDecisionTransformer` builds these modules under
the grid model's names (``rtg_embed``, ``state_embed``, ``action_embed``,
``time_embed``, plus ``embed_ln``) when its config says so, with the same hook
points (``hook_rtg_embed`` ... after each Linear, before the time embedding is
added; ``hook_embed`` after ``embed_ln``). The constant position embedding is the
core's ordinary ``W_pos`` with every row equal to ``wpe[0]``
(:func:`dtlens.model.hf.convert.from_hf` fills it so).

Examples:
    >>> import torch
    >>> from dtlens.model import DTConfig, HookedDecisionTransformer
    >>> cfg = DTConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=16, n_ctx=6, obs_shape=(5,),
    ...                n_actions=2, token_embedding="huggingface", action_tanh=True, seed=0)
    >>> model = HookedDecisionTransformer(cfg)
    >>> model.state_embed
    Linear(in_features=5, out_features=8, bias=True)
    >>> model.embed_ln.normalized_shape, model.embed_ln.eps
    ((8,), 1e-05)
"""

from __future__ import annotations

from torch import nn

from dtlens.errors import BatchError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.config import DTConfig

__all__ = ["add_embeddings", "check_actions"]


def add_embeddings(model: nn.Module, cfg: DTConfig) -> None:
    """Give ``model`` (a HookedDecisionTransformer being built) transformers' embedding
    modules (default torch initialisation).

    Linear layers with biases on the RTG, the state vector and the continuous action,
    an Embedding of the timestep (``max_timestep + 1`` rows: HF's ``max_ep_len``), and
    the LayerNorm over the interleaved tokens.
    """
    model.rtg_embed = nn.Linear(1, cfg.d_model)
    model.state_embed = nn.Linear(cfg.state_dim, cfg.d_model)
    model.action_embed = nn.Linear(cfg.n_actions, cfg.d_model)
    model.time_embed = nn.Embedding(cfg.max_timestep + 1, cfg.d_model)
    model.embed_ln = nn.LayerNorm(cfg.d_model)


def check_actions(batch: TrajectoryBatch, cfg: DTConfig) -> None:
    """Raise BatchError unless the batch's actions are of the model's kind and size.

    Examples:
        >>> import torch
        >>> cfg = DTConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=16, n_ctx=6,
        ...                obs_shape=(5,), n_actions=2, token_embedding="huggingface")
        >>> batch = TrajectoryBatch(torch.zeros(1, 2, 5), torch.zeros(1, 1, 3),
        ...                         torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long))
        >>> check_actions(batch, cfg)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dtlens.errors.BatchError: actions have 3 dimensions but this model has n_actions=2 ...
    """
    if not cfg.continuous_actions:
        raise BatchError(
            f"the batch has continuous actions {list(batch.actions.shape)} but this model "
            f"takes discrete action indices [batch, step - 1] in 0..{cfg.n_actions - 1}."
        )
    if not batch.continuous_actions:
        raise BatchError(
            f"this model takes continuous actions [batch, step - 1, {cfg.n_actions}] "
            f"(floats), got {batch.actions.dtype} actions {list(batch.actions.shape)}."
        )
    if batch.actions.shape[-1] != cfg.n_actions:
        raise BatchError(
            f"actions have {batch.actions.shape[-1]} dimensions but this model has "
            f"n_actions={cfg.n_actions} action dimensions."
        )
