// CARTO's own JavaScript client (@carto/api-client, from npm) running SQL
// and Maps requests against `latchkey gateway`, which protects a stub data
// API that answers canned JSON. Requests are allowed and refused as the
// token's grants say; refused ones never reach the stub.
//
// Run with `cargo xtask test` (or `node tests/carto-client/gateway.mjs`
// after building the binary and `npm ci` in this folder).

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { query, vectorTableSource, vectorQuerySource } from "@carto/api-client";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.LATCHKEY_BIN || join(root, "target/debug/latchkey");
const secretKey = "Y2FydG8tY2xpZW50LXRlc3Qtb25seS1rZXktMzJieXQ=";

function start(args, { wantKey }) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, args, {
      env: { ...process.env, LATCHKEY_SECRET_KEY: secretKey, RUST_LOG: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let key;
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start`)), 60_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith("latchkey_uk_")) key = line;
      const match = line.match(/^latchkey listening on (.*)$/);
      if (match) {
        clearTimeout(timer);
        if (wantKey && !key) reject(new Error("no admin key"));
        resolvePromise({ child, url: match[1], key });
      }
    });
    child.on("exit", (code) => reject(new Error(`${args[0]} exited (${code})`)));
  });
}

// The stub data API: canned answers in the shapes the client expects.
const seen = [];
let gatewayUrl = "";
const stub = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => (body += chunk));
  request.on("end", () => {
    const url = new URL(request.url, "http://stub");
    seen.push(`${request.method} ${url.pathname}`);
    const json = (value) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(value));
    };
    const maps = url.pathname.match(/^\/v3\/maps\/([^/]+)\/(table|query)$/);
    if (/^\/v3\/sql\/[^/]+\/query$/.test(url.pathname)) {
      return json({ rows: [{ n: 1 }], schema: [{ name: "n", type: "number" }], meta: {} });
    }
    if (maps && url.searchParams.get("format") === "tilejson") {
      return json({ tilejson: "3.0.0", tiles: [`${gatewayUrl}${url.pathname}/{z}/{x}/{y}`], schema: [], name: "stub" });
    }
    if (maps) {
      // Map instantiation: point the client at the data, through the gateway.
      const parameters = new URLSearchParams(url.search);
      if (request.method === "POST" && body) {
        for (const [k, v] of Object.entries(JSON.parse(body))) parameters.set(k, String(v));
      }
      parameters.set("format", "tilejson");
      return json({ tilejson: { url: [`${gatewayUrl}${url.pathname}?${parameters}`] }, schema: [] });
    }
    response.writeHead(404, { "content-type": "application/json" });
    response.end('{"error":"no such stub route"}');
  });
});

const step = (name) => console.log(`· ${name}`);

async function api(server, method, path, body) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${server.key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function refused(promise, status, code) {
  try {
    await promise;
  } catch (error) {
    assert.equal(error.response?.status, status, `${error}`);
    assert.equal(error.responseJson?.code, code);
    return;
  }
  assert.fail(`expected a ${status} ${code}`);
}

async function run() {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-carto-"));
  const database = `sqlite://${join(dir, "latchkey.db")}`;
  await new Promise((ok) => stub.listen(0, "127.0.0.1", ok));
  const stubUrl = `http://127.0.0.1:${stub.address().port}`;
  const serve = await start(["serve", "--listen", "127.0.0.1:0", "--database", database], { wantKey: true });
  const gateway = await start(["gateway", "--org", "default", "--listen", "127.0.0.1:0", "--database", database, "--upstream", stubUrl], {
    wantKey: false,
  });
  gatewayUrl = gateway.url;
  const fresh = { localCache: { cacheControl: ["no-cache", "no-store"] } };
  try {
    const sql = "SELECT n FROM `my-project.dataset.cities` WHERE population > @min";
    const token = await api(serve, "POST", "/v3/tokens", {
      name: "carto client",
      allowed_apis: ["sql", "maps"],
      grants: [
        { connection_name: "carto_dw", source: sql },
        { connection_name: "carto_dw", source: "my-project.dataset.cities" },
      ],
    });
    const base = { accessToken: token.token, connectionName: "carto_dw", apiBaseUrl: gateway.url, ...fresh };

    step("SQL API: the granted query, by GET and, for a long URL, by POST");
    const rows = await query({ ...base, sqlQuery: sql, queryParameters: { min: 1000 } });
    assert.deepEqual(rows.rows, [{ n: 1 }]);
    const posted = await query({ ...base, sqlQuery: sql, queryParameters: { min: 5 }, maxLengthURL: 10 });
    assert.deepEqual(posted.rows, [{ n: 1 }]);
    assert.ok(seen.includes("POST /v3/sql/carto_dw/query"), "the client posted its query");

    step("SQL API: the same query reformatted is the same grant");
    await query({ ...base, sqlQuery: "select n\n  from `my-project.dataset.cities`\n where population > @min" });

    step("SQL API: another query is refused");
    const before = seen.length;
    await refused(query({ ...base, sqlQuery: "SELECT * FROM `my-project.dataset.salaries`" }), 403, "source_not_granted");
    await refused(query({ ...base, sqlQuery: "DROP TABLE t", maxLengthURL: 10 }), 403, "source_not_granted");
    assert.equal(seen.length, before, "refused requests never reach the data API");

    step("Maps API: the granted table, and not another");
    const source = await vectorTableSource({ ...base, tableName: "my-project.dataset.cities" });
    assert.equal(source.name, "stub");
    await refused(vectorTableSource({ ...base, tableName: "my-project.dataset.salaries" }), 403, "source_not_granted");
    step("Maps API: a query grant serves Maps query sources");
    const mapQuery = await vectorQuerySource({ ...base, sqlQuery: sql, queryParameters: { min: 1 } });
    assert.equal(mapQuery.name, "stub");

    step("tokens that do not work");
    await refused(query({ ...base, accessToken: "not-a-token", sqlQuery: sql }), 401, "token_malformed");
    await api(serve, "DELETE", `/v3/tokens/${token.id}`);
    // The gateway is another process on the SQLite file: it caches, and
    // hears the delete through the file's change log within its bound
    // (docs/scale-out.md), not in the same instant.
    const deadline = Date.now() + 2000;
    for (;;) {
      try {
        await query({ ...base, sqlQuery: sql, queryParameters: { min: 2 } });
      } catch (error) {
        assert.equal(error.response?.status, 401, `${error}`);
        assert.equal(error.responseJson?.code, "token_unknown");
        break;
      }
      assert.ok(Date.now() < deadline, "the gateway still allowed a deleted token after 2 s");
      await new Promise((ok) => setTimeout(ok, 5));
    }

    console.log("CARTO client test passed");
  } finally {
    gateway.child.kill("SIGTERM");
    serve.child.kill("SIGTERM");
    stub.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

run().catch((error) => {
  console.error(error);
  process.exit(1);
});
