"""MiniGrid environments and observation encoding for dtlens.

Importing this package registers ``MiniGrid-MemoryS7FixedStart-v0`` with gymnasium
(once; re-imports are no-ops). That registration is the only import-time side effect
in dtlens.

Examples:
    >>> import gymnasium
    >>> import dtlens.env
    >>> env = gymnasium.make("MiniGrid-MemoryS7FixedStart-v0", max_steps=50)
    >>> obs, info = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    >>> info["scenario"], dtlens.env.encode_observation(obs["image"]).shape
    ('key/top-ball', (7, 7, 20))
"""

from dtlens.env.actions import ACTION_INDEX, ACTION_NAMES, N_ACTIONS
from dtlens.env.channels import (
    COLOUR_CHANNELS,
    COLOUR_NAMES,
    N_CHANNELS,
    N_COLOURS,
    N_OBJECTS,
    N_STATES,
    OBJECT_CHANNELS,
    OBJECT_NAMES,
    STATE_CHANNELS,
    STATE_NAMES,
    VIEW_SIZE,
    channel_index,
    channel_names,
    colour_channel,
    object_channel,
    state_channel,
)
from dtlens.env.encoding import decode_observation, encode_observation, model_observations
from dtlens.env.memory import MemoryS7FixedStartEnv, optimal_actions
from dtlens.env.registration import MEMORY_ENV_ID, register_envs
from dtlens.env.scenarios import OBJECT_TYPES, SCENARIOS, Scenario
from dtlens.env.wrappers import OneHotObservationWrapper, make_env

register_envs()

__all__ = [
    "ACTION_INDEX",
    "ACTION_NAMES",
    "COLOUR_CHANNELS",
    "COLOUR_NAMES",
    "MEMORY_ENV_ID",
    "N_ACTIONS",
    "N_CHANNELS",
    "N_COLOURS",
    "N_OBJECTS",
    "N_STATES",
    "OBJECT_CHANNELS",
    "OBJECT_NAMES",
    "OBJECT_TYPES",
    "SCENARIOS",
    "STATE_CHANNELS",
    "STATE_NAMES",
    "VIEW_SIZE",
    "MemoryS7FixedStartEnv",
    "OneHotObservationWrapper",
    "Scenario",
    "channel_index",
    "channel_names",
    "colour_channel",
    "decode_observation",
    "encode_observation",
    "make_env",
    "model_observations",
    "object_channel",
    "optimal_actions",
    "register_envs",
    "state_channel",
]
