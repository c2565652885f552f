"""The circuit-level torch runner: a circuit's MLP as :class:`FeedbackLinear` layers, stepped by SGD.

One ``train_step`` is autograd plus ``torch.optim.SGD``, an execution independent of
:mod:`bioplastic.rules` that must agree with it (tests/test_torch_backend.py):

* loss = 0.5 * ((yhat - y)**2).sum(1).mean(), so the output gradient is e / N;
* ``loss.backward()`` sends the error down through each layer's feedback (:mod:`.functional`);
  every gradient is taken with the current weights before anything moves;
* SGD param groups: W (lr, weight_decay=decay), b (lr, no decay), plastic feedback (feedback_lr,
  weight_decay=decay); SGD's ``p -= lr * (grad + weight_decay * p)`` is the spec's update.

Layer l (1..L) maps population l-1 to l. Its module carries the feedback into population l-1
(``B{l}`` or ``P{l}``, ``Q{l}``), so layer 1 is plain ``bp`` and, the input not requiring a gradient,
computes no input gradient at all. DFA: every layer is plain, the layer above each hidden population
reads a detached copy of it, and :class:`~.functional.BroadcastErrorFunction` at the output hands
each hidden population e B_l^T (times 1/N) as its gradient, so autograd applies f'(a_l).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit
from ..circuit.init import initial_weights
from ..torch.functional import BroadcastErrorFunction
from ..torch.linear import FeedbackLinear
from .. import neurons, rules
from ._base import AbstractRunner, check_batch, check_weights, unsupported_reason

#: Hidden nonlinearities by circuit name; the readout is linear.
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "linear": lambda a: a}
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
    """DFA's fixed broadcast matrices: buffers ``B1..B{L-1}``, each (n_l, d)."""

    def __init__(self, shapes: Mapping[int, tuple[int, int]], device=None, dtype=None):
        super().__init__()
        for l, shape in shapes.items():
            self.register_buffer(f"B{l}", torch.empty(shape, device=device, dtype=dtype))

    def forward(self, yhat: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Identity on yhat (N, d); backward sends g B_l^T to hidden[l-1] (N, n_l)."""
        return BroadcastErrorFunction.apply(yhat, *self.buffers(), *hidden)


class FeedbackMLP(nn.Module):
    """The forward chain of a layered circuit: ``layers[l-1]`` is W{l}; hidden f, linear readout.

    Parameters
    ----------
    layers : list of FeedbackLinear
        Layers 1..L.
    activation : str
        Hidden nonlinearity, a key of :data:`ACTIVATIONS`.
    direct : DirectFeedback, optional
        DFA broadcast; when given, each layer above a hidden population reads it detached.
    """

    def __init__(self, layers: list[FeedbackLinear], activation: str,
                 direct: DirectFeedback | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid options: {', '.join(ACTIVATIONS)}")
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self.direct = direct

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Readout yhat (N, d) for x (N, n_0)."""
        f = ACTIVATIONS[self.activation]
        hidden, h = [], x
        for layer in self.layers[:-1]:
            h = f(layer(h))
            hidden.append(h)
            if self.direct is not None:
                h = h.detach()  # DFA: the broadcast is the only error a hidden population receives
        yhat = self.layers[-1](h)
        return yhat if self.direct is None else self.direct(yhat, hidden)


def _layer(circuit: Circuit, l: int, device, dtype) -> FeedbackLinear:
    """Layer l of the circuit, uninitialised (the runner sets every value)."""
    n_in, n_out = circuit.sizes[l - 1], circuit.sizes[l]
    rule = circuit.rule if l > 1 and circuit.rule != "dfa" else "bp"
    rank = circuit.shape(f"P{l}")[0] if rule == "ldfa" else None
    bias = circuit.graph.nodes[circuit.layers[l]]["bias"]
    return nn.utils.skip_init(FeedbackLinear, n_in, n_out, bias, rule, rank,
                              circuit.subspace or "local", device=device, dtype=dtype)


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
        self.dtype, self.device = resolve_dtype(dtype), resolve_device(device)
        kw = dict(device=self.device, dtype=self.dtype)
        L, sizes = circuit.n_layers, circuit.sizes
        layers = [_layer(circuit, l, **kw) for l in range(1, L + 1)]
        direct = (DirectFeedback({l: (sizes[l], sizes[-1]) for l in range(1, L)}, **kw)
                  if circuit.rule == "dfa" else None)
        self.model = FeedbackMLP(layers, circuit.activation, direct)
        self._tensors = self._weight_tensors()
        if weights is None or set(weights) != set(circuit.weight_keys()):
            # a full dict skips the draw: the SVD initialisation of a wide layer costs seconds
            self.set_weights(initial_weights(circuit))
        if weights is not None:
            self.set_weights(weights)
        self.optimizer = self._optimizer()

    def _weight_tensors(self) -> dict[str, torch.Tensor]:
        """Circuit weight key -> the tensor holding it (same (post, pre) orientation, no transposes)."""
        out = {}
        for key in self.circuit.weight_keys():
            kind, l = key[0], int(key[1:])
            if self.circuit.rule == "dfa" and kind == "B":
                out[key] = getattr(self.model.direct, key)
            else:
                layer = self.model.layers[l - 1]
                out[key] = getattr(layer, {"W": "weight", "b": "bias"}.get(kind, kind))
        return out

    def _optimizer(self) -> torch.optim.SGD:
        p = self.circuit.params
        weights = [m.weight for m in self.model.layers]
        biases = [m.bias for m in self.model.layers if m.bias is not None]
        feedback = [t for k, t in self._tensors.items()
                    if k[0] in "BPQ" and isinstance(t, nn.Parameter) and t.requires_grad]
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
    """Rule topologies, forms, subspace rules, activations and neuron models this backend builds."""
    return {"topologies": ("layer", "direct"), "forms": ("transport", "dense", "low_rank"),
            "subspaces": tuple(rules.SUBSPACES), "activations": tuple(neurons.ACTIVATIONS),
            "neurons": ("rate",)}


def unsupported(circuit) -> str | None:
    """Why this backend cannot build ``circuit`` (None when it can)."""
    return unsupported_reason("torch", circuit, capabilities())
