"""A client request as the upstream will receive it: every protected-value token opened.

The authorize stage runs before the PII stage, which restores the tokens a client sends back
(``<pii:EMAIL_ADDRESS:k1:...>`` -> the address) when ``pii/reveal`` allows it. Argument rules
must judge what the upstream receives, not the token text: otherwise any tool that echoes its
input (a search for ``attacker@evil.example``) hands the caller a valid token for a value of
its choice, and a rule that refuses the value in clear lets it through as a token.

:class:`TokenOpener` therefore produces the view argument conditions read: the payload with
every reversible token opened under the same key ring and binding the PII stage uses
(:func:`~guard.pii.tokens.binding_for`), in exactly the strings the PII stage walks
(:func:`~guard.pii.walker.transform`: tool arguments, embedded JSON, blobs when the rules scan
them). A string holding a token that does not open -- tampered, malformed, or minted for another
deployment, tenant or principal -- is replaced as a whole by the ``undecidable`` marker the
caller supplies, so every condition that reads it is undecidable (deny rules deny, allow rules
do not allow; the PII stage then refuses the message anyway with ``PII_TOKEN_INVALID``).

The view is judged as if every reveal were allowed. That is the conservative reading for both
rule effects: a value a rule refuses in clear is refused as a token, and a value allowed in clear
is allowed whether the upstream then receives it (reveal allowed) or the token text (reveal
denied and ``on_denied_reveal = "pass"``), which the upstream cannot open.

Security warning: the view holds restored personal data. It is built for one decision and
dropped; it is never logged, audited or forwarded (the PII stage alone decides what the
upstream receives).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Final

import orjson

from guard.context import Principal
from guard.crypto.aead import InvalidField, KeyRing
from guard.jsonrpc import Kind
from guard.pii.tokens import TOKEN_LIKE_RE, TOKEN_PREFIX, binding_for, open_token
from guard.pii.walker import transform

MAX_MARK_DEPTH: Final = 64
"""How deep the marker replacement looks (conditions read at most 16 levels below the arguments)."""


class TokenOpener:
    """Opens the tokens in a client->server payload for the authorize stage (see module docstring)."""

    def __init__(self, keyring: KeyRing | None, deployment_id: str, *, bind_tenant: bool, bind_principal: bool,
                 scan_blobs: bool = False, undecidable: object = None) -> None:
        self._keyring = keyring
        self._deployment_id = deployment_id
        self._bind_tenant = bind_tenant
        self._bind_principal = bind_principal
        self._scan_blobs = scan_blobs
        self._undecidable = undecidable
        # A per-process marker for "this string held a token that does not open". It is plain
        # ASCII so it survives re-serialization of embedded JSON; a client that guesses it only
        # makes its own value undecidable.
        self._marker = f"<pii-undecidable:{secrets.token_hex(16)}>"

    def __call__(self, payload: Mapping[str, Any], kind: Kind, method: str | None, principal: Principal) -> Any:
        """The ``params`` of ``payload`` with its tokens opened (the same object when it holds none).

        Returns the ``undecidable`` marker itself when a token that does not open cannot be
        pinned to one string (inside a base64 blob). Never mutates ``payload``.
        """
        src = dict(payload)
        params = src.get("params")
        if not self._scan_blobs and not _may_hold_token(params):
            return params
        binding = binding_for(self._deployment_id, principal, bind_tenant=self._bind_tenant,
                              bind_principal=self._bind_principal)
        keyring = self._keyring
        marker = self._marker
        failed = False

        def visit(text: str, path: str) -> str:
            nonlocal failed
            if TOKEN_PREFIX not in text:
                return text
            pieces: list[str] = []
            cursor = 0
            for match in TOKEN_LIKE_RE.finditer(text):
                try:
                    if keyring is None:
                        raise InvalidField("no key ring")
                    _, original = open_token(keyring, binding, match.group(0))
                except InvalidField:
                    failed = True
                    return marker
                pieces.append(text[cursor:match.start()])
                pieces.append(original)
                cursor = match.end()
            pieces.append(text[cursor:])
            return "".join(pieces)

        opened = transform(src, kind, method, False, visit, self._scan_blobs).get("params")
        if not failed:
            return opened
        found: list[bool] = []
        marked = _mark(opened, marker, self._undecidable, 0, found)
        return marked if found else self._undecidable


def _may_hold_token(params: Any) -> bool:
    """Cheap pre-check (one C-speed serialization): could any string in ``params`` carry a token?

    ``pii:`` finds tokens as written; ``\\u`` finds JSON escapes inside embedded JSON text
    (``<\\u0070ii:...>``), which the walker decodes. When serialization fails, assume yes.
    """
    if params is None:
        return False
    try:
        data = orjson.dumps(params)
    except (orjson.JSONEncodeError, TypeError):
        return True
    return b"pii:" in data or b"\\\\u" in data


def _mark(value: Any, marker: str, undecidable: object, depth: int, found: list[bool]) -> Any:
    """``value`` with every string containing ``marker`` replaced by ``undecidable``; ``found``
    gets an entry per replacement."""
    if isinstance(value, str):
        if marker in value:
            found.append(True)
            return undecidable
        return value
    if depth >= MAX_MARK_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _mark(v, marker, undecidable, depth + 1, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, marker, undecidable, depth + 1, found) for v in value]
    return value
