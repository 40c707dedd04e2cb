"""TLS for both sides of guard: the listening server (optionally mTLS) and upstream connections.

Server side (``[tls]``)::

    [tls]
    certfile = "certs/server.pem"      # enables TLS (wss://, https://)
    keyfile = "certs/server.key"       # omit when certfile also holds the key
    client_ca = "certs/ca.pem"         # enables mutual TLS (RFC 8446 section 4.3.2)
    client_auth = "required"           # "required" (default with client_ca), "optional" or "none"
    min_version = "1.2"                # "1.2" or "1.3"

Client certificates in the ASGI scope: uvicorn verifies the client's certificate during
the handshake but does not put it into the ASGI scope. :class:`TLSWebSocketProtocol`
(a small subclass of uvicorn's ``websockets-sansio`` protocol, selected by
:func:`guard.server.uvicorn_config`) reads the verified peer certificate from the
connection's ``ssl_object`` and publishes the ASGI TLS extension
(``scope["extensions"]["tls"]``: ``client_cert_chain``, ``client_cert_name``,
``client_cert_error``, ``tls_version``, ``cipher_suite``, ``server_cert``) on every
WebSocket scope served over TLS. :func:`client_cert_subject` reads the subject back
(an RFC 4514 string such as ``CN=alice,O=Example``), which the server copies into
:attr:`guard.context.Principal.client_cert_subject` for policy and audit.

Upstream side (keys of ``[upstreams.NAME]``): ``tls_ca`` (a PEM bundle that *replaces*
the system trust store for that upstream), ``tls_client_cert`` / ``tls_client_key``
(client certificate for upstream mTLS) and ``tls_verify`` (default ``true``; ``false``
disables certificate and host name checks and is logged as a warning at startup; never
use it beyond a lab). :func:`upstream_ssl_context` builds the context the WebSocket and
Streamable HTTP transports pass to ``websockets`` / ``httpx``.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from cryptography import x509
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from guard import configtools as ct

if TYPE_CHECKING:
    from guard.config import UpstreamSettings

log = logging.getLogger("guard.tls")

ClientAuth = Literal["none", "optional", "required"]
_TLS_KEYS = {"certfile", "keyfile", "keyfile_password", "client_ca", "client_auth", "min_version", "ciphers"}
UPSTREAM_TLS_KEYS = frozenset({"tls_ca", "tls_client_cert", "tls_client_key", "tls_verify"})
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_WIRE_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@dataclass(frozen=True)
class TLSSettings:
    """``[tls]``: TLS on guard's listening socket. Off unless ``certfile`` is set."""

    certfile: Path | None = None
    """PEM certificate chain served to clients (leaf first). Setting it turns TLS on."""
    keyfile: Path | None = None
    """PEM private key for ``certfile`` (omit when ``certfile`` contains the key)."""
    keyfile_password: str | None = field(default=None, repr=False)
    """Password of an encrypted ``keyfile``; use ``${VAR}`` to keep it out of the file."""
    client_ca: Path | None = None
    """PEM bundle of CAs whose client certificates are accepted. Setting it turns on mTLS."""
    client_auth: ClientAuth = "none"
    """Whether a client certificate is ``required``, ``optional`` or not asked for (``none``).
    Defaults to ``required`` when ``client_ca`` is set."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version accepted."""
    ciphers: str | None = None
    """OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults). ``None`` keeps
    Python's secure defaults."""

    @property
    def enabled(self) -> bool:
        return self.certfile is not None


@dataclass(frozen=True)
class UpstreamTLS:
    """The TLS keys of one ``[upstreams.NAME]`` table, paths resolved against the config's directory."""

    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True


# Configuration ---------------------------------------------------------------------------


