"""The abstract learning rules: plain float64 math, the specification every backend is held to.

One module per family (:mod:`.bp`, :mod:`.fa` (fa, dfa), :mod:`.kp`, :mod:`.ldfa`); the shared
forward pass and weight update are in :mod:`._base`. :func:`train_step` is one batch-mean SGD step
of DESIGN.md's "abstract rule": every layer error is computed with the current weights, then every
matrix moves at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._base import ACTIVATIONS, AbstractRule, activation, forward, forward_gradients, loss
from .bp import Backprop
from .fa import DirectFeedbackAlignment, FeedbackAlignment
from .kp import KolenPollack
from .ldfa import SUBSPACE_RULES, LowDimensionalFeedback, subspace_rule

#: Rule name -> rule class; every registration in one list.
RULES: dict[str, type[AbstractRule]] = {
    "bp": Backprop,
    "fa": FeedbackAlignment,
    "dfa": DirectFeedbackAlignment,
    "kp": KolenPollack,
    "ldfa": LowDimensionalFeedback,
}


def get_rule(name: str, subspace: str | None = None) -> AbstractRule:
    """The rule object for ``name`` (and ``subspace`` for ldfa); raises naming the valid options."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid options: {', '.join(RULES)}")
    return RULES[name](subspace or "local") if name == "ldfa" else RULES[name]()


@dataclass(frozen=True)
class StepResult:
    """Outcome of :func:`train_step`.

    Attributes
    ----------
    weights : dict of ndarray
        New weights (fresh arrays; the input mapping is untouched).
    loss : float
        Loss before the step.
    delta : list of ndarray
        Layer errors used by the step, ``delta[l]`` (batch, n_l) for l = 1..L.
    """

    weights: dict
    loss: float
    delta: list


def train_step(weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, rule: AbstractRule,
               act: str, lr: float, feedback_lr: float, decay: float = 0.0) -> StepResult:
    """One batch-mean SGD step of ``rule``.

    Parameters
    ----------
    weights : mapping of str to ndarray
        ``W{l}``, ``b{l}`` and the rule's feedback matrices (``B{l}`` or ``P{l}``, ``Q{l}``).
    x : ndarray, shape (batch, n_0)
    y : ndarray, shape (batch, d)
    rule : AbstractRule
    act : str
        Hidden nonlinearity.
    lr, feedback_lr, decay : float
        Step sizes of forward weights and plastic feedback, and weight decay lambda (applied to W
        and plastic feedback, not biases): ``M <- M - eta (grad + lambda M)``.
    """
    n_layers = sum(1 for k in weights if k.startswith("W"))
    _, fprime = activation(act)
    a, h = forward(weights, x, n_layers, act)
    e = h[-1] - y
    delta = rule.layer_errors(weights, a, e, fprime)
    grads = forward_gradients(h, delta, weights)
    fb_grads = rule.feedback_gradients(weights, h, delta, grads)
    new = dict(weights)
    for key, g in grads.items():
        step = g + decay * weights[key] if key.startswith("W") else g
        new[key] = weights[key] - lr * step
    for key, g in fb_grads.items():
        new[key] = weights[key] - feedback_lr * (g + decay * weights[key])
    return StepResult(new, loss(h[-1], y), delta)


__all__ = [
    "ACTIVATIONS", "AbstractRule", "Backprop", "DirectFeedbackAlignment", "FeedbackAlignment",
    "KolenPollack", "LowDimensionalFeedback", "RULES", "SUBSPACE_RULES", "StepResult", "activation",
    "forward", "forward_gradients", "get_rule", "loss", "subspace_rule", "train_step",
]
