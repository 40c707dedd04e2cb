"""The authenticate stage: a connection's credentials expire mid-session.

The handshake proved who the client is (:mod:`guard.auth`); the token's ``exp`` still
bounds how long that proof holds. A message that arrives once ``now >= exp + leeway``
is not forwarded, in either direction: a client request gets a JSON-RPC error
(:attr:`ErrorCode.UNAUTHENTICATED`) and the connection is closed with 1008 (policy
violation, RFC 6455 section 7.4.1); a notification or a response is dropped and the
connection closed the same way. The client reconnects with a fresh token.

Sessions are not authentication (MCP ``basic/security_best_practices``): nothing a
client sends inside the session can extend it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from guard.auth.settings import AuthSettings
from guard.auth.tokens import is_expired
from guard.context import CloseRequest, MessageContext, Principal, Verdict
from guard.jsonrpc import ErrorCode

CLOSE_POLICY_VIOLATION = 1008
EXPIRED_CLOSE = CloseRequest(CLOSE_POLICY_VIOLATION, "token expired")


def expiry_deadline(principal: Principal, leeway: float) -> float | None:
    """Epoch seconds at which ``principal``'s session must end (``None``: never, e.g. anonymous).

    Lets a transport schedule a proactive close for idle connections.
    """
    return None if principal.expires_at is None else principal.expires_at + leeway


class AuthenticateStage:
    """Rejects and closes once the session's token has expired (``exp`` + leeway)."""

    name = "authenticate"
    sees_rejections = False

    def __init__(self, *, leeway: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._leeway = leeway
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: AuthSettings, *,
                      clock: Callable[[], float] = time.time) -> AuthenticateStage:
        return cls(leeway=settings.leeway, clock=clock)

    async def process(self, ctx: MessageContext) -> Verdict:
        expires_at = ctx.principal.expires_at
        if expires_at is None or not is_expired(expires_at, self._clock(), self._leeway):
            return Verdict.proceed()
        return Verdict.reject(
            ErrorCode.UNAUTHENTICATED,
            "Unauthenticated: token expired",
            data={"reason": "expired"},
            close=EXPIRED_CLOSE,
            stage=self.name,
        )
