"""The :class:`Dataset` record every loader returns, and the pure helpers to build one.

Batch-first arrays: inputs ``x`` (n, n_in) when flat or (n, C, H, W) as images, one-hot targets
``y`` (n, k) and integer ``labels`` (n,).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows (n, n_classes) float64 for integer ``labels`` (n,) in 0..n_classes-1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array; got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got range "
                         f"{labels.min()}..{labels.max()}")
    out = np.zeros((labels.size, n_classes))
    out[np.arange(labels.size), labels] = 1.0
    return out


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with ``round(test_fraction * n_c)`` samples of every class c in test.

    Deterministic for a seed; both index arrays are sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * members.size))
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set split into train and test, batch-first.

    Attributes
    ----------
    x_train, x_test : ndarray, shape (n, n_in) or (n, C, H, W)
        Inputs.
    y_train, y_test : ndarray, shape (n, k)
        One-hot targets.
    labels_train, labels_test : ndarray of int, shape (n,)
        Class indices 0..k-1.
    name : str
    classes : tuple of str
        Class names, index = label.
    image_shape : tuple of int, optional
        (C, H, W) of one image, so flat inputs can be viewed as images (augmentation).
    info : mapping
        How the data were prepared (normalisation statistics, source folder, ...).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray
    name: str
    classes: tuple
    image_shape: tuple | None = None
    info: Mapping = field(default_factory=dict)

    def __post_init__(self):
        k = len(self.classes)
        for split in ("train", "test"):
            x, y, lab = (getattr(self, f"{v}_{split}") for v in ("x", "y", "labels"))
            if x.ndim not in (2, 4):
                raise ValueError(f"{self.name}: x_{split} must be (n, n_in) or (n, C, H, W); got {x.shape}")
            if y.shape != (x.shape[0], k):
                raise ValueError(f"{self.name}: y_{split} must have shape ({x.shape[0]}, {k}) "
                                 f"(samples, classes); got {y.shape}")
            if lab.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: labels_{split} must have shape ({x.shape[0]},); "
                                 f"got {lab.shape}")
            if lab.size and (lab.min() < 0 or lab.max() >= k):
                raise ValueError(f"{self.name}: labels_{split} must lie in 0..{k - 1}; "
                                 f"got {lab.min()}..{lab.max()}")
            bad = int(np.sum(~np.isfinite(x)))
            if bad:
                raise ValueError(f"{self.name}: x_{split} contains {bad} NaN or infinite values")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train and test inputs differ in shape: "
                             f"{self.x_train.shape[1:]} vs {self.x_test.shape[1:]}")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.n_in:
            raise ValueError(f"{self.name}: image_shape {self.image_shape} does not hold "
                             f"{self.n_in} inputs")

    @property
    def n_in(self) -> int:
        """Number of inputs per sample (C*H*W for images)."""
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None, split: str = "train",
                augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over ``(x, y)`` mini-batches of one epoch.

        Parameters
        ----------
        batch_size : int
        rng : numpy Generator, optional
            Shuffles the order (and drives ``augment``); ``None`` keeps the stored order.
        split : str
            ``train`` or ``test``.
        augment : callable, optional
            ``augment(images (b, C, H, W), rng) -> images``, e.g. :class:`Augment`; flat inputs are
            viewed through :attr:`image_shape` and flattened back.
        drop_last : bool
            Skip a final batch smaller than ``batch_size``.
        """
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; valid options: train, test")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if augment is not None and x.ndim == 2 and self.image_shape is None:
            raise ValueError(f"{self.name} has flat inputs and no image_shape; it cannot be augmented")
        if augment is not None and rng is None:
            raise ValueError("augmentation needs an rng")
        n = x.shape[0]
        order = rng.permutation(n) if rng is not None else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            xb = x[idx]
            if augment is not None:
                shape = xb.shape
                xb = augment(xb.reshape((len(idx),) + tuple(self.image_shape)), rng).reshape(shape)
            yield xb, y[idx]

    def subset(self, n_classes: int) -> Dataset:
        """The samples of classes 0..n_classes-1, train and test; targets keep all
        ``len(classes)`` outputs (one-hot), so the output dimension is unchanged while the targets
        span ``n_classes`` dimensions."""
        k = len(self.classes)
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or not 1 <= n_classes <= k:
            raise ValueError(f"{self.name}: n_classes must be an int in 1..{k}; got {n_classes!r}")
        tr, te = self.labels_train < n_classes, self.labels_test < n_classes
        return Dataset(self.x_train[tr], self.y_train[tr], self.labels_train[tr], self.x_test[te],
                       self.y_test[te], self.labels_test[te], name=f"{self.name} 0-{n_classes - 1}",
                       classes=self.classes, image_shape=self.image_shape,
                       info={**self.info, "classes": list(range(n_classes))})

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{self.n_classes} classes)")


__all__ = ["Dataset", "one_hot", "stratified_split"]
