// latchkey's API access tokens page. A client of the public API and nothing
// else: a token made here is exactly a token made with curl.
//
// The user key lives in sessionStorage only (this tab, until sign-out or the
// tab closes): never in localStorage, a cookie or a URL. Views are chosen by
// the URL's fragment (#/, #/new, #/token/ID, #/token/ID/edit, #/org), so
// that Back and reload do what people expect; a fragment never holds a key
// or a token value.

const KEY_STORAGE = "latchkey.userKey";
const PAGE_SIZE = 50;
const SOON_MS = 7 * 24 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;

const API_NAMES = { sql: "SQL API", maps: "Maps API", imports: "Imports API", lds: "LDS API" };
const API_SHORT = { sql: "SQL", maps: "Maps", imports: "Imports", lds: "LDS" };

// SPEC §3: which kind of grant serves which API.
const SERVES = {
  all: ["sql", "maps", "imports"],
  table: ["maps", "imports"],
  pattern: ["maps", "imports"],
  query: ["sql", "maps"],
};
const KIND_LABELS = { all: "All sources", table: "Table or tileset", pattern: "Pattern", query: "SQL query" };
const KIND_WORDS = { all: "all sources", table: "a table or tileset", pattern: "a pattern", query: "an SQL query" };

const REASONS = {
  token_malformed: "This is not a latchkey token value.",
  token_unknown: "There is no such token: it was deleted, rolled, or never existed.",
  token_expired: "The token has expired.",
  api_not_allowed: "The token does not allow this API.",
  referer_missing: "The token only works from certain websites, and the request names none (no Referer or Origin header).",
  referer_not_allowed: "The request comes from a website the token does not allow.",
  ip_not_allowed: "The request comes from an IP address the token does not allow (or names none).",
  connection_not_granted: "The token has no grant on this connection.",
  source_not_granted: "No grant of the token covers this source for this API.",
};

const STATUS_LABELS = {
  active: "Active",
  expiring: "Expiring soon",
  expired: "Expired",
  grace: "Grace period",
  unused: "Never used",
};
const STATUS_RANK = { expired: 0, expiring: 1, grace: 2, active: 3 };

const ACTIONS = {
  "token.created": "Created",
  "token.updated": "Changed",
  "token.rolled": "Value rolled",
  "token.deleted": "Deleted",
  "token.revoked": "Revoked by an admin",
  "policy.updated": "Policy changed",
};

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const state = {
  signedIn: false,
  admin: false,
  me: null, // the user's name, when an org list has told us
  connections: [],
  policy: null,
  tokens: [], // every loaded token, newest first as the API gives them
  nextCursor: null,
  listLoaded: false,
  sort: { key: "created", dir: "desc" },
  detail: null, // { token, etag }
  reveal: false,
  notice: null, // { id, kind } shown once on the next detail view
  historyCursor: null,
  editing: null, // { id, etag, token } while editing
  org: { tokens: [], nextCursor: null, owner: "" },
  returnTo: "#/",
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body, message) {
    super(message || (body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.code = this.body.code || (status === 0 ? "offline" : "");
  }
}

function userKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function api(method, path, { body, headers = {}, auth = true, key } = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store" };
  if (auth) init.headers.Authorization = `Bearer ${key || userKey()}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    setOffline(true);
    throw new ApiError(0, null, "latchkey cannot be reached. Check your connection and try again.");
  }
  setOffline(false);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.status === 401 && auth && !key) {
    signOut("Your key is no longer accepted. Sign in again.");
    throw new ApiError(401, parsed);
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return { body: parsed, etag: response.headers.get("ETag") };
}

function setOffline(offline) {
  $("#offline").hidden = !offline && navigator.onLine;
}

// Every handler runs through this: an error becomes a message on screen,
// never an uncaught exception.
function guard(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      toast(e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`, "error");
    }
  };
}

// ---------------------------------------------------------------- small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function toast(message, kind = "ok") {
  const box = $("#toasts");
  const item = el("div", { class: `toast ${kind}` }, el("span", { text: message }));
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss message", text: "×" });
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === "error" ? 9000 : 5000);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function ago(iso, now = Date.now()) {
  const ms = Date.parse(iso) - now;
  const abs = Math.abs(ms);
  const units = [
    ["year", 365 * DAY_MS],
    ["month", 30 * DAY_MS],
    ["day", DAY_MS],
    ["hour", 3600e3],
    ["minute", 60e3],
  ];
  for (const [unit, size] of units) {
    if (abs >= size) return relative.format(Math.round(ms / size), unit);
  }
  return ms < 0 ? "just now" : "in less than a minute";
}

function fullTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function timeEl(iso, empty = "Never") {
  if (!iso) return el("span", { class: "muted", text: empty });
  return el("time", { datetime: iso, title: fullTime(iso), text: ago(iso) });
}

function mask(value) {
  if (!value) return "";
  return `${value.slice(0, 16)}…`;
}

function shorten(text, length = 60) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

function focusHeading(selector) {
  const heading = $(selector);
  if (!heading) return;
  heading.tabIndex = -1;
  heading.focus({ preventScroll: false });
}

// The button itself says what happened, where the user is looking.
async function copyText(button, value, label = "Copy") {
  const text = $(".button-label", button) || button;
  try {
    await navigator.clipboard.writeText(value);
    text.textContent = "Copied";
    button.classList.add("copied");
  } catch {
    text.textContent = "Copy failed";
    toast("The browser did not allow copying. Use Show, then select the value.", "error");
  }
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => {
    text.textContent = label;
    button.classList.remove("copied");
  }, 2500);
}

// ---------------------------------------------------------------- sources (SPEC §2)

// The server's classification, replicated so that the wizard can check
// the kind the user chose before saving: what the user means and what the
// server will store must agree. The server still has the last word.
const UNQUOTED = /[A-Za-z0-9_$-]/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function lexDotted(text) {
  if (text.length >= 2 && text.startsWith("`") && text.endsWith("`") && !text.slice(1, -1).includes("`")) {
    const parts = text.slice(1, -1).split(".");
    if (!parts.every((p) => p.length > 0 && !CONTROL.test(p))) return null;
    return parts.map((p) => ({ text: p, wild: true }));
  }
  const segments = [];
  let i = 0;
  for (;;) {
    if (i >= text.length) return null;
    const c = text[i];
    let segment;
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
        if (CONTROL.test(text[j])) return null;
        name += text[j];
        j += 1;
      }
      if (name.includes(".")) return { ambiguous: true };
      segment = { text: name, wild: false };
      i = j + 1;
    } else if (UNQUOTED.test(c) || c === "*") {
      let j = i;
      while (j < text.length && (UNQUOTED.test(text[j]) || text[j] === "*")) j += 1;
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
  }
}

function classify(raw) {
  const text = raw.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, "");
  if (!text) return { error: "Enter a source." };
  if (new TextEncoder().encode(text).length > 64 * 1024) return { error: "A source may be at most 64 KiB." };
  if (text === "*") return { kind: "all" };
  const segments = lexDotted(text);
  if (segments && segments.ambiguous) {
    return { error: "A quoted segment holds a dot; quote each segment on its own, as in \"project\".\"dataset\"." };
  }
  if (!segments) return { kind: "query" };
  const starred = segments.filter((s) => s.wild && s.text.includes("*"));
  if (starred.length === 0) return { kind: segments.length <= 4 ? "table" : "query", segments: segments.length };
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

// Why a source the user called `chosen` is read as something else.
function mismatch(chosen, source, result) {
  const shown = `“${shorten(source, 40)}”`;
  if (chosen === "table" && result.kind === "query") {
    if (result.segments > 4) {
      return `${shown} has ${result.segments} dotted parts; a table or tileset name has 1 to 4, so latchkey would save it as an SQL query. Fix the name, or save it as a query.`;
    }
    return `${shown} is not a table name (unquoted parts may hold only letters, digits, _, $ and -), so latchkey would save it as an SQL query. Fix the name, or save it as a query.`;
  }
  if (chosen === "table" && result.kind === "pattern") return `${shown} ends with *, so latchkey reads it as a pattern of tables.`;
  if (chosen === "pattern" && result.kind === "table") return `${shown} has no trailing *, so latchkey reads it as a single table.`;
  if (chosen === "pattern" && result.kind === "query") return `${shown} is not a pattern (such as project.dataset.prefix_*), so latchkey would save it as an SQL query.`;
  if (chosen === "query") return `latchkey reads ${shown} as ${KIND_WORDS[result.kind]}, not as an SQL query: a query needs SQL words, such as SELECT … FROM ….`;
  return `latchkey reads ${shown} as ${KIND_WORDS[result.kind]}.`;
}

