"""System components some tests use for real (redis-server, promtool, prometheus,
docker-compose, curl). Where one is missing a test skips, except under
LLAVA_TESTS_STRICT=1, which .ci/run sets: there a missing component fails the
test, and so does any other skip not marked `may_skip` (tests/conftest.py), so CI
cannot pass by skipping."""
from __future__ import annotations

import os
import shutil

import pytest

STRICT_ENV = "LLAVA_TESTS_STRICT"


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")


def need(tool: str, install: str = ".ci/run installs it with apt-get") -> str:
    """The path of `tool`; a skip (or, strict, a failure) when it is not installed."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} is not installed ({install})"
    if strict():
        pytest.fail(f"{message}; {STRICT_ENV} is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)
