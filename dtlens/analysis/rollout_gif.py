"""Animated GIFs of a model's greedy play, drawn by the environment itself.

A greedy episode (the one :func:`dtlens.analysis.edits.routine.play_greedy` plays) is
replayed in ``MiniGrid-MemoryS7FixedStart-v0`` with ``render_mode="rgb_array"``: one
frame ``env.render()`` after the reset and one after every action (MiniGrid draws
without a display), checked to be the same episode (the replay's observations must
equal the rollout's). Each GIF frame is that picture over a caption band (layout, RTG, step, the
next action and its probability, then the outcome); the band also keeps consecutive
frames distinct, so a GIF has exactly ``steps + 1`` frames (GIF writers merge identical
ones). GIFs are encoded with ``imageio`` and written atomically.

Examples:
    >>> import dtlens
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> gif = greedy_gif(model, "key/top-ball", rtg=0.9)  # doctest: +SKIP
    >>> gif.frames.shape, gif.filename  # doctest: +SKIP
    ((7, 224, 224, 3), 'key-top-ball_rtg0.9.gif')
    >>> gif.write("out/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw, ImageFont

from dtlens.analysis.edits.routine import GreedyRun
from dtlens.env import ACTION_NAMES, MEMORY_ENV_ID, Scenario, make_env
from dtlens.env.scenarios import as_scenario
from dtlens.errors import EnvError
from dtlens.files import write_atomic
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.training.evaluate import rollout

__all__ = [
    "FRAME_MS",
    "LAST_FRAME_MS",
    "RolloutGif",
    "encode_gif",
    "greedy_gif",
    "greedy_gifs",
    "render_episode",
]

#: milliseconds each frame is shown, and the last one.
FRAME_MS, LAST_FRAME_MS = 500, 1500
_CAPTION_PX = 34


@dataclass(frozen=True)
class RolloutGif:
    """A greedy episode and its frames.

    Attributes:
        run: the greedy episode (actions, probabilities, reward).
        frames: ``env.render()`` after the reset and after each action,
            ``[steps + 1, height, width, 3]`` uint8.
    """

    run: GreedyRun
    frames: UInt8[np.ndarray, "frame height width 3"]

    @property
    def filename(self) -> str:
        """A file name naming the layout and RTG, e.g. ``key-top-ball_rtg0.9.gif``."""
        layout = self.run.scenario.name.replace("/", "-")
        return f"{layout}_rtg{self.run.rtg:g}.gif"

    def captions(self) -> list[str]:
        """One caption per frame: layout, RTG, step, then the next action or the outcome."""
        run = self.run
        n = len(run.actions)
        head = f"{run.scenario.name}  RTG {run.rtg:g}"
        out = []
        for t in range(n + 1):
            if t < n:
                p = float(run.probs[t, run.actions[t]])
                out.append(
                    f"{head}  step {t}/{n}\nnext: {ACTION_NAMES[run.actions[t]]} (p={p:.2f})"
                )
            else:
                ending = f"reward {run.reward:.3f}" if run.terminated else "truncated"
                out.append(f"{head}  step {t}/{n}\nend: {ending}")
        return out

    def to_bytes(self, caption: bool = True) -> bytes:
        """The GIF (looping; 0.5 s a frame, 1.5 s on the last), as bytes."""
        return encode_gif(self.frames, self.captions() if caption else None)

    def write(self, path: str | os.PathLike, caption: bool = True) -> Path:
        """Write the GIF atomically to ``path`` (a ``.gif`` file, or a folder: then
        :attr:`filename` inside it); an interrupted write leaves an earlier file intact."""
        target = Path(path)
        if target.suffix.lower() != ".gif":
            target = target / self.filename
        return write_atomic(target, self.to_bytes(caption))


def render_episode(
    layout: Scenario | str | tuple[str, str],
    actions: Sequence[int],
    *,
    seed: int = 0,
    max_steps: int = 50,
    expected_images: np.ndarray | None = None,
) -> UInt8[np.ndarray, "frame height width 3"]:
    """Replay ``actions`` in a layout; return ``env.render()`` after the reset and each action.

    Args:
        layout: a :class:`Scenario`, its name or ``(instruction, top)``.
        actions: the actions to take (the episode may end on the last one only).
        seed: the reset seed.
        max_steps: the env's step limit.
        expected_images: the raw ``[steps + 1, 7, 7, 3]`` observations the episode is
            known to have (e.g. ``GreedyRun.images``); the replay must reproduce them.

    Raises:
        EnvError: the episode ends before the last action, or the replay's observations
            differ from ``expected_images``.

    Examples:
        >>> frames = render_episode("key/top-ball", [2, 2])
        >>> frames.shape, frames.dtype
        ((3, 224, 224, 3), dtype('uint8'))
    """
    scenario = as_scenario(layout)
    env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed, options=scenario.options)
        frames, images, ended = [env.render()], [obs["image"]], False
        for i, action in enumerate(actions):
            if ended:
                raise EnvError(f"the episode ended before action {i} of {list(actions)}")
            obs, _, terminated, truncated, _ = env.step(int(action))
            ended = terminated or truncated
            frames.append(env.render())
            images.append(obs["image"])
    finally:
        env.close()
    if expected_images is not None and not np.array_equal(np.stack(images), expected_images):
        raise EnvError(
            f"replaying {list(actions)} in {scenario.name} (seed {seed}) did not reproduce the "
            "episode's observations"
        )
    return np.stack(frames).astype(np.uint8)


def greedy_gif(
    model: HookedDecisionTransformer,
    layout: Scenario | str | tuple[str, str],
    rtg: float = 0.9,
    *,
    max_steps: int = 50,
    seed: int = 0,
) -> RolloutGif:
    """Play ``model`` greedily in one layout and render every step.

    The episode is :func:`dtlens.analysis.edits.routine.play_greedy`'s.

    Examples:
        >>> gif = greedy_gif(model, "ball/top-ball", rtg=0.0)  # doctest: +SKIP
        >>> len(gif.frames) == len(gif.run.actions) + 1  # doctest: +SKIP
        True
    """
    return greedy_gifs(model, [layout], [rtg], max_steps=max_steps, seed=seed)[0]


def greedy_gifs(
    model: HookedDecisionTransformer,
    layouts: Sequence[Scenario | str | tuple[str, str]],
    rtgs: Sequence[float],
    *,
    max_steps: int = 50,
    seed: int = 0,
) -> list[RolloutGif]:
    """:func:`greedy_gif` for every RTG x layout (RTG-major), played in one batched
    :func:`~dtlens.training.evaluate.rollout` (the episodes are the same as
    :func:`~dtlens.analysis.edits.routine.play_greedy`'s, one at a time).

    Examples:
        >>> gifs = greedy_gifs(model, SCENARIOS, rtgs=(0.9, 0.0))  # doctest: +SKIP
        >>> [g.filename for g in gifs][:2]  # doctest: +SKIP
        ['key-top-key_rtg0.9.gif', 'key-top-ball_rtg0.9.gif']
    """
    scenarios = [as_scenario(layout) for layout in layouts]
    pairs = [(float(rtg), scenario) for rtg in rtgs for scenario in scenarios]
    if not pairs:
        return []
    result = rollout(
        model,
        MEMORY_ENV_ID,
        initial_rtg=[rtg for rtg, _ in pairs],
        seeds=[seed] * len(pairs),
        layouts=[scenario for _, scenario in pairs],
        max_steps=max_steps,
        record=True,
    )
    gifs = []
    for i, (rtg, _) in enumerate(pairs):
        run = GreedyRun.from_rollout(result, i, rtg=rtg)
        frames = render_episode(
            run.scenario, run.actions, seed=seed, max_steps=max_steps, expected_images=run.images
        )
        gifs.append(RolloutGif(run, frames))
    return gifs


def encode_gif(
    frames: UInt8[np.ndarray, "frame height width 3"],
    captions: Sequence[str] | None = None,
    frame_ms: int = FRAME_MS,
    last_frame_ms: int = LAST_FRAME_MS,
) -> bytes:
    """Encode frames as a looping GIF (imageio); with ``captions``, one per frame,
    each frame gets a white band below it with its caption.

    Examples:
        >>> import numpy as np
        >>> data = encode_gif(np.zeros((2, 8, 8, 3), dtype=np.uint8), ["a", "b"])
        >>> data[:6], iio.imread(data, index=None, extension=".gif").shape
        (b'GIF89a', (2, 42, 8, 3))
    """
    stack = np.asarray(frames)
    if stack.ndim != 4 or stack.shape[-1] != 3 or stack.dtype != np.uint8 or not len(stack):
        raise EnvError(f"frames must be [n >= 1, h, w, 3] uint8, got {stack.shape} {stack.dtype}")
    if captions is not None:
        if len(captions) != len(stack):
            raise EnvError(f"{len(captions)} captions for {len(stack)} frames")
        stack = np.stack([_caption(f, c) for f, c in zip(stack, captions, strict=True)])
    durations = [frame_ms] * (len(stack) - 1) + [last_frame_ms]
    return iio.imwrite("<bytes>", stack, extension=".gif", duration=durations, loop=0)


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` over a white band holding ``text`` (two lines at most)."""
    width = frame.shape[1]
    band = Image.new("RGB", (width, _CAPTION_PX), "white")
    ImageDraw.Draw(band).multiline_text(
        (4, 2), text, fill=(30, 30, 30), font=ImageFont.load_default(size=12), spacing=2
    )
    return np.concatenate([frame, np.asarray(band, dtype=np.uint8)], axis=0)