def _file(raw: Mapping[str, Any], key: str, path: str, problems: ct.Problems, base_dir: Path) -> Path | None:
    value = ct.get(raw, key, str, "", path, problems)
    if not value:
        return None
    resolved = ct.resolve_path(base_dir, ct.expand(value, ct.join(path, key), problems))
    if not resolved.is_file():
        problems.add(ct.join(path, key), f"no such file: {resolved}")
    elif not os.access(resolved, os.R_OK):
        problems.add(ct.join(path, key), f"not readable: {resolved}")
    return resolved


def parse_tls(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path) -> TLSSettings:
    """Read ``[tls]``; every problem is collected, and the certificate and key are test-loaded."""
    path = "tls"
    ct.unknown_keys(raw, _TLS_KEYS, path, problems)
    before = len(problems.items)
    certfile = _file(raw, "certfile", path, problems, base_dir)
    keyfile = _file(raw, "keyfile", path, problems, base_dir)
    client_ca = _file(raw, "client_ca", path, problems, base_dir)
    password = ct.get(raw, "keyfile_password", str, "", path, problems)
    password = ct.expand(password, "tls.keyfile_password", problems) if password else ""
    default_auth: ClientAuth = "required" if client_ca is not None else "none"
    client_auth = cast(ClientAuth, ct.choice(raw, "client_auth", ("none", "optional", "required"),
                                             default_auth, path, problems))
    min_version = ct.choice(raw, "min_version", ("1.2", "1.3"), "1.2", path, problems)
    ciphers = ct.get(raw, "ciphers", str, "", path, problems) or None
    if certfile is None and (keyfile or client_ca or "client_auth" in raw):
        problems.add("tls.certfile", "required when any other [tls] setting is given")
    if client_auth != "none" and client_ca is None and "client_auth" in raw:
        problems.add("tls.client_ca", f"client_auth = {client_auth!r} needs client_ca")
    settings = TLSSettings(
        certfile=certfile,
        keyfile=keyfile,
        keyfile_password=password or None,
        client_ca=client_ca,
        client_auth=client_auth,
        min_version=cast(Literal["1.2", "1.3"], min_version),
        ciphers=ciphers,
    )
    if settings.enabled and len(problems.items) == before:
        try:
            server_ssl_context(settings)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.add("tls", f"cannot load the certificate, key or CA bundle: {_ssl_reason(exc)}")
    return settings


def parse_upstream_tls(raw: Mapping[str, Any], path: str, problems: ct.Problems, base_dir: Path,
                       url: str | None) -> UpstreamTLS:
    """Read and check the ``tls_*`` keys of an upstream table (only meaningful for wss:// and https://)."""
    before = len(problems.items)
    ca = _file(raw, "tls_ca", path, problems, base_dir)
    cert = _file(raw, "tls_client_cert", path, problems, base_dir)
    key = _file(raw, "tls_client_key", path, problems, base_dir)
    verify = ct.get(raw, "tls_verify", bool, True, path, problems)
    given = [k for k in sorted(UPSTREAM_TLS_KEYS) if k in raw]
    if given and not (url or "").startswith(("wss://", "https://")):
        problems.add(path, f"{', '.join(given)} need a wss:// or https:// url")
    if key is not None and cert is None:
        problems.add(f"{path}.tls_client_key", "needs tls_client_cert")
    if cert is not None and len(problems.items) == before:
        try:
            upstream_ssl_context(str(ca) if ca else None, str(cert), str(key) if key else None, verify)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.add(path, f"cannot load the TLS client certificate or CA bundle: {_ssl_reason(exc)}")
    return UpstreamTLS(
        ca=str(ca) if ca else None,
        client_cert=str(cert) if cert else None,
        client_key=str(key) if key else None,
        verify=verify,
    )


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


# Contexts --------------------------------------------------------------------------------


