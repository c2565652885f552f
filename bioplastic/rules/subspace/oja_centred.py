r"""``oja_centred``: Oja's subspace rule for P on the centred, scale-normalised error covariance
(the authors' code's variant); Q as in ``local``.

.. math::

    \Delta P = \eta_b\, P \hat C (I - P^\top P), \qquad
    \hat C = \tfrac1N \hat E^\top \hat E, \qquad
    \hat E = \frac{E - \mathbf 1 \bar e^\top}{\max_j \sigma_j}, \qquad
    \Delta Q = -\eta_b \langle h\, (P\delta)^\top \rangle .

E (N, n) holds the batch's errors :math:`\delta` (one row per sample, or per sample and position
in a convolution or a token sequence), :math:`\bar e` their batch mean and
:math:`\sigma_j = \sqrt{\tfrac1N \sum_i (E_{ij} - \bar e_j)^2}` the batch standard deviation of unit
j (population form). What is normalised and how: the error is centred unit by unit, then the whole
batch is divided by ONE number, the largest per-unit standard deviation, so the relative sizes of
the units are kept and :math:`\hat C` is the centred error covariance scaled to a largest diagonal
entry of exactly 1. :math:`\hat C` is therefore invariant to the error's scale: P's step does not
shrink as the network learns and the errors get small (that of ``oja``, on the raw
:math:`\langle\delta\delta^\top\rangle`, does). A batch without spread (one sample, or identical
errors) gives :math:`\hat C = 0`: P does not move.

This is the variant in the authors' code for the first version of arXiv 2502.20580
(github.com/maherhanut1/LDFA, ``models/layers/rAFA_conv.py``; centring and scaling added in
September 2024), where ``grad_P = -(I - P P^T) Ê^T Ê P`` in their (n, r) orientation of P.
Deviations from that code, all deliberate:

* C is a mean over the N rows here, a sum there: their step is (N - 1) times this one for the same
  learning rate (with their unbiased standard deviation, below), so the batch size moves into
  :math:`\eta_b`;
* :math:`\sigma_j` is the population (1/N) standard deviation here, torch's unbiased (1/(N-1)) one
  there, and they add a small constant (1e-6 in the convolution layer) to :math:`\max_j\sigma_j`;
  here nothing is added and a batch without spread gives :math:`\hat C = 0`, which keeps the rule
  exactly scale-invariant (the same update for delta and for any multiple of it);
* for the output layer their linear layer can build :math:`\hat C` from the one-hot labels instead
  of the errors (``requires_gt``); here every pathway uses its error;
* they train P and Q with Adam and coupled L2 decay and clamp the propagated error to [-1, 1];
  here P and Q take whatever optimiser the backend runs (SGD with the circuit's ``decay`` in the
  reference, torch-runner and Brian2 circuits) and nothing is clamped;
* they initialise P and Q with PyTorch's default (Kaiming-uniform); here P has random orthonormal
  rows and Q is drawn with fa's gain (``init``), as for ``oja``.

Not synapse-local in the strict sense: a P synapse needs the batch mean of its error unit and the
largest standard deviation over all error units (population statistics of the batch), so no
Brian2 form is declared and the Brian2 backend refuses the rule. Cost per step: as ``oja``
(the centring and the normalisation are elementwise).
"""

from __future__ import annotations

import numpy as np

from ._base import SubspaceRule
from .local import Local, conv_contractions
from .oja import Oja, grouped_error_maps


def centred_covariance(delta: np.ndarray) -> np.ndarray:
    """The normalised centred covariance C_hat (n, n) of errors ``delta`` (N, n) (module docstring):
    centred per unit, divided by the largest per-unit (population) standard deviation; zero for a
    batch without spread."""
    E = np.asarray(delta, float)
    E = E - E.mean(axis=0)
    top = float(np.max(np.mean(E * E, axis=0))) if E.size else 0.0
    if top == 0.0:
        return np.zeros((E.shape[1], E.shape[1]))
    return E.T @ E / (E.shape[0] * top)


class OjaCentred(SubspaceRule):
    name = "oja_centred"
    summary = "Oja's subspace rule for P on the centred error covariance / max unit std (authors' code); Q as local"
    init = ("orthonormal", "expand")
    reads = {"Q": Local.reads["Q"],
             "P": "bottleneck rate z, presynaptic error delta and its reconstruction P^T z, plus the "
                  "batch mean of its error unit and the largest standard deviation over all error "
                  "units (batch statistics)"}
    symmetric = Oja.symmetric
    brian2 = None  # batch statistics over samples and units: no synapse-local eligibility

    def feedback_macs(self, rows, fan_in, out, rank, groups, conv):
        # the products of oja (centring and normalising are elementwise)
        return Oja.feedback_macs(self, rows, fan_in, out, rank, groups, conv)

    def gradients(self, P, Q, W, h, delta):
        pc = P @ centred_covariance(delta)
        return -(pc - pc @ P.T @ P), h.T @ (delta @ P.T) / h.shape[0]

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        # C_hat is scale-invariant, so g serves for delta = n g; centring commutes with P, so the
        # centred bottleneck rates come from z and P C_hat = zc^T gc / (N max_j var_j)
        z_rows = g_rows @ P.T if z_rows is None else z_rows
        gc = g_rows - g_rows.mean(dim=0)
        zc = z_rows - z_rows.mean(dim=0)
        top = (gc * gc).mean(dim=0).max()
        pc = (zc.T @ gc) * (_inverse_or_zero(top) / g_rows.shape[0])
        return -(pc - (pc @ P.T) @ P), x_rows.T @ z_rows

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        # per group, batch and positions pooled as rows (as the authors' convolution does);
        # Q as in local, through the kernel gradient
        import torch

        p, gg, zz = grouped_error_maps(P, g, geometry.groups, z)
        gc = gg - gg.mean(dim=(0, 3), keepdim=True)
        zc = zz - zz.mean(dim=(0, 3), keepdim=True)
        top = (gc * gc).mean(dim=(0, 3)).amax(dim=1)  # (G,)
        scale = _inverse_or_zero(top) / (gg.shape[0] * gg.shape[3])  # N H W rows
        pc = torch.einsum("ngrl,ngcl->grc", zc, gc) * scale[:, None, None]
        grad_p = (-(pc - pc @ p.transpose(1, 2) @ p)).reshape(P.shape)
        return grad_p, conv_contractions(P, Q, W, x, g, geometry, grad_w, want_p=False)[1]


def _inverse_or_zero(t):
    """1 / t where t > 0, else 0 (a batch without spread), without a host synchronisation."""
    import torch

    return (t > 0).to(t.dtype) / t.clamp_min(torch.finfo(t.dtype).tiny)
