r"""Tasks that need no files: scikit-learn's bundled digits and linear teacher-student regression.

Teacher-student tasks follow the linear theory of Hanut & Kadmon (arXiv 2502.20580): inputs whitened
so that :math:`\langle x x^\top\rangle = I`, a teacher of inner dimension :math:`k`,

.. math::

    y = T x + \sigma \xi, \qquad T = A B / \sqrt{k}, \quad A \in \mathbb{R}^{d\times k},
    B \in \mathbb{R}^{k\times n}, \qquad S = \langle y x^\top \rangle \ (= T \text{ when } \sigma = 0),

with :math:`A, B, \xi` standard normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset, one_hot, stratified_split


def load_digits(test_fraction: float = 0.25, seed: int = 0, flatten: bool = True) -> Dataset:
    """scikit-learn's bundled handwritten digits (1797 images of 8 x 8 pixels, 10 classes).

    Parameters
    ----------
    test_fraction : float
        Fraction of each class held out for testing (stratified; 0.25 gives 1347 / 450).
    seed : int
        Seed of the split.
    flatten : bool
        Inputs (n, 64) if True, else images (n, 1, 8, 8).

    Returns
    -------
    Dataset
        Float64 inputs in [0, 1] (pixel counts 0..16 divided by 16).
    """
    from sklearn.datasets import load_digits as _sk_digits  # slow import: only when asked for

    raw = _sk_digits()
    x = raw.data.astype(np.float64) / 16.0
    labels = raw.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    return Dataset(x[train], one_hot(labels[train], 10), labels[train],
                   x[test], one_hot(labels[test], 10), labels[test],
                   name="digits", classes=tuple(str(c) for c in range(10)), image_shape=(1, 8, 8),
                   info={"source": "sklearn.datasets.load_digits", "test_fraction": test_fraction,
                         "split_seed": seed})


@dataclass(frozen=True, eq=False)
class TeacherStudent:
    """A linear regression task y = T x + noise (module docstring).

    Attributes
    ----------
    x : ndarray, shape (n_samples, n_in)
        Inputs; exactly whitened (<x x^T> = I) when built with ``whiten=True``.
    y : ndarray, shape (n_samples, d)
        Targets.
    S : ndarray, shape (d, n_in)
        Input-output correlation <y x^T> over the samples.
    teacher : ndarray, shape (d, n_in)
        T = A B / sqrt(k).
    input_cov : ndarray, shape (n_in, n_in)
        <x x^T> over the samples.
    """

    x: np.ndarray
    y: np.ndarray
    S: np.ndarray
    teacher: np.ndarray
    input_cov: np.ndarray


def whitened(x: np.ndarray) -> np.ndarray:
    """ZCA-whiten (n, n_in) samples so that their uncentred second moment <x x^T> is exactly I."""
    n, n_in = x.shape
    if n < n_in:
        raise ValueError(f"whitening {n_in} inputs needs at least {n_in} samples; got {n}")
    evals, evecs = np.linalg.eigh(x.T @ x / n)
    if evals.min() <= 1e-12 * evals.max():
        raise ValueError("inputs are rank-deficient; they cannot be whitened")
    return x @ (evecs / np.sqrt(evals)) @ evecs.T


def teacher_student(n_in: int, d: int, n_samples: int, rank: int | None = None, noise: float = 0.0,
                    whiten: bool = True, seed: int = 0) -> TeacherStudent:
    """Linear teacher task of output dimension ``d`` (module docstring).

    Parameters
    ----------
    n_in : int
        Input dimension n.
    d : int
        Output (task) dimension.
    n_samples : int
    rank : int, optional
        Teacher inner dimension k (rank of T when k <= min(d, n_in)); default min(d, n_in).
    noise : float
        Standard deviation sigma of additive output noise.
    whiten : bool
        Whiten the Gaussian inputs exactly, as the linear theory assumes.
    seed : int
    """
    for name, value in (("n_in", n_in), ("d", d), ("n_samples", n_samples)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    k = min(d, n_in) if rank is None else rank
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"rank must be a positive int (teacher inner dimension); got {rank!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise!r}")
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((d, k)) @ rng.standard_normal((k, n_in)) / np.sqrt(k)
    x = rng.standard_normal((n_samples, n_in))
    if whiten:
        x = whitened(x)
    y = x @ teacher.T + noise * rng.standard_normal((n_samples, d))
    return TeacherStudent(x=x, y=y, S=y.T @ x / n_samples, teacher=teacher,
                          input_cov=x.T @ x / n_samples)


__all__ = ["TeacherStudent", "load_digits", "teacher_student", "whitened"]
