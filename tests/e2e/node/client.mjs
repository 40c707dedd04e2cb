#!/usr/bin/env node
// Drive an MCP server with the official TypeScript SDK 1.x and print one JSON document of results.
//
// Usage (run from anywhere; needs `npm ci` in tests/e2e/node):
//   node client.mjs --ws ws://127.0.0.1:PORT/mcp/NAME [--header 'Authorization: Bearer T']... [opts]
//   node client.mjs --everything [opts]                  # server-everything over stdio, direct
//   node client.mjs --http http://127.0.0.1:PORT/mcp [--header ...] [opts]  # Streamable HTTP
//   node client.mjs --sse http://127.0.0.1:PORT/mcp [--header ...] [opts]   # 2024-11-05 HTTP+SSE
//   node client.mjs [opts] --stdio CMD [ARGS...]        # any stdio server, direct (must be last)
// opts: --script FILE (default: stdin)  --timeout SECONDS (default 60)  --wire (add raw frames)
//
// The step script is the format shared with tests/e2e/clients/direct.py and mcp1_client.py
// (tests/e2e/README.md). Legacy era only (TS SDK 1.x: initialize handshake, up to 2025-11-25).
// Sampling, elicitation and roots are answered deterministically, exactly like
// tests/e2e/clients/answers.py. Output on stdout:
//   {"server": {protocolVersion, serverInfo, capabilities, instructions?},
//    "results": [{op, id?, result | error}], "requests": [{method, params, response}],
//    "notifications": [{method, params}], "transport": "websocket"|"stdio"|"http"|"sse",
//    "close"?: {code, reason}, "wire"?: [{dir: "send"|"recv", message}], "error"?: {...}}
// or {"error": {code, message, data}} when connecting fails. Exit 1 iff a top-level "error".
//
// WebSocket: the SDK's WebSocketClientTransport (subprotocol "mcp") uses the global WebSocket.
// Node 20 has none, so we install the `ws` package's class. Browser-style WebSocket cannot send
// headers, and the transport's constructor takes only a URL, so --header is implemented by a `ws`
// subclass that adds the headers to the upgrade request; the SDK transport itself is unchanged.
// The subclass also records the close code/reason, which the transport does not expose.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { WebSocketClientTransport } from "@modelcontextprotocol/sdk/client/websocket.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  McpError,
  ResultSchema,
} from "@modelcontextprotocol/sdk/types.js";
import WS from "ws";

const HERE = dirname(fileURLToPath(import.meta.url));
export const EVERYTHING = join(HERE, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

// ---- deterministic answers (mirror of tests/e2e/clients/answers.py) -----------------------------

const DEFAULT_MODEL = "e2e-deterministic";
const DEFAULT_ROOTS = [{ uri: "file:///workspace/e2e", name: "e2e" }];

function textOf(content) {
  if (Array.isArray(content)) return content.map(textOf).join(" ");
  if (content && typeof content === "object" && content.type === "text") return String(content.text ?? "");
  return "";
}

export function lastUserText(params) {
  const messages = params.messages ?? [];
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === "user") return textOf(messages[i].content);
  }
  return "";
}

export function samplingReply(params, answers = {}) {
  const cfg = answers.sampling ?? {};
  const text = cfg.text ?? `deterministic reply to: ${lastUserText(params)}`;
  return {
    role: "assistant",
    content: { type: "text", text },
    model: cfg.model ?? DEFAULT_MODEL,
    stopReason: "endTurn",
  };
}

function valueFor(name, schema) {
  if ("default" in schema) return schema.default;
  if (schema.enum?.length) return schema.enum[0];
  if (schema.oneOf?.length) return schema.oneOf[0].const;
  const kind = schema.type;
  if (kind === "boolean") return true;
  if (kind === "number" || kind === "integer") return schema.minimum ?? 1;
  if (kind === "array") return [schema.items ? valueFor(name, schema.items) : "e2e"];
  const fmt = schema.format;
  if (fmt === "email" || name.toLowerCase().includes("email")) return "e2e.user@example.com";
  if (fmt === "uri") return "https://example.com/e2e";
  if (fmt === "date") return "2026-01-01";
  if (fmt === "date-time") return "2026-01-01T00:00:00Z";
  return "e2e";
}

export function elicitationReply(params, answers = {}) {
  const cfg = answers.elicitation ?? {};
  const action = cfg.action ?? "accept";
  if (action !== "accept") return { action };
  if (params.mode === "url") return { action: "accept" };
  const props = params.requestedSchema?.properties ?? {};
  const content = {};
  for (const [name, prop] of Object.entries(props)) content[name] = valueFor(name, prop ?? {});
  Object.assign(content, cfg.content ?? {});
  return { action: "accept", content };
}

