"""Fixtures for guard.auth tests: keys generated once per session, loopback JWKS servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auth.helpers import FrozenClock, JWKSServer, TestKey, ec_key, rsa_key, running_jwks


@pytest.fixture(scope="session")
def ec() -> TestKey:
    return ec_key("ec-1")


@pytest.fixture(scope="session")
def ec2() -> TestKey:
    return ec_key("ec-2")


@pytest.fixture(scope="session")
def rsa() -> TestKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="session")
def attacker() -> TestKey:
    return ec_key("attacker")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def jwks(ec: TestKey, rsa: TestKey) -> Iterator[JWKSServer]:
    yield from running_jwks(ec, rsa)


@pytest.fixture
def trap() -> Iterator[JWKSServer]:
    """A server a token header points at; it must never be contacted."""
    yield from running_jwks()
