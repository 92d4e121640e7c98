"""gateway/discovery.py: MODEL_URL names expanded to one replica per address, with
a fake resolver and a fake clock (the edges); test_discovery_e2e.py runs it against
real model processes."""
import socket
import threading

import pytest

from gateway.discovery import Discovery, system_resolver, with_address
from gateway.settings import GatewaySettings
from llava_common.settings import SettingsError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Names:
    """A resolver whose answers the test sets; records every lookup."""

    def __init__(self, **names):
        self.names = {name.replace("_", "-"): list(addresses) for name, addresses in names.items()}
        self.lookups: list[tuple[str, int]] = []
        self.failing = False

    def __call__(self, host, port):
        self.lookups.append((host, port))
        if self.failing or host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


class Replica:
    def __init__(self, url):
        self.url = url


def urls(discovery) -> list[str]:
    return [r.url for r in discovery.replicas()]


def test_interval_zero_uses_the_urls_as_they_are_and_never_resolves():
    names = Names(llava_model=["10.0.0.1"])
    d = Discovery(["http://llava-model:8081", "http://10.0.0.9:8081"], 0, Replica, names, Clock())
    assert urls(d) == ["http://llava-model:8081", "http://10.0.0.9:8081"]
    assert names.lookups == []


def test_a_name_becomes_one_replica_per_address_and_addresses_stay_as_they_are():
    names = Names(llava_model=["10.0.0.1", "10.0.0.2", "10.0.0.1"])
    d = Discovery(["http://llava-model:8081/v", "http://10.0.0.9:8081", "https://remote.example"], 5, Replica,
                  names, Clock())
    assert urls(d) == ["http://10.0.0.1:8081/v", "http://10.0.0.2:8081/v", "http://10.0.0.9:8081",
                       "https://remote.example"]
    assert names.lookups == [("llava-model", 8081)]  # the IP and the https URL are not looked up


def test_the_default_port_of_the_scheme_is_looked_up_and_left_implicit():
    names = Names(model=["10.0.0.1"])
    assert urls(Discovery(["http://model"], 5, Replica, names, Clock())) == ["http://10.0.0.1"]
    assert names.lookups == [("model", 80)]


def test_ipv6_addresses_are_bracketed():
    assert with_address("http://llava-model:8081", "fd00::7") == "http://[fd00::7]:8081"
    assert with_address("http://llava-model", "10.1.2.3") == "http://10.1.2.3"


def test_re_resolves_only_once_the_interval_has_passed():
    names, clock = Names(llava_model=["10.0.0.1"]), Clock()
    d = Discovery(["http://llava-model:8081"], 5, Replica, names, clock)
    d.replicas()
    clock.now += 4.9
    d.replicas()
    assert len(names.lookups) == 1
    clock.now += 0.1
    d.replicas()
    assert len(names.lookups) == 2


def test_replicas_that_stay_keep_their_object_gone_ones_leave_new_ones_come():
    names, clock = Names(llava_model=["10.0.0.1", "10.0.0.2"]), Clock()
    d = Discovery(["http://llava-model:8081"], 5, Replica, names, clock)
    first = {r.url: r for r in d.replicas()}
    names.names["llava-model"] = ["10.0.0.2", "10.0.0.3"]
    clock.now += 5
    second = {r.url: r for r in d.replicas()}
    assert set(second) == {"http://10.0.0.2:8081", "http://10.0.0.3:8081"}
    # the same object: its circuit breaker and readiness carry over
    assert second["http://10.0.0.2:8081"] is first["http://10.0.0.2:8081"]


def test_a_failed_lookup_keeps_the_last_addresses_until_the_name_answers_again():
    names, clock = Names(llava_model=["10.0.0.1", "10.0.0.2"]), Clock()
    d = Discovery(["http://llava-model:8081"], 5, Replica, names, clock)
    before = d.replicas()
    names.failing = True
    clock.now += 5
    assert d.replicas() == before
    assert len(names.lookups) == 2
    names.failing, names.names["llava-model"] = False, ["10.0.0.3"]
    clock.now += 5
    assert urls(d) == ["http://10.0.0.3:8081"]


def test_a_name_that_never_resolved_gives_no_replicas():
    d = Discovery(["http://nowhere:8081"], 5, Replica, Names(), Clock())
    assert d.replicas() == ()


def test_a_slow_lookup_does_not_hold_other_callers():
    clock, entered, release = Clock(), threading.Event(), threading.Event()
    names = Names(llava_model=["10.0.0.1"])

    def slow(host, port):
        if names.lookups:  # the first lookup answers at once, the second hangs
            entered.set()
            release.wait(10)
        return names(host, port)

    d = Discovery(["http://llava-model:8081"], 5, Replica, slow, clock)
    before = d.replicas()
    clock.now += 5
    names.names["llava-model"] = ["10.0.0.2"]
    worker = threading.Thread(target=d.replicas)
    worker.start()
    assert entered.wait(5)
    assert d.replicas() == before  # answered from the last list while the lookup runs
    release.set()
    worker.join(5)
    assert urls(d) == ["http://10.0.0.2:8081"]


def test_system_resolver_answers_for_loopback():
    assert "127.0.0.1" in system_resolver("127.0.0.1", 80)


def test_the_interval_setting_is_validated():
    assert GatewaySettings.from_env({}).discovery_interval_s == 0
    assert GatewaySettings.from_env({"MODEL_DISCOVERY_INTERVAL_SECONDS": "5"}).discovery_interval_s == 5
    with pytest.raises(SettingsError, match="MODEL_DISCOVERY_INTERVAL_SECONDS"):
        GatewaySettings.from_env({"MODEL_DISCOVERY_INTERVAL_SECONDS": "-1"})