// ---------------------------------------------------------------- token status

function statusOf(token, now = Date.now()) {
  const expires = token.expiration_date ? Date.parse(token.expiration_date) : null;
  let primary = "active";
  if (expires !== null && expires <= now) primary = "expired";
  else if (expires !== null && expires - now < SOON_MS) primary = "expiring";
  const grace = Boolean(token.previous_value_expires_at && Date.parse(token.previous_value_expires_at) > now);
  return { primary, grace, unused: !token.last_used_at, expires };
}

function matchesStatus(token, wanted) {
  if (!wanted) return true;
  const s = statusOf(token);
  if (wanted === "active") return s.primary !== "expired";
  if (wanted === "grace") return s.grace;
  if (wanted === "unused") return s.unused;
  if (wanted === "warnings") return token.warnings.length > 0;
  return s.primary === wanted;
}

function badges(token, { long = false } = {}) {
  const s = statusOf(token);
  const list = [el("span", { class: `badge status-${s.primary}`, text: STATUS_LABELS[s.primary] })];
  if (s.grace) list.push(el("span", { class: "badge status-grace", text: STATUS_LABELS.grace }));
  if (s.unused && s.primary !== "expired") list.push(el("span", { class: "badge status-unused", text: STATUS_LABELS.unused }));
  if (long && token.warnings.length) {
    list.push(el("span", { class: "badge status-warning", text: `${token.warnings.length} warning${token.warnings.length > 1 ? "s" : ""}` }));
  }
  return list;
}

// The badges and the expiry, as one block (one cell of a stacked row).
function statusBlock(token) {
  return el("div", {}, el("span", { class: "badges" }, ...badges(token)), el("span", { class: "sub", text: expiryText(token) }));
}

function expiryText(token) {
  if (!token.expiration_date) return "never expires";
  const past = Date.parse(token.expiration_date) <= Date.now();
  return past ? `expired ${ago(token.expiration_date)}` : `expires ${ago(token.expiration_date)}`;
}

// ---------------------------------------------------------------- views and routing

const VIEWS = ["sign-in-view", "list-view", "detail-view", "form-view", "org-view"];

