"""The system Chromium, launched headless through Playwright, for screenshots and browser tests.

The docs' figure renderer (``docs/figures/render.py``) and the browser tests of the
report and the app open pages in Debian's ``chromium`` (nothing is downloaded: no
Playwright browser install). Playwright itself is a development dependency, so this
module never imports it; callers pass their ``sync_playwright()`` handle.

Example:
    >>> from playwright.sync_api import sync_playwright  # doctest: +SKIP
    >>> with sync_playwright() as p:  # doctest: +SKIP
    ...     browser = launch_chromium(p)
    ...     browser.new_page().goto("file:///tmp/report/report.html")
"""

from __future__ import annotations

import shutil
from typing import Any

from dtlens.errors import DTLensError

__all__ = ["CHROMIUM_FLAGS", "launch_chromium", "system_chromium"]

#: Flags for a sandbox-less, offline, first-run-free headless Chromium (CI containers).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def system_chromium() -> str | None:
    """The path of ``chromium`` on PATH, or None.

    Example:
        >>> system_chromium()  # doctest: +SKIP
        '/usr/bin/chromium'
    """
    return shutil.which("chromium")


def launch_chromium(playwright: Any) -> Any:
    """A headless browser on the system Chromium, from a ``sync_playwright()`` handle.

    Raises:
        DTLensError: no ``chromium`` on PATH (the message says how to install it).

    Example:
        >>> browser = launch_chromium(p)  # doctest: +SKIP
    """
    path = system_chromium()
    if path is None:
        raise DTLensError(
            "no chromium on PATH: install Debian's (apt-get install -y chromium); "
            "Playwright's own browser download is not used."
        )
    return playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_FLAGS))
