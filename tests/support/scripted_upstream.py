"""A tiny scripted upstream speaking newline-delimited JSON-RPC on stdio (not an MCP SDK server).

Used where a test needs the upstream to misbehave on cue. Any request is answered with
``{"method": ..., "params": ...}``; special methods:

* ``test/die``            exit(3) without answering
* ``test/hang``           never answer
* ``test/notify``         send ``notifications/message`` first, then answer
* ``test/server_request`` send a ``sampling/createMessage`` request to the client, wait for
                          its response and answer with it
* ``test/garbage``        print a non-JSON line, then answer
* ``test/unsolicited``    answer with an extra response for an id nobody asked for
* ``test/slow``           sleep ``params.seconds`` then answer
* ``test/flood``          send ``params.count`` notifications of ``params.size`` bytes, then answer
* ``test/raw_result``     answer with ``params.text`` written verbatim as the result (raw JSON text)
* ``test/invalid_utf8``   answer with a result string holding a byte that is not UTF-8
* ``test/elicit``         send an ``elicitation/create`` request to the client and never answer the call
* ``test/elicit_twice``   send two ``elicitation/create`` requests under the same id ``dup`` (an id clash),
                          then answer the call
* ``tools/call`` of ``block``: never answered (an executed call whose outcome guard cannot see)
* ``tools/call`` of ``needs_input`` without ``inputResponses``: a 2026-07-28 ``InputRequiredResult``
  (``requestState: "state-1"``, one elicitation under key ``confirm``); with them, the usual echo

If ``TOOLS`` is set (a JSON list), ``tools/list`` is answered with ``{"tools": TOOLS}``.
If ``RECORD`` is set, every received line is appended to that file, and the process
environment (keys and values) is dumped to ``RECORD + ".env"`` at start.
"""

import json
import os
import sys
import time


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    record = os.environ.get("RECORD")
    if record:
        with open(record + ".env", "w") as fh:
            json.dump(dict(os.environ), fh)
        with open(record + ".pid", "w") as fh:
            fh.write(str(os.getpid()))
    print("scripted upstream ready", file=sys.stderr, flush=True)
    waiting_for = {}
    for line in sys.stdin:
        if record:
            with open(record, "a") as fh:
                fh.write(line)
        msg = json.loads(line)
        if "method" not in msg:
            orig = waiting_for.pop(msg.get("id"), None)
            if orig is not None:
                send({"jsonrpc": "2.0", "id": orig, "result": {"clientAnswer": msg}})
            continue
        method, rid = msg["method"], msg.get("id")
        if rid is None:
            continue
        if method == "test/die":
            sys.exit(3)
        if method == "test/hang":
            continue
        if method == "test/invalid_utf8":
            sys.stdout.buffer.write(b'{"jsonrpc":"2.0","id":' + json.dumps(rid).encode() + b',"result":{"s":"\xff"}}\n')
            sys.stdout.flush()
            continue
        if method == "test/raw_result":
            sys.stdout.write('{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"result":' + msg["params"]["text"] + "}\n")
            sys.stdout.flush()
            continue
        params = msg.get("params") or {}
        if method == "tools/list" and os.environ.get("TOOLS"):
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": json.loads(os.environ["TOOLS"])}})
            continue
        if method == "tools/call" and params.get("name") == "block":
            continue
        if method == "tools/call" and params.get("name") == "needs_input" and "inputResponses" not in params:
            ask = {"method": "elicitation/create",
                   "params": {"message": "sure?", "requestedSchema": {"type": "object"}}}
            send({"jsonrpc": "2.0", "id": rid, "result": {"resultType": "input_required", "requestState": "state-1",
                                                          "inputRequests": {"confirm": ask}}})
            continue
        if method == "test/elicit":
            send({"jsonrpc": "2.0", "id": f"elicit-{rid}", "method": "elicitation/create",
                  "params": {"message": "confirm?", "requestedSchema": {"type": "object"}}})
            continue
        if method == "test/elicit_twice":
            for _ in range(2):
                send({"jsonrpc": "2.0", "id": "dup", "method": "elicitation/create",
                      "params": {"message": "confirm?", "requestedSchema": {"type": "object"}}})
        if method == "test/notify":
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "data": "hello"}})
        if method == "test/server_request":
            sid = f"srv-{rid}"
            waiting_for[sid] = rid
            send({"jsonrpc": "2.0", "id": sid, "method": "sampling/createMessage",
                  "params": {"messages": [], "maxTokens": 5}})
            continue
        if method == "test/slow":
            time.sleep(float((msg.get("params") or {}).get("seconds", 1)))
        if method == "test/flood":
            p = msg.get("params") or {}
            blob = "x" * int(p.get("size", 10000))
            for i in range(int(p.get("count", 100))):
                send({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info", "data": {"i": i, "blob": blob}}})
        if method == "test/garbage":
            sys.stdout.write("this is not json\n")
        if method == "test/unsolicited":
            send({"jsonrpc": "2.0", "id": "nobody-asked", "result": {}})
        send({"jsonrpc": "2.0", "id": rid, "result": {"method": method, "params": msg.get("params")}})


if __name__ == "__main__":
    main()
