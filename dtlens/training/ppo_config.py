"""`PPOConfig`: every knob of a recurrent PPO run of the LSTM demonstrator agent.

Kept apart from :mod:`dtlens.training.ppo` (which re-exports it) so that reading,
validating and serialising a config, and ``dtlens train-ppo --help`` (whose flags are
derived from these fields and their docs), import no torch.

Example:
    >>> from dtlens.training.ppo_config import PPOConfig
    >>> PPOConfig.from_dict(PPOConfig(seed=3).to_dict()).seed
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtlens.config_io import ConfigIO, check, check_bool, check_int, check_number
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.data.agents.lstm import LSTMAgentConfig

__all__ = ["MEMORY_ENV_ID", "PPOConfig"]

#: The Memory task's env id (= ``dtlens.env.MEMORY_ENV_ID``, spelled out here so that
#: this module imports no gymnasium; a test checks they agree).
MEMORY_ENV_ID = "MiniGrid-MemoryS7FixedStart-v0"


@dataclass(frozen=True)
class PPOConfig(ConfigIO):
    """Every knob of a PPO run (validated on construction; JSON round-trippable).

    Attributes:
        env_id: MiniGrid id to train on (when ``train_ppo`` gets no env factory).
        max_steps: Episode length limit for ``env_id`` (None: the env's default).
        total_steps: Environment steps in all (summed over envs).
        n_envs: Environments stepped together.
        n_steps: Steps per env per update; a multiple of ``recurrence``.
        recurrence: Steps of backpropagation through the LSTM state (chunk length).
        update_epochs: Passes over each segment.
        n_minibatches: Minibatches per pass (at most the number of (env, chunk) pairs).
        learning_rate: Adam step size (eps 1e-5).
        anneal_lr: Decay the learning rate linearly to 0 over the run.
        gamma: Discount.
        gae_lambda: GAE lambda.
        clip_coef: PPO ratio clip epsilon.
        ent_coef: Entropy bonus weight.
        vf_coef: Value loss weight.
        max_grad_norm: Gradient norm clip.
        normalize_advantages: Standardise advantages per minibatch.
        image_dim: Image embedding width of a fresh agent.
        memory_dim: LSTM width of a fresh agent.
        hidden_dim: Actor/critic hidden width of a fresh agent.
        seed: Seeds the fresh agent, the envs and the action sampling.
        checkpoint_every: Save a checkpoint every k updates (0: only the final one).
        progress: Show a tqdm progress bar.
        num_threads: Torch intra-op threads while training (restored afterwards);
            None leaves torch's setting. Small agents train fastest with 1 (batched
            convolutions over tiny images gain little from threads, and on a busy
            machine spinning threads cost much more).

    Example:
        >>> PPOConfig(n_steps=64, recurrence=8).batch_size
        1024
        >>> PPOConfig(n_steps=10, recurrence=4)
        Traceback (most recent call last):
        ...
        dtlens.errors.ConfigError: PPOConfig.n_steps=10 must be a multiple of recurrence=4
    """

    env_id: str = MEMORY_ENV_ID
    max_steps: int | None = 50
    total_steps: int = 2_000_000
    n_envs: int = 16
    n_steps: int = 64
    recurrence: int = 8
    update_epochs: int = 4
    n_minibatches: int = 4
    learning_rate: float = 5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    image_dim: int = 128
    memory_dim: int = 128
    hidden_dim: int = 64
    seed: int = 0
    checkpoint_every: int = 0
    progress: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        check(
            self,
            "env_id",
            isinstance(self.env_id, str) and bool(self.env_id),
            "a non-empty gymnasium id",
        )
        for name in ("max_steps", "num_threads"):
            check_int(self, name, optional=True)
        positive_ints = (
            "total_steps",
            "n_envs",
            "n_steps",
            "recurrence",
            "update_epochs",
            "n_minibatches",
            "image_dim",
            "memory_dim",
            "hidden_dim",
        )
        for name in positive_ints:
            check_int(self, name)
        for name in ("seed", "checkpoint_every"):
            check_int(self, name, minimum=0)
        for name in ("learning_rate", "clip_coef", "max_grad_norm"):
            check_number(self, name, 0, low_open=True)
        for name in ("ent_coef", "vf_coef"):
            check_number(self, name, 0)
        for name in ("gamma", "gae_lambda"):
            check_number(self, name, 0, 1)
        for name in ("anneal_lr", "normalize_advantages", "progress"):
            check_bool(self, name)
        if self.n_steps % self.recurrence:
            raise ConfigError(
                f"PPOConfig.n_steps={self.n_steps} must be a multiple of "
                f"recurrence={self.recurrence}"
            )
        n_chunks = self.n_envs * self.n_steps // self.recurrence
        if self.n_minibatches > n_chunks:
            raise ConfigError(
                f"PPOConfig.n_minibatches={self.n_minibatches} exceeds the {n_chunks} "
                f"(env, chunk) pairs per segment (n_envs * n_steps / recurrence)"
            )
        if self.total_steps < self.batch_size:
            raise ConfigError(
                f"PPOConfig.total_steps={self.total_steps} is less than one update's "
                f"batch (n_envs * n_steps = {self.batch_size})"
            )

    @property
    def batch_size(self) -> int:
        """Steps per update, ``n_envs * n_steps``."""
        return self.n_envs * self.n_steps

    @property
    def n_updates(self) -> int:
        """Number of updates, ``total_steps // batch_size``."""
        return self.total_steps // self.batch_size

    def agent_config(self) -> LSTMAgentConfig:
        """The config of a fresh agent for this run.

        Example:
            >>> PPOConfig(image_dim=16, memory_dim=8, seed=1).agent_config().state_dim
            16
        """
        from dtlens.data.agents.lstm import LSTMAgentConfig

        return LSTMAgentConfig(
            image_dim=self.image_dim,
            memory_dim=self.memory_dim,
            hidden_dim=self.hidden_dim,
            seed=self.seed,
        )
