"""The demo model: deterministic, built once even when processes race, real geometry."""
import hashlib
import subprocess
import sys

from llava_runtime.demo_model import MARKER, ensure_demo_model
from tests.procs import ROOT, child_env


def digest(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()}


def test_builds_are_identical(tmp_path, demo_model_dir):
    again = ensure_demo_model(tmp_path / "again")
    assert digest(again) == digest(demo_model_dir)
    assert sum(f.stat().st_size for f in again.iterdir()) < 2_000_000  # tiny: never a download


def test_processes_starting_together_build_once_and_agree(tmp_path, demo_model_dir):
    target = tmp_path / "shared"
    code = ("import logging,sys; logging.basicConfig(level=logging.INFO);"
            "from llava_runtime.demo_model import ensure_demo_model; ensure_demo_model(sys.argv[1])")
    racers = [subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env=child_env())
              for _ in range(3)]
    logs = [p.communicate(timeout=120)[1] for p in racers]
    assert [p.returncode for p in racers] == [0, 0, 0], logs
    assert sum("building the demo model" in log for log in logs) == 1  # the others waited and reused it
    assert (target / MARKER).exists()
    assert digest(target) == digest(demo_model_dir)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("shared.") and p.is_dir()]  # no staging left


def test_a_half_built_directory_is_rebuilt(tmp_path):
    target = tmp_path / "half"
    target.mkdir()
    (target / "config.json").write_text("{}")  # a crash mid-build left this, without the marker
    ensure_demo_model(target)
    assert (target / MARKER).exists() and (target / "model.safetensors").exists()
