"""The circuit-level torch runner: a circuit's MLP as torch layers, stepped by SGD.

One ``train_step`` is autograd plus ``torch.optim.SGD``, an execution independent of
:mod:`bioplastic.rules` that must agree with it (tests/test_torch_backend.py):

* loss = 0.5 * ((yhat - y)**2).sum(1).mean(), so the output gradient is e / N;
* ``loss.backward()`` sends the error down through the feedback (:mod:`bioplastic.torch.functional`);
  every gradient is taken with the current weights before anything moves;
* SGD param groups: W (lr, weight_decay=decay), b (lr, no decay), plastic feedback (feedback_lr,
  weight_decay=decay); SGD's ``p -= lr * (grad + weight_decay * p)`` is the spec's update.

Layer l (1..L) maps population l-1 to l. What carries the error is decided by the circuit's rule
object (``circuit.learning_rule``), by its topology and form, never by its name (:data:`BUILDERS`):

* topology ``layer``: layer l >= 2 is a :class:`~bioplastic.torch.linear.FeedbackLinear` carrying
  the feedback into population l-1 (``B{l}`` or ``P{l}``, ``Q{l}``; nothing for transport), whose
  backward applies the rule's math; layer 1 sends no error (the input takes no gradient) and is a
  plain ``nn.Linear``;
* topology ``direct``: every layer is a plain ``nn.Linear``, the layer above each hidden population
  reads a detached copy of it, and a module at the output hands each hidden population its error:
  dense, :class:`DirectFeedback` (``B{l}`` (n_l, d): e B_l^T / N); low rank,
  :class:`DirectLowRankFeedback` (one ``P{L}`` (r, d) and ``Q{l}`` (n_l, r): e P^T Q_l^T / N, P and
  Q moved by the subspace rule on the stacked hidden layers, as
  :meth:`bioplastic.rules.Rule.feedback_gradients` specifies). Autograd then applies f'(a_l).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .. import neurons, rules
from ..circuit import Circuit
from ..circuit.init import initial_weights
from ..circuit.keys import key, kind_of, parse_key
from ..torch.functional import BroadcastErrorFunction, BroadcastLowRankFunction
from ..torch.linear import FeedbackLinear
from ._base import AbstractRunner, UnsupportedCircuitError, check_batch, check_weights, unsupported_reason

#: dtype option -> torch dtype.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (or the torch dtypes) -> torch dtype; raises naming the options."""
    for name, value in DTYPES.items():
        if dtype == name or dtype is value:
            return value
    raise ValueError(f"unknown dtype {dtype!r}; valid options: {', '.join(DTYPES)}")


