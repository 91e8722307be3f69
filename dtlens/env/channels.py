"""Channel layout of the one-hot observation encoding, and name -> channel lookups.

Each cell of a one-hot view has 20 channels, in MiniGrid's index order (the tables are
imported from ``minigrid.core.constants``, the same layout as
``minigrid.wrappers.OneHotPartialObsWrapper``):

- channels 0-10: objects (unseen, empty, wall, floor, door, key, ball, box, goal,
  lava, agent),
- channels 11-16: colours (red, green, blue, purple, yellow, grey),
- channels 17-19: states (open, closed, locked).

Examples:
    >>> from dtlens.env.channels import COLOUR_CHANNELS, object_channel
    >>> object_channel("key"), COLOUR_CHANNELS
    (5, slice(11, 17, None))
"""

from __future__ import annotations

from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

from dtlens.errors import ObservationError

__all__ = [
    "COLOUR_CHANNELS",
    "COLOUR_NAMES",
    "N_CHANNELS",
    "N_COLOURS",
    "N_OBJECTS",
    "N_STATES",
    "OBJECT_CHANNELS",
    "OBJECT_NAMES",
    "STATE_CHANNELS",
    "STATE_NAMES",
    "VIEW_SIZE",
    "channel_index",
    "channel_names",
    "colour_channel",
    "object_channel",
    "state_channel",
]


def _names_in_index_order(table: dict[str, int]) -> tuple[str, ...]:
    names = tuple(sorted(table, key=table.__getitem__))
    if [table[n] for n in names] != list(range(len(names))):  # pragma: no cover
        raise RuntimeError(f"MiniGrid index table is not 0..n-1: {table}")
    return names


#: Names in MiniGrid's index order.
OBJECT_NAMES: tuple[str, ...] = _names_in_index_order(OBJECT_TO_IDX)
COLOUR_NAMES: tuple[str, ...] = _names_in_index_order(COLOR_TO_IDX)
STATE_NAMES: tuple[str, ...] = _names_in_index_order(STATE_TO_IDX)

N_OBJECTS: int = len(OBJECT_NAMES)  # 11
N_COLOURS: int = len(COLOUR_NAMES)  # 6
N_STATES: int = len(STATE_NAMES)  # 3
N_CHANNELS: int = N_OBJECTS + N_COLOURS + N_STATES  # 20
VIEW_SIZE: int = 7

#: Channel slices of each field in the one-hot encoding.
OBJECT_CHANNELS = slice(0, N_OBJECTS)
COLOUR_CHANNELS = slice(N_OBJECTS, N_OBJECTS + N_COLOURS)
STATE_CHANNELS = slice(N_OBJECTS + N_COLOURS, N_CHANNELS)

_FIELDS = ("object", "colour", "state")
_SIZES = (N_OBJECTS, N_COLOURS, N_STATES)
_OFFSETS = (0, N_OBJECTS, N_OBJECTS + N_COLOURS)
_SLICES = (OBJECT_CHANNELS, COLOUR_CHANNELS, STATE_CHANNELS)
_NAMES = (OBJECT_NAMES, COLOUR_NAMES, STATE_NAMES)
_KIND_ALIASES = {"object": 0, "colour": 1, "color": 1, "state": 2}


def channel_names() -> list[str]:
    """Names of the 20 one-hot channels, in channel order, for plot labels.

    Examples:
        >>> names = channel_names()
        >>> names[0], names[11], names[17], len(names)
        ('object:unseen', 'colour:red', 'state:open', 20)
    """
    return [f"{field}:{n}" for field, names in zip(_FIELDS, _NAMES, strict=True) for n in names]


def _field_channel(field: int, name: str) -> int:
    names = _NAMES[field]
    if name not in names:
        raise ObservationError(
            f"unknown {_FIELDS[field]} {name!r}; valid {_FIELDS[field]}s: {', '.join(names)}"
        )
    return _OFFSETS[field] + names.index(name)


def object_channel(name: str) -> int:
    """Channel index of an object type, e.g. ``"key"`` -> 5.

    Raises:
        ObservationError: For an unknown object name (the message lists the valid ones).

    Examples:
        >>> object_channel("key"), object_channel("ball")
        (5, 6)
    """
    return _field_channel(0, name)


def colour_channel(name: str) -> int:
    """Channel index of a colour, e.g. ``"green"`` -> 12.

    Raises:
        ObservationError: For an unknown colour name (the message lists the valid ones).

    Examples:
        >>> colour_channel("green")
        12
    """
    return _field_channel(1, name)


def state_channel(name: str) -> int:
    """Channel index of a state, e.g. ``"locked"`` -> 19.

    Raises:
        ObservationError: For an unknown state name (the message lists the valid ones).

    Examples:
        >>> state_channel("open")
        17
    """
    return _field_channel(2, name)


def channel_index(name: str) -> int:
    """Channel index of a ``"field:value"`` name as :func:`channel_names` spells it.

    ``field`` is ``object``, ``colour`` (``color`` is accepted too) or ``state``.
    ``channel_names()[channel_index(n)] == n`` for every channel name ``n``.

    Raises:
        ObservationError: For a malformed or unknown name (the message lists valid ones).

    Examples:
        >>> [channel_index(n) for n in ("object:ball", "colour:green", "state:closed")]
        [6, 12, 18]
    """
    kind, sep, value = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not sep or kind not in _KIND_ALIASES:
        raise ObservationError(
            f"channel name must look like 'object:key', 'colour:green' or 'state:open' "
            f"(fields: object, colour, state), got {name!r}"
        )
    return _field_channel(_KIND_ALIASES[kind], value)
