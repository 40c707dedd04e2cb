"""TLS and mTLS on guard's listener, TLS to upstreams, and the dev certificate tooling.

Every handshake here is real: guard (uvicorn) on a loopback port with certificates made
by ``guard.certs``, clients from ``websockets``/``ssl``, and upstreams that are real
uvicorn HTTPS / websockets WSS servers on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from guard import certs, cli, tls
from guard.config import parse
from guard.context import MessageContext, Principal, Verdict
from guard.errors import ConfigError
from guard.pipeline import Pipeline
from guard.runtime import build_runtime
from tests.support.guard_server import free_socket, running_runtime, serving

SCRIPT = str(Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


# Fixtures -----------------------------------------------------------------------------------


class Dev:
    """Two independent dev PKIs: ``good`` (trusted by guard) and ``rogue`` (an attacker's CA)."""

    def __init__(self, root: Path) -> None:
        self.good = certs.create_dev_certs(root / "good", clients=("client", "alice"))
        rogue_ca = certs.create_ca("guard dev CA")  # same name as the real CA: only the key differs
        self.rogue_dir = root / "rogue"
        certs.write_issued(self.rogue_dir, "ca", rogue_ca)
        certs.write_issued(self.rogue_dir, "server", certs.issue_server(rogue_ca))
        certs.write_issued(self.rogue_dir, "client", certs.issue_client(rogue_ca, "client"))

    def client_context(self, who: str | None = "client", pki: str = "good") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.good.ca_cert))
        if who is not None:
            directory = self.good.directory if pki == "good" else self.rogue_dir
            ctx.load_cert_chain(directory / f"{who}.pem", directory / f"{who}.key")
        return ctx


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Dev:
    return Dev(tmp_path_factory.mktemp("pki"))


def scripted_config(tls_section: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
        "auth": {"anonymous_servers": ["s"]},
    }
    if tls_section is not None:
        cfg["tls"] = tls_section
    return cfg


class Recorder:
    """A pipeline stage that remembers the principal of every message it sees."""

    name = "recorder"
    sees_rejections = True

    def __init__(self) -> None:
        self.principals: list[Principal] = []

    async def process(self, ctx: MessageContext) -> Verdict:
        self.principals.append(ctx.principal)
        return Verdict.proceed()


@contextlib.asynccontextmanager
async def guard_with_recorder(cfg: dict[str, Any]) -> AsyncIterator[tuple[str, Recorder]]:
    runtime = build_runtime(parse(cfg))
    recorder = Recorder()
    runtime.pipeline = Pipeline([recorder, *runtime.pipeline.stages])
    async with running_runtime(runtime) as base:
        yield base.replace("ws://", "wss://"), recorder


async def call(ws: Any, rid: int, method: str = "tools/list") -> dict[str, Any]:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": {}}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return reply


def mtls(dev: Dev, client_auth: str = "required") -> dict[str, Any]:
    return {"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key),
            "client_ca": str(dev.good.ca_cert), "client_auth": client_auth}


HANDSHAKE_REFUSED = (ssl.SSLError, OSError, InvalidHandshake, ConnectionClosed, EOFError, TimeoutError)


# Server TLS ---------------------------------------------------------------------------------


