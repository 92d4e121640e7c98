"""The demo stack (stack.py: supervisor + real model process on the demo model +
gunicorn gateway, as `make demo` runs it) as a session fixture, shared by the
end-to-end and Java tests: they load this module with `pytest_plugins`, so it
starts once per session."""
from __future__ import annotations

import pytest

from harness.stack import DemoStack, demo_env


@pytest.fixture(scope="session")
def demo_stack(demo_model_dir, tmp_path_factory):
    """`make demo`'s stack with the cache off (CACHE_MAX_ENTRIES=0), so that repeated
    requests reach the model, and one warmup request to start sooner."""
    env = demo_env(demo_model_dir, WARMUP_REQUESTS=1, CACHE_MAX_ENTRIES=0,
                   XDG_CACHE_HOME=tmp_path_factory.mktemp("openai-stack"))
    with DemoStack(env) as stack:
        yield stack.wait_ready(180)
