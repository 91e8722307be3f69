"""Every example in dtlens' docstrings runs, and shows what it says.

Each module's examples run as doctests (``doctest.DocTestFinder``) with a small shared
namespace, so an example may use these names without building them:

- ``model``: a tiny seeded decision transformer (2 layers x 4 heads, 4-step window);
- ``batch``, ``clean``, ``corrupt``: random 2-row windows of it (``clean is batch``);
- ``metric``: the left - right logit difference at the last state token, per pair;
- ``cache``: ``model.run_with_cache(batch)[1]``; ``graph``: ``DTGraph(model)``;
- ``torch``, ``np``, ``dtlens``.

The namespace is built once per module. Examples that need more (the shipped model's full
build, a browser, a long rollout) carry ``# doctest: +SKIP`` on the line that would do it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import torch

import dtlens
from tests.conftest import build_batch, build_model

#: modules whose import needs an optional package that may be absent
OPTIONAL = {"dtlens.data.minari_bridge": "minari", "dtlens.app": "dash"}


def _modules() -> list[str]:
    names = ["dtlens"]
    for info in pkgutil.walk_packages(dtlens.__path__, prefix="dtlens."):
        if not info.name.endswith("__main__"):  # importing it would run the command
            names.append(info.name)
    return sorted(names)


def namespace() -> dict[str, object]:
    from dtlens.analysis.circuits import DTGraph

    torch.manual_seed(0)
    model = build_model()
    batch = build_batch(seed=0)
    corrupt = build_batch(seed=1)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
    return {
        "model": model,
        "batch": batch,
        "clean": batch,
        "corrupt": corrupt,
        "metric": lambda logits: logits[:, -1, 0] - logits[:, -1, 1],
        "cache": cache,
        "graph": DTGraph(model),
        "torch": torch,
        "np": np,
        "dtlens": dtlens,
    }


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name, one_thread):
    for package, requirement in OPTIONAL.items():
        if name.startswith(package):
            pytest.importorskip(requirement, reason=f"{name}'s examples need {requirement}")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name) if t.examples]
    if not tests:
        pytest.skip(f"{name} has no examples")
    runner = doctest.DocTestRunner(
        verbose=False,  # not read from sys.argv: `pytest -v` must not change the result
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    failures = []
    shared = namespace()  # one per module: an example that changes the model is the only user
    for test in tests:
        test.globs = {**shared, **test.globs}
        result = runner.run(test, out=failures.append)
        assert result.failed == 0 or failures, "a failure without a report"
    assert not failures, "\n".join(failures)