async def test_wss_with_dev_server_certificate_relays_messages(dev: Dev) -> None:
    cfg = scripted_config({"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key)})
    async with guard_with_recorder(cfg) as (base, recorder), \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context(None)) as ws:  # type: ignore[list-item]
        reply = await call(ws, 1)
        assert reply["result"]["method"] == "tools/list"
        assert recorder.principals[0].client_cert_subject is None  # no mTLS: no certificate asked for


async def test_plaintext_client_on_tls_port_is_refused(dev: Dev) -> None:
    cfg = scripted_config({"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key)})
    async with guard_with_recorder(cfg) as (base, recorder):
        with pytest.raises(HANDSHAKE_REFUSED):
            async with connect(f"{base.replace('wss://', 'ws://')}/mcp/s", subprotocols=["mcp"],  # type: ignore[list-item]
                               open_timeout=5):
                pass
        assert recorder.principals == []


async def test_client_that_does_not_trust_the_server_ca_refuses_to_connect(dev: Dev) -> None:
    cfg = scripted_config({"certfile": str(dev.rogue_dir / "server.pem"), "keyfile": str(dev.rogue_dir / "server.key")})
    async with guard_with_recorder(cfg) as (base, _):
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context(None)):  # type: ignore[list-item]
                pass


async def test_tls_1_2_client_refused_when_min_version_is_1_3(dev: Dev) -> None:
    cfg = scripted_config({"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key),
                           "min_version": "1.3"})
    ctx = dev.client_context(None)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with guard_with_recorder(cfg) as (base, recorder):
        with pytest.raises(HANDSHAKE_REFUSED):
            async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=ctx, open_timeout=5):  # type: ignore[list-item]
                pass
        assert recorder.principals == []


# Mutual TLS ---------------------------------------------------------------------------------


async def test_mtls_client_certificate_subject_reaches_the_principal(dev: Dev) -> None:
    async with guard_with_recorder(scripted_config(mtls(dev))) as (base, recorder):
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context("alice")) as ws:  # type: ignore[list-item]
            assert (await call(ws, 1))["id"] == 1
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context("client")) as ws:  # type: ignore[list-item]
            assert (await call(ws, 2))["id"] == 2
    subjects = [p.client_cert_subject for p in recorder.principals]
    assert subjects[0] == "CN=alice,O=guard dev"
    assert subjects[-1] == "CN=client,O=guard dev"


async def test_mtls_refuses_client_without_certificate(dev: Dev) -> None:
    async with guard_with_recorder(scripted_config(mtls(dev))) as (base, recorder):
        with pytest.raises(HANDSHAKE_REFUSED):
            async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context(None),  # type: ignore[list-item]
                               open_timeout=5) as ws:
                await call(ws, 1)
        assert recorder.principals == []


async def test_mtls_refuses_forged_certificate_with_same_subject_from_another_ca(dev: Dev) -> None:
    forged = x509.load_pem_x509_certificate((dev.rogue_dir / "client.pem").read_bytes())
    assert forged.subject.rfc4514_string() == "CN=client,O=guard dev"  # same name, different issuer key
    async with guard_with_recorder(scripted_config(mtls(dev))) as (base, recorder):
        with pytest.raises(HANDSHAKE_REFUSED):
            async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context("client", "rogue"),  # type: ignore[list-item]
                               open_timeout=5) as ws:
                await call(ws, 1)
        assert recorder.principals == []


async def test_optional_client_auth_accepts_missing_certificate_but_not_a_forged_one(dev: Dev) -> None:
    async with guard_with_recorder(scripted_config(mtls(dev, "optional"))) as (base, recorder):
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context(None)) as ws:  # type: ignore[list-item]
            assert (await call(ws, 1))["id"] == 1
        assert recorder.principals[0].client_cert_subject is None
        with pytest.raises(HANDSHAKE_REFUSED):
            async with connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context("client", "rogue"),  # type: ignore[list-item]
                               open_timeout=5) as ws:
                await call(ws, 2)


async def test_subject_header_cannot_spoof_the_certificate_subject(dev: Dev) -> None:
    """The subject comes from the handshake only; a header naming another subject changes nothing."""
    async with guard_with_recorder(scripted_config(mtls(dev))) as (base, recorder), \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], ssl=dev.client_context("client"),  # type: ignore[list-item]
                    additional_headers={"X-Client-Cert-Subject": "CN=admin", "X-SSL-Client-S-DN": "CN=admin"}) as ws:
        await call(ws, 1)
    assert recorder.principals[0].client_cert_subject == "CN=client,O=guard dev"


def test_tls_extension_scope_helpers() -> None:
    assert tls.client_cert_subject({}) is None
    assert tls.client_cert_subject({"extensions": {"tls": {"client_cert_name": None}}}) is None
    assert tls.client_cert_subject({"extensions": {"tls": {"client_cert_name": "CN=x"}}}) == "CN=x"
    scope: dict[str, Any] = {"extensions": {"websocket.http.response": {}}}

    class PlainTransport:
        def get_extra_info(self, name: str) -> Any:
            return None

    tls.add_tls_extension(scope, PlainTransport())
    assert "tls" not in scope["extensions"]  # ASGI: the extension is only present on TLS connections


