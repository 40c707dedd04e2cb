"""The bundled demo MCP server: a small "customer records" service full of fake personal data.

It exists so operators can try guard without an MCP server of their own, and so guard's end-to-end
tests have an upstream whose every response carries PII (names, e-mails, phone numbers, card
numbers, IBANs, addresses). Built on the official Python SDK (``mcp`` 2.x ``MCPServer``), it speaks
both protocol eras the SDK supports: the legacy ``initialize`` handshake (2024-11-05 .. 2025-11-25)
and the 2026-07-28 per-request era (``server/discover``), over stdio or Streamable HTTP.

Surface (see ``docs``/``tests/e2e/README.md``):

* tools ``find_customer``, ``list_customers``, ``get_customer``, ``send_message``,
  ``delete_customer`` (``destructiveHint: true``), ``echo``;
* feature tools that make the server talk back to the client in either era: ``draft_message``
  (sampling), ``update_email`` (elicitation), ``list_client_roots`` (roots), ``export_customers``
  (progress + logging notifications);
* resource ``customers://directory``, resource template ``customers://{customer_id}``;
* prompt ``summarize_customer(customer_id)``.

Set ``GUARD_DEMO_RECORD=/path/file.jsonl`` and every request the server receives is appended to
that file *before* the SDK validates or unseals it, so a test can prove what the upstream actually
saw behind guard (e.g. that PII was redacted or a denied call never arrived).

Security warning: this is demo code with fake data and no authentication. Never put real data in it.
"""

import argparse
import json
import os
import socket
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    ListRoots,
    MCPServer,
    Resolve,
    Sample,
    UserMessage,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import (
    CreateMessageResult,
    ListRootsResult,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel

from guard import __version__
from guard.demo.data import CustomerRecord, CustomerStore

RECORD_ENV = "GUARD_DEMO_RECORD"
"""Environment variable naming the JSONL file that receives one line per inbound request."""

SERVER_NAME = "guard-demo"

_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)


class Customer(BaseModel):
    """A full customer record (the tool output schema mirrors :class:`CustomerRecord`)."""

    customer_id: str
    name: str
    email: str
    phone: str
    card_number: str
    iban: str
    address: str
    date_of_birth: str
    notes: str


class CustomerMatches(BaseModel):
    """Result of ``find_customer``."""

    query: str
    count: int
    customers: list[Customer]


class CustomerSummary(BaseModel):
    """One row of ``list_customers``."""

    customer_id: str
    name: str
    email: str


class CustomerList(BaseModel):
    """Result of ``list_customers``."""

    count: int
    customers: list[CustomerSummary]


class MessageReceipt(BaseModel):
    """Result of ``send_message``: the outbox entry, echoing the recipient."""

    message_id: str
    to: str
    status: str
    characters: int


class DeletionReceipt(BaseModel):
    """Result of ``delete_customer``."""

    deleted: str
    name: str
    remaining: int


class Draft(BaseModel):
    """Result of ``draft_message``: the text the client's model sampled."""

    customer_id: str
    to: str
    model: str
    draft: str


class EmailUpdate(BaseModel):
    """Result of ``update_email``."""

    customer_id: str
    action: str
    email: str | None = None


class NewEmail(BaseModel):
    """The form ``update_email`` elicits from the user."""

    email: str


class Roots(BaseModel):
    """Result of ``list_client_roots``."""

    count: int
    uris: list[str]


class ExportSummary(BaseModel):
    """Result of ``export_customers``."""

    exported: int


