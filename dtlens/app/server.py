"""Build and serve the dtlens live app (``dtlens app``).

:func:`create_app` returns a ``dash.Dash`` app whose page is built per visit (each visit
gets its own session id, so two tabs play two episodes) and whose callbacks are those of
:mod:`dtlens.app.callbacks` (bound in :mod:`dtlens.app.wiring`); :func:`run` serves it,
on 127.0.0.1 unless told otherwise.

Example:
    >>> app = create_app(model="memorydt")  # doctest: +SKIP
    >>> run(app, port=8050)  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dash
import torch

from dtlens.app.callbacks import AppState
from dtlens.app.layout import build_layout
from dtlens.app.models import ModelCatalog
from dtlens.app.session import SessionStore
from dtlens.app.wiring import register_callbacks
from dtlens.errors import ConfigError

__all__ = ["ASSETS", "DEFAULT_HOST", "DEFAULT_PORT", "create_app", "run"]

#: folder with the page's JavaScript (keyboard) and CSS.
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def create_app(
    model: str | None = None,
    models_dir: str | Path | None = None,
    *,
    catalog: ModelCatalog | None = None,
    max_sessions: int = 32,
) -> dash.Dash:
    """The Dash app for a model and/or a folder of checkpoints.

    Nothing is loaded here: the first page that needs the model loads it (and shows a
    bad checkpoint's error in the page).

    Args:
        model: ``"memorydt"``, a dtlens checkpoint directory or an original ``.pt``
            (selected when a page opens).
        models_dir: a folder whose checkpoints the model picker lists.
        catalog: a ready :class:`ModelCatalog` instead of ``model`` / ``models_dir``.
        max_sessions: pages whose episodes are kept (least recently used dropped).

    Raises:
        ConfigError: no model, no folder and no catalog; or a catalog together with
            ``model`` / ``models_dir``.
        CheckpointError: ``models_dir`` is not a folder.

    Example:
        >>> app = create_app(models_dir="checkpoints/")  # doctest: +SKIP
        >>> app.server  # the Flask app, e.g. for a WSGI server  # doctest: +SKIP
    """
    if catalog is not None and (model is not None or models_dir is not None):
        raise ConfigError("pass either catalog= or model=/models_dir=, not both.")
    catalog = catalog if catalog is not None else ModelCatalog(models_dir, model)
    state = AppState(catalog, SessionStore(max_sessions))
    app = dash.Dash(
        "dtlens.app",
        title="dtlens live",
        assets_folder=str(ASSETS),
        update_title=None,
        serve_locally=True,
    )

    def page() -> dash.html.Div:  # a new session per visit
        return build_layout(uuid.uuid4().hex, catalog.options(), catalog.default_value)

    app.layout = page
    register_callbacks(app, state)
    return app


def run(
    app: dash.Dash,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    debug: bool = False,
    torch_threads: int | None = 1,
) -> None:
    """Serve ``app`` until interrupted (Flask's threaded server; fine for one user).

    Args:
        app: from :func:`create_app`.
        host: the interface to bind; 127.0.0.1 (this machine only) by default.
        port: the TCP port.
        debug: Dash's debug mode (hot reload, error overlay).
        torch_threads: intra-op threads of this (serving) process; None leaves torch's
            default. 1 by default: a key press runs batch-1 forwards, which gain nothing
            from more threads, and threads that spin-wait for a busy core made a key press
            several times slower on a shared 2-core machine (see ``docs/app.md``).

    Raises:
        ConfigError: ``torch_threads`` is not a positive int or None.

    Example:
        >>> run(create_app(model="memorydt"), port=8051)  # doctest: +SKIP
    """
    if torch_threads is not None:
        if isinstance(torch_threads, bool) or not isinstance(torch_threads, int):
            raise ConfigError(
                f"torch_threads must be a positive int or None, got {torch_threads!r}."
            )
        if torch_threads < 1:
            raise ConfigError(
                f"torch_threads must be a positive int or None, got {torch_threads!r}."
            )
        torch.set_num_threads(torch_threads)
    app.run(host=host, port=port, debug=debug)