async def test_tls_extension_reports_version_and_cipher_suite(dev: Dev) -> None:
    """Drive TLSWebSocketProtocol's helper over a real TLS socket pair and check the ASGI fields."""
    server_ctx = tls.server_ssl_context(tls.TLSSettings(
        certfile=dev.good.server_cert, keyfile=dev.good.server_key, client_ca=dev.good.ca_cert,
        client_auth="required"))
    seen: dict[str, Any] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scope: dict[str, Any] = {}
        tls.add_tls_extension(scope, writer.transport)
        seen.update(scope["extensions"]["tls"])
        writer.close()

    sock = free_socket()
    server = await asyncio.start_server(handler, sock=sock, ssl=server_ctx)
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1],
                                                  ssl=dev.client_context("alice"))
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        writer.close()
    assert seen["client_cert_name"] == "CN=alice,O=guard dev"
    assert seen["tls_version"] in (0x0303, 0x0304)
    assert isinstance(seen["cipher_suite"], int) and 0 < seen["cipher_suite"] <= 0xFFFF
    assert seen["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert seen["client_cert_error"] is None


# Upstream TLS -------------------------------------------------------------------------------


def echo_app() -> Starlette:
    """A minimal Streamable HTTP upstream: answers each JSON-RPC request with its method."""

    async def mcp_endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            return Response(status_code=200)
        if request.method == "GET":
            return Response(status_code=405)
        body = await request.json()
        if "id" not in body or "method" not in body:
            return Response(status_code=202)
        return JSONResponse({"jsonrpc": "2.0", "id": body["id"], "result": {"echo": body["method"]}})

    return Starlette(routes=[Route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"])])


@contextlib.asynccontextmanager
async def https_upstream(dev: Dev, require_client_cert: bool = False) -> AsyncIterator[str]:
    sock = free_socket()
    options: dict[str, Any] = {
        "ssl_certfile": str(dev.good.server_cert), "ssl_keyfile": str(dev.good.server_key),
        "log_config": None, "lifespan": "off",
    }
    if require_client_cert:
        options.update(ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=str(dev.good.ca_cert))
    server = uvicorn.Server(uvicorn.Config(echo_app(), **options))
    async with serving(server, sock) as port:
        yield f"https://127.0.0.1:{port}/mcp"


def upstream_config(url: str, **upstream: Any) -> dict[str, Any]:
    return {"upstreams": {"u": {"url": url, "connect_timeout": 5.0, **upstream}},
            "auth": {"anonymous_servers": ["u"]}}


async def test_streamable_http_upstream_over_tls_with_custom_ca(dev: Dev) -> None:
    async with https_upstream(dev) as url, \
            guard_with_recorder(upstream_config(url, tls_ca=str(dev.good.ca_cert))) as (base, _):
        async with connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            reply = await call(ws, 7, "tools/list")
    assert reply == {"jsonrpc": "2.0", "id": 7, "result": {"echo": "tools/list"}}


async def test_streamable_http_upstream_with_untrusted_ca_is_not_contacted(dev: Dev) -> None:
    """A man in the middle with a certificate from another CA: guard refuses the upstream."""
    cfg = upstream_config("", tls_ca=str(dev.rogue_dir / "ca.pem"))
    async with https_upstream(dev) as url:
        cfg["upstreams"]["u"]["url"] = url
        async with guard_with_recorder(cfg) as (base, recorder), \
                connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed) as closed:
                await call(ws, 1)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013  # try again later
    assert "SSLCertVerificationError" in closed.value.rcvd.reason
    assert recorder.principals == []


async def test_streamable_http_upstream_requiring_client_certificate(dev: Dev) -> None:
    async with https_upstream(dev, require_client_cert=True) as url:
        cert, key = dev.good.clients["client"]
        with_cert = upstream_config(url, tls_ca=str(dev.good.ca_cert), tls_client_cert=str(cert),
                                    tls_client_key=str(key))
        async with guard_with_recorder(with_cert) as (base, _), \
                connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            assert (await call(ws, 3))["result"] == {"echo": "tools/list"}
        without = upstream_config(url, tls_ca=str(dev.good.ca_cert))
        async with guard_with_recorder(without) as (base, _), \
                connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            reply = await call(ws, 4)
    assert "result" not in reply and "error" in reply  # the upstream refused guard without its certificate


async def test_websocket_upstream_over_wss_with_custom_ca(dev: Dev) -> None:
    async def echo(conn: ServerConnection) -> None:
        async for frame in conn:
            msg = json.loads(frame)
            await conn.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"wss": msg["method"]}}))

    server_ctx = tls.server_ssl_context(tls.TLSSettings(certfile=dev.good.server_cert, keyfile=dev.good.server_key))
    sock = free_socket()
    async with serve(echo, sock=sock, ssl=server_ctx, subprotocols=["mcp"]):  # type: ignore[list-item]
        url = f"wss://127.0.0.1:{sock.getsockname()[1]}/"
        async with guard_with_recorder(upstream_config(url, tls_ca=str(dev.good.ca_cert))) as (base, _), \
                connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            assert (await call(ws, 1, "prompts/list"))["result"] == {"wss": "prompts/list"}
        rogue = upstream_config(url, tls_ca=str(dev.rogue_dir / "ca.pem"))
        async with guard_with_recorder(rogue) as (base, _), \
                connect(f"{base.replace('wss://', 'ws://')}/mcp/u", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed) as closed:
                await call(ws, 2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def test_upstream_context_is_shared_and_rebuilt_when_a_file_changes(dev: Dev, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(dev.good.ca_cert.read_bytes())
    settings = parse(upstream_config("https://127.0.0.1:1/mcp", tls_ca=str(ca))).upstreams["u"]
    first = tls.ssl_context_for(settings)
    assert first is not None and first is tls.ssl_context_for(settings)
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname
    stamp = time.time() + 10
    os.utime(ca, (stamp, stamp))
    assert tls.ssl_context_for(settings) is not first
    plain = parse(upstream_config("https://127.0.0.1:1/mcp")).upstreams["u"]
    assert tls.ssl_context_for(plain) is None  # library default trust store


def test_tls_verify_false_really_turns_verification_off(dev: Dev) -> None:
    settings = parse(upstream_config("https://127.0.0.1:1/mcp", tls_verify=False)).upstreams["u"]
    ctx = tls.ssl_context_for(settings)
    assert ctx is not None and ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname


# Configuration ------------------------------------------------------------------------------


def problems_of(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(cfg)
    return err.value.problems


def test_tls_settings_parse_with_defaults(dev: Dev) -> None:
    settings = parse(scripted_config(mtls(dev) | {"client_auth": "required"}))
    assert settings.tls.enabled and settings.tls.client_auth == "required" and settings.tls.min_version == "1.2"
    implicit = parse(scripted_config({"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key),
                                      "client_ca": str(dev.good.ca_cert)}))
    assert implicit.tls.client_auth == "required"  # a client CA means certificates are required
    assert not parse(scripted_config()).tls.enabled


def test_tls_config_problems_are_all_reported(dev: Dev, tmp_path: Path) -> None:
    problems = problems_of(scripted_config({"keyfile": str(tmp_path / "missing.key"), "client_auth": "sometimes",
                                            "min_version": "1.0", "colour": "blue"}))
    text = "\n".join(problems)
    assert "tls.keyfile: no such file" in text
    assert "tls.client_auth: must be one of" in text
    assert "tls.min_version: must be one of" in text
    assert "tls.colour: unknown setting" in text
    assert "tls.certfile: required" in text


def test_mismatched_certificate_and_key_is_a_config_error(dev: Dev) -> None:
    problems = problems_of(scripted_config({"certfile": str(dev.good.server_cert),
                                            "keyfile": str(dev.good.clients["client"][1])}))
    assert any(p.startswith("tls: cannot load") for p in problems)


def test_client_auth_without_client_ca_is_a_config_error(dev: Dev) -> None:
    problems = problems_of(scripted_config({"certfile": str(dev.good.server_cert), "keyfile": str(dev.good.server_key),
                                            "client_auth": "required"}))
    assert any(p.startswith("tls.client_ca:") for p in problems)


def test_upstream_tls_keys_on_plaintext_url_are_rejected(dev: Dev) -> None:
    """tls_ca on an http:// url would silently do nothing: that must not pass as 'protected'."""
    problems = problems_of(upstream_config("http://127.0.0.1:1/mcp", tls_ca=str(dev.good.ca_cert),
                                           tls_verify="no", tls_client_key=str(dev.good.ca_key)))
    text = "\n".join(problems)
    assert "need a wss:// or https:// url" in text
    assert "tls_verify: must be a boolean" in text
    assert "tls_client_key: needs tls_client_cert" in text


def test_upstream_tls_paths_are_relative_to_the_config_file(dev: Dev, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_bytes(dev.good.ca_cert.read_bytes())
    (tmp_path / "guard.toml").write_text(
        '[upstreams.u]\nurl = "https://127.0.0.1:1/mcp"\ntls_ca = "pki/ca.pem"\n'
        '[auth]\nanonymous_servers = ["u"]\n')
    from guard.config import load

    assert load(tmp_path / "guard.toml").upstreams["u"].tls_ca == str(tmp_path / "pki" / "ca.pem")


# Dev certificates ---------------------------------------------------------------------------


def test_dev_certificates_chain_to_the_dev_ca_and_keys_are_private(tmp_path: Path) -> None:
    made = certs.create_dev_certs(tmp_path / "c", hosts=("localhost", "127.0.0.1", "guard.internal"),
                                  clients=("alice",), now=NOW, days=30)
    ca = x509.load_pem_x509_certificate(made.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    alice = x509.load_pem_x509_certificate(made.clients["alice"][0].read_bytes())
    server.verify_directly_issued_by(ca)
    alice.verify_directly_issued_by(ca)
    assert server.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert server.not_valid_after_utc == NOW + dt.timedelta(days=30)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "guard.internal" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert alice.subject.rfc4514_string() == "CN=alice,O=guard dev"
    for key in (made.ca_key, made.server_key, made.clients["alice"][1]):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700


def test_dev_certificates_are_never_silently_overwritten(tmp_path: Path) -> None:
    certs.create_dev_certs(tmp_path, now=NOW)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(FileExistsError):
        certs.create_dev_certs(tmp_path, now=NOW)
    assert (tmp_path / "ca.key").read_bytes() == before
    certs.create_dev_certs(tmp_path, now=NOW, overwrite=True)
    assert (tmp_path / "ca.key").read_bytes() != before


@pytest.mark.parametrize("name", ["../escape", "ca", "server", "", ".hidden"])
def test_client_name_cannot_escape_the_directory_or_replace_the_ca(name: str) -> None:
    ca = certs.create_ca(now=NOW)
    with pytest.raises(ValueError):
        certs.issue_client(ca, name, now=NOW)


def test_client_certificate_never_outlives_its_ca() -> None:
    ca = certs.create_ca(now=NOW, days=10)
    leaf = certs.issue_client(ca, "bob", now=NOW, days=400)
    assert leaf.cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_guard_certs_cli_init_client_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dev" / "certs"
    assert cli.main(["certs", "init", "--dir", str(out), "--host", "guard.test", "--client", "carol"]) == 0
    printed = capsys.readouterr().out
    assert "subject CN=carol,O=guard dev" in printed and "[tls]" in printed
    assert cli.main(["certs", "client", "dave", "--dir", str(out)]) == 0
    assert cli.main(["certs", "client", "dave", "--dir", str(out)]) == 2  # exists
    assert cli.main(["certs", "init", "--dir", str(out)]) == 2  # exists
    capsys.readouterr()
    assert cli.main(["certs", "show", str(out / "dave.pem")]) == 0
    shown = capsys.readouterr().out
    assert "subject:    CN=dave,O=guard dev" in shown and "issuer:     CN=guard dev CA,O=guard dev" in shown
    assert cli.main(["certs", "client", "erin", "--dir", str(tmp_path / "nowhere")]) == 2


def test_private_key_files_are_git_ignored_in_this_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    if certs.git_ignored(repo / "dev" / "certs") is None:
        pytest.skip("not a git work tree")
    assert certs.git_ignored(repo / "dev" / "certs") is True
    assert certs.git_ignored(repo / "certs") is True  # *.key anywhere, certs/ included
