"""The training loop over the runner contract (``train_step``, ``predict``): per-epoch history,
evaluation, divergence detection."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import Dataset


@dataclass(frozen=True)
class History:
    """Per-epoch record of one training run; index = epoch, entry 0 before any training.

    Attributes
    ----------
    train_loss : tuple of float
        Entry 0: loss on the whole training set before training; entry k: mean of the batch losses
        of epoch k (each taken before its step, as the runner returns it).
    test_loss, test_accuracy : tuple of float
        On the test set after each epoch (accuracy: fraction of argmax hits).
    time : tuple of float
        Seconds spent in training steps up to the end of each epoch (evaluation excluded).
    epoch : tuple of int
        The epoch of each entry (0, 1, 2, ... unless ``train`` evaluated every ``eval_every``
        epochs; empty in a History built without it: entry k is then epoch k). With ``eval_every``
        > 1 an entry's train_loss is the mean batch loss since the previous entry.
    """

    train_loss: tuple = ()
    test_loss: tuple = ()
    test_accuracy: tuple = ()
    time: tuple = ()
    epoch: tuple = ()

    @property
    def epochs(self) -> int:
        """Number of trained epochs (the last evaluated one)."""
        if self.epoch:
            return int(self.epoch[-1])
        return max(len(self.test_accuracy) - 1, 0)

    def to_dict(self) -> dict[str, list]:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}


class Diverged(FloatingPointError):
    """Training produced a NaN or infinite loss; ``history`` holds the epochs completed before it.

    Attributes
    ----------
    epoch, step : int
        Where the loss stopped being finite (epoch from 1, step from 0; step None when a runner
        that simulates a whole epoch at once diverged somewhere in it).
    history : History
    """

    def __init__(self, epoch: int, step: int | None, loss: float, history: History, detail: str = ""):
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
        # the runner's own message (``detail``) says what went non-finite and what to lower
        super().__init__(f"training diverged at {where}: " + (detail or f"loss = {loss}. Lower the "
                                                                         "learning rate (lr / feedback_lr)."))
        self.epoch, self.step, self.history = epoch, step, history


def evaluate(runner, x: np.ndarray, y: np.ndarray, labels: np.ndarray, batch_size: int = 2048
             ) -> tuple[float, float]:
    """(loss averaged over samples, argmax accuracy) of ``runner`` on a data set: the runner's own
    ``batch_loss(yhat, y)`` (summed over a batch) where it has one, else 1/2||yhat - y||^2."""
    total, hits = 0.0, 0
    batch_loss = getattr(runner, "batch_loss", None)
    for start in range(0, x.shape[0], batch_size):
        yhat = np.asarray(runner.predict(x[start:start + batch_size]), dtype=np.float64)
        target = y[start:start + batch_size]
        total += (batch_loss(yhat, target) if batch_loss is not None
                  else 0.5 * float(np.sum((yhat - target) ** 2)))
        hits += int(np.sum(yhat.argmax(axis=1) == labels[start:start + batch_size]))
    return total / x.shape[0], hits / x.shape[0]


def train(runner, dataset: Dataset, epochs: int, batch_size: int, seed: int = 0,
          on_epoch: Callable[[int, dict], None] | None = None,
          augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None, *,
          rng: np.random.Generator | None = None, history: History | None = None,
          before_epoch: Callable[[int], None] | None = None,
          on_step: Callable[[], None] | None = None, eval_every: int = 1, drop_last: bool = False,
          shuffle: bool = True) -> History:
    """Train ``runner`` on ``dataset`` by mini-batch steps, evaluating after every epoch.

    Parameters
    ----------
    runner : runner
        Anything with ``train_step(x, y) -> float`` and ``predict(x) -> (batch, d)``.
    dataset : Dataset
        Inputs are passed as stored: load flat data (``flatten=True``) for MLP circuits.
    epochs : int
        Passes over the training set (0 only evaluates).
    batch_size : int
    seed : int
        Seeds the shuffling (and augmentation) generator.
    on_epoch : callable, optional
        ``on_epoch(epoch, record)`` after each evaluation (epoch 0 included); ``record`` holds this
        epoch's ``train_loss``, ``test_loss``, ``test_accuracy``, ``time``.
    augment : callable, optional
        See :meth:`Dataset.batches`.
    rng : numpy Generator, optional
        The shuffling generator itself, instead of one seeded by ``seed`` (to continue a run: the
        caller can save its state after each epoch, in ``on_epoch``).
    history : History, optional
        The epochs already done (a run resumed from a checkpoint taken after epoch
        ``history.epochs``): training continues with the next epoch, without evaluating epoch 0 again,
        and the History returned holds them all.
    before_epoch : callable, optional
        ``before_epoch(epoch)`` before the steps of each epoch (from 1), e.g. to set a learning rate.
    on_step : callable, optional
        ``on_step()`` after every optimisation step whose loss is finite (e.g. to count steps and
        snapshot the weights). Without it, a runner whose ``train_epoch`` simulates an epoch as
        one run (``simulates_epochs = True``: the Brian2 circuits) gets each epoch's batches, in
        the same order, in one call: the same batches and steps as one ``train_step`` per batch,
        without a simulation start per batch (a rate circuit then carries its state from one
        presentation to the next, which moves the weights within its settling error; a spiking
        circuit draws other spike trains).
    eval_every : int
        Evaluate (and call ``on_epoch``) after every ``eval_every``-th epoch and the last; the
        train_loss then is the mean batch loss over the epochs since the previous evaluation.
    drop_last : bool
        Skip each epoch's final batch when it is smaller than ``batch_size``.
    shuffle : bool
        Shuffle the training order every epoch with ``rng``; False: the stored order (``rng`` is
        not drawn from).

    Returns
    -------
    History

    Raises
    ------
    Diverged
        (a FloatingPointError) when a loss becomes NaN or infinite, or the runner raises a
        FloatingPointError of its own (a circuit that went non-finite); it carries the history so far.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0; got {epochs!r}")
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1; got {eval_every!r}")
    rng = np.random.default_rng(seed) if rng is None else rng
    cols: dict[str, list] = {"train_loss": [], "test_loss": [], "test_accuracy": [], "time": [], "epoch": []}
    start = 0
    if history is not None and history.test_accuracy:
        cols = {k: list(v) for k, v in history.to_dict().items()}
        if not cols["epoch"]:
            cols["epoch"] = list(range(len(cols["test_accuracy"])))
        start = history.epochs
        if start > epochs:
            raise ValueError(f"the history holds {start} epochs, more than epochs={epochs}")

    def record(epoch: int, train_loss: float, elapsed: float) -> None:
        test_loss, acc = evaluate(runner, dataset.x_test, dataset.y_test, dataset.labels_test)
        rec = {"train_loss": train_loss, "test_loss": test_loss, "test_accuracy": acc, "time": elapsed}
        for key, value in rec.items():
            cols[key].append(value)
        cols["epoch"].append(epoch)
        if on_epoch is not None:
            on_epoch(epoch, rec)

    if history is None or not history.test_accuracy:
        record(0, evaluate(runner, dataset.x_train, dataset.y_train, dataset.labels_train)[0], 0.0)
    elapsed = cols["time"][-1]
    # overflow is detected below from the loss and reported with its context, not as numpy warnings
    whole_epochs = on_step is None and getattr(runner, "simulates_epochs", False)

    def so_far() -> History:
        return History(**{k: tuple(v) for k, v in cols.items()})

    with np.errstate(over="ignore", invalid="ignore"):
        losses = []
        for epoch in range(start + 1, epochs + 1):
            if before_epoch is not None:
                before_epoch(epoch)
            t0 = time.perf_counter()
            batches = dataset.batches(batch_size, rng if shuffle else None, augment=augment,
                                      drop_last=drop_last)
            if whole_epochs:  # one simulation for the epoch's batches, in their order
                pairs = list(batches)
                batches = ()
                try:
                    epoch_losses = np.asarray(runner.train_epoch(
                        np.concatenate([xb for xb, _ in pairs]), np.concatenate([yb for _, yb in pairs]),
                        batch_size=batch_size), dtype=float) if pairs else np.zeros(0)
                except FloatingPointError as err:  # the runner's own divergence error
                    raise Diverged(epoch, None, float("nan"), so_far(), str(err)) from err
                bad = np.flatnonzero(~np.isfinite(epoch_losses))
                if bad.size:
                    raise Diverged(epoch, int(bad[0]), float(epoch_losses[bad[0]]), so_far())
                losses.extend(epoch_losses.tolist())
            for step, (xb, yb) in enumerate(batches):
                try:
                    loss = runner.train_step(xb, yb)
                except FloatingPointError as err:
                    raise Diverged(epoch, step, float("nan"), so_far(), str(err)) from err
                if not np.isfinite(loss):
                    raise Diverged(epoch, step, loss, so_far())
                losses.append(loss)
                if on_step is not None:  # its time (a snapshot's write) is not training time
                    t1 = time.perf_counter()
                    on_step()
                    t0 += time.perf_counter() - t1
            elapsed += time.perf_counter() - t0
            if epoch % eval_every == 0 or epoch == epochs:
                record(epoch, float(np.mean(losses)), elapsed)
                losses = []
    return so_far()
