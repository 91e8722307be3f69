"""Build and serve the dtlens live app (``dtlens app``).

:func:`create_app` returns a ``dash.Dash`` app whose page is built per visit (each visit
gets its own session id, so two tabs play two episodes), whose callbacks are those of
:mod:`dtlens.app.callbacks` (bound in :mod:`dtlens.app.wiring`) and which answers
malformed callback requests with HTTP 400 (:mod:`dtlens.app.validation`); :func:`run`
serves it, on 127.0.0.1 unless told otherwise, with the production WSGI server waitress
and :data:`DEFAULT_SERVER_THREADS` threads (Flask's development server in debug mode).
:func:`make_server` gives the waitress server itself, e.g. on a free port for a test.

Requests are answered in parallel threads. The app keeps that safe: each page's
episode has its own lock, and every forward holds its model's
:func:`~dtlens.model.hooks_lock` (a model running hooks is not thread-safe).

Example:
    >>> app = create_app(model="memorydt")  # doctest: +SKIP
    >>> run(app, port=8050)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import torch

from dtlens.app.callbacks import AppState
from dtlens.app.layout import build_layout
from dtlens.app.models import ModelCatalog
from dtlens.app.session import SessionStore
from dtlens.app.validation import install_request_checks
from dtlens.app.wiring import register_callbacks
from dtlens.errors import ConfigError

__all__ = [
    "ASSETS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SERVER_THREADS",
    "SERVERS",
    "AppServer",
    "create_app",
    "make_server",
    "run",
]

#: folder with the page's JavaScript (keyboard) and CSS.
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
#: the servers :func:`run` can use: waitress (production WSGI server, the default) or
#: Flask's development server (single process, hot reload in debug mode).
SERVERS = ("waitress", "flask")
#: waitress' worker threads. A key press makes the page send three requests (the
#: environment, then the model panel and the visible tab; hidden tabs send nothing),
#: so 8 threads serve a few pages' presses in parallel while the model's lock and
#: the GIL keep the CPU work itself serial (see ``docs/app.md``, Speed).
DEFAULT_SERVER_THREADS = 8
#: the largest request body waitress accepts (the page's requests are a few kB).
MAX_REQUEST_BODY = 1 << 20


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
    install_request_checks(app)
    return app


def make_server(
    app: dash.Dash,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    threads: int = DEFAULT_SERVER_THREADS,
) -> AppServer:
    """A waitress server for ``app``, bound but not yet serving (an :class:`AppServer`).

    Call its ``run()`` to serve until interrupted (from a thread, if the caller goes
    on) and ``close()``, from any thread, to stop it; ``port`` is the port it bound
    (useful with ``port=0``, a free one).

    Args:
        app: from :func:`create_app`.
        host: the interface to bind; 127.0.0.1 (this machine only) by default.
        port: the TCP port (0: any free one).
        threads: worker threads answering requests in parallel.

    Raises:
        ConfigError: ``threads`` is not a positive int, waitress is not installed, or
            the port is in use.

    Example:
        >>> import threading, urllib.request
        >>> server = make_server(create_app(model="memorydt"), port=0)
        >>> thread = threading.Thread(target=server.run)
        >>> thread.start()
        >>> urllib.request.urlopen(server.url).status
        200
        >>> server.close()
        >>> thread.join(timeout=10); thread.is_alive()
        False
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"server threads must be a positive int, got {threads!r}.")
    try:
        from waitress.server import create_server
    except ModuleNotFoundError as err:
        raise ConfigError(
            "serving the app needs waitress: pip install 'dtlens[app]' (or pip install "
            "waitress), or serve it with Flask's development server: run(app, server='flask')."
        ) from err
    try:
        return AppServer(
            create_server(
                app.server,
                host=host,
                port=port,
                threads=threads,
                ident="dtlens",
                max_request_body_size=MAX_REQUEST_BODY,
            )
        )
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use (another dtlens app?); pick another port "
                "(dtlens app --port ...)."
            ) from err
        raise


