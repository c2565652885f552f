r"""Data sets: bundled digits, linear teacher-student tasks, and MNIST / CIFAR read from local files.

Every loader returns a :class:`Dataset` with batch-first arrays: inputs ``x`` (n, n_in) when flat or
(n, C, H, W) as images, one-hot targets ``y`` (n, k) and integer ``labels`` (n,). Nothing is ever
downloaded.

Teacher-student tasks follow the linear theory of research/paper.md section 3: inputs whitened so
that :math:`\langle x x^\top\rangle = I`, a teacher of inner dimension :math:`k`,

.. math::

    y = T x + \sigma \xi, \qquad T = A B / \sqrt{k}, \quad A \in \mathbb{R}^{d\times k},
    B \in \mathbb{R}^{k\times n}, \qquad S = \langle y x^\top \rangle \ (= T \text{ when } \sigma = 0),

with :math:`A, B, \xi` standard normal.

Where the files live
--------------------
Folder ``root`` argument, else the environment variable ``BIOPLASTIC_DATA``, else ``~/data``:

* MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``), in ``<root>/mnist``, ``<root>/MNIST/raw``
  (torchvision's layout) or ``<root>``;
* CIFAR-10: ``<root>/cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (python pickles);
* CIFAR-100: ``<root>/cifar-100-python/train`` and ``test``.

The CIFAR archives (https://www.cs.toronto.edu/~kriz/cifar.html) unpack to exactly these folders.
CIFAR files are pickles: read only files you trust.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Environment variable naming the data folder.
DATA_ENV = "BIOPLASTIC_DATA"
#: Fallback data folder when neither ``root`` nor ``BIOPLASTIC_DATA`` is given.
DEFAULT_ROOT = "~/data"

#: Where each file-based data set comes from, for the "file not found" message.
SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (unpack it in the data folder)",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (unpack it in the data folder)",
}

#: IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: ITU-R BT.601 luma weights for RGB -> grayscale (the weights PIL's "L" mode uses).
LUMA = (0.299, 0.587, 0.114)

#: Normalisations applied after scaling pixels to [0, 1].
NORMALIZATIONS = ("none", "standard")


# --------------------------------------------------------------------------------------------------
# Pure functions: splits, image transforms, augmentations
# --------------------------------------------------------------------------------------------------

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


def grayscale(images: np.ndarray) -> np.ndarray:
    """(n, 3, H, W) RGB -> (n, 1, H, W) luma with :data:`LUMA` weights; one channel is returned as is."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"grayscale needs images of shape (n, 1 or 3, H, W); got {images.shape}")
    if images.shape[1] == 1:
        return images
    w = np.asarray(LUMA, dtype=images.dtype if images.dtype.kind == "f" else np.float64)
    return np.einsum("nchw,c->nhw", images, w)[:, None]


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (C,) of (n, C, H, W) images, in float64."""
    flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1).astype(np.float64)
    return flat.mean(axis=1), flat.std(axis=1)


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad (n, C, H, W) images by ``padding`` on each side and cut a random H x W window each.

    Offsets are drawn uniformly in 0..2*padding per image (row first, then column).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
    n, _, h, w = _check_images(images, "random_crop")
    if padding == 0:
        return images.copy()
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oy = rng.integers(0, 2 * padding + 1, size=n)
    ox = rng.integers(0, 2 * padding + 1, size=n)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    # windows: (n, C, 2p+1, 2p+1, H, W); the split advanced index puts the batch axis first
    return np.ascontiguousarray(windows[np.arange(n), :, oy, ox])


def random_flip(images: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each (n, C, H, W) image left-right with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must lie in [0, 1]; got {p}")
    _check_images(images, "random_flip")
    flip = rng.random(images.shape[0]) < p
    out = images.copy()
    out[flip] = out[flip, :, :, ::-1]
    return out


def rotate(images: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Rotate each (n, C, H, W) image counter-clockwise by ``degrees[i]`` about its centre.

    Bilinear interpolation; pixels that come from outside the image are 0. A rotation by a multiple
    of 90 degrees of a square image is exact (``np.rot90``).
    """
    n, c, h, w = _check_images(images, "rotate")
    theta = np.deg2rad(np.broadcast_to(np.asarray(degrees, dtype=np.float64), (n,)))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # inverse map: each output pixel reads the source point rotated back by -theta; rows grow
    # downwards, so a counter-clockwise turn on screen is clockwise in (row, col) coordinates
    src_x = cos * xx - sin * yy + cx
    src_y = sin * xx + cos * yy + cy
    # snap to integers what float error put a hair off them, so quarter turns stay exact
    src_x = np.where(np.abs(src_x - np.round(src_x)) < 1e-9, np.round(src_x), src_x)
    src_y = np.where(np.abs(src_y - np.round(src_y)) < 1e-9, np.round(src_y), src_y)
    x0, y0 = np.floor(src_x).astype(int), np.floor(src_y).astype(int)
    fx, fy = src_x - x0, src_y - y0
    out = np.zeros(images.shape, dtype=np.result_type(images.dtype, np.float32))
    batch = np.arange(n)[:, None, None]
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        ys, xs = y0 + dy, x0 + dx
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w) & (weight > 0)
        vals = images[batch, :, np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)]  # (n, H, W, C)
        out += np.moveaxis(vals * (weight * inside)[..., None], -1, 1).astype(out.dtype)
    return out


