"""Transports move frames; they make no security decisions.

* :mod:`guard.transports.downstream` — the client side: an ASGI WebSocket connection.
* :mod:`guard.transports.stdio`, :mod:`~guard.transports.websocket`,
  :mod:`~guard.transports.http` — upstream MCP servers.

Every upstream implements :class:`~guard.transports.base.Upstream`.
"""
