"""The ``bioplastic`` command (also ``python -m bioplastic``).

Subcommands live in :data:`COMMANDS`; add one with :func:`register_command`, as ``bench`` is:

* ``demo``: the main job, every learning rule on the bundled digits
  (:func:`analyses/demo.py`);
* ``analysis NAME [--key=value ...]``: run ``analyses/NAME.py``'s ``main(argv)``;
* ``info``: versions, backends, data folder;
* ``bench``: training-step time of ldfa against bp (:mod:`bioplastic.bench.step_time`).

Heavy imports (numpy, matplotlib, torch) happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure(parser)`` adds its arguments, ``run(args) -> exit status``."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: Subcommand name -> Command; every registration below, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}


def register_command(name: str, help: str, configure: Callable, run: Callable,
                     description: str | None = None) -> None:
    """Add subcommand ``name``; refuses a name already taken."""
    if name in COMMANDS:
        raise ValueError(f"command {name!r} is already registered; taken: {', '.join(COMMANDS)}")
    COMMANDS[name] = Command(help, configure, run, description)


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, help="epochs per run (default 50)")
    p.add_argument("--seeds", type=_positive_int, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument("--out", default="results/demo", help="output folder (default results/demo)")
    p.add_argument("--backend", choices=("reference", "torch"), default=None,
                   help="reference (numpy float64, default) or torch")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (torch backend only)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="torch precision (torch backend only; default float32)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: one per core on reference, 1 on torch)")
    p.add_argument("--quick", action="store_true",
                   help="tiny run (1 seed, 2 epochs) to check that everything works")
    p.add_argument("--config", type=Path, default=None,
                   help="rerun the config of an earlier run (its config.json); other options override it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--brian2", action="store_true",
                   help="instead: train the Brian2 ldfa circuit (64-100-10, r = 4) on the digits and "
                        "compare it with the reference backend (analyses/brian2_digits.py; output "
                        "results/demo_brian2 unless --out is given)")


def _run_brian2_demo(args: argparse.Namespace) -> int:
    """The circuit sub-demo: analyses/brian2_digits.py with the demo's options translated."""
    out = "results/demo_brian2" if args.out == "results/demo" else args.out
    options = [f"--out={out}"]
    if args.quick:  # no compiler needed: Brian2's numpy target, one epoch, a two-point settle sweep
        options += ["--epochs=1", "--device=runtime", "--target=numpy", "--sweep_steps=8,40"]
    if args.epochs is not None:
        options.append(f"--epochs={args.epochs}")
    return _run_analysis(argparse.Namespace(name="brian2_digits", options=options))


