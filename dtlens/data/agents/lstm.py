"""The PPO demonstrator: BabyAI's conv + LSTM actor-critic on MiniGrid's raw view.

Background:
    MemoryDT was trained on demonstrations from a recurrent PPO agent, the
    DecisionTransformerInterpretability project's ``TrajectoryLSTM`` with arch
    ``"bow_endpool_res"`` (itself BabyAI's ``ACModel``). :class:`LSTMAgent` is that
    network, computing the same function:

    1. bag-of-words image embedding: each cell's (object, colour, state) indices
       ``(o, c, s)`` look up rows ``o``, ``max_value + c`` and ``2 * max_value + s``
       of one ``[3 * max_value, image_dim]`` table and are summed (no division or
       scaling of the raw values); laid out channels-first as ``[image_dim, x, y]``;
    2. ``Conv2d(3x3, pad 1) -> BatchNorm2d -> ReLU`` twice, then a 7x7 max-pool
       ("endpool") and a ReLU -> ``[image_dim]``. (The arch's "res" only adds
       residuals around FiLM instruction blocks, which this agent does not have, so
       there is no residual connection here.);
    3. ``LSTMCell(image_dim, memory_dim)``; the recurrent state is BabyAI's
       ``memory = cat(h, c)`` and the embedding fed to the heads is the new ``h``;
    4. actor ``Linear(memory_dim, 64) -> Tanh -> Linear(64, n_actions)`` (the logits
       returned are log-softmax normalised, as the original's ``Categorical``
       was), critic likewise to one value.

    BatchNorm uses its running statistics (eval mode) whenever the agent acts; the
    PPO trainer in :mod:`dtlens.training.ppo` keeps it that way while learning too,
    so a row's action never depends on the other rows of the batch.

Usage:
    >>> import torch
    >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=16, memory_dim=16, seed=0)).eval()
    >>> obs = torch.ones(2, 7, 7, 3, dtype=torch.long)
    >>> state = agent.initial_state(2)
    >>> logits, state = agent.act(obs, state)
    >>> logits.shape, state.shape
    (torch.Size([2, 7]), torch.Size([2, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from dtlens.checkpoint_files import read_checkpoint_dir, resolve_device, write_checkpoint_dir
from dtlens.config_io import ConfigIO, check, check_int
from dtlens.errors import BatchError, CheckpointError, ConfigError, ObservationError
from dtlens.torch_context import seeded

__all__ = [
    "AGENT_CONFIG_FILE",
    "AGENT_FORMAT",
    "AGENT_WEIGHTS_FILE",
    "LSTMAgent",
    "LSTMAgentConfig",
    "load_lstm_agent",
    "save_lstm_agent",
]

AGENT_CONFIG_FILE = "config.json"
AGENT_WEIGHTS_FILE = "agent.safetensors"
AGENT_FORMAT = "dtlens-lstm-agent"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LSTMAgentConfig(ConfigIO):
    """Sizes of an :class:`LSTMAgent` (defaults: the original Memory agent's).

    Attributes:
        image_dim: Channels of the image embedding and convolutions, and the LSTM input.
        memory_dim: LSTM hidden size; the state holds ``h`` and ``c``, ``2 * memory_dim``.
        hidden_dim: Width of the actor's and critic's hidden layer.
        n_actions: Number of actions (7 in MiniGrid).
        max_value: Rows per attribute in the bag-of-words table (BabyAI's 9): every
            object, colour and state index must be below it.
        view_size: Side of the square partial view (MiniGrid's 7).
        seed: Seeds the initial weights (``None``: torch's global RNG).

    Example:
        >>> LSTMAgentConfig().state_dim
        256
        >>> LSTMAgentConfig(memory_dim=0)
        Traceback (most recent call last):
        ...
        dtlens.errors.ConfigError: LSTMAgentConfig.memory_dim=0 must be a positive int.
    """

    image_dim: int = 128
    memory_dim: int = 128
    hidden_dim: int = 64
    n_actions: int = 7
    max_value: int = 9
    view_size: int = 7
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("image_dim", "memory_dim", "hidden_dim", "n_actions", "max_value"):
            check_int(self, name)
        # the end pool is a fixed 7x7 window, as in the original
        check(self, "view_size", self.view_size == 7, "7")
        check_int(self, "seed", minimum=0, optional=True)

    @property
    def state_dim(self) -> int:
        """Width of the recurrent state ``cat(h, c)``."""
        return 2 * self.memory_dim


def _babyai_linear_init(module: nn.Module) -> None:
    """BabyAI's init: Linear rows ~ N(0, 1) scaled to unit norm, biases 0."""
    if isinstance(module, nn.Linear):
        with torch.no_grad():
            module.weight.normal_(0, 1)
            module.weight.mul_(1 / module.weight.pow(2).sum(1, keepdim=True).sqrt())
            if module.bias is not None:
                module.bias.zero_()


class LSTMAgent(nn.Module):
    """BabyAI-style conv + LSTM actor-critic; implements :class:`~dtlens.data.agents.base.Agent`.

    Args:
        config: The sizes (defaults: the original Memory agent's).
        metadata: Free-form JSON-serialisable facts (environment, training run) kept
            with the weights by :func:`save_lstm_agent`.

    Example:
        >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0))
        >>> sorted(name for name, _ in agent.named_children())
        ['actor', 'bn1', 'bn2', 'bow', 'conv1', 'conv2', 'critic', 'memory_rnn']
    """

    def __init__(self, config: LSTMAgentConfig | None = None, metadata: dict | None = None):
        super().__init__()
        self.config = config if config is not None else LSTMAgentConfig()
        self.metadata: dict[str, Any] = dict(metadata or {})
        cfg = self.config
        with seeded(cfg.seed):
            self.bow = nn.Embedding(3 * cfg.max_value, cfg.image_dim)
            self.conv1 = nn.Conv2d(cfg.image_dim, cfg.image_dim, kernel_size=3, padding=1)
            self.bn1 = nn.BatchNorm2d(cfg.image_dim)
            self.conv2 = nn.Conv2d(cfg.image_dim, cfg.image_dim, kernel_size=3, padding=1)
            self.bn2 = nn.BatchNorm2d(cfg.image_dim)
            self.memory_rnn = nn.LSTMCell(cfg.image_dim, cfg.memory_dim)
            self.actor = nn.Sequential(
                nn.Linear(cfg.memory_dim, cfg.hidden_dim),
                nn.Tanh(),
                nn.Linear(cfg.hidden_dim, cfg.n_actions),
            )
            self.critic = nn.Sequential(
                nn.Linear(cfg.memory_dim, cfg.hidden_dim), nn.Tanh(), nn.Linear(cfg.hidden_dim, 1)
            )
            self.apply(_babyai_linear_init)
        self.register_buffer(
            "bow_offsets", torch.arange(3) * cfg.max_value, persistent=False
        )  # rows of the object / colour / state blocks

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return self.config.n_actions

    @property
    def state_dim(self) -> int:
        """Width of the recurrent state ``cat(h, c)``."""
        return self.config.state_dim

    # -- input checks ---------------------------------------------------------------

    def check_obs(self, obs: Int[Tensor, "n 7 7 3"] | np.ndarray) -> Int[Tensor, "n 7 7 3"]:
        """Validate raw MiniGrid images and return them as an int64 tensor on the agent's device.

        Raises:
            ObservationError: Wrong shape, a float dtype (e.g. a one-hot image), or an
                index outside ``[0, max_value)`` (the bag-of-words table would alias it).

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8))
            >>> agent.check_obs(torch.zeros(1, 7, 7, 3, dtype=torch.uint8)).dtype
            torch.int64
        """
        if isinstance(obs, np.ndarray):
            obs = torch.from_numpy(obs)
        if not isinstance(obs, Tensor):
            raise ObservationError(
                f"obs must be a tensor or numpy array [n, 7, 7, 3], got {type(obs).__name__}"
            )
        size = self.config.view_size
        if obs.ndim != 4 or tuple(obs.shape[1:]) != (size, size, 3):
            raise ObservationError(
                f"obs must have shape [n_envs, {size}, {size}, 3] (raw MiniGrid images), "
                f"got {tuple(obs.shape)}"
            )
        if obs.is_floating_point() or obs.is_complex() or obs.dtype == torch.bool:
            raise ObservationError(
                f"obs must hold integer MiniGrid indices (uint8/int), got dtype {obs.dtype}; "
                "one-hot [7, 7, 20] images are for the decision transformer, not this agent"
            )
        obs = obs.to(device=self.bow.weight.device, dtype=torch.long)
        if obs.numel() and (int(obs.min()) < 0 or int(obs.max()) >= self.config.max_value):
            raise ObservationError(
                f"obs indices must lie in [0, {self.config.max_value}) (max_value), got range "
                f"[{int(obs.min())}, {int(obs.max())}]"
            )
        return obs

    def _check_state(self, state: Tensor, n: int) -> Tensor:
        if not isinstance(state, Tensor) or tuple(state.shape) != (n, self.state_dim):
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise BatchError(
                f"state must have shape [{n}, {self.state_dim}] (cat(h, c)), got {got}"
            )
        return state

    # -- the network ----------------------------------------------------------------

    def encode_image(self, obs: Int[Tensor, "n 7 7 3"]) -> Float[Tensor, "n image_dim"]:
        """Bag-of-words embedding, two conv blocks, 7x7 end max-pool, ReLU.

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8)).eval()
            >>> agent.encode_image(torch.ones(3, 7, 7, 3, dtype=torch.long)).shape
            torch.Size([3, 8])
        """
        obs = self.check_obs(obs)
        x = self.bow(obs + self.bow_offsets).sum(-2)  # [n, x, y, d]
        x = x.permute(0, 3, 1, 2)  # [n, d, x, y]: channels first, as the original
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(F.max_pool2d(x, kernel_size=7, stride=2))
        return x.flatten(1)

    def step(
        self, features: Float[Tensor, "n image_dim"], state: Float[Tensor, "n state"]
    ) -> tuple[Float[Tensor, "n n_actions"], Float[Tensor, " n"], Float[Tensor, "n state"]]:
        """One LSTM step from image features: ``(log-prob logits, value, new state)``.

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4))
            >>> logits, value, state = agent.step(torch.zeros(2, 8), agent.initial_state(2))
            >>> [round(p, 5) for p in logits.exp().sum(-1).tolist()], value.shape, state.shape
            ([1.0, 1.0], torch.Size([2]), torch.Size([2, 8]))
        """
        state = self._check_state(state, features.shape[0])
        m = self.config.memory_dim
        h, c = self.memory_rnn(features, (state[:, :m], state[:, m:]))
        logits = F.log_softmax(self.actor(h), dim=-1)
        value = self.critic(h).squeeze(-1)
        return logits, value, torch.cat([h, c], dim=-1)

    def forward(
        self, obs: Int[Tensor, "n 7 7 3"], state: Float[Tensor, "n state"]
    ) -> tuple[Float[Tensor, "n n_actions"], Float[Tensor, " n"], Float[Tensor, "n state"]]:
        """One step: ``(log-prob logits, value, new state)`` (no state reset; see :meth:`act`).

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4)).eval()
            >>> obs = torch.ones(1, 7, 7, 3, dtype=torch.long)
            >>> [t.shape[-1] for t in agent(obs, agent.initial_state(1))]
            [7, 1, 8]
        """
        return self.step(self.encode_image(obs), state)

    # -- the Agent protocol ---------------------------------------------------------

    def initial_state(self, n_envs: int) -> Float[Tensor, "n_envs state"]:
        """Zeros ``[n_envs, 2 * memory_dim]`` (BabyAI's initial memory).

        Example:
            >>> LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4)).initial_state(3).shape
            torch.Size([3, 8])
        """
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs <= 0:
            raise ConfigError(f"n_envs must be a positive int, got {n_envs!r}")
        return torch.zeros(n_envs, self.state_dim, device=self.bow.weight.device)

    def reset_state(
        self, state: Float[Tensor, "n state"], done_mask: Bool[Tensor, " n"] | None
    ) -> Float[Tensor, "n state"]:
        """Rows where ``done_mask`` is True set to the initial (zero) state: ``state * (1 - done)``.

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=1))
            >>> agent.reset_state(torch.ones(2, 2), torch.tensor([True, False])).tolist()
            [[0.0, 0.0], [1.0, 1.0]]
        """
        if done_mask is None:
            return state
        done_mask = torch.as_tensor(done_mask, device=state.device)
        if done_mask.shape != state.shape[:1] or done_mask.dtype != torch.bool:
            raise BatchError(
                f"done_mask must be a bool tensor [{state.shape[0]}], got "
                f"{tuple(done_mask.shape)} {done_mask.dtype}"
            )
        return state * (~done_mask).unsqueeze(-1).to(state.dtype)

    @torch.no_grad()
    def act(
        self,
        obs: Int[Tensor, "n_envs 7 7 3"],
        state: Float[Tensor, "n_envs state"],
        done_mask: Bool[Tensor, " n_envs"] | None = None,
    ) -> tuple[Float[Tensor, "n_envs n_actions"], Float[Tensor, "n_envs state"]]:
        """Logits for one step of every environment, and the next state (no gradients).

        Rows whose ``done_mask`` is True start from the initial state (a new episode).

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4, seed=0)).eval()
            >>> obs = torch.ones(2, 7, 7, 3, dtype=torch.long)
            >>> logits, state = agent.act(obs, agent.initial_state(2))
            >>> torch.allclose(logits[0], logits[1])
            True
        """
        obs = self.check_obs(obs)
        state = self._check_state(state, obs.shape[0])
        logits, _, new_state = self(obs, self.reset_state(state, done_mask))
        return logits, new_state

    def unroll(
        self,
        obs: Int[Tensor, "T n 7 7 3"],
        state: Float[Tensor, "n state"],
        starts: Bool[Tensor, "T n"] | None = None,
        detach_every: int | None = None,
    ) -> tuple[
        Float[Tensor, "T n n_actions"], Float[Tensor, "T n"], Float[Tensor, "T n state"], Tensor
    ]:
        """Run ``T`` consecutive steps of ``n`` environments (images encoded in one batch).

        Args:
            obs: Images, time first.
            state: The state before the first step.
            starts: True where ``obs[t]`` begins a new episode (state reset first).
            detach_every: Cut the gradient through the state before steps k, 2k, ...
                (truncated backpropagation through time); None keeps it all.

        Returns:
            ``(logits, values, states_in, final_state)``: ``states_in[t]`` is the state
            entering step t, before its reset.

        Example:
            >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=4)).eval()
            >>> logits, values, states, last = agent.unroll(
            ...     torch.ones(5, 2, 7, 7, 3, dtype=torch.long), agent.initial_state(2))
            >>> logits.shape, values.shape, states.shape, last.shape
            (torch.Size([5, 2, 7]), torch.Size([5, 2]), torch.Size([5, 2, 8]), torch.Size([2, 8]))
        """
        if not isinstance(obs, Tensor) or obs.ndim != 5:
            got = tuple(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
            raise ObservationError(f"obs must have shape [T, n_envs, 7, 7, 3], got {got}")
        n_steps, n = obs.shape[:2]
        if starts is not None and tuple(starts.shape) != (n_steps, n):
            raise BatchError(f"starts must have shape [{n_steps}, {n}], got {tuple(starts.shape)}")
        state = self._check_state(state, n)
        features = self.encode_image(obs.reshape(n_steps * n, *obs.shape[2:]))
        features = features.reshape(n_steps, n, -1)
        logits, values, states_in = [], [], []
        for t in range(n_steps):
            if detach_every and t and t % detach_every == 0:
                state = state.detach()
            states_in.append(state)
            state = self.reset_state(state, None if starts is None else starts[t])
            step_logits, value, state = self.step(features[t], state)
            logits.append(step_logits)
            values.append(value)
        return torch.stack(logits), torch.stack(values), torch.stack(states_in), state


def save_lstm_agent(
    agent: LSTMAgent, directory: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``agent`` as ``config.json`` + ``agent.safetensors`` in ``directory`` (no pickle).

    ``metadata`` is merged over ``agent.metadata`` and must be JSON-serialisable.

    Example:
        >>> save_lstm_agent(agent, "runs/ppo/final", {"note": "seed 0"})  # doctest: +SKIP
    """
    config = {
        "format": AGENT_FORMAT,
        "format_version": _FORMAT_VERSION,
        "agent": agent.config.to_dict(),
        "metadata": {**agent.metadata, **(metadata or {})},
    }
    return write_checkpoint_dir(
        directory, AGENT_CONFIG_FILE, AGENT_WEIGHTS_FILE, config, agent, "agent"
    )


def load_lstm_agent(directory: str | Path, device: torch.device | str = "cpu") -> LSTMAgent:
    """Load an agent written by :func:`save_lstm_agent`, in eval mode.

    (Original-project ``.pt`` files: :func:`dtlens.data.agents.load_original_lstm`.)

    Raises:
        CheckpointError: Missing/corrupt files, a foreign config, or mismatched weights.

    Example:
        >>> agent = load_lstm_agent("runs/ppo/final")  # doctest: +SKIP
    """
    directory = Path(directory)
    config, state_dict = read_checkpoint_dir(
        directory,
        AGENT_CONFIG_FILE,
        AGENT_WEIGHTS_FILE,
        AGENT_FORMAT,
        _FORMAT_VERSION,
        "a dtlens LSTM agent",
    )
    config_path, weights_path = directory / AGENT_CONFIG_FILE, directory / AGENT_WEIGHTS_FILE
    try:
        cfg = LSTMAgentConfig.from_dict(config["agent"])
    except (KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{config_path} has an invalid agent config: {err}") from err
    agent = LSTMAgent(cfg, metadata=config.get("metadata", {}))
    try:
        agent.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {weights_path} do not match its config: {err}") from err
    return agent.to(resolve_device(device)).eval()
