r"""MNIST and CIFAR read from local files; nothing is ever downloaded.

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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .augment import channel_stats, grayscale
from .bundled import load_mnist5000, load_patches
from .dataset import Dataset, one_hot
from .tasks import load_digits

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

#: Normalisations applied after scaling pixels to [0, 1].
NORMALIZATIONS = ("none", "standard")


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


def check_files(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The files data set ``name`` would read from ``root``, without reading them (the loaders'
    lookup, for checking a configuration before anything runs); raises FileNotFoundError naming the
    missing file and the folders searched. The bundled data sets (:data:`BUNDLED`) need none.
    """
    base = data_root(root)
    if name in BUNDLED:
        return []
    if name == "mnist":
        folders = [base / "mnist", base / "MNIST" / "raw", base]
        return [_find("mnist", f"{split}-{kind}-idx{n}-ubyte", folders, gz=True)
                for split in ("train", "t10k") for kind, n in (("images", 3), ("labels", 1))]
    if name == "cifar10":
        folder = base / "cifar-10-batches-py"
        return [_find("cifar10", f, [folder]) for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]]
    if name == "cifar100":
        folder = base / "cifar-100-python"
        return [_find("cifar100", f, [folder]) for f in ("train", "test")]
    raise ValueError(f"unknown data set {name!r}; valid options: {', '.join(DATASETS)}")


#: Data sets that install with the package (no file to look for).
BUNDLED = ("digits", "mnist5000", "patches")

#: Data set name -> loader (the bundled digits too); every registration in one list.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist5000": load_mnist5000,
    "patches": load_patches,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load(name: str, **options) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`) with the loader's keyword ``options``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid options: {', '.join(DATASETS)}")
    return DATASETS[name](**options)


__all__ = ["BUNDLED", "DATASETS", "DATA_ENV", "DEFAULT_ROOT", "IDX_DTYPES", "NORMALIZATIONS", "SOURCES", "check_files", "data_root",
           "load", "load_cifar10", "load_cifar100", "load_mnist", "read_idx"]
