"""The ``bioplastic`` command (also ``python -m bioplastic``).

Subcommands live in :data:`COMMANDS`; add one with :func:`register_command`, as ``bench`` is:

* ``demo [--key=value ...]``: the main job, a small CNN trained with every learning rule on the
  bundled MNIST digits (``analyses/demo.py``);
* ``analysis NAME [--key=value ...]``: run ``analyses/NAME.py``'s ``main(argv)``;
* ``info``: versions, backends, data folder;
* ``bench [--key=value ...]``: training-step time of ldfa against bp
  (:mod:`bioplastic.bench.step_time`);
* ``run STUDY.toml [--out DIR] [--resume] [--executor KIND] [--jobs N] [-q]``: every run of a study
  file (:mod:`bioplastic.experiment.study`, :mod:`bioplastic.experiment.launch`);
* ``summarize DIR [--metric M] [--by KEY] [--lines KEY] [--plot PATH] [--csv PATH]``: a study
  folder's table across seeds (:mod:`bioplastic.experiment.summarize`).

``demo``, ``analysis`` and ``bench`` read their settings one way
(:func:`bioplastic.experiment.cmdline.parse_command_line`): ``--key=value`` or ``--key value`` for a
field of the config, lists comma-separated (``--seeds=0,1,2``), ``--quick``, ``--config FILE``,
``-q``, ``--help``; a mistake is reported on stderr with exit status 2.

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
    """A subcommand: ``configure(parser)`` adds its arguments, ``run(args) -> exit status``.

    A ``passthrough`` command reads its own arguments: ``args.argv`` holds everything after its
    name, and ``configure`` only describes it for ``bioplastic --help``.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None
    passthrough: bool = False


#: Subcommand name -> Command; every registration below, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}


def register_command(name: str, help: str, configure: Callable, run: Callable,
                     description: str | None = None, passthrough: bool = False) -> None:
    """Add subcommand ``name``; refuses a name already taken."""
    if name in COMMANDS:
        raise ValueError(f"command {name!r} is already registered; taken: {', '.join(COMMANDS)}")
    COMMANDS[name] = Command(help, configure, run, description, passthrough)


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------

DEMO_DESCRIPTION = (
    "Train one small CNN (5x5 convs with 16 and 32 maps, FC 128) on the 5000 real MNIST digits "
    "bundled with the package with bp, fa, kp and ldfa (subspace fixed, normative, local, oja; "
    "r = 1 and r = d = 10), Adam. Prints a table of final test accuracy and time and one sentence "
    "per claim of arXiv 2502.20580, computed from the numbers, and writes config.json, results.json, "
    "table.md, claims.md and figures (learning curves, accuracy by rule and rank; PNG and SVG).")


def _run_brian2_demo(cl) -> int:
    """The circuit sub-demo: analyses/brian2_digits.py with the demo's settings passed on."""
    other = sorted(cl.given - {"epochs", "out", "brian2"})
    other += ["config"] if cl.config_file is not None else []
    if other:
        print("bioplastic demo --brian2 takes --epochs, --out, --quick and -q; not "
              + ", ".join(f"--{k}" for k in other), file=sys.stderr)
        return 2
    out = cl.options.out if "out" in cl.given else "results/demo_brian2"
    argv = ["brian2_digits", f"--out={out}"] + (["--quick"] if cl.quick else [])
    argv += [f"--epochs={cl.config.epochs}"] if "epochs" in cl.given else []
    return _run_analysis(argparse.Namespace(argv=argv + (["-q"] if cl.quiet else [])))


