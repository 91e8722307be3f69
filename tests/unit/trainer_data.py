"""The scripted Memory demonstrations and tiny TrainConfig the trainer tests share."""

from __future__ import annotations

import numpy as np

from dtlens.data.demonstrations import Demonstrations
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, make_env, optimal_actions
from dtlens.training.config import TrainConfig

TINY = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=17)  # 6-step context


def _play(scenario, actions, max_steps=50):
    env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False)
    obs, _ = env.reset(seed=0, options=scenario.options)
    images, taken, rewards = [], [], []
    term = trunc = False
    for action in actions:
        images.append(obs["image"])
        taken.append(int(action))
        obs, reward, term, trunc, _ = env.step(int(action))
        rewards.append(reward)
        if term or trunc:
            break
    return np.stack(images), taken, rewards, term, trunc


def scripted_demos() -> Demonstrations:
    """Optimal, wrong-target and dithering episodes in two layouts (scripted routes)."""
    episodes = []
    for s in SCENARIOS[:2]:  # key/top-key, key/top-ball
        route = list(optimal_actions(s.instruction, s.top))
        episodes.append(_play(s, route))
        episodes.append(_play(s, optimal_actions(s.instruction, s.top, to="other")))
        for dithers in (2, 5, 8):
            episodes.append(_play(s, [0, 1] * dithers + route))
    lengths = [len(e[1]) for e in episodes]
    return Demonstrations(
        obs=np.concatenate([e[0] for e in episodes]),
        actions=np.concatenate([e[1] for e in episodes]).astype(np.int64),
        rewards=np.concatenate([e[2] for e in episodes]).astype(np.float32),
        timesteps=np.concatenate([np.arange(n) for n in lengths]).astype(np.int64),
        episode_starts=np.cumsum([0, *lengths[:-1]]).astype(np.int64),
        terminated=np.array([e[3] for e in episodes]),
        truncated=np.array([e[4] for e in episodes]),
        header={"env_id": MEMORY_ENV_ID, "max_steps": 50},
    )


def _config(**overrides) -> TrainConfig:
    defaults = dict(
        model=TINY,
        batch_size=32,
        lr=3e-3,
        lr_end=3e-4,
        warmup_steps=20,
        total_steps=400,
        weight_decay=0.0,
        eval_every=100,
        val_batches=2,
        device="cpu",
        seed=0,
    )
    return TrainConfig(**{**defaults, **overrides})