def _run_demo(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    if args.brian2:
        ignored = [f"--{k}" for k in ("backend", "seeds", "jobs", "config", "device", "dtype")
                   if getattr(args, k, None) is not None]
        if ignored:
            print(f"bioplastic demo --brian2 takes --epochs, --out and --quick; not {', '.join(ignored)}",
                  file=sys.stderr)
            return 2
        return _run_brian2_demo(args)

    demo = load_analysis("demo")
    DemoConfig, run_demo = demo.DemoConfig, demo.run_demo

    if args.config is not None:
        try:
            saved = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"bioplastic demo: cannot read --config {args.config}: {err}", file=sys.stderr)
            return 2
        try:
            cfg = DemoConfig.from_dict(saved.get("config", saved))
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            print(f"bioplastic demo: bad --config {args.config}: {err}", file=sys.stderr)
            return 2
    else:
        cfg = DemoConfig()
    changes = {}
    if args.quick:
        changes.update(epochs=2, seeds=(0,))
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.seeds is not None:
        changes["seeds"] = tuple(range(args.seeds))
    for key in ("backend", "dtype", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    try:
        cfg = dataclasses.replace(cfg, **changes)
    except ValueError as err:
        print(f"bioplastic demo: {err}", file=sys.stderr)
        return 2
    if cfg.backend == "torch" and importlib.util.find_spec("torch") is None:
        print("bioplastic demo: the torch backend is not available in this installation; "
              "use --backend reference", file=sys.stderr)
        return 2
    jobs = 1 if args.quick and args.jobs is None else args.jobs
    try:
        results = run_demo(cfg, args.out, jobs=jobs, progress=not args.quiet)
    except (ValueError, TypeError, KeyError) as err:
        print(f"bioplastic demo: {err}", file=sys.stderr)
        return 2
    print(demo.format_table(results["table"]))
    seeds = f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    print(f"\n{len(results['table'])} conditions x {seeds} x {epochs} in "
          f"{results['total_time']:.1f} s; final test accuracy, mean +- sd over seeds. "
          f"Results and figures: {args.out}/")
    return 0


register_command(
    "demo", "train one MLP on the bundled digits with every learning rule (the main job)",
    _configure_demo, _run_demo,
    description="Train the same MLP (64-128-128-10, ReLU) on scikit-learn's bundled handwritten "
                "digits with bp, fa, dfa, kp and ldfa (subspace fixed, local, normative; r = 1 and "
                "r = 10), over several seeds. Prints a table of final test accuracy (mean +- sd) and "
                "time, and writes config.json, results.json, table.md and learning-curve figures.")


# --------------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------------

def analyses_dir() -> Path:
    """The ``analyses/`` folder next to the ``bioplastic`` package (present in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "analyses"


def available_analyses(folder: Path | None = None) -> list[str]:
    """Names of the scripts in ``analyses/`` (``NAME.py``, not starting with ``_``), sorted."""
    folder = analyses_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_") and p.stem != "demo")


def load_analysis(name: str):
    """Import ``analyses/NAME.py`` of the checkout as the module ``analyses.NAME`` (used for the demo).

    The checkout's root goes on ``sys.path`` (spawned worker processes inherit it), so the module
    has an importable name and its dataclasses and worker functions pickle.
    """
    root = str(analyses_dir().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"analyses.{name}")


def _configure_analysis(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="analysis to run (omit to list them)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="--key=value settings of its Config")


def _run_analysis(args: argparse.Namespace) -> int:
    folder = analyses_dir()
    names = available_analyses(folder)
    if args.name is None:
        print("available analyses: " + (", ".join(names) if names else f"none (in {folder})"))
        return 0
    if args.name not in names:
        listing = ", ".join(names) if names else f"none found in {folder}"
        print(f"bioplastic analysis: unknown analysis {args.name!r}; valid options: {listing}",
              file=sys.stderr)
        return 2
    path = folder / f"{args.name}.py"
    # the analyses are scripts, not a package: load by path, with their folder importable so that
    # they can share helper modules (analyses/_common.py and the like)
    spec = importlib.util.spec_from_file_location(f"bioplastic_analysis_{args.name}", path)
    module = importlib.util.module_from_spec(spec)
    # registered before it runs: dataclasses (and pickle) look the defining module up by name
    sys.modules[spec.name] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            print(f"bioplastic analysis: {path} defines no main(argv)", file=sys.stderr)
            return 2
        status = module.main(list(args.options))
    finally:
        sys.path.remove(str(folder))
    # an int is an exit status; anything else (analyses often return their results) means success
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


register_command(
    "analysis", "run one analysis script, analyses/NAME.py, with --key=value settings",
    _configure_analysis, _run_analysis,
    description="Run analyses/NAME.py's main(argv), passing the --key=value options through. "
                "Without NAME, list the available analyses.")


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------

def _configure_info(p: argparse.ArgumentParser) -> None:
    pass


def _run_info(args: argparse.Namespace) -> int:
    import os

    from .backends import BACKENDS
    from .data import DATA_ENV, DATASETS, data_root
    from .experiment import git_sha, versions

    print("versions:")
    for name, version in versions().items():
        print(f"  {name:<13} {version or 'not installed'}")
    print(f"  {'git commit':<13} {git_sha() or 'unknown (not a git checkout)'}")
    print("backends:")
    for name, module in BACKENDS.items():
        spec = importlib.util.find_spec(module)
        # an empty folder is a namespace package: found, but not a backend yet
        ok = spec is not None and spec.origin not in (None, "namespace")
        print(f"  {name:<13} {'available' if ok else 'not available'} ({module})")
    root = data_root()
    print(f"data sets: {', '.join(DATASETS)}")
    print(f"data folder: {root} ({'exists' if root.is_dir() else 'missing'}; set ${DATA_ENV} to change)")
    names = available_analyses()
    print(f"analyses: {', '.join(names) if names else 'none'}")
    print(f"cpu cores: {os.cpu_count()}")
    return 0


register_command("info", "versions, backends, data folder", _configure_info, _run_info)


# --------------------------------------------------------------------------------------------------
# bench (bioplastic/bench.py owns its arguments and its run)
# --------------------------------------------------------------------------------------------------

def _configure_bench(p: argparse.ArgumentParser) -> None:
    from .bench.step_time import configure_parser

    configure_parser(p)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench.step_time import run_cli

    return run_cli(args)


register_command(
    "bench", "time a training step of ldfa against backprop (torch), measured and counted",
    _configure_bench, _run_bench,
    description="Training-step time of LDFA against backprop on the paper's models, with the "
                "analytic FLOP count next to the measured ratio (see bioplastic/bench.py).")


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`COMMANDS`."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bioplastic",
        description="Learning without backpropagation, with low-dimensional error feedback (LDFA). "
                    "Start with: bioplastic demo")
    parser.add_argument("--version", action="version", version=f"bioplastic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "Command", "analyses_dir", "available_analyses", "main", "make_parser",
           "register_command"]
