"""Typed experiment configs: frozen dataclasses set from the command line or a saved config.json.

One mechanism for every command (``bioplastic demo``, ``bioplastic analysis NAME``,
``bioplastic bench``):

* ``--key=value`` or ``--key value`` sets the field ``key`` of the command's frozen config dataclass
  (``--record-every`` is ``--record_every``);
* lists are comma-separated, ``--seeds=0,1,2`` (or JSON, ``--seeds=[0,1,2]``); a list of seeds is
  always the seeds themselves;
* a bool field alone means true (``--profile``; also ``--profile=false``); ``none`` sets an optional
  field to None.

Values are validated by pydantic against the dataclass's annotations (``pydantic.TypeAdapter`` of the
stdlib dataclass itself, which also runs its ``__post_init__``), so ``PositiveInt`` or ``Literal``
annotations say what a field allows (and ``tuple[int, ...]`` what a list holds: a bare ``tuple``
keeps its items as text). Every problem is reported at once, one line each with the
dotted path, what the field allows and the value given (``epochs: must be a positive int, got 'x'``);
unknown keys name the valid ones. Nothing is evaluated as code.

:func:`override` applies ``--key=value`` arguments to a config and :func:`load_config` builds one from
a mapping (a saved ``config.json``); both raise :class:`ConfigError`. The commands read their
arguments with :func:`bioplastic.experiment.cmdline.parse_command_line`, this syntax plus the options
they share (``--quick``, ``--config FILE``, ``-q``, ``-h``), which turns a mistake into a message on
stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import operator
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Text that sets an optional field to None.
NONE_WORDS = ("none", "null")
#: Text a bool field reads as true or false (any case; pydantic's lax bool parsing).
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False,
              "off": False, "0": False}


class ConfigError(ValueError):
    """Bad settings; :attr:`problems` holds every one, a line each (``path: must be ..., got ...``)."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------------
# Types: what a field allows, in words
# --------------------------------------------------------------------------------------------------

