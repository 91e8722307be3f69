"""`DTConfig`: the validated description of a decision transformer's architecture.

A config is all dtlens needs to rebuild a model: it is saved (as JSON) beside the
weights of every checkpoint, and every field is checked on construction so a bad
value fails at once with its name, not later as a shape error deep in a forward.

Examples:
    >>> from dtlens.model.config import DTConfig
    >>> cfg = DTConfig(n_layers=3, d_model=256, n_heads=8, d_mlp=256, n_ctx=26)
    >>> cfg.d_head, cfg.n_timesteps, cfg.state_dim
    (32, 9, 980)
    >>> hopper = DTConfig(n_layers=3, d_model=128, n_heads=1, d_mlp=512, n_ctx=60,
    ...                   act_fn="relu", obs_shape=(11,), n_actions=3, max_timestep=999,
    ...                   token_embedding="huggingface", action_tanh=True)
    >>> hopper.state_dim, hopper.continuous_actions
    (11, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from dtlens.config_io import ConfigIO, check, check_bool, check_choice, check_int, is_int
from dtlens.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "ONE_HOT_CHANNELS",
    "DTConfig",
    "ModelType",
    "Normalization",
    "TimeEmbedding",
    "TokenEmbedding",
]

#: Channels of a one-hot MiniGrid view (= ``dtlens.env.channels.N_CHANNELS``, written out:
#: that module imports MiniGrid, this one nothing heavy; a test keeps them equal).
ONE_HOT_CHANNELS = 20

ModelType = Literal["decision_transformer", "clone"]
Normalization = Literal["LN", "LNPre"] | None
TimeEmbedding = Literal["embedding", "linear"]
TokenEmbedding = Literal["grid", "huggingface"]

#: Activation functions the TransformerLens native core implements.
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish")
_NORMALIZATIONS = ("LN", "LNPre", None)
_MODEL_TYPES = ("decision_transformer", "clone")
_TIME_EMBEDDINGS = ("embedding", "linear")
_TOKEN_EMBEDDINGS = ("grid", "huggingface")


@dataclass(frozen=True)
class DTConfig(ConfigIO):
    """Architecture of a (hooked) decision transformer.

    Args:
        n_layers: transformer blocks.
        d_model: residual stream width.
        n_heads: attention heads per layer.
        d_mlp: MLP hidden width.
        n_ctx: maximum number of tokens. A decision transformer with T timesteps of
            context uses 3T - 1 tokens (R, S, A per step, no final action); a
            behavioural clone uses 2T - 1 (S, A per step).
        d_head: width of each head; defaults to ``d_model // n_heads``.
        act_fn: MLP activation, one of ``ACTIVATIONS``.
        normalization: ``"LN"`` (LayerNorm with weights), ``"LNPre"`` (weightless
            LayerNorm) or ``None`` (no norm anywhere, including before the head).
        gated_mlp: ``post = act(x W_gate) * (x W_in)`` instead of ``act(x W_in + b_in)``.
        obs_shape: shape of one observation, ``(7, 7, 20)`` for one-hot MiniGrid
            views or ``(7, 7, 3)`` for raw index views, flattened in (channel, x, y)
            order by the state embedding; ``(state_dim,)`` for the vector states of
            ``token_embedding="huggingface"``.
        n_actions: size of the discrete action space (the action embedding has one
            more row, the padding action); with ``token_embedding="huggingface"``
            the number of continuous action dimensions (``act_dim``).
        max_timestep: largest environment timestep the time embedding accepts
            (it has ``max_timestep + 1`` rows when ``time_embedding="embedding"``).
        time_embedding: ``"embedding"`` (a row per timestep) or ``"linear"`` (a
            Linear(1, d_model) on the float timestep).
        time_embedding_bias: whether the linear time embedding has a bias (some
            original checkpoints have one). Must be False for ``"embedding"``.
        model_type: ``"decision_transformer"`` (R, S, A tokens) or ``"clone"``
            (behavioural clone: S, A tokens, no reward conditioning).
        eps: LayerNorm epsilon.
        seed: seed for weight initialisation (None: torch's global RNG).
        token_embedding: how a trajectory becomes tokens. ``"grid"``: dtlens'
            MiniGrid recipe (grids through a bias-free Linear, discrete actions
            through an Embedding). ``"huggingface"``: the recipe of transformers'
            ``DecisionTransformerModel`` (:mod:`dtlens.model.hf`): vector states,
            continuous actions and RTGs through Linear layers with biases, and a
            LayerNorm (``embed_ln``) over the interleaved tokens before the
            positional embedding. It needs ``model_type="decision_transformer"``
            and ``time_embedding="embedding"``.
        action_tanh: a tanh after the action head (continuous actions in [-1, 1]);
            only with ``token_embedding="huggingface"``.
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    n_ctx: int
    d_head: int | None = None
    act_fn: str = "gelu"
    normalization: Normalization = "LN"
    gated_mlp: bool = False
    obs_shape: tuple[int, ...] = (7, 7, 20)
    n_actions: int = 7
    max_timestep: int = 50
    time_embedding: TimeEmbedding = "embedding"
    time_embedding_bias: bool = False
    model_type: ModelType = "decision_transformer"
    eps: float = 1e-5
    seed: int | None = None
    token_embedding: TokenEmbedding = "grid"
    action_tanh: bool = False

    #: Fields added after configs were first saved: ``to_dict`` leaves them out at their
    #: defaults, so a grid model's saved config is unchanged (and older dtlens loads it).
    _json_omit_defaults = ("token_embedding", "action_tanh")

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "n_actions"):
            check_int(self, name)
        if self.d_head is None:
            if self.d_model % self.n_heads != 0:
                raise ConfigError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "pass d_head explicitly or choose a divisible pair."
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        check_int(self, "d_head")
        check_choice(self, "act_fn", ACTIVATIONS)
        check_choice(self, "normalization", _NORMALIZATIONS)
        check_choice(self, "model_type", _MODEL_TYPES)
        check_choice(self, "time_embedding", _TIME_EMBEDDINGS)
        if self.time_embedding_bias and self.time_embedding != "linear":
            raise ConfigError(
                "time_embedding_bias=True only applies to time_embedding='linear', "
                f"got time_embedding={self.time_embedding!r}."
            )
        self._check_token_embedding()
        check_int(self, "max_timestep", minimum=0)
        check_int(self, "seed", minimum=0, optional=True)
        if self.n_ctx < self.tokens_per_step - 1:
            raise ConfigError(
                f"n_ctx={self.n_ctx} is too small for one timestep of a {self.model_type} "
                f"({self.tokens_per_step - 1} tokens)."
            )
        check(self, "eps", isinstance(self.eps, float) and self.eps > 0, "a positive float")

    def _check_token_embedding(self) -> None:
        check_choice(self, "token_embedding", _TOKEN_EMBEDDINGS)
        check_bool(self, "action_tanh")
        obs_shape = tuple(self.obs_shape)
        positive = all(is_int(s) and s > 0 for s in obs_shape)
        if self.token_embedding == "grid":
            if len(obs_shape) != 3 or not positive:
                raise ConfigError(
                    f"obs_shape={self.obs_shape!r} must be three positive ints (x, y, channels)."
                )
            if self.action_tanh:
                raise ConfigError(
                    "action_tanh=True only applies to token_embedding='huggingface' "
                    "(continuous actions); a grid model's head outputs action logits."
                )
        else:
            if len(obs_shape) != 1 or not positive:
                raise ConfigError(
                    f"obs_shape={self.obs_shape!r} must be one positive int (state_dim,) "
                    "for token_embedding='huggingface' (vector states)."
                )
            for name, needed in (
                ("model_type", "decision_transformer"),
                ("time_embedding", "embedding"),
            ):
                if getattr(self, name) != needed:
                    raise ConfigError(
                        f"token_embedding='huggingface' needs {name}={needed!r}, "
                        f"got {getattr(self, name)!r}."
                    )
        object.__setattr__(self, "obs_shape", obs_shape)

    @property
    def continuous_actions(self) -> bool:
        """Whether actions are continuous vectors of ``n_actions`` dims (not indices)."""
        return self.token_embedding == "huggingface"

    @property
    def tokens_per_step(self) -> int:
        """3 for a decision transformer (R, S, A), 2 for a behavioural clone (S, A)."""
        return 3 if self.model_type == "decision_transformer" else 2

    @property
    def n_timesteps(self) -> int:
        """Largest context, in timesteps, that fits in ``n_ctx`` (no final action)."""
        return (self.n_ctx + 1) // self.tokens_per_step

    @property
    def one_hot_obs(self) -> bool:
        """Whether the model reads one-hot MiniGrid grids (``[7, 7, 20]``), which raw views
        (``[7, 7, 3]`` indices) must be encoded into; else it reads its inputs as floats
        (raw grids, or the vector states of a converted HuggingFace model).

        Example:
            >>> shape = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=8)
            >>> DTConfig(**shape).one_hot_obs, DTConfig(**shape, obs_shape=(7, 7, 3)).one_hot_obs
            (True, False)
        """
        return self.token_embedding == "grid" and self.obs_shape[-1] == ONE_HOT_CHANNELS

    @property
    def state_dim(self) -> int:
        """Length of the flattened observation the state embedding reads."""
        return math.prod(self.obs_shape)
