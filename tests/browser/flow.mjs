// The Credentials page, end to end, in a real headless Chromium: the real
// latchkey binary on a temporary database, driven like a person would.
//
// Run with `cargo xtask test` (or `node tests/browser/flow.mjs` after
// building the binary). Needs Debian's chromium (/usr/bin/chromium, or
// CHROMIUM=path) and `npm ci` in this folder. Screenshots go to
// target/browser/.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.LATCHKEY_BIN || join(root, "target/debug/latchkey");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = join(root, "target/browser");
mkdirSync(shots, { recursive: true });

function startServer(dir) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      binary,
      ["serve", "--listen", "127.0.0.1:0", "--database", `sqlite://${join(dir, "latchkey.db")}`, "--usage-flush-ms", "100"],
      {
        env: { ...process.env, LATCHKEY_SECRET_KEY: "YnJvd3Nlci10ZXN0LW9ubHktc2VydmVyLWtleSEhISE=", RUST_LOG: "warn" },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const lines = [];
    const timer = setTimeout(() => reject(new Error("the server did not start")), 60_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line);
      const match = line.match(/^latchkey listening on (.*)$/);
      if (match) {
        clearTimeout(timer);
        const key = lines.find((l) => l.startsWith("latchkey_uk_"));
        resolvePromise({ child, url: match[1], key });
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code})`)));
  });
}

async function api(server, method, path, body, key = server.key) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

const step = (name) => console.log(`· ${name}`);

async function run() {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-browser-"));
  const server = await startServer(dir);
  const browser = await chromium.launch({
    executablePath: browserPath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    // Expected refusals (a wrong key, a validation error) show up as failed
    // loads in the console; anything else logged as an error is a defect.
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) errors.push(message.text());
    });

    step("sign in with the admin key");
    await page.goto(server.url);
    await page.getByLabel("Your user key").fill("latchkey_uk_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("That key was not accepted").waitFor();
    await page.getByLabel("Your user key").fill(server.key);
    await page.keyboard.press("Enter");
    await page.getByText("You have no API access tokens yet.").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("latchkey.userKey")), server.key);
    assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
    assert.ok(!page.url().includes(server.key), "the key is never in the URL");

    step("the create wizard, and the Imports rule as you click");
    await page.locator("#empty-state").getByRole("button", { name: "Create new" }).click();
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
    assert.equal(await maps.isDisabled(), false);
    await maps.check();
    await sql.check();

    const first = page.locator(".grant").nth(0);
    await first.getByLabel("Connection").selectOption("carto_dw");
    await first.getByLabel("Fully qualified name").fill("my-project.dataset.cities");
    assert.equal(await first.getByRole("textbox", { name: "Query text" }).isVisible(), false, "one source editor at a time");
    await first.getByText("Read as a table or tileset").waitFor();
    assert.match(await first.locator(".grant-feedback").innerText(), /Of the APIs you chose: Maps API/);
    await page.getByRole("button", { name: "+ Add a grant" }).click();
    const second = page.locator(".grant").nth(1);
    await second.getByRole("radio", { name: "SQL query" }).check();
    await second.getByRole("textbox", { name: "Query text" }).fill("SELECT * FROM `my-project.dataset.cities` WHERE id = @id");
    await second.getByText("Read as an SQL query").waitFor();
    await page.getByRole("button", { name: "+ Add a grant" }).click();
    const third = page.locator(".grant").nth(2);
    await third.getByRole("radio", { name: "All sources" }).check();
    await third.getByText("every table of this connection").waitFor();
    await third.getByRole("button", { name: "Remove this grant" }).click();
    await page.getByLabel("Allowed referers (optional)").fill("https://app.example.com/");
    await page.screenshot({ path: join(shots, "wizard.png"), fullPage: true });
    await page.getByRole("button", { name: "Create token" }).click();

    step("the token in the list");
    const card = page.locator(".token", { hasText: "Browser token" });
    await card.waitFor();
    assert.match(await card.innerText(), /Maps API/);
    assert.match(await card.innerText(), /my-project\.dataset\.cities/);
    assert.match(await card.innerText(), /https:\/\/app\.example\.com\//);
    await page.screenshot({ path: join(shots, "list.png"), fullPage: true });

    step("copy the token");
    await card.getByRole("button", { name: "Copy token Browser token" }).click();
    await page.getByText("copied to the clipboard").waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(copied, /^latchkey_tk_[A-Za-z0-9]{38}$/);

    step("authorize with the copied value through the tester");
    await card.getByRole("button", { name: "Test a request with Browser token" }).click();
    const tester = page.locator("#tester-dialog");
    await tester.getByLabel("Token value").fill(copied);
    await tester.getByLabel("API").selectOption("maps");
    await tester.getByLabel("Connection").selectOption("carto_dw");
    await tester.getByLabel("Source kind").selectOption("table");
    await tester.getByLabel("Source", { exact: true }).fill("my-project.dataset.cities");
    await tester.getByLabel("Referer (optional)").fill("https://app.example.com/dashboard");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("Allowed: a data API would serve this request.").waitFor();
    await page.screenshot({ path: join(shots, "tester.png") });
    await tester.getByLabel("Source", { exact: true }).fill("my-project.dataset.salaries");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("No grant of the token covers this source for this API.").waitFor();
    await tester.getByLabel("Referer (optional)").fill("https://evil.example.net/");
    await tester.getByRole("button", { name: "Test request" }).click();
    await tester.getByText("comes from a website the token does not allow").waitFor();
    await tester.getByRole("button", { name: "Close" }).click();

    step("edit the referers; a validation error next to its field");
    await card.getByRole("button", { name: "Edit Browser token" }).click();
    await page.getByRole("heading", { name: "Edit “Browser token”" }).waitFor();
    assert.equal(await page.getByLabel(/^Expiration/).isDisabled(), true, "the expiration is read-only");
    const referers = page.getByLabel("Allowed referers (optional)");
    await referers.fill("https://app.example.com/\nftp://files.example.com");
    await page.getByRole("button", { name: "Save changes" }).click();
    const referersError = page.locator("#referers-error");
    await referersError.getByText("only the http and https schemes are allowed").waitFor();
    assert.equal(await referers.getAttribute("aria-invalid"), "true");
    assert.equal(await page.locator("#form-error").innerText(), "Please correct the fields marked below.");
    await page.screenshot({ path: join(shots, "validation-error.png"), fullPage: true });
    await referers.fill("https://app.example.com/\nhttps://admin.example.com/");
    await page.getByRole("button", { name: "Save changes" }).click();
    await card.getByText("https://app.example.com/, https://admin.example.com/").waitFor();

    step("delete, with a confirmation that says what happens");
    await card.getByRole("button", { name: "Delete Browser token" }).click();
    const confirm = page.locator("#delete-dialog");
    assert.match(await confirm.innerText(), /stops working at once/);
    assert.match(await confirm.innerText(), /cannot be recovered/);
    await confirm.getByRole("button", { name: "Delete token" }).click();
    await page.getByText("You have no API access tokens yet.").waitFor();

    step("the deleted token is refused");
    const response = await fetch(`${server.url}/v3/authorize`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: copied, api: "maps", connection_name: "carto_dw", source_type: "table",
        source: "my-project.dataset.cities", referer: "https://app.example.com/" }),
    });
    assert.deepEqual(await response.json(), { allowed: false, reason: "token_unknown" });

    step("a name that is taken, shown next to the name");
    await api(server, "POST", "/v3/tokens", { name: "taken", allowed_apis: ["lds"], grants: [] });
    await page.reload();
    await page.locator("#create-button").click();
    await page.getByLabel("Name (optional)").fill("taken");
    await page.getByRole("checkbox", { name: "LDS API" }).check();
    await page.locator(".grant").nth(0).getByRole("button", { name: "Remove this grant" }).click();
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator("#token-name-error").getByText("already have a token with this name").waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();

    step("pages past 50 tokens");
    for (let i = 0; i < 54; i += 1) {
      const { status } = await api(server, "POST", "/v3/tokens", { name: `bulk ${i}`, allowed_apis: ["lds"], grants: [] });
      assert.equal(status, 201);
    }
    await page.reload();
    await page.locator(".token").first().waitFor();
    assert.equal(await page.locator(".token").count(), 50);
    await page.getByRole("button", { name: "Older tokens →" }).click();
    await page.getByText("← Newer tokens").waitFor();
    assert.equal(await page.locator(".token").count(), 5, "55 tokens: 50, then 5");
    await page.getByRole("button", { name: "← Newer tokens" }).click();
    await page.getByRole("button", { name: "Older tokens →" }).waitFor();

    step("readable at 375 px wide");
    await page.setViewportSize({ width: 375, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling at 375 px (${overflow} px too wide)`);
    await page.screenshot({ path: join(shots, "list-375.png") });

    step("keyboard only: tab to Create new and open the wizard");
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.locator("#create-button").focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Create new API access token" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), "token-name", "focus moves into the form");
    await page.keyboard.press("Escape");
    await page.getByRole("button", { name: "Cancel" }).click();

    step("sign out");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Your user key").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("latchkey.userKey")), null);

    assert.deepEqual(errors, [], "no script errors in the page");
    console.log(`browser flow passed; screenshots in ${shots}`);
  } finally {
    await browser.close();
    server.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

run().catch((error) => {
  console.error(error);
  process.exit(1);
});
