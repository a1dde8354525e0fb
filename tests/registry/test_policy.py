"""Address classification, allow lists, token realms and challenge parsing."""

from __future__ import annotations

import httpx
import pytest

from ollama_core.registry import RefusedError, RegistryPolicy
from ollama_core.registry.auth import Challenge, parse_challenge, token_url
from ollama_core.registry.policy import classify, parse_ip


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("2002:a9fe:a9fe::1", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fc00::1", "private"),
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
    ],
)
def test_classify(address: str, kind: str) -> None:
    ip = parse_ip(address)
    assert ip is not None
    assert classify(ip) == kind


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "169.254.169.254", "[fe80::1]"]
)
def test_metadata_and_link_local_names_are_always_refused(host: str) -> None:
    policy = RegistryPolicy(allow_loopback=True, allow_private=True, registries=(host,))
    with pytest.raises(RefusedError):
        policy.check_name(host.strip("[]"))


def test_loopback_and_private_need_permission() -> None:
    ip = parse_ip("127.0.0.1")
    private = parse_ip("10.0.0.1")
    assert ip is not None and private is not None
    with pytest.raises(RefusedError, match="loopback address"):
        RegistryPolicy().check_address("localhost", 5000, ip)
    with pytest.raises(RefusedError, match="private address"):
        RegistryPolicy().check_address("registry.lan", 5000, private)
    RegistryPolicy(allow_loopback=True).check_address("localhost", 5000, ip)
    RegistryPolicy(allow_private=True).check_address("registry.lan", 5000, private)
    RegistryPolicy(registries=("localhost:5000",)).check_address("localhost", 5000, ip)
    with pytest.raises(RefusedError):
        RegistryPolicy(registries=("localhost:5000",)).check_address("localhost", 5001, ip)


def test_resolution_checks_every_address() -> None:
    with pytest.raises(RefusedError, match="loopback address"):
        RegistryPolicy().resolve("localhost", 80)
    assert RegistryPolicy(allow_loopback=True).resolve("127.0.0.1", 80) == ["127.0.0.1"]
    with pytest.raises(RefusedError, match="metadata address"):
        RegistryPolicy(allow_private=True, allow_loopback=True).resolve("2852039166", 80)


def test_registry_allow_list() -> None:
    policy = RegistryPolicy(registries=("registry.ollama.ai", "example.com:5000"))
    policy.check_registry("registry.ollama.ai")
    policy.check_registry("REGISTRY.ollama.ai:443")
    policy.check_registry("example.com:5000")
    for host in ("example.com", "example.com:5001", "evil.example"):
        with pytest.raises(RefusedError, match="is not allowed"):
            policy.check_registry(host)
    RegistryPolicy().check_registry("anything.example")


def test_policy_from_environment() -> None:
    env = {"OLLAMA_REGISTRIES": "a.example, b.example:5000,", "OLLAMA_REGISTRY_REALMS": "auth.example"}
    policy = RegistryPolicy.from_env(env)
    assert policy.registries == ("a.example", "b.example:5000")
    assert policy.trusted_realms == ("auth.example",)
    assert RegistryPolicy.from_env({}) == RegistryPolicy()


def test_realm_must_be_the_registry_or_trusted() -> None:
    registry = httpx.URL("https://registry.example/")
    policy = RegistryPolicy()
    url = token_url(Challenge(realm="https://registry.example/token", service="s", scope="a b"), registry, policy)
    assert url.host == "registry.example"
    assert url.params.get_list("scope") == ["a", "b"]
    assert {"service", "ts", "nonce"} <= set(url.params.keys())
    for realm in ("https://auth.example/token", "https://registry.example:8443/token", "http://registry.example/token"):
        with pytest.raises(RefusedError):
            token_url(Challenge(realm=realm), registry, policy)
    trusted = RegistryPolicy(trusted_realms=("auth.example",))
    assert token_url(Challenge(realm="https://auth.example/token"), registry, trusted).host == "auth.example"


def test_parse_challenge() -> None:
    header = 'Bearer realm="https://r.example/token",service="registry",scope="repository:a/b:pull,push"'
    assert parse_challenge(header) == Challenge(
        realm="https://r.example/token", service="registry", scope="repository:a/b:pull,push"
    )
    assert parse_challenge('bearer realm=https://r.example/t, service=x') == Challenge(
        realm="https://r.example/t", service="x"
    )
    assert parse_challenge('Basic realm="x"') is None
    assert parse_challenge('Bearer service="x"') is None
    assert parse_challenge("") is None
