"""``[auth]`` parsing: unsafe configurations are refused at startup, every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guard.auth import AuthSettings, parse_auth
from guard.config import parse
from guard.configtools import Problems
from tests.auth.helpers import AUDIENCE, ISSUER, TestKey

SECRET = "s" * 32


def problems_for(raw: dict[str, Any], tmp_path: Path, upstreams: tuple[str, ...] = ("demo",)) -> list[str]:
    problems = Problems()
    parse_auth(raw, problems, tmp_path, upstreams)
    return problems.items


def ok(raw: dict[str, Any], tmp_path: Path, upstreams: tuple[str, ...] = ("demo",)) -> AuthSettings:
    problems = Problems()
    result = parse_auth(raw, problems, tmp_path, upstreams)
    assert problems.items == []
    return result


def jwks_issuer(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"issuer": ISSUER, "algorithms": ["RS256"], "jwks_url": "https://idp.example.test/jwks"}
    base.update(overrides)
    return base


def test_keycloak_style_config_parses(tmp_path: Path) -> None:
    s = ok({
        "audience": "guard", "resource": "https://guard.example.test/",
        "roles_claim": ["realm_access.roles", "scope"], "leeway": 10, "allowed_origins": ["https://App.Example.test/"],
        "issuers": [jwks_issuer(jwks_cooldown=10, jwks_max_stale=7200)],
    }, tmp_path)
    assert s.audience == ("guard",)
    assert s.resource == "https://guard.example.test"
    assert s.roles_claim == ("realm_access.roles", "scope")
    assert s.allowed_origins == ("https://app.example.test",)
    assert s.issuers[0].jwks_cooldown == 10.0 and s.issuers[0].jwks_max_stale == 7200.0
    assert s.authorization_servers_or_issuers() == (ISSUER,)
    assert s.servers == frozenset({"demo"})


def test_defaults_are_documented_values(tmp_path: Path) -> None:
    s = ok({"audience": AUDIENCE, "issuers": [jwks_issuer()]}, tmp_path)
    assert (s.leeway, s.max_token_bytes, s.subject_claim, s.roles_claim) == (30.0, 8192, "sub", ("roles",))
    i = s.issuers[0]
    assert (i.jwks_cooldown, i.jwks_refresh, i.jwks_max_stale, i.jwks_timeout) == (30.0, 300.0, 3600.0, 5.0)


def test_audience_defaults_to_the_resource_per_server(tmp_path: Path) -> None:
    s = ok({"resource": "https://guard.example.test", "issuers": [jwks_issuer()]}, tmp_path)
    assert s.audience_for(s.issuers[0], "notes") == ("https://guard.example.test",
                                                     "https://guard.example.test/mcp/notes")


def test_hmac_mixed_with_asymmetric_algorithms_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["HS256", "RS256"], "hmac_secret": SECRET},
    ]}, tmp_path)
    assert any("mixes HMAC and asymmetric" in p for p in found)


def test_hmac_secret_combined_with_public_keys_is_refused(tmp_path: Path, rsa: TestKey) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(rsa.public_pem)
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["HS256"], "hmac_secret": SECRET, "public_keys": ["k.pem"]},
    ]}, tmp_path)
    assert any("hmac_secret cannot be combined" in p for p in found)


def test_hmac_secret_combined_with_jwks_url_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [
        jwks_issuer(algorithms=["HS256"], hmac_secret=SECRET),
    ]}, tmp_path)
    assert any("hmac_secret cannot be combined" in p for p in found)


def test_hs_algorithm_with_only_public_keys_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(algorithms=["HS256"])]}, tmp_path)
    assert any("cannot verify HS256" in p for p in found)


def test_asymmetric_algorithm_with_only_hmac_secret_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["RS256"], "hmac_secret": SECRET},
    ]}, tmp_path)
    assert any("hmac_secret cannot verify RS256" in p for p in found)


@pytest.mark.parametrize(("alg", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63), ("HS256", 0)])
def test_short_hmac_secret_is_refused(tmp_path: Path, alg: str, length: int) -> None:
    issuer = {"issuer": ISSUER, "algorithms": [alg], "hmac_secret": "x" * length}
    found = problems_for({"audience": AUDIENCE, "issuers": [issuer]}, tmp_path)
    assert any("hmac_secret" in p for p in found)


def test_hmac_secret_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_TEST_HMAC", "e" * 32)
    s = ok({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["HS256"], "hmac_secret": "${GUARD_TEST_HMAC}"},
    ]}, tmp_path)
    assert s.issuers[0].hmac_secret == b"e" * 32
    assert "eeee" not in repr(s)


def test_missing_hmac_secret_environment_variable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARD_TEST_HMAC", raising=False)
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["HS256"], "hmac_secret": "${GUARD_TEST_HMAC}"},
    ]}, tmp_path)
    assert any("GUARD_TEST_HMAC" in p for p in found)


@pytest.mark.parametrize("leeway", [61, 120.5])
def test_leeway_above_60_is_refused_without_allow_large_leeway(tmp_path: Path, leeway: float) -> None:
    found = problems_for({"audience": AUDIENCE, "leeway": leeway, "issuers": [jwks_issuer()]}, tmp_path)
    assert any("auth.leeway" in p and "allow_large_leeway" in p for p in found)


def test_leeway_above_60_is_accepted_with_allow_large_leeway(tmp_path: Path) -> None:
    s = ok({"audience": AUDIENCE, "leeway": 120, "allow_large_leeway": True, "issuers": [jwks_issuer()]}, tmp_path)
    assert s.leeway == 120.0


def test_leeway_has_an_absolute_ceiling(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "leeway": 3600, "allow_large_leeway": True,
                          "issuers": [jwks_issuer()]}, tmp_path)
    assert any("auth.leeway" in p for p in found)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_none_algorithm_in_config_is_refused(tmp_path: Path, alg: str) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(algorithms=[alg])]}, tmp_path)
    assert any("'none' algorithm is never accepted" in p for p in found)


def test_missing_algorithms_are_refused(tmp_path: Path) -> None:
    issuer = jwks_issuer()
    del issuer["algorithms"]
    found = problems_for({"audience": AUDIENCE, "issuers": [issuer]}, tmp_path)
    assert any("algorithms" in p and "never taken from the token" in p for p in found)


def test_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(algorithms=["RS1"])]}, tmp_path)
    assert any("unsupported algorithm 'RS1'" in p for p in found)


def test_no_issuers_and_a_protected_upstream_is_a_config_error(tmp_path: Path) -> None:
    found = problems_for({}, tmp_path, upstreams=("demo", "files"))
    assert any("no issuers configured" in p and "demo, files" in p for p in found)


def test_absent_auth_section_fails_closed_in_the_full_config() -> None:
    from guard.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse({"upstreams": {"demo": {"command": "x"}}})
    assert any("no issuers configured" in p for p in info.value.problems)


def test_anonymous_servers_make_a_config_without_issuers_valid(tmp_path: Path) -> None:
    s = ok({"anonymous_servers": ["demo"]}, tmp_path)
    assert s.anonymous_servers == frozenset({"demo"})


def test_anonymous_server_must_be_a_configured_upstream(tmp_path: Path) -> None:
    found = problems_for({"anonymous_servers": ["demo", "typo"]}, tmp_path)
    assert any("'typo' is not a configured upstream" in p for p in found)


def test_audience_is_required_with_issuers(tmp_path: Path) -> None:
    found = problems_for({"issuers": [jwks_issuer()]}, tmp_path)
    assert any("auth.audience" in p for p in found)


@pytest.mark.parametrize("url", ["http://idp.example.test/jwks", "ftp://x/jwks", "file:///etc/jwks", "jwks.json"])
def test_jwks_url_must_be_https_or_loopback_http(tmp_path: Path, url: str) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(jwks_url=url)]}, tmp_path)
    assert any("jwks_url" in p for p in found)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:1/j"])
def test_loopback_http_jwks_url_is_accepted(tmp_path: Path, url: str) -> None:
    ok({"audience": AUDIENCE, "issuers": [jwks_issuer(jwks_url=url)]}, tmp_path)


def test_public_key_file_holding_a_private_key_is_refused(tmp_path: Path, rsa: TestKey) -> None:
    (tmp_path / "private.pem").write_bytes(rsa.private_pem)
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["RS256"], "public_keys": ["private.pem"]},
    ]}, tmp_path)
    assert any("private key" in p for p in found)


def test_jwk_file_holding_private_members_is_refused(tmp_path: Path, ec: TestKey) -> None:
    (tmp_path / "k.json").write_text('{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}')
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["ES256"], "public_keys": ["k.json"]},
    ]}, tmp_path)
    assert any("private key material" in p for p in found)


def test_missing_or_garbage_key_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "garbage.txt").write_text("hello")
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["ES256"], "public_keys": ["missing.pem", "garbage.txt"]},
    ]}, tmp_path)
    assert any("missing.pem" in p and "cannot read" in p for p in found)
    assert any("garbage.txt" in p for p in found)


def test_key_that_cannot_verify_the_configured_algorithm_is_refused(tmp_path: Path, ec: TestKey) -> None:
    (tmp_path / "ec.pem").write_bytes(ec.public_pem)
    found = problems_for({"audience": AUDIENCE, "issuers": [
        {"issuer": ISSUER, "algorithms": ["RS256"], "public_keys": ["ec.pem"]},
    ]}, tmp_path)
    assert any("ec.pem" in p and "cannot verify any configured algorithm" in p for p in found)


def test_duplicate_issuer_and_unknown_keys_are_reported_together(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "leewey": 5, "issuers": [
        jwks_issuer(), jwks_issuer(jwks_ttl=5),
    ]}, tmp_path)
    text = "\n".join(found)
    assert "auth.leewey: unknown setting" in text
    assert "auth.issuers[1].jwks_ttl: unknown setting" in text
    assert "issuer declared twice" in text


def test_max_stale_shorter_than_refresh_is_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(jwks_refresh=600, jwks_max_stale=60)]},
                         tmp_path)
    assert any("jwks_max_stale" in p for p in found)


@pytest.mark.parametrize("value", [100, 10**6, 0])
def test_max_token_bytes_is_bounded(tmp_path: Path, value: int) -> None:
    found = problems_for({"audience": AUDIENCE, "max_token_bytes": value, "issuers": [jwks_issuer()]}, tmp_path)
    assert any("max_token_bytes" in p for p in found)


@pytest.mark.parametrize("origin", ["app.example.test", "https://app.example.test/path", "*"])
def test_allowed_origins_must_be_origins(tmp_path: Path, origin: str) -> None:
    found = problems_for({"anonymous_servers": ["demo"], "allowed_origins": [origin]}, tmp_path)
    assert any("allowed_origins" in p for p in found)


def test_a_single_issuer_needs_no_alias(tmp_path: Path) -> None:
    """Existing single-issuer configurations keep working unchanged: names stay user:<sub>."""
    s = ok({"audience": AUDIENCE, "issuers": [jwks_issuer()]}, tmp_path)
    assert s.issuers[0].alias is None


def test_several_issuers_need_aliases_for_all_but_one(tmp_path: Path) -> None:
    two = [jwks_issuer(), jwks_issuer(issuer="https://partner.example.test")]
    found = problems_for({"audience": AUDIENCE, "issuers": two}, tmp_path)
    assert any("auth.issuers: several issuers without an alias" in p for p in found)
    two[1]["alias"] = "partner"
    s = ok({"audience": AUDIENCE, "issuers": two}, tmp_path)
    assert [i.alias for i in s.issuers] == [None, "partner"]


@pytest.mark.parametrize("alias", ["", "a/b", "a:b", "-x", "x" * 33, "spa ce"])
def test_bad_aliases_are_refused(tmp_path: Path, alias: str) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [jwks_issuer(alias=alias)]}, tmp_path)
    assert alias == "" or any("alias" in p for p in found), found


def test_duplicate_aliases_are_refused(tmp_path: Path) -> None:
    found = problems_for({"audience": AUDIENCE, "issuers": [
        jwks_issuer(alias="p"), jwks_issuer(issuer="https://other.example.test", alias="p")]}, tmp_path)
    assert any("alias 'p' is used by another issuer" in p for p in found)
