// latchkey's Credentials page. A client of the public Tokens API and
// nothing else: a token made here is exactly a token made with curl.
//
// The user key lives in sessionStorage only (this tab, until sign-out or
// the tab closes): never in localStorage, a cookie or a URL.

const KEY_STORAGE = "latchkey.userKey";
const PAGE_SIZE = 50;
const QUERY_PREVIEW = 90;

const API_NAMES = { sql: "SQL API", maps: "Maps API", imports: "Imports API", lds: "LDS API" };

// SPEC §3: which kind of grant serves which API.
const SERVES = {
  all: ["sql", "maps", "imports"],
  table: ["maps", "imports"],
  pattern: ["maps", "imports"],
  query: ["sql", "maps"],
};

const REASONS = {
  token_malformed: "This is not a latchkey token value; check for a copy-and-paste mistake.",
  token_unknown: "There is no such token: it was deleted, or never existed.",
  token_expired: "The token has expired.",
  api_not_allowed: "The token does not allow this API.",
  referer_missing: "The token only works from certain websites, and the request names none (no Referer or Origin header).",
  referer_not_allowed: "The request comes from a website the token does not allow.",
  connection_not_granted: "The token has no grant on this connection.",
  source_not_granted: "No grant of the token covers this source for this API.",
};

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const state = {
  connections: [],
  cursors: [null], // the cursor of each page seen; the last is the current page
  nextCursor: null,
  tokens: new Map(),
  editing: null, // { id, etag } while editing
  tested: null,
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function userKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function api(method, path, { body, headers = {}, auth = true } = {}) {
  const init = { method, headers: { ...headers } };
  if (auth) init.headers.Authorization = `Bearer ${userKey()}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.status === 401 && auth) {
    signOut("Your key was not accepted. Sign in again.");
    throw new ApiError(401, parsed);
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return { body: parsed, etag: response.headers.get("ETag") };
}

// ---------------------------------------------------------------- views

function show(view) {
  for (const id of ["sign-in-view", "list-view", "form-view"]) $(`#${id}`).hidden = id !== view;
  $("#sign-out").hidden = view === "sign-in-view";
}

function say(message) {
  $("#status").textContent = message;
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  state.tokens.clear();
  $("#token-list").replaceChildren();
  show("sign-in-view");
  say(message);
  $("#user-key").value = "";
  $("#user-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("#user-key").value.trim();
  const error = $("#user-key-error");
  error.textContent = "";
  if (!key) {
    error.textContent = "Enter your user key.";
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  try {
    await loadConnections();
    say("");
    await showList();
  } catch (e) {
    if (e.status === 401) {
      error.textContent = "That key was not accepted. Check it and try again.";
      show("sign-in-view");
    } else {
      error.textContent = `Could not sign in: ${e.message}`;
    }
  }
}

async function loadConnections() {
  const { body } = await api("GET", "/v3/connections");
  state.connections = body.data;
}

// ---------------------------------------------------------------- list

function formatTime(text) {
  if (!text) return "—";
  const date = new Date(text);
  return `${date.toLocaleString()}`;
}

function shorten(text, length = QUERY_PREVIEW) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

function renderToken(token) {
  const item = $("#token-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = token.id;
  $(".token-name", item).textContent = token.name;
  const apis = $(".token-apis", item);
  for (const name of token.allowed_apis) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = API_NAMES[name] || name;
    apis.append(badge);
  }
  const grants = $(".token-grants", item);
  if (token.grants.length === 0) {
    grants.textContent = "None";
  } else {
    const list = document.createElement("ul");
    for (const grant of token.grants) {
      const entry = document.createElement("li");
      const connection = document.createElement("strong");
      connection.textContent = grant.connection_name;
      const source = document.createElement("code");
      source.textContent = grant.source === "*" ? "* (all sources)" : shorten(grant.source);
      source.title = grant.source;
      entry.append(connection, ": ", source);
      list.append(entry);
    }
    grants.append(list);
  }
  $(".token-referers", item).textContent = token.referers.length ? token.referers.join(", ") : "Any website";
  $(".token-expiration", item).textContent = token.expiration_date ? formatTime(token.expiration_date) : "Never";
  $(".token-created", item).textContent = formatTime(token.created_at);
  $(".token-used", item).textContent = token.last_used_at ? formatTime(token.last_used_at) : "Never";
  const label = (action) => `${action} ${token.name}`;
  $(".copy", item).setAttribute("aria-label", label("Copy token"));
  $(".test", item).setAttribute("aria-label", label("Test a request with"));
  $(".edit", item).setAttribute("aria-label", label("Edit"));
  $(".delete", item).setAttribute("aria-label", label("Delete"));
  $(".copy", item).addEventListener("click", () => copyToken(token));
  $(".test", item).addEventListener("click", () => openTester(token));
  $(".edit", item).addEventListener("click", () => openEdit(token.id));
  $(".delete", item).addEventListener("click", () => confirmDelete(token));
  return item;
}

async function showList(cursor = state.cursors[state.cursors.length - 1]) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  const { body } = await api("GET", `/v3/tokens?${query}`);
  state.tokens = new Map(body.data.map((t) => [t.id, t]));
  state.nextCursor = body.next_cursor;
  $("#token-list").replaceChildren(...body.data.map(renderToken));
  const empty = body.data.length === 0 && state.cursors.length === 1;
  $("#empty-state").hidden = !empty;
  $("#older-page").hidden = !state.nextCursor;
  $("#newer-page").hidden = state.cursors.length <= 1;
  show("list-view");
}

async function olderPage() {
  state.cursors.push(state.nextCursor);
  await showList();
  $("#list-title").focus();
}

async function newerPage() {
  state.cursors.pop();
  await showList();
}

async function copyToken(token) {
  if (!token.token) {
    say("This token's value cannot be shown: the server key changed since it was made.");
    return;
  }
  try {
    await navigator.clipboard.writeText(token.token);
    say(`Token “${token.name}” copied to the clipboard.`);
  } catch {
    say("The browser did not allow copying. Select the value and copy it yourself: " + token.token);
  }
}

function confirmDelete(token) {
  const dialog = $("#delete-dialog");
  $("#delete-text").textContent =
    `“${token.name}” stops working at once, everywhere it is used, and cannot be recovered. ` +
    "Make sure no code still uses it.";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "delete") return;
    try {
      await api("DELETE", `/v3/tokens/${encodeURIComponent(token.id)}`);
      say(`Token “${token.name}” deleted.`);
      await showList();
    } catch (e) {
      say(`Could not delete the token: ${e.message}`);
    }
  };
  dialog.showModal();
}

