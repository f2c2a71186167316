// The web page's only script: no framework, no build step, nothing from other origins.
// It calls POST ../classify like any client and shows what the service answers.
"use strict";

const API = new URL("../classify", document.baseURI);
const DOCS = new URL("../docs.json", document.baseURI);
const KEY_STORAGE = "sentiment-api-key";
const TIMEOUT_MS = 60000;

const EXAMPLES = {
  reviews: [
    "A moving, beautifully acted film that stays with you.",
    "Dull, predictable and far too long.",
    "The cast is terrific and the script is sharp and funny.",
    "A tedious mess with nothing new to say.",
    "Gorgeous to look at, and the story earns every tear.",
    "The jokes fall flat and the plot makes no sense.",
    "Not as good as the first one, but still worth a look.",
  ],
  positive: ["Great fun from start to finish, with a wonderful cast."],
  negative: ["A boring, lifeless film that wastes its talented cast."],
};

const $ = (id) => document.getElementById(id);
const form = $("classify-form");
const textsBox = $("texts");
const keyRow = $("key-row");
const keyBox = $("api-key");
const classifyButton = $("classify");
const errorBox = $("error");
const output = $("output");
const limits = { maxItems: null, maxChars: null };
let busy = false;

// ---- input -------------------------------------------------------------------------------

/** The texts to send (non-empty lines) and the line number of each, 1-based. */
function readTexts() {
  const texts = [];
  const lines = [];
  textsBox.value.split(/\r\n|\r|\n/).forEach((line, i) => {
    if (line.trim() !== "") {
      texts.push(line);
      lines.push(i + 1);
    }
  });
  return { texts, lines };
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function updateCount() {
  const n = readTexts().texts.length;
  const lines = textsBox.value.split("\n").length;
  textsBox.rows = Math.min(16, Math.max(6, lines + 1)); // grow with the texts, then scroll
  let shown = plural(n, "text");
  if (limits.maxItems !== null) shown += ` (at most ${limits.maxItems})`;
  $("text-count").textContent = shown;
}

/** Read MAX_ITEMS / MAX_TEXT_CHARS from the service's OpenAPI spec, for the hint only: the
 * service itself says what is wrong with a request. */
async function loadLimits() {
  try {
    const response = await fetch(DOCS, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const spec = await response.json();
    const texts = findTextsSchema(spec);
    if (!texts) return;
    limits.maxItems = texts.maxItems ?? null;
    limits.maxChars = texts.items?.maxLength ?? null;
    if (limits.maxChars !== null) {
      $("limits").textContent = `one text per line, at most ${limits.maxChars} characters each`;
    }
    updateCount();
  } catch {
    // The hint stays generic; classifying does not depend on it.
  }
}

function findTextsSchema(spec) {
  const resolve = (node) => {
    if (node && node.$ref) {
      return node.$ref.split("/").slice(1).reduce((at, key) => at?.[key], spec);
    }
    return node;
  };
  const body = spec?.paths?.["/classify"]?.post?.requestBody?.content?.["application/json"];
  const schema = resolve(body?.schema);
  const texts = resolve(schema?.properties?.texts);
  if (!texts) return null;
  return { ...texts, items: resolve(texts.items) };
}

// ---- API key -----------------------------------------------------------------------------

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function storeKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage disabled: the key lives in the field only.
  }
}

function showKeyField() {
  keyRow.hidden = false;
}

// ---- calling the API ---------------------------------------------------------------------

async function classify() {
  if (busy) return;
  const { texts, lines } = readTexts();
  if (texts.length === 0) {
    showError({ title: "Nothing to classify", message: "Type or paste at least one text." });
    textsBox.focus();
    return;
  }
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const key = keyBox.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;

  setBusy(true);
  const started = performance.now();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let response;
  let body;
  try {
    response = await fetch(API, {
      method: "POST",
      headers,
      body: JSON.stringify({ texts }),
      signal: abort.signal,
    });
    body = await response.text();
  } catch (err) {
    const why = err.name === "AbortError" ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message;
    showError({ title: "Could not reach the service", message: `${why} (${API.href})` });
    return;
  } finally {
    clearTimeout(timer);
    setBusy(false);
  }
  const browserMs = performance.now() - started;
  const meta = {
    requestId: response.headers.get("X-Request-ID"),
    serverMs: response.headers.get("X-Total-Time"),
    browserMs,
    count: texts.length,
  };
  let data = null;
  try {
    data = JSON.parse(body);
  } catch {
    // Not JSON (e.g. a proxy's HTML page): shown as text below.
  }
  if (!response.ok) {
    if (response.status === 401) {
      showKeyField();
      keyBox.focus();
    }
    showError(apiError(response, data, body, lines), meta);
    return;
  }
  if (!Array.isArray(data) || data.length !== texts.length) {
    showError({ title: "Unexpected answer", message: body.slice(0, 300) }, meta);
    return;
  }
  hideError();
  showResults(texts, data, meta);
}

