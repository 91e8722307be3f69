"""Evaluation figures: RTG calibration (the seed's Figure 4) and reward vs length (Figure 3).

Both take plain arrays (tensors work too), so any evaluation code can feed them:

- :func:`plot_calibration`: for each RTG asked, the rewards of N episodes played with
  it; draws their mean with a shaded band, their distribution (a violin plus one
  jittered point per episode, coloured by success when given) and the line y = x
  (perfect calibration).
- :func:`plot_reward_length_scatter`: one point per episode, reward against length,
  with the marginal histograms, successes blue and failures red.

Examples:
    >>> import numpy as np
    >>> rewards = np.array([[0.0, 0.0, 0.1], [0.9, 0.8, 0.0]])
    >>> fig = plot_calibration(np.array([0.0, 0.9]), rewards)
    >>> ", ".join(trace.name for trace in fig.data)
    'distribution, episodes, 95% CI, 95% CI, mean reward, reward = RTG'
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Bool, Float
from plotly.subplots import make_subplots
from torch import Tensor

from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy

__all__ = ["BAND_NAMES", "plot_calibration", "plot_reward_length_scatter"]

#: legend names of the bands ``plot_calibration`` can shade.
BAND_NAMES = {"95ci": "95% CI", "std": "± 1 std"}

#: z of a two-sided 95% normal confidence interval.
_Z95 = 1.959964
#: seed of the (display-only) horizontal jitter of episode points.
_JITTER_SEED = 0

Array = Tensor | np.ndarray


def plot_calibration(
    rtgs: Float[Array, " rtg"],
    rewards: Float[Array, "rtg episode"],
    success: Bool[Array, "rtg episode"] | None = None,
    band: Literal["95ci", "std", "none"] = "95ci",
    title: str | None = "Calibration: reward achieved against RTG asked",
    points: bool = True,
) -> go.Figure:
    """RTG calibration curve: mean reward per RTG with a band, the reward distribution, y = x.

    Args:
        rtgs: the RTGs asked, strictly increasing ``[R]``.
        rewards: the reward of each episode ``[R, N]`` (row r played with ``rtgs[r]``).
        success: optional ``[R, N]`` booleans; points are then coloured success/failure.
        band: ``"95ci"``: mean ± 1.96 · std / √N (normal approximation, std with
            N - 1); ``"std"``: mean ± 1 std; ``"none"``: no band.
        title: figure title.
        points: draw one jittered point per episode (jitter is horizontal only and
            fixed, so a figure is reproducible; ``customdata`` holds the exact RTG).

    Returns:
        A figure with traces, in order: ``distribution`` (violins), the episode points
        (``episodes``, or ``succeeded`` and ``failed``), the band (upper then lower
        edge, absent for ``"none"``), ``mean reward``, ``reward = RTG``.

    Raises:
        BatchError: shapes do not match, ``rtgs`` is not strictly increasing, ``band``
            is unknown, or a band is asked for one episode per RTG.

    Examples:
        >>> import numpy as np
        >>> fig = plot_calibration(np.array([0.0, 0.5]), np.array([[0.0, 0.2], [0.4, 0.6]]))
        >>> fig.data[4].y.tolist()
        [0.1, 0.5]
    """
    x = as_numpy(rtgs, "rtgs [rtg]", 1)
    y = as_numpy(rewards, "rewards [rtg, episode]", 2)
    if y.shape[0] != x.shape[0]:
        raise BatchError(
            f"rewards [rtg, episode] has shape {list(y.shape)} but there are {x.shape[0]} "
            f"rtgs; expected [{x.shape[0]}, n_episodes]."
        )
    if x.size > 1 and not np.all(np.diff(x) > 0):
        raise BatchError(f"rtgs must be strictly increasing, got {x.tolist()}.")
    if band not in ("95ci", "std", "none"):
        raise BatchError(f"band must be '95ci', 'std' or 'none', got {band!r}.")
    n_rtg, n_episodes = y.shape
    if band != "none" and n_episodes < 2:
        raise BatchError(
            f"a {band!r} band needs at least 2 episodes per RTG, got rewards of shape "
            f"{list(y.shape)}; pass band='none'."
        )
    ok = None if success is None else _success(success, y.shape)
    width = 0.8 * float(np.min(np.diff(x))) if n_rtg > 1 else 0.8
    asked = np.repeat(x, n_episodes)
    fig = go.Figure(
        go.Violin(
            x=asked,
            y=y.reshape(-1),
            name="distribution",
            width=width,
            points=False,
            spanmode="hard",
            line={"color": style.NEUTRAL_COLOUR, "width": 1},
            fillcolor="rgba(127,127,127,0.15)",
            hoverinfo="skip",
        )
    )
    if points:
        for trace in _episode_points(x, y, ok, width):
            fig.add_trace(trace)
    mean = y.mean(axis=1)
    if band != "none":
        spread = y.std(axis=1, ddof=1)
        half = _Z95 * spread / np.sqrt(n_episodes) if band == "95ci" else spread
        for edge, fill in ((mean + half, None), (mean - half, "tonexty")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=edge,
                    name=BAND_NAMES[band],
                    mode="lines",
                    line={"width": 0},
                    fill=fill,
                    fillcolor=style.BAND_FILL,
                    showlegend=fill is not None,
                    legendgroup="band",
                    hoverinfo="skip",
                )
            )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=mean,
            name="mean reward",
            mode="lines+markers",
            line={"color": style.MEAN_COLOUR},
            hovertemplate="RTG %{x:.3f}<br>mean reward %{y:.3f}<extra></extra>",
        )
    )
    ends = [float(x[0]), float(x[-1])]
    fig.add_trace(
        go.Scatter(
            x=ends,
            y=ends,
            name="reward = RTG",
            mode="lines",
            line={"color": style.IDENTITY_COLOUR, "dash": "dash"},
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(title_text="RTG asked")
    fig.update_yaxes(title_text="reward achieved")
    return fig.update_layout(title=title, template=style.TEMPLATE)


def plot_reward_length_scatter(
    rewards: Float[Array, " episode"],
    lengths: Float[Array, " episode"],
    success: Bool[Array, " episode"] | None = None,
    title: str | None = "Reward against episode length",
) -> go.Figure:
    """Reward against episode length, one point per episode, with marginal histograms.

    Args:
        rewards: each episode's reward ``[E]``.
        lengths: each episode's length in steps ``[E]``.
        success: optional booleans ``[E]``; default ``rewards > 0`` (MiniGrid gives a
            positive reward only on success).
        title: figure title.

    Returns:
        A 2 x 2 grid (main scatter bottom left, length histogram above it, reward
        histogram to its right); per group (``succeeded`` then ``failed``, possibly
        empty): the scatter, the length histogram, the reward histogram.

    Raises:
        BatchError: the arrays are not 1-D or differ in length.

    Examples:
        >>> import numpy as np
        >>> fig = plot_reward_length_scatter(np.array([0.9, 0.0]), np.array([12, 50]))
        >>> fig.data[0].type, fig.data[0].name, fig.data[1].type
        ('scatter', 'succeeded', 'histogram')
    """
    y = as_numpy(rewards, "rewards [episode]", 1)
    x = as_numpy(lengths, "lengths [episode]", 1)
    if x.shape != y.shape:
        raise BatchError(
            f"rewards and lengths must have one length, got {list(y.shape)} and {list(x.shape)}."
        )
    ok = y > 0 if success is None else _success(success, y.shape)
    fig = make_subplots(
        rows=2,
        cols=2,
        column_widths=[0.8, 0.2],
        row_heights=[0.2, 0.8],
        shared_xaxes=True,
        shared_yaxes=True,
        horizontal_spacing=0.02,
        vertical_spacing=0.02,
        specs=[[{}, None], [{}, {}]],
    )
    episode = np.arange(y.size)
    for name, keep, colour in (
        ("succeeded", ok, style.SUCCESS_COLOUR),
        ("failed", ~ok, style.FAILURE_COLOUR),
    ):
        group = {"legendgroup": name, "marker": {"color": colour}}
        fig.add_trace(
            go.Scatter(
                x=x[keep],
                y=y[keep],
                name=name,
                mode="markers",
                customdata=episode[keep],
                marker={"color": colour, "size": 5, "opacity": 0.5},
                legendgroup=name,
                hovertemplate="episode %{customdata}<br>length %{x}<br>reward %{y:.3f}"
                "<extra></extra>",
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Histogram(
                x=x[keep], name=name, showlegend=False, opacity=0.6, bingroup="length", **group
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Histogram(
                y=y[keep], name=name, showlegend=False, opacity=0.6, bingroup="reward", **group
            ),
            row=2,
            col=2,
        )
    fig.update_xaxes(title_text="episode length (steps)", row=2, col=1)
    fig.update_yaxes(title_text="reward", row=2, col=1)
    return fig.update_layout(title=title, template=style.TEMPLATE, barmode="overlay")


def _success(success: Bool[Array, "..."], shape: tuple[int, ...]) -> np.ndarray:
    ok = as_numpy(success, "success", len(shape), boolean=True)
    if ok.shape != shape:
        raise BatchError(
            f"success must have the rewards' shape {list(shape)}, got {list(ok.shape)}."
        )
    return ok


def _episode_points(
    x: np.ndarray, y: np.ndarray, ok: np.ndarray | None, width: float
) -> list[go.Scatter]:
    n_episodes = y.shape[1]
    rng = np.random.default_rng(_JITTER_SEED)
    jitter = rng.uniform(-0.3 * width, 0.3 * width, size=y.shape)
    asked = np.broadcast_to(x[:, None], y.shape)
    index = np.broadcast_to(np.arange(n_episodes)[None, :], y.shape)
    groups = (
        [("episodes", np.ones(y.shape, dtype=bool), style.NEUTRAL_COLOUR)]
        if ok is None
        else [("succeeded", ok, style.SUCCESS_COLOUR), ("failed", ~ok, style.FAILURE_COLOUR)]
    )
    return [
        go.Scatter(
            x=(asked + jitter)[keep],
            y=y[keep],
            name=name,
            mode="markers",
            customdata=np.stack([asked[keep], index[keep]], axis=-1),
            marker={"color": colour, "size": 4, "opacity": 0.4},
            hovertemplate="RTG %{customdata[0]:.3f}<br>episode %{customdata[1]}"
            "<br>reward %{y:.3f}<extra></extra>",
        )
        for name, keep, colour in groups
    ]
