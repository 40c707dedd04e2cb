"""What tracing costs per call: guard's CPU with ``[tracing]`` off and on at several sample ratios.

    .venv/bin/python bench/tracing_bench.py [--calls 5000]

Runs :mod:`bench.relay_micro` (the relay and pipeline in memory: authenticate, authorize with
the shipped policy, metrics; no PII, no audit, so tracing's share is not hidden) once per
setting. With tracing on, spans go to a minimal OTLP/HTTP sink in another process that answers
200 to everything, so the measured process pays for making the spans *and* for the exporter
thread encoding and sending them (process CPU counts every thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.relay_micro import run

ROOT = Path(__file__).resolve().parent.parent
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""
BASE = f"""
[server]
rate_limit = 0

[upstreams.demo]
url = "http://127.0.0.1:9/mcp"

[auth]
anonymous_servers = ["demo"]

[policy]
policy = "{ROOT / 'policies' / 'policy.csv'}"
"""


@contextlib.contextmanager
def sink() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    settings = [("off", None), ("on, sample_ratio 1.0", 1.0), ("on, sample_ratio 0.1", 0.1),
                ("on, sample_ratio 0", 0.0)]
    print("| tracing | guard CPU per call (us) | calls/s |\n| --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp, sink() as port:
        for label, ratio in settings:
            config = Path(tmp) / f"{label.split(',')[0]}-{ratio}.toml"
            text = BASE
            if ratio is not None:
                text += f'\n[tracing]\nendpoint = "http://127.0.0.1:{port}/v1/traces"\nsample_ratio = {ratio}\n'
            config.write_text(text, encoding="utf-8")
            result = asyncio.run(run(config, args.calls, 32, 1024, False))
            assert result["errors"] == 0, result
            print(f"| {label} | {result['cpu_us_per_call_with_analyzers']:.0f} | {result['calls_per_s']:.0f} |")


if __name__ == "__main__":
    main()