def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (``Annotated`` kept) of a dataclass, in field order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def core_type(tp: Any) -> tuple[Any, bool]:
    """(the type without ``Annotated`` and ``| None``, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            if len(args) != 1:
                return functools.reduce(operator.or_, args), optional
            tp = args[0]
        else:
            return tp, optional


def is_sequence_type(tp: Any) -> bool:
    """Whether a field of type ``tp`` holds a list (``tuple[...]``, ``list[...]``, bare ``tuple``)."""
    core, _ = core_type(tp)
    return core in (tuple, list) or typing.get_origin(core) in (tuple, list)


def item_type(tp: Any) -> Any:
    """The element type of a sequence type (``Any`` when it does not say)."""
    args = typing.get_args(core_type(tp)[0])
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        return args[0]
    return Any


_NAMES = {bool: "true or false", int: "an int", float: "a number", str: "a string",
          Any: "any value"}


def _bounds(metadata: Sequence[Any]) -> list[str]:
    out = []
    for m in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(m, attr, None)
            if value is not None and not callable(value):
                out.append(f"{sign} {value}")
    return out


def describe(tp: Any) -> str:
    """What a field of type ``tp`` allows, in words: ``a positive int``, ``one of a, b``, ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        bounds = _bounds(args[1:])
        if args[0] in (int, float) and bounds in (["> 0"], ["> 0.0"]):
            return f"a positive {'int' if args[0] is int else 'number'}"
        return " ".join([describe(args[0]), " and ".join(bounds)]).strip()
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts + (["none"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if is_sequence_type(tp):
        item = item_type(tp)
        return "a list" if item is Any else f"a list, each item {describe(item)}"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} with keys {', '.join(field_types(tp))}"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _type_at(cls: type, loc: Sequence[Any]) -> Any | None:
    """The annotation at pydantic error location ``loc`` inside dataclass ``cls`` (None: unknown)."""
    tp: Any = cls
    for part in loc:
        core, _ = core_type(tp)
        if isinstance(part, int) and is_sequence_type(core):
            tp = item_type(core)
        elif isinstance(part, str) and dataclasses.is_dataclass(core):
            tp = field_types(core).get(part)
            if tp is None:
                return None
        else:
            return None
    return tp


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

def _path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def unknown_key(key: str, valid: Sequence[str], where: str = "", prefix: str = "",
                close_to: Sequence[str] | None = None) -> str:
    """``unknown key 'x' (did you mean 'y'?); valid keys: ...``; ``prefix`` ``--`` for options.

    ``valid`` is listed (nothing when empty); the suggestion comes from ``close_to`` (default
    ``valid``).
    """
    close = difflib.get_close_matches(key, list(valid if close_to is None else close_to), n=1)
    kind = "option" if prefix else "key"
    hint = f" (did you mean {prefix + close[0] if prefix else repr(close[0])}?)" if close else ""
    shown = f"{prefix}{key}" if prefix else repr(key)
    listing = f"; valid {kind}s: " + ", ".join(f"{prefix}{v}" for v in valid) if valid else ""
    return f"unknown {kind} {shown}{where}{hint}{listing}"


def _not_finite(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def _precheck(tp: Any, value: Any, loc: tuple, problems: list[str]) -> None:
    """What pydantic lets through: unknown keys of nested dataclasses, NaN and infinite floats."""
    core, _ = core_type(tp)
    if dataclasses.is_dataclass(core) and isinstance(value, Mapping):
        types_ = field_types(core)
        for key, item in value.items():
            if key in types_:
                _precheck(types_[key], item, loc + (key,), problems)
            else:
                where = f" in {_path(loc)}" if loc else ""
                problems.append(unknown_key(str(key), list(types_), where))
    elif is_sequence_type(core) and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _precheck(item_type(core), item, loc + (i,), problems)
    elif core is float and _not_finite(value):
        problems.append(f"{_path(loc)}: must be a finite number, got {value!r}")


def _problem(cls: type, error: Mapping[str, Any]) -> str:
    """One pydantic error as ``path: must be <what the field allows>, got <value>``."""
    loc, kind = tuple(error["loc"]), error["type"]
    path = _path(loc)
    if kind in ("value_error", "assertion_error"):  # raised by __post_init__ or a validator
        cause = error.get("ctx", {}).get("error")
        text = str(cause) if cause is not None else error["msg"]
        return f"{path}: {text}" if path else text
    if kind == "missing":
        return f"{path}: required"
    tp = _type_at(cls, loc)
    want = describe(tp) if tp is not None else error["msg"][0].lower() + error["msg"][1:]
    return f"{path}: must be {want}, got {error['input']!r}"


_ADAPTERS: dict[type, Any] = {}


def validate(cls: type[T], data: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from ``data`` (field -> value), checked by pydantic; raise every problem at once.

    Parameters
    ----------
    cls : dataclass type
    data : mapping
        Values of any subset of the fields (the others take their defaults); nested dataclasses
        may be given as mappings, sequences as lists.
    sources : mapping, optional
        Top-level key -> where its value came from (e.g. a file), added to that key's problems.

    Raises
    ------
    ConfigError
        Listing every unknown key, every value its field does not allow, and what ``__post_init__``
        refuses (once the fields themselves are valid).
    """
    import pydantic

    problems: list[str] = []
    _precheck(cls, data, (), problems)
    known = {k: v for k, v in data.items() if k in field_types(cls)}
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    try:
        result = _ADAPTERS[cls].validate_python(known)
    except pydantic.ValidationError as err:
        problems += [_problem(cls, e) for e in err.errors()]
    except TypeError as err:  # __post_init__ may raise it; pydantic passes it through
        problems.append(str(err))
    if problems:
        sources = sources or {}
        raise ConfigError([f"{p} (from {sources[key]})" if key in sources else p for p in problems
                           for key in [p.split(":", 1)[0].split(".", 1)[0]]])
    return result


def values_of(config: Any) -> dict[str, Any]:
    """Field -> value of a dataclass instance (shallow: nested dataclasses stay instances)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}


def load_config(cls: type[T], data: Mapping[str, Any], base: T | None = None, source: str = "") -> T:
    """``cls`` from a mapping (e.g. ``config.json``'s ``"config"``); missing keys keep ``base``'s.

    ``source`` (e.g. the file name) is named next to every problem. Raises :class:`ConfigError`.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source or 'config'}: must be a mapping of keys to values, "
                           f"got {type(data).__name__}"])
    merged = {**(values_of(base) if base is not None else {}), **data}
    return validate(cls, merged, {k: source for k in data} if source else None)


# --------------------------------------------------------------------------------------------------
# --key=value arguments
# --------------------------------------------------------------------------------------------------

def from_text(tp: Any, text: str) -> Any:
    """The value of command-line ``text`` for a field of type ``tp``, before validation.

    Lists split at commas (or parse as JSON when they start with ``[``), ``none`` is None for an
    optional field, anything else stays text for pydantic to parse.
    """
    core, optional = core_type(tp)
    if optional and text.strip().lower() in NONE_WORDS:
        return None
    if is_sequence_type(core):
        if text.lstrip().startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"not a JSON list ({err.msg}); write a,b,c or [\"a\",\"b\"]") from None
            if not isinstance(value, list):
                raise ValueError("not a JSON list")
            return value
        return [item.strip() for item in text.split(",")] if text.strip() else []
    return text


def split_arguments(argv: Sequence[str], takes_value: Mapping[str, bool | None],
                    short: Mapping[str, str] | None = None) -> tuple[list[tuple[str, str | None]],
                                                                     list[str]]:
    """``--key=value`` / ``--key value`` / ``--flag`` arguments -> ([(key, text or None)], problems).

    ``takes_value``: key -> True (needs a value), False (a flag, never a value) or None (a bool:
    a value only when joined by ``=`` or when the next argument is a bool word). ``short`` maps
    one-letter options (``-q``) to keys. Unknown keys are problems naming the valid ones.
    """
    short = short or {}
    out: list[tuple[str, str | None]] = []
    problems: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in short:
            out.append((short[arg], None))
            continue
        if not arg.startswith("--") or arg == "--":
            problems.append(f"unexpected argument {arg!r}; settings take the form --key=value")
            continue
        key, has_value, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        following = argv[i] if i < len(argv) else None
        if key not in takes_value:
            # the valid options once, with the first unknown one
            first = not any(p.startswith("unknown option") for p in problems)
            problems.append(unknown_key(key, list(takes_value) if first else [], prefix="--",
                                        close_to=list(takes_value)))
            if not has_value and following is not None and not following.startswith("-"):
                i += 1  # its value, so that it does not count as a second mistake
            continue
        kind = takes_value[key]
        if has_value:
            if kind is False:
                problems.append(f"--{key} takes no value, got {arg!r}")
                continue
            out.append((key, text))
        elif kind is True:
            if following is None or following.startswith("--"):
                problems.append(f"--{key} needs a value: --{key}=VALUE")
                continue
            out.append((key, following))
            i += 1
        elif kind is None and following is not None and following.lower() in BOOL_WORDS:
            out.append((key, following))
            i += 1
        else:
            out.append((key, None))
    return out, problems


def parse_values(cls: type, pairs: Iterable[tuple[str, str | None]],
                 problems: list[str]) -> dict[str, Any]:
    """(key, text) pairs of fields of ``cls`` -> key -> raw value (a bare key: True); later wins."""
    types_ = field_types(cls)
    values: dict[str, Any] = {}
    for key, text in pairs:
        if text is None:
            values[key] = True
            continue
        try:
            values[key] = from_text(types_[key], text)
        except ValueError as err:
            problems.append(f"{key}: {err}, got {text!r}")
    return values


def takes_values(cls: type) -> dict[str, bool | None]:
    """Field -> whether ``--field`` needs a value: True, or None for a bool (a flag alone is true)."""
    return {name: None if core_type(tp)[0] is bool else True for name, tp in field_types(cls).items()}


def override(config: T, argv: Sequence[str] | None) -> T:
    """Return ``config`` with ``--key=value`` arguments applied and validated.

    Parameters
    ----------
    config : frozen dataclass instance
    argv : sequence of str, optional
        ``--key=value``, ``--key value``, ``--flag``; lists comma-separated (module docstring).

    Raises
    ------
    ConfigError
        Listing every problem at once: unknown keys (with the valid ones), values their field does
        not allow, and what the dataclass's ``__post_init__`` refuses.
    """
    if not argv:
        return config
    cls = type(config)
    pairs, problems = split_arguments(argv, takes_values(cls))
    values = parse_values(cls, pairs, problems)
    try:
        result = validate(cls, {**values_of(config), **values})
    except ConfigError as err:
        problems += err.problems
    if problems:
        raise ConfigError(problems)
    return result


__all__ = ["BOOL_WORDS", "ConfigError", "NONE_WORDS", "core_type", "describe", "field_types",
           "from_text", "is_sequence_type", "item_type", "load_config", "override", "parse_values",
           "split_arguments", "takes_values", "unknown_key", "validate", "values_of"]
