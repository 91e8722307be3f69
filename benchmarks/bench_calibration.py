"""Benchmark: batched calibration rollouts against one-episode-at-a-time rollouts.

Run ``python benchmarks/bench_calibration.py`` (a few minutes on 2 CPU threads). It
times a calibration sweep of 20 RTGs (``linspace(0, 1, 20)``) x 100 episodes (layouts
in turn, max_steps 50) three ways:

* **batched**: :func:`dtlens.training.calibration.calibration_curve`, i.e.
  :func:`dtlens.training.evaluate.rollout` with all 2000 episodes in lockstep, one
  forward per step over every live episode's context, identical contexts forwarded
  once (``dedupe=True``, the default);
* **batched, no dedupe**: the same with every live row forwarded;
* **sequential**: a loop over episodes, each in its own env, one batch-1 forward per
  step on the last ``n_timesteps`` steps of its history (the obvious implementation).
  Timing all 2000 episodes this way would take long, so it runs the first
  ``--sequential-per-rtg`` episodes of every RTG (all 4 layouts, every RTG, so the
  subset has the full sweep's mix of episode lengths) and **extrapolates** linearly
  to 2000 episodes from the time per episode. The subset's outcomes are checked
  against the batched run's.

Actions are greedy (temperature 0), as in the shipped model's calibration table, or
sampled with ``--temperature``. The model is ``--model`` (default: the shipped
MemoryDT when present, else a randomly initialised model of its shape, whose
episodes mostly run to the 50-step limit: the slow case). Writes
``benchmarks/results/bench_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dtlens.env import MEMORY_ENV_ID, SCENARIOS, encode_observation, make_env
from dtlens.errors import CheckpointError
from dtlens.model import DTConfig, HookedDecisionTransformer, TrajectoryBatch
from dtlens.model.checkpoint import load
from dtlens.training.calibration import calibration_curve
from dtlens.training.evaluate import ACTION_RNG_STREAM, rollout

RESULTS = Path(__file__).resolve().parent / "results" / "bench_calibration.json"
N_RTGS, EPISODES, MAX_STEPS = 20, 100, 50


def get_model(name: str | None) -> tuple[HookedDecisionTransformer, str]:
    """The shipped MemoryDT (or ``name``), else a random model of its shape."""
    try:
        return load(name or "memorydt"), name or "memorydt"
    except CheckpointError:
        if name is not None:
            raise
    cfg = DTConfig(n_layers=3, d_model=256, n_heads=8, d_mlp=256, n_ctx=26, seed=0)
    return HookedDecisionTransformer(cfg).eval(), "random MemoryDT-shaped model"


@torch.no_grad()
def sequential_episode(
    model: HookedDecisionTransformer, rtg: float, seed: int, options: dict, temperature: float
) -> tuple[float, tuple[int, ...]]:
    """One episode in one env with batch-1 forwards; (reward, actions)."""
    env = make_env(MEMORY_ENV_ID, max_steps=MAX_STEPS, one_hot=False)
    obs, _ = env.reset(seed=seed, options=options)
    images, actions, rtgs, total = [obs["image"]], [], [rtg], 0.0
    rng = np.random.default_rng([ACTION_RNG_STREAM, seed])
    window = model.cfg.n_timesteps
    for t in range(MAX_STEPS):
        lo = max(0, t + 1 - window)
        batch = TrajectoryBatch(
            obs=encode_observation(torch.as_tensor(np.stack(images[lo:])))[None],
            actions=torch.tensor(actions[lo:], dtype=torch.long).reshape(1, -1),
            rtg=torch.tensor(rtgs[lo:], dtype=torch.float32)[None],
            timesteps=torch.arange(lo, t + 1)[None],
        )
        logits = model.action_logits(batch)[0, -1]
        if temperature == 0:
            action = int(logits.argmax())
        else:
            p = torch.softmax(logits.double() / temperature, -1).numpy()
            action = int(np.searchsorted(np.cumsum(p), rng.random(), side="right"))
        obs, reward, term, trunc, _ = env.step(action)
        images.append(obs["image"])
        actions.append(action)
        total += reward
        rtgs.append(rtgs[-1] - reward)
        if term or trunc:
            break
    env.close()
    return total, tuple(actions)


def main() -> None:
    """Time the three ways, check the subset agrees, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped MemoryDT)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--sequential-per-rtg", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, model_name = get_model(args.model)
    rtgs = np.linspace(0, 1, N_RTGS)

    start = time.perf_counter()
    curve = calibration_curve(
        model,
        rtgs=rtgs,
        episodes_per_rtg=EPISODES,
        temperature=args.temperature,
        max_steps=MAX_STEPS,
    )
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    plain = rollout(
        model,
        initial_rtg=np.repeat(rtgs, EPISODES),
        seeds=np.tile(np.arange(EPISODES), N_RTGS),
        layouts=[SCENARIOS[j % 4] for j in range(EPISODES)] * N_RTGS,
        temperature=args.temperature,
        max_steps=MAX_STEPS,
        dedupe=False,
    )
    batched_plain_s = time.perf_counter() - start
    if not np.array_equal(plain.rewards.reshape(N_RTGS, EPISODES), curve.rewards):
        raise SystemExit("batched runs with and without dedupe disagree")

    k = args.sequential_per_rtg
    start = time.perf_counter()
    for i, rtg in enumerate(rtgs):
        for j in range(k):
            reward, _ = sequential_episode(
                model, float(rtg), j, SCENARIOS[j % 4].options, args.temperature
            )
            if abs(reward - curve.rewards[i, j]) > 1e-9:
                raise SystemExit(f"sequential and batched disagree at RTG {rtg}, episode {j}")
    subset_s = time.perf_counter() - start
    n_subset = N_RTGS * k
    sequential_est_s = subset_s / n_subset * N_RTGS * EPISODES

    result = {
        "model": model_name,
        "sweep": f"{N_RTGS} RTGs x {EPISODES} episodes, max_steps {MAX_STEPS}, "
        f"temperature {args.temperature:g}",
        "mean_episode_length": float(curve.lengths.mean()),
        "batched_s": round(batched_s, 2),
        "batched_no_dedupe_s": round(batched_plain_s, 2),
        "rows_forwarded_no_dedupe": plain.rows_forwarded,
        "sequential_subset_episodes": n_subset,
        "sequential_subset_s": round(subset_s, 2),
        "sequential_extrapolated_s": round(sequential_est_s, 1),
        "speedup": round(sequential_est_s / batched_s, 1),
        "speedup_no_dedupe": round(sequential_est_s / batched_plain_s, 1),
        "note": "sequential time extrapolated linearly from the subset (first "
        f"{k} episodes of every RTG, all 4 layouts)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
