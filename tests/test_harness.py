"""The harness starts children from a whitelisted environment: what a developer
exported (API_KEYS, MAX_BATCH_SIZE, CACHE_URL) never reaches them."""
import json

from tests.procs import Proc, child_env, python


def test_exported_settings_do_not_reach_a_child(monkeypatch, tmp_path):
    for name, value in {"API_KEYS": "k", "MAX_BATCH_SIZE": "1", "CACHE_URL": "redis://elsewhere:6379/0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert child_env()["PATH"] == "/usr/bin:/bin" and "API_KEYS" not in child_env()
    with Proc(python("-c", "import json, os; print(json.dumps(dict(os.environ)))"),
              env={"GATEWAY_PORT": "0"}, unset=("PYTHONUNBUFFERED",), log=tmp_path / "env.log") as proc:
        assert proc.wait(timeout=30) == 0
    seen = json.loads(proc.output())
    assert not {"API_KEYS", "MAX_BATCH_SIZE", "CACHE_URL", "PYTHONUNBUFFERED"} & set(seen)
    assert seen["GATEWAY_PORT"] == "0" and seen["HF_HUB_OFFLINE"] == "1" and seen["PATH"] == "/usr/bin:/bin"
