"""Shared test helpers for guard.auth: fixed keys, token signing, a real loopback JWKS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from guard.auth import AuthSettings, IssuerSettings

ISSUER = "https://idp.example.test/realms/guard"
AUDIENCE = "https://guard.example.test"
NOW = 1_700_000_000.0


class FrozenClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TestKey:
    """A key pair with its public JWK (``kid`` set) and PEM forms."""

    __test__ = False
    private: Any
    alg: str
    kid: str

    @property
    def private_pem(self) -> bytes:
        return bytes(self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    @property
    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    @property
    def jwk(self) -> dict[str, Any]:
        algo: Any = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        data: dict[str, Any] = dict(algo.to_jwk(self.private.public_key(), as_dict=True))
        data.update({"kid": self.kid, "use": "sig"})
        return data


def ec_key(kid: str = "ec-1") -> TestKey:
    return TestKey(ec.generate_private_key(ec.SECP256R1()), "ES256", kid)


def rsa_key(kid: str = "rsa-1") -> TestKey:
    return TestKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", kid)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at :data:`NOW`; ``None`` values remove a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": int(NOW), "nbf": int(NOW),
        "exp": int(NOW) + 600, "roles": ["analyst"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: TestKey, payload: Mapping[str, Any] | None = None, *, kid: str | None = "default",
         alg: str | None = None, headers: Mapping[str, Any] | None = None) -> str:
    """A token signed by ``key`` (``kid`` defaults to the key's own; ``None`` omits it)."""
    extra: dict[str, Any] = dict(headers or {})
    if kid == "default":
        extra["kid"] = key.kid
    elif kid is not None:
        extra["kid"] = kid
    body = json.dumps(dict(payload if payload is not None else claims())).encode()
    return jwt.api_jws.PyJWS().encode(body, key.private_pem, algorithm=alg or key.alg, headers=extra)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_token(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"sig") -> str:
    """A token built by hand, for headers pyjwt refuses to produce."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)])


def hs256_with_secret(secret: bytes, header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    """HS256 computed by hand (pyjwt refuses PEM keys as HMAC secrets, an attacker does not)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def settings(*issuers: IssuerSettings, **overrides: Any) -> AuthSettings:
    base: dict[str, Any] = {"issuers": issuers, "audience": (AUDIENCE,), "servers": frozenset({"demo"})}
    base.update(overrides)
    return AuthSettings(**base)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "host": "guard.example.test"}


@dataclass
class JWKSServer:
    """A real HTTP server on 127.0.0.1 serving a mutable JWKS and recording every request."""

    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    location: str | None = None
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/jwks"

    @property
    def base(self) -> str:
        return self.url.rsplit("/", 1)[0]

    def start(self) -> JWKSServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                body = json.dumps(owner.document).encode()
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if owner.location is not None:
                    self.send_header("location", owner.location)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def publish(self, *keys: TestKey) -> None:
        self.document = {"keys": [k.jwk for k in keys]}


def running_jwks(*keys: TestKey) -> Iterator[JWKSServer]:
    server = JWKSServer().start()
    server.publish(*keys)
    try:
        yield server
    finally:
        server.stop()
