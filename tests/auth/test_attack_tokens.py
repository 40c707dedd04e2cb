"""Attack tokens: each test is named after the attack it stops (RFC 8725, known JWT CVEs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guard.auth import Authenticator, AuthFailure, IssuerSettings
from guard.context import Principal
from tests.auth.helpers import (
    AUDIENCE,
    ISSUER,
    NOW,
    FrozenClock,
    JWKSServer,
    TestKey,
    bearer,
    claims,
    hs256_with_secret,
    raw_token,
    settings,
    sign,
)


def jwks_issuer(server: JWKSServer, **overrides: object) -> IssuerSettings:
    base: dict[str, object] = {"issuer": ISSUER, "algorithms": ("ES256", "RS256"), "jwks_url": server.url}
    base.update(overrides)
    return IssuerSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def auth(jwks: JWKSServer, clock: FrozenClock) -> AsyncIterator[Authenticator]:
    authenticator = Authenticator(settings(jwks_issuer(jwks)), clock=clock)
    yield authenticator
    await authenticator.aclose()


async def reason_for(auth: Authenticator, token: str, server: str = "demo") -> str:
    outcome = await auth.authenticate(server, bearer(token))
    assert isinstance(outcome, AuthFailure), outcome
    return outcome.reason


async def test_valid_token_is_accepted_as_a_baseline(auth: Authenticator, ec: TestKey) -> None:
    outcome = await auth.authenticate("demo", bearer(sign(ec)))
    assert isinstance(outcome, Principal)
    assert (outcome.subject, outcome.issuer, outcome.key_id) == ("alice", ISSUER, "ec-1")
    assert outcome.expires_at == NOW + 600


# --- alg=none -------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", " none"])
@pytest.mark.parametrize("signature", [b"", b"x"])
async def test_alg_none_is_rejected_in_any_casing(auth: Authenticator, alg: str, signature: bytes) -> None:
    token = raw_token({"alg": alg, "typ": "JWT", "kid": "ec-1"}, claims(), signature)
    if not signature:
        token = token.rsplit(".", 1)[0] + "."
    assert await reason_for(auth, token) in ("algorithm_not_allowed", "malformed_token")


async def test_alg_none_is_rejected_even_when_listed_nowhere_else(auth: Authenticator) -> None:
    token = raw_token({"alg": "none"}, claims(), b"x")
    assert await reason_for(auth, token) == "algorithm_not_allowed"


# --- algorithm confusion (CVE-2022-29217 style) ----------------------------------------------

@pytest.mark.parametrize("key_name", ["rsa", "ec"])
async def test_hs256_signed_with_the_public_key_pem_is_rejected(
    auth: Authenticator, key_name: str, request: pytest.FixtureRequest
) -> None:
    key: TestKey = request.getfixturevalue(key_name)
    token = hs256_with_secret(key.public_pem, {"alg": "HS256", "kid": key.kid}, claims())
    assert await reason_for(auth, token) == "algorithm_not_allowed"


async def test_hs256_signed_with_the_public_jwk_is_rejected(auth: Authenticator, rsa: TestKey) -> None:
    import json

    token = hs256_with_secret(json.dumps(rsa.jwk).encode(), {"alg": "HS256", "kid": rsa.kid}, claims())
    assert await reason_for(auth, token) == "algorithm_not_allowed"


async def test_public_key_is_never_bound_to_an_hmac_algorithm(
    tmp_path: Path, rsa: TestKey, clock: FrozenClock
) -> None:
    """Belt and braces: a key from public_keys is never bound to an HMAC algorithm."""
    from guard.auth.keys import KeyLoadError, key_from_jwk

    with pytest.raises(KeyLoadError):
        key_from_jwk(rsa.jwk, ["HS256"])
    pem = tmp_path / "rsa.pub.pem"
    pem.write_bytes(rsa.public_pem)
    issuer = IssuerSettings(issuer=ISSUER, algorithms=("RS256",), public_keys=(pem,))
    authenticator = Authenticator(settings(issuer), clock=clock)
    token = hs256_with_secret(rsa.public_pem, {"alg": "HS256"}, claims())
    assert await reason_for(authenticator, token) == "algorithm_not_allowed"
    await authenticator.aclose()


async def test_es256_key_cannot_verify_a_token_claiming_rs256(auth: Authenticator, ec: TestKey) -> None:
    forged = raw_token({"alg": "RS256", "kid": ec.kid}, claims(), b"\x00" * 256)
    assert await reason_for(auth, forged) in ("unknown_key", "bad_signature")


async def test_token_signed_by_an_unknown_key_with_a_known_kid_is_rejected(
    auth: Authenticator, attacker: TestKey, ec: TestKey
) -> None:
    assert await reason_for(auth, sign(attacker, kid=ec.kid)) == "bad_signature"


# --- audience --------------------------------------------------------------------------------

async def test_wrong_audience_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    assert await reason_for(auth, sign(ec, claims(aud="https://other.example.test"))) == "invalid_audience"


async def test_missing_audience_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    assert await reason_for(auth, sign(ec, claims(aud=None))) == "invalid_audience"


async def test_audience_list_without_ours_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    token = sign(ec, claims(aud=["https://a.example.test", "https://b.example.test", AUDIENCE + "/"]))
    assert await reason_for(auth, token) == "invalid_audience"


@pytest.mark.parametrize("aud", [[AUDIENCE + "x"], "", [], [123], {"aud": AUDIENCE}])
async def test_malformed_or_lookalike_audience_is_rejected(auth: Authenticator, ec: TestKey, aud: object) -> None:
    assert await reason_for(auth, sign(ec, claims(aud=aud))) == "invalid_audience"


async def test_audience_list_with_ours_is_accepted(auth: Authenticator, ec: TestKey) -> None:
    outcome = await auth.authenticate("demo", bearer(sign(ec, claims(aud=["https://x.test", AUDIENCE]))))
    assert isinstance(outcome, Principal)


async def test_token_for_another_upstream_is_rejected_with_per_server_audience(
    jwks: JWKSServer, ec: TestKey, clock: FrozenClock
) -> None:
    """RFC 8707: a token minted for /mcp/notes must not open /mcp/payroll."""
    s = settings(jwks_issuer(jwks), audience=(AUDIENCE + "/mcp/{server}",), servers=frozenset({"notes", "payroll"}))
    authenticator = Authenticator(s, clock=clock)
    try:
        token = sign(ec, claims(aud=AUDIENCE + "/mcp/notes"))
        assert isinstance(await authenticator.authenticate("notes", bearer(token)), Principal)
        assert await reason_for(authenticator, token, "payroll") == "invalid_audience"
    finally:
        await authenticator.aclose()


# --- issuer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("iss", [
    ISSUER + ".evil.test", "https://evil.test/" + ISSUER, ISSUER + "/", ISSUER.upper(), "x" + ISSUER, ISSUER[:-1],
])
async def test_issuer_that_merely_contains_the_real_issuer_is_rejected(
    auth: Authenticator, ec: TestKey, iss: str
) -> None:
    assert await reason_for(auth, sign(ec, claims(iss=iss))) == "unknown_issuer"


@pytest.mark.parametrize("iss", [[ISSUER], None, 1, {"iss": ISSUER}])
async def test_issuer_of_the_wrong_type_is_rejected(auth: Authenticator, ec: TestKey, iss: object) -> None:
    assert await reason_for(auth, sign(ec, claims(iss=iss))) == "unknown_issuer"


# --- time ------------------------------------------------------------------------------------

async def test_exp_past_leeway_by_one_second_is_rejected(
    auth: Authenticator, ec: TestKey, clock: FrozenClock
) -> None:
    token = sign(ec, claims(exp=int(NOW) - 31))
    assert await reason_for(auth, token) == "expired"


async def test_exp_exactly_at_the_leeway_boundary_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    """RFC 7519 4.1.4: the current time MUST be *before* exp (+ leeway)."""
    assert await reason_for(auth, sign(ec, claims(exp=int(NOW) - 30))) == "expired"


async def test_exp_one_second_inside_the_leeway_is_accepted(auth: Authenticator, ec: TestKey) -> None:
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec, claims(exp=int(NOW) - 29)))), Principal)


@pytest.mark.parametrize("exp", [None, "9999999999", True, [1], float("inf"), float("nan")])
async def test_missing_or_malformed_exp_is_rejected(auth: Authenticator, ec: TestKey, exp: object) -> None:
    assert await reason_for(auth, sign(ec, claims(exp=exp))) == "invalid_claims"


async def test_nbf_in_the_future_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    assert await reason_for(auth, sign(ec, claims(nbf=int(NOW) + 31))) == "not_yet_valid"


async def test_nbf_within_leeway_is_accepted(auth: Authenticator, ec: TestKey) -> None:
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec, claims(nbf=int(NOW) + 30)))), Principal)


async def test_iat_in_the_future_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    assert await reason_for(auth, sign(ec, claims(iat=int(NOW) + 3600))) == "not_yet_valid"


async def test_expired_token_is_rejected_when_the_clock_moves_on(
    auth: Authenticator, ec: TestKey, clock: FrozenClock
) -> None:
    token = sign(ec)
    assert isinstance(await auth.authenticate("demo", bearer(token)), Principal)
    clock.advance(600 + 30)
    assert await reason_for(auth, token) == "expired"


# --- kid -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kid", ["../../dev/null", "' OR 1=1--", "/etc/passwd", "file:///dev/zero", "*"])
async def test_hostile_kid_values_find_no_key(auth: Authenticator, ec: TestKey, kid: str) -> None:
    assert await reason_for(auth, sign(ec, kid=kid)) == "unknown_key"


@pytest.mark.parametrize("kid", ["\x00", "line\nbreak", "é"])
async def test_kid_with_control_or_non_ascii_characters_is_rejected(
    auth: Authenticator, ec: TestKey, kid: str
) -> None:
    assert await reason_for(auth, sign(ec, kid=kid)) == "malformed_token"


@pytest.mark.parametrize("kid", [1, ["ec-1"], {"kid": "ec-1"}, True])
async def test_non_string_kid_is_rejected(auth: Authenticator, ec: TestKey, kid: object) -> None:
    token = raw_token({"alg": "ES256", "kid": kid}, claims(), b"x")
    assert await reason_for(auth, token) == "malformed_token"


async def test_10kb_kid_is_rejected_by_the_size_cap_before_parsing(auth: Authenticator, ec: TestKey) -> None:
    assert await reason_for(auth, sign(ec, kid="k" * 10_240)) == "token_too_large"


async def test_10kb_kid_is_rejected_without_a_jwks_fetch_even_with_a_raised_cap(
    jwks: JWKSServer, ec: TestKey, clock: FrozenClock
) -> None:
    authenticator = Authenticator(settings(jwks_issuer(jwks), max_token_bytes=65536), clock=clock)
    try:
        assert await reason_for(authenticator, sign(ec, kid="k" * 10_240)) == "malformed_token"
        assert jwks.requests == []
    finally:
        await authenticator.aclose()


# --- size, shape, crit -----------------------------------------------------------------------

async def test_oversized_token_is_rejected_before_any_parsing(auth: Authenticator, jwks: JWKSServer) -> None:
    garbage = "A" * 8193  # not even a JWT: the size check must come first
    assert await reason_for(auth, garbage) == "token_too_large"
    assert jwks.requests == []


async def test_oversized_authorization_header_is_rejected(auth: Authenticator) -> None:
    outcome = await auth.authenticate("demo", {"authorization": "Bearer " + "A" * 100_000})
    assert isinstance(outcome, AuthFailure) and outcome.reason == "token_too_large"


@pytest.mark.parametrize("token", [
    "a.b", "a.b.c.d.e", "....", "eyJhbGciOiJFUzI1NiJ9.e30.", "!!!.e30.c2ln", "e30.e30.c2ln", "W10.W10.c2ln",
])
async def test_malformed_compact_serialization_is_rejected(auth: Authenticator, token: str) -> None:
    assert await reason_for(auth, token) in ("malformed_token", "unknown_issuer")


async def test_unknown_crit_header_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    token = sign(ec, headers={"crit": ["urn:example:must-understand"], "urn:example:must-understand": 1})
    assert await reason_for(auth, token) == "unsupported_critical_header"


async def test_b64_false_unencoded_payload_is_rejected(auth: Authenticator, ec: TestKey) -> None:
    token = raw_token({"alg": "ES256", "kid": ec.kid, "b64": False, "crit": ["b64"]}, claims(), b"x")
    assert await reason_for(auth, token) == "unsupported_critical_header"


async def test_jwe_shaped_token_is_rejected(auth: Authenticator) -> None:
    assert await reason_for(auth, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d") == "malformed_token"


# --- header-driven key fetching (jku, x5u, jwk, x5c) -----------------------------------------

async def test_jku_and_x5u_pointing_at_a_loopback_server_cause_zero_requests(
    auth: Authenticator, attacker: TestKey, trap: JWKSServer, jwks: JWKSServer
) -> None:
    trap.publish(attacker)
    token = sign(attacker, headers={"jku": trap.url, "x5u": trap.base + "/cert.pem"})
    assert await reason_for(auth, token) == "unknown_key"
    assert trap.requests == []
    assert all(path == "/jwks" for path in jwks.requests)


async def test_embedded_jwk_header_is_never_trusted(auth: Authenticator, attacker: TestKey, ec: TestKey) -> None:
    token = sign(attacker, kid=ec.kid, headers={"jwk": attacker.jwk})
    assert await reason_for(auth, token) == "bad_signature"


async def test_embedded_x5c_header_is_never_trusted(auth: Authenticator, attacker: TestKey, trap: JWKSServer) -> None:
    token = sign(attacker, headers={"x5c": ["MIIB"], "x5u": trap.url})
    assert await reason_for(auth, token) == "unknown_key"
    assert trap.requests == []


# --- JWKS: flood, outage, rotation -----------------------------------------------------------

async def test_flood_of_random_kids_causes_at_most_one_jwks_fetch_per_cooldown(
    auth: Authenticator, ec: TestKey, attacker: TestKey, jwks: JWKSServer, clock: FrozenClock
) -> None:
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec))), Principal)
    assert len(jwks.requests) == 1
    for i in range(200):
        assert await reason_for(auth, sign(attacker, kid=f"random-{i}")) == "unknown_key"
    assert len(jwks.requests) == 1
    clock.advance(30)
    reasons = await asyncio.gather(*(reason_for(auth, sign(attacker, kid=f"burst-{i}")) for i in range(50)))
    assert set(reasons) == {"unknown_key"}
    assert len(jwks.requests) == 2
    clock.advance(29)
    assert await reason_for(auth, sign(attacker, kid="late")) == "unknown_key"
    assert len(jwks.requests) == 2


async def test_jwks_endpoint_down_keeps_last_good_keys_then_fails_closed(
    jwks: JWKSServer, ec: TestKey, clock: FrozenClock
) -> None:
    issuer = jwks_issuer(jwks, jwks_refresh=300.0, jwks_max_stale=1800.0)
    authenticator = Authenticator(settings(issuer), clock=clock)
    try:
        def fresh() -> str:
            return sign(ec, claims(iat=int(clock.now), nbf=int(clock.now), exp=int(clock.now) + 600))

        assert isinstance(await authenticator.authenticate("demo", bearer(fresh())), Principal)
        jwks.status = 500
        clock.advance(301)  # refresh due: the fetch fails, the last good keys still verify
        assert isinstance(await authenticator.authenticate("demo", bearer(fresh())), Principal)
        assert len(jwks.requests) == 2
        clock.advance(1800 - 301)  # exactly max_stale after the last good fetch: still usable
        assert isinstance(await authenticator.authenticate("demo", bearer(fresh())), Principal)
        clock.advance(1)  # past max_stale: fail closed
        outcome = await authenticator.authenticate("demo", bearer(fresh()))
        assert isinstance(outcome, AuthFailure)
        assert (outcome.status, outcome.reason) == (503, "keys_unavailable")
        jwks.status = 200  # endpoint back: the next fetch (after the cooldown) restores service
        clock.advance(30)
        assert isinstance(await authenticator.authenticate("demo", bearer(fresh())), Principal)
    finally:
        await authenticator.aclose()


async def test_jwks_endpoint_unreachable_fails_closed(ec: TestKey, clock: FrozenClock) -> None:
    server = JWKSServer().start()
    url = server.url
    server.stop()  # nothing listens on this loopback port any more
    issuer = IssuerSettings(issuer=ISSUER, algorithms=("ES256",), jwks_url=url, jwks_timeout=2.0)
    authenticator = Authenticator(settings(issuer), clock=clock)
    try:
        outcome = await authenticator.authenticate("demo", bearer(sign(ec)))
        assert isinstance(outcome, AuthFailure) and outcome.status == 503
    finally:
        await authenticator.aclose()


@pytest.mark.parametrize("body", [{"keys": "nope"}, {"nokeys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}])
async def test_jwks_with_no_usable_keys_fails_closed(
    jwks: JWKSServer, ec: TestKey, clock: FrozenClock, body: dict[str, object]
) -> None:
    jwks.document = body
    authenticator = Authenticator(settings(jwks_issuer(jwks)), clock=clock)
    try:
        outcome = await authenticator.authenticate("demo", bearer(sign(ec)))
        assert isinstance(outcome, AuthFailure) and outcome.reason == "keys_unavailable"
    finally:
        await authenticator.aclose()


async def test_jwks_symmetric_key_cannot_be_injected_via_the_jwks_endpoint(
    jwks: JWKSServer, ec: TestKey, clock: FrozenClock
) -> None:
    """An oct key in the JWKS is skipped, so an HS256 token made with its secret is refused."""
    from tests.auth.helpers import b64

    secret = b"s" * 32
    jwks.document = {"keys": [ec.jwk, {"kty": "oct", "kid": "hmac", "k": b64(secret)}]}
    issuer = jwks_issuer(jwks, algorithms=("ES256",))
    authenticator = Authenticator(settings(issuer), clock=clock)
    try:
        token = hs256_with_secret(secret, {"alg": "HS256", "kid": "hmac"}, claims())
        assert await reason_for(authenticator, token) == "algorithm_not_allowed"
        assert isinstance(await authenticator.authenticate("demo", bearer(sign(ec))), Principal)
    finally:
        await authenticator.aclose()


async def test_key_rotation_at_the_jwks_endpoint_is_picked_up(
    auth: Authenticator, ec: TestKey, ec2: TestKey, jwks: JWKSServer, clock: FrozenClock
) -> None:
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec))), Principal)
    jwks.publish(ec2)  # rotate: ec-1 retired, ec-2 introduced
    assert await reason_for(auth, sign(ec2)) == "unknown_key"  # within the cooldown of the last fetch
    clock.advance(30)
    outcome = await auth.authenticate("demo", bearer(sign(ec2)))
    assert isinstance(outcome, Principal) and outcome.key_id == "ec-2"
    clock.advance(30)
    assert await reason_for(auth, sign(ec)) == "unknown_key"  # the retired key no longer verifies


async def test_key_rotation_is_picked_up_by_periodic_refresh(
    auth: Authenticator, ec: TestKey, ec2: TestKey, jwks: JWKSServer, clock: FrozenClock
) -> None:
    assert isinstance(await auth.authenticate("demo", bearer(sign(ec))), Principal)
    jwks.publish(ec2)
    clock.advance(300)
    assert await reason_for(auth, sign(ec, claims(exp=int(NOW) + 900))) == "unknown_key"
    assert len(jwks.requests) >= 2


async def test_jwks_redirect_is_not_followed(
    trap: JWKSServer, jwks: JWKSServer, ec: TestKey, clock: FrozenClock
) -> None:
    trap.status, trap.location = 302, jwks.url  # a redirect is a failed fetch, never a hop elsewhere
    issuer = IssuerSettings(issuer=ISSUER, algorithms=("ES256",), jwks_url=trap.url)
    authenticator = Authenticator(settings(issuer), clock=clock)
    try:
        outcome = await authenticator.authenticate("demo", bearer(sign(ec)))
        assert isinstance(outcome, AuthFailure) and outcome.status == 503
        assert len(trap.requests) == 1
        assert jwks.requests == []
    finally:
        await authenticator.aclose()


async def test_audience_is_checked_against_configuration_not_the_token(
    auth: Authenticator, ec: TestKey
) -> None:
    assert AUDIENCE in auth.settings.audience
    token = sign(ec, claims(aud="guard"))
    assert await reason_for(auth, token) == "invalid_audience"
