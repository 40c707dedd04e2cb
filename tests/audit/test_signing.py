"""Ed25519 checkpoint signatures: key ids, PEM loading, forged or foreign signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.audit.checkpoint import check, make_checkpoint
from guard.crypto.signing import (
    KeyFileError,
    generate_signing_key,
    key_ring,
    load_signing_key,
    load_verify_key,
    sign_checkpoint,
    verify_checkpoint,
)
from tests.audit.helpers import KEY, OTHER_KEY


def test_sign_and_verify_with_the_right_key_only() -> None:
    sig = sign_checkpoint(KEY, b"payload")
    ring = key_ring([KEY.public, OTHER_KEY.public])
    assert verify_checkpoint(ring, KEY.key_id, b"payload", sig) is True
    assert verify_checkpoint(ring, KEY.key_id, b"payload!", sig) is False
    assert verify_checkpoint(ring, OTHER_KEY.key_id, b"payload", sig) is False
    assert verify_checkpoint({}, KEY.key_id, b"payload", sig) is None


def test_signature_text_padding_games_are_rejected() -> None:
    """base64 decoders skip junk characters; a verifier must not accept altered signature text."""
    sig = sign_checkpoint(KEY, b"p")
    ring = key_ring([KEY.public])
    for forged in (sig + "=", sig + "!", " " + sig, sig[:-1], ""):
        assert verify_checkpoint(ring, KEY.key_id, b"p", forged) is False


def test_key_id_is_stable_and_pem_round_trips(tmp_path: Path) -> None:
    key = generate_signing_key()
    private = tmp_path / "k.pem"
    public = tmp_path / "k.pub.pem"
    private.write_bytes(key.private_pem())
    public.write_bytes(key.public.public_pem())
    assert load_signing_key(private).key_id == key.key_id
    assert load_verify_key(public).key_id == key.key_id
    assert load_verify_key(private).key_id == key.key_id
    assert len(key.key_id) == 16 and "PRIVATE" not in repr(key)


def test_non_ed25519_or_missing_keys_are_refused(tmp_path: Path) -> None:
    from guard.devkeys import generate_dev_keys

    generate_dev_keys(tmp_path)  # an ES256 JWT key, not an audit key
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_signing_key(tmp_path / "auth-signing-key.pem")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signing_key(tmp_path / "nope.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(KeyFileError):
        load_verify_key(tmp_path / "junk.pem")


def test_checkpoint_fields_are_all_signed() -> None:
    cp = make_checkpoint(KEY, count=10, head="a" * 64, time="2026-01-01T00:00:00.000000Z", every=5,
                         interval_ms=1000)
    ring = key_ring([KEY.public])
    assert check(cp, ring) is True
    for field, value in (("count", 9), ("head", "b" * 64), ("time", "2027-01-01T00:00:00.000000Z"),
                         ("every", 6), ("interval_ms", 2000)):
        assert check({**cp, field: value}, ring) is False, field
    assert check({**cp, "extra": 1}, ring) is False
    assert check({**cp, "count": True}, ring) is False
    assert check({**cp, "key_id": OTHER_KEY.key_id}, ring) is None


def test_audit_dev_key_generator(tmp_path: Path) -> None:
    from guard.devkeys import generate_audit_key

    made = generate_audit_key(tmp_path)
    assert made.created and (tmp_path / "audit-signing-key.pem").stat().st_mode & 0o777 == 0o600
    again = generate_audit_key(tmp_path)
    assert not again.created and again.details["key_id"] == made.details["key_id"]
    assert load_verify_key(tmp_path / "audit-signing-key.pub.pem").key_id == made.details["key_id"]
