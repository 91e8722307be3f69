"""Names a package imports on first use (PEP 562), so importing the package stays light.

``import dtlens`` must not load torch, TransformerLens, plotly or the app: the CLI's
``--help`` answers in a third of a second. Packages that re-export heavy names list them
in a table (name -> the module that defines it) and get their module ``__getattr__`` and
``__dir__`` from :func:`lazy_attributes`; a name is imported once, then cached in the
package's namespace.

Example:
    >>> getattr_, dir_ = lazy_attributes("dtlens", {"TrajectoryBatch": "dtlens.model.batch"})
    >>> getattr_("TrajectoryBatch").__name__, "TrajectoryBatch" in dir_()
    ('TrajectoryBatch', True)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``table``.

    Use in a package's ``__init__.py``: ``__getattr__, __dir__ = lazy_attributes(__name__,
    _LAZY)``. An unknown name raises ``AttributeError`` as for any module.
    """
    namespace = sys.modules[package].__dict__

    def get_attribute(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def list_attributes() -> list[str]:
        return sorted(set(namespace) | set(table))

    return get_attribute, list_attributes
