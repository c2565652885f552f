"""Initial weights of a circuit, drawn once in float64 so every backend starts from the same numbers.

Each projection's ``init`` says how (shapes are (post, pre)):

* ``normal``: N(0, 1/pre) (LeCun; keeps the scale of a summed input or error);
* ``expand``: an LDFA ``Q{l}`` drawn N(0, 1/n_l), n_l the size of the error its ``P{l}`` reads;
  with orthonormal P rows, Q P then has singular values of about sqrt(n_{l-1}/n_l), the typical
  singular value of an fa matrix, at every rank (i.i.d. factors concentrate fa's whole Frobenius
  norm in r directions instead);
* ``svd``: LDFA factors from the truncated SVD of the layer's initial W^T: with
  W_l^T = U S V^T, Q_l = U_r S_r^{1/2} and P_l = S_r^{1/2} V_r^T, so Q_l P_l is the best rank-r
  approximation of W_l^T (arXiv 2502.20580, section "A normative rule for the feedback");
* ``orthonormal``: random matrix with orthonormal rows (Oja's fixed points are such matrices);
* ``transpose``: W_l^T (bp; not stored, the runner reads W_l);
* ``identity`` / ``negative_identity`` / ``zeros``: fixed wiring.

Biases start at zero. A circuit built with ``init_scale`` s (:func:`circuits.mlp`) has its forward
weights W multiplied by s and its ``svd`` factors by sqrt(s) (Q P: the truncated SVD of s W^T).
"""

from __future__ import annotations

import numpy as np

from .graph import INITS, Circuit
from .keys import key, parse_key


def _svd_factors(W: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(P (r, n_l), Q (n_{l-1}, r)) with Q P the best rank-r approximation of W^T (n_{l-1}, n_l)."""
    u, s, vt = np.linalg.svd(W.T, full_matrices=False)
    root = np.sqrt(s[:r])
    return root[:, None] * vt[:r], u[:, :r] * root


def initial_weights(circuit: Circuit) -> dict[str, np.ndarray]:
    """Weights of ``circuit`` keyed as :meth:`Circuit.weight_keys`, seeded by ``circuit.params.seed``.

    The draw order is fixed (forward weights first, then feedback in layer order), so a seed gives
    the same weights on every backend (across machines, QR and SVD may flip the signs of single
    factors; the products QP stay the same).
    """
    rng = np.random.default_rng(circuit.params.seed)
    projections = circuit.projections
    weights: dict[str, np.ndarray] = {}
    for name in circuit.weight_keys():
        k = parse_key(name)
        if k.kind == "b":
            weights[name] = np.zeros(circuit.sizes[k.layer])
            continue
        proj = projections[name]
        post, pre = circuit.shape(name)
        if proj.init == "normal":
            weights[name] = rng.normal(0.0, 1.0 / np.sqrt(pre), size=(post, pre))
        elif proj.init == "expand":
            n_error = circuit.shape(circuit.partner(name).name)[1]  # the error its P reads
            weights[name] = rng.normal(0.0, 1.0 / np.sqrt(n_error), size=(post, pre))
        elif proj.init == "orthonormal":
            q, _ = np.linalg.qr(rng.normal(size=(pre, post)))
            weights[name] = q.T
        elif proj.init == "zeros":
            weights[name] = np.zeros((post, pre))
        elif proj.init == "svd":
            if k.kind == "P":
                weights[name], weights[key("Q", k.layer)] = _svd_factors(weights[key("W", k.layer)], post)
        elif proj.init in ("transpose", "identity", "negative_identity"):
            raise ValueError(f"projection {name!r} has init {proj.init!r}, which is wiring, not a "
                             "stored weight")
        else:
            raise ValueError(f"projection {name!r} has init {proj.init!r}; valid options: "
                             f"{', '.join(INITS)}")
    scale = circuit.graph.graph.get("init_scale", 1.0)  # circuits.mlp's init_scale (small initial W)
    if scale != 1.0:
        for name in weights:
            if parse_key(name).kind == "W":
                weights[name] = scale * weights[name]
            elif name in projections and projections[name].init == "svd":
                weights[name] = np.sqrt(scale) * weights[name]  # Q P: the truncated SVD of scale * W^T
    for name, value in weights.items():
        expected = circuit.weight_shape(name)
        if value.shape != expected:  # validate() rules this out; keep the promise explicit
            raise ValueError(f"initialised {name!r} with shape {value.shape}, expected {expected}")
    return {k: weights[k] for k in circuit.weight_keys()}