// ---------------------------------------------------------------- sources

// SPEC §2: classify a source the way the server does, for live feedback.
// The server has the last word; this only explains.
function lexDotted(text) {
  if (text.length >= 2 && text.startsWith("`") && text.endsWith("`") && !text.slice(1, -1).includes("`")) {
    const parts = text.slice(1, -1).split(".");
    return parts.every((p) => p.length > 0) ? parts.map((p) => ({ text: p, wild: true })) : null;
  }
  const segments = [];
  let i = 0;
  while (i < text.length) {
    let segment;
    const c = text[i];
    if (c === '"' || c === "`") {
      let j = i + 1;
      let name = "";
      for (;;) {
        if (j >= text.length) return null;
        if (text[j] === c) {
          if (c === '"' && text[j + 1] === '"') {
            name += '"';
            j += 2;
            continue;
          }
          break;
        }
        name += text[j];
        j += 1;
      }
      segment = { text: name, wild: false };
      i = j + 1;
    } else if (/[A-Za-z0-9_$*-]/.test(c)) {
      let j = i;
      while (j < text.length && /[A-Za-z0-9_$*-]/.test(text[j])) j += 1;
      segment = { text: text.slice(i, j), wild: true };
      i = j;
    } else {
      return null;
    }
    if (!segment.text) return null;
    segments.push(segment);
    if (i === text.length) return segments;
    if (text[i] !== ".") return null;
    i += 1;
    if (i === text.length) return null;
  }
  return segments.length ? segments : null;
}

