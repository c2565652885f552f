"""``fixed``: P and Q never change (task-agnostic feedback).

Arxiv 2502.20580, section "Spurious solutions of fixed low-rank feedback": a fixed random rank-r
pathway drives a deep linear network to a spurious fixed point instead of the best rank-r
solution. P starts with random orthonormal rows and Q is drawn with fa's gain (``expand``), so QP
has the singular values of fa's random B at any rank.
"""

from __future__ import annotations

from ._base import SubspaceRule


class Fixed(SubspaceRule):
    name = "fixed"
    summary = "P and Q fixed at their random draw"
    learns = ()
    init = ("orthonormal", "expand")

    def gradients(self, P, Q, W, h, delta):
        return None, None

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        return None, None

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        return None, None
