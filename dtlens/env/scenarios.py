"""The four layouts of the Memory task, and validation of the options that force them.

Only two facts vary between episodes of ``MiniGrid-MemoryS7FixedStart-v0``: the
instruction object in the start room (``"key"`` or ``"ball"``) and which object type
sits in the upper target position (``"top"``). A :class:`Scenario` names one of the
four combinations.

Examples:
    >>> from dtlens.env.scenarios import SCENARIOS
    >>> [s.name for s in SCENARIOS]
    ['key/top-key', 'key/top-ball', 'ball/top-key', 'ball/top-ball']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dtlens.errors import EnvError

__all__ = ["OBJECT_TYPES", "OPTION_NAMES", "SCENARIOS", "Scenario", "as_scenario", "parse_options"]

#: The object types that can be the instruction or a target, in scenario order.
OBJECT_TYPES: tuple[str, ...] = ("key", "ball")

#: The keys ``reset(options=...)`` accepts.
OPTION_NAMES: tuple[str, ...] = ("instruction", "top")


def _check_choice(option: str, value: Any) -> str:
    """Return ``value`` if it is one of :data:`OBJECT_TYPES`, else raise EnvError."""
    if not isinstance(value, str) or value not in OBJECT_TYPES:
        raise EnvError(
            f"option {option!r} has invalid value {value!r}; "
            f"allowed values: {', '.join(repr(v) for v in OBJECT_TYPES)}"
        )
    return value


@dataclass(frozen=True)
class Scenario:
    """One of the four Memory layouts.

    Attributes:
        instruction: The object type shown in the start room (``"key"`` or ``"ball"``).
        top: The object type in the upper target position (``"key"`` or ``"ball"``);
            the other type sits in the lower target position.

    Raises:
        EnvError: If either field is not ``"key"`` or ``"ball"``.

    Examples:
        >>> s = Scenario("key", "ball")
        >>> s.name, s.bottom, s.target
        ('key/top-ball', 'key', 'bottom')
        >>> s.options
        {'instruction': 'key', 'top': 'ball'}
    """

    instruction: str
    top: str

    def __post_init__(self) -> None:
        _check_choice("instruction", self.instruction)
        _check_choice("top", self.top)

    @property
    def name(self) -> str:
        """Short label such as ``"key/top-ball"`` (instruction, then the upper target)."""
        return f"{self.instruction}/top-{self.top}"

    @property
    def bottom(self) -> str:
        """The object type in the lower target position."""
        return OBJECT_TYPES[1 - OBJECT_TYPES.index(self.top)]

    @property
    def target(self) -> str:
        """Where the object matching the instruction is: ``"top"`` or ``"bottom"``."""
        return "top" if self.top == self.instruction else "bottom"

    @property
    def options(self) -> dict[str, str]:
        """The ``reset(options=...)`` dict that forces this scenario."""
        return {"instruction": self.instruction, "top": self.top}

    def __str__(self) -> str:
        return self.name


#: The four scenarios, instruction-major: (key, key), (key, ball), (ball, key), (ball, ball).
SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(instruction, top) for instruction in OBJECT_TYPES for top in OBJECT_TYPES
)


def parse_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate ``reset`` options and return the forced facts.

    Args:
        options: ``None`` or a mapping with optional keys ``"instruction"`` and
            ``"top"``, each ``"key"``, ``"ball"`` or ``None`` (``None`` = drawn from the
            env's RNG as usual).

    Returns:
        A dict holding only the forced facts.

    Raises:
        EnvError: For an unknown key or a value other than ``"key"``/``"ball"``;
            the message names the option, the bad value and the allowed values.

    Examples:
        >>> parse_options({"instruction": "ball", "top": None})
        {'instruction': 'ball'}
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise EnvError(
            f"options must be a dict with keys {list(OPTION_NAMES)}, got {type(options).__name__}"
        )
    unknown = [k for k in options if k not in OPTION_NAMES]
    if unknown:
        raise EnvError(
            f"unknown option(s) {unknown}; allowed options: {list(OPTION_NAMES)}, "
            f"each one of {list(OBJECT_TYPES)}"
        )
    return {k: _check_choice(k, v) for k, v in options.items() if v is not None}


def as_scenario(layout: Scenario | str | tuple[str, str]) -> Scenario:
    """A layout given as a :class:`Scenario`, its name (``"key/top-ball"``) or
    ``(instruction, top)``, as a :class:`Scenario`.

    Raises:
        EnvError: for an unknown name or bad object types.

    Examples:
        >>> as_scenario("ball/top-key") == as_scenario(("ball", "key")) == Scenario("ball", "key")
        True
    """
    if isinstance(layout, Scenario):
        return layout
    if isinstance(layout, tuple) and len(layout) == 2:
        return Scenario(*layout)  # validates, raising EnvError
    for scenario in SCENARIOS:
        if layout == scenario.name:
            return scenario
    raise EnvError(
        f"unknown layout {layout!r}; expected a Scenario, (instruction, top) or one of "
        f"{[s.name for s in SCENARIOS]}"
    )