def _run_demo(args: argparse.Namespace) -> int:
    from .experiment.cmdline import parse_command_line

    demo = load_analysis("demo")
    cl = parse_command_line(demo.DemoConfig(), args.argv, prog="bioplastic demo",
                            options=demo.DemoOptions(), quick=demo.QUICK,
                            description=DEMO_DESCRIPTION)
    if cl.options.brian2:
        return _run_brian2_demo(cl)
    cfg, out = cl.config, cl.options.out
    if importlib.util.find_spec("torch") is None:
        print("bioplastic demo: the demo trains a torch model, and torch is not available in this "
              "installation (pip install torch)", file=sys.stderr)
        return 2
    try:
        results = demo.run_demo(cfg, out, jobs=cl.options.jobs, progress=not cl.quiet,
                                **({"resume": True} if cl.options.resume else {}))
    except (ValueError, TypeError, KeyError) as err:
        print(f"bioplastic demo: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a run failed: the others ran, its log says why
        print(f"bioplastic demo: {err}", file=sys.stderr)
        return 1
    print(demo.format_table(results["table"]))
    seeds = f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    print(f"\n{len(results['table'])} conditions x {seeds} x {epochs} in "
          f"{results['total_time']:.1f} s; final test accuracy, mean +- sd over seeds. "
          f"Results and figures: {out}/")
    for line in [c["sentence"] for c in results.get("claims", [])] + list(results.get("notes", [])):
        print(f"\n{line}")
    return 0


register_command(
    "demo", "train a small CNN on the bundled MNIST digits with every learning rule (the main job)",
    _no_arguments, _run_demo, passthrough=True,
    description=DEMO_DESCRIPTION + " Settings: --key=value (bioplastic demo --help).")


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


ANALYSIS_USAGE = ("usage: bioplastic analysis NAME [--key=value ...] [--quick] [--config FILE] [-q] [-h]\n"
                  "Runs analyses/NAME.py's main(argv); bioplastic analysis NAME --help lists its "
                  "settings, bioplastic analysis alone the analyses.")


def _run_analysis(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    name = argv.pop(0) if argv and not argv[0].startswith("-") else None
    if name is None and argv:
        if argv[0] in ("-h", "--help"):
            print(ANALYSIS_USAGE)
            return 0
        print(f"bioplastic analysis: name the analysis before its settings\n{ANALYSIS_USAGE}",
              file=sys.stderr)
        return 2
    folder = analyses_dir()
    names = available_analyses(folder)
    if name is None:
        print("available analyses: " + (", ".join(names) if names else f"none (in {folder})"))
        return 0
    if name not in names:
        listing = ", ".join(names) if names else f"none found in {folder}"
        print(f"bioplastic analysis: unknown analysis {name!r}; valid options: {listing}",
              file=sys.stderr)
        return 2
    path = folder / f"{name}.py"
    # the analyses are scripts, not a package: load by path, with their folder importable so that
    # they can share helper modules (analyses/_common.py and the like)
    spec = importlib.util.spec_from_file_location(f"bioplastic_analysis_{name}", path)
    module = importlib.util.module_from_spec(spec)
    # registered before it runs: dataclasses (and pickle) look the defining module up by name
    sys.modules[spec.name] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            print(f"bioplastic analysis: {path} defines no main(argv)", file=sys.stderr)
            return 2
        status = module.main(argv)
    finally:
        sys.path.remove(str(folder))
    # an int is an exit status; anything else (analyses often return their results) means success
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


register_command(
    "analysis", "run one analysis script, analyses/NAME.py, with --key=value settings",
    _no_arguments, _run_analysis, passthrough=True,
    description="Run analyses/NAME.py's main(argv) with the --key=value settings of its Config "
                "(bioplastic analysis NAME --help lists them). Without NAME, list the analyses.")


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------

def _configure_info(p: argparse.ArgumentParser) -> None:
    pass


def _run_info(args: argparse.Namespace) -> int:
    import os

    from . import backends, neurons, rules
    from .data import DATA_ENV, DATASETS, data_root
    from .experiment import git_sha, versions

    print("versions:")
    for name, version in versions().items():
        print(f"  {name:<13} {version or 'not installed'}")
    print(f"  {'git commit':<13} {git_sha() or 'unknown (not a git checkout)'}")
    print("rules:")
    for name, cls in rules.RULES.items():
        print(f"  {name:<13} {cls.summary}")
    print("subspace rules:")
    for name, unit in rules.SUBSPACES.items():
        print(f"  {name:<13} {unit.summary}")
    print(f"activations: {', '.join(neurons.ACTIVATIONS)}; neuron models: {', '.join(neurons.NEURON_MODELS)}")
    print("backends:")
    for name, module in backends.BACKENDS.items():
        if not backends.is_available(name):
            print(f"  {name:<13} not available (needs {backends.REQUIRES[name]}; {module})")
            continue
        try:
            caps = backends.capabilities(name)  # imports the backend: this is where it fails if broken
        except Exception as err:  # report any import failure of a backend; info must not crash
            print(f"  {name:<13} not available ({type(err).__name__}: {err})")
            continue
        print(f"  {name:<13} available ({module})")
        print(f"  {'':<13} builds {'/'.join(caps['topologies'])} feedback of form {', '.join(caps['forms'])}; "
              f"subspace rules {', '.join(caps['subspaces']) or 'none'}; neuron models "
              f"{', '.join(caps['neurons'])}")
    root = data_root()
    print(f"data sets: {', '.join(DATASETS)}")
    print(f"data folder: {root} ({'exists' if root.is_dir() else 'missing'}; set ${DATA_ENV} to change)")
    names = available_analyses()
    print(f"analyses: {', '.join(names) if names else 'none'}")
    print(f"cpu cores: {os.cpu_count()}")
    return 0


register_command("info", "versions, backends, data folder", _configure_info, _run_info)


# --------------------------------------------------------------------------------------------------
# bench (bioplastic/bench/step_time.py owns its settings and its run)
# --------------------------------------------------------------------------------------------------

def _run_bench(args: argparse.Namespace) -> int:
    from .bench.step_time import command

    command(args.argv, prog="bioplastic bench")
    return 0


register_command(
    "bench", "time a training step of ldfa against backprop (torch), measured and counted",
    _no_arguments, _run_bench, passthrough=True,
    description="Training-step time of LDFA against backprop on the paper's models, with the "
                "analytic FLOP count next to the measured ratio (bioplastic/bench/step_time.py; "
                "settings: bioplastic bench --help).")


# --------------------------------------------------------------------------------------------------
# run (bioplastic/experiment/launch.py owns its arguments and its run)
# --------------------------------------------------------------------------------------------------

def _configure_run(p: argparse.ArgumentParser) -> None:
    from .experiment.launch import configure

    configure(p)


def _run_study(args: argparse.Namespace) -> int:
    from .experiment.launch import command

    return command(args)


register_command(
    "run", "run a study file: every grid point x seed, resumable (--resume)",
    _configure_run, _run_study,
    description="Check a study file (TOML: task, circuit or model, feedback, backend, optimizer, "
                "schedule, training, record, seeds and a [grid] of values to sweep; --schema prints its "
                "JSON Schema), then train every run on an executor, one folder per run (config, metrics "
                "per epoch, status, checkpoint, log) under --out. --resume continues a killed study.")


# --------------------------------------------------------------------------------------------------
# report (bioplastic/report owns its arguments and its run)
# --------------------------------------------------------------------------------------------------

def _run_report(args: argparse.Namespace) -> int:
    from .report import command

    return command(args.argv, prog="bioplastic report")


register_command(
    "report", "one self-contained HTML page of the latest results of every analysis, with the claims",
    _no_arguments, _run_report, passthrough=True,
    description="Gather the latest results folder of each analysis under --results (default results/) "
                "into one HTML page with figures inlined, tables, configs and, for each claim of the "
                "paper, whether these runs support it at the scale they were run "
                "(settings: bioplastic report --help).")


# --------------------------------------------------------------------------------------------------
# summarize (bioplastic/experiment/summarize.py owns its arguments and its run)
# --------------------------------------------------------------------------------------------------

def _configure_summarize(p: argparse.ArgumentParser) -> None:
    from .experiment.summarize import configure

    configure(p)


def _run_summarize(args: argparse.Namespace) -> int:
    from .experiment.summarize import command

    return command(args)


register_command(
    "summarize", "tabulate a study folder: mean +- sd per condition across seeds, CSV, a plot",
    _configure_summarize, _run_summarize,
    description="Read a study's output folder and print, per condition (every setting but the seed), "
                "the final-epoch and the best-epoch value of a metric (mean +- sd across seeds; the "
                "best epoch labelled with the metric it was selected on), the seeds and the diverged "
                "runs; --csv writes the table, --plot draws the metric against a swept key (--by), "
                "one line per value of another (--lines).")


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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].passthrough:
        args = argparse.Namespace(command=argv[0], argv=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command].run(args)
    except SystemExit as stop:  # a command's --help (0) or a mistake in its settings (2)
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "Command", "analyses_dir", "available_analyses", "main", "make_parser",
           "register_command"]
