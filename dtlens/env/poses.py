"""Where the agent can stand in the Memory task, and the shortest routes between poses.

A *pose* is ``(x, y, direction)``: a square and a facing, ``direction`` as MiniGrid's
``agent_dir`` (0 east, 1 south, 2 west, 3 north). Routes are found by breadth-first
search over poses on a layout's real grid with the actions ``left``, ``right`` and
``forward`` (``forward`` only onto squares MiniGrid lets the agent enter); the two
squares next to the targets end the episode, so they are never passed through.

The placeable poses of ``MiniGrid-MemoryS7FixedStart-v0`` are the 10 open squares that
do not end the episode, each with its 4 facings (40 poses; the same in every layout:
only the object types differ between layouts)::

      x 0123456
    y 0 #######
      1 #####T#
      2 #I..#+#      . = placeable square (10 of them)
      3 #.....#      + = ends the episode (never placed on)
      4 #...#+#      I, T, B = instruction and target objects
      5 #####B#
      6 #######

Examples:
    >>> routes = placement_routes("key/top-ball")
    >>> len(routes), routes[(1, 3, 0)], routes[(3, 2, 3)]
    (40, (), (2, 2, 0, 2))
    >>> sorted(optimal_first_actions("key/top-ball", (5, 3, 0)))  # facing the wall: turn right
    [1]
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

from minigrid.core.actions import Actions
from minigrid.core.constants import DIR_TO_VEC

from dtlens.env.memory import MemoryS7FixedStartEnv
from dtlens.env.scenarios import Scenario, as_scenario
from dtlens.errors import EnvError

__all__ = [
    "DIRECTION_NAMES",
    "Pose",
    "decisive_poses",
    "optimal_first_actions",
    "placement_routes",
    "pose_distances",
]

#: ``(x, y, direction)``; direction as MiniGrid's ``agent_dir``.
Pose = tuple[int, int, int]

#: MiniGrid's ``agent_dir`` order.
DIRECTION_NAMES: tuple[str, ...] = ("east", "south", "west", "north")

#: the order in which breadth-first search tries actions (ties between equally short
#: routes go to the one that moves first, as the trained routine does).
_SEARCH_ORDER: tuple[int, ...] = (int(Actions.forward), int(Actions.left), int(Actions.right))


@lru_cache(maxsize=8)
def _grid(scenario: Scenario) -> tuple[dict[tuple[int, int], bool], tuple[int, int], tuple, Pose]:
    """Enterable squares, the success / failure squares and the start pose of a layout."""
    env = MemoryS7FixedStartEnv()
    env.reset(seed=0, options=scenario.options)
    open_ = {}
    for x in range(env.width):
        for y in range(env.height):
            cell = env.grid.get(x, y)
            open_[(x, y)] = cell is None or cell.can_overlap()
    start = (*env.start_pos, int(env.agent_dir))
    return open_, env.success_pos, env.failure_pos, start


def _moves(open_: dict[tuple[int, int], bool], pose: Pose) -> list[tuple[int, Pose]]:
    """``(action, next pose)`` for left, right and forward (forward only when enterable)."""
    x, y, d = pose
    dx, dy = (int(v) for v in DIR_TO_VEC[d])
    moves = {
        int(Actions.left): (x, y, (d - 1) % 4),
        int(Actions.right): (x, y, (d + 1) % 4),
    }
    if open_.get((x + dx, y + dy), False):
        moves[int(Actions.forward)] = (x + dx, y + dy, d)
    return [(a, moves[a]) for a in _SEARCH_ORDER if a in moves]


@lru_cache(maxsize=8)
def _routes(scenario: Scenario) -> dict[Pose, tuple[int, ...]]:
    open_, success, failure, start = _grid(scenario)
    ends = {success, failure}
    routes: dict[Pose, tuple[int, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        for action, nxt in _moves(open_, pose):
            if nxt[:2] in ends or nxt in routes:
                continue
            routes[nxt] = (*routes[pose], action)
            queue.append(nxt)
    return dict(sorted(routes.items()))


def placement_routes(layout: Scenario | str | tuple[str, str]) -> dict[Pose, tuple[int, ...]]:
    """Every pose the agent can reach from the start without ending the episode, and
    the shortest action sequence (ints: 0 left, 1 right, 2 forward) that gets it there.

    Breadth-first search from the start pose ``(1, 3, east)`` with ``left``, ``right``,
    ``forward`` on the layout's grid (objects and walls block; the squares next to the
    targets are never entered). Among equally short routes the search prefers
    ``forward``, then ``left``, then ``right`` at each step. ``pickup`` is not used: it
    would remove the instruction object, changing what the layout shows.

    Args:
        layout: a :class:`Scenario`, its name (``"key/top-ball"``) or ``(instruction, top)``.

    Returns:
        ``{(x, y, direction): route}``, sorted by pose; the start's route is ``()``.

    Raises:
        EnvError: for an unknown layout.

    Examples:
        >>> routes = placement_routes(("ball", "ball"))
        >>> routes[(1, 3, 2)], max(len(r) for r in routes.values())
        ((0, 0), 6)
    """
    return dict(_routes(as_scenario(layout)))


@lru_cache(maxsize=16)
def _distances(scenario: Scenario, to: str) -> dict[Pose, int]:
    open_, success, failure, _ = _grid(scenario)
    goal, avoid = (success, failure) if to == "match" else (failure, success)
    poses = [(x, y, d) for (x, y), ok in open_.items() if ok for d in range(4)]
    # reverse search: distance of every pose to any pose standing on the goal square
    forward_edges: dict[Pose, list[Pose]] = {p: [] for p in poses}
    for pose in poses:
        if pose[:2] in (goal, avoid):
            continue  # the episode ends on these squares
        for _, nxt in _moves(open_, pose):
            if nxt[:2] != avoid:
                forward_edges[pose].append(nxt)
    reverse: dict[Pose, list[Pose]] = {p: [] for p in poses}
    for pose, nexts in forward_edges.items():
        for nxt in nexts:
            reverse[nxt].append(pose)
    dist = {p: 0 for p in poses if p[:2] == goal}
    queue = deque(dist)
    while queue:
        pose = queue.popleft()
        for prev in reverse[pose]:
            if prev not in dist:
                dist[prev] = dist[pose] + 1
                queue.append(prev)
    return dist


def pose_distances(layout: Scenario | str | tuple[str, str], to: str = "match") -> dict[Pose, int]:
    """Fewest actions (left, right, forward) from each pose to the end of the episode.

    Args:
        layout: a :class:`Scenario`, its name or ``(instruction, top)``.
        to: ``"match"`` (default): the square next to the target matching the
            instruction; ``"other"``: the square next to the other target (the
            matching one then counts as a wall).

    Returns:
        ``{pose: n_actions}`` for every pose from which the square can be reached
        (poses on the square itself have 0).

    Raises:
        EnvError: for an unknown layout or ``to``.

    Examples:
        >>> pose_distances("key/top-key")[(1, 3, 0)]  # the optimal episode: 6 actions
        6
    """
    if to not in ("match", "other"):
        raise EnvError(f"to must be 'match' or 'other', got {to!r}")
    return dict(_distances(as_scenario(layout), to))


def optimal_first_actions(
    layout: Scenario | str | tuple[str, str], pose: Pose, to: str = "match"
) -> frozenset[int]:
    """The actions that start a shortest route from ``pose`` to the end of the episode.

    Args:
        layout: a :class:`Scenario`, its name or ``(instruction, top)``.
        pose: ``(x, y, direction)``, a pose from which the square can be reached.
        to: ``"match"`` or ``"other"`` (see :func:`pose_distances`).

    Returns:
        A set of action ints (0 left, 1 right, 2 forward); several when routes tie
        (e.g. turning either way to face backwards).

    Raises:
        EnvError: for an unknown layout or ``to``, or a pose that cannot reach it.

    Examples:
        >>> sorted(optimal_first_actions("key/top-key", (1, 3, 2)))  # facing west: turn
        [0, 1]
    """
    scenario = as_scenario(layout)
    dist = pose_distances(scenario, to)
    key = tuple(int(v) for v in pose)
    if key not in dist or dist[key] == 0:
        raise EnvError(f"pose {pose!r} cannot reach the {to} target of {scenario.name}")
    open_, success, failure, _ = _grid(scenario)
    avoid = failure if to == "match" else success
    return frozenset(
        action
        for action, nxt in _moves(open_, key)
        if nxt[:2] != avoid and dist.get(nxt, -1) == dist[key] - 1
    )


def decisive_poses(layout: Scenario | str | tuple[str, str]) -> tuple[Pose, ...]:
    """The placeable poses where the shortest routes to the two targets start with
    different actions: where the agent must already choose between them.

    In the Memory task these are the 4 facings of the decision square (5, 3) at the
    end of the corridor; everywhere else both routes begin alike.

    Examples:
        >>> decisive_poses("ball/top-key")
        ((5, 3, 0), (5, 3, 1), (5, 3, 2), (5, 3, 3))
    """
    scenario = as_scenario(layout)
    return tuple(
        pose
        for pose in placement_routes(scenario)
        if not optimal_first_actions(scenario, pose, "match")
        & optimal_first_actions(scenario, pose, "other")
    )
