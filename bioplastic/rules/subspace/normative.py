r"""``normative``: descend the distance between the feedback and the transport it replaces.

.. math::

    J = \tfrac12 \lVert W^\top - Q P \rVert_F^2, \qquad
    \Delta Q = \eta_b (W^\top - QP) P^\top, \qquad \Delta P = \eta_b Q^\top (W^\top - QP).

Arxiv 2502.20580, section "A normative rule for the feedback". Not local: every feedback synapse
reads the forward matrix W (the Brian2 backend builds it as a circuit of weight stores that sums
the mismatch W^T - QP, reported as non-local). Fixed point: QP is the best rank-r approximation of W^T, which is
where the ``svd`` initialisation starts. The data do not enter.
"""

from __future__ import annotations

from ._base import SubspaceRule, grouped


class Normative(SubspaceRule):
    name = "normative"
    summary = "descend 1/2 ||W^T - QP||^2 (reads W: non-local)"
    init = ("svd", "svd")
    reads_forward_weight = True
    reads = {"P": "the forward weight W and the product QP", "Q": "the forward weight W and the product QP"}
    #: Brian2: no synapse-local eligibility; the backend builds the mismatch W^T - QP as a circuit
    #: of weight stores (non-local, flagged by constraints()) and descends it.
    brian2 = {"descends": "W^T - QP", "compartments": ()}

    def feedback_macs(self, rows, fan_in, out, rank, groups, conv):
        # products of W, P and Q only: no data enter
        if conv:
            return 3 * rank * out * fan_in // groups
        return 2 * out * fan_in * rank + 2 * rank * rank * (fan_in + out)

    def gradients(self, P, Q, W, h, delta):
        mismatch = W.T - Q @ P
        return -Q.T @ mismatch, -mismatch @ P.T

    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        # expanded so that no (m, n) matrix is formed; same O(m n r) cost
        W = W.to(P.dtype)
        return (Q.T @ Q) @ P - (W @ Q).T, Q @ (P @ P.T) - (P @ W).T

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        # per group, with the flattened kernel W_f and E = W_f - P_f^T Q_f (the kernel's transpose
        # is the Linear layout's W^T): grad Q_f = -P_f E, grad P_f = -Q_f E^T
        groups = geometry.groups
        p, q = grouped(P, groups), grouped(Q, groups)
        mismatch = grouped(W.to(P.dtype), groups) - p.transpose(1, 2) @ q
        return (-(q @ mismatch.transpose(1, 2))).reshape(P.shape), (-(p @ mismatch)).reshape(Q.shape)
