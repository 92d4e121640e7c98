"""The harness starts children from a whitelisted environment: what a developer
exported (API_KEYS, MAX_BATCH_SIZE, CACHE_URL) never reaches them; where packages
are (PYTHONPATH, the GPU machine's only site) does."""
import json

from tests.procs import Proc, child_env, python


def test_exported_settings_do_not_reach_a_child(monkeypatch, tmp_path):
    for name, value in {"API_KEYS": "k", "MAX_BATCH_SIZE": "1", "CACHE_URL": "redis://elsewhere:6379/0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    site = tmp_path / "site"
    (site / "only_on_pythonpath").mkdir(parents=True)
    (site / "only_on_pythonpath" / "__init__.py").write_text("WHERE = 'pythonpath'\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    assert child_env()["PATH"] == "/usr/bin:/bin" and "API_KEYS" not in child_env()
    with Proc(python("-c", "import json, os, only_on_pythonpath; print(json.dumps(dict(os.environ)))"),
              env={"GATEWAY_PORT": "0"}, unset=("PYTHONUNBUFFERED",), log=tmp_path / "env.log") as proc:
        assert proc.wait(timeout=30) == 0
    seen = json.loads(proc.output())
    assert not {"API_KEYS", "MAX_BATCH_SIZE", "CACHE_URL", "PYTHONUNBUFFERED"} & set(seen)
    assert seen["GATEWAY_PORT"] == "0" and seen["HF_HUB_OFFLINE"] == "1" and seen["PATH"] == "/usr/bin:/bin"
    assert seen["PYTHONPATH"] == str(site)
