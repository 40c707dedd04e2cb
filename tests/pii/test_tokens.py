"""Reversible tokens: format, tamper resistance, binding, rotation, and the key ring."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from guard.context import ANONYMOUS, Principal
from guard.crypto.aead import InvalidField, KeyRing, b64url, hash_field, open_field, unb64url
from guard.jsonrpc import Kind
from guard.pii import keys
from guard.pii.opening import TokenOpener
from guard.pii.rules import ActionSpec
from guard.pii.tokens import TOKEN_RE, Binding, apply_action, binding_for, open_token, parse_token
from guard.policy.conditions import UNDECIDABLE
from tests.pii.conftest import FIXED_SECRET, OTHER_SECRET, fixed_random

B = Binding("dep-a")
EMAIL = "alice@example.com"


def token(ring: KeyRing, kind: str = "encrypt", value: str = EMAIL, binding: Binding = B,
          entity: str = "EMAIL_ADDRESS") -> str:
    return apply_action(ActionSpec(kind), entity, value, ring, binding)  # type: ignore[arg-type]


def test_encrypt_round_trip_and_format(ring: KeyRing) -> None:
    t = token(ring)
    assert TOKEN_RE.fullmatch(t)
    assert t.startswith("<pii:EMAIL_ADDRESS:k1:")
    assert EMAIL not in t
    assert open_token(ring, B, t) == ("EMAIL_ADDRESS", EMAIL)


def test_encrypt_is_randomized_tokenize_is_deterministic(ring: KeyRing) -> None:
    assert token(ring, "encrypt") != token(ring, "encrypt")
    assert token(ring, "tokenize") == token(ring, "tokenize")
    assert token(ring, "tokenize") != token(ring, "tokenize", value="bob@example.com")
    assert open_token(ring, B, token(ring, "tokenize")) == ("EMAIL_ADDRESS", EMAIL)


def test_unicode_values_round_trip(ring: KeyRing) -> None:
    value = "Zoë Ñúñez <zoë@exämple.de>"
    assert open_token(ring, B, token(ring, value=value))[1] == value


@pytest.mark.parametrize("kind", ["encrypt", "tokenize"])
def test_tampered_ciphertext_is_rejected(ring: KeyRing, kind: str) -> None:
    t = token(ring, kind)
    entity, kid, body = TOKEN_RE.fullmatch(t).groups()  # type: ignore[union-attr]
    raw = bytearray(unb64url(body))
    for i in (0, 1, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(InvalidField):
            open_token(ring, B, f"<pii:{entity}:{kid}:{b64url(bytes(flipped))}>")
    with pytest.raises(InvalidField):
        open_token(ring, B, f"<pii:{entity}:{kid}:{b64url(bytes(raw[:-1]))}>")


def test_relabelled_entity_type_is_rejected(ring: KeyRing) -> None:
    # Relabelling would let a caller dodge a per-entity reveal rule (e.g. IBAN -> EMAIL).
    t = token(ring, entity="IBAN_CODE", value="DE89370400440532013000")
    with pytest.raises(InvalidField):
        open_token(ring, B, t.replace("IBAN_CODE", "EMAIL_ADDRESS"))


def test_token_bound_to_deployment_id(ring: KeyRing) -> None:
    t = token(ring)
    with pytest.raises(InvalidField):
        open_token(ring, Binding("dep-b"), t)


def test_token_bound_to_tenant(ring: KeyRing) -> None:
    t = token(ring, binding=Binding("dep-a", "tenant-1"))
    assert open_token(ring, Binding("dep-a", "tenant-1"), t)[1] == EMAIL
    for other in (Binding("dep-a", "tenant-2"), Binding("dep-a")):
        with pytest.raises(InvalidField):
            open_token(ring, other, t)


def test_foreign_key_ring_cannot_open(ring: KeyRing) -> None:
    foreign = KeyRing("k1", {"k1": OTHER_SECRET})
    with pytest.raises(InvalidField):
        open_token(foreign, B, token(ring))


def test_key_rotation_keeps_old_tokens_readable(ring: KeyRing) -> None:
    old = token(ring)
    old_det = token(ring, "tokenize")
    rotated = keys.rotate(ring, random=lambda n: OTHER_SECRET[:n])
    assert rotated.primary == "k2" and rotated.key_ids == ("k1", "k2")
    new = token(rotated)
    assert new.startswith("<pii:EMAIL_ADDRESS:k2:")
    for t in (old, old_det, new):
        assert open_token(rotated, B, t)[1] == EMAIL
    # Retiring k1 (removing it) makes k1 tokens fail closed.
    retired = KeyRing("k2", {"k2": rotated.secrets["k2"]})
    with pytest.raises(InvalidField):
        open_token(retired, B, old)


def test_unknown_key_id_and_malformed_tokens(ring: KeyRing) -> None:
    t = token(ring)
    with pytest.raises(InvalidField):
        open_token(ring, B, t.replace(":k1:", ":k9:"))
    for bad in ("<pii:EMAIL_ADDRESS:k1:>", "<pii:email:k1:AAAAAAAAAAAAAAAAAAAAAAAA>", "<pii:E:k1:!!!>", "nope"):
        with pytest.raises(InvalidField):
            parse_token(bad)


def test_unknown_algorithm_byte_rejected(ring: KeyRing) -> None:
    with pytest.raises(InvalidField):
        open_field(ring, "k1", b"\x09" + bytes(40), b"")


def test_hash_is_keyed_deterministic_and_one_way(ring: KeyRing) -> None:
    h1 = token(ring, "hash")
    assert h1 == token(ring, "hash")
    assert h1.startswith("<pii-hash:EMAIL_ADDRESS:k1:")
    assert not TOKEN_RE.fullmatch(h1), "hashes must not look like reversible tokens"
    other = KeyRing("k1", {"k1": OTHER_SECRET})
    assert token(other, "hash") != h1, "an unkeyed or fixed-key hash would be reversible by guessing"
    assert hash_field(ring, b"x")[1] != hash_field(ring, b"y")[1]


def test_gcm_nonce_comes_from_injected_source(ring: KeyRing) -> None:
    a = apply_action(ActionSpec("encrypt"), "E", "v", ring, B, fixed_random)
    assert a == apply_action(ActionSpec("encrypt"), "E", "v", ring, B, fixed_random)


def test_mask_and_redact() -> None:
    assert apply_action(ActionSpec("mask"), "CREDIT_CARD", "4111-1111-1111-1111", None, B) == "****-****-****-1111"
    assert apply_action(ActionSpec("mask", keep_last=2, mask_char="#"), "P", "+1 (212) 555-0187", None, B) \
        == "+# (###) ###-##87"
    assert apply_action(ActionSpec("mask", keep_last=0), "P", "abc", None, B) == "***"
    assert apply_action(ActionSpec("mask"), "P", "12", None, B) == "12"
    assert apply_action(ActionSpec("redact"), "US_SSN", "536-22-8726", None, B) == "[REDACTED:US_SSN]"
    assert apply_action(ActionSpec("redact", replacement="<{entity}>"), "X", "v", None, B) == "<X>"
    assert apply_action(ActionSpec("allow"), "X", "v", None, B) == "v"


def test_keyed_action_without_ring_refuses() -> None:
    with pytest.raises(ValueError):
        apply_action(ActionSpec("encrypt"), "E", "v", None, B)


def test_keyring_repr_hides_secrets(ring: KeyRing) -> None:
    assert FIXED_SECRET.hex() not in repr(ring) and b64url(FIXED_SECRET) not in repr(ring)


def test_keyring_file_generate_rotate(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    ring = keys.generate_keyring(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keys.load_keyring_file(path).secrets == ring.secrets
    with pytest.raises(keys.KeyRingError):
        keys.generate_keyring(path)
    rotated = keys.rotate_keyring(path)
    assert rotated.primary == "k2"
    reloaded = keys.load_keyring_file(path)
    assert reloaded.primary == "k2" and reloaded.secrets["k1"] == ring.secrets["k1"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_dev_keyring_is_created_once(tmp_path: Path) -> None:
    first = keys.generate_dev_keyring(tmp_path)
    before = first.read_text()
    assert keys.generate_dev_keyring(tmp_path) == first
    assert first.read_text() == before


def test_keyring_from_env() -> None:
    doc = keys.dump_keyring(KeyRing("k1", {"k1": FIXED_SECRET}))
    assert keys.load_keyring_env("RING", {"RING": doc}).secrets["k1"] == FIXED_SECRET
    with pytest.raises(keys.KeyRingError):
        keys.load_keyring_env("RING", {})


@pytest.mark.parametrize("doc", [
    "not json",
    "[]",
    json.dumps({"primary": "k1", "keys": {}}),
    json.dumps({"primary": "k1", "keys": {"k1": "short"}}),
    json.dumps({"primary": "k2", "keys": {"k1": b64url(FIXED_SECRET)}}),
    json.dumps({"primary": "k1", "keys": {"bad id!": b64url(FIXED_SECRET)}}),
    json.dumps({"format": "other/9", "primary": "k1", "keys": {"k1": b64url(FIXED_SECRET)}}),
])
def test_malformed_keyrings_are_refused(doc: str) -> None:
    with pytest.raises(keys.KeyRingError) as info:
        keys.parse_keyring(doc)
    assert b64url(FIXED_SECRET) not in str(info.value)


def test_guard_keys_generate_writes_a_pii_keyring(tmp_path: Path) -> None:
    from guard import devkeys

    generated = devkeys.generate_pii_keyring(tmp_path)
    assert generated.kind == "pii" and generated.created
    ring = keys.load_keyring_file(generated.files[0])
    again = devkeys.generate_pii_keyring(tmp_path, overwrite=True)
    assert not again.created and keys.load_keyring_file(again.files[0]).secrets == ring.secrets


# -- principal binding ---------------------------------------------------------------------------

ALICE = Principal(subject="alice", issuer="https://idp-a", tenant="acme")
BOB = Principal(subject="bob", issuer="https://idp-a", tenant="acme")
ALICE_ELSEWHERE = Principal(subject="alice", issuer="https://idp-b", tenant="acme")


def bound(principal: Principal, *, bind_principal: bool = True, bind_tenant: bool = False) -> Binding:
    return binding_for("dep-a", principal, bind_tenant=bind_tenant, bind_principal=bind_principal)


@pytest.mark.parametrize("kind", ["encrypt", "tokenize"])
def test_token_bound_to_principal_does_not_open_for_another(ring: KeyRing, kind: str) -> None:
    """A token minted in alice's session opens for alice only: not for bob, not for an 'alice' of
    another issuer, not for anonymous clients."""
    t = token(ring, kind, binding=bound(ALICE))
    assert open_token(ring, bound(ALICE), t)[1] == EMAIL
    for other in (BOB, ALICE_ELSEWHERE, ANONYMOUS):
        with pytest.raises(InvalidField):
            open_token(ring, bound(other), t)


def test_deterministic_tokens_are_not_comparable_across_principals(ring: KeyRing) -> None:
    """The equality oracle: bob obtaining the token of a guessed value (through any tool echoing its
    input) can no longer compare it with the token alice was shown."""
    assert token(ring, "tokenize", binding=bound(ALICE)) != token(ring, "tokenize", binding=bound(BOB))
    assert token(ring, "tokenize", binding=bound(ALICE)) == token(ring, "tokenize", binding=bound(ALICE))
    assert token(ring, "hash", binding=bound(ALICE)) != token(ring, "hash", binding=bound(BOB))


def test_principal_binding_off_keeps_the_unbound_form(ring: KeyRing) -> None:
    """With bind_principal = false tokens travel between principals, and are the tokens guard minted
    before principal binding existed (the associated data is unchanged)."""
    t = token(ring, binding=B)
    assert bound(ALICE, bind_principal=False) == B
    assert open_token(ring, bound(BOB, bind_principal=False), t)[1] == EMAIL
    with pytest.raises(InvalidField):
        open_token(ring, bound(BOB), t)


# -- the authorize stage's view: tokens opened as the PII stage restores them ------------------

def opener(ring: KeyRing | None, **kw: Any) -> TokenOpener:
    kw.setdefault("bind_principal", True)
    return TokenOpener(ring, "dep-a", bind_tenant=False, undecidable=UNDECIDABLE, **kw)


def call(arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send", "arguments": arguments}}


def test_view_opens_tokens_where_the_pii_stage_restores_them(ring: KeyRing) -> None:
    t = token(ring, "tokenize", binding=bound(ALICE))
    escaped = json.dumps({"to": t}).replace("<", "\\u003c").replace("p", "\\u0070", 1)
    payload = call({"to": t, "body": f"Hi {t}!", "cc": [t], "meta": json.dumps({"x": t}), "esc": escaped})
    before = copy.deepcopy(payload)
    params = opener(ring)(payload, Kind.REQUEST, "tools/call", ALICE)
    args = params["arguments"]
    assert args["to"] == EMAIL and args["body"] == f"Hi {EMAIL}!" and args["cc"] == [EMAIL]
    assert json.loads(args["meta"]) == {"x": EMAIL}
    assert json.loads(args["esc"]) == {"to": EMAIL}, "embedded JSON escapes are decoded as the walker decodes them"
    assert payload == before, "the message itself is never changed"


def test_view_marks_a_value_whose_token_does_not_open_as_undecidable(ring: KeyRing) -> None:
    mine, theirs = token(ring, binding=bound(ALICE)), token(ring, binding=bound(BOB))
    payload = call({"to": theirs, "cc": [mine, f"x {theirs}"], "subject": "hello", "tampered": mine[:-3] + "AAA>",
                    "fake": "<pii:EMAIL_ADDRESS:k1:short>"})
    args = opener(ring)(payload, Kind.REQUEST, "tools/call", ALICE)["arguments"]
    assert args["to"] is UNDECIDABLE and args["cc"] == [EMAIL, UNDECIDABLE]
    assert args["tampered"] is UNDECIDABLE and args["fake"] is UNDECIDABLE
    assert args["subject"] == "hello"
    assert opener(None)(call({"to": mine}), Kind.REQUEST, "tools/call", ALICE)["arguments"]["to"] is UNDECIDABLE


def test_view_without_tokens_is_the_params_object_itself(ring: KeyRing) -> None:
    payload = call({"to": "ada@example.com", "n": [1, 2, {"deep": "pii"}]})
    assert opener(ring)(payload, Kind.REQUEST, "tools/call", ALICE) is payload["params"]


def test_view_of_an_unopenable_token_inside_a_blob_makes_everything_undecidable(ring: KeyRing) -> None:
    foreign = token(ring, binding=bound(BOB))
    blob = base64.b64encode(f"to {foreign}".encode()).decode()
    answer = {"content": {"type": "image", "mimeType": "image/png", "data": blob}}
    payload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "t", "arguments": {"x": "y"}, "inputResponses": {"r1": answer}}}
    assert opener(ring, scan_blobs=True)(payload, Kind.REQUEST, "tools/call", ALICE) is UNDECIDABLE
    assert opener(ring)(payload, Kind.REQUEST, "tools/call", ALICE) is payload["params"], "blobs not scanned"


def test_principal_binding_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    from guard import configtools as ct
    from guard.pii.settings import parse_pii

    ring_doc = keys.dump_keyring(KeyRing("k1", {"k1": FIXED_SECRET}))
    rules = str(Path(__file__).resolve().parents[2] / "policies" / "pii.toml")
    for raw, expected in (({}, True), ({"bind_principal": False}, False)):
        problems = ct.Problems()
        pii = parse_pii({"rules": rules, "keyring_env": "RING", **raw}, problems, tmp_path, environ={"RING": ring_doc})
        assert not problems.items and pii.bind_principal is expected
    problems = ct.Problems()
    parse_pii({"rules": rules, "keyring_env": "RING", "bind_principal": "yes"}, problems, tmp_path,
              environ={"RING": ring_doc})
    assert any("bind_principal" in p for p in problems.items)