def server_ssl_context(settings: TLSSettings) -> ssl.SSLContext:
    """The listening socket's context: TLS >= ``min_version``, no renegotiation, optional mTLS.

    With ``client_auth = "required"`` the handshake fails (before any HTTP byte) for a client
    without a certificate, or with one that does not chain to ``client_ca``; with
    ``"optional"`` a missing certificate is accepted but an invalid one still fails.
    """
    if settings.certfile is None:
        raise ValueError("TLS needs a certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[settings.min_version]
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.ciphers:
        ctx.set_ciphers(settings.ciphers)
    password = settings.keyfile_password
    ctx.load_cert_chain(settings.certfile, settings.keyfile, (lambda: password) if password else None)
    if settings.client_ca is not None and settings.client_auth != "none":
        ctx.load_verify_locations(cafile=str(settings.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if settings.client_auth == "required" else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def upstream_ssl_context(ca: str | None, client_cert: str | None, client_key: str | None,
                         verify: bool = True) -> ssl.SSLContext:
    """A client context for an upstream: TLS >= 1.2, host name and chain verified.

    ``ca`` replaces the system trust store (pinning the upstream to a private CA).
    ``verify=False`` turns off *all* verification: the connection is encrypted but not
    authenticated, so a machine in the middle can read and change everything.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def _stamp(path: str | None) -> float:
    if path is None:
        return 0.0
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=64)
def _cached_context(ca: str | None, cert: str | None, key: str | None, verify: bool,
                    stamps: tuple[float, ...]) -> ssl.SSLContext:
    del stamps  # part of the cache key only: a rotated file builds a new context
    if not verify:
        log.warning("upstream TLS verification is OFF (tls_verify = false): the upstream is not authenticated")
    return upstream_ssl_context(ca, cert, key, verify)


def ssl_context_for(settings: UpstreamSettings) -> ssl.SSLContext | None:
    """The context for an upstream's ``wss://`` / ``https://`` url, or ``None`` for the library default.

    ``None`` (no ``tls_*`` key set) leaves verification against the default trust store to
    ``websockets`` / ``httpx``. Contexts are shared across sessions and rebuilt when a
    referenced file changes.
    """
    if not (settings.url or "").startswith(("wss://", "https://")):
        return None
    if settings.tls_ca is None and settings.tls_client_cert is None and settings.tls_verify:
        return None
    files = (settings.tls_ca, settings.tls_client_cert, settings.tls_client_key)
    return _cached_context(*files, settings.tls_verify, tuple(_stamp(f) for f in files))


# The ASGI TLS extension --------------------------------------------------------------------


def _cipher_ids(ctx: ssl.SSLContext) -> dict[str, int]:
    return {c["name"]: int(c["id"]) & 0xFFFF for c in ctx.get_ciphers()}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension dictionary for an established TLS connection.

    Only the leaf certificate is available from Python's ``ssl`` module before 3.13, so
    ``client_cert_chain`` holds at most one PEM certificate (the verified leaf).
    """
    chain: list[str] = []
    name: str | None = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        cert = x509.load_der_x509_certificate(der)
        chain.append(ssl.DER_cert_to_PEM_cert(der))
        name = cert.subject.rfc4514_string()
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _WIRE_VERSIONS.get(version or ""),
        "cipher_suite": _cipher_ids(ssl_object.context).get(cipher[0]) if cipher else None,
    }


def add_tls_extension(scope: MutableMapping[str, Any], transport: Any) -> None:
    """Publish ``scope["extensions"]["tls"]`` when ``transport`` is a TLS connection (ASGI TLS extension)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return
    extensions = scope.setdefault("extensions", {})
    extensions["tls"] = tls_extension(ssl_object)


def client_cert_subject(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate's subject (RFC 4514), or ``None`` without mTLS.

    Only trust this when guard itself terminates TLS: it comes from the handshake, never
    from a request header.
    """
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping):
        return None
    name = tls.get("client_cert_name")
    return name if isinstance(name, str) and name else None


class TLSWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus the ASGI TLS extension in the scope.

    The scope is built when the upgrade request is parsed; the extension is added just
    before the application is called, from the connection's verified ``ssl_object``.
    """

    async def run_asgi(self) -> None:
        add_tls_extension(cast(MutableMapping[str, Any], self.scope), self.transport)
        await super().run_asgi()