function classify(raw) {
  const text = raw.trim();
  if (!text) return { error: "The source is empty." };
  if (new TextEncoder().encode(text).length > 64 * 1024) return { error: "A source may be at most 64 KiB." };
  if (text === "*") return { kind: "all" };
  const segments = lexDotted(text);
  if (!segments) return { kind: "query" };
  const starred = segments.filter((s) => s.wild && s.text.includes("*"));
  if (starred.length === 0) return { kind: segments.length <= 4 ? "table" : "query" };
  const last = segments[segments.length - 1];
  if (starred.length > 1 || starred[0] !== last || last.text.indexOf("*") !== last.text.length - 1) {
    return { error: "A pattern may have a single *, at the end of its last segment." };
  }
  if (segments.length - 1 < 2) {
    return { error: "A pattern needs at least two complete segments before the *, as in project.dataset.*" };
  }
  if (segments.length > 4) return { error: "A pattern may have at most four segments." };
  return { kind: "pattern" };
}

const KIND_WORDS = { all: "all sources", table: "a table or tileset", pattern: "a table pattern", query: "an SQL query" };

function chosenApis() {
  return $$('input[name="api"]:checked').map((box) => box.value);
}

function grantSource(item) {
  const kind = $('input[type="radio"]:checked', item).value;
  if (kind === "all") return "*";
  if (kind === "query") return $(".grant-source-query", item).value;
  return $(".grant-source-table", item).value;
}

function describeGrant(item) {
  const source = grantSource(item);
  const feedback = $(".grant-feedback", item);
  const warning = $(".grant-warning", item);
  warning.hidden = true;
  if (!source.trim()) {
    feedback.textContent = "";
    return;
  }
  const result = classify(source);
  if (result.error) {
    feedback.textContent = result.error;
    return;
  }
  const serves = SERVES[result.kind];
  const chosen = chosenApis().filter((a) => a !== "lds");
  const useful = chosen.filter((a) => serves.includes(a));
  let text = `Read as ${KIND_WORDS[result.kind]}; serves the ${serves.map((a) => API_NAMES[a]).join(", ")}.`;
  if (chosen.length) {
    text += useful.length
      ? ` Of the APIs you chose: ${useful.map((a) => API_NAMES[a]).join(", ")}.`
      : " None of the APIs you chose can use it.";
  }
  feedback.textContent = text;
  if (result.kind === "all") {
    warning.textContent = "All sources: this token can read every table of this connection, including tables created later.";
    warning.hidden = false;
  }
}

// ---------------------------------------------------------------- form

let grantCounter = 0;

function addGrant(grant = { connection_name: state.connections[0]?.name || "", source: "" }) {
  const item = $("#grant-template").content.firstElementChild.cloneNode(true);
  grantCounter += 1;
  const n = grantCounter;
  const select = $(".grant-connection", item);
  select.id = `grant-${n}-connection`;
  for (const connection of state.connections) {
    const option = document.createElement("option");
    option.value = connection.name;
    option.textContent = `${connection.name} (${connection.provider})`;
    select.append(option);
  }
  if (grant.connection_name && !state.connections.some((c) => c.name === grant.connection_name)) {
    const option = document.createElement("option");
    option.value = grant.connection_name;
    option.textContent = grant.connection_name;
    select.append(option);
  }
  select.value = grant.connection_name;
  for (const radio of $$('input[type="radio"]', item)) {
    radio.name = `grant-${n}-kind`;
    radio.addEventListener("change", () => syncGrantKind(item));
  }
  const kind = grant.source.trim() === "*" ? "all" : classify(grant.source).kind === "query" ? "query" : "table";
  $(`input[value="${kind}"]`, item).checked = true;
  if (kind === "query") $(".grant-source-query", item).value = grant.source;
  if (kind === "table") $(".grant-source-table", item).value = grant.source;
  $(".grant-source-table", item).id = `grant-${n}-table`;
  $(".grant-source-query", item).id = `grant-${n}-query`;
  $(".grant-error", item).id = `grant-${n}-error`;
  for (const input of [$(".grant-source-table", item), $(".grant-source-query", item), select]) {
    input.setAttribute("aria-describedby", `grant-${n}-error`);
    input.addEventListener("input", () => describeGrant(item));
  }
  $(".remove-grant", item).addEventListener("click", () => {
    item.remove();
    $("#add-grant").focus();
  });
  $("#grant-list").append(item);
  syncGrantKind(item);
  return item;
}

