"""The I/O-free Streamable HTTP rules (guard.transports.mcp_http), including properties over generated input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from guard.jsonrpc import classify
from guard.transports.http import encode_header_value
from guard.transports.mcp_http import (
    Route,
    accepts,
    check_legacy_version,
    check_modern_headers,
    decode_header_value,
    error_status,
    route_post,
)
from tests.front.helpers import modern_headers, modern_request

names = st.text(min_size=1, max_size=40)


def call(name: str, arguments: dict | None = None) -> object:
    return classify(modern_request("tools/call", {"name": name, "arguments": arguments or {}}))


@given(names)
def test_encoded_header_values_decode_to_the_original(value: str) -> None:
    assert decode_header_value(encode_header_value(value)) == value


@given(names, names)
def test_mcp_name_header_passes_only_when_it_names_the_body_tool(body_name: str, header_name: str) -> None:
    message = call(body_name)
    headers = modern_headers("tools/call", encode_header_value(header_name)).items()
    refused = check_modern_headers(headers, message)  # type: ignore[arg-type]
    assert (refused is None) == (header_name == body_name)
    if refused is not None:
        assert refused.status == 400 and refused.code == -32020


@given(st.one_of(st.text(max_size=20), st.integers(-(2**53) + 1, 2**53 - 1), st.booleans()))
def test_mcp_param_header_must_mirror_the_annotated_argument(value: object) -> None:
    paths = {("region",): "Region"}
    message = call("q", {"region": value})
    rendered = ("true" if value else "false") if isinstance(value, bool) else str(value)
    good = [*modern_headers("tools/call", "q").items(), ("Mcp-Param-Region", encode_header_value(rendered))]
    assert check_modern_headers(good, message, paths) is None  # type: ignore[arg-type]
    missing = list(modern_headers("tools/call", "q").items())
    assert check_modern_headers(missing, message, paths) is not None  # type: ignore[arg-type]
    wrong = [*missing, ("Mcp-Param-Region", encode_header_value(rendered + "x"))]
    assert check_modern_headers(wrong, message, paths) is not None  # type: ignore[arg-type]


def test_mcp_param_header_without_the_argument_is_refused() -> None:
    message = call("q", {})
    headers = [*modern_headers("tools/call", "q").items(), ("Mcp-Param-Region", "eu")]
    assert check_modern_headers(headers, message, {("region",): "Region"}) is not None  # type: ignore[arg-type]


def test_integer_params_compare_numerically() -> None:
    message = call("q", {"n": 42})
    headers = [*modern_headers("tools/call", "q").items(), ("Mcp-Param-N", "42.0")]
    assert check_modern_headers(headers, message, {("n",): "N"}) is None  # type: ignore[arg-type]


def test_malformed_sentinels_and_control_characters_never_match() -> None:
    assert decode_header_value("=?base64?!!!?=") is None
    assert decode_header_value("=?base64?YQ=?=") is None  # not canonical
    assert decode_header_value("a\r\nb") is None
    assert decode_header_value("=?base64?/w==?=") is None  # not UTF-8


def test_route_post_precedence() -> None:
    init = classify({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    listing = classify({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    modern = classify(modern_request("tools/list"))
    assert route_post("abc", None, listing) is Route.SESSION
    assert route_post(None, None, init) is Route.INITIALIZE
    assert route_post(None, "2026-07-28", listing) is Route.MODERN
    assert route_post(None, None, modern) is Route.MODERN
    assert route_post(None, "2025-11-25", listing) is Route.NO_SESSION
    assert route_post(None, None, listing) is Route.NO_SESSION


def test_accept_negotiation() -> None:
    assert accepts("application/json, text/event-stream") == (True, True)
    assert accepts("text/event-stream") == (False, True)
    assert accepts("application/json") == (True, False)
    assert accepts("*/*") == (True, True)
    assert accepts(None) == (True, True)
    assert accepts("application/json;q=0, text/event-stream") == (False, True)
    assert accepts("text/html") == (False, False)


def test_legacy_version_and_status_tables() -> None:
    assert check_legacy_version(None, "2025-11-25") is None
    assert check_legacy_version("2025-11-25", "2025-11-25") is None
    assert check_legacy_version("2025-06-18", "2025-11-25") is not None
    assert check_legacy_version("2026-07-28", None) is not None
    assert error_status(-32601) == 404 and error_status(-32020) == 400 and error_status(-31001) == 200