def random_rotation(images: np.ndarray, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate each image by an angle drawn uniformly in [-max_degrees, max_degrees] (see :func:`rotate`)."""
    if max_degrees < 0:
        raise ValueError(f"max_degrees must be >= 0; got {max_degrees}")
    return rotate(images, rng.uniform(-max_degrees, max_degrees, size=images.shape[0]))


@dataclass(frozen=True)
class Augment:
    """The usual image augmentations, applied in the order crop, flip, rotation.

    Attributes
    ----------
    crop_padding : int
        Random crop after zero padding by this many pixels (0: off).
    flip : bool
        Random horizontal flip with probability 1/2.
    rotation : float
        Random rotation in [-rotation, rotation] degrees (0: off).
    """

    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augmented copy of (n, C, H, W) ``images``."""
        out = random_crop(images, self.crop_padding, rng) if self.crop_padding else images
        if self.flip:
            out = random_flip(out, rng)
        if self.rotation:
            out = random_rotation(out, self.rotation, rng)
        return out


def _check_images(images: np.ndarray, who: str) -> tuple[int, int, int, int]:
    if images.ndim != 4:
        raise ValueError(f"{who} needs images of shape (n, C, H, W); got {images.shape} "
                         "(reshape flat data with Dataset.image_shape first)")
    return images.shape


# --------------------------------------------------------------------------------------------------
# The Dataset record
# --------------------------------------------------------------------------------------------------

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

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{self.n_classes} classes)")


# --------------------------------------------------------------------------------------------------
# Bundled digits and teacher-student tasks
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# MNIST and CIFAR from local files
# --------------------------------------------------------------------------------------------------

def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$BIOPLASTIC_DATA``, else ``~/data`` (module docstring)."""
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_ROOT
    return Path(root).expanduser()


def _missing(dataset: str, filename: str, searched: Sequence[Path]) -> FileNotFoundError:
    folders = ", ".join(str(p) for p in searched)
    return FileNotFoundError(
        f"{dataset}: file {filename!r} not found (searched: {folders}). bioplastic never downloads "
        f"data: get it from {SOURCES[dataset]} and place it there, or point root= or ${DATA_ENV} "
        "at the folder that holds it.")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzip-compressed or plain (detected from the content).

    The header is two zero bytes, a type byte (:data:`IDX_DTYPES`), the number of dimensions, then
    one big-endian uint32 per dimension; the data follow in C order.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}; expected "
                         "00 00 <type> <ndim>, e.g. 00000803 for images, 00000801 for labels)")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes of data) but the file "
                         f"holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _find(dataset: str, filename: str, folders: Sequence[Path], gz: bool = False) -> Path:
    for folder in folders:
        for name in ((filename, filename + ".gz") if gz else (filename,)):
            if (folder / name).is_file():
                return folder / name
    raise _missing(dataset, filename + ("[.gz]" if gz else ""), folders)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def _cifar_part(dataset: str, path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path} is not a CIFAR pickle: needs keys {b'data'!r} and {label_key!r}; "
                         f"has {sorted(batch)}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.size:
        raise ValueError(f"{path}: {dataset} data must be (n, 3072) uint8 with n labels; got data "
                         f"{data.shape} and {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(path: Path, key: bytes, n: int) -> tuple:
    if path.is_file():
        names = _unpickle(path).get(key)
        if names is not None and len(names) == n:
            return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in names)
    return tuple(str(c) for c in range(n))


def _select_classes(classes, names: tuple, parts):
    """Keep the chosen classes (an int n: the first n; a sequence: those, relabelled in its order)."""
    if classes is None:
        return names, parts
    chosen = list(range(classes)) if isinstance(classes, (int, np.integer)) else list(classes)
    if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= c < len(names) for c in chosen):
        raise ValueError(f"classes must be an int in 1..{len(names)} (the first n classes) or distinct "
                         f"class indices in 0..{len(names) - 1}; got {classes!r}")
    relabel = np.full(len(names), -1)
    relabel[chosen] = np.arange(len(chosen))
    out = []
    for images, labels in parts:
        keep = relabel[labels] >= 0
        out.append((images[keep], relabel[labels[keep]]))
    return tuple(names[c] for c in chosen), out


def _finish(name: str, parts, names: tuple, *, classes=None, gray: bool = False, flatten: bool = True,
            normalize: str = "none", info: dict | None = None) -> Dataset:
    """uint8 (n, C, H, W) train/test -> a float32 Dataset: classes, grayscale, [0, 1], normalise."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; valid options: {', '.join(NORMALIZATIONS)}")
    names, parts = _select_classes(classes, names, parts)
    (xtr, ltr), (xte, lte) = parts
    xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
    if gray:
        xtr, xte = grayscale(xtr), grayscale(xte)
    info = dict(info or {}, grayscale=gray, normalize=normalize)
    if normalize == "standard":
        # statistics of the training split only, applied to both, so the test set stays unseen
        mean, std = channel_stats(xtr)
        std = np.where(std > 0, std, 1.0)
        shift, scale = mean.astype(np.float32)[:, None, None], std.astype(np.float32)[:, None, None]
        xtr, xte = (xtr - shift) / scale, (xte - shift) / scale
        info.update(mean=mean.tolist(), std=std.tolist())
    image_shape = tuple(int(v) for v in xtr.shape[1:])
    if flatten:
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    k = len(names)
    return Dataset(xtr, one_hot(ltr, k), ltr, xte, one_hot(lte, k), lte, name=name, classes=names,
                   image_shape=image_shape, info=info)


