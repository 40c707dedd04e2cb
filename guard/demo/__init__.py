"""Bundled demo MCP server (fake customer records) for trying and testing guard.

Run it with ``python -m guard.demo`` (stdio) or
``python -m guard.demo --transport streamable-http --port 0`` (prints its URL). See
:mod:`guard.demo.server`.
"""
