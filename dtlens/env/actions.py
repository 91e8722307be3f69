"""MiniGrid's action names, in index order (0 left ... 6 done).

Examples:
    >>> ACTION_NAMES[2], ACTION_INDEX["right"]
    ('forward', 1)
"""

from minigrid.core.actions import Actions

__all__ = ["ACTION_INDEX", "ACTION_NAMES", "N_ACTIONS"]

#: ``("left", "right", "forward", "pickup", "drop", "toggle", "done")``
ACTION_NAMES: tuple[str, ...] = tuple(action.name for action in Actions)
#: name -> index
ACTION_INDEX: dict[str, int] = {name: index for index, name in enumerate(ACTION_NAMES)}
N_ACTIONS = len(ACTION_NAMES)
