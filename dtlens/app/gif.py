"""The app's "download GIF" button: the model's greedy play in the current layout and RTG.

A plain callback (tested without a browser, bound in :mod:`dtlens.app.wiring`): it
plays the picked model greedily from the start of the layout chosen by the radios, at
the RTG of the slider, and returns the GIF that
:func:`dtlens.analysis.rollout_gif.greedy_gif` encodes (frames drawn by the env itself).
Errors a user can cause come back as a message, never as an exception.

Example:
    >>> out = gif_download(state, "memorydt", "key", "ball", 0.9)  # doctest: +SKIP
    >>> out.filename, out.content[:6]  # doctest: +SKIP
    ('key-top-ball_rtg0.9.gif', b'GIF89a')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dtlens.analysis.rollout_gif import greedy_gif
from dtlens.app.validation import check_rtg, guard
from dtlens.env import Scenario
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.app.callbacks import AppState

__all__ = ["GifDownload", "gif_download"]


@dataclass(frozen=True)
class GifDownload:
    """The file to send (``content`` and ``filename``), or a ``message`` saying why not."""

    content: bytes | None = None
    filename: str = ""
    message: str | None = None
    steps: int = 0


def gif_download(
    state: AppState,
    model_value: str | None,
    instruction: str,
    top: str,
    rtg: float | None,
    max_steps: int = 50,
) -> GifDownload:
    """The GIF of the picked model's greedy episode in a layout at an RTG.

    Args:
        state: the app state (its catalog loads the model).
        model_value: the model picker's value.
        instruction: the instruction radio's value (``"key"`` or ``"ball"``).
        top: the upper-target radio's value.
        rtg: the RTG slider's value.
        max_steps: the episode's step limit (at most the model's ``max_timestep``).
    """

    def compute() -> GifDownload:
        if model_value is None:
            raise ConfigError("no model is picked; choose one in the model picker.")
        value = check_rtg(rtg)
        scenario = Scenario(instruction, top)
        model = state.catalog.get(model_value)
        steps = min(max_steps, model.cfg.max_timestep)
        with state.catalog.forward_lock(model):
            gif = greedy_gif(model, scenario, value, max_steps=steps)
        return GifDownload(gif.to_bytes(), gif.filename, steps=len(gif.run.actions))

    return guard(compute, lambda message: GifDownload(message=message), "GIF download")
