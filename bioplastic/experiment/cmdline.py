"""The command line every ``bioplastic`` command shares: settings, shared options, help, exit 2.

A command is a frozen config dataclass (what it computes, saved to ``config.json``), optionally an
options dataclass (how it runs: output folder, worker processes) and optionally ``--quick``
settings. :func:`parse_command_line` reads

* ``--key=value`` / ``--key value`` for every field of both (syntax: :mod:`.config`);
* ``--quick``: the command's small settings, for a check that everything works (explicit settings
  override them);
* ``--config FILE``: start from a saved ``config.json`` (its ``"config"``), to rerun a run; explicit
  settings and ``--quick`` override it;
* ``-q`` / ``--quiet``: no progress display;
* ``-h`` / ``--help``: every setting with its default, what it allows and its why-comment.

A mistake prints every problem to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .config import (
    ConfigError,
    describe,
    field_types,
    parse_values,
    split_arguments,
    takes_values,
    unknown_key,
    validate,
    values_of,
)

C = TypeVar("C")

#: Options every command takes, beyond its fields (``quick`` only where it has quick settings).
SHARED = ("quick", "config", "quiet", "help")


@dataclass(frozen=True)
class CommandLine(Generic[C]):
    """What :func:`parse_command_line` read.

    Attributes
    ----------
    config : the config dataclass
        Defaults, then ``--config FILE``, then ``--quick``, then the explicit settings.
    options : the options dataclass, or None
    quick, quiet : bool
    given : frozenset of str
        Keys set explicitly (not by ``--quick`` or ``--config``).
    config_file : Path, optional
    """

    config: C
    options: Any = None
    quick: bool = False
    quiet: bool = False
    given: frozenset = frozenset()
    config_file: Path | None = None


def parse_command_line(config: C, argv: Sequence[str] | None, *, prog: str, options: Any = None,
                       quick: Mapping[str, Any] | None = None,
                       check: Callable[[C], None] | None = None,
                       description: str | None = None) -> CommandLine[C]:
    """Read a command line for ``config`` (module docstring); exit 2 on a mistake, 0 after ``--help``.

    Parameters
    ----------
    config : frozen dataclass instance
        The defaults.
    argv : sequence of str
    prog : str
        The command, for messages (``bioplastic analysis alignment``).
    options : frozen dataclass instance, optional
        The command's own options and their defaults (not part of the saved config).
    quick : mapping, optional
        Settings of ``--quick`` (keys of ``config`` or ``options``); None: no ``--quick``.
    check : callable, optional
        ``check(config)`` raises ValueError on a config the command cannot run.
    description : str, optional
        For ``--help``.
    """
    try:
        return _parse(config, list(argv or ()), prog, options, quick, check, description)
    except ConfigError as err:
        print(format_problems(prog, err.problems), file=sys.stderr)
        raise SystemExit(2) from None


def format_problems(prog: str, problems: Sequence[str]) -> str:
    """The message of a bad command line: every problem, then where the settings are listed."""
    if len(problems) == 1:
        head = f"{prog}: {problems[0]}"
    else:
        head = f"{prog}: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
    return f"{head}\n(settings: {prog} --help)"


def _parse(config, argv, prog, options, quick, check, description) -> CommandLine:
    config_types = field_types(type(config))
    option_types = field_types(type(options)) if options is not None else {}
    taken = set(config_types) & (set(option_types) | set(SHARED)) | set(option_types) & set(SHARED)
    if taken:
        raise TypeError(f"{prog}: field names {sorted(taken)} are taken twice (options and config, "
                        f"or the shared options {', '.join(SHARED)})")
    takes_value = {**takes_values(type(config)),
                   **(takes_values(type(options)) if options is not None else {})}
    takes_value.update({"config": True, "quiet": False, "help": False})
    if quick is not None:
        takes_value["quick"] = False
    pairs, problems = split_arguments(argv, takes_value, short={"-q": "quiet", "-h": "help"})
    flags = {key for key, _ in pairs if key in SHARED}
    if "help" in flags:
        print(help_text(prog, config, options, quick, description))
        raise SystemExit(0)
    config_values = parse_values(type(config), [p for p in pairs if p[0] in config_types], problems)
    option_values = (parse_values(type(options), [p for p in pairs if p[0] in option_types], problems)
                     if options is not None else {})
    data, sources = values_of(config), {}
    files = [text for key, text in pairs if key == "config"]
    config_file = Path(files[-1]) if files else None
    if config_file is not None:
        saved = _read_config_file(config_file, list(config_types), problems)
        data.update(saved)
        sources.update({key: str(config_file) for key in saved})
    option_data = values_of(options) if options is not None else {}
    if "quick" in flags:
        for key, value in quick.items():
            (data if key in config_types else option_data)[key] = value
            sources[key] = "--quick"
    data.update(config_values)
    option_data.update(option_values)
    for key in config_values:
        sources.pop(key, None)
    result, opts = None, None
    try:
        result = validate(type(config), data, sources)
    except ConfigError as err:
        problems += err.problems
    if options is not None:
        try:
            opts = validate(type(options), option_data, sources)
        except ConfigError as err:
            problems += err.problems
    if result is not None and check is not None:
        try:
            check(result)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(problems)
    return CommandLine(result, opts, "quick" in flags, "quiet" in flags,
                       frozenset(config_values) | frozenset(option_values), config_file)


def _read_config_file(path: Path, valid: Sequence[str], problems: list[str]) -> dict[str, Any]:
    """The config saved in ``path`` (``config.json`` of a run, or a bare mapping); known keys only."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        problems.append(f"cannot read --config {path}: {err}")
        return {}
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
        saved = saved["config"]
    if not isinstance(saved, dict):
        problems.append(f"--config {path}: must hold a mapping of settings, got {type(saved).__name__}")
        return {}
    for key in saved:
        if key not in valid:
            problems.append(unknown_key(key, valid, where=f" in {path}"))
    return {k: v for k, v in saved.items() if k in valid}


