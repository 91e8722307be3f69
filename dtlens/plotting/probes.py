"""Figures of linear probes: held-out accuracy per hook, beside both baselines.

:func:`plot_probe_accuracy` draws a
:class:`~dtlens.analysis.probes.ProbeResult` (or several, one panel each): the trained
model's accuracy at each hook with its 95 % interval as error bars, the same probe on
a randomly initialised model (dashed) and on shuffled labels (dotted), and the chance
level. It reads the result's attributes only (plotting does not import the analysis
package, which imports plotting).

Examples:
    >>> from types import SimpleNamespace as NS
    >>> fit = lambda a: NS(accuracy=a, ci=(a - 0.05, min(1.0, a + 0.05)))
    >>> result = NS(fact="instruction", token="S", chance=0.5,
    ...             hooks=("blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"),
    ...             trained=(fit(0.5), fit(1.0)), random_model=(fit(0.5), fit(0.9)),
    ...             shuffled=(fit(0.48), fit(0.51)))
    >>> fig = plot_probe_accuracy(result)
    >>> [t.name for t in fig.data], list(fig.data[0].x)
    (['trained model', 'random model', 'shuffled labels'], ['resid_pre 0', 'resid_post 0'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dtlens.errors import BatchError
from dtlens.plotting import style

__all__ = ["hook_label", "plot_probe_accuracy"]

_RESID = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post)$")
#: (series name, attribute of the result, line dash, colour)
_SERIES = (
    ("trained model", "trained", "solid", style.SUCCESS_COLOUR),
    ("random model", "random_model", "dash", style.NEUTRAL_COLOUR),
    ("shuffled labels", "shuffled", "dot", style.FAILURE_COLOUR),
)
_COLUMNS = 3


def hook_label(name: str) -> str:
    """A short axis label for a hook: ``blocks.1.hook_resid_mid`` -> ``resid_mid 1``.

    Examples:
        >>> hook_label("blocks.1.hook_resid_mid"), hook_label("hook_embed")
        ('resid_mid 1', 'hook_embed')
    """
    match = _RESID.match(name)
    return f"{match.group(2)} {match.group(1)}" if match else name


def plot_probe_accuracy(result: Any | Sequence[Any], title: str | None = None) -> go.Figure:
    """Accuracy per hook of the trained model's probes, the random model's and shuffled labels'.

    Args:
        result: a ``ProbeResult`` (``fact``, ``token``, ``hooks``, ``chance`` and one
            fit per hook in ``trained``, ``random_model``, ``shuffled``, each with
            ``accuracy`` and ``ci``), or a sequence of them (one panel each).
        title: the figure title.

    Raises:
        BatchError: a result without those attributes, or with fits that do not match
            its hooks.
    """
    results = list(result) if isinstance(result, Sequence) else [result]
    if not results:
        raise BatchError("plot_probe_accuracy needs at least one probe result.")
    for r in results:
        _check(r)
    cols = min(_COLUMNS, len(results))
    rows = math.ceil(len(results) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        shared_yaxes=True,
        subplot_titles=[f"{r.fact} at token {r.token}" for r in results],
    )
    for index, r in enumerate(results):
        row, col = index // cols + 1, index % cols + 1
        labels = [hook_label(h) for h in r.hooks]
        for name, attr, dash, colour in _SERIES:
            fits = getattr(r, attr)
            accuracy = [f.accuracy for f in fits]
            fig.add_scatter(
                x=labels,
                y=accuracy,
                name=name,
                mode="lines+markers",
                legendgroup=name,
                showlegend=index == 0,
                line={"dash": dash, "color": colour},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [f.ci[1] - f.accuracy for f in fits],
                    "arrayminus": [f.accuracy - f.ci[0] for f in fits],
                },
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
                row=row,
                col=col,
            )
        fig.add_hline(
            y=r.chance,
            line={"color": style.IDENTITY_COLOUR, "dash": "dot"},
            annotation_text="chance",
            row=row,
            col=col,
        )
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="held-out accuracy (95% CI)", col=1)
    fig.update_layout(
        template=style.TEMPLATE,
        title=title
        or "Linear probes: accuracy per hook, against a random model and shuffled labels",
        height=max(400, 330 * rows),
    )
    return fig


def _check(result: Any) -> None:
    needed = ("fact", "token", "hooks", "chance", "trained", "random_model", "shuffled")
    missing = [a for a in needed if not hasattr(result, a)]
    if missing:
        raise BatchError(
            f"plot_probe_accuracy expects a ProbeResult; {type(result).__name__} lacks {missing}."
        )
    for attr in ("trained", "random_model", "shuffled"):
        if len(getattr(result, attr)) != len(result.hooks):
            raise BatchError(
                f"{attr} has {len(getattr(result, attr))} fits for {len(result.hooks)} hooks."
            )
