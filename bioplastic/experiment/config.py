"""Typed experiment configs: frozen dataclasses overridden from ``--key=value`` arguments.

Unknown keys and values that do not parse as the field's type are errors naming the valid keys;
nothing is evaluated as code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _parse(text: str, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"--{key} takes true or false; got {text!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            value = float(text) if isinstance(default, float) else int(text)
        except ValueError:
            raise ValueError(f"--{key} takes a {type(default).__name__}; got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"--{key} takes a finite number; got {text!r}")
        return value
    if isinstance(default, (tuple, list)):
        try:
            items = json.loads(text if text.startswith("[") else f"[{text}]")
        except json.JSONDecodeError:  # bare words: --subspaces=fixed,local
            items = [item.strip() for item in text.strip("[]").split(",") if item.strip()]
        if default:  # elements take the type of the default's elements
            items = [_parse(str(item).lower() if isinstance(item, bool) else str(item), default[0],
                            key) for item in items]
        return type(default)(items)
    if default is None or isinstance(default, str):
        return text
    raise ValueError(f"--{key}: cannot parse a {type(default).__name__} from the command line")


def override(config: T, argv: Sequence[str] | None) -> T:
    """Return ``config`` with ``--key=value`` overrides applied (``--flag`` alone means true)."""
    if not argv:
        return config
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for arg in argv:
        if not arg.startswith("--"):
            raise ValueError(f"expected --key=value, got {arg!r}; keys: {', '.join(fields)}")
        key, has_value, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in fields:
            raise ValueError(f"unknown option --{key}; valid keys: {', '.join(fields)}")
        default = getattr(config, key)
        if not has_value and isinstance(default, bool):
            changes[key] = True
        elif not has_value:
            raise ValueError(f"--{key} needs a value: --{key}=...")
        else:
            changes[key] = _parse(text, default, key)
    return dataclasses.replace(config, **changes)
