"""One run of a study: :func:`execute` trains one resolved config and keeps its folder readable.

A run is a pure function of its resolved config (:class:`~bioplastic.experiment.study.RunConfig`,
as a plain dict): the same config gives the same numbers wherever it executes (in this process, a
pool worker, a Dask worker, a Slurm job), because everything it draws is seeded from the config
and it computes single-threaded (unless ``backend.threads`` says otherwise).

Its folder, ``OUT/runs/<run_id>/``:

* ``config.json``: the resolved config, seed, package versions, git commit, host, start time;
  written atomically before training;
* ``metrics.jsonl``: one JSON object per epoch (``epoch``, ``train_loss``, ``test_loss``,
  ``test_accuracy``, ``time``, and the measures of ``[record]``), appended, flushed and synced to
  disk as each epoch ends (every ``training.eval_every`` epochs and the last); epoch 0 is before
  training;
* ``status.json``: ``{"state": "running" | "finished" | "diverged" | "failed", "epoch": k, "error":
  text or null}`` (a diverged run also gives the ``step`` of its epoch), replaced atomically;
* ``checkpoint.pt``: a pickle (read it with :func:`load_checkpoint`; torch tensors inside for torch
  runs, plain numpy for the others, so a numpy run never imports torch) of the weights and feedback
  factors, the optimizer state, every generator's state (the data order's, numpy's, python's,
  torch's) and the metrics so far, written atomically every ``training.checkpoint_every`` epochs and
  after the last;
* ``snapshots/``: the ``[record]`` snapshots, ``weights_EPOCH.npz`` and ``activity_EPOCH.npz``
  every ``weights_every`` / ``activity_every`` epochs, ``weights_step_STEP.npz`` every
  ``weights_every_steps`` optimisation steps (the step count is kept in the checkpoint, so a resumed
  run names and writes them as an uninterrupted one; :func:`step_snapshots`, :func:`load_snapshot`);
* ``log.txt``: what happened, with timestamps, and the traceback of a failure;
* ``.lock``: locked (``flock``) by the process training the run, so that two never do at once.

Resuming (``resume=True``) skips a finished or diverged run, and continues an interrupted one from its
checkpoint: metrics.jsonl is cut back to the checkpoint's epoch and training goes on with the next
epoch, with every state restored, so that the numbers are bit-identical (on CPU) to those of a run
that was never interrupted. A diverging run (a NaN or infinite loss) is marked ``diverged`` with the
epoch it happened in; a failing one ``failed``, keeping what it wrote.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib
import io
import json
import math
import os
import pickle
import platform
import random
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .io import (
    append_jsonl,
    git_sha,
    json_text,
    read_jsonl,
    seed_everything,
    to_jsonable,
    versions,
    write_bytes,
    write_json,
)
from .study import (
    RunConfig,
    builder_arguments,
    canonical,
    circuit_sizes,
    import_object,
    model_arguments,
)
from .train import Diverged, History, evaluate, train

#: The states of status.json.
STATES = ("running", "finished", "diverged", "failed")
#: States a resumed study does not run again.
DONE = ("finished", "diverged")
#: Version of the checkpoint's layout.
CHECKPOINT_FORMAT = 1
#: The files of a run's folder.
CONFIG, METRICS, STATUS, CHECKPOINT, LOG = "config.json", "metrics.jsonl", "status.json", "checkpoint.pt", "log.txt"
#: The run folder's subfolder of ``[record]`` snapshots (weights_EPOCH.npz, activity_EPOCH.npz).
SNAPSHOTS = "snapshots"
#: The lock file held while a process trains the run (see :func:`run_lock`).
LOCK = ".lock"


def run_folder(out_dir: str | os.PathLike, run_id: str) -> Path:
    """``OUT/runs/<run_id>``."""
    return Path(out_dir) / "runs" / run_id


def read_status(folder: str | os.PathLike) -> dict | None:
    """A run folder's status.json, or None when there is none yet."""
    try:
        return json.loads((Path(folder) / STATUS).read_text())
    except FileNotFoundError:
        return None


