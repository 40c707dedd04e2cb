"""The parser accepts exactly what every transport can forward unchanged (issue 12, items 7 and 9).

Without sockets: whatever :func:`guard.jsonrpc.parse` accepts serializes to valid UTF-8 that
decodes to the same value, type for type; a lone surrogate or a number past a double is a
-32700 on the message's own id, never an exception later in a transport, never ``null``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.errors import ParseError
from guard.jsonrpc import ErrorCode, Kind, loads, parse, serialize
from tests.support.wire_values import call_frame, forwardable, same, values


@settings(max_examples=400)
@given(values, st.booleans())
def test_every_value_the_parser_accepts_serializes_unchanged(value: Any, raw_utf8: bool) -> None:
    frame = call_frame(41, value, raw_utf8)
    reference = json.loads(frame)  # Python's reading: keeps lone surrogates, turns 1e400 into inf
    try:
        message = parse(frame)
    except ParseError as exc:
        assert not forwardable(reference), frame
        assert exc.request_id == 41 and exc.code == ErrorCode.PARSE_ERROR
        assert exc.reason in ("invalid_unicode", "number_out_of_range")
        return
    assert forwardable(reference), frame
    out = serialize(message)
    out.encode("utf-8")  # strict: a transport can send it
    assert same(json.loads(out), reference)
    assert same(message.params, reference["params"])


@given(values)
def test_parsing_bytes_and_text_agree(value: Any) -> None:
    frame = call_frame(1, value)
    results = []
    for data in (frame, frame.encode("utf-8")):
        try:
            results.append(("ok", serialize(parse(data))))
        except ParseError as exc:
            results.append(("error", exc.reason))
    assert results[0] == results[1]


def test_lone_surrogate_in_an_argument_is_a_parse_error_on_its_id() -> None:
    with pytest.raises(ParseError) as info:
        parse('{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"x","arguments":{"a":"x\\ud800"}}}')
    assert info.value.request_id == "q" and info.value.reason == "invalid_unicode"


def test_lone_surrogate_in_a_key_or_the_id_itself_is_refused() -> None:
    with pytest.raises(ParseError) as info:
        parse('{"jsonrpc":"2.0","id":3,"method":"m","params":{"\\udfff":1}}')
    assert info.value.request_id == 3
    with pytest.raises(ParseError) as info:
        parse('{"jsonrpc":"2.0","id":"\\udfff","method":"m"}')
    assert info.value.request_id is None  # an id that cannot be written back is not echoed


def test_paired_surrogate_escapes_are_one_character_and_accepted() -> None:
    message = parse('{"jsonrpc":"2.0","id":1,"method":"m","params":{"e":"\\ud83d\\ude00"}}')
    assert message.params["e"] == "\U0001f600"


@pytest.mark.parametrize("number", ["1e400", "-1E+999", "1e400 "])
def test_number_beyond_a_double_is_refused_never_nulled(number: str) -> None:
    frame = '{"jsonrpc":"2.0","id":9,"result":{"big":123456789012345678901234567890,"x":' + number + '}}'
    with pytest.raises(ParseError) as info:
        parse(frame)
    assert info.value.request_id == 9 and info.value.reason == "number_out_of_range"
    with pytest.raises(ParseError):  # also without the long integer that forces the exact parser
        parse('{"jsonrpc":"2.0","id":9,"result":{"x":' + number + '}}')


def test_big_integers_and_tiny_floats_keep_their_value() -> None:
    message = parse('{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":{"t":1e-400,"n":-0}}')
    assert message.kind is Kind.RESULT and message.id == 123456789012345678901234567890
    assert same(json.loads(serialize(message))["result"], {"t": 0.0, "n": 0})


def test_loads_is_the_decoder_every_transport_uses() -> None:
    assert loads(b'{"id":123456789012345678901234567890}') == {"id": 123456789012345678901234567890}
    with pytest.raises(ParseError):
        loads('{"a":"\\ud800"}')
    with pytest.raises(ParseError):
        loads("[NaN]")


def test_serialize_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        serialize({"jsonrpc": "2.0", "id": 1, "result": {"s": "\ud800"}})
    with pytest.raises(ValueError):
        serialize({"jsonrpc": "2.0", "id": 1, "result": {"n": 10**30, "x": float("inf")}})
