// One row of the interop matrix (tests/interop.rs): drive ringgate with the real TypeScript MCP SDK.
//
//   node tests/peers/interop_ts.cjs --sdk v1|v2 --modules DIR --url URL [--transport http|sse]
//        [--mode legacy|auto] SPEC
//
// --sdk v1 is @modelcontextprotocol/sdk 1.x, v2 is @modelcontextprotocol/client 2.x; DIR is the
// node_modules that holds it (the script lives outside it, so it resolves the SDK from there).
// --mode is v2's versionNegotiation mode. SPEC and the printed JSON are those of interop_py.py:
// SPEC = {"TARGET": {"call": [TOOL, ARGS], "prompt": [NAME, ARGS], "read": URI,
// "progress": [TOOL, ARGS], "sample": [TOOL, ARGS], "log": [TOOL, ARGS, UNDO_TOOL, TEXT],
// "subscribe": [URI, TOOL, ARGS, UNDO_TOOL], "crash": [CRASH_TOOL, PID_TOOL, TOOL, ARGS, TEXT],
// "renew": [FORGET_TOOL, TOOL, ARGS], "resume": [TOOL, ARGS]}}
// (in 2026-07-28, `log` puts the level in the call's _meta and `subscribe` opens a
// subscriptions/listen stream; `crash` and `renew` run after the target's other operations;
// `resume`, over Streamable HTTP, has the transport's fetch break off the call's SSE answer right
// after its first progress notification, and the SDK resumes it with `Last-Event-ID`);
// output {"sdk", "protocol", "tools", "prompts", "resources", "pages" (the list requests sent
// per kind), "setLevel", "session", "cells"}. Exit 0 when that was printed, 3 when connecting failed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');
const { parseArgs } = require('node:util');

const { values: opts, positionals } = parseArgs({
  options: {
    sdk: { type: 'string' },
    modules: { type: 'string' },
    url: { type: 'string' },
    transport: { type: 'string', default: 'http' },
    mode: { type: 'string', default: 'legacy' },
  },
  allowPositionals: true,
});
const spec = JSON.parse(positionals[0]);
const load = createRequire(path.join(path.resolve(opts.modules), 'noop.js'));
// (read from disk: the v2 packages do not export their package.json)
const version = (pkg) => JSON.parse(fs.readFileSync(path.join(opts.modules, pkg, 'package.json'), 'utf8')).version;

function sdk() {
  if (opts.sdk === 'v1') {
    return {
      name: `typescript sdk ${version('@modelcontextprotocol/sdk')}`,
      Client: load('@modelcontextprotocol/sdk/client/index.js').Client,
      Http: load('@modelcontextprotocol/sdk/client/streamableHttp.js').StreamableHTTPClientTransport,
      Sse: load('@modelcontextprotocol/sdk/client/sse.js').SSEClientTransport,
      samplingKey: load('@modelcontextprotocol/sdk/types.js').CreateMessageRequestSchema,
      logKey: load('@modelcontextprotocol/sdk/types.js').LoggingMessageNotificationSchema,
      updatedKey: load('@modelcontextprotocol/sdk/types.js').ResourceUpdatedNotificationSchema,
      clientOptions: {},
      call: (c, params, options) => c.callTool(params, undefined, options),
    };
  }
  const m = load('@modelcontextprotocol/client');
  return {
    name: `typescript client ${version('@modelcontextprotocol/client')} (${opts.mode})`,
    Client: m.Client,
    Http: m.StreamableHTTPClientTransport,
    Sse: m.SSEClientTransport,
    samplingKey: 'sampling/createMessage',
    logKey: 'notifications/message',
    updatedKey: 'notifications/resources/updated',
    clientOptions: { versionNegotiation: { mode: opts.mode } },
    call: (c, params, options) => c.callTool(params, options),
  };
}

// the tool whose next call's SSE answer `dropping` breaks off, how many it broke off, and the
// Last-Event-IDs of the GETs that resumed
const drop = { tool: null, cut: 0, resumed: [] };

