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


def load_digits(test_fraction: float = 0.25, seed: int = 0, flatten: bool = True,
                classes: int | None = None, train_samples: int | None = None,
                center: bool = False) -> Dataset:
    """scikit-learn's bundled handwritten digits (1797 images of 8 x 8 pixels, 10 classes).

    Parameters
    ----------
    test_fraction : float
        Fraction of each class held out for testing (stratified; 0.25 gives 1347 / 450).
    seed : int
        Seed of the split.
    flatten : bool
        Inputs (n, 64) if True, else images (n, 1, 8, 8).
    classes : int, optional
        Keep the digits 0..classes-1, train and test (:meth:`Dataset.subset`: the targets stay
        one-hot over all 10 outputs). Default: all ten.
    train_samples : int, optional
        Keep the first ``train_samples`` samples of the training split (after ``classes``; the split
        lists samples in the bundled order, which cycles through the classes); the test split stays
        whole. Default: the whole training split.
    center : bool
        Subtract the mean training input, per pixel over the training samples kept (after
        ``classes`` and ``train_samples``), from the training and the test inputs: zero-mean
        training inputs in [-1, 1], about half of them negative. (A spiking circuit carries such
        inputs by ON/OFF halves, backend ``brian2``'s ``signed_input``; arXiv 2502.20580's rules
        need no sign.) The mean is kept as ``info["mean"]``, shaped like one input.

    Returns
    -------
    Dataset
        Float64 inputs in [0, 1] (pixel counts 0..16 divided by 16), minus the training mean when
        ``center``.
    """
    from sklearn.datasets import load_digits as _sk_digits  # slow import: only when asked for

    raw = _sk_digits()
    x = raw.data.astype(np.float64) / 16.0
    labels = raw.target.astype(np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    ds = Dataset(x[train], one_hot(labels[train], 10), labels[train],
                 x[test], one_hot(labels[test], 10), labels[test],
                 name="digits", classes=tuple(str(c) for c in range(10)), image_shape=(1, 8, 8),
                 info={"source": "sklearn.datasets.load_digits", "test_fraction": test_fraction,
                       "split_seed": seed})
    if classes is not None and classes != 10:
        ds = ds.subset(classes)
    if train_samples is not None:
        available = len(ds.x_train)
        if isinstance(train_samples, bool) or not isinstance(train_samples, (int, np.integer)) \
                or not 1 <= train_samples <= available:
            raise ValueError(f"train_samples must be an int in 1..{available} (the training split "
                             f"of {ds.name}); got {train_samples!r}")
        n = int(train_samples)
        ds = Dataset(ds.x_train[:n], ds.y_train[:n], ds.labels_train[:n], ds.x_test, ds.y_test,
                     ds.labels_test, name=ds.name, classes=ds.classes, image_shape=ds.image_shape,
                     info={**ds.info, "train_samples": n})
    if center:
        mean = ds.x_train.mean(axis=0)
        ds = Dataset(ds.x_train - mean, ds.y_train, ds.labels_train, ds.x_test - mean, ds.y_test,
                     ds.labels_test, name=ds.name, classes=ds.classes, image_shape=ds.image_shape,
                     info={**ds.info, "center": True, "mean": mean})
    return ds


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


@dataclass(frozen=True, eq=False)
class LinearTeacher:
    """A linear teacher y = S x of chosen singular values (:func:`linear_teacher`).

    Attributes
    ----------
    x, y : ndarray, shapes (samples, n_in) and (samples, m)
        Training inputs and targets, y = x S^T (no noise).
    x_test, y_test : ndarray, shapes (test_samples, n_in) and (test_samples, m)
        Test inputs and targets.
    S : ndarray, shape (m, n_in)
        The teacher U diag(s) V_m^T.
    input_cov : ndarray, shape (n_in, n_in)
        The training inputs' second moment x^T x / samples (I when whitened).
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    S: np.ndarray
    input_cov: np.ndarray


def linear_teacher(n_in: int, singular_values, samples: int, test_samples: int = 0, whiten: bool = False,
                   seed: int = 0) -> LinearTeacher:
    """The teacher S = U diag(s) V_m^T of the linear theory (arXiv 2502.20580) and its inputs.

    U (m x m) and V (n_in x n_in) are the Q factors of standard normal matrices drawn, in this
    order, from ``default_rng(seed)``; V_m its first m = len(s) columns. The inputs are standard
    normal, the ``samples`` training rows and then the ``test_samples`` test rows drawn from
    ``default_rng(seed + 1)``. ``whiten``: subtract the training mean and multiply by
    E diag(lambda^-1/2) E^T (E, lambda: eigenvectors and eigenvalues of the centred training second
    moment), so that x^T x / samples = I exactly; the test inputs by the same map.

    Parameters
    ----------
    n_in : int
        Input dimension n.
    singular_values : sequence of float, length m <= n_in
    samples, test_samples : int
    whiten : bool
    seed : int
    """
    s = np.asarray(singular_values, dtype=np.float64)
    m = s.size
    if not 1 <= m <= n_in or np.any(s <= 0):
        raise ValueError(f"singular_values must be 1 to n_in = {n_in} positive numbers; got {list(s)}")
    if whiten and samples <= n_in:
        raise ValueError(f"whitening {n_in} centred inputs needs more than {n_in} samples; got {samples}")
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(m, m)))
    V, _ = np.linalg.qr(rng.normal(size=(n_in, n_in)))
    S = (U * s) @ V[:, :m].T
    draw = np.random.default_rng(seed + 1)
    x = draw.normal(size=(samples, n_in))
    x_test = draw.normal(size=(test_samples, n_in))
    if whiten:
        mean = x.mean(axis=0)
        x = x - mean
        evals, evecs = np.linalg.eigh(x.T @ x / samples)
        x = x @ evecs @ np.diag(evals ** -0.5) @ evecs.T
        x_test = (x_test - mean) @ evecs @ np.diag(evals ** -0.5) @ evecs.T
    return LinearTeacher(x=x, y=x @ S.T, x_test=x_test, y_test=x_test @ S.T, S=S,
                         input_cov=x.T @ x / samples)


__all__ = ["LinearTeacher", "TeacherStudent", "linear_teacher", "load_digits", "teacher_student", "whitened"]
