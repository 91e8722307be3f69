"""`DTConfig`: the validated description of a decision transformer's architecture.

A config is all dtlens needs to rebuild a model: it is saved (as JSON) beside the
weights of every checkpoint, and every field is checked on construction so a bad
value fails at once with its name, not later as a shape error deep in a forward.

Examples:
    >>> from dtlens.model.config import DTConfig
    >>> cfg = DTConfig(n_layers=3, d_model=256, n_heads=8, d_mlp=256, n_ctx=26)
    >>> cfg.d_head, cfg.n_timesteps, cfg.state_dim
    (32, 9, 980)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from dtlens.errors import ConfigError

__all__ = ["ACTIVATIONS", "DTConfig", "ModelType", "Normalization", "TimeEmbedding"]

ModelType = Literal["decision_transformer", "clone"]
Normalization = Literal["LN", "LNPre"] | None
TimeEmbedding = Literal["embedding", "linear"]

#: Activation functions the TransformerLens native core implements.
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish")
_NORMALIZATIONS = ("LN", "LNPre", None)
_MODEL_TYPES = ("decision_transformer", "clone")
_TIME_EMBEDDINGS = ("embedding", "linear")


@dataclass(frozen=True)
class DTConfig:
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
            views or ``(7, 7, 3)`` for raw index views. Flattened in (channel, x, y)
            order by the state embedding.
        n_actions: size of the action space (the action embedding has one more
            row, the padding action).
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

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "n_actions"):
            _require_positive_int(name, getattr(self, name))
        if self.d_head is None:
            if self.d_model % self.n_heads != 0:
                raise ConfigError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "pass d_head explicitly or choose a divisible pair."
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        _require_positive_int("d_head", self.d_head)
        if self.act_fn not in ACTIVATIONS:
            raise ConfigError(f"act_fn={self.act_fn!r} is not supported; use one of {ACTIVATIONS}.")
        if self.normalization not in _NORMALIZATIONS:
            raise ConfigError(
                f"normalization={self.normalization!r} is not supported; "
                f"use one of {_NORMALIZATIONS}."
            )
        if self.model_type not in _MODEL_TYPES:
            raise ConfigError(
                f"model_type={self.model_type!r} is not supported; use one of {_MODEL_TYPES}."
            )
        if self.time_embedding not in _TIME_EMBEDDINGS:
            raise ConfigError(
                f"time_embedding={self.time_embedding!r} is not supported; "
                f"use one of {_TIME_EMBEDDINGS}."
            )
        if self.time_embedding_bias and self.time_embedding != "linear":
            raise ConfigError(
                "time_embedding_bias=True only applies to time_embedding='linear', "
                f"got time_embedding={self.time_embedding!r}."
            )
        obs_shape = tuple(self.obs_shape)
        if len(obs_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in obs_shape):
            raise ConfigError(
                f"obs_shape={self.obs_shape!r} must be three positive ints (x, y, channels)."
            )
        object.__setattr__(self, "obs_shape", obs_shape)
        if not isinstance(self.max_timestep, int) or self.max_timestep < 0:
            raise ConfigError(f"max_timestep={self.max_timestep!r} must be an int >= 0.")
        if self.n_ctx < self.tokens_per_step - 1:
            raise ConfigError(
                f"n_ctx={self.n_ctx} is too small for one timestep of a {self.model_type} "
                f"({self.tokens_per_step - 1} tokens)."
            )
        if not (isinstance(self.eps, float) and self.eps > 0):
            raise ConfigError(f"eps={self.eps!r} must be a positive float.")

    @property
    def tokens_per_step(self) -> int:
        """3 for a decision transformer (R, S, A), 2 for a behavioural clone (S, A)."""
        return 3 if self.model_type == "decision_transformer" else 2

    @property
    def n_timesteps(self) -> int:
        """Largest context, in timesteps, that fits in ``n_ctx`` (no final action)."""
        return (self.n_ctx + 1) // self.tokens_per_step

    @property
    def state_dim(self) -> int:
        """Length of the flattened observation the state embedding reads."""
        return math.prod(self.obs_shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["obs_shape"] = list(self.obs_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DTConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ConfigError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DTConfig fields {unknown}; known fields: {sorted(known)}.")
        data = dict(data)
        if "obs_shape" in data:
            data["obs_shape"] = tuple(data["obs_shape"])
        return cls(**data)


def _require_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive int.")
