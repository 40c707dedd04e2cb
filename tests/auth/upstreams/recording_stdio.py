"""A minimal stdio MCP server that records its environment, argv and every frame it receives.

Usage: ``python recording_stdio.py RECORD.jsonl``. Answers ``initialize``, ``tools/list``,
``tools/call`` (echoes the arguments) and anything else with an empty result, so the
no-passthrough test can inspect exactly what guard handed the child process.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    record = open(sys.argv[1], "a", encoding="utf-8")
    record.write(json.dumps({"env": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd()}) + "\n")
    record.flush()
    for line in sys.stdin:
        record.write(json.dumps({"frame": line}) + "\n")
        record.flush()
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue
        method, params = msg["method"], msg.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
                      "serverInfo": {"name": "recorder", "version": "1.0"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "echo", "description": "Echo the arguments",
                                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": json.dumps(params.get("arguments"))}], "isError": False}
        else:
            result = {}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
