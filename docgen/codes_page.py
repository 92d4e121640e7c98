"""docs/reference/codes.md: the named contracts, each from its one module: exit codes,
the gateway's answer statuses, the model process's error codes, the supervisor's
states. A name without a description stops `make docs`, naming where to add it."""
from __future__ import annotations

from typing import Container

from .markdown import code, generated_by, table

INTRO = """\
# Codes, statuses and states

Each table is read from the module that defines the names, so a client, a probe or an
alert can rely on every name here. How to act on them:
[operations](../operations.md#signals-and-exit-codes).
"""


def _described(names, table_of: Container, where: str) -> None:
    missing = [name for name in names if name not in table_of]
    if missing:
        raise ValueError(f"{where}: no description for {missing}")


def exit_codes() -> str:
    from llava_common import exit_codes as module

    constants = {value: name for name, value in vars(module).items() if name.isupper() and isinstance(value, int)}
    _described(constants, module.MEANINGS, "llava_common/exit_codes.py MEANINGS")
    rows = [(str(value), code(name), module.MEANINGS[value]) for value, name in sorted(constants.items())]
    return ("\n## Exit codes\n\nEvery process: `llava_common/exit_codes.py`. The gateway's gunicorn exits 3 on a bad "
            "setting before any worker starts.\n\n" + table(("code", "name", "meaning"), rows))


def gateway_statuses() -> str:
    from gateway import statuses as module

    names = [value for name, value in vars(module).items() if name.isupper() and isinstance(value, str)]
    _described(names, {status for status, _, _ in module.TABLE}, "gateway/statuses.py TABLE")
    rows = [(code(status), http, when) for status, http, when in module.TABLE]
    return ("\n## Gateway answer statuses\n\n`status` of every native API answer, errors included "
            "(`gateway/statuses.py`); the OpenAI face answers OpenAI's error shape instead and counts its requests "
            "under these statuses.\n\n" + table(("status", "HTTP", "when"), rows))


def model_errors() -> str:
    from llava_runtime import errors as module

    rows = [(code(name), str(http), code(kind), str(module.RETRY_AFTER.get(name, "")))
            for name, (http, kind) in module.CODES.items()]
    return ("\n## Model process error codes\n\n`error.code` of the model process's answers, always in OpenAI's shape "
            "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}` (`llava_runtime/errors.py`).\n\n"
            + table(("code", "HTTP", "type", "Retry-After (s)"), rows))


def supervisor_states() -> str:
    from llava_supervisor.states import MEANINGS, State

    _described(list(State), MEANINGS, "llava_supervisor/states.py MEANINGS")
    rows = [(code(state.value), *MEANINGS[state]) for state in State]
    return ("\n## Supervisor states\n\n`state` of the supervisor's `GET /status` and the `state` label of "
            "`llava_supervisor_state` (`llava_supervisor/states.py`).\n\n" + table(("state", "meaning", "next"), rows))


def render() -> str:
    return (generated_by("docgen/codes_page.py", "the modules that define the names") + INTRO + exit_codes()
            + gateway_statuses() + model_errors() + supervisor_states())
