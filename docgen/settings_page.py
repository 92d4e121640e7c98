"""docs/reference/settings.md: every setting of every process role, from its settings
class (llava_common/settings.py: name, default, what the parser accepts, meaning)."""
from __future__ import annotations

import dataclasses
import importlib
import inspect

from llava_common.settings import describe

from .markdown import code, generated_by, table

# (title, module): each dataclass defined in the module is a settings class of that role.
ROLES = (
    ("Gateway", "gateway.settings"),
    ("Model process", "llava_runtime.settings"),
    ("Supervisor", "llava_supervisor.settings"),
)
INTRO = """\
# Settings reference

Every setting of every process: an environment variable, its default, what it accepts
and what it does. How settings are read (once, validated, `NAME_FILE`), and which to
change when: [operations](../operations.md#settings).
"""

def settings_classes(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    return [value for value in vars(module).values()
            if dataclasses.is_dataclass(value) and value.__module__ == module_name]


def render() -> str:
    parts = [generated_by("docgen/settings_page.py", "the settings classes"), INTRO]
    for title, module_name in ROLES:
        classes = settings_classes(module_name)
        for cls in classes:
            heading = title if len(classes) == 1 else f"{title}: {cls.__name__}"
            parts.append(f"\n## {heading}\n\n`{module_name.replace('.', '/')}.py`, `{cls.__name__}`.")
            note = inspect.getdoc(cls)
            if note and not note.startswith(cls.__name__ + "("):  # a dataclass's own generated docstring
                parts.append(" " + " ".join(note.split()))
            rows = [(code(row.env), code(row.default), row.accepts or _missing(row.env), row.help)
                    for row in describe(cls)]
            parts.append("\n\n" + table(("variable", "default", "accepts", "meaning"), rows))
    return "".join(parts)


def _missing(env: str) -> str:
    raise ValueError(f"{env}: its parser does not say what it accepts (llava_common.settings.accepting)")
