"""Recurrent PPO for the LSTM demonstrator agent (BabyAI-style truncated BPTT).

Background:
    Each update collects a segment of ``n_steps`` steps in ``n_envs`` vectorised
    MiniGrid envs (raw image observations, same-step auto-reset), computes GAE
    advantages, and takes ``update_epochs`` passes of clipped-ratio PPO (value loss,
    entropy bonus, gradient-norm clipping, Adam, optional linear learning-rate decay).

    Recurrence: the LSTM state is reset (multiplied by ``1 - done``) at every episode
    start, in collection and in learning alike. For learning, the segment is cut into
    chunks of ``recurrence`` steps per env, as BabyAI does; each minibatch is a random
    set of (env, chunk) pairs, and the LSTM is re-run over every chunk with gradients
    flowing through the state for the chunk's ``recurrence`` steps. Unlike BabyAI,
    the chunk's starting state is not the stale one stored at collection time: at
    the start of every epoch the whole segment is re-run (without gradients) from
    the segment's initial state with the current weights, so every chunk starts
    from the state the current policy would have.

    Episodes cut by the time limit are treated as terminal (no bootstrap): in
    MiniGrid the limit is part of the task (the reward shrinks with the step count).
    BatchNorm stays in eval mode throughout (its affine weights train, its running
    statistics stay frozen), so collection and learning evaluate the same function.

Usage:
    >>> from dtlens.training.ppo import PPOConfig, train_ppo
    >>> from dtlens.training.probe_envs import CueRecallEnv
    >>> cfg = PPOConfig(total_steps=256, n_envs=4, n_steps=8, recurrence=2, image_dim=8,
    ...                 memory_dim=8, progress=False)
    >>> agent, history = train_ppo(cfg, env=CueRecallEnv)
    >>> len(history), history[-1].env_steps
    (8, 256)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from dtlens.data.agents.lstm import LSTMAgent, save_lstm_agent
from dtlens.errors import ConfigError
from dtlens.files import check_writable, write_text_atomic
from dtlens.training.ppo_config import PPOConfig
from dtlens.training.rollout import EnvSource, Segment, SegmentCollector, make_vector_env
from dtlens.training.run_dirs import earlier_run, refuse_earlier_run, remove_run

__all__ = [
    "PPOConfig",
    "UpdateStats",
    "chunk_forward",
    "compute_gae",
    "train_ppo",
    "train_ppo_to_dir",
]


@dataclass(frozen=True)
class UpdateStats:
    """What one PPO update saw and did.

    ``mean_return``/``success_rate``/``mean_length`` cover the episodes that ended
    during this update's segment (NaN if none did); losses are means over the
    update's minibatches; ``steps_per_second`` is wall-clock throughput.

    Example:
        >>> agent, history = train_ppo(PPOConfig(total_steps=4096))  # doctest: +SKIP
        >>> history[-1].mean_return, history[-1].entropy  # doctest: +SKIP
    """

    update: int
    env_steps: int
    episodes: int
    mean_return: float
    success_rate: float
    mean_length: float
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    learning_rate: float
    steps_per_second: float


def compute_gae(
    rewards: Float[Tensor, "T N"],
    values: Float[Tensor, "T N"],
    dones: Bool[Tensor, "T N"],
    next_value: Float[Tensor, " N"],
    gamma: float,
    gae_lambda: float,
) -> tuple[Float[Tensor, "T N"], Float[Tensor, "T N"]]:
    """Generalised advantage estimates and value targets (returns = advantages + values).

    ``delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``, with ``V_T = next_value``.

    Example:
        >>> adv, ret = compute_gae(torch.tensor([[0.0], [1.0]]), torch.zeros(2, 1),
        ...                        torch.tensor([[False], [True]]), torch.tensor([5.0]),
        ...                        gamma=0.5, gae_lambda=1.0)
        >>> adv[:, 0].tolist()
        [0.5, 1.0]
    """
    not_done = (~dones).to(values.dtype)
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(next_value)
    for t in reversed(range(values.shape[0])):
        following = next_value if t == values.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + gamma * following * not_done[t] - values[t]
        last = delta + gamma * gae_lambda * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


def chunk_forward(
    agent: LSTMAgent,
    segment: Segment,
    chunk_states: Float[Tensor, "C N state"],
    chunks: Int[Tensor, " M"],
    envs: Int[Tensor, " M"],
    recurrence: int,
) -> tuple[Float[Tensor, "R M n_actions"], Float[Tensor, "R M"]]:
    """Re-run the agent over ``M`` (chunk, env) pieces of a segment, with gradients.

    Args:
        agent: The agent being trained.
        segment: The collected segment.
        chunk_states: State entering each chunk's first step, per env (before reset).
        chunks: Chunk index of each piece (steps ``c * recurrence ...``).
        envs: Env index of each piece.
        recurrence: Chunk length ``R``.

    Returns:
        Log-prob logits and values, time first.

    Example:
        >>> logits, values = chunk_forward(agent, seg, states, chunks, envs, 8)  # doctest: +SKIP
    """
    steps = chunks[None, :] * recurrence + torch.arange(recurrence)[:, None]  # [R, M]
    logits, values, _, _ = agent.unroll(
        segment.obs[steps, envs[None, :]],
        chunk_states[chunks, envs],
        starts=segment.starts[steps, envs[None, :]],
    )
    return logits, values


def _learn(
    agent: LSTMAgent,
    optimizer: torch.optim.Optimizer,
    segment: Segment,
    config: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    advantages, returns = compute_gae(
        segment.rewards,
        segment.values,
        segment.dones,
        segment.next_value,
        config.gamma,
        config.gae_lambda,
    )
    rec = config.recurrence
    n_chunks = segment.n_steps // rec
    sums = dict.fromkeys(
        ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), 0.0
    )
    n_minibatches = 0
    for _ in range(config.update_epochs):
        with torch.no_grad():
            _, _, states_in, _ = agent.unroll(segment.obs, segment.initial_state, segment.starts)
        chunk_states = states_in[::rec]  # [C, N, state]
        order = torch.randperm(n_chunks * segment.n_envs, generator=generator)
        for piece in order.tensor_split(config.n_minibatches):
            chunks, envs = piece // segment.n_envs, piece % segment.n_envs
            logits, values = chunk_forward(agent, segment, chunk_states, chunks, envs, rec)
            steps = chunks[None, :] * rec + torch.arange(rec)[:, None]
            index = (steps, envs[None, :])
            actions = segment.actions[index]
            new_logprob = logits.gather(-1, actions[..., None]).squeeze(-1)
            log_ratio = new_logprob - segment.logprobs[index]
            ratio = log_ratio.exp()
            adv = advantages[index]
            if config.normalize_advantages and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            clipped = ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
            policy_loss = -torch.minimum(ratio * adv, clipped * adv).mean()
            value_loss = 0.5 * (values - returns[index]).pow(2).mean()
            entropy = -(logits.exp() * logits).sum(-1).mean()
            loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
            optimizer.step()
            with torch.no_grad():
                sums["policy_loss"] += float(policy_loss)
                sums["value_loss"] += float(value_loss)
                sums["entropy"] += float(entropy)
                sums["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
                sums["clip_fraction"] += float(
                    ((ratio - 1).abs() > config.clip_coef).float().mean()
                )
            n_minibatches += 1
    return {key: value / n_minibatches for key, value in sums.items()}


def _json_number(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _env_label(env: EnvSource) -> str:
    return env if isinstance(env, str) else getattr(env, "__name__", type(env).__name__)


def train_ppo(
    config: PPOConfig,
    env: EnvSource | None = None,
    agent: LSTMAgent | None = None,
    checkpoint_dir: str | Path | None = None,
    callback: Callable[[UpdateStats, LSTMAgent], bool | None] | None = None,
) -> tuple[LSTMAgent, list[UpdateStats]]:
    """Train an LSTM agent with recurrent PPO.

    Args:
        config: The run's settings.
        env: An env id or factory (default: ``config.env_id`` with ``config.max_steps``).
        agent: An agent to continue training (e.g. :func:`load_original_lstm`'s);
            default: a fresh one from ``config.agent_config()``. Trained in place.
        checkpoint_dir: Where to save ``update_NNNNNN/`` (every ``checkpoint_every``
            updates), ``final/`` (safetensors + JSON) and ``history.json``; None saves
            nothing.
        callback: Called after every update with its stats and the agent; returning
            True stops training early.

    Returns:
        ``(agent, history)``: the trained agent (eval mode) and one
        :class:`UpdateStats` per update.

    Raises:
        ConfigError: Invalid config (from :class:`PPOConfig`), or an agent whose action
            count does not match the env's.
        EnvError: An env that does not give raw ``[7, 7, 3]`` images.

    Example:
        >>> agent, history = train_ppo(PPOConfig(total_steps=100_000))  # doctest: +SKIP
    """
    if not isinstance(config, PPOConfig):
        raise ConfigError(f"config must be a PPOConfig, got {type(config).__name__}")
    env = config.env_id if env is None else env
    envs = make_vector_env(env, config.n_envs, config.max_steps)
    if agent is None:
        agent = LSTMAgent(config.agent_config())
    if envs.single_action_space.n != agent.n_actions:
        envs.close()
        raise ConfigError(
            f"the agent has {agent.n_actions} actions but the env has {envs.single_action_space.n}"
        )
    agent.eval()  # BatchNorm frozen at its running statistics (see module docstring)
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    optimizer = torch.optim.Adam(
        agent.parameters(), lr=config.learning_rate, eps=1e-5, foreach=True
    )
    generator = torch.Generator().manual_seed(config.seed)
    collector = SegmentCollector(envs, seed=config.seed)
    meta = {
        "trained_with": "dtlens.training.ppo.train_ppo",
        "ppo_config": config.to_dict(),
        "env": _env_label(env),
        "max_steps": config.max_steps,
    }
    out = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[UpdateStats] = []
    bar = tqdm(total=config.n_updates * config.batch_size, unit="step", disable=not config.progress)
    try:
        for update in range(1, config.n_updates + 1):
            started = time.perf_counter()
            lr = config.learning_rate
            if config.anneal_lr:
                lr *= 1 - (update - 1) / config.n_updates
            for group in optimizer.param_groups:
                group["lr"] = lr
            segment = collector.collect(agent, config.n_steps)
            losses = _learn(agent, optimizer, segment, config, generator)
            episodes = collector.tracker.pop()
            stats = UpdateStats(
                update=update,
                env_steps=update * config.batch_size,
                episodes=episodes.n_episodes,
                mean_return=episodes.mean_return,
                success_rate=episodes.success_rate,
                mean_length=episodes.mean_length,
                learning_rate=lr,
                steps_per_second=config.batch_size / (time.perf_counter() - started),
                **losses,
            )
            history.append(stats)
            bar.update(config.batch_size)
            bar.set_postfix(ret=f"{stats.mean_return:.3f}", ent=f"{stats.entropy:.2f}")
            if (
                out is not None
                and config.checkpoint_every
                and update % config.checkpoint_every == 0
            ):
                save_lstm_agent(agent, out / f"update_{update:06d}", {**meta, "update": update})
            if callback is not None and callback(stats, agent):
                break
    finally:
        bar.close()
        envs.close()
        torch.set_num_threads(threads)
    if out is not None:
        save_lstm_agent(agent, out / "final", {**meta, "update": len(history)})
        rows = [{k: _json_number(v) for k, v in asdict(s).items()} for s in history]
        write_text_atomic(out / "history.json", json.dumps(rows, indent=1) + "\n")
    return agent.eval(), history


def train_ppo_to_dir(
    config: PPOConfig,
    out: str | Path,
    *,
    init: str | Path | None = None,
    overwrite: bool = False,
) -> list[UpdateStats]:
    """Train into ``out`` (``dtlens train-ppo``), from a fresh agent or from ``init``.

    ``out`` is checked before any work: it must be writable, and a directory that holds
    an earlier run (``final/``, ``update_NNNNNN/``, ``history.json``: see
    :func:`dtlens.training.run_dirs.earlier_run`) needs ``overwrite``, which removes that run
    once the initial agent has loaded. ``init``: an original-project ``.pt`` or a
    dtlens agent directory to continue training.

    Returns:
        The history, one :class:`UpdateStats` per update (the agent is in ``out/final``).

    Raises:
        OutputPathError: ``out`` cannot be written, or holds a run and not ``overwrite``.
    """
    from dtlens.data.agents import load_lstm_agent, load_original_lstm

    check_writable(out, "dir", "--out")
    earlier = earlier_run(out, "update_", "history.json")
    if not overwrite:
        refuse_earlier_run(
            f"--out {out}",
            earlier,
            "pass --overwrite to replace it, or choose another --out (to continue from its "
            "agent: --init OUT/final)",
        )
    agent = None
    if init is not None:
        agent = load_lstm_agent(init) if Path(init).is_dir() else load_original_lstm(init)
    remove_run(earlier)  # overwrite, and the inputs are good: remove the earlier run
    _, history = train_ppo(config, agent=agent, checkpoint_dir=out)
    return history