const STATUS_TEXT = {
  400: "Bad Request",
  401: "Unauthorized",
  408: "Request Timeout",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** The API's own words: `error`, and each validation `detail` with the text it is about. */
function apiError(response, data, body, lines) {
  const title = `${response.status} ${response.statusText || STATUS_TEXT[response.status] || ""}`;
  if (!data || typeof data !== "object") {
    return { title, message: body.trim().slice(0, 300) || "(empty answer)" };
  }
  const message = typeof data.error === "string" ? data.error : JSON.stringify(data).slice(0, 300);
  const details = (Array.isArray(data.detail) ? data.detail : []).map((item) => {
    const loc = Array.isArray(item?.loc) ? item.loc : [];
    const index = loc.findIndex((part) => part === "texts");
    const n = index >= 0 ? loc[index + 1] : undefined;
    const where = Number.isInteger(n) && n < lines.length ? `text ${n + 1} (line ${lines[n]})` : loc.join(".");
    return { where, message: String(item?.msg ?? JSON.stringify(item)) };
  });
  return { title, message, details };
}

// ---- showing the answer ------------------------------------------------------------------

function setBusy(on) {
  busy = on;
  classifyButton.disabled = on;
  classifyButton.textContent = on ? "Classifying…" : "Classify";
  form.setAttribute("aria-busy", on ? "true" : "false");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function requestLine(meta) {
  const parts = [];
  if (meta.count !== undefined) parts.push(plural(meta.count, "text"));
  parts.push(`${Math.round(meta.browserMs)} ms in the browser`);
  if (meta.serverMs) parts.push(`${meta.serverMs} ms in the service`);
  const line = el("span", {}, parts.join(" · "));
  if (meta.requestId) {
    return el("span", {}, line, " · request id ", el("code", {}, meta.requestId));
  }
  return line;
}

function showError(error, meta) {
  errorBox.replaceChildren(
    el("p", { class: "error-title" }, error.title),
    el("p", { class: "error-message" }, error.message),
  );
  if (error.details && error.details.length) {
    const list = el("ul", { class: "error-details" });
    for (const item of error.details) {
      list.append(el("li", {}, item.where ? `${item.where}: ` : "", item.message));
    }
    errorBox.append(list);
  }
  if (meta) {
    errorBox.append(el("p", { class: "error-meta" }, requestLine({ ...meta, count: undefined })));
  }
  errorBox.hidden = false;
  output.hidden = true; // the results shown were for another request
}

function hideError() {
  errorBox.hidden = true;
  errorBox.replaceChildren();
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

/** A horizontal bar for a probability (role="meter", named by its label). */
function bar(label, value, labelIndex) {
  const fill = el("span", { class: "fill" });
  fill.style.width = percent(value);
  return el(
    "div",
    { class: "bar-row" },
    el("span", { class: "bar-name" }, label),
    el(
      "span",
      {
        class: `bar tone-${tone(label, labelIndex)}`,
        role: "meter",
        "aria-label": label,
        "aria-valuemin": "0",
        "aria-valuemax": "1",
        "aria-valuenow": String(value),
        "aria-valuetext": percent(value),
      },
      fill,
    ),
    el("span", { class: "bar-value" }, percent(value)),
  );
}

const TONES = { negative: "neg", positive: "pos", neutral: "neu" };

function tone(label, index) {
  return TONES[label.toLowerCase()] || `c${index % 4}`;
}

function showResults(texts, predictions, meta) {
  const labels = Object.keys(predictions[0]?.scores || {});
  const list = $("results");
  list.replaceChildren(
    ...predictions.map((prediction, i) => {
      const index = Math.max(0, labels.indexOf(prediction.label));
      return el(
        "li",
        { class: "result", "aria-label": `Text ${i + 1}: ${prediction.label}` },
        el("p", { class: "result-text" }, texts[i]),
        el(
          "p",
          { class: "result-label" },
          el("span", { class: `badge tone-${tone(prediction.label, index)}` }, prediction.label),
          el("span", { class: "result-score" }, ` ${percent(prediction.score)}`),
        ),
        el(
          "div",
          { class: "bars" },
          ...Object.entries(prediction.scores).map(([label, p]) =>
            bar(label, p, labels.indexOf(label)),
          ),
        ),
      );
    }),
  );
  showSummary(labels, predictions);
  $("request-info").replaceChildren(requestLine(meta));
  output.hidden = false;
}

function showSummary(labels, predictions) {
  const rows = labels.map((label, index) => {
    const chosen = predictions.filter((p) => p.label === label);
    const mean = chosen.length ? chosen.reduce((s, p) => s + p.score, 0) / chosen.length : null;
    const share = chosen.length / predictions.length;
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, el("span", { class: `badge tone-${tone(label, index)}` }, label)),
      el("td", {}, String(chosen.length)),
      el("td", {}, bar(label, share, index)),
      el("td", {}, mean === null ? "–" : percent(mean)),
    );
  });
  $("summary").tBodies[0].replaceChildren(...rows);
  $("summary-caption").textContent = `${plural(predictions.length, "text")} by predicted label`;
}

// ---- tabs (WAI-ARIA tabs pattern: arrow keys move between tabs) ----------------------------

const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

function selectTab(tab) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = tabs[(next + tabs.length) % tabs.length];
    selectTab(target);
    target.focus();
  });
}

// ---- wiring ------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  classify();
});

form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    classify();
  }
});

textsBox.addEventListener("input", updateCount);

keyBox.addEventListener("input", () => storeKey(keyBox.value.trim()));

for (const button of document.querySelectorAll("[data-example]")) {
  button.addEventListener("click", () => {
    textsBox.value = EXAMPLES[button.dataset.example].join("\n");
    updateCount();
    classify();
  });
}

keyBox.value = storedKey();
if (keyBox.value) showKeyField();
updateCount();
loadLimits();