function syncGrantKind(item) {
  const kind = $('input[type="radio"]:checked', item).value;
  $(".grant-table", item).hidden = kind !== "table";
  $(".grant-query", item).hidden = kind !== "query";
  describeGrant(item);
}

// The Imports rule (V2), enforced as the user clicks.
function syncApis() {
  const imports = $('input[name="api"][value="imports"]');
  const others = $$('input[name="api"]').filter((box) => box !== imports);
  for (const box of others) {
    if (imports.checked) box.checked = false;
    box.disabled = imports.checked;
  }
  $("#imports-note").hidden = !imports.checked;
  for (const item of $$(".grant")) describeGrant(item);
}

function parseReferers(text) {
  return text
    .split(/[\n,]/)
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
}

function checkReferers() {
  const warning = $("#referers-warning");
  const withPath = parseReferers($("#token-referers").value).filter((r) => {
    const rest = r.replace(/^[a-z]+:\/\//i, "");
    const slash = rest.indexOf("/");
    return slash >= 0 && rest.slice(slash) !== "/";
  });
  warning.hidden = withPath.length === 0;
  warning.textContent = withPath.length
    ? `Careful with paths (${withPath.join(", ")}): browsers usually send only the origin, such as https://example.com/, on requests to other sites, so such a referer may refuse them.`
    : "";
}

function clearErrors() {
  for (const error of $$("#token-form .error")) error.textContent = "";
  for (const field of $$("#token-form [aria-invalid]")) field.removeAttribute("aria-invalid");
}

// Places each server violation next to its field (details[].field).
function placeErrors(details) {
  const grants = $$(".grant");
  let firstInvalid = null;
  const mark = (element, errorElement, message) => {
    if (errorElement) {
      errorElement.textContent = errorElement.textContent ? `${errorElement.textContent} ${message}` : message;
    }
    if (element) {
      element.setAttribute("aria-invalid", "true");
      firstInvalid = firstInvalid || element;
    }
  };
  for (const detail of details) {
    const field = detail.field || "";
    let match;
    if (field === "name") {
      mark($("#token-name"), $("#token-name-error"), detail.message);
    } else if (field.startsWith("allowed_apis")) {
      mark($('input[name="api"]'), $("#apis-error"), detail.message);
    } else if ((match = field.match(/^grants\[(\d+)\](\.(\w+))?$/))) {
      const item = grants[Number(match[1])];
      if (!item) {
        mark(null, $("#grants-error"), detail.message);
        continue;
      }
      const input =
        match[3] === "connection_name"
          ? $(".grant-connection", item)
          : $('input[type="radio"]:checked', item).value === "query"
            ? $(".grant-source-query", item)
            : $(".grant-source-table", item);
      mark(input, $(".grant-error", item), detail.message);
    } else if (field === "grants") {
      mark(null, $("#grants-error"), detail.message);
    } else if ((match = field.match(/^referers\[(\d+)\]$/))) {
      mark($("#token-referers"), $("#referers-error"), detail.message);
    } else if (field === "referers") {
      mark($("#token-referers"), $("#referers-error"), detail.message);
    } else if (field === "expiration_date") {
      mark($("#token-expiration"), $("#expiration-error"), detail.message);
    } else {
      mark(null, $("#form-error"), `${field}: ${detail.message}`);
    }
  }
  if (firstInvalid) firstInvalid.focus();
}

function openCreate() {
  say("");
  state.editing = null;
  resetForm();
  $("#form-title").textContent = "Create new API access token";
  $("#save-button").textContent = "Create token";
  $("#token-expiration").disabled = false;
  $("#token-expiration").readOnly = false;
  $("#expiration-help").textContent =
    "The token stops working at this time, in your time zone. It can be set only now, when the token is created.";
  addGrant();
  show("form-view");
  $("#token-name").focus();
}

function resetForm() {
  $("#token-form").reset();
  clearErrors();
  $("#grant-list").replaceChildren();
  syncApis();
  checkReferers();
}

async function openEdit(id) {
  let token;
  let etag;
  try {
    ({ body: token, etag } = await api("GET", `/v3/tokens/${encodeURIComponent(id)}`));
  } catch (e) {
    say(`Could not open the token: ${e.message}`);
    return;
  }
  say("");
  state.editing = { id, etag };
  resetForm();
  $("#form-title").textContent = `Edit “${token.name}”`;
  $("#save-button").textContent = "Save changes";
  $("#token-name").value = token.name;
  for (const box of $$('input[name="api"]')) box.checked = token.allowed_apis.includes(box.value);
  syncApis();
  for (const grant of token.grants) addGrant(grant);
  $("#token-referers").value = token.referers.join("\n");
  checkReferers();
  const expiration = $("#token-expiration");
  expiration.value = token.expiration_date ? toLocalInput(token.expiration_date) : "";
  expiration.readOnly = true;
  expiration.disabled = true;
  $("#expiration-help").textContent = token.expiration_date
    ? "The expiration was set when the token was created and cannot be changed."
    : "This token never expires. An expiration can only be set when a token is created.";
  show("form-view");
  $("#token-name").focus();
}

function toLocalInput(iso) {
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function formBody() {
  const body = {
    name: $("#token-name").value.trim() || null,
    allowed_apis: chosenApis(),
    grants: $$(".grant").map((item) => ({
      connection_name: $(".grant-connection", item).value,
      source: grantSource(item),
    })),
    referers: parseReferers($("#token-referers").value),
  };
  const expiration = $("#token-expiration").value;
  if (!state.editing && expiration) body.expiration_date = new Date(expiration).toISOString();
  return body;
}

async function save(event) {
  event.preventDefault();
  clearErrors();
  const body = formBody();
  const button = $("#save-button");
  button.disabled = true;
  try {
    if (state.editing) {
      const headers = state.editing.etag ? { "If-Match": state.editing.etag } : {};
      await api("PATCH", `/v3/tokens/${encodeURIComponent(state.editing.id)}`, { body, headers });
      say(`Token “${body.name || "(generated name)"}” saved.`);
    } else {
      if (body.name === null) delete body.name;
      const { body: created } = await api("POST", "/v3/tokens", { body });
      say(`Token “${created.name}” created. Use “Copy token” to put its value on the clipboard.`);
      state.cursors = [null];
    }
    await showList();
  } catch (e) {
    if (e.body && Array.isArray(e.body.details)) {
      placeErrors(e.body.details);
      $("#form-error").textContent = "Please correct the fields marked below.";
    } else if (e.status === 412) {
      $("#form-error").textContent = "This token was changed elsewhere since you opened it. Cancel and open it again.";
    } else if (e.status === 409) {
      mark409();
    } else if (e.status !== 401) {
      $("#form-error").textContent = `Could not save: ${e.message}`;
    }
  } finally {
    button.disabled = false;
  }
}

function mark409() {
  $("#token-name-error").textContent = "You already have a token with this name. Choose another.";
  $("#token-name").setAttribute("aria-invalid", "true");
  $("#token-name").focus();
}

// ---------------------------------------------------------------- tester

function openTester(token) {
  state.tested = token;
  const dialog = $("#tester-dialog");
  const connection = $("#tester-connection");
  const names = new Set([...state.connections.map((c) => c.name), ...token.grants.map((g) => g.connection_name)]);
  connection.replaceChildren(
    ...[...names].map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }),
  );
  const first = token.grants.find((g) => g.source !== "*");
  if (first) {
    connection.value = first.connection_name;
    const kind = classify(first.source).kind;
    $("#tester-kind").value = kind === "query" ? "query" : "table";
    $("#tester-source").value = kind === "pattern" ? first.source.replace(/\*$/, "example") : first.source;
  } else {
    $("#tester-source").value = "";
  }
  $("#tester-api").value = token.allowed_apis.includes("maps") ? "maps" : token.allowed_apis[0] || "maps";
  $("#tester-referer").value = token.referers[0] ? exampleReferer(token.referers[0]) : "";
  $("#tester-token").value = token.token || "";
  $("#tester-result").textContent = "";
  $("#tester-result").className = "result";
  syncTester();
  dialog.showModal();
}

