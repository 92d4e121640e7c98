"""bench/gpu_session.sh as the GPU machine runs it, here on the CPU: `python3` is an
interpreter with no packages of its own, and everything it imports comes from
PYTHONPATH, holding only what that machine has (torch, transformers,
prometheus-client, requests, numpy, Pillow, with their dependencies) plus the
Makefile's GPU_WHEELS. A package missing from GPU_WHEELS, or a child process
that loses PYTHONPATH, fails here instead of on the GPU machine."""
import importlib.metadata as metadata
import re
import venv

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.procs import ROOT, Proc

pytestmark = pytest.mark.slow
# What the GPU machine's python3 has (../shared/notes/gpu-h100-measured.md), dependencies included.
MACHINE = ("torch", "transformers", "prometheus-client", "requests", "numpy", "pillow")


def gpu_wheels() -> list[str]:
    """The names in the Makefile's GPU_WHEELS."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(r"^GPU_WHEELS := (.*)$", makefile, re.M).group(1)
    return [pin.split("==")[0] for pin in line.split()]


def closure(names) -> set[str]:
    """Distributions installed here that `names` need, themselves included."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def site_of(names: set[str], folder):
    """A folder holding only `names`, linked from this environment's site-packages."""
    folder.mkdir()
    for name in names:
        distribution = metadata.distribution(name)
        tops = {str(f).split("/")[0] for f in distribution.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = distribution.locate_file(top)
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def test_the_session_runs_on_a_python_whose_packages_are_on_pythonpath_only(tmp_path):
    wheels = gpu_wheels()
    assert {"attrs", "werkzeug", "pytest"} <= set(wheels)   # jsonschema's, flask's, the correctness step's
    site = site_of(closure(MACHINE) | closure(wheels), tmp_path / "site")
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)                           # python3 with no packages of its own
    out = tmp_path / "out"
    env = {"PATH": f"{bare / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(site), "OUT": str(out),
           "WHEELS_DIR": str(tmp_path / "no-wheels"),  # the GPU_WHEELS are in `site` already
           "GPU_SESSION_TESTS": "tests/test_continuous_engine.py::test_one_request_is_answered_as_generate_answers_it"}
    session = Proc(["bash", "bench/gpu_session.sh", "--tiny", "--allow-cpu", "--engines", "continuous", "--tokens", "4",
                    "--repeats", "1", "--concurrency", "2", "--no-schema"], env=env, log=tmp_path / "session.log")
    with session:
        assert session.wait(timeout=400) == 0, session.tail(6000)
    output = session.output()
    assert "1 passed" in (out / "engine-tests.log").read_text()
    assert "correctness suite: exit 0" in output and "bench.gpu: exit 0" in output
    report = (out / "gpu.md").read_text()
    assert "===== " in output and report.splitlines()[0] in output    # the results printed at the end
    assert "not measured" not in report.split("| structured output")[0]
    assert "ModuleNotFoundError" not in (out / "bench-gpu.log").read_text()
