r"""Measurements of feedback and errors.

* alignment angle between a feedback matrix B and the transport it replaces, W^T:
  :math:`\theta = \arccos \frac{\langle B, W^\top\rangle_F}{\lVert B\rVert_F \lVert W\rVert_F}` (degrees);
  90 means unrelated, 0 means B is a positive multiple of W^T;
* principal angles between two subspaces (columns of A and B): :math:`\cos\theta_i = \sigma_i(U_A^\top U_B)`;
* error dimensionality as the participation ratio of a covariance's eigenvalues,
  :math:`PR = (\sum_i \lambda_i)^2 / \sum_i \lambda_i^2` (1 for one direction, n for isotropic);
* explained variance of the best rank-r approximation, :math:`\sum_{i\le r} s_i^2 / \sum_i s_i^2`;
* the capture of an error covariance C (n x n) by the r rows of a feedback factor P (r x n),
  :math:`\operatorname{tr}(\tilde P C \tilde P^\top) / \sum_{i\le r} \lambda_i(C)`, with
  :math:`\tilde P` P's rows orthonormalised (QR): the error variance that crosses the bottleneck
  as a fraction of the most any r directions can carry (Ky Fan), so 1 when row(P) is C's top-r
  eigenspace and 0 when it is orthogonal to C's range; free of the scale of P and of C.

Receptive-field shape (2-D arrays, e.g. the activation maximisers of
:func:`bioplastic.torch.receptive.activation_maximisers`), each in [0, 1], unchanged when the field
is multiplied by any nonzero number (ON and OFF cells alike) and, up to pixelation, when it is
rotated or magnified:

* **centre-surround index** = radial fraction x surround antagonism
  (:func:`centre_surround_index`): how much of the field is concentric, times how much of its
  centre's summed weight an opposite-sign surround cancels; about 1 for a balanced difference of
  Gaussians, 0 for a Gaussian blob (no surround), 0.0-0.3 for a Gabor (odd to even), 0 for noise;
* **orientation index**, the anisotropy :math:`(\lambda_1 - \lambda_2) / (\lambda_1 + \lambda_2)`
  (:func:`orientation_index`) of the field's power-spectrum second moment
  :math:`J = \sum_k k k^\top |\hat f(k)|^2`, which by Parseval is its structure tensor
  :math:`\sum_x \nabla f(x) \nabla f(x)^\top` with exact derivatives: 0 for any field with isotropic
  gradients (a difference of Gaussians), near 1 for a grating-like Gabor, about
  :math:`1/\sqrt{\text{pixels}}` for white noise.

Conventions for LDFA, B = Q P has shape (n_{l-1}, n_l) like W_l^T.
"""

from __future__ import annotations

import numpy as np


def alignment_angle(B: np.ndarray, W: np.ndarray) -> float:
    """Angle in degrees between feedback ``B`` (n_{l-1}, n_l) and ``W.T`` (W: (n_l, n_{l-1}))."""
    B, Wt = np.asarray(B, float), np.asarray(W, float).T
    if B.shape != Wt.shape:
        raise ValueError(f"B has shape {B.shape} but W^T has shape {Wt.shape}")
    denom = np.linalg.norm(B) * np.linalg.norm(Wt)
    if denom == 0:
        return 90.0
    return float(np.degrees(np.arccos(np.clip(np.sum(B * Wt) / denom, -1.0, 1.0))))


def _orthonormal_columns(A: np.ndarray) -> np.ndarray:
    u, s, _ = np.linalg.svd(np.asarray(A, float), full_matrices=False)
    return u[:, s > s.max() * 1e-12] if s.size and s.max() > 0 else u[:, :0]


