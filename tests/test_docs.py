"""The README documents every setting each process role reads."""
import dataclasses
import importlib

import pytest

from tests.procs import ROOT

SETTINGS_MODULES = ["llava_runtime.settings", "gateway.settings", "llava_supervisor.settings"]


def settings_classes():
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if dataclasses.is_dataclass(value) and value.__module__ == name:
                yield value


@pytest.mark.parametrize("cls", list(settings_classes()), ids=lambda c: c.__name__)
def test_every_setting_is_in_the_readme(cls):
    readme = (ROOT / "README.md").read_text()
    missing = [f.metadata["env"] for f in dataclasses.fields(cls) if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README.md does not document {missing}"


def test_readme_shows_the_pinned_commands():
    readme = (ROOT / "README.md").read_text()
    for command in ("make test", "make install", "make bench", "make demo", "make run", "docker compose up"):
        assert command in readme