class CallRecorder:
    """Middleware appending every inbound request to a JSONL file, as received.

    Installed outermost (before the SDK's request-state boundary and params validation), so the
    line holds the params exactly as they arrived on the wire. Each line is
    ``{"method", "params", "protocol_version"}`` plus, for ``tools/call`` and ``prompts/get``,
    ``"name"`` and ``"arguments"`` lifted out for convenience; ``resources/read`` lifts ``"uri"``.
    Notifications are not recorded.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is not None:
            self.write(ctx.method, dict(ctx.params or {}), ctx.protocol_version)
        return await call_next(ctx)

    def write(self, method: str, params: dict[str, Any], protocol_version: str | None) -> None:
        """Append one record line (opened per write so concurrent readers see whole lines)."""
        entry: dict[str, Any] = {"method": method, "params": params, "protocol_version": protocol_version}
        if method in ("tools/call", "prompts/get"):
            entry["name"] = params.get("name")
            entry["arguments"] = params.get("arguments")
        elif method == "resources/read":
            entry["uri"] = params.get("uri")
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def read_record(path: Path) -> list[dict[str, Any]]:
    """Parse a ``GUARD_DEMO_RECORD`` file (missing file = nothing received)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _require(store: CustomerStore, customer_id: str) -> CustomerRecord:
    record = store.get(customer_id)
    if record is None:
        raise ToolError(f"unknown customer: {customer_id}")
    return record