def principal_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of A (n, p) and B (n, q)."""
    A, B = np.atleast_2d(A), np.atleast_2d(B)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"subspaces live in different spaces: {A.shape[0]} vs {B.shape[0]} rows")
    s = np.linalg.svd(_orthonormal_columns(A).T @ _orthonormal_columns(B), compute_uv=False)
    return np.arccos(np.clip(s, -1.0, 1.0))


def participation_ratio(samples_or_cov: np.ndarray, is_covariance: bool = False) -> float:
    """Effective dimensionality of errors (rows = samples) or of a covariance matrix."""
    X = np.asarray(samples_or_cov, float)
    cov = X if is_covariance else X.T @ X / X.shape[0]
    lam = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    total = lam.sum()
    return float(total ** 2 / np.sum(lam ** 2)) if total > 0 else 0.0


def explained_variance(W: np.ndarray, r: int) -> float:
    """Fraction of ||W||_F^2 captured by its best rank-r approximation."""
    s = np.linalg.svd(np.asarray(W, float), compute_uv=False)
    return float(np.sum(s[:r] ** 2) / np.sum(s ** 2))


def subspace_capture(P: np.ndarray, C: np.ndarray) -> float:
    """tr(P~ C P~^T) / (sum of the top-r eigenvalues of C), P~ the rows of ``P`` (r, n) made
    orthonormal by QR, ``C`` (n, n) a symmetric positive semidefinite covariance; in [0, 1]
    (module docstring). P must have full row rank r <= n; a zero C gives nan."""
    P, C = np.atleast_2d(np.asarray(P, float)), np.asarray(C, float)
    r, n = P.shape
    if C.shape != (n, n):
        raise ValueError(f"C must have shape ({n}, {n}) to match P {P.shape}; got {C.shape}")
    if r > n:
        raise ValueError(f"P has {r} rows in R^{n}: at most {n} can be orthonormal")
    basis, _ = np.linalg.qr(P.T)  # (n, r), orthonormal columns spanning row(P)
    top = float(np.sum(np.linalg.eigvalsh((C + C.T) / 2)[::-1][:r]))
    if top <= 0:
        return float("nan")
    return float(np.trace(basis.T @ C @ basis) / top)


def feedback_matrices(weights: dict, rule) -> dict[int, np.ndarray]:
    """The feedback matrix in use by every pathway of a runner's weights, by layer index.

    ``rule`` is a :class:`bioplastic.rules.Rule` or a :class:`bioplastic.Circuit` (its rule). A
    layer-to-layer pathway l (2..L) gives B_l (n_{l-1}, n_l), comparable with W_l^T; a direct one
    (1..L-1) gives B_l (n_l, d). An unknown rule name raises naming the valid options.
    """
    from . import rules

    if isinstance(rule, str):
        rule = rules.get_rule(rule)
    elif not isinstance(rule, rules.Rule):
        rule = rule.learning_rule
    return rule.feedback_matrices(weights)


# --------------------------------------------------------------------------------------------------
# Receptive-field shape
# --------------------------------------------------------------------------------------------------

def _field(rf) -> np.ndarray:
    f = np.asarray(rf, dtype=float)
    if f.ndim != 2 or min(f.shape) < 3:
        raise ValueError(f"a receptive field must be a 2-D array of at least 3 x 3 pixels; got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("the receptive field holds non-finite values")
    return f


def rf_centre(rf) -> tuple[float, float]:
    """Energy centroid of a receptive field: the mean pixel position weighted by ``rf**2``.

    Parameters
    ----------
    rf : array, shape (h, w)
        The field (any units).

    Returns
    -------
    (row, col) : tuple of float
        In pixels from the top-left pixel's centre; the array's middle for an all-zero field.
        Unchanged by multiplying ``rf`` by a nonzero number, so ON and OFF fields share a centre.
    """
    f = _field(rf)
    e = f ** 2
    total = e.sum()
    if total == 0:
        return (f.shape[0] - 1) / 2, (f.shape[1] - 1) / 2
    rows, cols = np.indices(f.shape)
    # rounded to 1e-6 px so that rounding error cannot move pixels across ring boundaries (a field
    # and its negative must share their rings exactly)
    return (float(np.round((rows * e).sum() / total, 6)), float(np.round((cols * e).sum() / total, 6)))


def radial_profile(rf, centre: tuple[float, float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of a field over concentric rings one pixel wide.

    Ring k holds the pixels whose distance ρ to ``centre`` satisfies k <= ρ < k + 1.

    Parameters
    ----------
    rf : array, shape (h, w)
    centre : (row, col), optional
        Default :func:`rf_centre`.

    Returns
    -------
    rings : int array, shape (m,)
        The non-empty rings k, ascending (inner radius in pixels).
    means : array, shape (m,)
        Mean of ``rf`` over each ring.
    counts : int array, shape (m,)
        Pixels in each ring.
    """
    f = _field(rf)
    c = rf_centre(f) if centre is None else centre
    rows, cols = np.indices(f.shape)
    ring = np.floor(np.hypot(rows - c[0], cols - c[1])).astype(int).ravel()
    counts = np.bincount(ring)
    sums = np.bincount(ring, weights=f.ravel())
    keep = counts > 0
    rings = np.flatnonzero(keep)
    return rings, sums[keep] / counts[keep], counts[keep]


def radial_fraction(rf, centre: tuple[float, float] | None = None) -> float:
    r"""Fraction of a field's energy that is concentric: :math:`\lVert \bar f\rVert^2 / \lVert f\rVert^2`.

    :math:`\bar f` replaces each pixel by the mean of its ring (:func:`radial_profile`), the
    orthogonal projection of ``rf`` onto ring-constant images, so the fraction lies in [0, 1]: 1 for
    any radially symmetric field, about rings / pixels for white noise, small for an oriented Gabor.

    Parameters
    ----------
    rf : array, shape (h, w)
    centre : (row, col), optional
        Default :func:`rf_centre`.

    Returns
    -------
    float
        In [0, 1]; nan for an all-zero field.
    """
    f = _field(rf)
    total = float(np.sum(f ** 2))
    if total == 0:
        return float("nan")
    _, means, counts = radial_profile(f, centre)
    return float(np.clip(np.sum(counts * means ** 2) / total, 0.0, 1.0))


