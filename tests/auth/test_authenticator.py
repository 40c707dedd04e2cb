"""The handshake contract: where tokens come from, what a refusal looks like, who the principal is."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from guard.auth import Authenticator, AuthFailure, IssuerSettings
from guard.auth.headers import HeaderSource
from guard.context import ANONYMOUS, Principal
from guard.errors import ConfigError
from tests.auth.helpers import (
    ISSUER,
    NOW,
    FrozenClock,
    TestKey,
    bearer,
    claims,
    hs256_with_secret,
    settings,
    sign,
)


@pytest.fixture
def pem_file(tmp_path: Path, ec: TestKey) -> Path:
    path = tmp_path / "ec.pub.pem"
    path.write_bytes(ec.public_pem)
    return path


def static_issuer(*paths: Path, **overrides: Any) -> IssuerSettings:
    base: dict[str, Any] = {"issuer": ISSUER, "algorithms": ("ES256", "RS256"), "public_keys": paths}
    base.update(overrides)
    return IssuerSettings(**base)


@pytest.fixture
def auth(pem_file: Path, clock: FrozenClock) -> Authenticator:
    return Authenticator(settings(static_issuer(pem_file), resource="https://guard.example.test"), clock=clock)


async def fail(auth: Authenticator, headers: HeaderSource, server: str = "demo", **kw: Any) -> AuthFailure:
    outcome = await auth.authenticate(server, headers, **kw)
    assert isinstance(outcome, AuthFailure), outcome
    return outcome


# --- where the token comes from --------------------------------------------------------------

async def test_missing_token_gets_401_with_resource_metadata_and_no_error(auth: Authenticator) -> None:
    failure = await fail(auth, {"host": "guard.example.test"})
    assert (failure.status, failure.reason) == (401, "missing_token")
    assert failure.headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="https://guard.example.test/.well-known/oauth-protected-resource/mcp/demo"'
    )


async def test_invalid_token_gets_401_with_error_invalid_token(auth: Authenticator, ec: TestKey) -> None:
    failure = await fail(auth, bearer(sign(ec, claims(aud="nope"))))
    assert failure.status == 401
    challenge = failure.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer resource_metadata="https://guard.example.test/.well-known/')
    assert challenge.endswith(', error="invalid_token", error_description="token was not issued for this server '
                              '(audience)"')


async def test_expired_token_is_told_token_expired(auth: Authenticator, ec: TestKey) -> None:
    failure = await fail(auth, bearer(sign(ec, claims(iat=int(NOW) - 7200, nbf=int(NOW) - 7200, exp=int(NOW) - 3600))))
    assert (failure.status, failure.reason) == (401, "expired")
    assert failure.headers["WWW-Authenticate"].endswith('error="invalid_token", error_description="token expired"')
    assert failure.description == "token expired"


async def test_signature_failures_are_described_uniformly(auth: Authenticator, ec: TestKey) -> None:
    """An attacker learns nothing about keys or algorithms from the refusal text."""
    forged = sign(ec)[:-4] + "AAAA"
    failure = await fail(auth, bearer(forged))
    assert failure.reason == "bad_signature" and failure.description == "invalid token"


@pytest.mark.parametrize("query", ["access_token=abc", "x=1&access_token=", "token=abc"])
async def test_token_in_query_string_is_refused_and_never_read(auth: Authenticator, ec: TestKey, query: str) -> None:
    failure = await fail(auth, bearer(sign(ec)), query=query)
    assert (failure.status, failure.reason) == (400, "token_in_query")
    assert 'error="invalid_request"' in failure.headers["WWW-Authenticate"]


async def test_valid_token_in_query_string_alone_does_not_authenticate(auth: Authenticator, ec: TestKey) -> None:
    failure = await fail(auth, {}, query="access_token=" + sign(ec))
    assert failure.reason == "token_in_query"


@pytest.mark.parametrize("value", ["Basic YWxpY2U6c2VjcmV0", "Token abc", "", "Bearerabc"])
async def test_other_schemes_count_as_no_bearer_token(auth: Authenticator, value: str) -> None:
    assert (await fail(auth, {"authorization": value})).reason == "missing_token"


@pytest.mark.parametrize("value", ["Bearer a b", "Bearer tok\"en", "Bearer  ", "Bearer é", "Bearer", "Bearer a,b"])
async def test_malformed_bearer_value_is_refused(auth: Authenticator, value: str) -> None:
    failure = await fail(auth, {"authorization": value})
    assert (failure.status, failure.reason) == (401, "malformed_token")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_scheme_is_case_insensitive(auth: Authenticator, ec: TestKey, scheme: str) -> None:
    assert isinstance(await auth.authenticate("demo", {"authorization": f"{scheme} {sign(ec)}"}), Principal)


async def test_failure_reason_and_headers_never_contain_the_token(auth: Authenticator, ec: TestKey) -> None:
    token = sign(ec, claims(aud="nope"))
    failure = await fail(auth, bearer(token))
    text = failure.reason + json.dumps(dict(failure.headers))
    assert token not in text and token.split(".")[1] not in text


# --- resource_metadata URL -------------------------------------------------------------------

async def test_resource_metadata_is_derived_from_host_without_resource(pem_file: Path, clock: FrozenClock) -> None:
    auth = Authenticator(settings(static_issuer(pem_file)), clock=clock)
    failure = await fail(auth, {"host": "127.0.0.1:8787"})
    assert 'resource_metadata="http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp/demo"' in (
        failure.headers["WWW-Authenticate"])
    failure = await fail(auth, {}, base_url="wss://guard.example.test/")
    assert "https://guard.example.test/.well-known/oauth-protected-resource/mcp/demo" in (
        failure.headers["WWW-Authenticate"])


@pytest.mark.parametrize("host", ['evil" error="x', "a b", "x\r\nSet-Cookie: a=b", "h/ost"])
async def test_hostile_host_header_is_not_reflected_into_the_challenge(
    pem_file: Path, clock: FrozenClock, host: str
) -> None:
    auth = Authenticator(settings(static_issuer(pem_file)), clock=clock)
    failure = await fail(auth, {"host": host})
    assert failure.headers["WWW-Authenticate"] == "Bearer"


# --- origin ----------------------------------------------------------------------------------

async def test_disallowed_origin_is_refused_with_403(pem_file: Path, clock: FrozenClock, ec: TestKey) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), allowed_origins=("https://app.example.test",)),
                         clock=clock)
    failure = await fail(auth, {**bearer(sign(ec)), "origin": "https://evil.example.test"})
    assert (failure.status, failure.reason) == (403, "origin_not_allowed")
    ok = await auth.authenticate("demo", {**bearer(sign(ec)), "origin": "https://APP.example.test"})
    assert isinstance(ok, Principal)
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec))), Principal)  # no Origin: not a browser


async def test_dns_rebinding_origin_cannot_reach_an_anonymous_server(pem_file: Path, clock: FrozenClock) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), anonymous_servers=frozenset({"demo"})), clock=clock)
    failure = await fail(auth, {"origin": "http://attacker.example.test"})
    assert failure.reason == "origin_not_allowed"
    for origin in ("http://localhost:6274", "http://127.0.0.1", "http://[::1]:3000"):
        assert await auth.authenticate("demo", {"origin": origin}) is ANONYMOUS


# --- anonymous mode --------------------------------------------------------------------------

async def test_anonymous_server_accepts_no_token_and_logs_a_warning(
    pem_file: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="guard.auth"):
        auth = Authenticator(settings(static_issuer(pem_file), anonymous_servers=frozenset({"demo"})), clock=clock)
    assert any("'demo' accepts unauthenticated clients" in r.getMessage() for r in caplog.records)
    assert await auth.authenticate("demo", {}) is ANONYMOUS
    assert isinstance(await auth.authenticate("other", {}), AuthFailure)


async def test_anonymous_server_still_refuses_an_invalid_token(
    pem_file: Path, clock: FrozenClock, attacker: TestKey
) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), anonymous_servers=frozenset({"demo"})), clock=clock)
    assert (await fail(auth, bearer(sign(attacker)))).reason == "bad_signature"


async def test_anonymous_server_with_a_valid_token_gets_the_principal(
    pem_file: Path, clock: FrozenClock, ec: TestKey
) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), anonymous_servers=frozenset({"demo"})), clock=clock)
    outcome = await auth.authenticate("demo", bearer(sign(ec)))
    assert isinstance(outcome, Principal) and outcome.subject == "alice"


async def test_default_settings_refuse_everything(ec: TestKey) -> None:
    from guard.auth import AuthSettings

    auth = Authenticator(AuthSettings())
    assert (await fail(auth, bearer(sign(ec)))).reason == "unknown_issuer"
    assert (await fail(auth, {})).reason == "missing_token"


# --- keys: PEM, JWK, JWKS files and HMAC -----------------------------------------------------

async def test_rsa_jwk_and_jwks_files_verify(tmp_path: Path, rsa: TestKey, ec: TestKey, clock: FrozenClock) -> None:
    (tmp_path / "rsa.jwk").write_text(json.dumps(rsa.jwk))
    (tmp_path / "set.json").write_text(json.dumps({"keys": [ec.jwk]}))
    auth = Authenticator(settings(static_issuer(tmp_path / "rsa.jwk", tmp_path / "set.json")), clock=clock)
    assert isinstance(await auth.authenticate("demo", bearer(sign(rsa))), Principal)
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec, kid=None))), Principal)


async def test_pem_key_without_kid_verifies_tokens_with_any_kid(auth: Authenticator, ec: TestKey) -> None:
    outcome = await auth.authenticate("demo", bearer(sign(ec, kid="whatever-the-idp-says")))
    assert isinstance(outcome, Principal) and outcome.key_id == "whatever-the-idp-says"


async def test_hmac_issuer_verifies_hs256_and_refuses_everything_else(
    clock: FrozenClock, ec: TestKey
) -> None:
    secret = b"k" * 32
    issuer = IssuerSettings(issuer=ISSUER, algorithms=("HS256",), hmac_secret=secret)
    auth = Authenticator(settings(issuer), clock=clock)
    good = hs256_with_secret(secret, {"alg": "HS256", "typ": "JWT"}, claims())
    assert isinstance(await auth.authenticate("demo", bearer(good)), Principal)
    forged = hs256_with_secret(b"x" * 32, {"alg": "HS256"}, claims())
    assert (await fail(auth, bearer(forged))).reason == "bad_signature"
    hs512 = hs256_with_secret(secret, {"alg": "HS512"}, claims())
    assert (await fail(auth, bearer(hs512))).reason == "algorithm_not_allowed"
    assert (await fail(auth, bearer(sign(ec)))).reason == "algorithm_not_allowed"


async def test_several_issuers_each_with_their_own_keys(
    tmp_path: Path, ec: TestKey, rsa: TestKey, clock: FrozenClock
) -> None:
    (tmp_path / "ec.pem").write_bytes(ec.public_pem)
    (tmp_path / "rsa.pem").write_bytes(rsa.public_pem)
    first = IssuerSettings(issuer=ISSUER, algorithms=("ES256",), public_keys=(tmp_path / "ec.pem",))
    second = IssuerSettings(issuer="https://auth0.example.test/", algorithms=("RS256",), alias="partner",
                            public_keys=(tmp_path / "rsa.pem",), audience=("https://api.example.test",),
                            roles_claim=("https://example.test/roles",))
    auth = Authenticator(settings(first, second), clock=clock)
    p1 = await auth.authenticate("demo", bearer(sign(ec)))
    assert isinstance(p1, Principal) and p1.issuer == ISSUER and p1.namespace is None
    token = sign(rsa, claims(iss="https://auth0.example.test/", aud="https://api.example.test",
                             **{"https://example.test/roles": ["admin"]}))
    p2 = await auth.authenticate("demo", bearer(token))
    assert isinstance(p2, Principal) and p2.issuer == "https://auth0.example.test/" and p2.roles == ("admin",)
    assert p2.namespace == "partner"
    # issuer one's key cannot vouch for issuer two's tokens
    cross = sign(ec, claims(iss="https://auth0.example.test/", aud="https://api.example.test"))
    assert (await fail(auth, bearer(cross))).reason == "algorithm_not_allowed"


async def test_two_issuers_without_aliases_are_refused(tmp_path: Path, ec: TestKey, clock: FrozenClock) -> None:
    """Both would be named user:<sub>: one issuer's 'alice' or 'admin' would be the other's."""
    (tmp_path / "ec.pem").write_bytes(ec.public_pem)
    first = IssuerSettings(issuer=ISSUER, algorithms=("ES256",), public_keys=(tmp_path / "ec.pem",))
    second = IssuerSettings(issuer="https://other.example.test/", algorithms=("ES256",),
                            public_keys=(tmp_path / "ec.pem",))
    with pytest.raises(ConfigError) as info:
        Authenticator(settings(first, second), clock=clock)
    assert "alias" in str(info.value.problems)


async def test_home_issuer_cannot_mint_names_in_an_aliased_issuers_namespace(
    tmp_path: Path, ec: TestKey, rsa: TestKey, clock: FrozenClock
) -> None:
    """The issuer without alias names its principals user:<sub>: a sub 'partner/bob' would be the
    partner issuer's bob, and a role 'partner/admin' the partner's admin. Refused / dropped."""
    (tmp_path / "ec.pem").write_bytes(ec.public_pem)
    (tmp_path / "rsa.pem").write_bytes(rsa.public_pem)
    home = IssuerSettings(issuer=ISSUER, algorithms=("ES256",), public_keys=(tmp_path / "ec.pem",))
    partner = IssuerSettings(issuer="https://partner.example.test/", algorithms=("RS256",), alias="partner",
                             public_keys=(tmp_path / "rsa.pem",))
    auth = Authenticator(settings(home, partner), clock=clock)
    assert (await fail(auth, bearer(sign(ec, claims(sub="partner/bob"))))).reason == "invalid_subject"
    p = await auth.authenticate("demo", bearer(sign(ec, claims(roles=["partner/admin", "analyst"]))))
    assert isinstance(p, Principal) and p.roles == ("analyst",)
    # the aliased issuer's own names may contain anything: they are prefixed
    q = await auth.authenticate("demo", bearer(sign(rsa, claims(iss="https://partner.example.test/",
                                                                 sub="home/x", roles=["partner/admin"]))))
    assert isinstance(q, Principal) and q.subject == "home/x" and q.roles == ("partner/admin",)


# --- principal mapping -----------------------------------------------------------------------

@pytest.mark.parametrize(("path", "extra", "roles"), [
    ("roles", {"roles": ["a", "b", "a"]}, ("a", "b")),
    ("groups", {"groups": ["/ops", "dev"]}, ("/ops", "dev")),
    ("realm_access.roles", {"realm_access": {"roles": ["analyst", "offline_access"]}}, ("analyst", "offline_access")),
    ("scope", {"scope": "read:notes  write:notes"}, ("read:notes", "write:notes")),
    ("scp", {"scp": ["read", "write"]}, ("read", "write")),
    ("https://example.test/roles", {"https://example.test/roles": ["admin"]}, ("admin",)),
    ("missing", {}, ()),
    ("roles", {"roles": [1, None, "ok", ""]}, ("ok",)),
])
async def test_roles_come_from_the_configured_claim_path(
    pem_file: Path, clock: FrozenClock, ec: TestKey, path: str, extra: dict[str, Any], roles: tuple[str, ...]
) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), roles_claim=(path,)), clock=clock)
    outcome = await auth.authenticate("demo", bearer(sign(ec, claims(**{"roles": None, **extra}))))
    assert isinstance(outcome, Principal) and outcome.roles == roles


async def test_subject_and_tenant_claims_are_configurable(pem_file: Path, clock: FrozenClock, ec: TestKey) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), subject_claim="preferred_username",
                                  tenant_claim="org.id", roles_claim=("realm_access.roles", "scope")), clock=clock)
    token = sign(ec, claims(preferred_username="alice@example.test", org={"id": "acme"},
                            realm_access={"roles": ["analyst"]}, scope="notes:read"))
    outcome = await auth.authenticate("demo", bearer(token))
    assert outcome == Principal(subject="alice@example.test", roles=("analyst", "notes:read"), issuer=ISSUER,
                                tenant="acme", expires_at=NOW + 600, key_id="ec-1")


@pytest.mark.parametrize("sub", [None, "", 42, ["alice"], "x" * 2000])
async def test_token_without_a_usable_subject_is_refused(auth: Authenticator, ec: TestKey, sub: object) -> None:
    assert (await fail(auth, bearer(sign(ec, claims(sub=sub))))).reason in ("invalid_subject",)


async def test_required_claims_and_typ_are_enforced(pem_file: Path, clock: FrozenClock, ec: TestKey) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), required_claims=("jti",), typ="at+jwt"), clock=clock)
    good = sign(ec, claims(jti="1"), headers={"typ": "application/at+jwt"})
    assert isinstance(await auth.authenticate("demo", bearer(good)), Principal)
    assert (await fail(auth, bearer(sign(ec, claims(), headers={"typ": "at+jwt"})))).reason == "invalid_claims"
    assert (await fail(auth, bearer(sign(ec, claims(jti="1"), headers={"typ": "JWT"})))).reason == "invalid_type"
    assert (await fail(auth, bearer(sign(ec, claims(jti="1"))))).reason == "invalid_type"


async def test_principal_never_holds_the_token(auth: Authenticator, ec: TestKey) -> None:
    token = sign(ec)
    outcome = await auth.authenticate("demo", bearer(token))
    assert isinstance(outcome, Principal)
    assert token not in repr(outcome) and token.split(".")[2] not in repr(outcome)


# --- RFC 9728 discovery ----------------------------------------------------------------------

def test_metadata_document_per_server(auth: Authenticator) -> None:
    assert auth.metadata("demo", "http://ignored") == {
        "resource": "https://guard.example.test/mcp/demo",
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
    }
    assert auth.metadata(None, "http://ignored")["resource"] == "https://guard.example.test"


def test_metadata_lists_configured_authorization_servers_and_scopes(pem_file: Path) -> None:
    auth = Authenticator(settings(static_issuer(pem_file), authorization_servers=("https://as.example.test",),
                                  scopes_supported=("notes:read",)))
    doc = auth.metadata("demo", "http://127.0.0.1:1/")
    assert doc["resource"] == "http://127.0.0.1:1/mcp/demo"
    assert doc["authorization_servers"] == ["https://as.example.test"]
    assert doc["scopes_supported"] == ["notes:read"]


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_well_known_routes_serve_rfc9728_documents_over_http(pem_file: Path) -> None:
    auth = Authenticator(settings(static_issuer(pem_file)))
    async with serve(Starlette(routes=auth.routes())) as base, httpx.AsyncClient() as http:
        root = await http.get(base + "/.well-known/oauth-protected-resource")
        one = await http.get(base + "/.well-known/oauth-protected-resource/mcp/demo")
        missing = await http.get(base + "/.well-known/oauth-protected-resource/mcp/nope")
        post = await http.post(base + "/.well-known/oauth-protected-resource/mcp/demo")
    assert root.status_code == 200 and root.json()["resource"] == base
    assert one.status_code == 200 and one.json()["resource"] == base + "/mcp/demo"
    assert one.json()["authorization_servers"] == [ISSUER]
    assert one.headers["access-control-allow-origin"] == "*"
    assert missing.status_code == 404
    assert post.status_code == 405


async def test_challenge_url_and_served_document_agree(pem_file: Path) -> None:
    """A client following resource_metadata from the 401 gets a document whose resource matches."""
    auth = Authenticator(settings(static_issuer(pem_file)))
    async with serve(Starlette(routes=auth.routes())) as base, httpx.AsyncClient() as http:
        failure = await fail(auth, {"host": base.removeprefix("http://")})
        url = failure.headers["WWW-Authenticate"].split('resource_metadata="')[1].split('"')[0]
        doc = (await http.get(url)).json()
    assert doc["resource"] == base + "/mcp/demo"


def test_key_file_that_went_bad_after_parsing_is_a_config_error(tmp_path: Path) -> None:
    from guard.errors import ConfigError

    path = tmp_path / "gone.pem"
    with pytest.raises(ConfigError):
        Authenticator(settings(static_issuer(path)))


# --- repeated security headers -----------------------------------------------------------------

async def test_two_authorization_headers_are_refused_whatever_their_order(pem_file: Path, clock: FrozenClock,
                                                                         ec: TestKey) -> None:
    """Whichever copy a front proxy reads, guard must not read another: two are refused, 400."""
    from starlette.datastructures import Headers

    auth = Authenticator(settings(static_issuer(pem_file)), clock=clock)
    good = f"Bearer {sign(ec)}"
    for raw in ([("Authorization", good), ("authorization", "Bearer x.y.z")],
                [("authorization", "Bearer x.y.z"), ("AUTHORIZATION", good)],
                [(b"authorization", good.encode()), (b"authorization", good.encode())],
                Headers(raw=[(b"authorization", good.encode()), (b"authorization", b"Basic YTpi")])):
        failure = await fail(auth, raw)
        assert (failure.status, failure.reason) == (400, "duplicate_authorization")
        assert 'error="invalid_request"' in failure.headers["WWW-Authenticate"]
    failure = await fail(auth, [("authorization", good), ("origin", "https://a.test"), ("Origin", "https://b.test")])
    assert (failure.status, failure.reason) == (400, "duplicate_origin")
    ok = await auth.authenticate("demo", Headers(raw=[(b"authorization", good.encode()), (b"x-a", b"1"),
                                                      (b"x-a", b"2")]))
    assert isinstance(ok, Principal)
