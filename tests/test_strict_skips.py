"""Under LLAVA_TESTS_STRICT=1 (.ci/run) a skip is a failure unless marked may_skip;
without it, a missing component skips as it would on a developer's machine."""
import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import pytest
from tests.system import need

def test_needs_a_missing_tool():
    need("no-such-tool-llava-18")

@pytest.mark.skipif(True, reason="a condition")
def test_skipped_by_a_marker():
    pass

@pytest.mark.may_skip("right everywhere")
@pytest.mark.skipif(True, reason="a GPU is present")
def test_allowed_to_skip():
    pass

def test_runs():
    assert True
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest("from tests.conftest import pytest_collectreport, pytest_configure, "
                          "pytest_runtest_makereport  # noqa: F401")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_strict_mode_fails_every_unmarked_skip(suite, monkeypatch):
    monkeypatch.setenv("LLAVA_TESTS_STRICT", "1")
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=1)  # a skip at setup fails as an error
    result.stdout.fnmatch_lines(["*no-such-tool-llava-18 is not installed*fails instead of skipping*"])


def test_without_strict_mode_a_missing_tool_skips(suite, monkeypatch):
    monkeypatch.delenv("LLAVA_TESTS_STRICT", raising=False)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=3)
