// The client lifecycle through a client generated from latchkey's OpenAPI
// document: openapi-typescript's types, openapi-fetch's calls. `tsc` checks
// this file against the generated types first, so a document that
// generates wrong types fails here before anything runs.
import assert from "node:assert/strict";
import createClient from "openapi-fetch";
import type { paths } from "./generated/schema.js";

const baseUrl = process.env.LATCHKEY_URL;
const key = process.env.LATCHKEY_KEY;
assert.ok(baseUrl && key, "LATCHKEY_URL and LATCHKEY_KEY");
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });
const source = "my-project.dataset.roads";

const created = await client.POST("/v3/tokens", {
  body: { name: "typescript client", allowed_apis: ["maps"], grants: [{ connection_name: "carto_dw", source }] },
});
assert.equal(created.response.status, 201, JSON.stringify(created.error));
const token = created.data!;
assert.ok(token.token?.startsWith("latchkey_tk_"));
const etag = created.response.headers.get("ETag")!;

const listed = await client.GET("/v3/tokens", { params: { query: { limit: 10 } } });
assert.ok(listed.data!.data.some((t) => t.id === token.id), "the new token is listed");

const updated = await client.PATCH("/v3/tokens/{token}", {
  params: { path: { token: token.id }, header: { "If-Match": etag } },
  body: { referers: ["https://app.example.com/"] },
});
assert.equal(updated.response.status, 200, JSON.stringify(updated.error));
assert.deepEqual(updated.data!.referers, ["https://app.example.com/"]);
assert.notEqual(updated.response.headers.get("ETag"), etag);

const stale = await client.PATCH("/v3/tokens/{token}", {
  params: { path: { token: token.id }, header: { "If-Match": etag } },
  body: { name: "too late" },
});
assert.equal(stale.response.status, 412);
assert.equal(stale.error!.code, "precondition_failed");

const ask = (referer: string) =>
  client.POST("/v3/authorize", {
    body: { token: token.token!, api: "maps", connection_name: "carto_dw", source_type: "table", source, referer },
  });
assert.deepEqual((await ask("https://app.example.com/map")).data, { allowed: true, reason: null });
assert.deepEqual((await ask("https://evil.example.net/")).data, { allowed: false, reason: "referer_not_allowed" });

const rolled = await client.POST("/v3/tokens/{token}/roll", {
  params: { path: { token: token.id } },
  body: { grace_seconds: 600 },
});
assert.equal(rolled.response.status, 200, JSON.stringify(rolled.error));
assert.notEqual(rolled.data!.token, token.token);
assert.equal(typeof rolled.data!.previous_value_expires_at, "string");
assert.deepEqual((await ask("https://app.example.com/map")).data, { allowed: true, reason: null }, "previous value");

const log = await client.GET("/v3/audit", { params: { query: { token: token.id } } });
assert.deepEqual(
  log.data!.data.map((event) => event.action),
  ["token.rolled", "token.updated", "token.created"],
);
const orgTokens = await client.GET("/v3/org/tokens", {});
const mine = orgTokens.data!.data.filter((t) => t.id === token.id);
assert.equal(mine.length, 1);
assert.equal(mine[0]!.owner, "admin");
assert.equal(mine[0]!.token, null, "admins never see values");

const deleted = await client.DELETE("/v3/tokens/{token}", { params: { path: { token: token.id } } });
assert.equal(deleted.response.status, 204);
assert.equal((await ask("https://app.example.com/map")).data!.reason, "token_unknown");
console.log("typescript client: create, list, update with If-Match, authorize, roll, audit, org tokens, delete: ok");
