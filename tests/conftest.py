import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The demo model, built once per test session through the production builder."""
    from llava_runtime.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.getbasetemp() / "demo-model")


@pytest.fixture(scope="session")
def model_settings(demo_model_dir):
    from llava_runtime.settings import ModelSettings

    return ModelSettings.from_env({"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir), "WARMUP_REQUESTS": "1"})


@pytest.fixture(scope="session")
def loaded_demo(model_settings):
    """The demo model loaded once, through the production loader."""
    from llava_runtime.loader import Progress, load_model

    return load_model(model_settings, Progress())
