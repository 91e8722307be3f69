"""Fitting one linear probe: a seeded held-out split, logistic regression, a Wilson interval.

Background:
    A linear probe asks whether a fact is *linearly* readable from activations: a
    logistic regression (scikit-learn's ``LogisticRegression``, L2-regularised, after a
    ``StandardScaler`` fitted on the training split; the ``liblinear`` solver for two
    classes, multinomial ``lbfgs`` for more) is trained on a seeded, stratified share
    of the rows and scored on the rest. The held-out accuracy
    ``k / n`` comes with a 95 % Wilson score interval,

        (p + z^2 / 2n  +-  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n),

    which, unlike the normal approximation, stays inside [0, 1] and is not empty at
    ``p = 1`` (Wilson 1927; Brown, Cai & DasGupta 2001): the calibration's
    :func:`~dtlens.training.calibration.wilson_interval`, re-exported here.
    ``shuffle_labels=True`` fits the same probe on permuted labels: the *shuffled-label
    baseline*, which a probe can only beat by chance (``chance`` is the majority class's
    share of the test split).

Example:
    >>> import numpy as np
    >>> g = np.random.default_rng(0)
    >>> labels = g.integers(0, 2, 300)
    >>> features = g.normal(size=(300, 8)) + 3.0 * labels[:, None] * np.eye(8)[0]
    >>> fit = fit_probe(features, labels)
    >>> fit.accuracy > 0.9, fit.n_test
    (True, 90)
    >>> tuple(round(v, 3) for v in wilson_interval(9, 10))
    (0.596, 0.982)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dtlens.errors import ConfigError
from dtlens.training.calibration import wilson_interval

__all__ = ["ProbeFit", "fit_probe", "wilson_interval"]


@dataclass(frozen=True)
class ProbeFit:
    """One fitted probe and its held-out score.

    Attributes:
        accuracy: held-out accuracy ``correct / n_test``.
        ci: its 95 % Wilson interval ``(low, high)``.
        correct: held-out rows classified correctly.
        n_train: training rows.
        n_test: held-out rows.
        chance: the majority class's share of the held-out rows (what always guessing
            the commonest label scores).
        classes: the label values, in the order of ``weights``' rows.
        weights: the probe in activation space (the scaler folded in), ``[1, d]`` for
            two classes (positive = ``classes[1]``) or ``[n_classes, d]``.
        intercept: the matching intercepts ``[1]`` or ``[n_classes]``.
        shuffled: whether the labels were permuted before fitting (the baseline).
    """

    accuracy: float
    ci: tuple[float, float]
    correct: int
    n_train: int
    n_test: int
    chance: float
    classes: tuple[int, ...]
    weights: np.ndarray
    intercept: np.ndarray
    shuffled: bool = False

    @property
    def direction(self) -> np.ndarray:
        """``[d]`` unit normal of a two-class probe, pointing to ``classes[1]``.

        Raises:
            ConfigError: the probe has more than two classes.
        """
        if self.weights.shape[0] != 1:
            raise ConfigError(
                f"a {len(self.classes)}-class probe has no single direction; use weights[k]."
            )
        w = self.weights[0]
        norm = float(np.linalg.norm(w))
        return w / norm if norm > 0 else w

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """The scores, JSON-ready (no weights)."""
        return {
            "accuracy": round(self.accuracy, 4),
            "ci": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "n_train": self.n_train,
            "n_test": self.n_test,
            "chance": round(self.chance, 4),
        }


def fit_probe(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    seed: int = 0,
    test_fraction: float = 0.3,
    shuffle_labels: bool = False,
    inverse_l2: float = 1.0,
    max_iter: int = 2000,
) -> ProbeFit:
    """Fit a logistic-regression probe on a seeded split and score it on the held-out rows.

    Args:
        features: ``[N, d]`` activations (any further dimensions are flattened).
        labels: ``[N]`` integer labels (two or more distinct values).
        seed: seeds the split (``train_test_split``'s ``random_state``) and, with
            ``shuffle_labels``, the permutation.
        test_fraction: the share of rows held out (stratified by label when every
            label has at least two rows).
        shuffle_labels: permute the labels first: the shuffled-label baseline.
        inverse_l2: scikit-learn's ``C``, the inverse L2 regularisation strength.
        max_iter: the solver's iteration limit.

    Returns:
        A :class:`ProbeFit`.

    Raises:
        ConfigError: fewer than two labels, too few rows, mismatched lengths or a
            ``test_fraction`` outside (0, 1).

    Example:
        >>> fit = fit_probe(features, labels, seed=0)  # doctest: +SKIP
        >>> fit.accuracy, fit.ci  # doctest: +SKIP
        (0.98, (0.94, 0.99))
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x = _as_numpy(features).astype(np.float64)
    x = x.reshape(x.shape[0], -1)
    y = _as_numpy(labels).astype(np.int64).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"features have {x.shape[0]} rows but labels have {y.shape[0]}.")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction!r} must be in (0, 1).")
    values, counts = np.unique(y, return_counts=True)
    if values.size < 2:
        raise ConfigError(
            f"a probe needs at least two distinct labels; every one of the {y.size} rows is "
            f"labelled {values.tolist()}."
        )
    if shuffle_labels:
        y = np.random.default_rng([seed, 1]).permutation(y)
    stratify = y if counts.min() >= 2 else None
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as err:
        raise ConfigError(f"cannot split {y.size} rows for a probe: {err}") from None
    if np.unique(y_train).size < 2:
        raise ConfigError("the training split holds one label only; give the probe more rows.")
    scaler = StandardScaler().fit(x_train)
    if values.size == 2:  # liblinear: two classes only, and much the fastest here
        model = LogisticRegression(C=inverse_l2, max_iter=max_iter, solver="liblinear")
    else:  # multinomial; a looser tolerance changes no prediction in our tests, saves 5x
        model = LogisticRegression(C=inverse_l2, max_iter=max_iter, solver="lbfgs", tol=1e-3)
    model.fit(scaler.transform(x_train), y_train)
    predicted = model.predict(scaler.transform(x_test))
    correct = int((predicted == y_test).sum())
    n_test = int(y_test.size)
    weights = model.coef_ / scaler.scale_
    intercept = model.intercept_ - weights @ scaler.mean_
    return ProbeFit(
        accuracy=correct / n_test,
        ci=wilson_interval(correct, n_test),
        correct=correct,
        n_train=int(y_train.size),
        n_test=n_test,
        chance=float(np.bincount(y_test - y_test.min()).max() / n_test),
        classes=tuple(int(c) for c in model.classes_),
        weights=weights,
        intercept=intercept,
        shuffled=shuffle_labels,
    )


def _as_numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
