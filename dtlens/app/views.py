"""Pure functions from the session state to what the environment and model panels show.

Nothing here touches Dash's app or callbacks: each function takes the episode and/or a
cached model run (:class:`~dtlens.app.session.ContextRun`) and returns numbers, strings
or plotly figures, or a Dash ``Patch`` of a figure the page already has
(:func:`pixels_patch`, :func:`heatmap_patch`, named by :func:`figure_key`). Every number
comes from the model (its logits), ``dtlens.env`` or ``dtlens.plotting``; the only
figures built here, :func:`probability_figure` and :func:`placeholder_figure`, are
display glue (a bar chart of a distribution the model computed, an empty plot), returned
as figure dicts because they are redrawn on every key press.

Example:
    >>> session = EpisodeSession()
    >>> run = session.context_run(model, "memorydt", rtg=0.9)  # doctest: +SKIP
    >>> probs = current_probabilities(model, run)  # doctest: +SKIP
    >>> fig = probability_figure(probs)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from dash import Patch
from jaxtyping import Float
from torch import Tensor

from dtlens.app.session import ContextRun, EpisodeSession
from dtlens.env import ACTION_NAMES
from dtlens.errors import DTLensError
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_grid, style
from dtlens.plotting.trajectory import png_data_uri

__all__ = [
    "FigureSpec",
    "TokenView",
    "context_tokens",
    "current_probabilities",
    "episode_status",
    "figure_key",
    "greedy_action",
    "grid_figures",
    "heatmap_patch",
    "model_summary",
    "pixels_patch",
    "placeholder_figure",
    "probability_figure",
    "trajectory_steps",
]

#: a plotly figure as a dict (``{"data": [...], "layout": {...}}``), as ``dcc.Graph`` takes it.
FigureSpec = dict[str, Any]
#: MiniGrid's agent directions 0..3.
_DIRECTIONS = ("east", "south", "west", "north")
#: colour of the bar of the most likely action.
_TOP_COLOUR = style.SUCCESS_COLOUR


@dataclass(frozen=True)
class TokenView:
    """One token of the context window, as the context strip shows it.

    Attributes:
        label: the model's token label (``"R1"``, ``"S1"``, ``"A1"`` ...).
        kind: ``"rtg"``, ``"state"`` or ``"action"``.
        detail: the RTG value, the env timestep of a state, or the action's name.
        padding: whether the token is left padding (not part of the episode).
    """

    label: str
    kind: str
    detail: str
    padding: bool


def grid_figures(session: EpisodeSession) -> tuple[go.Figure, go.Figure]:
    """The full grid (agent's view highlighted) and the agent's 7x7 view, as figures.

    The pixels travel as PNG (the image trace's ``source``): ~1.4 kB a frame instead of
    200 kB as an array. After the first render a key press only replaces ``source``
    (see :func:`dtlens.app.callbacks.on_env_input`).

    Example:
        >>> full, pov = grid_figures(EpisodeSession())
        >>> full.data[0].type, pov.data[0].source[:22]
        ('image', 'data:image/png;base64,')
    """
    full, pov = session.frames()
    return (
        plot_grid(full, title="Environment", png=True),
        plot_grid(pov, title="Agent's view", png=True),
    )


def trajectory_steps(session: EpisodeSession) -> list[str]:
    """The actions taken so far, numbered: ``["1 forward", "2 forward", ...]``.

    Example:
        >>> session = EpisodeSession()
        >>> session.step(1)
        True
        >>> trajectory_steps(session)
        ['1 right']
    """
    return [f"{i + 1} {ACTION_NAMES[a]}" for i, a in enumerate(session.actions)]


def episode_status(session: EpisodeSession) -> str:
    """One line on the episode: layout, step count, the agent's pose, how it ended if it did.

    Example:
        >>> episode_status(EpisodeSession())
        'key/top-ball: step 0 of 50, agent at (1, 3) facing east'
    """
    x, y, direction = session.agent_pose
    head = (
        f"{session.scenario.name}: step {len(session.actions)} of "
        f"{session.env.unwrapped.max_steps}, agent at ({x}, {y}) facing {_DIRECTIONS[direction]}"
    )
    if session.terminated:
        outcome = "reached the matching target" if session.total_reward > 0 else "wrong target"
        return f"{head}. Episode over ({outcome}, reward {session.total_reward:.3f}); press reset."
    if session.truncated:
        return f"{head}. Episode over (out of steps, reward 0); press reset."
    return head


def current_probabilities(
    model: HookedDecisionTransformer, run: ContextRun
) -> Float[Tensor, " action"]:
    """The model's action distribution for the next step (softmax at the last state token).

    Equal to ``model.action_logits(window)[0, -1].softmax(-1)`` on the run's window.

    Example:
        >>> current_probabilities(model, run).sum()  # doctest: +SKIP
        tensor(1.0000)
    """
    position = model.state_positions(run.batch.n_steps)[-1]
    return run.logits[0, position].detach().softmax(-1).cpu()


def greedy_action(model: HookedDecisionTransformer, run: ContextRun) -> int:
    """The model's most likely next action ("follow the model").

    Example:
        >>> greedy_action(model, run)  # doctest: +SKIP
        2
    """
    return int(current_probabilities(model, run).argmax())


def probability_figure(probs: Float[Tensor, " action"], title: str | None = None) -> FigureSpec:
    """Bar chart of one action distribution, the most likely action highlighted.

    Returned as a plotly figure dict (what ``dcc.Graph`` and ``go.Figure(spec)`` take):
    it is redrawn on every key press, and building a validated ``go.Figure`` with a
    template costs more than the model's forward pass.

    Args:
        probs: ``[n_actions]`` probabilities (from :func:`current_probabilities`).
        title: figure title.

    Examples:
        >>> fig = probability_figure(torch.tensor([0.1, 0.2, 0.7, 0, 0, 0, 0]))
        >>> fig["data"][0]["x"][:3], round(fig["data"][0]["y"][2], 3)
        (['left', 'right', 'forward'], 0.7)
    """
    values = [float(p) for p in probs]
    names = [ACTION_NAMES[i] if i < len(ACTION_NAMES) else str(i) for i in range(len(values))]
    top = int(torch.as_tensor(values).argmax()) if values else -1
    colours = [_TOP_COLOUR if i == top else style.NEUTRAL_COLOUR for i in range(len(values))]
    bar = {
        "type": "bar",
        "x": names,
        "y": values,
        "marker": {"color": colours},
        "text": [f"{v:.2f}" for v in values],
        "textposition": "outside",
        "hovertemplate": "%{x}: %{y:.4f}<extra></extra>",
    }
    layout = {
        "title": {"text": title},
        "template": _template(),
        "yaxis": {"range": [0, 1.1], "title": {"text": "probability"}},
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        "height": 260,
    }
    return {"data": [bar], "layout": layout}


def context_tokens(model: HookedDecisionTransformer, run: ContextRun) -> list[TokenView]:
    """The tokens of the run's window in order, labelled and marked padding or not.

    Examples:
        >>> [t.label for t in context_tokens(model, run)][:3]  # doctest: +SKIP
        ['R1', 'S1', 'A1']
    """
    batch = run.batch
    labels = model.token_labels(batch)
    n_padding = batch.n_steps - run.n_real
    kinds = {"R": "rtg", "S": "state", "A": "action"}
    tokens = []
    for label in labels:
        step = int(label[1:]) - 1
        kind = kinds[label[0]]
        if kind == "rtg":
            detail = f"{float(batch.rtg[0, step]):.2f}"
        elif kind == "state":
            detail = f"t={int(batch.timesteps[0, step])}"
        else:
            action = int(batch.actions[0, step])
            detail = ACTION_NAMES[action] if action < len(ACTION_NAMES) else "pad"
        tokens.append(TokenView(label, kind, detail, step < n_padding))
    return tokens


def model_summary(model: HookedDecisionTransformer) -> str:
    """A one-line description of the model's architecture and context.

    Example:
        >>> model_summary(model)  # doctest: +SKIP
        'decision_transformer: 2 layers, d_model 128, 4 heads, context 9 steps (26 tokens)'
    """
    cfg = model.cfg
    return (
        f"{cfg.model_type}: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, "
        f"context {cfg.n_timesteps} steps ({cfg.n_ctx} tokens), padding '{model.context_padding}'"
    )


def placeholder_figure(text: str = "") -> FigureSpec:
    """An empty figure dict with a short note, shown where a plot cannot be drawn (yet).

    Examples:
        >>> placeholder_figure("no model")["layout"]["annotations"][0]["text"]
        'no model'
    """
    annotations = [{"text": text, "showarrow": False, "font": {"size": 14}}] if text else []
    layout = {
        "template": _template(),
        "annotations": annotations,
        "xaxis": {"visible": False},
        "yaxis": {"visible": False},
        "height": 200,
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
    }
    return {"data": [], "layout": layout}


@lru_cache(maxsize=1)
# ------------------------------------------------ patches of figures the page has
def figure_key(*parts: Any) -> str:
    """A short string naming what a tab's figures were built for (stored by the page).

    Example:
        >>> figure_key("memorydt", 0, 1) == figure_key("memorydt", 0, 1) != figure_key("x")
        True
        >>> len(figure_key("memorydt", 0, 1))
        16
    """
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def pixels_patch(rgb: Any) -> Patch:
    """A patch replacing an image figure's pixels (``data[0].source``, a PNG data URI)."""
    patch = Patch()
    patch["data"][0]["source"] = png_data_uri(rgb)
    return patch


def heatmap_patch(figure: go.Figure, values: list[Tensor]) -> Patch:
    """A patch giving ``figure``'s heatmaps new values, and restating its titles.

    ``values[i]`` replaces trace i's ``z``; cells the figure drew empty (NaN, e.g. the
    future half of an attention pattern) stay empty, so the plotting module's choice of
    what to mask is kept. Titles are restated so the patch is right even if the page
    missed the full figure it was built from.
    """
    if len(values) != len(figure.data):
        raise DTLensError(
            f"cannot refresh a figure of {len(figure.data)} traces with {len(values)} values."
        )
    patch = Patch()
    for i, (trace, value) in enumerate(zip(figure.data, values, strict=True)):
        old = np.asarray(trace.z, dtype=float)
        new = value.detach().cpu().double().numpy()
        if new.shape != old.shape:
            raise DTLensError(
                f"cannot refresh a heatmap of shape {list(old.shape)} with {list(new.shape)}."
            )
        patch["data"][i]["z"] = np.where(np.isnan(old), np.nan, new)
    patch["layout"]["title"]["text"] = figure.layout.title.text
    for i, annotation in enumerate(figure.layout.annotations):
        patch["layout"]["annotations"][i]["text"] = annotation.text
    return patch


def _template() -> dict[str, Any]:
    """The dtlens plot template as a plain dict (built once; do not modify it)."""
    return pio.templates[style.TEMPLATE].to_plotly_json()
