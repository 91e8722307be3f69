"""Registration of dtlens' gymnasium ids (called once by ``import dtlens.env``).

Examples:
    >>> import gymnasium
    >>> from dtlens.env.registration import MEMORY_ENV_ID, register_envs
    >>> register_envs()  # idempotent: a second call neither warns nor fails
    >>> MEMORY_ENV_ID in gymnasium.registry
    True
"""

from __future__ import annotations

import gymnasium

__all__ = ["MEMORY_ENV_ID", "register_envs"]

#: The gymnasium id of :class:`dtlens.env.memory.MemoryS7FixedStartEnv`.
MEMORY_ENV_ID = "MiniGrid-MemoryS7FixedStart-v0"


def register_envs() -> None:
    """Register ``MiniGrid-MemoryS7FixedStart-v0`` with gymnasium if it is not yet there.

    Cheap (the entry point is a string, so nothing is imported) and idempotent: the id
    is only registered when missing, so repeated calls or re-imports never trigger
    gymnasium's "overriding environment" warning.

    Examples:
        >>> register_envs(); register_envs()
    """
    if MEMORY_ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=MEMORY_ENV_ID,
            entry_point="dtlens.env.memory:MemoryS7FixedStartEnv",
        )
