"""Transports move frames; they make no security decisions.

* :mod:`guard.transports.downstream` — the client side: an ASGI WebSocket connection.
* :mod:`guard.transports.handshake` — the HTTP layer under it: handshake deadline, request-head limits.
* :mod:`guard.transports.refusals` — refused handshakes and frames: one info line each, with a reason.
* :mod:`guard.transports.stdio`, :mod:`~guard.transports.websocket`,
  :mod:`~guard.transports.http` — upstream MCP servers.

Every upstream implements :class:`~guard.transports.base.Upstream`.
"""
