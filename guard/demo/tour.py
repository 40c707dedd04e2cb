"""``guard demo tour``: four calls through the running demo, showing what guard does to each.

1. alice (analyst) finds a customer: allowed; the record comes back with its personal data
   protected (e-mail tokenized, card masked, IBAN encrypted);
2. alice tries to delete a customer: denied by policy, with the error code and reason she gets;
3. bob (support) finds the customer too and sends a message to the e-mail *token* (tokens are
   bound to the principal they were minted for): allowed, and guard restores the real address
   for the upstream because the policy lets support reveal e-mails to ``send_message`` (the
   audit log shows the reveal; the receipt comes back protected again);
4. alice tries the same with her token: denied (analysts may not send).

Uses the official Python SDK 2.x over Streamable HTTP with the tokens ``guard demo`` wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


@contextlib.asynccontextmanager
async def _as(url: str, token: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(30, read=120)) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


def _say(text: str = "") -> None:
    print(text, flush=True)


def _reveals(audit_dir: Path) -> int:
    """``send_message`` requests whose e-mail token guard revealed to the upstream (from the audit log)."""
    count = 0
    for path in sorted(audit_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                g = record.get("guard", {})
                if g.get("target", {}).get("name") == "send_message" and "reveal" in g.get("pii", {}).get(
                        "actions", []):
                    count += 1
    return count


async def tour(dev: Path, url: str) -> None:
    from mcp import Client, MCPError

    tokens = {p.stem: p.read_text(encoding="utf-8").strip() for p in (dev / "tokens").glob("*.token")}
    _say(f"guard demo tour: {url}")
    _say()
    async with Client(_as(url, tokens["alice"]), mode="legacy") as alice:
        _say('1. alice (role analyst) calls find_customer {"query": "Johnson"}')
        found = await alice.call_tool("find_customer", {"query": "Johnson"})
        record = (found.structured_content or {})["customers"][0]
        _say("   ALLOWED. The upstream returned Alice Johnson's record; guard protected it on the way out:")
        for field in ("email", "phone", "card_number", "iban"):
            _say(f"     {field:<12} {record[field]}")
        token = record["email"]
        _say()
        _say('2. alice calls delete_customer {"customer_id": "C002"}')
        try:
            await alice.call_tool("delete_customer", {"customer_id": "C002"})
            _say("   allowed?! (the policy was edited)")
        except MCPError as exc:
            _say(f"   DENIED: error {exc.error.code} {exc.error.message!r}, data {exc.error.data}")
            _say("   (the upstream never saw the call)")
    _say()
    before = _reveals(dev / "audit")
    async with Client(_as(url, tokens["bob"]), mode="legacy") as bob:
        # Protected-value tokens are bound to the principal they were minted for: bob finds his own.
        found = await bob.call_tool("find_customer", {"query": "Johnson"})
        bobs_token = (found.structured_content or {})["customers"][0]["email"]
        _say('3. bob (role support) finds the same customer, then calls send_message with the e-mail token')
        _say(f'   {{"to": "{bobs_token[:32]}...", "body": "Hello"}}')
        sent = await bob.call_tool("send_message", {"to": bobs_token, "body": "Hello"})
        receipt = sent.structured_content or {}
        shown = str(receipt.get("to"))[:40]
        _say(f"   ALLOWED: {receipt.get('status')} as {receipt.get('message_id')}; the receipt says to = {shown}...")
        await asyncio.sleep(0.5)  # the audit record is written after the answer
        if _reveals(dev / "audit") > before:
            _say("   REVEALED: policy lets support reveal EMAIL_ADDRESS to send_message, so guard restored the real")
            _say("   address for the upstream (the audit log records the reveal, never the address).")
    _say()
    async with Client(_as(url, tokens["alice"]), mode="legacy") as alice:
        _say("4. alice calls send_message with her own token for that address")
        try:
            await alice.call_tool("send_message", {"to": token, "body": "Hello"})
            _say("   allowed?! (the policy was edited)")
        except MCPError as exc:
            _say(f"   DENIED: error {exc.error.code} {exc.error.message!r} (analysts may not send)")
    _say()
    _say(f"Now edit {dev}/policies/policy.csv (guard reloads it live) and run the tour again.")


def run_tour(dev: Path, url: str) -> int:
    try:
        import mcp  # noqa: F401
    except ImportError:
        print("guard demo tour needs the demo extra: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    if not (dev / "tokens").is_dir():
        print(f"guard demo tour: no tokens in {dev}/tokens: start guard demo first", file=sys.stderr)
        return 2
    try:
        asyncio.run(tour(dev, url))
    except Exception as exc:  # a demo: one line, not a traceback
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]  # type: ignore[assignment]
        print(f"guard demo tour: {type(leaf).__name__}: {leaf} (is guard demo running at {url}?)", file=sys.stderr)
        return 1
    return 0