# --------------------------------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------------------------------

def field_comments(cls: type) -> dict[str, str]:
    """Field -> its why-comment (``name: type = default  # why``, continued on comment-only lines),
    else its entry in the class docstring's NumPy ``Attributes`` section."""
    names = set(field_types(cls))
    out: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    last = None
    for line in source.splitlines():
        field = re.match(r"\s+(\w+)\s*:[^#]*#\s?(.*)$", line)
        if field and field.group(1) in names:
            last = field.group(1)
            out[last] = field.group(2).strip()
            continue
        more = re.match(r"\s+#\s?(.*)$", line)
        if more and last:
            out[last] += " " + more.group(1).strip()
            continue
        last = None
    doc = inspect.getdoc(cls) or ""
    section = re.split(r"\nAttributes\n-+\n", doc, maxsplit=1)
    current: list[str] = []
    for line in section[1].splitlines() if len(section) == 2 else []:
        if line and not line.startswith(" "):
            head = re.match(r"([\w, ]+) :", line)
            if head is None:
                break  # the next section
            current = [n.strip() for n in head.group(1).split(",") if n.strip() not in out]
        elif line.strip():
            for name in current:
                out[name] = (out.get(name, "") + " " + line.strip()).strip()
    return out


def show(value: Any) -> str:
    """A value as it would be written on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        if value and dataclasses.is_dataclass(value[0]):
            return f"[{len(value)} x {type(value[0]).__name__}]"
        return ",".join(show(v) for v in value)
    return str(value)


def _field_lines(instance: Any) -> list[str]:
    comments = field_comments(type(instance))
    lines = []
    for name, tp in field_types(type(instance)).items():
        left = f"  --{name}={show(getattr(instance, name))}"
        right = describe(tp) + (f"; {comments[name]}" if comments.get(name) else "")
        wrapped = textwrap.wrap(right, 100 - 32) or [""]
        if len(left) < 31:
            lines.append(left.ljust(32) + wrapped[0])
        else:
            lines += [left, " " * 32 + wrapped[0]]
        lines += [" " * 32 + w for w in wrapped[1:]]
    return lines


def help_text(prog: str, config: Any, options: Any = None, quick: Mapping[str, Any] | None = None,
              description: str | None = None) -> str:
    """``--help``: usage, description, every setting with default, what it allows and why."""
    usage = f"usage: {prog} [--key=value ...]{' [--quick]' if quick is not None else ''} " \
            "[--config FILE] [-q] [-h]"
    lines = [usage, ""]
    if description:
        lines += textwrap.wrap(description, 100) + [""]
    lines += ["settings (--key=value or --key value; lists comma-separated, e.g. --seeds=0,1,2; "
              "none for an optional one):"] + _field_lines(config)
    if options is not None:
        lines += ["", "options:"] + _field_lines(options)
    lines += ["", "shared options:"]
    if quick is not None:
        lines.append("  --quick".ljust(32) + "a small run, to check that everything works: "
                     + ", ".join(f"{k}={show(v)}" for k, v in quick.items()))
    lines += ["  --config FILE".ljust(32) + "start from a saved config.json; other settings override it",
              "  -q, --quiet".ljust(32) + "no progress display",
              "  -h, --help".ljust(32) + "this help"]
    return "\n".join(lines)


__all__ = ["SHARED", "CommandLine", "field_comments", "format_problems", "help_text",
           "parse_command_line", "show"]
