"""Tiny probe environments that check an RL trainer learns, and learns to remember.

Background:
    A PPO bug can hide for hours on the real Memory task. A probe env answers one
    question in seconds: :class:`CueRecallEnv` shows a cue at the first step only
    (every cell of the view is red floor, or every cell green floor), then ``delay``
    blank views (empty cells), and pays 1 if the action at the last step names the
    cue (``left`` for red, ``right`` for green). With ``delay=0`` the cue is visible
    when acting (a reactive policy suffices); with ``delay >= 1`` the last
    observation is the same for both cues, so a memoryless policy gets at most 1/2,
    only a policy that carries the cue in its recurrent state does better, and
    uniform random play gets 1/7.

    Observations are raw MiniGrid ``[7, 7, 3]`` index images, so the same agents run
    on probes and on MiniGrid. Not registered with gymnasium (dtlens has no
    import-time side effects): pass the class or a lambda as an env factory.

Usage:
    >>> env = CueRecallEnv(delay=1)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["cue"] in (0, 1)
    ((7, 7, 3), True)
    >>> _, reward, terminated, *_ = env.step(2)  # the blank step
    >>> (reward, terminated)
    (0.0, False)
    >>> _, reward, terminated, *_ = env.step(info["answer"])
    >>> (reward, terminated)
    (1.0, True)
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from dtlens.errors import EnvError

__all__ = ["CueRecallEnv"]

_VIEW = 7
#: cue index -> (colour name, rewarded action)
_CUES = (("red", int(Actions.left)), ("green", int(Actions.right)))


class CueRecallEnv(gymnasium.Env):
    """Remember a cue seen at step 0 and name it ``delay`` steps later.

    Args:
        delay: Blank steps between the cue and the answer (0: answer while seeing it).

    Raises:
        EnvError: If ``delay`` is not an int >= 0.

    Example:
        >>> env = CueRecallEnv(delay=0)
        >>> obs, info = env.reset(seed=3)
        >>> env.step(info["answer"])[1:3]
        (1.0, True)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, delay: int = 1):
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise EnvError(f"CueRecallEnv delay must be an int >= 0, got {delay!r}")
        self.delay = delay
        self.observation_space = spaces.Box(0, 10, (_VIEW, _VIEW, 3), np.uint8)
        self.action_space = spaces.Discrete(len(Actions))
        self._cue = 0
        self._t = 0

    @property
    def episode_length(self) -> int:
        """Steps per episode: ``delay + 1``."""
        return self.delay + 1

    def _blank(self) -> np.ndarray:
        image = np.zeros((_VIEW, _VIEW, 3), dtype=np.uint8)
        image[..., 0] = OBJECT_TO_IDX["empty"]
        return image

    def _cue_image(self) -> np.ndarray:
        image = np.zeros((_VIEW, _VIEW, 3), dtype=np.uint8)
        image[..., 0] = OBJECT_TO_IDX["floor"]
        image[..., 1] = COLOR_TO_IDX[_CUES[self._cue][0]]
        return image

    def _info(self) -> dict[str, Any]:
        return {"cue": self._cue, "answer": _CUES[self._cue][1]}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a cue; the first observation shows it. ``options={"cue": 0|1}`` forces it.

        Example:
            >>> obs, info = CueRecallEnv().reset(options={"cue": 1})
            >>> info, int(obs[0, 0, 1])  # green floor everywhere
            ({'cue': 1, 'answer': 1}, 1)
        """
        super().reset(seed=seed)
        cue = (options or {}).get("cue")
        if cue is None:
            cue = int(self.np_random.integers(len(_CUES)))
        elif cue not in range(len(_CUES)):
            raise EnvError(f"CueRecallEnv cue must be 0 or 1, got {cue!r}")
        self._cue, self._t = int(cue), 0
        return self._cue_image(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Blank views until the last step, which pays 1 for the cue's action.

        Example:
            >>> env = CueRecallEnv(delay=0)
            >>> _ = env.reset(options={"cue": 0})
            >>> env.step(1)[1:3]  # "right" names green, but the cue was red
            (0.0, True)
        """
        if not self.action_space.contains(int(action)):
            raise EnvError(f"action must be in [0, {self.action_space.n}), got {action!r}")
        self._t += 1
        last = self._t >= self.episode_length
        reward = float(int(action) == _CUES[self._cue][1]) if last else 0.0
        return self._blank(), reward, last, False, self._info()
