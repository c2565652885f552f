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
    #: Symmetric wiring the rule needs in a circuit (e.g. reciprocal synapses mirroring Q).
    symmetric: ClassVar[tuple[str, ...]] = ()
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