def read_metrics(folder: str | os.PathLike) -> list[dict]:
    """A run folder's metrics, one dict per epoch (a last line cut short by a crash left out)."""
    return read_jsonl(Path(folder) / METRICS)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`execute` (a pickle: load only files you trust)."""
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a bioplastic checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    return write_bytes(path, pickle.dumps(dict(state, format=CHECKPOINT_FORMAT), protocol=pickle.HIGHEST_PROTOCOL))


def lr_factor(schedule, epoch: int, epochs: int) -> float:
    """The factor on the learning rates in ``epoch`` (1..epochs) under a ``[schedule]``: a pure
    function of the epoch (the rates of epoch k are the initial ones times it, so a resumed run
    needs no scheduler state)."""
    if schedule.name == "constant":
        factor = 1.0
    elif schedule.name == "step":
        factor = schedule.gamma ** ((epoch - 1) // schedule.step_size)
    elif schedule.name == "exponential":
        factor = schedule.gamma ** (epoch - 1)
    elif schedule.name == "cosine":
        factor = schedule.min_factor + (1.0 - schedule.min_factor) * 0.5 * (
            1.0 + math.cos(math.pi * (epoch - 1) / max(epochs, 1)))
    else:
        raise ValueError(f"unknown schedule {schedule.name!r}; valid options: constant, step, exponential, cosine")
    if schedule.warmup and epoch <= schedule.warmup:
        factor *= epoch / (schedule.warmup + 1)
    return factor


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

_DATA: dict[str, Any] = {}


def preload(datasets: Mapping[str, Any]) -> None:
    """Fill this process's cache of data sets (:func:`load_task`) with ``datasets`` (task key ->
    Dataset): a pool worker's initializer, so that workers are handed small data sets instead of
    each loading them (for the digits: importing scikit-learn, a second per worker)."""
    _DATA.update(datasets)


def task_key(task) -> str:
    """The cache key of a ``[task]``."""
    return json.dumps(task.model_dump(mode="json"), sort_keys=True)


def load_task(task) -> Any:
    """The :class:`~bioplastic.data.Dataset` of a ``[task]``; kept per process (runs of a worker
    share it)."""
    key = task_key(task)
    if key in _DATA:
        return _DATA[key]
    from .. import data

    if task.name == "digits":
        ds = data.load_digits(task.test_fraction, task.split_seed, flatten=task.flatten, classes=task.classes,
                              train_samples=task.train_samples, center=task.center)
    elif task.name == "teacher_student":
        from .study import _n_train

        ts = data.teacher_student(task.n_in, task.d, task.samples, rank=task.rank, noise=task.noise,
                                  whiten=task.whiten, seed=task.seed)
        # T = A B / sqrt(k) gives outputs of variance n_in; scaled, the targets have unit variance,
        # the scale of one-hot targets, so that one learning rate serves both kinds of task
        x, y = ts.x, ts.y / np.sqrt(task.n_in) if task.scale else ts.y
        n = _n_train(task.samples, task.test_fraction)
        labels = y.argmax(axis=1)  # a Dataset has labels; the argmax agreement is the "accuracy"
        ds = data.Dataset(x[:n], y[:n], labels[:n], x[n:], y[n:], labels[n:], name="teacher_student",
                          classes=tuple(str(i) for i in range(task.d)),
                          info={"n_in": task.n_in, "d": task.d, "rank": task.rank, "seed": task.seed})
    elif task.name == "linear_teacher":
        lt = data.linear_teacher(task.n_in, task.singular_values, task.samples, task.test_samples,
                                 whiten=task.whiten, seed=task.seed)
        m = len(task.singular_values)
        # a Dataset has labels; the argmax agreement is the "accuracy", the loss is what to read
        ds = data.Dataset(lt.x, lt.y, lt.y.argmax(axis=1), lt.x_test, lt.y_test, lt.y_test.argmax(axis=1),
                          name="linear_teacher", classes=tuple(str(i) for i in range(m)),
                          info={"S": lt.S, "input_cov": lt.input_cov, "seed": task.seed})
    elif task.name == "mnist5000":
        ds = data.load_mnist5000(task.test_fraction, task.split_seed, flatten=task.flatten)
    elif task.name == "patches":
        ds = data.load_patches(task.d, task.size, task.n_train, task.n_test, task.test_width, task.seed,
                               flatten=task.flatten)
    else:
        options = dict(root=task.root, classes=task.classes, flatten=task.flatten, normalize=task.normalize)
        if task.name != "mnist":
            options["grayscale"] = task.grayscale
        ds = data.load(task.name, **options)
    _DATA[key] = ds
    return ds


# --------------------------------------------------------------------------------------------------
# What trains: a circuit on a backend, or a converted torch model
# --------------------------------------------------------------------------------------------------

class ModelRunner:
    """A converted torch model behind the runner contract (``train_step``, ``predict``,
    ``batch_loss``), stepped by a torch optimizer. ``loss``: ``squared``, 1/2 ||yhat - y||^2 averaged
    over the batch as for circuits, or ``cross_entropy``, softmax cross-entropy of the outputs as
    logits against one-hot (or soft) targets."""

    LOSSES = ("squared", "cross_entropy")

    def __init__(self, model, optimizer, device, dtype, loss: str = "squared"):
        if loss not in self.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid options: {', '.join(self.LOSSES)}")
        self.model, self.optimizer, self.device, self.dtype = model, optimizer, device, dtype
        self.loss = loss

    def _loss(self, out, y):
        import torch.nn.functional as F

        if self.loss == "cross_entropy":
            return F.cross_entropy(out, y)
        return 0.5 * ((out - y) ** 2).sum(1).mean()

    def batch_loss(self, yhat: np.ndarray, y: np.ndarray) -> float:
        """This runner's loss of outputs ``yhat`` (batch, k) against ``y``, summed over the batch."""
        yhat, y = np.asarray(yhat, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.loss == "cross_entropy":
            shifted = yhat - yhat.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            return float(-(y * log_p).sum())
        return float(0.5 * ((yhat - y) ** 2).sum())

    def _tensor(self, x):
        import torch

        return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

    def train_step(self, x, y) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(self._tensor(x)), self._tensor(y))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def predict(self, x) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            return np.array(self.model(self._tensor(x)).cpu().numpy(), dtype=np.float64)