export function rootsReply(answers = {}) {
  return { roots: [...(answers.roots ?? DEFAULT_ROOTS)] };
}

// ---- transports ----------------------------------------------------------------------------------

/** A `ws` WebSocket that adds upgrade headers and records how the connection closed. */
function websocketClass(headers, close) {
  return class HeaderWebSocket extends WS {
    constructor(url, protocols) {
      super(url, protocols, { headers });
      this.on("close", (code, reason) => {
        close.code = code;
        close.reason = reason.toString();
      });
    }
  };
}

/** Transparent wrapper that records every JSON-RPC message both ways (for --wire and the version). */
class TapTransport {
  constructor(inner, tap) {
    this.inner = inner;
    this.tap = tap;
    inner.onmessage = (message, extra) => {
      tap("recv", message);
      this.onmessage?.(message, extra);
    };
    inner.onclose = () => this.onclose?.();
    inner.onerror = (error) => this.onerror?.(error);
  }
  get sessionId() {
    return this.inner.sessionId;
  }
  setProtocolVersion(version) {
    this.inner.setProtocolVersion?.(version);
  }
  start() {
    return this.inner.start();
  }
  close() {
    return this.inner.close();
  }
  send(message, options) {
    this.tap("send", message);
    return this.inner.send(message, options);
  }
}

// ---- running a script ----------------------------------------------------------------------------

function errorJson(err) {
  if (err instanceof McpError) {
    const prefix = `MCP error ${err.code}: `;
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { code: err.code, message, data: err.data ?? null };
  }
  const data = { exception: err?.name ?? typeof err };
  const status = /Unexpected server response: (\d+)/.exec(String(err?.message ?? ""));
  if (status) data.status = Number(status[1]);
  return { code: null, message: String(err?.message ?? err), data };
}

const clean = (value) => JSON.parse(JSON.stringify(value ?? null));

async function runStep(client, step, state) {
  const entry = { op: step.op };
  if ("id" in step) entry.id = step.id;
  try {
    entry.result = clean(await dispatch(client, step, state));
  } catch (err) {
    entry.error = errorJson(err);
  }
  return entry;
}

async function dispatch(client, step, state) {
  const timeout = (step.timeout ?? state.timeout) * 1000;
  const options = { timeout };
  switch (step.op) {
    case "list_tools":
      return client.listTools();
    case "list_resources":
      return client.listResources();
    case "list_resource_templates":
      return client.listResourceTemplates();
    case "list_prompts":
      return client.listPrompts();
    case "call_tool": {
      // onprogress makes the SDK send a progressToken; the notifications themselves are recorded
      // off the wire by the tap (the SDK drops one that races the final response).
      if (step.progress) options.onprogress = () => {};
      const params = { name: step.name, arguments: step.arguments ?? {} };
      if (step.meta) params._meta = step.meta;
      return client.callTool(params, undefined, options);
    }
    case "read_resource":
      return client.readResource({ uri: step.uri }, options);
    case "get_prompt":
      return client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, options);
    case "ping":
      return client.ping(options);
    case "set_logging_level":
      return client.setLoggingLevel(step.level, options);
    case "subscribe_resource":
      return client.subscribeResource({ uri: step.uri }, options);
    case "unsubscribe_resource":
      return client.unsubscribeResource({ uri: step.uri }, options);
    case "complete":
      return client.complete({ ref: step.ref, argument: step.argument }, options);
    case "request": // node only: any method, result passed through unvalidated
      return client.request({ method: step.method, params: step.params ?? {} }, ResultSchema.passthrough(), options);
    case "notify": // node only: send any client notification
      await client.notification({ method: step.method, params: step.params ?? {} });
      return {};
    case "sleep":
      await new Promise((resolve) => setTimeout(resolve, (step.seconds ?? 0.1) * 1000));
      return {};
    default:
      throw new Error(`unknown op: ${JSON.stringify(step.op)}`);
  }
}

/**
 * Connect with `makeTransport()` and run `script`; resolves to the output document (never throws).
 * @param {{kind: string, make: () => any}} target
 */
