"""launch_chromium: the system binary and the offline flags, or a clear error without it."""

from __future__ import annotations

import types

import pytest

from dtlens.errors import DTLensError
from dtlens.report import browser


def fake_playwright(calls: list) -> object:
    launcher = types.SimpleNamespace(launch=lambda **kw: calls.append(kw) or "browser")
    return types.SimpleNamespace(chromium=launcher)


def test_launches_the_system_chromium_with_the_offline_flags(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: f"/usr/bin/{name}")
    calls: list = []
    assert browser.launch_chromium(fake_playwright(calls)) == "browser"
    [call] = calls
    assert call["executable_path"] == "/usr/bin/chromium"
    assert call["args"] == list(browser.CHROMIUM_FLAGS)
    # no sandbox in CI containers, and no network traffic of its own
    assert {"--no-sandbox", "--disable-background-networking", "--disable-component-update"} <= set(
        call["args"]
    )


def test_without_chromium_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    calls: list = []
    with pytest.raises(DTLensError, match=r"no chromium on PATH: install Debian's \(apt-get"):
        browser.launch_chromium(fake_playwright(calls))
    assert calls == []
