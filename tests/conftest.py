import os

import pytest

from tests.system import STRICT_ENV, strict

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "may_skip(reason): a skip that is right even in CI (strict mode)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under LLAVA_TESTS_STRICT=1 (CI) a skipped test is a failed one, unless marked
    `may_skip`: a missing component must not pass as a skip."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict() and not hasattr(report, "wasxfail") and not item.get_closest_marker("may_skip"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped under {STRICT_ENV}=1, which forbids skips: {reason}"


def pytest_collectreport(report):
    if report.skipped and strict():
        report.outcome = "failed"
        report.longrepr = f"a module skipped under {STRICT_ENV}=1, which forbids skips: {report.longrepr}"


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The demo model, built once per test session through the production builder."""
    from llava_runtime.demo_model import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.getbasetemp() / "demo-model")


@pytest.fixture(scope="session")
def model_settings(demo_model_dir):
    from llava_runtime.settings import ModelSettings

    # bench/gpu_session.sh runs the engine tests on CUDA in float32 (LLAVA_TEST_DTYPE),
    # against plain generate (LLAVA_TEST_DECODE_MODE=eager: its compiled step would
    # compile for minutes); elsewhere the defaults (float32 and eager on the CPU).
    return ModelSettings.from_env({"MODEL_PATH": "demo", "DEMO_MODEL_DIR": str(demo_model_dir), "WARMUP_REQUESTS": "1",
                                   "DTYPE": os.environ.get("LLAVA_TEST_DTYPE", "auto"),
                                   "DECODE_MODE": os.environ.get("LLAVA_TEST_DECODE_MODE", "auto")})


@pytest.fixture(scope="session")
def loaded_demo(model_settings):
    """The demo model loaded once, through the production loader."""
    from llava_runtime.loader import Progress, load_model

    return load_model(model_settings, Progress())
