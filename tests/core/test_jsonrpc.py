"""The JSON-RPC message model without sockets: properties, round trips, the bad-input table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.errors import InvalidRequest, ParseError
from guard.jsonrpc import Kind, error_response, id_key, parse, serialize

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
ids = st.integers(-(2**63), 2**63 - 1) | st.text(max_size=16)
methods = st.text(min_size=1, max_size=30)
params = st.dictionaries(st.text(max_size=8), json_value, max_size=4)


@given(ids, methods, params)
def test_request_round_trip(rid: Any, method: str, p: dict[str, Any]) -> None:
    payload = {"jsonrpc": "2.0", "id": rid, "method": method, "params": p}
    message = parse(json.dumps(payload))
    assert message.kind is Kind.REQUEST
    assert message.id == rid and message.method == method
    assert json.loads(serialize(message)) == payload


@given(methods, params)
def test_notification_round_trip(method: str, p: dict[str, Any]) -> None:
    payload = {"jsonrpc": "2.0", "method": method, "params": p}
    message = parse(json.dumps(payload))
    assert message.kind is Kind.NOTIFICATION
    assert json.loads(serialize(message)) == payload


@given(ids, json_value)
def test_result_round_trip(rid: Any, result: Any) -> None:
    payload = {"jsonrpc": "2.0", "id": rid, "result": result}
    message = parse(json.dumps(payload))
    assert message.kind is Kind.RESULT
    assert json.loads(serialize(message)) == payload


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parse(data)
    except (ParseError, InvalidRequest):
        pass


@given(json_value)
def test_arbitrary_json_is_classified_or_rejected_as_invalid_request(value: Any) -> None:
    try:
        message = parse(json.dumps(value))
    except InvalidRequest:
        return
    assert isinstance(value, dict) and value.get("jsonrpc") == "2.0"
    assert message.kind in set(Kind)


def test_big_integer_ids_survive() -> None:
    message = parse('{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}')
    assert message.id == 123456789012345678901234567890
    assert '"id":123456789012345678901234567890' in serialize(message)


def test_nan_is_not_json() -> None:
    with pytest.raises(ParseError):
        parse('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}')


def test_deeply_nested_json_is_a_parse_error_not_a_crash() -> None:
    with pytest.raises((ParseError, InvalidRequest)):
        parse("[" * 100000 + "]" * 100000)


@pytest.mark.parametrize(
    "frame,exc,salvaged",
    [
        ("", ParseError, None),
        ("{", ParseError, None),
        ("[]", InvalidRequest, None),
        ('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":true,"method":"ping"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":null,"method":"ping"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":1.5,"method":"ping"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":3,"method":""}', InvalidRequest, 3),
        ('{"jsonrpc":"2.0","id":3,"method":"x","result":1}', InvalidRequest, 3),
        ('{"jsonrpc":"2.0","id":4,"result":1,"error":{"code":1,"message":"m"}}', InvalidRequest, 4),
        ('{"jsonrpc":"2.0","id":4,"error":{"code":"x","message":"m"}}', InvalidRequest, 4),
        ('{"jsonrpc":"2.0","id":4,"error":{"code":true,"message":"m"}}', InvalidRequest, 4),
        ('{"jsonrpc":"2.0","result":1}', InvalidRequest, None),
        ('{"id":4,"method":"ping"}', InvalidRequest, 4),
    ],
)
def test_bad_input_table(frame: str, exc: type[Exception], salvaged: Any) -> None:
    with pytest.raises(exc) as info:
        parse(frame)
    assert getattr(info.value, "request_id", None) == salvaged


def test_error_with_null_id_is_a_valid_message() -> None:
    message = parse('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}')
    assert message.kind is Kind.ERROR and message.id is None


def test_error_response_shape() -> None:
    msg = error_response(None, -32700, "Parse error")
    assert json.loads(serialize(msg)) == {"jsonrpc": "2.0", "id": None,
                                          "error": {"code": -32700, "message": "Parse error"}}


def test_id_key_keeps_int_and_string_distinct() -> None:
    assert id_key(1) != id_key("1")