def run(
    app: dash.Dash,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    debug: bool = False,
    torch_threads: int | None = 1,
    server: str | None = None,
    server_threads: int = DEFAULT_SERVER_THREADS,
) -> None:
    """Serve ``app`` until interrupted, with waitress (Flask's server in debug mode).

    Args:
        app: from :func:`create_app`.
        host: the interface to bind; 127.0.0.1 (this machine only) by default.
        port: the TCP port.
        debug: Dash's debug mode (hot reload, error overlay); needs Flask's server.
        torch_threads: intra-op threads of this (serving) process; None leaves torch's
            default. 1 by default: a key press runs batch-1 forwards, which gain nothing
            from more threads, and threads that spin-wait for a busy core made a key press
            several times slower on a shared 2-core machine (see ``docs/app.md``).
        server: ``"waitress"`` (the production WSGI server, :func:`make_server`) or
            ``"flask"`` (Flask's development server); None (default): waitress, or
            Flask with ``debug``.
        server_threads: waitress' worker threads (Flask's server starts a thread per
            request).

    Raises:
        ConfigError: ``torch_threads`` is not a positive int or None, ``server`` is
            unknown, ``debug`` with ``server="waitress"``, or see :func:`make_server`.
        KeyboardInterrupt: Ctrl+C stopped the server (both servers catch it; it is
            raised again once the server has closed).

    Example:
        >>> run(create_app(model="memorydt"), port=8051)  # doctest: +SKIP
        >>> run(create_app(model="memorydt"), debug=True)  # Flask, hot reload  # doctest: +SKIP
    """
    if server is not None and server not in SERVERS:
        raise ConfigError(f"server must be one of {list(SERVERS)} or None, got {server!r}.")
    if debug and server == "waitress":
        raise ConfigError(
            "debug mode (hot reload) needs Flask's development server: pass server='flask' "
            "(or server=None), or drop debug."
        )
    server = server or ("flask" if debug else "waitress")
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
    if server == "flask":
        with _reraise_interrupt():
            app.run(host=host, port=port, debug=debug)
        return
    waitress = make_server(app, host=host, port=port, threads=server_threads)
    try:
        with _reraise_interrupt():
            waitress.run()
    finally:
        waitress.close()


class AppServer:
    """A waitress server bound to its port, with a stop that is safe from any thread.

    From :func:`make_server`. waitress serves from one loop (``run()``) that must not
    be touched from other threads; :meth:`close` asks that loop to close every socket
    (the listening one and open connections), which ends ``run()``, and waits for it.

    Attributes:
        server: the waitress server itself.
    """

    def __init__(self, server: Any):
        from waitress import wasyncore
        from waitress.trigger import trigger

        self.server = server
        self._wasyncore = wasyncore
        socket_map = getattr(server, "_map", None)  # one socket; several: .map
        self._map = server.map if socket_map is None else socket_map
        self._wake = trigger(self._map)  # runs a function in the loop's thread
        self._lock = threading.Lock()
        self._running = self._closed = False
        self._done = threading.Event()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        listen = getattr(self.server, "effective_listen", None)
        return self.server.effective_port if listen is None else listen[0][1]

    @property
    def url(self) -> str:
        """``http://host:port/`` of (the first address of) the server."""
        listen = getattr(self.server, "effective_listen", None)
        host = self.server.effective_host if listen is None else listen[0][0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def run(self) -> None:
        """Serve until :meth:`close` (from another thread) or Ctrl+C."""
        with self._lock:
            if self._closed:
                return
            self._running = True
        try:
            self.server.run()
        finally:
            self.server.task_dispatcher.shutdown()
            self._wasyncore.close_all(self._map)
            self._done.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving: close every connection and the port; waits up to ``timeout``
        seconds for :meth:`run` to end. Does nothing the second time."""
        with self._lock:
            first, self._closed = not self._closed, True
            running = self._running
        if not running:
            if first:
                self.server.task_dispatcher.shutdown()
                self._wasyncore.close_all(self._map)
            return
        if not self._done.is_set():
            self._wake.pull_trigger(lambda: self._wasyncore.close_all(self._map))
            self._done.wait(timeout)


@contextlib.contextmanager
def _reraise_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt after the block if Ctrl+C (SIGINT) ended it.

    waitress and Flask's server both catch the interrupt and return as if the server
    had simply stopped; the caller (``dtlens app``) should see it, to end like every
    other command interrupted by Ctrl+C. Outside the main thread (no signal handler can
    be set there) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