def load_mnist(root: str | os.PathLike | None = None, classes=None, flatten: bool = True,
               normalize: str = "none") -> Dataset:
    """MNIST (60000 / 10000 images of 28 x 28) from the four IDX files (module docstring).

    Parameters
    ----------
    root : path, optional
        Data folder (default: ``$BIOPLASTIC_DATA``, else ``~/data``).
    classes : int or sequence of int, optional
        Keep the first n classes, or the listed ones relabelled 0..len-1 in that order.
    flatten : bool
        (n, 784) if True, else (n, 1, 28, 28); float32 in [0, 1] before normalisation.
    normalize : str
        ``none`` or ``standard`` (per-channel mean/std of the training split).
    """
    base = data_root(root)
    folders = [base / "mnist", base / "MNIST" / "raw", base]
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(_find("mnist", f"{split}-images-idx3-ubyte", folders, gz=True))
        labels = read_idx(_find("mnist", f"{split}-labels-idx1-ubyte", folders, gz=True))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"MNIST {split}: images must be (n, H, W) and labels (n,); got "
                             f"{images.shape} and {labels.shape}")
        parts.append((images[:, None], labels.astype(np.int64)))
    return _finish("mnist", parts, tuple(str(c) for c in range(10)), classes=classes, flatten=flatten,
                   normalize=normalize, info={"root": str(base)})


def load_cifar10(root: str | os.PathLike | None = None, classes=None, grayscale: bool = False,
                 flatten: bool = True, normalize: str = "none") -> Dataset:
    """CIFAR-10 (50000 / 10000 RGB images of 32 x 32) from ``<root>/cifar-10-batches-py``.

    Parameters as :func:`load_mnist`, plus ``grayscale`` (BT.601 luma, one channel).
    """
    folder = data_root(root) / "cifar-10-batches-py"
    train = [_cifar_part("cifar10", _find("cifar10", f"data_batch_{i}", [folder]), b"labels")
             for i in range(1, 6)]
    test = _cifar_part("cifar10", _find("cifar10", "test_batch", [folder]), b"labels")
    parts = [(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])), test]
    names = _class_names(folder / "batches.meta", b"label_names", 10)
    return _finish("cifar10", parts, names, classes=classes, gray=grayscale, flatten=flatten,
                   normalize=normalize, info={"root": str(folder)})


def load_cifar100(root: str | os.PathLike | None = None, classes=None, grayscale: bool = False,
                  flatten: bool = True, normalize: str = "none") -> Dataset:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python``; ``classes=n`` gives the first-n subset.

    Parameters as :func:`load_cifar10`.
    """
    folder = data_root(root) / "cifar-100-python"
    parts = [_cifar_part("cifar100", _find("cifar100", split, [folder]), b"fine_labels")
             for split in ("train", "test")]
    names = _class_names(folder / "meta", b"fine_label_names", 100)
    return _finish("cifar100", parts, names, classes=classes, gray=grayscale, flatten=flatten,
                   normalize=normalize, info={"root": str(folder)})


#: Data set name -> loader; every registration in one list.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load(name: str, **options) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`) with the loader's keyword ``options``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid options: {', '.join(DATASETS)}")
    return DATASETS[name](**options)


__all__ = ["Augment", "DATASETS", "DATA_ENV", "Dataset", "TeacherStudent", "channel_stats",
           "data_root", "grayscale", "load", "load_cifar10", "load_cifar100", "load_digits",
           "load_mnist", "one_hot", "random_crop", "random_flip", "random_rotation", "read_idx",
           "rotate", "stratified_split", "teacher_student", "whitened"]