// fetch, but the SSE answer to the next tools/call of drop.tool errors (as a dropped connection
// would) right after its first whole progress notification event
async function dropping(input, init) {
  const method = (init && init.method) || 'GET';
  const headers = new Headers(init && init.headers);
  if (method === 'GET' && headers.get('last-event-id')) drop.resumed.push(headers.get('last-event-id'));
  const response = await fetch(input, init);
  let body = null;
  try {
    body = method === 'POST' && typeof init.body === 'string' ? JSON.parse(init.body) : null;
  } catch {
    body = null;
  }
  const sse = (response.headers.get('content-type') || '').startsWith('text/event-stream');
  if (!drop.tool || !sse || !body || body.method !== 'tools/call' || (body.params || {}).name !== drop.tool) {
    return response;
  }
  drop.tool = null;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let text = '';
  let sent = 0;
  let broken = false;
  const cut = new ReadableStream({
    async pull(controller) {
      if (broken) {
        // (after the last event was read: an error discards what is still queued)
        await reader.cancel().catch(() => {});
        controller.error(new TypeError('the test dropped the stream'));
        return;
      }
      const { value, done } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      text += decoder.decode(value, { stream: true });
      const at = text.indexOf('notifications/progress');
      const end = at >= 0 ? text.indexOf('\n\n', at) : -1;
      if (end >= 0) {
        controller.enqueue(encoder.encode(text.slice(sent, end + 2)));
        drop.cut++;
        broken = true;
        return;
      }
      controller.enqueue(encoder.encode(text.slice(sent)));
      sent = text.length;
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Response(cut, { status: response.status, statusText: response.statusText, headers: response.headers });
}

function firstText(items) {
  for (const item of items || []) {
    const inner = item && item.content && !Array.isArray(item.content) ? item.content : item;
    for (const key of ['text', 'blob']) {
      if (inner && typeof inner[key] === 'string') return inner[key].slice(0, 200);
    }
  }
  return null;
}

// every page's names, and how many list requests went out (v2's listTools() without a cursor
// walks the pages itself and answers them all at once)
async function listAll(fetch, field, nameOf, sent) {
  const names = [];
  const before = sent();
  let cursor;
  for (let page = 1; page <= 100; page++) {
    const r = await fetch(cursor ? { cursor } : undefined);
    names.push(...r[field].map(nameOf));
    cursor = r.nextCursor;
    if (!cursor) return [names, sent() - before];
  }
  throw new Error('more than 100 pages');
}

async function main() {
  const s = sdk();
  const samples = [];
  const client = new s.Client({ name: 'ringgate-interop', version: '1.0.0' }, { capabilities: { sampling: {} }, ...s.clientOptions });
  client.setRequestHandler(s.samplingKey, async (req) => {
    const texts = req.params.messages.map((m) => m.content && m.content.text).filter(Boolean);
    samples.push(texts);
    return { role: 'assistant', content: { type: 'text', text: `sampled: ${texts[texts.length - 1] || ''}` }, model: 'fake' };
  });
  // notifications/message data and notifications/resources/updated URIs, in arrival order
  const logs = [];
  const updated = [];
  client.setNotificationHandler(s.logKey, (n) => {
    logs.push(typeof n.params.data === 'string' ? n.params.data : JSON.stringify(n.params.data));
  });
  client.setNotificationHandler(s.updatedKey, (n) => {
    updated.push(n.params.uri);
  });
  // the events after `before` once one satisfies `want`, waiting at most `limitMs`
  const seen = async (events, before, want, limitMs) => {
    const deadline = Date.now() + limitMs;
    while (!events.slice(before).some(want) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return events.slice(before);
  };
  const url = new URL(opts.url);
  const transport = opts.transport === 'sse' ? new s.Sse(url) : new s.Http(url, { fetch: dropping });
  // requests sent, by method
  const sent = {};
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    if (message && message.method && message.id !== undefined) sent[message.method] = (sent[message.method] || 0) + 1;
    return send(message, options);
  };
  try {
    await client.connect(transport);
  } catch (e) {
    console.log(JSON.stringify({ sdk: s.name, error: `connect: ${e && e.stack ? e.stack : e}` }));
    return 3;
  }
  const protocol =
    (client.getNegotiatedProtocolVersion && client.getNegotiatedProtocolVersion()) ||
    transport.protocolVersion ||
    transport._protocolVersion ||
    null;
  const out = { sdk: s.name, protocol, pages: {} };
  for (const [kind, fetch, field, nameOf] of [
    ['tools', (p) => client.listTools(p), 'tools', (t) => t.name],
    ['prompts', (p) => client.listPrompts(p), 'prompts', (p) => p.name],
    ['resources', (p) => client.listResources(p), 'resources', (r) => r.uri],
  ]) {
    try {
      [out[kind], out.pages[kind]] = await listAll(fetch, field, nameOf, () => sent[`${kind}/list`] || 0);
    } catch (e) {
      out[kind] = { error: String(e) };
    }
  }
  const ops = {
    call: async ([name, args]) => {
      const r = await s.call(client, { name, arguments: args });
      return { text: firstText(r.content), isError: Boolean(r.isError) };
    },
    prompt: async ([name, args]) => ({ text: firstText((await client.getPrompt({ name, arguments: args })).messages) }),
    read: async (uri) => {
      const r = await client.readResource({ uri });
      return { text: firstText(r.contents), uri: r.contents.length ? r.contents[0].uri : null };
    },
    progress: async ([name, args]) => {
      let events = 0;
      const r = await s.call(client, { name, arguments: args }, { onprogress: () => events++ });
      return { text: firstText(r.content), events };
    },
    log: async ([name, args, undo, expect]) => {
      const before = logs.length;
      const _meta = modern ? { 'io.modelcontextprotocol/logLevel': 'debug' } : undefined;
      await s.call(client, { name, arguments: args, _meta });
      const got = await seen(logs, before, (m) => m.includes(expect), 10000);
      if (undo) await s.call(client, { name: undo, arguments: {} });
      const text = got.find((m) => m.includes(expect));
      return { logs: got.length, text: text ? text.slice(0, 200) : null };
    },
    subscribe: async ([uri, name, args, undo]) => {
      const before = updated.length;
      if (modern) {
        // no resources/subscribe in this era: a subscriptions/listen stream for the URI
        const sub = await client.listen({ resourceSubscriptions: [uri] });
        await s.call(client, { name, arguments: args });
        const got = await seen(updated, before, (u) => u === uri, 10000);
        if (undo) await s.call(client, { name: undo, arguments: {} });
        await sub.close();
        return { updates: got.filter((u) => u === uri).length, uri };
      }
      await client.subscribeResource({ uri });
      await s.call(client, { name, arguments: args });
      const got = await seen(updated, before, (u) => u === uri, 10000);
      if (undo) await s.call(client, { name: undo, arguments: {} });
      await client.unsubscribeResource({ uri });
      return { updates: got.filter((u) => u === uri).length, uri };
    },
    crash: async ([crashTool, pidTool, name, args, expect]) => {
      const pid = async () => firstText((await s.call(client, { name: pidTool, arguments: {} })).content);
      const before = await pid();
      let crashed;
      try {
        // a JSON-RPC error, not a hang (the SDK's timeout would be an error of its own)
        const r = await s.call(client, { name: crashTool, arguments: {} }, { timeout: 15000 });
        return { error: `${crashTool} answered: ${firstText(r.content)}` };
      } catch (e) {
        crashed = String(e);
      }
      // the gateway restarts the server (after a backoff): retried until answered, within 10 s
      const deadline = Date.now() + 10000;
      let tries = 0;
      let last = null;
      while (Date.now() < deadline) {
        tries++;
        try {
          const r = await s.call(client, { name, arguments: args });
          last = firstText(r.content);
          if (last === expect && !r.isError) break;
        } catch (e) {
          last = String(e);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return { crashError: crashed, text: last, tries, pids: [before, await pid()] };
    },
    resume: async ([name, args]) => {
      const events = [];
      Object.assign(drop, { tool: name, cut: 0, resumed: [] });
      try {
        const r = await s.call(client, { name, arguments: args }, { onprogress: (p) => events.push(p.progress) });
        return { text: firstText(r.content), isError: Boolean(r.isError), events, cut: drop.cut, resumed: drop.resumed.length };
      } finally {
        drop.tool = null;
      }
    },
    renew: async ([forgetTool, name, args]) => {
      const forgot = firstText((await s.call(client, { name: forgetTool, arguments: {} })).content);
      if (forgot !== 'forgotten') return { error: `${forgetTool} answered ${forgot}` };
      // once, no retry: the gateway renews the forgotten upstream session on the way
      const r = await s.call(client, { name, arguments: args });
      return { text: firstText(r.content), isError: Boolean(r.isError) };
    },
    sample: async ([name, args]) => {
      const before = samples.length;
      const r = await s.call(client, { name, arguments: args });
      return { text: firstText(r.content), samples: samples.length - before };
    },
  };
  // 2026-07-28 has no logging/setLevel: the log tool's call carries the level in its _meta
  const modern = protocol === '2026-07-28';
  if (modern) {
    out.setLevel = 'debug';
  } else if (Object.values(spec).some((ops) => 'log' in ops)) {
    try {
      await client.setLoggingLevel('debug');
      out.setLevel = 'debug';
    } catch (e) {
      out.setLevel = { error: String(e) };
    }
  }
  out.cells = {};
  for (const [target, wanted] of Object.entries(spec)) {
    out.cells[target] = {};
    // what breaks the target's state (a crash) comes last
    const last = ['crash', 'renew'];
    const ordered = Object.entries(wanted).sort(([a], [b]) => last.includes(a) - last.includes(b));
    for (const [op, arg] of ordered) {
      try {
        out.cells[target][op] = await ops[op](arg);
      } catch (e) {
        out.cells[target][op] = { error: String(e) };
      }
    }
  }
  // terminate the session (DELETE); a raw POST with its old id must find it gone
  const sessionId = transport.sessionId;
  if (transport.terminateSession && sessionId) {
    try {
      await transport.terminateSession();
      const r = await fetch(url, {
        method: 'POST',
        headers: {
          'Mcp-Session-Id': sessionId,
          'MCP-Protocol-Version': protocol,
          Accept: 'application/json, text/event-stream',
          'Content-Type': 'application/json',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      await r.text();
      out.session = { status: r.status };
    } catch (e) {
      out.session = { error: String(e) };
    }
  }
  console.log(JSON.stringify(out));
  await client.close().catch(() => {});
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }));
    process.exit(3);
  },
);
