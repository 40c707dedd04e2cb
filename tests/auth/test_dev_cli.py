"""Dev tooling: guard keys generate -> guard token mint -> the token validates."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

from guard import devkeys
from guard.auth import Authenticator, parse_auth
from guard.auth.cli import DEV_AUDIENCE, DEV_ISSUER, parse_ttl, register
from guard.configtools import Problems
from guard.context import Principal


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="guard")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def dev_auth(tmp_path: Path, key_file: str) -> Authenticator:
    problems = Problems()
    settings = parse_auth({"audience": DEV_AUDIENCE, "issuers": [
        {"issuer": DEV_ISSUER, "algorithms": ["ES256", "RS256"], "public_keys": [key_file]},
    ]}, problems, tmp_path, ["demo"])
    assert problems.items == []
    return Authenticator(settings)


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
@pytest.mark.parametrize("key_file", [devkeys.AUTH_JWKS, devkeys.AUTH_PUBLIC_KEY])
async def test_generate_then_mint_then_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alg: str, key_file: str
) -> None:
    keys = tmp_path / "dev" / "keys"
    assert run(["keys", "generate", "--dir", str(keys), "--alg", alg]) == 0
    capsys.readouterr()
    assert run(["token", "mint", "--sub", "alice", "--role", "analyst", "--role", "admin", "--ttl", "1h",
                "--dir", str(keys), "--tenant", "acme"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2 and "\n" not in token
    auth = dev_auth(tmp_path, str(keys / key_file))
    principal = await auth.authenticate("demo", {"authorization": f"Bearer {token}"})
    assert isinstance(principal, Principal)
    assert (principal.subject, principal.roles, principal.issuer) == ("alice", ("analyst", "admin"), DEV_ISSUER)
    assert principal.key_id == json.loads((keys / devkeys.AUTH_JWKS).read_text())["keys"][0]["kid"]


def test_private_key_is_owner_only_and_jwks_is_public_only(tmp_path: Path) -> None:
    result = devkeys.generate_dev_keys(tmp_path / "k")
    private, public, jwks = result.files
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in private.read_bytes() and b"PRIVATE" not in public.read_bytes()
    jwk = json.loads(jwks.read_text())["keys"][0]
    assert "d" not in jwk and jwk["kid"] == devkeys.jwk_thumbprint(jwk) and jwk["alg"] == "ES256"


def test_generate_keeps_existing_keys_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = devkeys.generate_dev_keys(tmp_path)
    again = devkeys.generate_dev_keys(tmp_path)
    assert again.created is False and again.details["kid"] == first.details["kid"]
    forced = devkeys.generate_dev_keys(tmp_path, overwrite=True)
    assert forced.created and forced.details["kid"] != first.details["kid"]
    assert run(["keys", "generate", "--dir", str(tmp_path)]) == 0
    assert "kept existing" in capsys.readouterr().out


def test_generate_all_covers_the_auth_kind(tmp_path: Path) -> None:
    kinds = [k.kind for k in devkeys.generate_all(tmp_path)]
    assert "auth" in kinds


async def test_minted_token_for_another_audience_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["keys", "generate", "--dir", str(tmp_path)])
    capsys.readouterr()
    run(["token", "mint", "--sub", "bob", "--aud", "someone-else", "--dir", str(tmp_path)])
    token = capsys.readouterr().out.strip()
    outcome = await dev_auth(tmp_path, devkeys.AUTH_JWKS).authenticate("demo", {"authorization": f"Bearer {token}"})
    assert not isinstance(outcome, Principal) and outcome.reason == "invalid_audience"


def test_mint_without_keys_explains_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["token", "mint", "--sub", "alice", "--dir", str(tmp_path / "none")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "guard keys generate" in captured.err


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)])
def test_ttl_parsing(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "-5", "0", "31d", "1h30m"])
def test_bad_ttl_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)
