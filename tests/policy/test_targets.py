"""Targets are matched exactly as sent, and URIs that could mean another path upstream are refused."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import mcp
from guard.policy.targets import check_target


def _decodings(path: str, rounds: int = 6) -> list[str]:
    out = [path]
    for _ in range(rounds):
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            break
        out.append(path)
    return out


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=list("a./%2eE5F\\f0"), max_size=24))
def test_an_accepted_uri_never_decodes_to_a_dot_segment(tail: str) -> None:
    """Whatever an upstream does -- decode once, twice, read backslashes as slashes -- an accepted
    URI's path holds no '.' or '..' segment, and the target is matched exactly as sent."""
    uri = "file:///srv/public/" + tail
    checked = check_target(uri)
    if checked is None:
        return
    assert checked == uri
    for form in _decodings("/srv/public/" + tail):
        assert not {".", ".."} & set(form.replace("\\", "/").split("/")), form


@pytest.mark.parametrize("name", ["find_customer", "a/../b", "send_message/EMAIL_ADDRESS", "x..y", "ns:tool",
                                  "customers://C001", "file:///srv/a.b/c..d", "customers://{customer_id}",
                                  "https://example.com/a?next=../x"])
def test_names_and_plain_uris_are_matched_as_sent(name: str) -> None:
    assert check_target(name) == name


@pytest.mark.parametrize("uri", ["customers://C002%2F..%2Fdirectory", "customers://..", "customers://./x",
                                 "file:/srv/public/../etc/passwd", "file:%2e%2e/x", "crm://customers/c-1/../../x",
                                 "file:///srv/%2e/x", "file:///a\\..\\b"])
def test_dot_segments_anywhere_in_the_authority_or_path_are_refused(uri: str) -> None:
    assert check_target(uri) is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"type": "ref/prompt", "name": "summarize"}, "summarize"),
        ({"type": "ref/prompt", "name": "summarize", "title": "Summarize"}, "summarize"),
        ({"type": "ref/resource", "uri": "customers://{id}"}, "customers://{id}"),
        ({"type": "ref/resource", "uri": "customers://{id}", "name": "summarize"}, None),  # inconsistent
        ({"type": "ref/prompt", "name": "summarize", "uri": "customers://{id}"}, None),  # inconsistent
        ({"type": "ref/tool", "name": "summarize"}, None),  # unknown type
        ({"name": "summarize"}, None),  # no type
        ({"type": "ref/prompt", "uri": "customers://{id}"}, None),  # the wrong key for the type
        ({"type": "ref/resource", "uri": 5}, None),
        ("ref/prompt", None),
    ],
)
def test_completion_target_follows_the_ref_type(ref: object, expected: str | None) -> None:
    assert mcp.target_of(mcp.COMPLETION_COMPLETE, {"ref": ref, "argument": {"name": "a", "value": ""}}) == expected
