"""HOW errors reach layers: the learning rules, each declared once, and their registry.

* :mod:`._base`: the forward pass, the loss, the forward-weight update; :mod:`.rule`: the :class:`Rule` interface;
* one module per credit-assignment rule: :mod:`.bp`, :mod:`.fa`, :mod:`.dfa`, :mod:`.kp`, :mod:`.ldfa`;
* :mod:`.subspace`: one module per subspace rule of low-rank feedback (``fixed``, ``normative``,
  ``local``, ``oja``, ``q_only``);
* :mod:`.registry`: :data:`RULES`, :data:`SUBSPACES`, :func:`register_rule`, :func:`register_subspace`.

:func:`train_step` is one batch-mean SGD step of the abstract rule (the specification every backend
is held to): every layer error is computed with the current weights, then every matrix moves at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..circuit.keys import kind_of
from ..neurons import ACTIVATIONS, activation
from ._base import FORMS, TOPOLOGIES, forward, forward_gradients, loss, n_layers
from .bp import Backprop
from .dfa import DirectFeedback
from .fa import FeedbackAlignment
from .kp import KolenPollack
from .ldfa import LowDimensionalFeedback
from .registry import (
    RULES,
    SUBSPACES,
    get_rule,
    get_subspace,
    plasticity_labels,
    register_rule,
    register_subspace,
    synapse_rule,
    unregister,
)
from .rule import Rule
from .subspace import BUILTIN as _BUILTIN_SUBSPACES
from .subspace import SubspaceRule

# The built-in rules enter through the same public API a user's rule does.
for _rule in (Backprop, FeedbackAlignment, DirectFeedback, KolenPollack, LowDimensionalFeedback):
    register_rule(_rule)
for _sub in _BUILTIN_SUBSPACES:
    register_subspace(_sub)

#: Former name of :class:`Rule`.
AbstractRule = Rule


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


def train_step(weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, rule: Rule,
               act: str, lr: float, feedback_lr: float, decay: float = 0.0) -> StepResult:
    """One batch-mean SGD step of ``rule``.

    Parameters
    ----------
    weights : mapping of str to ndarray
        ``W{l}``, ``b{l}`` and the rule's feedback matrices (``B{l}`` or ``P{l}``, ``Q{l}``).
    x : ndarray, shape (batch, n_0)
    y : ndarray, shape (batch, d)
    rule : Rule
    act : str
        Hidden nonlinearity.
    lr, feedback_lr, decay : float
        Step sizes of forward weights and plastic feedback, and weight decay lambda (applied to W
        and plastic feedback, not biases): ``M <- M - eta (grad + lambda M)``.
    """
    fprime = activation(act).fprime
    a, h = forward(weights, x, n_layers(weights), act)
    e = h[-1] - y
    delta = rule.layer_errors(weights, a, e, fprime)
    grads = forward_gradients(h, delta, weights)
    fb_grads = rule.feedback_gradients(weights, h, delta, grads)
    new = dict(weights)
    for name, g in grads.items():
        step = g + decay * weights[name] if kind_of(name) == "W" else g
        new[name] = weights[name] - lr * step
    for name, g in fb_grads.items():
        new[name] = weights[name] - feedback_lr * (g + decay * weights[name])
    return StepResult(new, loss(h[-1], y), delta)


def subspace_rule(name: str):
    """The specification of subspace rule ``name`` as a function (P, Q, W, h, delta) -> (grad_P, grad_Q)."""
    return get_subspace(name).gradients


#: Subspace rule name -> its specification function (a live view of :data:`SUBSPACES`).
class _SpecView(Mapping):
    def __getitem__(self, name):
        return subspace_rule(name)

    def __iter__(self):
        return iter(SUBSPACES)

    def __len__(self):
        return len(SUBSPACES)


SUBSPACE_RULES = _SpecView()

__all__ = [
    "ACTIVATIONS", "AbstractRule", "Backprop", "DirectFeedback", "FORMS", "FeedbackAlignment",
    "KolenPollack", "LowDimensionalFeedback", "RULES", "Rule", "SUBSPACES", "SUBSPACE_RULES",
    "StepResult", "SubspaceRule", "TOPOLOGIES", "activation", "forward", "forward_gradients",
    "get_rule", "get_subspace", "loss", "n_layers", "plasticity_labels", "register_rule", "register_subspace",
    "subspace_rule", "synapse_rule", "train_step", "unregister",
]