def build_server(store: CustomerStore | None = None, record_path: Path | None = None) -> MCPServer[Any]:
    """Build the demo server over ``store`` (a freshly seeded one by default).

    ``record_path`` enables the :class:`CallRecorder`; :func:`main` takes it from ``GUARD_DEMO_RECORD``.
    """
    db = store if store is not None else CustomerStore.seeded()
    mcp: MCPServer[Any] = MCPServer(
        SERVER_NAME,
        title="Guard demo customer records",
        version=__version__,
        instructions="Fake customer records for trying guard. All data is invented.",
        log_level="WARNING",
    )
    if record_path is not None:
        mcp.middleware.insert(0, CallRecorder(record_path))

    # ---- plain tools -------------------------------------------------------------------------

    @mcp.tool(annotations=_READ_ONLY)
    def find_customer(query: str) -> CustomerMatches:
        """Find customers whose id, name, e-mail or phone number matches the query."""
        found = [Customer(**r) for r in db.find(query)]
        return CustomerMatches(query=query, count=len(found), customers=found)

    @mcp.tool(annotations=_READ_ONLY)
    def list_customers() -> CustomerList:
        """List every customer with id, name and e-mail."""
        rows = [CustomerSummary(customer_id=r["customer_id"], name=r["name"], email=r["email"]) for r in db.all()]
        return CustomerList(count=len(rows), customers=rows)

    @mcp.tool(annotations=_READ_ONLY)
    def get_customer(customer_id: str) -> Customer:
        """Get one customer's full record by id (e.g. C001)."""
        return Customer(**_require(db, customer_id))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True))
    def send_message(to: str, body: str) -> MessageReceipt:
        """Send a message to a customer (queued in the demo outbox; nothing is delivered)."""
        message = db.send(to, body)
        return MessageReceipt(message_id=message.message_id, to=message.to, status="queued", characters=len(body))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    def delete_customer(customer_id: str) -> DeletionReceipt:
        """Permanently delete a customer record."""
        record = db.delete(customer_id)
        if record is None:
            raise ToolError(f"unknown customer: {customer_id}")
        return DeletionReceipt(deleted=record["customer_id"], name=record["name"], remaining=len(db.records))

    @mcp.tool(annotations=_READ_ONLY, structured_output=False)
    def echo(text: str) -> str:
        """Return the text unchanged (handy for tests)."""
        return text

    # ---- feature tools: the server asks the client for something --------------------------

    def _draft_request(customer_id: str, topic: str) -> Sample:
        record = _require(db, customer_id)
        prompt = (
            f"Write a two-sentence message about {topic!r} to {record['name']} "
            f"<{record['email']}>, phone {record['phone']}."
        )
        return Sample(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=200,
            system_prompt="You write short, polite customer service messages.",
        )

    @mcp.tool(annotations=_READ_ONLY)
    def draft_message(
        customer_id: str, topic: str, sampled: Annotated[CreateMessageResult, Resolve(_draft_request)]
    ) -> Draft:
        """Ask the client's model (sampling/createMessage) to draft a message to a customer."""
        record = _require(db, customer_id)
        content = sampled.content
        text = content.text if isinstance(content, TextContent) else json.dumps(content.model_dump(mode="json"))
        return Draft(customer_id=record["customer_id"], to=record["email"], model=sampled.model, draft=text)

    def _ask_email(customer_id: str) -> Elicit[NewEmail]:
        record = _require(db, customer_id)
        return Elicit(f"New e-mail address for {record['name']} (currently {record['email']})?", NewEmail)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    def update_email(
        customer_id: str, answer: Annotated[ElicitationResult[NewEmail], Resolve(_ask_email)]
    ) -> EmailUpdate:
        """Ask the user (elicitation/create) for a customer's new e-mail address and store it."""
        record = _require(db, customer_id)
        if isinstance(answer, AcceptedElicitation):
            record["email"] = answer.data.email
            return EmailUpdate(customer_id=record["customer_id"], action="accept", email=answer.data.email)
        return EmailUpdate(customer_id=record["customer_id"], action=answer.action)

    def _ask_roots() -> ListRoots:
        return ListRoots()

    @mcp.tool(annotations=_READ_ONLY)
    def list_client_roots(roots: Annotated[ListRootsResult, Resolve(_ask_roots)]) -> Roots:
        """Ask the client for its roots (roots/list) and report them."""
        uris = [str(root.uri) for root in roots.roots]
        return Roots(count=len(uris), uris=uris)

    @mcp.tool(annotations=_READ_ONLY)
    async def export_customers(ctx: Context) -> ExportSummary:
        """Export every record, reporting progress and logging each customer's name and e-mail.

        Progress arrives only when the request carries a progressToken; on 2026-07-28 log messages
        arrive only when the request opts in with the ``io.modelcontextprotocol/logLevel`` _meta key.
        """
        records = db.all()
        for index, record in enumerate(records, start=1):
            with warnings.catch_warnings():
                # Logging is deprecated in 2026-07-28 (SEP-2577) but is exactly what we want to exercise.
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await ctx.info(f"exporting {record['name']} <{record['email']}>", logger_name=SERVER_NAME)
            await ctx.report_progress(index, len(records), f"exported {record['customer_id']}")
        return ExportSummary(exported=len(records))

    # ---- resources and prompts --------------------------------------------------------------

    @mcp.resource("customers://directory", name="customer-directory", mime_type="text/plain")
    def directory() -> str:
        """One line per customer: id, name, e-mail, phone."""
        return "\n".join(f"{r['customer_id']}  {r['name']}  {r['email']}  {r['phone']}" for r in db.all())

    @mcp.resource("customers://{customer_id}", name="customer-record", mime_type="application/json")
    def customer_record(customer_id: str) -> str:
        """A customer's full record as JSON."""
        record = db.get(customer_id)
        if record is None:
            raise ValueError(f"unknown customer: {customer_id}")
        return json.dumps(record, ensure_ascii=False)

    @mcp.prompt()
    def summarize_customer(customer_id: str) -> list[UserMessage]:
        """Ask the model to summarize one customer's record."""
        record = db.get(customer_id)
        if record is None:
            raise ValueError(f"unknown customer: {customer_id}")
        return [
            UserMessage(
                "Summarize this customer record in three bullet points:\n"
                + json.dumps(record, ensure_ascii=False, indent=2)
            )
        ]

    return mcp


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


async def serve_http(
    mcp: MCPServer[Any], host: str, port: int, path: str, stateless: bool, json_response: bool
) -> None:
    """Serve Streamable HTTP on ``host:port``; prints ``http://host:port/path`` once listening.

    ``port`` 0 picks a free port; the printed line (stdout, flushed) tells the caller which.
    """
    import uvicorn

    app = mcp.streamable_http_app(
        streamable_http_path=path, stateless_http=stateless, json_response=json_response, host=host
    )
    sock = _listening_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{bound}{path}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    await server.serve(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m guard.demo [--transport stdio|streamable-http] [--host H] [--port N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m guard.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port; 0 picks a free one (default 8765)")
    parser.add_argument("--path", default="/mcp", help="HTTP endpoint path (default /mcp)")
    parser.add_argument("--stateless", action="store_true", help="stateless Streamable HTTP (no sessions)")
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    args = parser.parse_args(argv)

    record = os.environ.get(RECORD_ENV)
    mcp = build_server(record_path=Path(record) if record else None)
    try:
        if args.transport == "stdio":
            anyio.run(mcp.run_stdio_async)
        else:
            anyio.run(serve_http, mcp, args.host, args.port, args.path, args.stateless, args.json_response)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
