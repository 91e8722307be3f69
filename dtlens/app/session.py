"""Server-side state of one browser page: its Memory episode and a cache of model runs.

Dash callbacks are stateless, so each page gets a session id (made when the page is
served) and the server keeps, per id, an :class:`EpisodeSession`: the env, the raw
``[7, 7, 3]`` views seen so far, the actions taken and rewards received. Everything that
does not change between keystrokes is cached on it, keyed by the episode's ``version``
(bumped by every step and reset): the rendered frames, and the model's
``run_with_cache`` of the current context window at a given RTG
(:meth:`EpisodeSession.context_run`), which the probability panel, the "follow the
model" button and the analysis tabs all share.

Keyboard and button presses reach the server as a list of numbered events (the page
keeps the last few, see ``assets/keyboard.js``); :meth:`EpisodeSession.new_events`
returns those not yet applied, so a press is applied exactly once even when the browser
coalesces two presses into one request or repeats one.

Example:
    >>> session = EpisodeSession(Scenario("key", "ball"))
    >>> session.step(2)  # forward
    True
    >>> len(session.images), session.actions, session.version
    (2, [2], 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache

from dtlens.analysis.edits.observations import set_rtg
from dtlens.analysis.edits.routine import history_batch
from dtlens.env import MEMORY_ENV_ID, N_ACTIONS, Scenario, make_env
from dtlens.errors import EnvError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "DEFAULT_SCENARIO",
    "ContextRun",
    "EpisodeSession",
    "SessionStore",
]

#: the layout a new page starts in (the seed's "set routine" example: key, ball on top).
DEFAULT_SCENARIO = Scenario("key", "ball")
#: episode length of the app's env (the Memory task's default).
MAX_STEPS = 50
#: pixels per grid cell of the rendered frames.
TILE_SIZE = 32


@dataclass(frozen=True)
class ContextRun:
    """The model's cached forward pass on the current context window.

    Attributes:
        batch: the window the model saw: the last ``n_timesteps`` steps, padded the way
            the model expects (``model.pad_context``), RTG set to ``rtg`` at every token.
        logits: ``[1, n_tokens, n_actions]``.
        cache: the cached hooks of that forward (None when none were asked for).
        rtg: the RTG of every RTG token.
        n_real: how many steps at the end of the window are real (the rest is padding).
    """

    batch: TrajectoryBatch
    logits: Float[Tensor, "1 pos action"]
    cache: ActivationCache | None
    rtg: float
    n_real: int


class EpisodeSession:
    """One page's Memory episode, stepped by its key presses, with per-version caches.

    Args:
        scenario: the layout to start in.
        max_steps: episode length before truncation.
        tile_size: pixels per cell of the rendered frames.
        run_cache_size: how many context runs (model x RTG) to keep for this version.

    Attributes:
        scenario: the current layout.
        images: the raw ``[7, 7, 3]`` views, one per step plus the first.
        actions: the actions taken.
        rewards: the reward after each action.
        terminated: the episode ended at a target.
        truncated: the episode ran out of steps.
        version: bumped by every step and reset (the cache key of everything shown).
        lock: held by callbacks while they read or change the session.

    Example:
        >>> session = EpisodeSession()
        >>> full, pov = session.frames()
        >>> full.shape, pov.shape
        ((224, 224, 3), (224, 224, 3))
    """

    def __init__(
        self,
        scenario: Scenario = DEFAULT_SCENARIO,
        max_steps: int = MAX_STEPS,
        tile_size: int = TILE_SIZE,
        run_cache_size: int = 8,
    ):
        self.env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False)
        self.tile_size = tile_size
        self.lock = threading.RLock()
        self.version = 0
        self.last_event_id = 0
        self._run_cache_size = run_cache_size
        self._runs: OrderedDict[tuple, ContextRun] = OrderedDict()
        self._memo: OrderedDict[tuple, Any] = OrderedDict()
        self._frames: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        #: figures last built for the page, by panel: ``(key, figures)``; when the page
        #: reports it shows that key (model, layer, RTGs ... unchanged), a key press only
        #: sends their new values.
        self.figures: dict[str, tuple[str, Any]] = {}
        self.scenario = scenario
        self.reset()

    # ------------------------------------------------------------ episode
    def reset(self, scenario: Scenario | None = None) -> None:
        """Start a new episode (in ``scenario``, else the current layout)."""
        with self.lock:
            if scenario is not None:
                self.scenario = scenario
            obs, _ = self.env.reset(seed=0, options=self.scenario.options)
            self.images: list[np.ndarray] = [obs["image"]]
            self.actions: list[int] = []
            self.rewards: list[float] = []
            self.terminated = self.truncated = False
            self._bump()

    @property
    def done(self) -> bool:
        """Whether the episode is over (no more steps until a reset)."""
        return self.terminated or self.truncated

    @property
    def n_steps(self) -> int:
        """Observations so far (actions taken + 1)."""
        return len(self.images)

    @property
    def agent_pose(self) -> tuple[int, int, int]:
        """The agent's ``(x, y, direction)`` in the grid (direction 0 = east, 1 = south ...)."""
        env = self.env.unwrapped
        return (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))

    @property
    def total_reward(self) -> float:
        """Sum of the rewards received."""
        return float(sum(self.rewards))

    def step(self, action: int) -> bool:
        """Take ``action`` in the env; returns False (and does nothing) once the episode is over.

        Raises:
            EnvError: ``action`` is not an int in ``0..6``.
        """
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise EnvError(f"action must be an int in 0..{N_ACTIONS - 1}, got {action!r}.")
        if not 0 <= int(action) < N_ACTIONS:
            raise EnvError(f"action {action} is outside 0..{N_ACTIONS - 1}.")
        with self.lock:
            if self.done:
                return False
            obs, reward, terminated, truncated, _ = self.env.step(int(action))
            self.images.append(obs["image"])
            self.actions.append(int(action))
            self.rewards.append(float(reward))
            self.terminated, self.truncated = bool(terminated), bool(truncated)
            self._bump()
            return True

    def new_events(self, events: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The events (``{"id": int, ...}``) not applied yet, oldest first; marks them applied.

        Examples:
            >>> session = EpisodeSession()
            >>> [e["id"] for e in session.new_events([{"id": 1}, {"id": 2}])]
            [1, 2]
            >>> [e["id"] for e in session.new_events([{"id": 2}, {"id": 3}])]
            [3]
        """
        fresh = []
        for event in sorted(events or [], key=lambda e: e.get("id", 0)):
            event_id = event.get("id")
            if isinstance(event_id, int) and event_id > self.last_event_id:
                fresh.append(event)
                self.last_event_id = event_id
        return fresh

    # ------------------------------------------------------------- caches
    def frames(self) -> tuple[UInt8[np.ndarray, "h w 3"], UInt8[np.ndarray, "h w 3"]]:
        """The full grid (agent's view highlighted) and the agent's own view, as RGB.

        Cached per version: repeated calls between steps render nothing.
        """
        if self._frames is None or self._frames[0] != self.version:
            env = self.env.unwrapped
            full = env.get_full_render(highlight=True, tile_size=self.tile_size)
            pov = env.get_pov_render(tile_size=self.tile_size)
            self._frames = (self.version, (full, pov))
        return self._frames[1]

    def history(self, rtg: float, window: int) -> TrajectoryBatch:
        """The last ``window`` steps as a one-row batch (unpadded), RTG ``rtg`` at every step."""
        return history_batch(
            np.stack(self.images), self.actions, [float(rtg)] * self.n_steps, window
        )

    def context_run(
        self,
        model: HookedDecisionTransformer,
        model_key: str,
        rtg: float,
        hooks: tuple[str, ...] | None = None,
        lock: AbstractContextManager | None = None,
    ) -> ContextRun:
        """The model's ``run_with_cache`` of the current window at ``rtg`` (cached).

        The window is ``model.pad_context(history)`` with ``set_rtg(.., rtg)`` applied
        to every RTG token (padding included), so moving the RTG slider changes the
        RTG of the whole trajectory, as the seed's app did.

        Args:
            model: the model.
            model_key: the model's picker value (part of the cache key).
            rtg: the RTG.
            hooks: the hook names to cache; None (default) for every hook, ``()`` for
                none (a plain forward: the cheapest way to get the probabilities). A
                cached run serves every request for a subset of its hooks.
            lock: held around the forward (the model's
                :meth:`~dtlens.app.models.ModelCatalog.forward_lock`), if given.

        Raises:
            BatchError: the window does not fit the model (e.g. timesteps past its
                time embedding).
        """
        return self.context_runs(model, model_key, (rtg,), hooks, lock)[0]

    def context_runs(
        self,
        model: HookedDecisionTransformer,
        model_key: str,
        rtgs: tuple[float, ...],
        hooks: tuple[str, ...] | None = None,
        lock: AbstractContextManager | None = None,
    ) -> list[ContextRun]:
        """:meth:`context_run` at each RTG of ``rtgs``, the missing ones in one forward.

        The windows differ only in their RTG tokens, so they run as the rows of one
        batch: a key press with the attention tab open (the slider's RTG and the
        tab's second RTG) costs one forward instead of two. Each row is cached as its
        own run (its logits and cache sliced to a batch of one), so later requests
        for either RTG reuse it.

        Example:
            >>> session = EpisodeSession()
            >>> low, high = session.context_runs(model, "tiny", (0.0, 0.9), hooks=())
            >>> low.rtg, high.rtg, high.logits.shape[0]
            (0.0, 0.9, 1)
        """
        wanted = [float(rtg) for rtg in rtgs]
        base = (model_key, id(model), self.version)
        with self.lock:
            runs: dict[float, ContextRun] = {}
            for rtg in wanted:
                for key, run in reversed(self._runs.items()):  # the most recent first
                    if key[:-1] == (*base, rtg) and _serves(key[-1], hooks):
                        self._runs.move_to_end(key)
                        runs[rtg] = run
                        break
            missing = list(dict.fromkeys(rtg for rtg in wanted if rtg not in runs))
            if missing:
                new_runs = self._forward(model, missing, hooks, lock)
                for rtg, run in zip(missing, new_runs, strict=True):
                    runs[rtg] = run
                    self._runs[(*base, rtg, hooks)] = run
                while len(self._runs) > self._run_cache_size:
                    self._runs.popitem(last=False)
            return [runs[rtg] for rtg in wanted]

    def _forward(
        self,
        model: HookedDecisionTransformer,
        rtgs: list[float],
        hooks: tuple[str, ...] | None,
        lock: AbstractContextManager | None,
    ) -> list[ContextRun]:
        """One forward of the current window at every RTG of ``rtgs`` (one row each)."""
        history = self.history(rtgs[0], model.cfg.n_timesteps)
        window = model.pad_context(history)
        rows = [set_rtg(window, rtg) for rtg in rtgs]
        batch = (rows[0] if len(rows) == 1 else TrajectoryBatch.cat(rows)).to(model.device)
        with torch.no_grad(), lock if lock is not None else nullcontext():
            if hooks == ():
                logits, cache = model(batch), None
            else:
                names = None if hooks is None else list(hooks)
                logits, cache = model.run_with_cache(batch, names_filter=names)
        if len(rows) == 1:
            return [ContextRun(batch, logits, cache, rtgs[0], history.n_steps)]
        return [
            ContextRun(
                row.to(model.device),
                logits[i : i + 1],
                None if cache is None else cache.apply_slice_to_batch_dim(slice(i, i + 1)),
                rtg,
                history.n_steps,
            )
            for i, (row, rtg) in enumerate(zip(rows, rtgs, strict=True))
        ]

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` cached under ``key`` until the episode changes (a step or reset).

        For results derived from the current window that take longer than a keystroke
        (e.g. a patching sweep), so revisiting a tab does not recompute them.

        Example:
            >>> session = EpisodeSession()
            >>> session.memo(("answer",), lambda: 42), session.memo(("answer",), lambda: 0)
            (42, 42)
        """
        with self.lock:
            full_key = (self.version, *key)
            if full_key not in self._memo:
                self._memo[full_key] = compute()
                while len(self._memo) > self._run_cache_size:
                    self._memo.popitem(last=False)
            return self._memo[full_key]

    def _bump(self) -> None:
        self.version += 1
        self._runs.clear()
        self._memo.clear()


def _serves(cached: tuple[str, ...] | None, wanted: tuple[str, ...] | None) -> bool:
    """Whether a run caching ``cached`` hooks (None: all) has every ``wanted`` one."""
    if cached is None:
        return True
    return wanted is not None and set(wanted) <= set(cached)


class SessionStore:
    """Sessions by page id, least recently used dropped beyond ``max_sessions``.

    Example:
        >>> store = SessionStore(max_sessions=2)
        >>> store.get("a") is store.get("a")
        True
    """

    def __init__(self, max_sessions: int = 32):
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, EpisodeSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> EpisodeSession:
        """The session of a page (created on first use, e.g. after a server restart).

        Raises:
            EnvError: ``session_id`` is not a non-empty string.
        """
        if not isinstance(session_id, str) or not session_id:
            raise EnvError(f"session id must be a non-empty string, got {session_id!r}.")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = self._sessions[session_id] = EpisodeSession()
            self._sessions.move_to_end(session_id)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def __len__(self) -> int:
        return len(self._sessions)
