"""``dtlens app``: serve the live interpretability app on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dtlens.errors import CheckpointError, ConfigError

__all__ = ["add_parser", "models_to_serve", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "app",
        help="serve the live app: play the Memory task by keyboard, watch the model's preferences",
        description=(
            "Serve a web app (Dash) where you step MiniGrid-MemoryS7FixedStart-v0 with the "
            "keyboard (arrows: left/right/forward; p pickup, d drop, t toggle, n done, f follow "
            "the model) and see the model's action probabilities, attention, logit lens, DLA "
            "and activation patching for the trajectory so far. Binds 127.0.0.1 unless --host "
            "is given. Needs dash (pip install 'dtlens[app]')."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model selected when the page opens: 'memorydt' (shipped), a dtlens checkpoint "
        "directory, an original .pt, or a folder of checkpoints (then used as --models-dir); "
        "with --models-dir also the name of one of its entries (default: 'memorydt' if no "
        "--models-dir is given, else the folder's first checkpoint)",
    )
    parser.add_argument(
        "--models-dir",
        default=None,
        help="folder whose checkpoints (dtlens directories, .pt files) the page's model "
        "picker lists; nothing outside it can be loaded from the page",
    )
    parser.add_argument("--port", type=int, default=8050, help="TCP port (default 8050)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the "
        "app, which can load any checkpoint in --models-dir, to your network)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server (default 1: fastest for the app's batch-1 forwards "
        "on a shared CPU)",
    )
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (hot reload)")
    return parser


def models_to_serve(model: str | None, models_dir: str | None) -> tuple[str | None, str | None]:
    """``(model, models_dir)`` for :func:`dtlens.app.create_app` from the two options.

    ``--model`` naming a folder that is not itself a checkpoint (no ``config.json``)
    means that folder's checkpoints, as if given as ``--models-dir``; no option at all
    means the shipped ``memorydt``.

    Raises:
        CheckpointError: the models folder holds no checkpoint and no ``--model`` is given.

    Example:
        >>> models_to_serve(None, None)
        ('memorydt', None)
    """
    from dtlens.model.checkpoint import CONFIG_FILE

    if model is not None and models_dir is None:
        folder = Path(model)
        if folder.is_dir() and not (folder / CONFIG_FILE).is_file():
            model, models_dir = None, model
    if model is None and models_dir is None:
        return "memorydt", None
    from dtlens.app.models import list_checkpoints  # needs dash (dtlens.app imports it)

    if model is None and not list_checkpoints(models_dir):
        raise CheckpointError(
            f"the models folder {models_dir!r} holds no checkpoint (dtlens checkpoint "
            "directories with config.json and model.safetensors, or original .pt files); "
            "point --models-dir (or --model) at a folder that does, or pass --model."
        )
    return model, models_dir


def run(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted."""
    try:
        from dtlens.app import create_app
        from dtlens.app import run as serve
    except ModuleNotFoundError as err:
        if err.name != "dash":
            raise
        raise ConfigError(
            "dtlens app needs the 'dash' package; install it with pip install 'dtlens[app]'."
        ) from err
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}.")
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}.")
    model, models_dir = models_to_serve(args.model, args.models_dir)
    app = create_app(model=model, models_dir=models_dir)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"dtlens app: warning: binding {args.host}: anyone who can reach this machine on "
            f"port {args.port} can use the app and load any checkpoint in its models folder.",
            file=sys.stderr,
        )
    print(f"dtlens app: http://{args.host}:{args.port}/ (Ctrl+C to stop)")
    serve(app, host=args.host, port=args.port, debug=args.debug, torch_threads=args.threads)
    return 0
