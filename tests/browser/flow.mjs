// The API access tokens page, end to end, in a real headless Chromium: the
// real latchkey binary on a temporary database, driven like a person would,
// once on a desktop and once on a phone viewport. Every screen is
// screenshotted and audited with axe-core; any console error fails the run.
//
// Run with `cargo xtask test` (or `node tests/browser/flow.mjs` after
// `cargo build -p latchkey` and `npm ci` in this folder). Needs Debian's
// chromium (/usr/bin/chromium, or CHROMIUM=path). Screenshots go to
// target/browser/.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
let AXE;
try {
  AXE = require.resolve("axe-core");
} catch {
  console.error("axe-core is missing: run `npm ci` in tests/browser (package-lock.json pins it)");
  process.exit(1);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.LATCHKEY_BIN || join(root, "target/debug/latchkey");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = join(root, "target/browser");
mkdirSync(shots, { recursive: true });
const SERVER_KEY = "YnJvd3Nlci10ZXN0LW9ubHktc2VydmVyLWtleSEhISE=";

function startServer(dir) {
  return new Promise((resolvePromise, reject) => {
    const database = `sqlite://${join(dir, "latchkey.db")}`;
    const child = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--database", database, "--usage-flush-ms", "100"], {
      env: { ...process.env, LATCHKEY_SECRET_KEY: SERVER_KEY, RUST_LOG: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = [];
    let url = null;
    const timer = setTimeout(() => reject(new Error("the server did not start")), 60_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line);
      const match = line.match(/^latchkey listening on (.*)$/);
      if (match) url = match[1];
      // The page's address is printed on its own line, after the pinned one.
      const page = line.match(/^latchkey: manage API access tokens in a browser at (http:\/\/\S+\/)$/);
      if (url && page) {
        clearTimeout(timer);
        assert.equal(page[1], `${url}/`, "the startup message names the page");
        const key = lines.find((l) => l.startsWith("latchkey_uk_"));
        resolvePromise({ child, url, key, database });
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code})`)));
  });
}

function createUser(server, name, org, admin = false) {
  const args = ["users", "create", name, "--org", org, "--database", server.database, ...(admin ? ["--admin"] : [])];
  return execFileSync(binary, args, { env: { ...process.env, LATCHKEY_SECRET_KEY: SERVER_KEY } }).toString().trim();
}

async function api(server, method, path, body, key = server.key) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
}

async function authorize(server, request) {
  const response = await fetch(`${server.url}/v3/authorize`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  return response.json();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const LAUNCH = {
  executablePath: browserPath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

const VIEWPORTS = {
  desktop: { viewport: { width: 1280, height: 860 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
};

function watchErrors(page) {
  const errors = [];
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  // Expected refusals (a wrong key, a validation error, the offline test)
  // show up as failed loads; anything else logged as an error is a defect.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) errors.push(message.text());
  });
  return errors;
}

async function flow(browser, label) {
  const step = (name) => console.log(`· [${label}] ${name}`);
  const phone = label === "phone";
  const dir = mkdtempSync(join(tmpdir(), "latchkey-browser-"));
  const server = await startServer(dir);
  const context = await browser.newContext({ ...VIEWPORTS[label], bypassCSP: true, colorScheme: "light" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
  const page = await context.newPage();
  const errors = watchErrors(page);
  const audited = [];
  const filterBar = page.locator("#filters");

  // A screenshot of the screen as it is, and an axe-core audit of it.
  async function screen(name, { full = true } = {}) {
    await page.waitForTimeout(50);
    await page.screenshot({ path: join(shots, `${label}-${name}.png`), fullPage: full });
    if (!(await page.evaluate(() => Boolean(window.axe)))) await page.addScriptTag({ path: AXE });
    const result = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 4).join(", ")}`);
    });
    assert.deepEqual(result, [], `axe finds no violation on ${label}-${name}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling on ${label}-${name} (${overflow} px too wide)`);
    audited.push(name);
  }
  // Focus moves after the view's data arrives: wait for it a little, then
  // say where it is.
  async function expectFocus(id, why) {
    await page.waitForFunction((want) => document.activeElement && document.activeElement.id === want, id, { timeout: 5000 }).catch(() => {});
    assert.equal(await active(), id, why);
  }
  const active = () => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.className));
  const inViewport = (locator) =>
    locator.evaluate((node) => {
      const r = node.getBoundingClientRect();
      return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
    });

  try {
    const ana = createUser(server, "ana", "default");
    const solo = createUser(server, "solo", "empty");
    const anaToken = await api(server, "POST", "/v3/tokens", { name: "ana's map", allowed_apis: ["lds"], grants: [] }, ana);
    assert.equal(anaToken.status, 201);

    step("the favicon is served");
    const icon = await fetch(`${server.url}/favicon.ico`);
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get("content-type"), "image/svg+xml");

    step("a wrong key keeps what was typed; the right one signs in");
    await page.goto(server.url);
    await page.getByLabel("Your user key").waitFor();
    await screen("sign-in");
    await page.getByLabel("Your user key").fill("latchkey_uk_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("That key was not accepted").waitFor();
    assert.equal(await page.getByLabel("Your user key").inputValue(), "latchkey_uk_wrong", "the field keeps the key");
    await expectFocus("user-key", "focus returns to the key");
    await screen("sign-in-error");
    await page.getByLabel("Your user key").fill(server.key);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create your first token" }).waitFor();
    await expectFocus("list-title", "focus moves to the page's heading");
    assert.match(await page.locator("#who").innerText(), /Signed in with key latchkey_uk_.{3}…\s*org admin/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("latchkey.userKey")), server.key);
    assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
    assert.ok(!page.url().includes(server.key), "the key is never in the URL");
    await screen("empty");

    step("the wizard: the Imports rule as you click");
    await page.getByRole("button", { name: "Create your first token" }).click();
    await page.getByRole("heading", { name: "Create token" }).waitFor();
    await expectFocus("form-title", "focus moves to the wizard's heading");
    await page.getByLabel("Name (optional)").fill("Browser token");
    const maps = page.getByRole("checkbox", { name: "Maps API" });
    const sql = page.getByRole("checkbox", { name: "SQL API" });
    const imports = page.getByRole("checkbox", { name: "Imports API" });
    await maps.check();
    await imports.check();
    assert.equal(await maps.isChecked(), false, "choosing Imports clears Maps");
    assert.equal(await maps.isDisabled(), true, "and disables it");
    await page.getByText("cannot be combined with other APIs").waitFor();
    await imports.uncheck();
    await maps.check();
    await sql.check();

    step("a 'table' the server would read as a query is questioned before saving (pinned)");
    const first = page.locator(".grant").nth(0);
    await first.getByLabel("Connection").selectOption("carto_dw");
    assert.equal(await first.getByRole("radio", { name: "Table or tileset" }).isChecked(), true);
    await first.getByLabel("Fully qualified name").fill("a.b.c.d.e");
    await page.getByRole("button", { name: "Create token" }).click();
    const question = first.locator(".grant-question");
    await question.waitFor();
    assert.match(await question.innerText(), /has 5 dotted parts; a table or tileset name has 1 to 4, so latchkey would save it as an SQL query/);
    assert.equal(await first.getByLabel("Fully qualified name").getAttribute("aria-invalid"), "true");
    await expectFocus("grant-1-line", "focus moves to the questioned source");
    assert.equal((await api(server, "GET", "/v3/tokens")).body.data.length, 0, "nothing was saved");
    assert.ok(await inViewport(page.locator("#form-message")), "the summary is next to the button");
    await screen("wizard-question");
    step("the question goes as the field is fixed");
    await first.getByLabel("Fully qualified name").fill("my-project.dataset.cities");
    assert.equal(await question.isVisible(), false, "a corrected field loses its question");
    assert.equal(await page.locator("#form-message").innerText(), "", "and the summary goes with it");
    assert.equal(await first.getByLabel("Fully qualified name").getAttribute("aria-invalid"), null);

    await page.getByRole("button", { name: "+ Add a grant" }).click();
    const second = page.locator(".grant").nth(1);
    await second.getByRole("radio", { name: "SQL query" }).check();
    await second.getByRole("textbox", { name: "Query text" }).fill("SELECT * FROM `my-project.dataset.cities` WHERE id = @id");
    await page.getByRole("button", { name: "+ Add a grant" }).click();
    const third = page.locator(".grant").nth(2);
    await third.getByLabel("Fully qualified name").fill("a.b.c.d.e");
    await page.getByRole("button", { name: "+ Add a grant" }).click();
    const fourth = page.locator(".grant").nth(3);
    await fourth.getByRole("radio", { name: "All sources" }).check();
    await fourth.getByText("including tables created later").waitFor();
    await fourth.getByRole("button", { name: "Remove grant 4" }).click();
    assert.equal(await page.locator(".grant").count(), 3);
    await page.getByLabel(/^Allowed websites/).fill("https://app.example.com/app");
    await page.getByText("Careful with paths").waitFor();
    await page.getByLabel(/^Allowed IP addresses/).fill("203.0.113.0/24");
    assert.equal(await page.getByLabel("Expiration").inputValue(), "30", "30 days by default");
    await page.getByRole("button", { name: "Create token" }).click();
    await third.locator(".grant-question").waitFor();
    await screen("wizard");
    step("the user answers: save it as a query");
    await third.getByRole("button", { name: "Save it as an SQL query" }).click();
    assert.equal(await third.getByRole("radio", { name: "SQL query" }).isChecked(), true);
    assert.equal(await third.getByRole("textbox", { name: "Query text" }).inputValue(), "a.b.c.d.e");
    await page.getByRole("button", { name: "Create token" }).click();

    step("the server's warnings are shown after saving (pinned)");
    await page.locator("#detail-notice").getByText("Token created").waitFor();
    assert.match(await page.locator("#detail-notice").innerText(), /2 warnings/);
    await expectFocus("detail-notice", "focus moves to what happened");
    const warnings = page.locator("#warnings-list li");
    assert.deepEqual(await warnings.evaluateAll((items) => items.map((i) => i.dataset.code)), ["query_not_parsed", "referer_has_path"]);
    assert.match(await warnings.nth(0).innerText(), /Grant 3 \(a\.b\.c\.d\.e\): the carto_dw SQL parser could not read this query/);
    const id = decodeURIComponent(page.url().split("#/token/")[1]);
    const stored = (await api(server, "GET", `/v3/tokens/${id}`)).body;
    assert.deepEqual(stored.grants.map((g) => g.source), ["my-project.dataset.cities", "SELECT * FROM `my-project.dataset.cities` WHERE id = @id", "a.b.c.d.e"]);
    assert.deepEqual(stored.allowed_ips, ["203.0.113.0/24"]);
    assert.ok(stored.expiration_date, "an expiration was set");
    const grantKinds = await page.locator("#detail-grants tr td:nth-child(2)").allInnerTexts();
    assert.deepEqual(grantKinds, ["Table or tileset", "SQL query", "SQL query"], "the detail says what the server stored");
    await page.locator("#history-list li").first().getByText("Created").waitFor();
    await screen("detail-created");

    step("Copy says Copied on the button");
    await page.getByRole("button", { name: "Copy", exact: true }).click();
    await page.locator("#detail-copy").getByText("Copied").waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(copied, /^latchkey_tk_[A-Za-z0-9]{38}$/);
    assert.equal(copied, stored.token);

    step("the request tester is a dry run");
    await page.getByRole("button", { name: "Test a request with Browser token" }).click();
    const tester = page.locator("#tester-dialog");
    assert.equal(await tester.getByLabel("Source", { exact: true }).inputValue(), "my-project.dataset.cities");
    assert.equal(await tester.getByLabel("Client IP (optional)").inputValue(), "203.0.113.0");
    await tester.getByLabel("Referer (optional)").fill("https://app.example.com/app/page");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("Allowed: a data API would serve this request.").waitFor();
    await screen("tester", { full: false });
    await tester.getByLabel("Source", { exact: true }).fill("my-project.dataset.salaries");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("No grant of the token covers this source for this API.").waitFor();
    await tester.getByLabel("Source", { exact: true }).fill("my-project.dataset.cities");
    await tester.getByLabel("Client IP (optional)").fill("198.51.100.7");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("(ip_not_allowed)").waitFor();
    await tester.getByRole("button", { name: "Close" }).click();
    await expectFocus("detail-test", "focus returns to the button that opened the tester");
    await sleep(400);
    assert.equal((await api(server, "GET", `/v3/tokens/${id}`)).body.last_used_at, null, "tests do not count as uses");

    step("the token in the table, with its warnings and badges");
    await page.getByRole("link", { name: "← All tokens" }).click();
    const row = page.locator("#token-rows tr", { hasText: "Browser token" });
    await row.waitFor();
    const rowText = await row.innerText();
    assert.match(rowText, /2 warnings/);
    assert.match(rowText, /Active/);
    assert.match(rowText, /Never used/);
    assert.match(rowText, /expires in 30 days/);
    assert.match(rowText, new RegExp(`${id} · latchkey_tk_`), "the id and a masked prefix");
    assert.ok(!rowText.includes(copied), "never the whole value");
    await row.getByRole("button", { name: "Copy the value of Browser token" }).click();
    await row.getByText("Copied").waitFor();
    await screen("list-one");

    step("edit: an error next to its field, cleared as it is fixed");
    await row.getByRole("link", { name: "Browser token" }).click();
    await page.getByRole("button", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit “Browser token”" }).waitFor();
    assert.equal(await page.getByLabel("Expiration").isDisabled(), true, "the expiration is fixed");
    assert.equal(await page.locator(".grant").nth(2).getByRole("radio", { name: "SQL query" }).isChecked(), true, "the grant keeps its kind");
    const referers = page.getByLabel(/^Allowed websites/);
    await referers.fill("https://app.example.com/\nftp://files.example.com");
    await page.getByRole("button", { name: "Save changes" }).click();
    const referersError = page.locator("#referers-error");
    await referersError.getByText("only the http and https schemes are allowed").waitFor();
    assert.equal(await referers.getAttribute("aria-invalid"), "true");
    await expectFocus("token-referers", "focus moves to the field to fix");
    assert.equal(await page.locator("#form-message").innerText(), "One field needs your attention; it is marked above.");
    await screen("validation-error");
    await referers.fill("https://app.example.com/\nhttps://admin.example.com/");
    assert.equal(await referersError.innerText(), "", "the stale error goes as the field is fixed");
    assert.equal(await referers.getAttribute("aria-invalid"), null);
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator("#detail-notice").getByText("Changes saved").waitFor();
    await expectFocus("detail-notice");
    await page.locator("#warnings-list li", { hasText: "query" }).waitFor();
    assert.equal(await page.locator("#warnings-list li").count(), 1, "the path warning went with the path");

    step("a conflict is explained next to the button");
    await page.getByRole("button", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit “Browser token”" }).waitFor();
    assert.equal((await api(server, "PATCH", `/v3/tokens/${id}`, { name: "Browser token (renamed)" })).status, 200);
    await page.getByLabel("Name (optional)").fill("Browser token 2");
    await page.getByRole("button", { name: "Save changes" }).click();
    const message = page.locator("#form-message");
    await message.getByText("Someone changed this token since you opened it").waitFor();
    assert.ok(await inViewport(message), "the conflict shows where the user looks");
    await expectFocus("form-message");
    await screen("conflict", { full: false });
    await message.getByRole("button", { name: "Reload the token" }).click();
    await page.getByRole("heading", { name: "Edit “Browser token (renamed)”" }).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("heading", { name: "Browser token (renamed)", level: 1, exact: true }).waitFor();
    await expectFocus("detail-title", "Cancel goes back with focus on the heading");

    step("roll with a grace period");
    await page.getByRole("button", { name: "Roll value…" }).click();
    const rollDialog = page.locator("#roll-dialog");
    await rollDialog.getByRole("radio", { name: "For 1 hour" }).check();
    await screen("roll-dialog", { full: false });
    await rollDialog.getByRole("button", { name: "Roll value" }).click();
    await page.locator("#detail-notice").getByText("The previous value keeps working until").waitFor();
    await page.locator("#detail-badges").getByText("Grace period").waitFor();
    const rolled = (await api(server, "GET", `/v3/tokens/${id}`)).body;
    assert.notEqual(rolled.token, copied, "a new value");
    assert.ok(rolled.previous_value_expires_at, "the previous value has an end");
    const old = await authorize(server, { token: copied, api: "maps", connection_name: "carto_dw", source_type: "table",
      source: "my-project.dataset.cities", referer: "https://app.example.com/", client_ip: "203.0.113.9", dry_run: true });
    assert.deepEqual(old, { allowed: true, reason: null }, "the old value works during the grace period");
    await page.locator("#history-list li", { hasText: "Value rolled" }).waitFor();
    await page.locator("#history-list li", { hasText: "Changed" }).first().waitFor();
    await screen("detail-rolled");

    step("statuses, search, filters and sorting");
    const soon = new Date(Date.now() + 2 * 24 * 3600e3).toISOString();
    const brief = new Date(Date.now() + 2500).toISOString();
    assert.equal((await api(server, "POST", "/v3/tokens", { name: "expiring lds", allowed_apis: ["lds"], grants: [], expiration_date: soon })).status, 201);
    assert.equal((await api(server, "POST", "/v3/tokens", { name: "short-lived lds", allowed_apis: ["lds"], grants: [], expiration_date: brief })).status, 201);
    await sleep(3000);
    await page.getByRole("link", { name: "← All tokens" }).click();
    await page.locator("#token-rows tr", { hasText: "short-lived lds" }).waitFor();
    const names = () => page.locator("#token-rows .token-link").allInnerTexts();
    await filterBar.getByLabel("Status").selectOption("expired");
    assert.deepEqual(await names(), ["short-lived lds"]);
    assert.match(await page.locator("#token-rows tr").first().innerText(), /Expired/);
    await filterBar.getByLabel("Status").selectOption("expiring");
    assert.deepEqual(await names(), ["expiring lds"]);
    await filterBar.getByLabel("Status").selectOption("grace");
    assert.deepEqual(await names(), ["Browser token (renamed)"]);
    await filterBar.getByLabel("Status").selectOption("warnings");
    assert.deepEqual(await names(), ["Browser token (renamed)"]);
    await filterBar.getByLabel("Status").selectOption("");
    await filterBar.getByLabel("API", { exact: true }).selectOption("sql");
    assert.deepEqual(await names(), ["Browser token (renamed)"]);
    await filterBar.getByLabel("API", { exact: true }).selectOption("");
    await filterBar.getByLabel("Connection").selectOption("carto_dw");
    assert.deepEqual(await names(), ["Browser token (renamed)"]);
    await filterBar.getByLabel("Connection").selectOption("");
    await filterBar.getByLabel("Search").fill("LDS");
    assert.deepEqual(await names(), ["short-lived lds", "expiring lds"], "newest first");
    assert.match(await page.locator("#list-summary").innerText(), /2 of 3 loaded tokens match/);
    if (phone) {
      await filterBar.getByLabel("Sort").selectOption("name:asc");
    } else {
      await page.getByRole("button", { name: "Name", exact: true }).click();
      assert.equal(await page.locator('th[data-sort="name"]').getAttribute("aria-sort"), "ascending");
    }
    assert.deepEqual(await names(), ["expiring lds", "short-lived lds"], "sorted by name");
    await screen("list-filtered");
    await filterBar.getByLabel("Search").fill("no such token");
    await page.getByText("No loaded token matches these filters.").waitFor();
    await page.getByRole("button", { name: "Clear filters" }).click();
    await expectFocus("filter-text");
    assert.equal((await names()).length, 3);
    await screen("list");

    step("the organization: policy, every token, revoke");
    await page.getByRole("link", { name: "Organization" }).click();
    await page.getByRole("heading", { name: "Organization", level: 1 }).waitFor();
    await expectFocus("org-title");
    const anaRow = page.locator("#org-rows tr", { hasText: "ana's map" });
    await anaRow.waitFor();
    assert.match(await anaRow.innerText(), /ana/);
    assert.match(await page.locator("#who").innerText(), /Signed in as admin\s*org admin/, "the admin's name, learnt from the org list");
    await page.getByLabel(/^Longest lifetime/).fill("30");
    await page.getByRole("button", { name: "Save policy" }).click();
    await page.locator("#policy-message").getByText("Policy saved.").waitFor();
    assert.equal((await api(server, "GET", "/v3/org/policy")).body.max_lifetime_days, 30);
    await page.getByLabel("Owner").fill("ana");
    await page.waitForFunction(() => document.querySelectorAll("#org-rows tr").length === 1 && document.querySelector("#org-summary").textContent.includes("owned by ana"));
    await screen("org");
    await anaRow.getByRole("button", { name: "Revoke ana's map of ana" }).click();
    await screen("revoke-dialog", { full: false });
    await page.locator("#confirm-dialog").getByRole("button", { name: "Revoke token" }).click();
    await page.getByText("Token “ana's map” of ana revoked.").waitFor();
    assert.equal(await anaRow.count(), 0);
    assert.equal((await api(server, "GET", "/v3/tokens", null, ana)).body.data.length, 0, "ana's token is gone");
    await page.getByLabel("Owner").fill("");

    step("the policy in the wizard: a max lifetime preselects and bounds the expiration");
    await page.getByRole("link", { name: "My tokens" }).click();
    await page.getByRole("button", { name: "Create token" }).click();
    await page.getByRole("heading", { name: "Create token" }).waitFor();
    await page.locator("#policy-note").getByText("Tokens live at most 30 days.").waitFor();
    const expiry = page.getByLabel("Expiration");
    assert.equal(await expiry.inputValue(), "30");
    assert.equal(await expiry.locator('option[value="never"]').isDisabled(), true, "Never is not allowed");
    assert.equal(await expiry.locator('option[value="90"]').isDisabled(), true, "nor more than 30 days");
    await page.getByRole("checkbox", { name: "LDS API" }).check();
    await page.locator(".grant").nth(0).getByRole("button", { name: "Remove grant 1" }).click();
    await expiry.selectOption("custom");
    const later = new Date(Date.now() + 60 * 24 * 3600e3);
    const pad = (n) => String(n).padStart(2, "0");
    await page.getByLabel("Expires at (your time zone)").fill(
      `${later.getFullYear()}-${pad(later.getMonth() + 1)}-${pad(later.getDate())}T${pad(later.getHours())}:${pad(later.getMinutes())}`);
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator("#expiration-error").getByText("Your organization allows at most 30 days.").waitFor();
    await screen("wizard-policy");
    await expiry.selectOption("30");
    assert.equal(await page.locator("#expiration-error").innerText(), "", "the error goes when the choice changes");
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("heading", { name: "API access tokens" }).waitFor();
    await expectFocus("list-title");
    await api(server, "PUT", "/v3/org/policy", { max_lifetime_days: null, require_referers: false, allowed_apis: null });

    step("delete, with a confirmation that says what happens");
    await page.locator("#token-rows").getByRole("link", { name: "Browser token (renamed)" }).click();
    await page.getByRole("button", { name: "Delete…" }).click();
    const confirm = page.locator("#confirm-dialog");
    assert.match(await confirm.innerText(), /stops working at once/);
    assert.match(await confirm.innerText(), /cannot be recovered/);
    await screen("delete-dialog", { full: false });
    await confirm.getByRole("button", { name: "Delete token" }).click();
    await page.getByText("Token “Browser token (renamed)” deleted.").waitFor();
    await expectFocus("list-title", "focus lands on the list, not on <body>");
    const deleted = await authorize(server, { token: rolled.token, api: "maps", connection_name: "carto_dw", source_type: "table",
      source: "my-project.dataset.cities", referer: "https://app.example.com/", client_ip: "203.0.113.9" });
    assert.deepEqual(deleted, { allowed: false, reason: "token_unknown" });

    step("a name that is taken, shown next to the name");
    await api(server, "POST", "/v3/tokens", { name: "taken", allowed_apis: ["lds"], grants: [] });
    await page.getByRole("button", { name: "Create token" }).click();
    await page.getByLabel("Name (optional)").fill("taken");
    await page.getByRole("checkbox", { name: "LDS API" }).check();
    await page.locator(".grant").nth(0).getByRole("button", { name: "Remove grant 1" }).click();
    await expectFocus("add-grant", "removing the last grant moves focus to Add");
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator("#token-name-error").getByText("already have a token with this name").waitFor();
    await expectFocus("token-name");
    await page.getByRole("button", { name: "Cancel" }).click();

    step("paging through the API's cursor");
    for (let i = 0; i < 54; i += 1) {
      const { status } = await api(server, "POST", "/v3/tokens", { name: `bulk ${i}`, allowed_apis: ["lds"], grants: [] });
      assert.equal(status, 201);
    }
    await page.reload();
    await page.locator("#token-rows tr").nth(49).waitFor();
    assert.equal(await page.locator("#token-rows tr").count(), 50);
    await page.getByRole("button", { name: "Load 50 more" }).click();
    await page.locator("#token-rows tr").nth(56).waitFor();
    assert.equal(await page.locator("#token-rows tr").count(), 57, "57 tokens: 50, then 7");
    assert.equal(await page.getByRole("button", { name: "Load 50 more" }).isVisible(), false);

    step("keyboard only: search, reach a token, open it");
    await filterBar.getByLabel("Search").focus();
    await page.keyboard.type("bulk 53");
    let reached = false;
    for (let i = 0; i < 12 && !reached; i += 1) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => document.activeElement.classList.contains("token-link"));
    }
    assert.ok(reached, "Tab reaches the first token");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "bulk 53", level: 1 }).waitFor();
    await expectFocus("detail-title");
    await page.goBack();
    await page.getByRole("heading", { name: "API access tokens" }).waitFor();
    await page.locator("#create-button").focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create token" }).waitFor();
    await expectFocus("form-title", "focus moves into the wizard");
    await page.keyboard.press("Tab");
    await expectFocus("token-name", "the first field is next");
    const focusStyle = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.equal(focusStyle, "solid", "focus is visible");

    step("offline: a clear message, no uncaught error");
    await context.setOffline(true);
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator("#toasts").getByText("latchkey cannot be reached").waitFor();
    await page.locator("#offline").waitFor();
    assert.match(await page.locator("#list-summary").innerText(), /1 of 57 loaded tokens match/, "what was loaded stays on screen");
    await screen("offline", { full: false });
    await context.setOffline(false);
    await page.getByRole("button", { name: "Create token" }).click();
    await page.getByRole("heading", { name: "Create token" }).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator("#offline").waitFor({ state: "hidden" });

    step("dark mode");
    await page.emulateMedia({ colorScheme: "dark" });
    await filterBar.getByLabel("Search").fill("bulk 1");
    await screen("dark-list", { full: false });
    await page.locator("#token-rows .token-link").first().click();
    await page.locator("#detail-title").waitFor();
    await screen("dark-detail");
    await page.getByRole("button", { name: "Edit" }).click();
    await page.getByRole("heading", { name: /^Edit/ }).waitFor();
    await screen("dark-wizard");
    await page.emulateMedia({ colorScheme: "light" });

    step("a member of an org without connections");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Your user key").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("latchkey.userKey")), null);
    await page.getByLabel("Your user key").fill(solo);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create your first token" }).waitFor();
    assert.match(await page.locator("#who").innerText(), /member/);
    assert.equal(await page.getByRole("link", { name: "Organization" }).isVisible(), false, "members see no org view");
    await page.getByRole("button", { name: "Create your first token" }).click();
    await page.getByText("Your organization has no connections yet").waitFor();
    assert.equal(await page.locator(".grant").count(), 0, "no grant without a connection to put it on");
    assert.equal(await page.getByRole("button", { name: "+ Add a grant" }).isVisible(), false);
    await screen("wizard-no-connections");
    await page.getByRole("checkbox", { name: "LDS API" }).check();
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator("#detail-notice").getByText("Token created").waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();

    step("a member sees the revocation in nothing but its absence");
    await page.getByLabel("Your user key").fill(ana);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create your first token" }).waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();

    assert.deepEqual(errors, [], "no script error in the page");
    console.log(`  ${label}: audited ${audited.length} screens with axe-core: ${audited.join(", ")}`);
  } finally {
    await context.close();
    server.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

// The page as browsers really run it: with its Content-Security-Policy in
// force (the audited contexts bypass it to inject axe-core), so that a
// script or style the policy blocks is a console error here.
async function strictPolicy(browser) {
  console.log("· [strict CSP] the page under its own policy");
  const dir = mkdtempSync(join(tmpdir(), "latchkey-browser-"));
  const server = await startServer(dir);
  const context = await browser.newContext(VIEWPORTS.desktop);
  const page = await context.newPage();
  const errors = watchErrors(page);
  const violations = [];
  await page.exposeFunction("reportViolation", (v) => violations.push(v));
  await page.addInitScript(() => document.addEventListener("securitypolicyviolation", (e) => window.reportViolation(`${e.violatedDirective} ${e.blockedURI}`)));
  try {
    const response = await page.goto(server.url);
    assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
    await page.getByLabel("Your user key").fill(server.key);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create your first token" }).waitFor();
    await page.getByRole("button", { name: "Create your first token" }).click();
    await page.getByRole("checkbox", { name: "Maps API" }).check();
    await page.locator(".grant").nth(0).getByLabel("Fully qualified name").fill("p.d.t");
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator("#detail-notice").getByText("Token created").waitFor();
    await page.getByRole("link", { name: "Organization" }).click();
    await page.locator("#org-rows tr", { hasText: "tk_" }).waitFor();
    assert.deepEqual(violations, [], "nothing the policy blocks");
    assert.deepEqual(errors, [], "no script error in the page");
  } finally {
    await context.close();
    server.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run() {
  const browser = await chromium.launch(LAUNCH);
  try {
    const only = process.argv[2];
    await strictPolicy(browser);
    for (const label of only ? [only] : ["desktop", "phone"]) await flow(browser, label);
    console.log(`browser flow passed; screenshots in ${shots}`);
  } finally {
    await browser.close();
  }
}

run().catch((error) => {
  console.error(error);
  process.exit(1);
});