function show(view) {
  for (const id of VIEWS) $(`#${id}`).hidden = id !== view;
  const signedIn = view !== "sign-in-view";
  $("#who").hidden = !signedIn;
  $("#nav").hidden = !signedIn;
  $("#nav-org").hidden = !state.admin;
  const current = view === "org-view" ? "#nav-org" : "#nav-tokens";
  for (const link of $$("#nav a")) link.removeAttribute("aria-current");
  if (signedIn) $(current).setAttribute("aria-current", "page");
  const titles = {
    "sign-in-view": "Sign in",
    "list-view": "API access tokens",
    "detail-view": state.detail ? state.detail.token.name : "Token",
    "form-view": $("#form-title").textContent,
    "org-view": "Organization",
  };
  document.title = `${titles[view]} · latchkey`;
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  if (!state.signedIn) {
    show("sign-in-view");
    return;
  }
  const hash = location.hash || "#/";
  let match;
  if (hash === "#/new") {
    await openCreate();
  } else if ((match = hash.match(/^#\/token\/([^/]+)\/edit$/))) {
    await openEdit(decodeURIComponent(match[1]));
  } else if ((match = hash.match(/^#\/token\/([^/]+)$/))) {
    await openDetail(decodeURIComponent(match[1]));
  } else if (hash === "#/org" && state.admin) {
    await openOrg();
  } else {
    await openList();
  }
}

// ---------------------------------------------------------------- sign-in

function showWho() {
  const key = userKey() || "";
  $("#who-name").textContent = state.me ? `Signed in as ${state.me}` : `Signed in with key ${key.slice(0, 15)}…`;
  $("#who-name").title = state.me ? `Key ${key.slice(0, 15)}…` : "";
  $("#who-role").textContent = state.admin ? "org admin" : "member";
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  Object.assign(state, { signedIn: false, admin: false, me: null, tokens: [], listLoaded: false, detail: null });
  $("#token-rows").replaceChildren();
  show("sign-in-view");
  $("#user-key").value = "";
  $("#user-key-error").textContent = message;
  if (location.hash && location.hash !== "#/") history.replaceState(null, "", "#/");
  $("#user-key").focus();
}

// Whether the key belongs to an org admin: the admin list answers 200 to
// admins and 403 to members; there is no "who am I" endpoint.
async function loadRole(key) {
  try {
    const { body } = await api("GET", "/v3/org/tokens?limit=1", { key });
    return { admin: true, sample: body.data };
  } catch (e) {
    if (e.status === 403) return { admin: false, sample: [] };
    throw e;
  }
}

async function loadSession(key) {
  const [{ body: connections }, role, policy] = await Promise.all([
    api("GET", "/v3/connections", { key }),
    loadRole(key),
    api("GET", "/v3/org/policy", { key }).then((r) => r.body),
  ]);
  state.connections = connections.data;
  state.admin = role.admin;
  state.policy = policy;
  const select = $("#filter-connection");
  select.replaceChildren(
    el("option", { value: "", text: "Any connection" }),
    ...state.connections.map((c) => el("option", { value: c.name, text: c.name })),
  );
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#user-key");
  const error = $("#user-key-error");
  const button = $("#sign-in-button");
  const key = input.value.trim();
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  if (!key) {
    error.textContent = "Enter your user key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    await loadSession(key);
    sessionStorage.setItem(KEY_STORAGE, key);
    state.signedIn = true;
    state.listLoaded = false;
    showWho();
    await route();
  } catch (e) {
    // A wrong key keeps what was typed, selected, so that a typo can be fixed.
    error.textContent =
      e.status === 401 ? "That key was not accepted. Check it and try again." : `Could not sign in: ${e.message}`;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    input.select();
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

// ---------------------------------------------------------------- the list

async function loadTokens({ append = false, all = false } = {}) {
  const table = $("#token-table");
  table.setAttribute("aria-busy", "true");
  if (!append && !state.listLoaded) $("#list-summary").textContent = "Loading your tokens…";
  try {
    let cursor = append ? state.nextCursor : null;
    const loaded = append ? [...state.tokens] : [];
    do {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (cursor) query.set("cursor", cursor);
      const { body } = await api("GET", `/v3/tokens?${query}`);
      loaded.push(...body.data);
      cursor = body.next_cursor;
    } while (all && cursor);
    state.tokens = loaded;
    state.nextCursor = cursor;
    state.listLoaded = true;
  } finally {
    table.removeAttribute("aria-busy");
  }
}

async function openList({ refresh = true } = {}) {
  show("list-view");
  state.returnTo = "#/";
  if (!state.listLoaded) {
    $("#token-rows").replaceChildren(loadingRow(7));
    $("#empty-state").hidden = true;
    $("#tokens-area").hidden = false;
  } else {
    renderList();
  }
  focusHeading("#list-title");
  if (refresh || !state.listLoaded) {
    try {
      await loadTokens({ all: state.tokens.length > PAGE_SIZE });
    } catch (e) {
      if (e.status === 401) return;
      if (state.listLoaded) renderList();
      if (state.listLoaded) $("#list-summary").textContent += " This list may be out of date: it could not be refreshed.";
      else $("#list-summary").textContent = "Your tokens could not be loaded.";
      if (!state.listLoaded) $("#token-rows").replaceChildren(messageRow(7, e.message, true));
      toast(e.message, "error");
      return;
    }
    renderList();
  }
}

function loadingRow(columns) {
  return el("tr", { class: "placeholder" }, el("td", { colSpan: columns, text: "Loading…" }));
}

function messageRow(columns, text, retry) {
  const cell = el("td", { colSpan: columns }, el("span", { text }));
  if (retry) {
    const button = el("button", { type: "button", class: "quiet small", text: "Try again" });
    button.addEventListener("click", guard(() => openList()));
    cell.append(" ", button);
  }
  return el("tr", { class: "placeholder" }, cell);
}

function filters() {
  return {
    text: $("#filter-text").value.trim().toLowerCase(),
    api: $("#filter-api").value,
    connection: $("#filter-connection").value,
    status: $("#filter-status").value,
  };
}

function matchesText(token, text, extra = "") {
  if (!text) return true;
  const haystack = [
    token.name,
    token.id,
    extra,
    ...token.grants.map((g) => `${g.connection_name} ${g.source}`),
    ...token.referers,
    ...token.allowed_ips,
  ]
    .join("\n")
    .toLowerCase();
  return haystack.includes(text);
}

const SORTERS = {
  name: (a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: "base", numeric: true }),
  created: (a, b) => a.created_at.localeCompare(b.created_at),
  used: (a, b) => (a.last_used_at || "").localeCompare(b.last_used_at || ""),
  status: (a, b) => STATUS_RANK[statusOf(a).primary] - STATUS_RANK[statusOf(b).primary] || SORTERS.name(a, b),
};

function sorted(tokens) {
  const { key, dir } = state.sort;
  const list = [...tokens].sort(SORTERS[key]);
  return dir === "desc" ? list.reverse() : list;
}

function renderList() {
  const f = filters();
  const empty = state.tokens.length === 0 && !state.nextCursor;
  $("#empty-state").hidden = !empty;
  $("#tokens-area").hidden = empty;
  const visible = sorted(
    state.tokens.filter(
      (t) =>
        matchesText(t, f.text) &&
        (!f.api || t.allowed_apis.includes(f.api)) &&
        (!f.connection || t.grants.some((g) => g.connection_name === f.connection)) &&
        matchesStatus(t, f.status),
    ),
  );
  $("#token-rows").replaceChildren(...visible.map(tokenRow));
  const filtered = f.text || f.api || f.connection || f.status;
  $("#no-match").hidden = visible.length > 0 || empty;
  const more = state.nextCursor ? " More tokens are on the server: load them to include them." : "";
  $("#list-summary").textContent = filtered
    ? `${visible.length} of ${state.tokens.length} loaded tokens match.${more}`
    : `${state.tokens.length} token${state.tokens.length === 1 ? "" : "s"}${state.nextCursor ? " loaded" : ""}.${more}`;
  $("#load-more").hidden = !state.nextCursor;
  $("#load-all").hidden = !state.nextCursor;
  for (const th of $$("#token-table th[data-sort]")) {
    const on = th.dataset.sort === state.sort.key;
    th.setAttribute("aria-sort", on ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none");
  }
  $("#sort-select").value = `${state.sort.key}:${state.sort.dir}`;
}

function apiChips(token) {
  return el("span", { class: "chips" }, ...token.allowed_apis.map((a) => el("span", { class: "chip", text: API_SHORT[a] || a })));
}

function grantSummary(token) {
  if (token.grants.length === 0) return el("span", { class: "muted", text: "None" });
  const first = token.grants[0];
  const source = first.source === "*" ? "all sources" : shorten(first.source, 42);
  const wrap = el("span", { class: "grant-summary" });
  wrap.append(el("code", { title: first.source, text: source }), el("span", { class: "muted", text: ` on ${first.connection_name}` }));
  if (token.grants.length > 1) wrap.append(el("span", { class: "muted", text: ` +${token.grants.length - 1} more` }));
  return wrap;
}

function tokenRow(token) {
  const link = el("a", { href: `#/token/${encodeURIComponent(token.id)}`, class: "token-link", text: token.name });
  const sub = el("span", { class: "sub mono", text: `${token.id} · ${token.token ? mask(token.token) : "value unavailable"}` });
  const nameCell = el("td", { class: "name-cell", "data-label": "Name" }, link, sub);
  if (token.warnings.length) {
    const n = token.warnings.length;
    nameCell.append(el("span", { class: "warn-mark", text: `⚠ ${n} warning${n > 1 ? "s" : ""}` }));
  }
  const statusCell = el("td", { "data-label": "Status" }, statusBlock(token));
  const copy = el("button", { type: "button", class: "quiet small copy" }, el("span", { class: "button-label", text: "Copy" }), el("span", { class: "visually-hidden", text: ` the value of ${token.name}` }));
  copy.disabled = !token.token;
  copy.addEventListener("click", () => copyText(copy, token.token));
  return el(
    "tr",
    { "data-id": token.id },
    nameCell,
    el("td", { "data-label": "APIs" }, apiChips(token)),
    el("td", { "data-label": "Grants" }, grantSummary(token)),
    statusCell,
    el("td", { "data-label": "Last used" }, timeEl(token.last_used_at)),
    el("td", { "data-label": "Created" }, timeEl(token.created_at)),
    el("td", { class: "row-actions" }, copy),
  );
}

function sortBy(key) {
  if (state.sort.key === key) state.sort.dir = state.sort.dir === "asc" ? "desc" : "asc";
  else state.sort = { key, dir: key === "name" || key === "status" ? "asc" : "desc" };
  renderList();
}

// ---------------------------------------------------------------- detail

async function fetchToken(id) {
  const { body, etag } = await api("GET", `/v3/tokens/${encodeURIComponent(id)}`);
  return { token: body, etag };
}

function upsertToken(token) {
  const i = state.tokens.findIndex((t) => t.id === token.id);
  if (i >= 0) state.tokens[i] = token;
  else state.tokens.unshift(token);
}

async function openDetail(id) {
  state.returnTo = `#/token/${encodeURIComponent(id)}`;
  let loaded;
  try {
    loaded = await fetchToken(id);
  } catch (e) {
    if (e.status === 401) return;
    if (e.status === 404) {
      toast("That token no longer exists: it was deleted or revoked.", "error");
      state.tokens = state.tokens.filter((t) => t.id !== id);
      go("#/");
      return;
    }
    const cached = state.tokens.find((t) => t.id === id);
    if (!cached) {
      toast(e.message, "error");
      if (!$("#detail-view").hidden) return;
      go("#/");
      return;
    }
    toast(`${e.message} Showing what was loaded before.`, "error");
    loaded = { token: cached, etag: null };
  }
  state.detail = loaded;
  upsertToken(loaded.token);
  state.reveal = false;
  renderDetail();
  show("detail-view");
  const notice = state.notice && state.notice.id === id ? state.notice : null;
  state.notice = null;
  renderNotice(notice);
  if (notice) $("#detail-notice").focus();
  else focusHeading("#detail-title");
  await loadHistory(id, false);
}

function renderNotice(notice) {
  const box = $("#detail-notice");
  box.hidden = !notice;
  if (!notice) return;
  const token = state.detail.token;
  const lines = {
    created: `Token created. Copy its value below into your app.`,
    saved: "Changes saved.",
    rolled: token.previous_value_expires_at
      ? `Value rolled. The previous value keeps working until ${fullTime(token.previous_value_expires_at)}; update your apps before then.`
      : "Value rolled. The previous value no longer works; update your apps with the new one.",
  };
  const warn = token.warnings.length ? ` latchkey has ${token.warnings.length} warning${token.warnings.length > 1 ? "s" : ""} about it: see below.` : "";
  box.className = `notice ${token.warnings.length ? "notice-warn" : "notice-ok"}`;
  box.replaceChildren(el("p", { text: lines[notice.kind] + warn }));
}

function fieldLabel(field, token) {
  let match;
  if ((match = field.match(/^grants\[(\d+)\]/))) {
    const grant = token.grants[Number(match[1])];
    return grant ? `Grant ${Number(match[1]) + 1} (${grant.source === "*" ? "all sources" : shorten(grant.source, 40)})` : field;
  }
  if ((match = field.match(/^referers\[(\d+)\]/))) return `Website ${token.referers[Number(match[1])] || ""}`;
  if ((match = field.match(/^allowed_ips\[(\d+)\]/))) return `IP range ${token.allowed_ips[Number(match[1])] || ""}`;
  const names = { referers: "Allowed websites", allowed_apis: "Allowed APIs", expiration_date: "Expiration", allowed_ips: "IP ranges", grants: "Grants" };
  return names[field] || field;
}

function renderWarnings(container, list, title, token) {
  container.hidden = token.warnings.length === 0;
  const n = token.warnings.length;
  title.textContent = `${n} thing${n === 1 ? "" : "s"} to check`;
  list.replaceChildren(
    ...token.warnings.map((w) =>
      el("li", { "data-code": w.code }, el("strong", { text: `${fieldLabel(w.field, token)}: ` }), el("span", { text: w.message }), el("span", { class: "code", text: ` (${w.code})` })),
    ),
  );
}

function renderDetail() {
  const { token } = state.detail;
  $("#detail-title").textContent = token.name;
  $("#detail-badges").replaceChildren(...badges(token, { long: true }));
  renderWarnings($("#detail-warnings"), $("#warnings-list"), $("#warnings-title"), token);
  const value = $("#detail-value");
  if (token.token) {
    value.textContent = state.reveal ? token.token : `${mask(token.token)}${"•".repeat(12)}`;
  } else {
    value.textContent = "Unavailable: the server key changed since this token was made. Roll it to get a new value.";
  }
  $("#detail-reveal").disabled = !token.token;
  $("#detail-copy").disabled = !token.token;
  $("#detail-reveal").textContent = state.reveal ? "Hide" : "Show";
  $("#detail-reveal").setAttribute("aria-pressed", String(state.reveal));
  const grace = $("#detail-grace");
  const s = statusOf(token);
  grace.hidden = !s.grace;
  if (s.grace) grace.textContent = `The value before the last roll keeps working until ${fullTime(token.previous_value_expires_at)} (${ago(token.previous_value_expires_at)}).`;

  const facts = [
    ["Id", el("code", { text: token.id })],
    ["Status", el("span", {}, STATUS_LABELS[s.primary], ` · ${expiryText(token)}`)],
    ["Expires", token.expiration_date ? el("span", { text: fullTime(token.expiration_date) }) : el("span", { text: "Never" })],
    ["Created", el("span", { text: fullTime(token.created_at) })],
    ["Changed", el("span", { text: fullTime(token.updated_at) })],
    ["Last used", token.last_used_at ? el("span", { text: `${fullTime(token.last_used_at)} (${ago(token.last_used_at)})` }) : el("span", { text: "Never" })],
  ];
  $("#detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const list = (items, none) =>
    items.length ? el("ul", { class: "plain" }, ...items.map((i) => el("li", {}, el("code", { text: i })))) : el("span", { class: "muted", text: none });
  const restrictions = [
    ["APIs", apiChips(token)],
    ["Websites", list(token.referers, "Any website")],
    ["IP ranges", list(token.allowed_ips, "Any address")],
  ];
  $("#detail-restrictions").replaceChildren(...restrictions.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  $("#detail-no-grants").hidden = token.grants.length > 0;
  $("#detail-grants").closest(".table-wrap").hidden = token.grants.length === 0;
  $("#detail-grants").replaceChildren(
    ...token.grants.map((g) => {
      const kind = classify(g.source).kind || "query";
      const serves = SERVES[kind].filter((a) => token.allowed_apis.includes(a));
      return el(
        "tr",
        {},
        el("td", { "data-label": "Connection", text: g.connection_name }),
        el("td", { "data-label": "Kind" }, el("span", { class: `chip kind-${kind}`, text: KIND_LABELS[kind] })),
        el("td", { "data-label": "Source" }, el("code", { class: "source", text: g.source })),
        el("td", { "data-label": "Serves", text: serves.map((a) => API_SHORT[a]).join(", ") || "—" }),
      );
    }),
  );
  const title = `Test a request with ${token.name}`;
  $("#detail-test").setAttribute("aria-label", title);
  $("#detail-test").disabled = !token.token;
}

async function loadHistory(id, append) {
  const status = $("#history-status");
  const list = $("#history-list");
  if (!append) {
    list.replaceChildren();
    state.historyCursor = null;
  }
  status.textContent = "Loading the history…";
  const query = new URLSearchParams({ token: id, limit: "20" });
  if (append && state.historyCursor) query.set("cursor", state.historyCursor);
  try {
    const { body } = await api("GET", `/v3/audit?${query}`);
    if (!state.detail || state.detail.token.id !== id) return;
    list.append(...body.data.map(historyItem));
    state.historyCursor = body.next_cursor;
    status.textContent = list.children.length ? "" : "No recorded changes.";
    $("#history-more").hidden = !body.next_cursor;
  } catch (e) {
    if (e.status === 401) return;
    status.textContent = `The history could not be loaded: ${e.message}`;
  }
}

function describeValue(value) {
  if (value === null || value === undefined) return "none";
  if (Array.isArray(value)) {
    if (value.length === 0) return "none";
    return value.map((v) => (typeof v === "object" ? `${v.connection_name}: ${shorten(v.source, 40)}` : String(v))).join(", ");
  }
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) return fullTime(value);
  return String(value);
}

function historyItem(event) {
  const fields = Object.entries(event.changes || {});
  const changes =
    event.action === "token.updated" && fields.length
      ? el(
          "ul",
          { class: "changes" },
          ...fields.map(([field, { from, to }]) => el("li", {}, el("strong", { text: `${fieldLabel(field, state.detail.token)}: ` }), `${describeValue(from)} → ${describeValue(to)}`)),
        )
      : null;
  const extra = event.action === "token.rolled" && event.changes.previous_value_expires_at
    ? ` (previous value until ${describeValue(event.changes.previous_value_expires_at.to)})`
    : "";
  return el(
    "li",
    {},
    el("span", { class: "history-head" }, el("strong", { text: ACTIONS[event.action] || event.action }), extra, " by ", el("span", { text: event.actor.user }), " · ", timeEl(event.at)),
    changes,
  );
}

// ---------------------------------------------------------------- confirm, delete, roll

function confirmDialog({ title, text, confirm }) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-yes").textContent = confirm;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

async function deleteToken() {
  const { token } = state.detail;
  const yes = await confirmDialog({
    title: `Delete “${token.name}”?`,
    text: "It stops working at once, everywhere it is used, and cannot be recovered. Make sure no app still uses it.",
    confirm: "Delete token",
  });
  if (!yes) {
    $("#detail-delete").focus();
    return;
  }
  try {
    await api("DELETE", `/v3/tokens/${encodeURIComponent(token.id)}`);
  } catch (e) {
    if (e.status === 404) {
      toast(`“${token.name}” was already deleted.`);
    } else {
      if (e.status !== 401) toast(`Could not delete “${token.name}”: ${e.message}`, "error");
      $("#detail-delete").focus();
      return;
    }
  }
  state.tokens = state.tokens.filter((t) => t.id !== token.id);
  toast(`Token “${token.name}” deleted.`);
  go("#/");
}

function openRoll() {
  $("#roll-error").textContent = "";
  $("#roll-form").reset();
  $("#roll-dialog").showModal();
  $('#roll-form input[name="grace"]:checked').focus();
}

async function roll(event) {
  event.preventDefault();
  const { token, etag } = state.detail;
  const grace = Number($('#roll-form input[name="grace"]:checked').value);
  const button = $("#roll-confirm");
  button.disabled = true;
  try {
    const headers = etag ? { "If-Match": etag } : {};
    const { body } = await api("POST", `/v3/tokens/${encodeURIComponent(token.id)}/roll`, { body: { grace_seconds: grace }, headers });
    $("#roll-dialog").close();
    upsertToken(body);
    toast(`New value for “${body.name}”.`);
    state.notice = { id: body.id, kind: "rolled" };
    await openDetail(body.id);
  } catch (e) {
    if (e.status === 401) return;
    const details = e.body.details ? e.body.details.map((d) => d.message).join(" ") : "";
    $("#roll-error").textContent =
      e.status === 412 ? "The token changed since you opened it. Close this, and the page shows it as it is now." : `Could not roll: ${details || e.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- the wizard

let grantCounter = 0;

function chosenApis() {
  return $$('input[name="api"]:checked').map((box) => box.value);
}

function grantKind(item) {
  return $('input[type="radio"]:checked', item).value;
}

function grantSource(item) {
  const kind = grantKind(item);
  if (kind === "all") return "*";
  if (kind === "query") return $(".grant-source-query", item).value;
  return $(".grant-source-line", item).value;
}

function grantInput(item) {
  return grantKind(item) === "query" ? $(".grant-source-query", item) : $(".grant-source-line", item);
}

function describeGrant(item) {
  const kind = grantKind(item);
  const feedback = $(".grant-feedback", item);
  const serves = SERVES[kind];
  const chosen = chosenApis().filter((a) => a !== "lds");
  const useful = chosen.filter((a) => serves.includes(a));
  let text = `${KIND_LABELS[kind]} grants serve the ${serves.map((a) => API_SHORT[a]).join(", ")} APIs.`;
  if (chosen.length && !useful.length) text += " None of the APIs you chose can use it.";
  if (kind === "all") text += " Careful: the token can read every source of this connection, including tables created later.";
  feedback.textContent = text;
}

function syncGrantKind(item) {
  const kind = grantKind(item);
  const line = $(".grant-source-line", item);
  const query = $(".grant-source-query", item);
  const label = $(".grant-source-label", item);
  $(".grant-source-field", item).hidden = kind === "all";
  line.hidden = kind === "query";
  query.hidden = kind !== "query";
  label.htmlFor = kind === "query" ? query.id : line.id;
  label.textContent = { table: "Fully qualified name", pattern: "Pattern", query: "Query text", all: "" }[kind];
  line.placeholder = kind === "pattern" ? "my-project.dataset.prefix_*" : "my-project.dataset.table";
  clearGrantError(item);
  describeGrant(item);
}

function clearGrantError(item) {
  $(".grant-error", item).textContent = "";
  $(".grant-question", item).hidden = true;
  for (const field of $$("[aria-invalid]", item)) field.removeAttribute("aria-invalid");
  settleFormMessage();
}

function addGrant(grant = { connection_name: state.connections[0]?.name || "", source: "" }) {
  const item = $("#grant-template").content.firstElementChild.cloneNode(true);
  grantCounter += 1;
  const n = grantCounter;
  const select = $(".grant-connection", item);
  select.id = `grant-${n}-connection`;
  $(".grant-connection-label", item).htmlFor = select.id;
  for (const connection of state.connections) {
    select.append(el("option", { value: connection.name, text: `${connection.name} (${connection.provider})` }));
  }
  if (grant.connection_name && !state.connections.some((c) => c.name === grant.connection_name)) {
    select.append(el("option", { value: grant.connection_name, text: `${grant.connection_name} (gone)` }));
  }
  select.value = grant.connection_name;
  $(".grant-kind legend", item).id = `grant-${n}-kind-legend`;
  for (const radio of $$('input[type="radio"]', item)) {
    radio.name = `grant-${n}-kind`;
    radio.addEventListener("change", () => {
      // The text typed for one kind follows to the other editor.
      const from = radio.value === "query" ? $(".grant-source-line", item) : $(".grant-source-query", item);
      const to = radio.value === "query" ? $(".grant-source-query", item) : $(".grant-source-line", item);
      if (!to.value && from.value && radio.value !== "all") to.value = from.value;
      syncGrantKind(item);
    });
  }
  const line = $(".grant-source-line", item);
  const query = $(".grant-source-query", item);
  line.id = `grant-${n}-line`;
  query.id = `grant-${n}-query`;
  $(".grant-error", item).id = `grant-${n}-error`;
  $(".grant-question-text", item).id = `grant-${n}-question`;
  $(".grant-feedback", item).id = `grant-${n}-feedback`;
  for (const input of [line, query]) input.setAttribute("aria-describedby", `grant-${n}-error grant-${n}-question grant-${n}-feedback`);
  select.setAttribute("aria-describedby", `grant-${n}-error`);
  if (grant.source) {
    const kind = classify(grant.source).kind || "query";
    $(`input[value="${kind}"]`, item).checked = true;
    if (kind === "query") query.value = grant.source;
    else if (kind !== "all") line.value = grant.source;
  }
  for (const input of [line, query, select]) input.addEventListener("input", () => clearGrantError(item));
  $(".grant-switch", item).addEventListener("click", () => {
    const to = $(".grant-switch", item).dataset.kind;
    const radio = $(`input[value="${to}"]`, item);
    radio.checked = true;
    radio.dispatchEvent(new Event("change"));
    grantInput(item).focus();
  });
  $(".remove-grant", item).addEventListener("click", () => {
    const list = $$(".grant");
    const next = list[list.indexOf(item) + 1] || list[list.indexOf(item) - 1];
    item.remove();
    renumberGrants();
    if (next) $(".remove-grant", next).focus();
    else $("#add-grant").focus();
  });
  $("#grant-list").append(item);
  renumberGrants();
  syncGrantKind(item);
  return item;
}

// Each grant's remove button and legend say which grant they belong to.
function renumberGrants() {
  $$(".grant").forEach((item, i) => {
    $(".remove-grant .visually-hidden", item).textContent = ` grant ${i + 1}`;
    $(".grant-kind legend", item).textContent = `Kind of grant ${i + 1}`;
    $(".grant-connection-label", item).textContent = `Connection`;
  });
}

// The Imports rule (V2) and the policy's APIs, enforced as the user clicks.
function syncApis() {
  const allowed = state.policy && state.policy.allowed_apis;
  const imports = $('input[name="api"][value="imports"]');
  for (const box of $$('input[name="api"]')) {
    const barred = allowed && !allowed.includes(box.value);
    if (barred) box.checked = false;
    box.disabled = Boolean(barred) || (box !== imports && imports.checked);
    if (box !== imports && imports.checked) box.checked = false;
    box.closest("label").classList.toggle("barred", Boolean(barred));
  }
  $("#imports-note").hidden = !imports.checked;
  $("#apis-error").textContent = "";
  $("#apis-fieldset").removeAttribute("aria-invalid");
  for (const item of $$(".grant")) describeGrant(item);
  syncReferersRequired();
  settleFormMessage();
}

function syncReferersRequired() {
  const required = Boolean(state.policy && state.policy.require_referers) && chosenApis().some((a) => a !== "imports");
  $("#referers-optional").textContent = required ? "(required by your organization)" : "(optional)";
}

function splitList(text) {
  return text
    .split(/[\n,]/)
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
}

function checkReferers() {
  const warning = $("#referers-warning");
  const withPath = splitList($("#token-referers").value).filter((r) => {
    const rest = r.replace(/^[a-z]+:\/\//i, "");
    const slash = rest.indexOf("/");
    return slash >= 0 && rest.slice(slash) !== "/";
  });
  warning.hidden = withPath.length === 0;
  warning.textContent = withPath.length
    ? `Careful with paths (${withPath.join(", ")}): browsers usually send only the origin, such as https://example.com/, to other sites, so such a website may be refused.`
    : "";
}

const FIELD_INPUTS = {
  name: ["#token-name", "#token-name-error"],
  referers: ["#token-referers", "#referers-error"],
  allowed_ips: ["#token-ips", "#ips-error"],
  expiration_date: ["#expiry-choice", "#expiration-error"],
  allowed_apis: ["#apis-fieldset", "#apis-error"],
};

function clearField(name) {
  const [input, error] = FIELD_INPUTS[name];
  $(error).textContent = "";
  $(input).removeAttribute("aria-invalid");
  if (name === "expiration_date") $("#token-expiration").removeAttribute("aria-invalid");
  settleFormMessage();
}

function clearErrors() {
  for (const error of $$("#token-form .error")) error.textContent = "";
  for (const q of $$("#token-form .question")) q.hidden = true;
  for (const field of $$("#token-form [aria-invalid]")) field.removeAttribute("aria-invalid");
  setFormMessage("");
}

function setFormMessage(text, kind = "error") {
  const box = $("#form-message");
  box.textContent = text;
  box.className = `form-message ${text ? kind : ""}`;
}

// When the user fixes the last marked field, the summary goes too.
function settleFormMessage() {
  const box = $("#form-message");
  if (!box.classList.contains("error")) return;
  const left = $$("#token-form [aria-invalid]").length + $$("#token-form .question:not([hidden])").length;
  if (left === 0) setFormMessage("");
  else box.textContent = countMessage(left);
}

function countMessage(n) {
  return n === 1 ? "One field needs your attention; it is marked above." : `${n} fields need your attention; they are marked above.`;
}

// Places each server violation next to its field (details[].field).
function placeErrors(details) {
  const grants = $$(".grant");
  const mark = (input, error, message) => {
    if (error) error.textContent = error.textContent ? `${error.textContent} ${message}` : message;
    if (input) input.setAttribute("aria-invalid", "true");
  };
  for (const detail of details) {
    const field = detail.field || "";
    const message = capital(detail.message);
    let match;
    if ((match = field.match(/^grants\[(\d+)\](?:\.(\w+))?$/)) && grants[Number(match[1])]) {
      const item = grants[Number(match[1])];
      mark(match[2] === "connection_name" ? $(".grant-connection", item) : grantInput(item), $(".grant-error", item), message);
    } else if (field.startsWith("grants")) {
      mark($("#grants-fieldset"), $("#grants-error"), message);
    } else {
      const key = Object.keys(FIELD_INPUTS).find((k) => field === k || field.startsWith(`${k}[`));
      if (key) {
        const [input, error] = FIELD_INPUTS[key];
        const prefix = field !== key ? `${splitAt(key, field)}: ` : "";
        mark($(input), $(error), prefix + message);
      } else {
        setFormMessage(`${field}: ${message}`);
      }
    }
  }
}

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : "";
}

function splitAt(key, field) {
  const index = Number((field.match(/\[(\d+)\]/) || [])[1]);
  const source = key === "referers" ? splitList($("#token-referers").value) : key === "allowed_ips" ? splitList($("#token-ips").value) : [];
  return source[index] || field;
}

function firstInvalid() {
  const marked = $$("#token-form [aria-invalid], #token-form .question:not([hidden])")[0];
  if (!marked) return null;
  if (marked.classList.contains("question")) return grantInput(marked.closest(".grant"));
  if (marked.tagName === "FIELDSET") return $("input:not(:disabled), select", marked) || marked;
  return marked;
}

function setupExpiry() {
  const choice = $("#expiry-choice");
  const days = state.policy && state.policy.max_lifetime_days;
  for (const option of $$("option[data-policy]", choice)) option.remove();
  if (days && !$$("option", choice).some((o) => o.value === String(days))) {
    choice.insertBefore(el("option", { value: String(days), "data-policy": "1", text: `${days} days` }), $('option[value="never"]', choice));
  }
  for (const option of $$("option", choice)) {
    const n = Number(option.value);
    option.disabled = Boolean(days) && (option.value === "never" || (Number.isFinite(n) && n > days));
    option.textContent = option.textContent.replace(/ \(the longest allowed\)$/, "");
    if (days && n === days) option.textContent += " (the longest allowed)";
  }
  choice.value = days ? String(days) : "30";
  const input = $("#token-expiration");
  input.min = toLocalInput(new Date(Date.now() + 60e3).toISOString());
  input.max = days ? toLocalInput(new Date(Date.now() + days * DAY_MS).toISOString()) : "";
  input.value = "";
  syncExpiry();
}

function syncExpiry() {
  const custom = $("#expiry-choice").value === "custom";
  $("#token-expiration").hidden = !custom;
  $("#custom-expiration-label").hidden = !custom;
  const days = state.policy && state.policy.max_lifetime_days;
  $("#expiration-help").textContent = days
    ? `Your organization allows tokens to live at most ${days} days. The expiration can be set only now, when the token is created.`
    : "The expiration can be set only now, when the token is created.";
}

function expirationValue() {
  const choice = $("#expiry-choice").value;
  if (choice === "never") return null;
  if (choice === "custom") {
    const value = $("#token-expiration").value;
    return value ? new Date(value).toISOString() : "";
  }
  return new Date(Date.now() + Number(choice) * DAY_MS).toISOString();
}

function renderPolicyNote() {
  const policy = state.policy;
  const items = [];
  if (policy) {
    if (policy.max_lifetime_days) items.push(`Tokens live at most ${policy.max_lifetime_days} days.`);
    if (policy.allowed_apis) items.push(`Tokens may allow only: ${policy.allowed_apis.map((a) => API_NAMES[a]).join(", ")}.`);
    if (policy.require_referers) items.push("Tokens for the SQL, Maps and LDS APIs must name allowed websites.");
  }
  $("#policy-note").hidden = items.length === 0;
  $("#policy-note-list").replaceChildren(...items.map((t) => el("li", { text: t })));
}

async function refreshPolicy() {
  try {
    const { body } = await api("GET", "/v3/org/policy");
    state.policy = body;
  } catch (e) {
    if (e.status === 401) throw e;
    // The last policy read stays; the server checks it anyway.
  }
}

function resetForm() {
  $("#token-form").reset();
  clearErrors();
  $("#grant-list").replaceChildren();
  const none = state.connections.length === 0;
  $("#no-connections").hidden = !none;
  $("#add-grant").hidden = none;
  renderPolicyNote();
  syncApis();
  checkReferers();
}

async function openCreate() {
  state.editing = null;
  await refreshPolicy();
  resetForm();
  $("#form-title").textContent = "Create token";
  $("#save-button").textContent = "Create token";
  $("#expiry-choice").disabled = false;
  setupExpiry();
  if (state.connections.length) addGrant();
  show("form-view");
  focusHeading("#form-title");
}

async function openEdit(id) {
  let loaded;
  try {
    loaded = await fetchToken(id);
    await refreshPolicy();
  } catch (e) {
    if (e.status !== 401) toast(`Could not open the token: ${e.message}`, "error");
    return;
  }
  const { token, etag } = loaded;
  state.editing = { id, etag, token };
  state.returnTo = `#/token/${encodeURIComponent(id)}`;
  resetForm();
  $("#form-title").textContent = `Edit “${token.name}”`;
  $("#save-button").textContent = "Save changes";
  $("#token-name").value = token.name;
  for (const box of $$('input[name="api"]')) box.checked = token.allowed_apis.includes(box.value);
  syncApis();
  for (const box of $$('input[name="api"]')) if (token.allowed_apis.includes(box.value)) box.checked = true;
  for (const grant of token.grants) addGrant(grant);
  $("#token-referers").value = token.referers.join("\n");
  $("#token-ips").value = token.allowed_ips.join("\n");
  checkReferers();
  const choice = $("#expiry-choice");
  for (const option of $$("option[data-policy]", choice)) option.remove();
  if (token.expiration_date) {
    choice.value = "custom";
    $("#token-expiration").value = toLocalInput(token.expiration_date);
  } else {
    choice.value = "never";
  }
  choice.disabled = true;
  syncExpiry();
  $("#token-expiration").hidden = true;
  $("#custom-expiration-label").hidden = true;
  $("#expiration-help").textContent = token.expiration_date
    ? `Expires ${fullTime(token.expiration_date)}. The expiration was set at creation and cannot change.`
    : "This token never expires. An expiration can only be set when a token is created.";
  show("form-view");
  focusHeading("#form-title");
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
    grants: $$(".grant").map((item) => ({ connection_name: $(".grant-connection", item).value, source: grantSource(item) })),
    referers: splitList($("#token-referers").value),
    allowed_ips: splitList($("#token-ips").value),
  };
  if (!state.editing) {
    const expiration = expirationValue();
    if (expiration) body.expiration_date = expiration;
  }
  return body;
}

// The checks the page can make before asking the server: the grant kinds
// the user chose against the server's reading, and the expiration against
// the policy. Returns how many problems were marked.
function checkBeforeSave() {
  let problems = 0;
  for (const item of $$(".grant")) {
    const kind = grantKind(item);
    if (kind === "all") continue;
    const source = grantSource(item);
    const result = classify(source);
    const input = grantInput(item);
    if (result.error) {
      $(".grant-error", item).textContent = result.error;
      input.setAttribute("aria-invalid", "true");
      problems += 1;
    } else if (result.kind !== kind) {
      const question = $(".grant-question", item);
      $(".grant-question-text", item).textContent = mismatch(kind, source, result);
      const button = $(".grant-switch", item);
      button.dataset.kind = result.kind;
      button.textContent = `Save it as ${KIND_WORDS[result.kind]}`;
      question.hidden = false;
      input.setAttribute("aria-invalid", "true");
      problems += 1;
    }
  }
  if (!state.editing) {
    const expiration = expirationValue();
    const days = state.policy && state.policy.max_lifetime_days;
    let message = "";
    if (expiration === "") message = "Choose the date and time the token expires.";
    else if (expiration && Date.parse(expiration) <= Date.now()) message = "The expiration must be in the future.";
    else if (expiration && days && Date.parse(expiration) > Date.now() + days * DAY_MS) message = `Your organization allows at most ${days} days.`;
    if (message) {
      $("#expiration-error").textContent = message;
      const target = $("#expiry-choice").value === "custom" ? $("#token-expiration") : $("#expiry-choice");
      target.setAttribute("aria-invalid", "true");
      problems += 1;
    }
  }
  return problems;
}

async function save(event) {
  event.preventDefault();
  clearErrors();
  const button = $("#save-button");
  if (checkBeforeSave()) {
    setFormMessage(countMessage($$("#token-form [aria-invalid]").length));
    firstInvalid()?.focus();
    return;
  }
  const body = formBody();
  button.disabled = true;
  const label = button.textContent;
  button.textContent = state.editing ? "Saving…" : "Creating…";
  setFormMessage("");
  try {
    let saved;
    if (state.editing) {
      const headers = state.editing.etag ? { "If-Match": state.editing.etag } : {};
      ({ body: saved } = await api("PATCH", `/v3/tokens/${encodeURIComponent(state.editing.id)}`, { body, headers }));
      toast(`Token “${saved.name}” saved.`);
      state.notice = { id: saved.id, kind: "saved" };
    } else {
      if (body.name === null) delete body.name;
      ({ body: saved } = await api("POST", "/v3/tokens", { body }));
      toast(`Token “${saved.name}” created.`);
      state.notice = { id: saved.id, kind: "created" };
    }
    upsertToken(saved);
    state.editing = null;
    go(`#/token/${encodeURIComponent(saved.id)}`);
  } catch (e) {
    if (e.status === 401) return;
    if (Array.isArray(e.body.details)) {
      placeErrors(e.body.details);
      setFormMessage(countMessage(Math.max(1, $$("#token-form [aria-invalid]").length)));
      (firstInvalid() || $("#form-message")).focus();
    } else if (e.status === 412) {
      setFormMessage("Someone changed this token since you opened it, so nothing was saved. Reload it to see the current version, then make your change again.");
      const reload = el("button", { type: "button", class: "small", text: "Reload the token" });
      reload.addEventListener("click", guard(() => openEdit(state.editing.id)));
      $("#form-message").append(" ", reload);
      toast("Not saved: the token was changed elsewhere.", "error");
      $("#form-message").focus();
    } else if (e.code === "name_taken") {
      $("#token-name-error").textContent = "You already have a token with this name. Choose another.";
      $("#token-name").setAttribute("aria-invalid", "true");
      setFormMessage(countMessage(1));
      $("#token-name").focus();
    } else {
      setFormMessage(`Nothing was saved: ${e.message}`);
      $("#form-message").focus();
    }
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function cancelForm() {
  const back = state.editing ? `#/token/${encodeURIComponent(state.editing.id)}` : "#/";
  state.editing = null;
  go(back);
}

// ---------------------------------------------------------------- tester

function openTester() {
  const { token } = state.detail;
  const connection = $("#tester-connection");
  const names = new Set([...state.connections.map((c) => c.name), ...token.grants.map((g) => g.connection_name)]);
  connection.replaceChildren(...[...names].map((name) => el("option", { value: name, text: name })));
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
  $("#tester-ip").value = token.allowed_ips[0] ? token.allowed_ips[0].replace(/\/\d+$/, "") : "";
  $("#tester-result").textContent = "";
  $("#tester-result").className = "result";
  syncTester();
  $("#tester-dialog").showModal();
}

function exampleReferer(pattern) {
  let text = pattern.replace(/^(https?:\/\/)?\*\./, "$1www.");
  if (!/^[a-z]+:\/\//i.test(text)) text = `https://${text}`;
  return text.replace(/:\*/, "");
}

function syncTester() {
  for (const node of $$(".tester-target")) node.hidden = $("#tester-api").value === "lds";
}

async function runTest(event) {
  event.preventDefault();
  const result = $("#tester-result");
  const { token } = state.detail;
  const request = { token: token.token, api: $("#tester-api").value, dry_run: true };
  if (request.api !== "lds") {
    request.connection_name = $("#tester-connection").value;
    request.source_type = $("#tester-kind").value;
    request.source = $("#tester-source").value;
  }
  const referer = $("#tester-referer").value.trim();
  if (referer) request.referer = referer;
  const ip = $("#tester-ip").value.trim();
  if (ip) request.client_ip = ip;
  result.className = "result";
  result.textContent = "Asking…";
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
    const details = Array.isArray(e.body.details) ? e.body.details.map((d) => `${d.field}: ${d.message}`) : [];
    result.textContent = details.length ? `The request is incomplete: ${details.join("; ")}` : `Could not ask: ${e.message}`;
  }
}

// ---------------------------------------------------------------- org admin

async function loadOrg({ append = false } = {}) {
  const owner = $("#org-owner").value.trim();
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (owner) query.set("owner", owner);
  if (append && state.org.nextCursor) query.set("cursor", state.org.nextCursor);
  $("#org-table").setAttribute("aria-busy", "true");
  try {
    const { body } = await api("GET", `/v3/org/tokens?${query}`);
    state.org.tokens = append ? [...state.org.tokens, ...body.data] : body.data;
    state.org.nextCursor = body.next_cursor;
    state.org.owner = owner;
  } finally {
    $("#org-table").removeAttribute("aria-busy");
  }
  learnName();
}

// The page has no "who am I" endpoint; an admin's org list names the owner
// of the user's own tokens, which is the user's name.
function learnName() {
  if (state.me) return;
  const mine = new Set(state.tokens.map((t) => t.id));
  const hit = state.org.tokens.find((t) => mine.has(t.id));
  if (hit) {
    state.me = hit.owner;
    showWho();
  }
}

function renderOrg() {
  const text = $("#org-text").value.trim().toLowerCase();
  const status = $("#org-status").value;
  const visible = state.org.tokens.filter((t) => matchesText(t, text, t.owner) && matchesStatus(t, status));
  $("#org-rows").replaceChildren(...(visible.length ? visible.map(orgRow) : [messageRow(7, state.org.tokens.length ? "No loaded token matches." : "No tokens.", false)]));
  $("#org-summary").textContent = `${visible.length} of ${state.org.tokens.length} loaded tokens${state.org.owner ? ` owned by ${state.org.owner}` : ""}.`;
  $("#org-more").hidden = !state.org.nextCursor;
}

function orgRow(token) {
  const revoke = el("button", { type: "button", class: "quiet small danger", text: "Revoke", "aria-label": `Revoke ${token.name} of ${token.owner}` });
  revoke.addEventListener("click", guard(() => revokeToken(token, revoke)));
  const name = el("td", { class: "name-cell", "data-label": "Name" }, el("span", { class: "strong", text: token.name }), el("span", { class: "sub mono", text: token.id }));
  if (token.warnings.length) name.append(el("span", { class: "warn-mark", text: `⚠ ${token.warnings.length} warning${token.warnings.length > 1 ? "s" : ""}`, title: token.warnings.map((w) => w.message).join("\n") }));
  return el(
    "tr",
    { "data-id": token.id },
    el("td", { "data-label": "Owner", text: token.owner }),
    name,
    el("td", { "data-label": "APIs" }, apiChips(token)),
    el("td", { "data-label": "Status" }, statusBlock(token)),
    el("td", { "data-label": "Last used" }, timeEl(token.last_used_at)),
    el("td", { "data-label": "Created" }, timeEl(token.created_at)),
    el("td", { class: "row-actions" }, revoke),
  );
}

async function revokeToken(token, button) {
  const yes = await confirmDialog({
    title: `Revoke “${token.name}” of ${token.owner}?`,
    text: "It stops working at once, everywhere it is used. The owner sees the revocation in the token's history. This cannot be undone.",
    confirm: "Revoke token",
  });
  if (!yes) {
    button.focus();
    return;
  }
  const rows = $$("#org-rows tr");
  const index = rows.findIndex((r) => r.dataset.id === token.id);
  try {
    await api("DELETE", `/v3/org/tokens/${encodeURIComponent(token.id)}`);
  } catch (e) {
    if (e.status !== 404) {
      if (e.status !== 401) toast(`Could not revoke “${token.name}”: ${e.message}`, "error");
      button.focus();
      return;
    }
  }
  state.org.tokens = state.org.tokens.filter((t) => t.id !== token.id);
  state.tokens = state.tokens.filter((t) => t.id !== token.id);
  toast(`Token “${token.name}” of ${token.owner} revoked.`);
  renderOrg();
  const after = $$("#org-rows tr")[Math.min(index, $$("#org-rows tr").length - 1)];
  const next = after && $("button", after);
  if (next) next.focus();
  else focusHeading("#org-tokens-title");
}

function renderPolicyForm() {
  const policy = state.policy || { max_lifetime_days: null, require_referers: false, allowed_apis: null };
  $("#policy-days").value = policy.max_lifetime_days ?? "";
  $("#policy-referers").checked = policy.require_referers;
  for (const box of $$('input[name="policy-api"]')) box.checked = Boolean(policy.allowed_apis && policy.allowed_apis.includes(box.value));
  $("#policy-days-error").textContent = "";
  $("#policy-days").removeAttribute("aria-invalid");
}

async function savePolicy(event) {
  event.preventDefault();
  const message = $("#policy-message");
  const days = $("#policy-days");
  $("#policy-days-error").textContent = "";
  days.removeAttribute("aria-invalid");
  message.textContent = "";
  const raw = days.value.trim();
  const n = Number(raw);
  if (raw && (!Number.isInteger(n) || n < 1 || n > 36500)) {
    $("#policy-days-error").textContent = "Enter a whole number of days from 1 to 36500, or leave it empty.";
    days.setAttribute("aria-invalid", "true");
    days.focus();
    return;
  }
  const apis = $$('input[name="policy-api"]:checked').map((b) => b.value);
  const body = { max_lifetime_days: raw ? n : null, require_referers: $("#policy-referers").checked, allowed_apis: apis.length ? apis : null };
  const button = $("#policy-save");
  button.disabled = true;
  try {
    ({ body: state.policy } = await api("PUT", "/v3/org/policy", { body }));
    message.textContent = "Policy saved.";
    message.className = "inline-message ok";
    toast("Token policy saved.");
    // Tokens that break the new policy now carry a warning.
    await loadOrg();
    renderOrg();
  } catch (e) {
    if (e.status === 401) return;
    const details = Array.isArray(e.body.details) ? e.body.details.map((d) => capital(d.message)).join(" ") : "";
    message.textContent = `Not saved: ${details || e.message}`;
    message.className = "inline-message error";
  } finally {
    button.disabled = false;
  }
}

async function openOrg() {
  show("org-view");
  state.returnTo = "#/org";
  focusHeading("#org-title");
  renderPolicyForm();
  $("#org-rows").replaceChildren(loadingRow(7));
  try {
    await refreshPolicy();
    renderPolicyForm();
    await loadOrg();
  } catch (e) {
    if (e.status === 401) return;
    $("#org-rows").replaceChildren(messageRow(7, `The organization's tokens could not be loaded: ${e.message}`, false));
    toast(e.message, "error");
    return;
  }
  renderOrg();
}

// ---------------------------------------------------------------- start

function wire() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#user-key").addEventListener("input", () => {
    $("#user-key-error").textContent = "";
    $("#user-key").removeAttribute("aria-invalid");
  });
  $("#sign-out").addEventListener("click", () => {
    signOut("");
    toast("Signed out. The key is gone from this tab.");
  });
  $("#create-button").addEventListener("click", () => go("#/new"));
  $("#empty-create").addEventListener("click", () => go("#/new"));
  for (const id of ["#filter-text", "#filter-api", "#filter-connection", "#filter-status"]) {
    $(id).addEventListener("input", renderList);
  }
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#sort-select").addEventListener("change", () => {
    const [key, dir] = $("#sort-select").value.split(":");
    state.sort = { key, dir };
    renderList();
  });
  for (const th of $$("#token-table th[data-sort]")) $("button", th).addEventListener("click", () => sortBy(th.dataset.sort));
  $("#clear-filters").addEventListener("click", () => {
    $("#filters").reset();
    renderList();
    $("#filter-text").focus();
  });
  const more = (all) =>
    guard(async () => {
      const before = state.tokens.length;
      const button = all ? $("#load-all") : $("#load-more");
      button.disabled = true;
      try {
        await loadTokens({ append: true, all });
      } finally {
        button.disabled = false;
      }
      renderList();
      const row = $$("#token-rows tr")[before];
      if (row && !filters().text) $("a", row)?.focus();
      else $("#filter-text").focus();
    });
  $("#load-more").addEventListener("click", more(false));
  $("#load-all").addEventListener("click", more(true));

  $("#detail-copy").addEventListener("click", () => copyText($("#detail-copy"), state.detail.token.token));
  $("#detail-reveal").addEventListener("click", () => {
    state.reveal = !state.reveal;
    renderDetail();
  });
  $("#detail-edit").addEventListener("click", () => go(`#/token/${encodeURIComponent(state.detail.token.id)}/edit`));
  $("#detail-roll").addEventListener("click", openRoll);
  $("#detail-test").addEventListener("click", openTester);
  $("#detail-delete").addEventListener("click", guard(deleteToken));
  $("#history-more").addEventListener("click", guard(() => loadHistory(state.detail.token.id, true)));
  $("#roll-form").addEventListener("submit", guard(roll));
  $("#roll-cancel").addEventListener("click", () => $("#roll-dialog").close());
  $("#roll-dialog").addEventListener("close", () => $("#detail-roll").focus());

  $("#add-grant").addEventListener("click", () => {
    const item = addGrant();
    $(".grant-connection", item).focus();
  });
  $("#cancel-button").addEventListener("click", cancelForm);
  $("#token-form").addEventListener("submit", guard(save));
  for (const box of $$('input[name="api"]')) box.addEventListener("change", syncApis);
  $("#token-name").addEventListener("input", () => clearField("name"));
  $("#token-referers").addEventListener("input", () => {
    clearField("referers");
    checkReferers();
  });
  $("#token-ips").addEventListener("input", () => clearField("allowed_ips"));
  $("#expiry-choice").addEventListener("change", () => {
    clearField("expiration_date");
    syncExpiry();
    if ($("#expiry-choice").value === "custom") $("#token-expiration").focus();
  });
  $("#token-expiration").addEventListener("input", () => clearField("expiration_date"));

  $("#tester-form").addEventListener("submit", guard(runTest));
  $("#tester-api").addEventListener("change", syncTester);
  $("#tester-close").addEventListener("click", () => $("#tester-dialog").close());
  $("#tester-dialog").addEventListener("close", () => $("#detail-test").focus());

  $("#org-filters").addEventListener("submit", (e) => e.preventDefault());
  $("#org-text").addEventListener("input", renderOrg);
  $("#org-status").addEventListener("input", renderOrg);
  let ownerTimer = null;
  $("#org-owner").addEventListener("input", () => {
    clearTimeout(ownerTimer);
    ownerTimer = setTimeout(guard(async () => {
      await loadOrg();
      renderOrg();
    }), 300);
  });
  $("#org-more").addEventListener("click", guard(async () => {
    const before = state.org.tokens.length;
    await loadOrg({ append: true });
    renderOrg();
    $("button", $$("#org-rows tr")[before] || $("#org-rows"))?.focus();
  }));
  $("#policy-form").addEventListener("submit", guard(savePolicy));

  window.addEventListener("hashchange", guard(route));
  window.addEventListener("online", () => setOffline(false));
  window.addEventListener("offline", () => setOffline(true));
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    toast(`Something went wrong: ${event.reason && event.reason.message ? event.reason.message : event.reason}`, "error");
  });
}

async function start() {
  wire();
  const key = userKey();
  if (!key) {
    show("sign-in-view");
    return;
  }
  try {
    await loadSession(key);
    state.signedIn = true;
    showWho();
    await route();
  } catch (e) {
    if (e.status === 401) {
      signOut("Your key is no longer accepted. Sign in again.");
      return;
    }
    show("sign-in-view");
    $("#user-key").value = key;
    $("#user-key-error").textContent = `Could not reach latchkey: ${e.message}`;
  }
}

start();
