import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The demo model, built once per test session through the production builder."""
    from llava_runtime.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.getbasetemp() / "demo-model")