export async function runScript(target, script, { timeout = 60, wire = false, close = {} } = {}) {
  const spec = Array.isArray(script) ? { steps: script } : script;
  const answers = spec.answers ?? {};
  const state = { timeout, requests: [], notifications: [] };
  const frames = [];
  let protocolVersion = null;
  const tap = (dir, message) => {
    if (wire) frames.push({ dir, message: clean(message) });
    if (dir === "recv" && message.method && message.id === undefined) {
      const entry = { method: message.method };
      if (message.params !== undefined) entry.params = clean(message.params);
      state.notifications.push(entry); // every server notification, in arrival order
    }
    if (dir === "recv" && message.result?.protocolVersion && message.result?.serverInfo) {
      protocolVersion = message.result.protocolVersion;
    }
  };

  const client = new Client(
    { name: "guard-e2e-ts1", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const params = clean(request.params);
    const response = samplingReply(params, answers);
    state.requests.push({ method: "sampling/createMessage", params, response });
    return response;
  });
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    const params = clean(request.params);
    const response = elicitationReply(params, answers);
    state.requests.push({ method: "elicitation/create", params, response });
    return response;
  });
  client.setRequestHandler(ListRootsRequestSchema, async (request) => {
    const response = rootsReply(answers);
    state.requests.push({ method: "roots/list", params: clean(request.params ?? {}), response });
    return response;
  });
  client.fallbackNotificationHandler = async () => {}; // recorded by the tap instead

  const out = {};
  const finish = () => {
    Object.assign(out, { requests: state.requests, notifications: state.notifications, transport: target.kind });
    if (close.code !== undefined) out.close = close;
    if (wire) out.wire = frames;
    return out;
  };
  let connected = false;
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout}s`)), timeout * 1000);
  });
  try {
    await Promise.race([
      (async () => {
        await client.connect(new TapTransport(target.make(), tap), { timeout: timeout * 1000 });
        connected = true;
        out.server = clean({
          protocolVersion,
          serverInfo: client.getServerVersion(),
          capabilities: client.getServerCapabilities(),
          ...(client.getInstructions() !== undefined ? { instructions: client.getInstructions() } : {}),
        });
        out.results = [];
        for (const step of spec.steps ?? []) out.results.push(await runStep(client, step, state));
      })(),
      deadline,
    ]);
  } catch (err) {
    const error = errorJson(err);
    if (close.code !== undefined) Object.assign(error.data ?? (error.data = {}), { close_code: close.code, close_reason: close.reason });
    if (!connected) {
      await client.close().catch(() => {});
      clearTimeout(timer);
      return { error };
    }
    out.error = error;
  }
  clearTimeout(timer);
  await client.close().catch(() => {});
  return finish();
}

// ---- CLI -----------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { headers: {}, timeout: 60, wire: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--ws") opts.ws = next();
    else if (arg === "--http") opts.http = next();
    else if (arg === "--sse") opts.sse = next();
    else if (arg === "--everything") opts.everything = true;
    else if (arg === "--stdio") {
      opts.stdio = argv.slice(i + 1);
      break;
    } else if (arg === "--header") {
      const text = next();
      const at = text.indexOf(":");
      if (at <= 0) throw new Error(`header must look like 'Name: value', got ${JSON.stringify(text)}`);
      opts.headers[text.slice(0, at).trim()] = text.slice(at + 1).trim();
    } else if (arg === "--script") opts.script = next();
    else if (arg === "--timeout") opts.timeout = Number(next());
    else if (arg === "--wire") opts.wire = true;
    else throw new Error(`unknown argument ${JSON.stringify(arg)}`);
  }
  if ([opts.ws, opts.http, opts.sse, opts.everything, opts.stdio].filter(Boolean).length !== 1) {
    throw new Error("give exactly one of --ws URL, --http URL, --sse URL, --everything, --stdio CMD [ARGS...]");
  }
  if (opts.stdio && opts.stdio.length === 0) throw new Error("--stdio needs a command");
  return opts;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`client.mjs: ${err.message}\n`);
    return 2;
  }
  const script = JSON.parse(opts.script ? readFileSync(opts.script, "utf8") : readFileSync(0, "utf8"));
  const close = {};
  let target;
  if (opts.ws) {
    globalThis.WebSocket = websocketClass(opts.headers, close);
    target = { kind: "websocket", make: () => new WebSocketClientTransport(new URL(opts.ws)) };
  } else if (opts.http) {
    target = {
      kind: "http",
      make: () => new StreamableHTTPClientTransport(new URL(opts.http), { requestInit: { headers: opts.headers } }),
    };
  } else if (opts.sse) {
    target = {
      kind: "sse",
      make: () =>
        new SSEClientTransport(new URL(opts.sse), {
          requestInit: { headers: opts.headers },
          eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...opts.headers } }) },
        }),
    };
  } else {
    const [command, ...args] = opts.everything ? [process.execPath, EVERYTHING, "stdio"] : opts.stdio;
    target = {
      kind: "stdio",
      make: () => new StdioClientTransport({ command, args, env: { ...getDefaultEnvironment() }, stderr: "inherit" }),
    };
  }
  const out = await runScript(target, script, { timeout: opts.timeout, wire: opts.wire, close });
  process.stdout.write(JSON.stringify(sortKeys(out), null, 2) + "\n");
  return "error" in out ? 1 : 0;
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`client.mjs: ${err?.stack ?? err}\n`);
      process.exit(2);
    },
  );
}
