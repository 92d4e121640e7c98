"""Declarative, validated settings read once from the environment.

Each process role declares one frozen dataclass whose fields are made with
`setting(ENV_NAME, default, parser, help)`. `load(cls, environ)` parses every
field, collects *all* problems and raises one `SettingsError` that names each bad
variable, so a misconfigured deployment is fixed in one round trip.

`ENV_NAME_FILE=/path` reads a setting from a file instead (Docker and Kubernetes
secrets are files: a password in a file does not show in `docker inspect`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

T = TypeVar("T")
Parser = Callable[[str], Any]
FILE_SUFFIX = "_FILE"  # API_KEYS_FILE=/run/secrets/api-keys: the value is the file's content


class SettingsError(ValueError):
    """One or more environment variables hold a value that cannot be used."""


def setting(env: str, default: Any, parse: Parser, help: str, secret: bool = False) -> Any:
    """A dataclass field bound to environment variable `env`; a `secret` one's value
    is never repeated in an error."""
    return dataclasses.field(default=default, metadata={"env": env, "parse": parse, "help": help, "secret": secret})


def load(cls: type[T], environ: Mapping[str, str]) -> T:
    values, problems = {}, []
    for f in dataclasses.fields(cls):
        env = f.metadata["env"]
        raw = environ.get(env)
        if (raw is None or raw.strip() == "") and environ.get(env + FILE_SUFFIX):
            try:
                raw = Path(environ[env + FILE_SUFFIX]).read_text()
            except OSError as exc:
                problems.append(f"{env}{FILE_SUFFIX}={environ[env + FILE_SUFFIX]!r}: cannot be read ({exc.strerror})")
                continue
        if raw is None or raw.strip() == "":
            continue  # the default applies
        try:
            values[f.name] = f.metadata["parse"](raw.strip())
        except ValueError as exc:
            shown = "(not shown)" if f.metadata.get("secret") else repr(raw)
            problems.append(f"{env}={shown}: {exc}")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    try:
        return cls(**values)
    except ValueError as exc:  # rules across settings, checked in __post_init__
        raise SettingsError(f"invalid settings: {exc}") from None


def load_or_exit(cls: type[T], role: str, environ: Mapping[str, str] | None = None) -> T:
    """Settings for a process about to start, or one line on stderr and exit
    BOOT_ERROR: restarting with the same environment cannot help."""
    import os
    import sys

    from . import exit_codes

    try:
        return load(cls, os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        raise SystemExit(exit_codes.BOOT_ERROR) from None


class Described(NamedTuple):
    env: str
    default: str    # as a user would write it in the environment; "" = empty
    accepts: str    # the values the parser takes (a range, the choices, a format)
    help: str


def describe(cls: type) -> list[Described]:
    """One row per setting, for docs/reference/settings.md (`make docs`) and --help."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, bool):
            shown = "true" if default else "false"
        elif isinstance(default, tuple):
            shown = ",".join(map(str, default))
        else:
            shown = "" if default is None else str(default)
        rows.append(Described(f.metadata["env"], shown, getattr(f.metadata["parse"], "accepts", ""),
                              f.metadata["help"]))
    return rows


def accepting(accepts: str) -> Callable[[Parser], Parser]:
    """Names what a parser takes, for the settings reference; every parser says it."""
    def mark(parse: Parser) -> Parser:
        parse.accepts = accepts
        return parse
    return mark


# ---- parsers: each raises ValueError with a message a person can act on ----

def integer(lo: int | None = None, hi: int | None = None) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        _check_range(value, lo, hi)
        return value
    return accepting(_range("whole number", lo, hi))(parse)


def number(lo: float | None = None, hi: float | None = None) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        _check_range(value, lo, hi)
        return value
    return accepting(_range("number", lo, hi))(parse)


def choice(*options: str) -> Parser:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value
    return accepting(", ".join(options))(parse)


@accepting("true or false (1/0, yes/no, on/off)")
def boolean(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


@accepting("text")
def text(raw: str) -> str:
    return raw


@accepting("comma-separated list")
def csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _range(kind: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{_shown(lo)} to {_shown(hi)}"
    if lo is not None:
        return f"at least {_shown(lo)}"
    return kind if hi is None else f"at most {_shown(hi)}"


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_range(value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise ValueError(f"must be >= {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"must be <= {hi}")
