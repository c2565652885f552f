r"""Receptive fields by activation maximisation.

The receptive field of a channel of a convolutional stage is taken, as in arXiv 2502.20580 (after
Lindsey et al. 2019), to be the image that a few steps of gradient ascent on the channel's activation
at one position produce from a blank (zero) image:

.. math::

    x_0 = 0, \qquad x_{t+1} = x_t + \eta\, \nabla_x a_c(x_t)_{p}, \qquad t = 0, \dots, T - 1,

with :math:`a_c(x)_p` the channel-c output of ``stage`` at position p (default the centre) and
plain SGD of learning rate :math:`\eta`; the authors use T = 2, :math:`\eta = 1` on a 32 x 32 canvas
and z-score the image for display (:func:`zscore`). For a linear stage the first step already is the
unit's filter (placed at p, zero outside the unit's reach), and each further step adds the same
image, so the maximiser is proportional to the filter; for a ReLU stage the first step is the
linear filter of the units active on a blank image and the next steps follow the gating the image
itself switches on.

The measures of shape that summarise these images are numpy-only and live in
:mod:`bioplastic.metrics` (:func:`~bioplastic.metrics.centre_surround_index`,
:func:`~bioplastic.metrics.orientation_index`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def _feedback_layers(stage: nn.Module) -> list[str]:
    from .convert import FEEDBACK_TYPES

    return [name or type(stage).__name__ for name, m in stage.named_modules() if isinstance(m, FEEDBACK_TYPES)]


def activation_maximisers(stage: nn.Module, channels: Sequence[int] | None = None, *,
                          image_size: int = 32, in_channels: int = 1,
                          position: tuple[int, int] | None = None, steps: int = 2, lr: float = 1.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Images that maximise each channel's activation at one position, by gradient ascent from zero.

    Every channel gets its own image; all are optimised together as one batch (the images do not
    interact: ``stage`` is put in eval mode for the duration, so batch statistics cannot couple
    them, and its training mode is restored afterwards). Parameters receive no gradient.

    Parameters
    ----------
    stage : nn.Module
        Maps images (n, in_channels, image_size, image_size) to maps (n, C, H', W'), e.g. the
        retina of :class:`bioplastic.torch.models.RetinaVVS` without its last ReLU. It must contain
        no feedback layer of :func:`bioplastic.torch.convert`: their backward sends feedback, not the
        gradient this ascent needs (a ValueError names them).
    channels : sequence of int, optional
        Output channels to maximise; default all C.
    image_size : int
        Side of the square canvas in pixels.
    in_channels : int
        Channels of the input image (1: grayscale).
    position : (row, col), optional
        Output position whose activation is maximised; default (H' // 2, W' // 2), the centre
        (pixel (16, 16) of a 32 x 32 map, as the authors).
    steps : int
        Gradient-ascent steps T (the authors: 2).
    lr : float
        Step size :math:`\\eta` of plain SGD (the authors: 1).

    Returns
    -------
    images : float32 array, shape (len(channels), in_channels, image_size, image_size)
        The raw maximisers x_T (not normalised; :func:`zscore` for display).
    activations : float32 array, shape (len(channels),)
        Each channel's activation at ``position`` for its final image.
    """
    feedback = _feedback_layers(stage)
    if feedback:
        raise ValueError(f"stage holds feedback layers {feedback}: their backward is not the gradient; "
                         "maximise a stage of plain layers (exclude it from convert)")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr!r}")
    param = next(iter(stage.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    was_training = stage.training
    stage.eval()
    try:
        with torch.no_grad():
            probe = stage(torch.zeros(1, in_channels, image_size, image_size, dtype=dtype, device=device))
        n_out, h, w = probe.shape[1:]
        chans = list(range(n_out)) if channels is None else [int(c) for c in channels]
        bad = [c for c in chans if not 0 <= c < n_out]
        if bad:
            raise ValueError(f"channels {bad} out of range: the stage has channels 0..{n_out - 1}")
        row, col = (h // 2, w // 2) if position is None else position
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"position {(row, col)} lies outside the {h} x {w} output map")
        index = torch.arange(len(chans), device=device)
        which = torch.tensor(chans, device=device)
        x = torch.zeros(len(chans), in_channels, image_size, image_size, dtype=dtype, device=device)
        with torch.enable_grad():
            for _ in range(steps):
                x.requires_grad_(True)
                act = stage(x)[index, which, row, col]
                (grad,) = torch.autograd.grad(act.sum(), x)
                x = (x + lr * grad).detach()
        with torch.no_grad():
            final = stage(x)[index, which, row, col]
    finally:
        stage.train(was_training)
    return x.cpu().float().numpy(), final.cpu().float().numpy()


def zscore(images: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Each image minus its mean, over its sd plus ``eps`` (the authors' display normalisation).

    Parameters
    ----------
    images : array, shape (n, ...)
        One image per row; the statistics are over all axes but the first.
    """
    a = np.asarray(images, dtype=float)
    axes = tuple(range(1, a.ndim))
    return (a - a.mean(axis=axes, keepdims=True)) / (a.std(axis=axes, keepdims=True) + eps)


__all__ = ["activation_maximisers", "zscore"]
