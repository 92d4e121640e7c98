"""DNS discovery end to end: real model processes (the fake model: this is about
discovery, not the model) on 127.0.0.2, .3 and .4, all on one port, behind one name
whose answers the test sets (the resolver is the one fake), and a real gateway in
front over HTTP. A replica that disappears from the name stops getting calls; one
that appears starts getting them; a failing lookup keeps the last replicas."""
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import create_app
from tests.gateway_support import Served, analyze, jpeg, settings
from tests.procs import Proc, free_port, poll, python

pytestmark = pytest.mark.slow

NAME = "llava-model.test"
INTERVAL_S = 0.2
FAKE_MODEL = "tests/fixtures/fake_model.py"


class Names:
    def __init__(self, *addresses):
        self.addresses = list(addresses)
        self.lookups = 0
        self.failing = False

    def __call__(self, host, port):
        assert host == NAME
        self.lookups += 1
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return list(self.addresses)


def model(address: str, port: int, name: str) -> Proc:
    proc = Proc(python(FAKE_MODEL, "healthy"), env={"MODEL_HOST": address, "MODEL_PORT": str(port),
                                                    "FAKE_NAME": name, "FAKE_ANSWER_SECONDS": "0.3"})
    proc.wait_for(f"http://{address}:{port}/health")
    return proc


def replicas(app) -> set:
    """The replica URLs the gateway knows (GET /health shows no URLs: it is open to anyone)."""
    return {replica.url for replica in app.extensions["gateway"].upstream.replicas}


def wait_for_replicas(app, expected: set, timeout: float = 10.0) -> None:
    poll(lambda: replicas(app) == expected, timeout, f"replicas {sorted(expected)}")


def answered_by(gateway: str, expected: set, rounds: int = 5) -> set:
    """Who answered rounds of concurrent requests (the gateway sends each call to the
    replica with the fewest in flight, so concurrency spreads them); stops once every
    expected replica has answered. Every answer must be the model's."""
    names: set = set()
    with ThreadPoolExecutor(6) as pool:
        for r in range(rounds):
            prompts = [f"round {r} request {i}" for i in range(6)]
            for response in pool.map(lambda p: analyze(gateway, jpeg(), prompt=p), prompts):
                body = response.json()
                assert (response.status_code, body["status"]) == (200, "SUCCESS"), body
                names.add(body["result"].removeprefix("answer from "))
            if names >= expected:
                break
    return names


def test_replicas_behind_a_name_come_and_go():
    port = free_port()
    url = f"http://{NAME}:{port}"
    names = Names("127.0.0.2", "127.0.0.3")
    procs = [model("127.0.0.2", port, "a"), model("127.0.0.3", port, "b")]
    served = None
    try:
        app = create_app(settings(url, MODEL_DISCOVERY_INTERVAL_SECONDS=INTERVAL_S, CACHE_MAX_ENTRIES=0),
                         resolver=names)
        served = Served(app)
        gw = served.url
        a, b, c = (f"http://127.0.0.{i}:{port}" for i in (2, 3, 4))

        wait_for_replicas(app, {a, b})
        assert answered_by(gw, {"a", "b"}) == {"a", "b"}

        # a disappears: out of the name first (as Kubernetes drops a terminating pod), then stopped
        names.addresses = ["127.0.0.3"]
        wait_for_replicas(app, {b})
        procs[0].stop()
        assert answered_by(gw, {"b"}, rounds=2) == {"b"}

        # c appears: started, then in the name
        procs.append(model("127.0.0.4", port, "c"))
        names.addresses = ["127.0.0.3", "127.0.0.4"]
        wait_for_replicas(app, {b, c})
        assert answered_by(gw, {"b", "c"}) == {"b", "c"}

        # the name stops answering: the last replicas stay and keep serving
        names.failing = True
        lookups = names.lookups
        # Lookups happen as replicas are asked for; after two failed ones, b and c stay.
        poll(lambda: replicas(app) == {b, c} and names.lookups >= lookups + 2, 10, "two failed lookups")
        assert answered_by(gw, {"b", "c"}) == {"b", "c"}
        assert names.lookups > lookups
    finally:
        if served:
            served.close()
        for proc in procs:
            proc.stop()
