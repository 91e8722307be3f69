"""``dtlens train-ppo``: train (or fine-tune) the PPO LSTM demonstrator agent on a MiniGrid env.

One call of :func:`dtlens.training.ppo.train_ppo_to_dir`. Every field of
:class:`~dtlens.training.ppo_config.PPOConfig` is a flag (derived from the dataclass,
with its docs: :mod:`dtlens.cli.flags`; ``--env`` and ``--threads`` are kept as short
names of ``--env-id`` and ``--num-threads``); ``--config FILE.json`` reads a PPOConfig
that explicitly given flags override.

``--out`` is checked before any work: it must be writable, and a directory that holds
an earlier run (``final/``, ``update_NNNNNN/``, ``history.json``) needs ``--overwrite``,
which removes that run before training. Ctrl+C exits with code 130 and one line naming
the last saved agent (continue from it with ``--init``).

Example:
    $ dtlens train-ppo --out runs/ppo --total-steps 2000000 --threads 1
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dtlens.cli.flags import add_config_flags, config_from_args
from dtlens.training.ppo_config import PPOConfig

__all__ = ["add_parser", "resume_hint", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> import argparse
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> args = add_parser(sub).parse_args(["--out", "runs/ppo", "--threads", "1"])
        >>> config_from_args(args, args._flags).num_threads
        1
    """
    parser = subparsers.add_parser(
        "train-ppo",
        help="train the PPO LSTM demonstrator agent (BabyAI conv + LSTM) on a MiniGrid env",
        description=(
            "Recurrent PPO for the LSTM agent that generates demonstrations. Writes "
            "OUT/final/ (config.json + agent.safetensors), OUT/update_NNNNNN/ every "
            "--checkpoint-every updates, and OUT/history.json (one row per update). Every "
            "PPOConfig field is a flag."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its final agent, checkpoints and history)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        help="start from this agent: an original project .pt or a dtlens agent directory",
    )
    flags = add_config_flags(
        parser,
        PPOConfig,
        aliases={"env_id": ["--env"], "num_threads": ["--threads"]},
    )
    parser.set_defaults(_flags=flags)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the config, train into ``--out`` (one library call), print a summary line.

    Example:
        >>> run(parser.parse_args(["--out", "runs/ppo", "--threads", "1"]))  # doctest: +SKIP
        trained 1953 updates (1999872 steps); last 10 updates: ...
    """
    from dtlens.training.ppo import train_ppo_to_dir

    config = config_from_args(args, args._flags)
    history = train_ppo_to_dir(config, args.out, init=args.init, overwrite=args.overwrite)
    recent = [s for s in history[-10:] if not math.isnan(s.mean_return)]
    if recent:
        mean_return = sum(s.mean_return for s in recent) / len(recent)
        success = sum(s.success_rate for s in recent) / len(recent)
        summary = (
            f"last {len(recent)} updates: mean return {mean_return:.3f}, success {success:.3f}"
        )
    else:
        summary = "no episode finished in the last updates"
    print(
        f"trained {len(history)} updates ({history[-1].env_steps} steps); {summary}; "
        f"agent saved to {args.out / 'final'}"
    )
    return 0


def resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C: the last agent saved in ``--out`` and how to continue from it.

    Example:
        >>> resume_hint(argparse.Namespace(out=Path("/nonexistent")))
        'no agent checkpoint was written yet'
    """
    from dtlens.data.agents.lstm import AGENT_CONFIG_FILE
    from dtlens.training.run_dirs import step_dirs

    saved = step_dirs(args.out, AGENT_CONFIG_FILE, prefix="update_")
    if not saved:
        return "no agent checkpoint was written yet"
    last = saved[-1][1]
    return f"last agent checkpoint {last}; continue from it with --init {last} and another --out"
