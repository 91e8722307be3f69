"""What the app's unit tests share: finding a component in a Dash layout tree."""

from __future__ import annotations

from typing import Any


def find_component(component: Any, wanted_id: str) -> Any | None:
    """The component with ``id == wanted_id`` in a Dash layout tree (None if absent)."""
    if getattr(component, "id", None) == wanted_id:
        return component
    children = getattr(component, "children", None)
    children = children if isinstance(children, list | tuple) else [children]
    for child in children:
        if child is not None and not isinstance(child, str):
            found = find_component(child, wanted_id)
            if found is not None:
                return found
    return None