def available_devices() -> list[str]:
    """Device types usable here: always ``cpu``; ``cuda``, ``mps`` when present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def resolve_device(device) -> torch.device:
    """A usable torch device (cpu by default); raises a clear error for an absent or unknown one."""
    if device is None:
        return torch.device("cpu")
    valid = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; valid options here: {', '.join(valid)}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
        raise ValueError(f"device {device!r} was requested but CUDA is not available (torch "
                         f"{torch.__version__}, built {built}); valid options here: {', '.join(valid)}")
    if not (dev.type == "cpu" or str(dev) in valid):
        raise ValueError(f"device {device!r} is not available; valid options here: {', '.join(valid)}")
    return dev


class DirectFeedback(nn.Module):
    """Dense direct feedback's fixed broadcast matrices: buffers ``B1..B{L-1}``, each (n_l, d)."""

    def __init__(self, shapes: Mapping[int, tuple[int, int]], device=None, dtype=None):
        super().__init__()
        for l, shape in shapes.items():
            self.register_buffer(key("B", l), torch.empty(shape, device=device, dtype=dtype))

    def forward(self, yhat: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Identity on yhat (N, d); backward sends g B_l^T to hidden[l-1] (N, n_l)."""
        return BroadcastErrorFunction.apply(yhat, *self.buffers(), *hidden)


class DirectLowRankFeedback(nn.Module):
    """Low-rank direct feedback: Parameters ``P{L}`` (r, d) and ``Q1..Q{L-1}``, each (n_l, r).

    A factor that the subspace rule does not learn has ``requires_grad=False``.
    """

    def __init__(self, subspace, sizes, rank: int, device=None, dtype=None):
        super().__init__()
        L, kw = len(sizes) - 1, dict(device=device, dtype=dtype)
        self.subspace = subspace
        self.p_name = key("P", L)
        self.q_names = [key("Q", l) for l in range(1, L)]
        learns = subspace.learns
        self.register_parameter(self.p_name, nn.Parameter(torch.empty(rank, sizes[-1], **kw),
                                                          requires_grad="P" in learns))
        for l, name in enumerate(self.q_names, start=1):
            self.register_parameter(name, nn.Parameter(torch.empty(sizes[l], rank, **kw),
                                                       requires_grad="Q" in learns))

    def forward(self, yhat: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Identity on yhat (N, d); backward sends g P^T Q_l^T to hidden[l-1] and learns P, Q."""
        factors = [getattr(self, n) for n in self.q_names]
        return BroadcastLowRankFunction.apply(yhat, getattr(self, self.p_name), self.subspace,
                                              *factors, *hidden)


class FeedbackMLP(nn.Module):
    """The forward chain of a layered circuit: ``layers[l-1]`` is W{l}; hidden f, linear readout.

    Parameters
    ----------
    layers : list of nn.Module
        Layers 1..L (``nn.Linear`` or :class:`FeedbackLinear`).
    activation : str
        Hidden nonlinearity, a key of :data:`bioplastic.neurons.ACTIVATIONS`.
    direct : nn.Module, optional
        Direct feedback at the output (:class:`DirectFeedback`, :class:`DirectLowRankFeedback`);
        when given, each layer above a hidden population reads it detached.
    """

    def __init__(self, layers: list[nn.Module], activation: str, direct: nn.Module | None = None):
        super().__init__()
        neurons.activation(activation)  # raises naming the valid options
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self.direct = direct

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Readout yhat (N, d) for x (N, n_0)."""
        f = neurons.ACTIVATIONS[self.activation].torch_f
        hidden, h = [], x
        for layer in self.layers[:-1]:
            h = f(layer(h))
            hidden.append(h)
            if self.direct is not None:
                h = h.detach()  # direct feedback is the only error a hidden population receives
        yhat = self.layers[-1](h)
        return yhat if self.direct is None else self.direct(yhat, hidden)


# ----------------------------------------------------------------------------- builders by (topology, form)
def _plain(circuit: Circuit, l: int, **kw) -> nn.Linear:
    """Layer l without feedback of its own, uninitialised (the runner sets every value)."""
    bias = circuit.graph.nodes[circuit.layers[l]]["bias"]
    return nn.utils.skip_init(nn.Linear, circuit.sizes[l - 1], circuit.sizes[l], bias, **kw)


def _layer_topology(circuit: Circuit, rule, **kw):
    """Layer rules, any form: layer l >= 2 carries its pathway (FeedbackLinear applies the rule)."""
    layers = [_plain(circuit, 1, **kw)]
    for l in range(2, circuit.n_layers + 1):
        rank = circuit.shape(key("P", l))[0] if rule.form == "low_rank" else None
        bias = circuit.graph.nodes[circuit.layers[l]]["bias"]
        layers.append(nn.utils.skip_init(FeedbackLinear, circuit.sizes[l - 1], circuit.sizes[l], bias,
                                         rule.name, rank, circuit.subspace or "local", **kw))
    return layers, None


def _direct_dense(circuit: Circuit, rule, **kw):
    """Dense direct feedback with fixed B (a plastic one is refused: see :func:`unsupported`)."""
    L, sizes = circuit.n_layers, circuit.sizes
    layers = [_plain(circuit, l, **kw) for l in range(1, L + 1)]
    return layers, DirectFeedback({l: (sizes[l], sizes[-1]) for l in range(1, L)}, **kw)


def _direct_low_rank(circuit: Circuit, rule, **kw):
    """Low-rank direct feedback: one bottleneck shared by every hidden layer."""
    L = circuit.n_layers
    layers = [_plain(circuit, l, **kw) for l in range(1, L + 1)]
    rank = circuit.shape(key("P", L))[0]
    return layers, DirectLowRankFeedback(rule.subspace, circuit.sizes, rank, **kw)


#: (topology, form) -> builder(circuit, rule, device=, dtype=) -> (layers, direct module or None).
BUILDERS = {**{("layer", form): _layer_topology for form in rules.FORMS},
            ("direct", "dense"): _direct_dense,
            ("direct", "low_rank"): _direct_low_rank}


def _builder(rule):
    """The builder for ``rule``, or None (plastic dense direct feedback: its B would need the layer
    errors after f', which the broadcast at the output does not see)."""
    if rule.topology == "direct" and rule.form == "dense" and rule.plastic:
        return None
    return BUILDERS.get((rule.topology, rule.form))


class TorchRunner(AbstractRunner):
    """A layered circuit on torch (module docstring).

    Parameters
    ----------
    circuit : bioplastic.Circuit
    dtype : str
        ``float32`` or ``float64``.
    device : str or torch.device, optional
        ``cpu`` (default), ``cuda``, ``cuda:1``, ...; an absent device raises ValueError.
    weights : mapping, optional
        Initial weights (some or all keys); the rest come from :func:`bioplastic.circuit.init.initial_weights`
        (the reference's numbers for the circuit's seed).

    Attributes
    ----------
    model : FeedbackMLP
        The network (an ordinary nn.Module).
    optimizer : torch.optim.SGD
    """

    backend = "torch"

    def __init__(self, circuit: Circuit, dtype="float32", device=None, weights=None):
        super().__init__(circuit)
        reason = unsupported(self.circuit)
        if reason is not None:
            raise UnsupportedCircuitError(reason)
        self.dtype, self.device = resolve_dtype(dtype), resolve_device(device)
        rule = self.circuit.learning_rule
        layers, direct = _builder(rule)(self.circuit, rule, device=self.device, dtype=self.dtype)
        self.model = FeedbackMLP(layers, self.circuit.activation, direct)
        self._tensors = self._weight_tensors(rule)
        if weights is None or set(weights) != set(circuit.weight_keys()):
            # a full dict skips the draw: the SVD initialisation of a wide layer costs seconds
            self.set_weights(initial_weights(self.circuit))
        if weights is not None:
            self.set_weights(weights)
        self.optimizer = self._optimizer()

    def _weight_tensors(self, rule) -> dict[str, torch.Tensor]:
        """Circuit weight key -> the tensor holding it (same (post, pre) orientation, no transposes).

        W{l}, b{l}: layer l's weight and bias; feedback: the direct module's (topology ``direct``)
        or layer l's own (``layer``: the pathway of layer l lives in its module).
        """
        out = {}
        for name in self.circuit.weight_keys():
            k = parse_key(name)
            layer = self.model.layers[k.layer - 1]
            if k.kind in ("W", "b"):
                out[name] = layer.weight if k.kind == "W" else layer.bias
            elif rule.topology == "direct":
                out[name] = getattr(self.model.direct, name)
            else:
                out[name] = getattr(layer, k.kind)
        return out

    def _optimizer(self) -> torch.optim.SGD:
        p = self.circuit.params
        weights = [m.weight for m in self.model.layers]
        biases = [m.bias for m in self.model.layers if m.bias is not None]
        feedback = [t for k, t in self._tensors.items()
                    if kind_of(k) in ("B", "P", "Q") and isinstance(t, nn.Parameter) and t.requires_grad]
        groups = [dict(params=weights, lr=p.lr, weight_decay=p.decay),
                  dict(params=biases, lr=p.lr, weight_decay=0.0),
                  dict(params=feedback, lr=p.feedback_lr, weight_decay=p.decay)]
        return torch.optim.SGD([g for g in groups if g["params"]])

    # ----------------------------------------------------------------- contract
    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: np.array(t.detach().cpu().numpy(), dtype=np.float64)
                for k, t in self._tensors.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for key, arr in check_weights(self.circuit, weights).items():
                self._tensors[key].copy_(torch.from_numpy(arr))

    def _batch(self, x, y=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Checked tensors on the runner's device and dtype; torch inputs stay on their device."""
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            self._check_tensors(x, y)
            x = torch.as_tensor(x)
            y = None if y is None else torch.as_tensor(y)
        else:
            x, y = check_batch(self.circuit, x, y)
            x, y = torch.from_numpy(x), None if y is None else torch.from_numpy(y)
        kw = dict(device=self.device, dtype=self.dtype)
        return x.to(**kw), None if y is None else y.to(**kw)

    def _check_tensors(self, x, y) -> None:
        """check_batch's checks, done with torch so that device tensors are not copied to the host."""
        n = None
        for name, arr, width in (("x", x, self.circuit.sizes[0]), ("y", y, self.circuit.sizes[-1])):
            if arr is None:
                continue
            arr = torch.as_tensor(arr)
            if arr.ndim != 2 or arr.shape[1] != width:
                raise ValueError(f"{name} must have shape (batch, {width}) for this circuit "
                                 f"(sizes {self.circuit.sizes}); got {tuple(arr.shape)}")
            bad = int((~torch.isfinite(arr)).sum())
            if bad:
                raise ValueError(f"{name} contains NaN or infinite values ({bad} entries)")
            if n is not None and arr.shape[0] != n:
                raise ValueError(f"x has {n} samples but y has {arr.shape[0]}")
            n = arr.shape[0]
        if n == 0:
            raise ValueError("empty batch: x has 0 samples")

    def train_step(self, x, y) -> float:
        x, y = self._batch(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss = 0.5 * ((self.model(x) - y) ** 2).sum(1).mean()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, x) -> np.ndarray:
        x, _ = self._batch(x)
        return np.array(self.model(x).cpu().numpy(), dtype=np.float64)

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{type(self).__name__}({self.circuit!r}, dtype={dtype!r}, device={str(self.device)!r})"


def build(circuit: Circuit, dtype="float32", device=None, weights=None) -> TorchRunner:
    """Build a :class:`TorchRunner` (options ``dtype``, ``device``, ``weights``)."""
    return TorchRunner(circuit, dtype=dtype, device=device, weights=weights)


def capabilities() -> dict[str, tuple[str, ...]]:
    """Rule topologies, forms, subspace rules, activations and neuron models this backend builds.

    Topologies and forms are those of :data:`BUILDERS`; every registered subspace rule (their
    ``torch_gradients`` default runs the specification) and every registered nonlinearity (its
    ``torch_f``). One combination is refused on top of these: plastic dense direct feedback
    (:func:`unsupported` names it).
    """
    return {"topologies": tuple(dict.fromkeys(t for t, _ in BUILDERS)),
            "forms": tuple(dict.fromkeys(f for _, f in BUILDERS)),
            "subspaces": tuple(rules.SUBSPACES), "activations": tuple(neurons.ACTIVATIONS),
            "neurons": ("rate",)}


def unsupported(circuit) -> str | None:
    """Why this backend cannot build ``circuit`` (None when it can)."""
    reason = unsupported_reason("torch", circuit, capabilities())
    if reason is None:
        rule = circuit.learning_rule
        if rule.reciprocal != "read":
            return (f"backend 'torch' cannot build this circuit: rule {rule.name!r} with reciprocal "
                    f"{rule.reciprocal!r} (learned reciprocal synapses Qt/Pt); supported reciprocal: "
                    "read (backends reference and brian2 build learned ones)")
        if _builder(rule) is None:
            supported = ", ".join(f"{t}/{f}" for t, f in BUILDERS)
            return (f"backend 'torch' cannot build this circuit: rule {rule.name!r} has plastic "
                    f"{rule.form} feedback of topology {rule.topology!r}; supported (topology/form): "
                    f"{supported}, direct dense only with fixed B")
    return reason