class Job:
    """One run's trainable state: the runner, how to scale its learning rates, save and restore it,
    and its measures."""

    def __init__(self, config: RunConfig, dataset):
        self.config, self.dataset = config, dataset
        self.model = self.circuit = None
        if config.circuit is not None:
            self._build_circuit()
        else:
            self._build_model()
        self.uses_torch = config.model is not None or config.backend.name == "torch"
        # the test loss of predicting 0 (relative_error's denominator), in the runner's own loss
        y_test = np.asarray(dataset.y_test, float)
        batch_loss = getattr(self.runner, "batch_loss", None)
        self._zero_loss = (batch_loss(np.zeros_like(y_test), y_test) / len(y_test) if batch_loss is not None
                           else 0.5 * float(np.mean(np.sum(y_test ** 2, axis=1))))
        self._factor = 1.0

    # ----------------------------------------------------------------- building
    def _build_circuit(self) -> None:
        import bioplastic

        c = self.config
        builder = import_object(c.circuit.builder)
        self.circuit = builder(circuit_sizes(c), **builder_arguments(c))
        options = dict(c.backend.options)
        options.update({k: v for k in ("dtype", "device") if (v := getattr(c.backend, k)) is not None})
        if c.backend.name == "brian2" and "seed" not in options:
            from ..backends.brian2 import _spiking

            if _spiking.is_spiking(self.circuit):  # its spike trains follow the run's seed, as all else
                options["seed"] = c.seed
        self.runner = bioplastic.build(self.circuit, backend=c.backend.name, **options)
        if c.circuit.zero:
            from ..circuit.keys import kind_of

            keys = [k for k in self.circuit.weight_keys() if k in c.circuit.zero or kind_of(k) in c.circuit.zero]
            self.runner.set_weights({k: np.zeros(self.circuit.weight_shape(k)) for k in keys})
        optimizer = getattr(self.runner, "optimizer", None)
        self._torch_optimizer = optimizer
        if optimizer is not None:
            self._base = [g["lr"] for g in optimizer.param_groups]
        else:
            params = self.runner.circuit.graph.graph
            self._base = {k: params[k] for k in ("lr", "feedback_lr") if k in params}

    def _build_model(self) -> None:
        import torch

        from ..backends.torch_runner import resolve_device, resolve_dtype
        from ..torch import convert
        from ..torch.models import MODELS

        c = self.config
        device, dtype = resolve_device(c.backend.device), resolve_dtype(c.backend.dtype or "float32")
        torch.manual_seed(c.seed)  # the model's initial weights
        cls = MODELS[c.model.name]
        model = cls(**model_arguments(c, cls))
        fb = c.feedback
        model = convert(model, rule=fb.rule, rank=fb.rank, subspace=fb.subspace, seed=c.seed,
                        clip_rank=fb.clip_rank, exclude=c.model.excluded(model), inplace=True,
                        refactor_every=fb.refactor_every)
        model = model.to(device=device, dtype=dtype)
        opt = c.optimizer
        forward, biases, feedback = [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name.rsplit(".", 1)[-1] in ("P", "Q", "B"):
                feedback.append(p)
            elif p.ndim > 1:
                forward.append(p)
            else:
                biases.append(p)
        fb_lr = opt.lr if opt.feedback_lr is None else opt.feedback_lr
        groups = [dict(params=forward, lr=opt.lr, weight_decay=opt.decay),
                  dict(params=biases, lr=opt.lr, weight_decay=opt.decay if opt.decay_biases else 0.0),
                  dict(params=feedback, lr=fb_lr, weight_decay=opt.decay)]
        groups = [g for g in groups if g["params"]]
        # weight_decay is torch's coupled L2 decay (added to the gradient) for all three
        if opt.name == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=opt.momentum)
        elif opt.name == "adam":
            optimizer = torch.optim.Adam(groups, betas=tuple(opt.betas))
        elif opt.name == "rmsprop":
            optimizer = torch.optim.RMSprop(groups, alpha=opt.rmsprop_alpha, momentum=opt.momentum)
        else:
            raise ValueError(f"unknown optimizer {opt.name!r}; valid options: sgd, adam, rmsprop")
        self.model, self._torch_optimizer = model, optimizer
        self._base = [g["lr"] for g in optimizer.param_groups]
        self.runner = ModelRunner(model, optimizer, device, dtype, loss=c.training.loss)

    # ----------------------------------------------------------------- learning rate
    def set_lr_factor(self, factor: float) -> None:
        """Scale every learning rate by ``factor`` (of the rates the run started with)."""
        if factor == self._factor:
            return
        self._factor = factor
        if self._torch_optimizer is not None:
            for group, base in zip(self._torch_optimizer.param_groups, self._base, strict=True):
                group["lr"] = base * factor
        else:
            params = self.runner.circuit.graph.graph
            for key, base in self._base.items():
                params[key] = base * factor

    # ----------------------------------------------------------------- state
    def state(self) -> dict:
        """Weights (or the model's state dict) and optimizer state, as copies."""
        import copy

        out: dict[str, Any] = {"lr_factor": self._factor}
        if self.model is not None:
            out["model"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            out["weights"] = self.runner.get_weights()
        if self._torch_optimizer is not None:
            out["optimizer"] = copy.deepcopy(self._torch_optimizer.state_dict())
        return out

    def load_state(self, state: Mapping[str, Any]) -> None:
        if self.model is not None:
            self.model.load_state_dict(state["model"])
        else:
            self.runner.set_weights(state["weights"])
        if self._torch_optimizer is not None and state.get("optimizer") is not None:
            self._torch_optimizer.load_state_dict(state["optimizer"])
        self.set_lr_factor(state.get("lr_factor", 1.0))

    # ----------------------------------------------------------------- measures
    def measures(self, record: Mapping[str, float]) -> dict[str, float]:
        """The ``[record]`` measures of the current weights."""
        rec, out = self.config.record, {}
        if rec.relative_error:
            out["relative_error"] = record["test_loss"] / self._zero_loss if self._zero_loss else None
        if rec.train_accuracy:
            ds = self.dataset
            out["train_loss_full"], out["train_accuracy"] = evaluate(self.runner, ds.x_train, ds.y_train,
                                                                     ds.labels_train)
        if rec.alignment or rec.weight_norms:
            out.update(self._model_measures() if self.model is not None else self._circuit_measures())
        return out

    # ----------------------------------------------------------------- snapshots
    def snapshot(self, epoch: int, folder: Path) -> list[Path]:
        """Write the ``[record]`` snapshots due at ``epoch`` (weights, activity) into
        ``folder/snapshots``, each atomically; the paths written."""
        rec, written = self.config.record, []
        due = [(kind, every) for kind, every in (("weights", rec.weights_every), ("activity", rec.activity_every))
               if every is not None and epoch % every == 0]
        for kind, _ in due:
            arrays = self._weight_arrays() if kind == "weights" else self._activity()
            written.append(_write_npz(folder / SNAPSHOTS / f"{kind}_{epoch:04d}.npz", arrays))
        return written

    def snapshot_step(self, step: int, folder: Path) -> Path:
        """Write the weights after ``step`` optimisation steps as snapshots/weights_step_STEP.npz
        (``[record] weights_every_steps``), atomically; its path."""
        return _write_npz(folder / SNAPSHOTS / step_snapshot_name(step), self._weight_arrays())

    def _weight_arrays(self) -> dict[str, np.ndarray]:
        if self.model is not None:
            return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        return {k: np.asarray(v) for k, v in self.runner.get_weights().items()}

    def _activity(self) -> dict[str, np.ndarray]:
        ds = self.dataset
        n = min(self.config.record.activity_samples, len(ds.x_test))
        probe = ds.x_test[:n]
        out = {"labels": np.asarray(ds.labels_test[:n])}
        if self.model is None:
            from ..rules._base import forward

            # the rates of the rule's forward pass with the runner's current weights: the same on
            # every backend (Brian2's settled rates agree with it to the equivalence tolerance)
            _, h = forward(self.runner.get_weights(), np.asarray(probe, dtype=np.float64),
                           self.circuit.n_layers, self.circuit.activation)
            out.update({f"h{l}": h[l] for l in range(1, len(h))})
            return out
        from ..torch.convert import FEEDBACK_TYPES

        found: dict[str, np.ndarray] = {}
        hooks = [m.register_forward_hook(lambda _m, _i, y, name=name: found.__setitem__(
                     name, y.detach().cpu().numpy().astype(np.float64)))
                 for name, m in self.model.named_modules() if isinstance(m, FEEDBACK_TYPES)]
        try:
            self.runner.predict(probe)
        finally:
            for h in hooks:
                h.remove()
        out.update(found)
        return out

    def _circuit_measures(self) -> dict[str, float]:
        from ..metrics import alignment_angle, feedback_matrices

        rec, out = self.config.record, {}
        weights = self.runner.get_weights()
        L = self.circuit.n_layers
        if rec.alignment:
            direct = self.circuit.learning_rule.topology == "direct"
            for l, B in sorted(feedback_matrices(weights, self.circuit).items()):
                if direct:  # B_l (n_l, d) against the transpose of W_L ... W_{l+1}
                    M = weights[f"W{L}"]
                    for k in range(L - 1, l, -1):
                        M = M @ weights[f"W{k}"]
                    out[f"alignment_{l}"] = alignment_angle(B, M)
                else:
                    out[f"alignment_{l}"] = alignment_angle(B, weights[f"W{l}"])
        if rec.weight_norms:
            for l in range(1, L + 1):
                out[f"norm_W{l}"] = float(np.linalg.norm(weights[f"W{l}"]))
        return out

    def _model_measures(self) -> dict[str, float]:
        from ..metrics import alignment_angle

        rec, out = self.config.record, {}
        for name, module in self.model.named_modules():
            weight = getattr(module, "weight", None)
            if weight is None or weight.ndim != 2:
                continue
            W = weight.detach().double().cpu().numpy()
            if rec.weight_norms:
                out[f"norm_{name}"] = float(np.linalg.norm(W))
            if rec.alignment:
                P, Q, B = (getattr(module, k, None) for k in ("P", "Q", "B"))
                if P is not None and Q is not None:
                    B = Q.detach().double() @ P.detach().double()
                if B is not None and tuple(B.shape) == W.T.shape:
                    out[f"alignment_{name}"] = alignment_angle(B.detach().double().cpu().numpy(), W)
        return out


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(exist_ok=True)
    write_bytes(path, buffer.getvalue())
    return path


def step_snapshot_name(step: int) -> str:
    """File name of the weight snapshot after ``step`` optimisation steps."""
    return f"weights_step_{step:07d}.npz"


def step_snapshots(folder: str | os.PathLike) -> dict[int, Path]:
    """A run folder's weight snapshots by step (``[record] weights_every_steps``): step -> path,
    in step order."""
    found = {}
    for path in (Path(folder) / SNAPSHOTS).glob("weights_step_*.npz"):
        digits = path.stem.rsplit("_", 1)[-1]
        if digits.isdigit():
            found[int(digits)] = path
    return dict(sorted(found.items()))


def load_snapshot(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of one snapshot file, by weight key."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


# --------------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------------

def rng_states(data_rng: np.random.Generator) -> dict[str, Any]:
    """The state of every generator a run draws from: the data order's, numpy's, python's, torch's."""
    out: dict[str, Any] = {"data": data_rng.bit_generator.state, "numpy": np.random.get_state(),
                           "python": random.getstate()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(data_rng: np.random.Generator, states: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_states` saved."""
    data_rng.bit_generator.state = states["data"]
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "torch" in states:
        import torch

        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------

class RunLog:
    """log.txt of a run: timestamped lines, appended and flushed."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, text: str) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path, "a") as fh:
            fh.write("".join(f"{stamp}  {line}\n" for line in text.splitlines() or [""]))


@contextlib.contextmanager
def threads(n: int, torch: bool):
    """BLAS (and torch, if ``torch``) limited to ``n`` threads inside the block."""
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        if torch:
            import torch as _torch

            before = _torch.get_num_threads()
            _torch.set_num_threads(n)
            stack.callback(_torch.set_num_threads, before)
        yield


@functools.lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    return {"versions": versions(), "git_sha": git_sha(), "host": platform.node(),
            "platform": platform.platform()}


def _write_status(folder: Path, state: str, epoch: int, error: str | None = None, *, fsync: bool = True,
                  **more) -> None:
    write_json(folder / STATUS, {"state": state, "epoch": epoch, "error": error, **more}, fsync=fsync)


def _result(run_id: str, folder: Path, status: Mapping[str, Any] | None = None) -> dict:
    status = status or read_status(folder) or {"state": "failed", "epoch": 0, "error": "no status.json"}
    metrics = read_metrics(folder)
    out = {"run_id": run_id, "state": status["state"], "epoch": status["epoch"],
           "metrics": metrics[-1] if metrics else None, "error": status.get("error")}
    if "step" in status:  # where a diverged run's loss stopped being finite
        out["step"] = status["step"]
    return out


def _same_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return canonical(a) == canonical(b)


def execute(run: Mapping[str, Any], out_dir: str | os.PathLike, resume: bool = True) -> dict:
    """Train one resolved run and write its folder ``out_dir/runs/<run_id>`` (module docstring).

    Parameters
    ----------
    run : mapping
        A resolved run (:func:`bioplastic.experiment.study.resolve`): every setting, ``seed``,
        ``run_id``; plain JSON values.
    out_dir : path
        The study's output folder.
    resume : bool
        Skip the run if it finished or diverged; continue it from its checkpoint if it was
        interrupted (or failed). False: start over, whatever the folder holds.

    Returns
    -------
    dict
        ``run_id``, ``state`` (finished, diverged or failed), ``epoch`` (the last completed one; where
        it diverged), ``metrics`` (the last metrics line) and ``error`` (None, or what went wrong).
    """
    config = RunConfig.model_validate(dict(run))
    run = config.model_dump(mode="json")
    folder = run_folder(out_dir, config.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder):
        # a process SIGKILLed while writing leaves its temporary file (never the file itself, which
        # os.replace swaps whole); under the lock no other writer exists, so clear them
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return _execute(config, run, folder, resume)


@contextlib.contextmanager
def run_lock(folder: Path):
    """Hold the run folder's lock (``.lock``, an exclusive ``flock``) inside the block.

    One process at a time trains a run: a pool worker orphaned by a killed study finishes its run
    before a resumed study, waiting here, reads it as done. The operating system releases the lock
    of a process that dies, SIGKILL included. (No lock where ``fcntl`` is missing: Windows.)
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _execute(config: RunConfig, run: dict, folder: Path, resume: bool) -> dict:
    status = read_status(folder) if resume else None
    if status is not None and status["state"] in DONE:
        return _result(config.run_id, folder, status)
    log = RunLog(folder / LOG)
    saved = folder / CONFIG
    if resume and saved.exists():
        previous = json.loads(saved.read_text()).get("config", {})
        if not _same_settings(previous, run):
            raise ValueError(f"{folder} holds a run with other settings than {config.run_id!r} has now; "
                             "use another output folder, or delete that run to start it again")
    else:
        for name in (METRICS, CHECKPOINT, STATUS, LOG):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        for old in (folder / SNAPSHOTS).glob("*.npz"):  # a fresh start's snapshots are its own
            old.unlink()
        write_json(saved, {"run_id": config.run_id, "seed": config.seed, "config": run, **_provenance(),
                           "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}, fsync=True)
    uses_torch = config.model is not None or config.backend.name == "torch"
    try:
        with threads(config.backend.threads, torch=uses_torch):
            return _train(config, folder, resume, log)
    except Exception as err:  # the run failed: say so in its folder, keep what it wrote
        log(f"failed:\n{traceback.format_exc()}")
        last = read_metrics(folder)
        _write_status(folder, "failed", last[-1]["epoch"] if last else 0, f"{type(err).__name__}: {err}")
        return _result(config.run_id, folder)


def _train(config: RunConfig, folder: Path, resume: bool, log: RunLog) -> dict:
    for path in reversed(config.import_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    for module in config.imports:
        importlib.import_module(module)
    dataset = load_task(config.task)
    job = Job(config, dataset)
    seed_everything(config.seed)  # after building, which imports torch when the run needs it
    data_rng = np.random.default_rng(config.seed)
    epochs, every = config.training.epochs, config.training.checkpoint_every
    checkpoint, metrics = folder / CHECKPOINT, folder / METRICS

    training = config.training
    step_every = config.record.weights_every_steps
    lines: list[dict] = []
    history = None
    step = 0  # optimisation steps so far, across epochs and resumes (step snapshots are named by it)
    n_train, size = len(dataset.x_train), training.batch_size
    per_epoch = n_train // size if training.drop_last else -(-n_train // size)
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        job.load_state(state["state"])
        set_rng_states(data_rng, state["rng"])
        lines = list(state["metrics"])
        step = state.get("step", state["epoch"] * per_epoch)  # checkpoints before steps were kept
        # back to the checkpoint's epoch: the epochs after it are trained again, to the same numbers
        write_bytes(metrics, "".join(json_text(line, indent=None) + "\n" for line in lines).encode())
        history = History(**{k: tuple(line[k] for line in lines)
                             for k in ("train_loss", "test_loss", "test_accuracy", "time", "epoch")})
        log(f"resumed from the checkpoint of epoch {state['epoch']}")
    else:
        with contextlib.suppress(FileNotFoundError):
            metrics.unlink()
        log(f"started: {config.run_id} ({'circuit ' + config.circuit.builder if config.circuit else 'model ' + config.model.name}"
            f", rule {config.feedback.rule}, backend {config.backend.name}, {epochs} epochs)")
    start = history.epochs if history is not None else 0
    _write_status(folder, "running", start)

    def before_epoch(epoch: int) -> None:
        job.set_lr_factor(lr_factor(config.schedule, epoch, epochs))

    def on_step() -> None:
        nonlocal step
        step += 1
        if step_every is not None and step % step_every == 0:
            job.snapshot_step(step, folder)

    def on_epoch(epoch: int, record: dict) -> None:
        nonlocal step
        if step_every is None:  # no step hook (a Brian2 circuit then simulates whole epochs)
            step = epoch * per_epoch
        line = {"epoch": epoch, **record, **job.measures(record)}
        append_jsonl(metrics, line)
        lines.append(to_jsonable(line))  # as written: non-finite values are null
        job.snapshot(epoch, folder)
        if step_every is not None and (epoch == 0 or epoch == epochs and step % step_every):
            job.snapshot_step(step, folder)  # before training, and after the last step
        if epoch and every and (epoch % every == 0 or epoch == epochs):
            save_checkpoint(checkpoint, {"run_id": config.run_id, "epoch": epoch, "step": step,
                                         "state": job.state(), "rng": rng_states(data_rng),
                                         "metrics": list(lines)})
        # atomic; not synced: the epoch count of a running run is news, the metrics are the record
        _write_status(folder, "running", epoch, fsync=False)
        log(f"epoch {epoch}: train loss {record['train_loss']:.6g}, test loss {record['test_loss']:.6g}, "
            f"test accuracy {record['test_accuracy']:.4f}")

    try:
        train(job.runner, dataset, epochs, training.batch_size, rng=data_rng, history=history,
              on_epoch=on_epoch, before_epoch=before_epoch, on_step=on_step if step_every is not None else None,
              eval_every=training.eval_every,
              drop_last=training.drop_last, shuffle=training.shuffle)
    except Diverged as err:
        log(f"diverged: {err}")
        _write_status(folder, "diverged", err.epoch, str(err), step=err.step)
        return _result(config.run_id, folder)
    log("finished")
    _write_status(folder, "finished", epochs)
    return _result(config.run_id, folder)


__all__ = ["CHECKPOINT", "CONFIG", "DONE", "Job", "LOCK", "LOG", "METRICS", "ModelRunner", "SNAPSHOTS", "STATES",
           "STATUS", "execute", "load_checkpoint", "load_snapshot", "load_task", "lr_factor", "preload",
           "read_metrics", "read_status", "rng_states", "run_folder", "run_lock", "save_checkpoint",
           "set_rng_states", "step_snapshot_name", "step_snapshots", "task_key"]