function exampleReferer(pattern) {
  let text = pattern.replace(/^\*\./, "www.");
  if (!/^[a-z]+:\/\//i.test(text)) text = `https://${text}`;
  return text.replace(/:\*/, "");
}

function syncTester() {
  $("#tester-target").hidden = $("#tester-api").value === "lds";
}

async function runTest(event) {
  event.preventDefault();
  const result = $("#tester-result");
  const request = { token: $("#tester-token").value.trim(), api: $("#tester-api").value };
  if (request.api !== "lds") {
    request.connection_name = $("#tester-connection").value;
    request.source_type = $("#tester-kind").value;
    request.source = $("#tester-source").value;
  }
  const referer = $("#tester-referer").value.trim();
  if (referer) request.referer = referer;
  try {
    const { body } = await api("POST", "/v3/authorize", { body: request, auth: false });
    if (body.allowed) {
      result.className = "result allowed";
      result.textContent = "Allowed: a data API would serve this request.";
    } else {
      result.className = "result denied";
      result.textContent = `Refused: ${REASONS[body.reason] || body.reason} (${body.reason})`;
    }
  } catch (e) {
    result.className = "result denied";
    const details = e.body && Array.isArray(e.body.details) ? e.body.details.map((d) => `${d.field}: ${d.message}`) : [];
    result.textContent = details.length ? `The request is incomplete: ${details.join("; ")}` : `Could not ask: ${e.message}`;
  }
}

// ---------------------------------------------------------------- start

function wire() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut("Signed out."));
  $("#create-button").addEventListener("click", openCreate);
  $("#empty-create-button").addEventListener("click", openCreate);
  $("#older-page").addEventListener("click", olderPage);
  $("#newer-page").addEventListener("click", newerPage);
  $("#add-grant").addEventListener("click", () => {
    const item = addGrant();
    $(".grant-connection", item).focus();
  });
  $("#cancel-button").addEventListener("click", () => showList());
  $("#token-form").addEventListener("submit", save);
  for (const box of $$('input[name="api"]')) box.addEventListener("change", syncApis);
  $("#token-referers").addEventListener("input", checkReferers);
  $("#tester-form").addEventListener("submit", runTest);
  $("#tester-api").addEventListener("change", syncTester);
  $("#tester-close").addEventListener("click", () => $("#tester-dialog").close());
  $("#list-title").tabIndex = -1;
}

async function start() {
  wire();
  if (!userKey()) {
    show("sign-in-view");
    return;
  }
  try {
    await loadConnections();
    await showList();
  } catch (e) {
    if (e.status !== 401) say(`Could not load your tokens: ${e.message}`);
  }
}

start();
