"""The page's components: the layout and the small builders callbacks fill it with.

Components only: no state, no model, no analysis. Every component id the callbacks use
is a constant of :class:`IDS`. Buttons that step the env carry ``data-action`` (or
``data-follow``) and are handled by ``assets/keyboard.js`` together with the keyboard,
so a press reaches the server the same way from either.

Example:
    >>> page = build_layout("sid-1", [ModelOption("memorydt", "memorydt")], "memorydt", 7)
    >>> page.id
    'dtlens-app'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from dash import dcc, html
from jaxtyping import Float
from torch import Tensor

from dtlens.app.models import ModelOption
from dtlens.app.tabs import EDITS, PATCH_MODES
from dtlens.app.views import TokenView
from dtlens.env import ACTION_NAMES, OBJECT_TYPES

__all__ = [
    "IDS",
    "KEY_BINDINGS",
    "build_layout",
    "message",
    "probability_table",
    "token_strip",
    "trajectory_list",
]

#: keyboard -> action (mirrors ``assets/keyboard.js``).
KEY_BINDINGS: dict[str, str] = {
    "←": "left",
    "→": "right",
    "↑": "forward",
    "p": "pickup",
    "d": "drop",
    "t": "toggle",
    "n": "done",
    "f": "follow the model",
}


class IDS:
    """Component ids shared by the layout and the callbacks."""

    SESSION = "session-id"
    KEY_EVENTS = "key-events"
    EPISODE = "episode-version"
    MODEL = "model-picker"
    MODEL_INFO = "model-info"
    MODEL_MESSAGE = "model-message"
    INSTRUCTION = "scenario-instruction"
    TOP = "scenario-top"
    RESET = "reset-button"
    FULL_GRID = "grid-full"
    POV_GRID = "grid-pov"
    STATUS = "episode-status"
    TRAJECTORY = "trajectory"
    ENV_MESSAGE = "env-message"
    RTG = "rtg-slider"
    PROBS = "probabilities"
    PROBS_TABLE = "probabilities-table"
    CONTEXT = "context-tokens"
    TABS = "analysis-tabs"
    TAB_ATTENTION = "tab-attention"
    TAB_LENS = "tab-lens"
    TAB_PATCHING = "tab-patching"
    LAYER = "attention-layer"
    HEAD = "attention-head"
    RTG_B = "attention-rtg-b"
    ALL_HEADS = "attention-all-heads"
    ATTENTION = "attention-pair"
    ATTENTION_HEADS = "attention-heads"
    ATTENTION_MESSAGE = "attention-message"
    ATTENTION_SHOWN = "attention-shown"
    LENS_A = "lens-action-a"
    LENS_B = "lens-action-b"
    LENS = "logit-lens"
    DLA = "dla"
    LENS_MESSAGE = "lens-message"
    EDIT = "patching-edit"
    EDIT_RTG = "patching-rtg"
    PATCH_A = "patching-action-a"
    PATCH_B = "patching-action-b"
    PATCH_POS = "patching-by-pos"
    PATCH_HEAD = "patching-by-head"
    PATCH_MESSAGE = "patching-message"
    PATCH_SHOWN = "patching-shown"
    PATCH_MODE = "patching-mode"
    GIF_BUTTON = "gif-button"
    GIF_DOWNLOAD = "gif-download"
    GIF_MESSAGE = "gif-message"
    #: per analysis tab, a store the page sets (client side) when that tab is visible
    #: and what it shows may have changed; the tab's server callback listens to it alone,
    #: so a hidden tab costs no request
    TAB_TRIGGERS: ClassVar[dict[str, str]] = {
        TAB_ATTENTION: "attention-trigger",
        TAB_LENS: "lens-trigger",
        TAB_PATCHING: "patching-trigger",
    }


_GRAPH_CONFIG = {"displayModeBar": False}
_ACTION_OPTIONS = [{"label": name, "value": i} for i, name in enumerate(ACTION_NAMES)]
_RTG_MARKS = {0: "0", 0.5: "0.5", 0.9: "0.9", 1: "1"}


def build_layout(
    session_id: str,
    model_options: Sequence[ModelOption],
    model_value: str | None,
    n_actions: int = len(ACTION_NAMES),
) -> html.Div:
    """The whole page for one session.

    Args:
        session_id: the page's session id (kept in a ``dcc.Store``).
        model_options: the picker's entries.
        model_value: the entry selected at first.
        n_actions: how many action buttons to show.
    """
    return html.Div(
        id="dtlens-app",
        className="dt-app",
        children=[
            dcc.Store(id=IDS.SESSION, data=session_id),
            dcc.Store(id=IDS.KEY_EVENTS, data=None),
            dcc.Store(id=IDS.EPISODE, data=None),
            # what the attention / patching figures on the page were built for (a key),
            # so a key press can send new values instead of whole figures
            dcc.Store(id=IDS.ATTENTION_SHOWN, data=None),
            dcc.Store(id=IDS.PATCH_SHOWN, data=None),
            *(dcc.Store(id=trigger, data=None) for trigger in IDS.TAB_TRIGGERS.values()),
            _header(model_options, model_value),
            html.Div(className="dt-row", children=[_env_panel(n_actions), _model_panel()]),
            _analysis_tabs(),
        ],
    )


def _header(model_options: Sequence[ModelOption], model_value: str | None) -> html.Div:
    return html.Div(
        className="dt-header",
        children=[
            html.H1("dtlens: decision transformer live"),
            html.Div(
                className="dt-model-row",
                children=[
                    html.Label("Model", htmlFor=IDS.MODEL),
                    dcc.Dropdown(
                        id=IDS.MODEL,
                        options=[{"label": o.label, "value": o.value} for o in model_options],
                        value=model_value,
                        clearable=False,
                        className="dt-model-picker",
                    ),
                    html.Span(id=IDS.MODEL_INFO, className="dt-model-info"),
                ],
            ),
            html.Div(id=IDS.MODEL_MESSAGE, className="dt-message-slot"),
        ],
    )


def _env_panel(n_actions: int) -> html.Div:
    choices = [{"label": o, "value": o} for o in OBJECT_TYPES]
    buttons = [
        html.Button(
            f"{ACTION_NAMES[a]}",
            className="dt-action",
            title=f"action {a}",
            **{"data-action": str(a)},
        )
        for a in range(n_actions)
    ]
    return html.Div(
        className="dt-panel dt-env",
        children=[
            html.H2("Environment"),
            html.Div(
                className="dt-scenario",
                children=[
                    html.Span("instruction"),
                    dcc.RadioItems(id=IDS.INSTRUCTION, options=choices, value="key", inline=True),
                    html.Span("upper target"),
                    dcc.RadioItems(id=IDS.TOP, options=choices, value="ball", inline=True),
                    html.Button("reset", id=IDS.RESET, className="dt-reset"),
                ],
            ),
            html.Div(
                className="dt-grids",
                children=[
                    dcc.Graph(id=IDS.FULL_GRID, config=_GRAPH_CONFIG, className="dt-grid"),
                    dcc.Graph(id=IDS.POV_GRID, config=_GRAPH_CONFIG, className="dt-grid"),
                ],
            ),
            html.Div(
                className="dt-actions",
                children=[
                    *buttons,
                    html.Button("follow the model", className="dt-follow", **{"data-follow": "1"}),
                ],
            ),
            html.P(
                className="dt-keys",
                children="Keys (wherever the focus is, except in a text box): "
                + ", ".join(f"{key} {action}" for key, action in KEY_BINDINGS.items()),
            ),
            html.Div(id=IDS.STATUS, className="dt-status"),
            html.Div(id=IDS.ENV_MESSAGE, className="dt-message-slot"),
            html.H3("Trajectory"),
            html.Ol(id=IDS.TRAJECTORY, className="dt-trajectory"),
        ],
    )


def _model_panel() -> html.Div:
    return html.Div(
        className="dt-panel dt-model",
        children=[
            html.H2("Model"),
            html.Label(
                "Return-to-go (set at every RTG token; drag, or type in the box and press Enter)",
                htmlFor=IDS.RTG,
            ),
            dcc.Slider(id=IDS.RTG, min=0, max=1, step=0.01, value=0.9, marks=_RTG_MARKS),
            dcc.Graph(id=IDS.PROBS, config=_GRAPH_CONFIG),
            html.Div(id=IDS.PROBS_TABLE),
            html.H3("Context window"),
            html.Div(id=IDS.CONTEXT, className="dt-context"),
            html.Button(
                "download GIF of greedy play (this layout, this RTG)",
                id=IDS.GIF_BUTTON,
                className="dt-gif",
                title="the model plays greedily from the start of the layout picked on the left",
            ),
            dcc.Download(id=IDS.GIF_DOWNLOAD),
            html.Div(id=IDS.GIF_MESSAGE, className="dt-message-slot"),
        ],
    )


def _analysis_tabs() -> dcc.Tabs:
    return dcc.Tabs(
        id=IDS.TABS,
        value=IDS.TAB_ATTENTION,
        className="dt-tabs",
        children=[
            dcc.Tab(label="Attention", value=IDS.TAB_ATTENTION, children=_attention_tab()),
            dcc.Tab(label="Logit lens & DLA", value=IDS.TAB_LENS, children=_lens_tab()),
            dcc.Tab(label="Activation patching", value=IDS.TAB_PATCHING, children=_patching_tab()),
        ],
    )


def _attention_tab() -> html.Div:
    return html.Div(
        className="dt-tab",
        children=[
            html.Div(
                className="dt-controls",
                children=[
                    html.Label("layer"),
                    dcc.Dropdown(id=IDS.LAYER, options=[], value=0, clearable=False),
                    html.Label("head"),
                    dcc.Dropdown(id=IDS.HEAD, options=[], value=0, clearable=False),
                    html.Label("compare with RTG", htmlFor=IDS.RTG_B),
                    html.Div(
                        className="dt-slider",
                        children=dcc.Slider(
                            id=IDS.RTG_B, min=0, max=1, step=0.01, value=0.0, marks=_RTG_MARKS
                        ),
                    ),
                    dcc.Checklist(
                        id=IDS.ALL_HEADS,
                        options=[{"label": "every head of the layer", "value": "all"}],
                        value=[],
                        inline=True,
                    ),
                ],
            ),
            html.Div(id=IDS.ATTENTION_MESSAGE, className="dt-message-slot"),
            dcc.Graph(id=IDS.ATTENTION, config=_GRAPH_CONFIG),
            dcc.Graph(id=IDS.ATTENTION_HEADS, config=_GRAPH_CONFIG),
        ],
    )


def _lens_tab() -> html.Div:
    return html.Div(
        className="dt-tab",
        children=[
            html.Div(
                className="dt-controls",
                children=[
                    html.Label("action a"),
                    dcc.Dropdown(id=IDS.LENS_A, options=_ACTION_OPTIONS, value=0, clearable=False),
                    html.Label("action b"),
                    dcc.Dropdown(id=IDS.LENS_B, options=_ACTION_OPTIONS, value=1, clearable=False),
                ],
            ),
            html.Div(id=IDS.LENS_MESSAGE, className="dt-message-slot"),
            html.Div(
                className="dt-row",
                children=[
                    dcc.Graph(id=IDS.LENS, config=_GRAPH_CONFIG, className="dt-half"),
                    dcc.Graph(id=IDS.DLA, config=_GRAPH_CONFIG, className="dt-half"),
                ],
            ),
        ],
    )


def _patching_tab() -> html.Div:
    return html.Div(
        className="dt-tab",
        children=[
            html.Div(
                className="dt-controls",
                children=[
                    html.Label("edit"),
                    dcc.RadioItems(
                        id=IDS.EDIT,
                        options=[{"label": text, "value": key} for key, text in EDITS.items()],
                        value="instruction",
                    ),
                    html.Label("RTG of the edited run", htmlFor=IDS.EDIT_RTG),
                    html.Div(
                        className="dt-slider",
                        children=dcc.Slider(
                            id=IDS.EDIT_RTG, min=0, max=1, step=0.01, value=0.0, marks=_RTG_MARKS
                        ),
                    ),
                    html.Label("action a"),
                    dcc.Dropdown(id=IDS.PATCH_A, options=_ACTION_OPTIONS, value=0, clearable=False),
                    html.Label("action b"),
                    dcc.Dropdown(id=IDS.PATCH_B, options=_ACTION_OPTIONS, value=1, clearable=False),
                    html.Label("mode"),
                    dcc.RadioItems(
                        id=IDS.PATCH_MODE,
                        options=[{"label": t, "value": key} for key, t in PATCH_MODES.items()],
                        value="exact",
                    ),
                ],
            ),
            html.Div(id=IDS.PATCH_MESSAGE, className="dt-message-slot"),
            dcc.Graph(id=IDS.PATCH_POS, config=_GRAPH_CONFIG),
            dcc.Graph(id=IDS.PATCH_HEAD, config=_GRAPH_CONFIG),
        ],
    )


# ------------------------------------------------------------- filled by callbacks
def message(text: str | None, kind: str = "error") -> html.Div | None:
    """A message box (``kind`` ``"error"`` or ``"info"``), or None for no message.

    Example:
        >>> message("no checkpoint at 'x'").className
        'dt-message dt-error'
    """
    if not text:
        return None
    return html.Div(
        text, className=f"dt-message dt-{kind}", role="alert" if kind == "error" else None
    )


def probability_table(probs: Float[Tensor, " action"]) -> html.Table:
    """The action distribution as a two-row table (names, probabilities to 3 decimals).

    Example:
        >>> import torch
        >>> table = probability_table(torch.full((7,), 1 / 7))
        >>> table.children[1].children[0].children
        '0.143'
    """
    names = [ACTION_NAMES[i] if i < len(ACTION_NAMES) else str(i) for i in range(len(probs))]
    return html.Table(
        className="dt-probs",
        children=[
            html.Tr([html.Th(name) for name in names]),
            html.Tr(
                [html.Td(f"{float(p):.3f}", **{"data-action": str(i)}) for i, p in enumerate(probs)]
            ),
        ],
    )


def token_strip(tokens: Sequence[TokenView]) -> list[html.Span]:
    r"""One chip per context token: its label over its detail, padding greyed out.

    One component per token (the two lines are split by CSS ``white-space: pre-line``):
    the strip is redrawn on every key press and each Dash component costs serialisation
    time.

    Example:
        >>> chip = token_strip([TokenView("R1", "rtg", "0.90", False)])[0]
        >>> chip.className, chip.children
        ('dt-token dt-rtg', 'R1\n0.90')
    """
    return [
        html.Span(
            f"{t.label}\n{t.detail}",
            className=f"dt-token dt-{t.kind}{' dt-padding' if t.padding else ''}",
            title="padding" if t.padding else t.kind,
        )
        for t in tokens
    ]


def trajectory_list(steps: Sequence[str]) -> list[html.Li]:
    """The actions taken so far as list items (the ``Ol`` numbers them)."""
    return [html.Li(step.split(" ", 1)[1]) for step in steps]