def surround_antagonism(rf, centre: tuple[float, float] | None = None) -> float:
    r"""How much of a field's centre an opposite-sign surround cancels, from its radial profile.

    With the ring means :math:`m_k` and pixel counts :math:`n_k` (:func:`radial_profile`), the
    *centre* is the innermost rings up to (not including) the first ring whose mean does not share
    the innermost ring's sign; the *surround* is every ring from there out. With the summed weights
    :math:`C = \sum_{\text{centre}} n_k m_k` and :math:`S = \sum_{\text{surround}} n_k m_k`:

    .. math:: A = \frac{\min(|C|, |S|)}{\max(|C|, |S|)} \text{ if } C S < 0, \text{ else } 0.

    A balanced difference of Gaussians (centre and surround of equal volume) gives 1, a Gaussian
    blob (no sign change) 0; the weights are signed, so a weaker surround that also reaches into the
    centre scores less than its volume ratio (G(2) - 0.5 G(4), volumes 1 and 0.5, gives 0.27).

    Parameters
    ----------
    rf : array, shape (h, w)
    centre : (row, col), optional
        Default :func:`rf_centre`.

    Returns
    -------
    float
        In [0, 1]; nan for an all-zero field.
    """
    f = _field(rf)
    if not np.any(f):
        return float("nan")
    _, means, counts = radial_profile(f, centre)
    sign = np.sign(means[0])
    if sign == 0:
        return 0.0
    other = np.flatnonzero(means * sign <= 0)
    if other.size == 0:
        return 0.0
    k0 = other[0]
    C = float(np.sum(counts[:k0] * means[:k0]))
    S = float(np.sum(counts[k0:] * means[k0:]))
    if C * S >= 0:
        return 0.0
    return float(min(abs(C), abs(S)) / max(abs(C), abs(S)))


def centre_surround_index(rf, centre: tuple[float, float] | None = None) -> float:
    """Centre-surround index: :func:`radial_fraction` x :func:`surround_antagonism`, in [0, 1].

    A field scores high only if it is both concentric (most of its energy survives averaging over
    rings about its energy centroid) and antagonistic (an opposite-sign annulus cancels much of the
    centre's summed weight). Reference values (33 x 33 pixels): a balanced difference of
    Gaussians (sd 2 and 4 px) 0.97; a Gaussian blob 0; an even Gabor (wavelength 6, envelope sd
    4 px) 0.26, an odd one 0.01; white noise 0.00.
    Invariant to multiplying the field by any nonzero number (so ON- and OFF-centre fields score
    alike) and, up to pixelation, to magnifying it; not to adding a constant, which is part of a
    field's shape here (an activation maximiser is zero outside the unit's reach).

    Parameters
    ----------
    rf : array, shape (h, w)
        One receptive field; the whole field, including its surround, should lie inside the array.
    centre : (row, col), optional
        Default :func:`rf_centre` (the energy centroid).

    Returns
    -------
    float
        In [0, 1]; nan for an all-zero field.
    """
    f = _field(rf)
    c = rf_centre(f) if centre is None else centre
    return float(radial_fraction(f, c) * surround_antagonism(f, c))


def structure_tensor(rf) -> np.ndarray:
    r"""Power-spectrum second moment :math:`J = \sum_k k k^\top |\hat f(k)|^2 / (h w)`, (2, 2).

    :math:`\hat f` is the 2-D DFT of the field and k = (k_row, k_col) its frequencies in radians per
    pixel, in [-π, π). By Parseval J equals the gradient second moment :math:`\sum_x \nabla f(x)
    \nabla f(x)^\top` of the field's band-limited periodic interpolation: the structure tensor with
    exact (spectral) derivatives, so that, unlike finite differences, it treats every direction alike
    (a Gabor's index then changes by under 0.01 when it is rotated). The field is taken as periodic;
    a field that is zero at its border (a unit's maximiser inside its canvas) is unaffected by that.
    """
    f = _field(rf)
    power = np.abs(np.fft.fft2(f)) ** 2 / f.size
    kr = 2 * np.pi * np.fft.fftfreq(f.shape[0])[:, None]
    kc = 2 * np.pi * np.fft.fftfreq(f.shape[1])[None, :]
    jrc = float(np.sum(power * kr * kc))
    return np.array([[float(np.sum(power * kr ** 2)), jrc], [jrc, float(np.sum(power * kc ** 2))]])


def orientation_index(rf) -> float:
    r"""Orientation index: anisotropy of the structure tensor, :math:`(\lambda_1 - \lambda_2) /
    (\lambda_1 + \lambda_2)` of :func:`structure_tensor`, in [0, 1].

    0 when the field's gradients have no preferred direction (a difference of Gaussians, a Gaussian),
    1 for a field that varies along one direction only (a grating); a Gabor whose envelope spans a
    few wavelengths scores about 0.8-0.95, white noise about :math:`1/\sqrt{\text{pixels}}`.
    Equivalently the anisotropy of the power spectrum's second moment (module docstring). Invariant
    to multiplying the field by a nonzero number and to adding a constant, and, up to pixelation, to
    rotating or magnifying it.

    Parameters
    ----------
    rf : array, shape (h, w)

    Returns
    -------
    float
        In [0, 1]; nan for a constant field.
    """
    lam = np.linalg.eigvalsh(structure_tensor(rf))
    total = lam.sum()
    if total <= 0:
        return float("nan")
    return float(np.clip((lam[1] - lam[0]) / total, 0.0, 1.0))
