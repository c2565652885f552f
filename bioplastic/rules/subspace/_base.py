r"""The subspace-rule interface: how the factors P and Q of a low-rank feedback pathway learn.

A pathway delivers :math:`Q P \delta` to the layer below it: P (r, n) compresses the error
:math:`\delta` (batch, n) of the layer above into r bottleneck neurons, Q (m, r) expands them into
the m neurons below, whose rates are h (batch, m). A :class:`SubspaceRule` gives the batch-mean
gradients (negative updates) of P and Q from these quantities: the float64 specification, written
once in :meth:`SubspaceRule.gradients`. Backends consume it:

* the reference backend calls :meth:`~SubspaceRule.gradients` as it is;
* the torch layers call :meth:`~SubspaceRule.torch_gradients` (Linear rows) and
  :meth:`~SubspaceRule.torch_conv_gradients` (convolutions). Their defaults run the specification
  itself on float64 copies, so a rule registered from outside is exact everywhere; a built-in rule
  may override them with a faster tensor body, which tests hold to the specification;
* the Brian2 backend builds a rule that declares :attr:`~SubspaceRule.brian2` (the eligibility of
  each factor's synapses in their own variables) and refuses one that does not.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...circuit.keys import key
from .._base import as_float64

Array = np.ndarray


class SubspaceRule:
    """A learning rule for the factors P (r, n) and Q (m, r) of a low-rank feedback pathway.

    Subclasses set the class attributes and :meth:`gradients`.
    """

    #: Registry name (the plasticity label of the P and Q projections).
    name: ClassVar[str] = ""
    #: One line for listings.
    summary: ClassVar[str] = ""
    #: Which factors learn: a subset of ("P", "Q"); empty for fixed feedback.
    learns: ClassVar[tuple[str, ...]] = ("P", "Q")
    #: Initialisation of (P, Q) in a layer-to-layer pathway (see :mod:`bioplastic.circuit.init`).
    init: ClassVar[tuple[str, str]] = ("orthonormal", "expand")
    #: Whether the rule reads the forward weight W of the layer (then it is non-local).
    reads_forward_weight: ClassVar[bool] = False
    #: Factor -> what its synapses read, for :meth:`bioplastic.Circuit.constraints`.
    reads: ClassVar[dict[str, str]] = {}
    #: Symmetric wiring the rule needs in a circuit when its reciprocal synapses read the factor
    #: they mirror (``reciprocal="read"``), e.g. reciprocal synapses reading Q's weights.
    symmetric: ClassVar[tuple[str, ...]] = ()
    #: Compartment -> the factor its reciprocal synapses mirror (``{"v": "Q"}``: v = Q^T h;
    #: ``{"rec": "P"}``: rec = P^T z). A rule that lists any supports ``reciprocal="learned"``, where
    #: those synapses hold their own weights (``Qt{l}`` (r, m), ``Pt{l}`` (n, r)), and defines
    #: :meth:`mirrored_gradients`.
    mirrors: ClassVar[dict[str, str]] = {}
    #: Other non-local reads of its synapses, in words, for :meth:`bioplastic.Circuit.constraints`.
    wiring_notes: ClassVar[tuple[str, ...]] = ()
    #: Brian2 form: factor -> eligibility expression (in the variables of the synapse: ``{err}_pre``
    #: the presynaptic error signal, ``z_pre`` / ``z_post`` the bottleneck rate, ``rate_post`` the
    #: postsynaptic rate, ``v_post`` the bottleneck's forward compartment Q^T h, ``rec_pre`` the
    #: error's reconstruction P^T z), plus ``"compartments"``: a tuple of the extra compartments it
    #: needs (``"v"``, ``"rec"``). None: no synapse-local form (the Brian2 backend refuses it).
    brian2: ClassVar[dict | None] = None

    def gradients(self, P: Array, Q: Array, W: Array | None, h: Array, delta: Array
                  ) -> tuple[Array | None, Array | None]:
        """Batch-mean gradients (grad_P, grad_Q); None for a factor that does not learn.

        Parameters
        ----------
        P : ndarray, shape (r, n)
            Compressing factor (error of the layer above -> bottleneck).
        Q : ndarray, shape (m, r)
            Expanding factor (bottleneck -> the layer below).
        W : ndarray, shape (n, m), or None
            The forward weight the pathway stands in for (read only by rules that declare
            :attr:`reads_forward_weight`; None for direct feedback, which has no such W).
        h : ndarray, shape (batch, m)
            Rates of the layer the pathway delivers to.
        delta : ndarray, shape (batch, n)
            The error the pathway reads.
        """
        raise NotImplementedError(f"subspace rule {self.name!r} defines no gradients")

    def mirrored_gradients(self, P: Array, Q: Array, W: Array | None, h: Array, delta: Array,
                           mirror: dict[str, Array]) -> tuple[Array | None, Array | None]:
        """:meth:`gradients` when the compartments are carried by learned reciprocal synapses.

        ``mirror`` maps each compartment of :attr:`mirrors` to the weights standing in for the
        transposed factor: ``v`` -> V (r, m) in place of Q^T, ``rec`` -> R (n, r) in place of P^T.
        With V = Q^T and R = P^T the result equals :meth:`gradients`. The reciprocal weights move
        by the factor's gradient transposed (:meth:`bioplastic.rules.Rule.feedback_gradients`).
        """
        raise NotImplementedError(f"subspace rule {self.name!r} declares no learned reciprocals")

    # ----------------------------------------------------------------- backend bodies
    def torch_gradients(self, P, Q, W, x_rows, g_rows, z_rows=None, n_samples=None, grad_w=None):
        """Gradients of P and Q for torch rows, in the factors' dtype and device.

        ``x_rows`` (N, m) and ``g_rows = dloss/dy`` (N, n) are the rows of a layer whose loss is
        a mean over ``n_samples`` samples (default N); each row's error is then
        delta = n_samples * g, and a batch mean over samples is a sum over rows / n_samples. This
        default runs :meth:`gradients` on float64 copies with h = x_rows, delta = N g (exact for
        rules whose batch means are over rows, like every built-in one on (batch, features)
        inputs). ``z_rows = g_rows @ P.T`` and ``grad_w = g_rows.T @ x_rows`` may be passed when
        already computed; the default ignores them.
        """
        n = x_rows.shape[0]
        gp, gq = self.gradients(as_float64(P), as_float64(Q), None if W is None else as_float64(W),
                                as_float64(x_rows), as_float64(g_rows) * n)
        return (None if gp is None else P.new_tensor(gp), None if gq is None else Q.new_tensor(gq))

    def torch_conv_gradients(self, P, Q, W, x, g, geometry, z=None, grad_w=None):
        """Gradients of the factors of a feedback convolution, shaped like P and Q (or None).

        A convolution is a Linear map applied to every patch: with the patches of ``x`` unfolded
        into rows (batch x output positions, ``C_in/G k_h k_w`` each) and the error map ``g`` into
        the matching rows of ``C_out`` channels, group j is a Linear layer with the flattened
        factors ``P_f`` (r/G, C_out/G), ``Q_f^T`` (C_in/G k_h k_w, r/G) and kernel ``W_f``
        (C_out/G, C_in/G k_h k_w). This default applies :meth:`torch_gradients` to each group's
        rows with ``n_samples`` = batch (the loss averages over images, not positions), so any
        registered rule is exact on convolutions in the sense it is on token rows; a built-in rule
        may override it with a body that never unfolds the input (tests hold both equal).

        Parameters
        ----------
        P : Tensor, shape (r, C_out/G, 1, 1)
        Q : Tensor, shape (r, C_in/G, k_h, k_w)
        W : Tensor, shape (C_out, C_in/G, k_h, k_w)
            The forward kernel.
        x : Tensor, shape (N, C_in, H, W)
            The convolution's input, already padded beyond ``geometry.padding`` if the layer pads
            asymmetrically or by a padding mode.
        g : Tensor, shape (N, C_out, H_out, W_out)
            Gradient of the loss at the output.
        geometry
            Has ``stride``, ``padding``, ``dilation`` (pairs) and ``groups``.
        z : Tensor, shape (N, r, H_out, W_out), optional
            The bottleneck P applied to g at every position, when already computed.
        grad_w : Tensor, shape of W, optional
            The kernel gradient ``conv2d_weight(x, g)``, when already computed.
        """
        import torch

        groups, n = geometry.groups, x.shape[0]
        x_rows, g_rows = conv_rows(x, g, W.shape[-2:], geometry)
        p, q, w = grouped(P, groups), grouped(Q, groups), grouped(W, groups)
        dw = None if grad_w is None else grouped(grad_w, groups)
        fan, c_out = q.shape[-1], p.shape[-1]
        grads_p, grads_q = [], []
        for j in range(groups):
            gp, gq = self.torch_gradients(
                p[j], q[j].T, w[j], x_rows[:, j * fan:(j + 1) * fan],
                g_rows[:, j * c_out:(j + 1) * c_out], n_samples=n,
                grad_w=None if dw is None else dw[j])
            grads_p.append(gp)
            grads_q.append(None if gq is None else gq.T)
        return tuple(None if any(t is None for t in ts) else torch.stack(ts).reshape(M.shape)
                     for ts, M in ((grads_p, P), (grads_q, Q)))

    def feedback_macs(self, rows: int, fan_in: int, out: int, rank: int, groups: int, conv: bool
                      ) -> int | None:
        """Multiply-adds of this rule's P and Q updates in one torch step of one layer, as the tensor
        bodies above compute them (``bioplastic bench``'s analytic count; the counted cost model,
        :mod:`bioplastic.bench.costmodel`, measures every rule). ``rows`` samples x positions,
        ``fan_in`` (in_features or C_in/G k k), ``out`` (C_out), ``groups``, ``conv`` whether the
        layer is a convolution. None: no analytic count declared (the bench then reports it so).
        """
        return 0 if not self.learns else None

    # ----------------------------------------------------------------- naming
    def named(self, p_layer: int | None, q_layer: int | None, gp, gq) -> dict[str, Array]:
        """The gradients keyed as circuit weights (factors that do not learn are left out)."""
        out = {}
        if gp is not None and p_layer is not None:
            out[key("P", p_layer)] = gp
        if gq is not None and q_layer is not None:
            out[key("Q", q_layer)] = gq
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, learns={self.learns})"


# --------------------------------------------------------------------- tensor helpers (no torch import)
def grouped(M, groups: int):
    """A convolution's factor or kernel as per-group matrices: (G, rows/G, rest), rows its first axis.

    P (r, C_out/G, 1, 1) -> (G, r/G, C_out/G); Q (r, C_in/G, k, k) -> (G, r/G, C_in/G k k);
    W (C_out, C_in/G, k, k) -> (G, C_out/G, C_in/G k k).
    """
    return M.reshape(groups, M.shape[0] // groups, -1)


def conv_rows(x, g, kernel_size, geometry):
    """The Linear rows of a convolution: (patches (N L, C_in k_h k_w), errors (N L, C_out)).

    ``x`` (N, C_in, H, W) is unfolded with the convolution's geometry (L = H_out W_out output
    positions, channel-major patches as ``W.flatten(1)`` orders its columns); ``g`` (N, C_out,
    H_out, W_out) is flattened in the same row order.
    """
    from torch.nn import functional as F

    cols = F.unfold(x, tuple(kernel_size), tuple(geometry.dilation), tuple(geometry.padding),
                    tuple(geometry.stride))  # (N, C_in k k, L)
    x_rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    g_rows = g.flatten(2).transpose(1, 2).reshape(-1, g.shape[1])
    return x_rows, g_rows


def conv_weight_grad(x, g, W, geometry):
    """``conv2d_weight(x, g)``: the kernel gradient (W's shape) of a convolution with ``geometry``."""
    import torch

    return torch.ops.aten.convolution_backward(
        g, x, W, None, tuple(geometry.stride), tuple(geometry.padding), tuple(geometry.dilation),
        False, [0, 0], geometry.groups, (False, True, False))[1]
