"""Image transforms and augmentations on (n, C, H, W) arrays: grayscale, crops, flips, rotations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ITU-R BT.601 luma weights for RGB -> grayscale (the weights PIL's "L" mode uses).
LUMA = (0.299, 0.587, 0.114)


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


__all__ = ["Augment", "LUMA", "channel_stats", "grayscale", "random_crop", "random_flip", "random_rotation",
           "rotate"]
