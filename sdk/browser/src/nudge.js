/*! nudge browser SDK (wire contract v1) | Apache-2.0 */
// Captures a visitor's behaviour, asks the edge what to show and when, renders it, and
// reports what became of it. One module, no dependencies; sdk/build.py also wraps it into
// a classic script that installs window.nudge. Nothing here may throw into the page: every
// entry point and callback is guarded, and the edge being down only delays nudges.

const W = typeof window === "undefined" ? null : window;
const D = W && W.document;
const SESSION_IDLE_MS = 30 * 60 * 1000; // a visit ends after 30 minutes without activity
const MAX_QUEUE = 1000; // events kept while the edge is unreachable (oldest dropped first)
const MAX_BATCH = 500; // the edge's per-request limits: events (max_events),
const MAX_VIEWS = 32; // and page views (MAX_PAGE_VIEWS in edge_module/core/catalog.py)
const MAX_OUTCOMES = 100;
const CADENCE_MS = 250; // how long events wait to travel together
const MOUSE_SAMPLE_MS = 50;
const INPUT_SAMPLE_MS = 250; // per field: typing is reported, never what is typed
const BACKOFF_MS = [1000, 2000, 5000, 10000, 30000, 60000];
const MAX_TIMER_MS = 2 ** 31 - 1; // longer waits fire at once in browsers: never asked for
const MIN_RECHECK_MS = 1000; // between call-backs for a moment already past
const MIN_CHECK_GAP_MS = 100; // between any two call-backs
const KEEPALIVE_BYTES = 60000; // browsers refuse keepalive bodies over 64 KiB
const ANSWER_TIMEOUT_MS = 10000; // an edge that never answers does not hold the visit
const MAX_SHOWN = 3; // nudges drawn from one answer, and prefetch hints
const SEND_AT_ONCE = { click: 1, submit: 1, page_view: 1, custom: 1, dismiss: 1 };
const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

let cfg = null; // the options of init()
let live = false; // capturing and sending (init done, consent given, privacy allows)
let consentState = "unknown";
let sid = null;
let queue = [];
let outcomes = [];
let inFlight = false;
let release = null; // gives up the Web Lock a request holds (the page is being left)
let navs = 0; // page views so far: an answer for an earlier page is not drawn
let flushTimer = 0;
let checkTimer = 0;
let retryTimer = 0;
let failures = 0;
let blocked = false; // the edge refused this origin: stop calling it
let lastDecision = null; // {sid, decision_id, outcome_token} of the visit's latest answer
let convertPending = 0;
let sendingOutcomes = null; // true, or the outcome a fetch is sending
let generation = 0; // bumped by stop(): what was in flight before is not sent again
let leaving = false; // pagehide came: a request failing now may have reached the edge
let hides = 0; // pagehides so far: a request failing across one may have reached the edge
let lastCheck = 0; // when the SDK last called back with nothing new to tell
const renderTimers = new Set();
let waiting = []; // actions answered while the tab was hidden, drawn when it is back
let sheet = null; // the built-in renderers' style, once added
let unhook = []; // functions that undo what start() attached
let lastPath = null;
let lastMouse = 0;
const lastInput = new Map();
const hovering = new Map(); // selector -> [element, since]
const shown = new Map(); // trigger -> rendered element
// no prototype: on("toString") or on("__proto__") is an unknown kind, not a crash
const handlers = Object.assign(Object.create(null),
  { action: new Set(), impression: new Set(), error: new Set() });

function safely(fn) {
  return function () {
    try {
      return fn.apply(this, arguments);
    } catch (err) {
      emit("error", { where: fn.name || "nudge", error: String(err) });
    }
  };
}

function emit(kind, detail) {
  for (const fn of handlers[kind] || []) {
    try {
      fn(detail);
    } catch (_) {
      // a site's listener that throws must not stop the others
    }
  }
  if (cfg && cfg.debug && W.console) W.console.debug("[nudge]", kind, detail);
}

// What the SDK stores: nudge.session, .seen (a returning visitor), .state (the signed state
// of an edge that keeps none), .unanswered (this tab's events whose new state never came),
// .decision (the visit's latest answer), .convert (conversions before any answer). Each
// name ends with the install's edge and site: two SDKs on one site keep their visits apart.
let installed = "";

function key(name) {
  return "nudge." + name + installed;
}

function storage() {
  try {
    return W.localStorage;
  } catch (_) {
    return null; // blocked storage (privacy modes): the session lives in memory
  }
}

function tabStorage() {
  try {
    return W.sessionStorage;
  } catch (_) {
    return null;
  }
}

function load(store, key) {
  try {
    return JSON.parse((store && store.getItem(key)) || "null");
  } catch (_) {
    return null;
  }
}

function save(store, key, value) {
  try {
    if (value === null) store.removeItem(key);
    else store.setItem(key, JSON.stringify(value));
  } catch (_) {
    // storage full or blocked: kept in memory only
  }
}

function randomId() {
  if (W.crypto && W.crypto.randomUUID) return W.crypto.randomUUID();
  const b = new Uint8Array(16);
  W.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// The visit's id, kept in first-party storage so every page and tab of a visit shares it;
// `back` says whether an earlier visit left its id behind (a returning visitor).
function sessionId() {
  const store = storage();
  const now = Date.now();
  let rec = null;
  try {
    rec = JSON.parse((store && store.getItem(key("session"))) || "null");
  } catch (_) {
    rec = null;
  }
  const fresh = !rec || typeof rec.id !== "string" || !(now - rec.at < SESSION_IDLE_MS);
  const id = fresh ? randomId() : rec.id;
  let before = null;
  try {
    before = store && store.getItem(key("seen"));
    if (store && !before) store.setItem(key("seen"), id);
  } catch (_) {
    before = null;
  }
  touch(id);
  return [id, !!before && before !== id];
}

function touch(id) {
  try {
    const store = storage();
    if (store && id) store.setItem(key("session"), JSON.stringify({ id: id, at: Date.now() }));
  } catch (_) {
    // storage full or blocked: the visit goes on in memory
  }
}

function privacyForbids() {
  const n = W.navigator || {};
  if (cfg.respectGPC !== false && n.globalPrivacyControl === true) return true;
  const dnt = n.doNotTrack || W.doNotTrack || n.msDoNotTrack;
  return cfg.respectDNT !== false && (dnt === "1" || dnt === "yes");
}

function deviceClass() {
  const ua = (W.navigator && W.navigator.userAgent) || "";
  if (/iPad|Tablet|PlayBook|Silk|(Android(?!.*Mobile))/i.test(ua)) return "tablet";
  const hints = W.navigator && W.navigator.userAgentData;
  if ((hints && hints.mobile) || /Mobi|iPhone|Android/i.test(ua)) return "mobile";
  return "desktop";
}

function referrer() {
  try {
    const r = new URL(D.referrer); // origin and path only: queries may carry personal data
    return r.origin + r.pathname;
  } catch (_) {
    return null;
  }
}

let staticContext = null;
const LOCALE = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/; // what the edge takes (BCP 47)

function context() {
  const now = new Date();
  const ctx = Object.assign({}, staticContext, {
    url: W.location.pathname,
    local_hour: now.getHours(),
    weekday: WEEKDAYS[now.getDay()],
  });
  if (cfg.attributes) ctx.attributes = cfg.attributes;
  return ctx;
}

// A short selector for an element: what rule packs name as a target (`#buy`,
// `input[name=email]`, `button.cta`). Never the element's value.
function selectorOf(el) {
  if (!el || el.nodeType !== 1) return "";
  // getAttribute, not el.id: a form's control named "id" (Shopify's cart forms have one)
  // hides the property, and the target was "#[object HTMLInputElement]"
  const id = el.getAttribute("id");
  if (id) return ("#" + id).slice(0, 256);
  const tag = el.tagName.toLowerCase();
  const name = el.getAttribute("name");
  if (name) return (tag + "[name=" + name + "]").slice(0, 256);
  const cls = typeof el.className === "string" ? el.className.trim().split(/\s+/).slice(0, 2) : [];
  return (tag + (cls[0] ? "." + cls.join(".") : "")).slice(0, 256);
}

function push(event) {
  if (!live) return;
  event.ts_ms = Date.now();
  if (queue.length >= MAX_QUEUE) queue.shift();
  queue.push(event);
  if (SEND_AT_ONCE[event.type]) schedule(0);
  else schedule(CADENCE_MS);
}

function schedule(ms) {
  if (inFlight || retryTimer || blocked) return; // the answer or the retry sends what waits
  if (flushTimer) {
    if (ms > 0) return;
    clearTimeout(flushTimer);
  }
  flushTimer = setTimeout(flush, ms);
}

function endpoint(path) {
  return cfg.edge.replace(/\/+$/, "") + path;
}

function post(path, body, keepalive) {
  const text = JSON.stringify(body);
  // at most 3 UTF-8 bytes per UTF-16 unit: only a body near the limit is measured
  const small = text.length * 3 < KEEPALIVE_BYTES ||
    new TextEncoder().encode(text).length < KEEPALIVE_BYTES;
  // text/plain keeps the request "simple" under CORS: no preflight round trip.
  return fetch(endpoint(path), {
    method: "POST",
    body: text,
    headers: { "Content-Type": "text/plain;charset=UTF-8" },
    keepalive: !!keepalive && small, // a larger one would be refused outright, forever
    credentials: "omit",
    mode: "cors",
    signal: AbortSignal.timeout ? AbortSignal.timeout(ANSWER_TIMEOUT_MS) : undefined,
  });
}

function retryAfterMs(res) {
  const s = Number(res ? res.headers.get("Retry-After") || NaN : NaN);
  const backoff = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length) - 1];
  // the edge's word as a floor, never below the backoff; jitter: a recovering edge is
  // not stampeded by every page retrying on the same beat
  const wait = s >= 0 ? Math.max(Math.min(s, 3600) * 1000, backoff) : backoff;
  return wait * (0.75 + Math.random() / 2);
}

function retryLater(res) {
  failures++;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    retryTimer = 0;
    flush();
  }, retryAfterMs(res));
}

// Sends what is queued (or, with nothing queued, asks whether something became due).
async function flush() {
  flushTimer = 0;
  if (!live || inFlight || blocked) return;
  clearTimeout(checkTimer);
  checkTimer = 0;
  inFlight = true;
  let sending = null;
  const send = () => (sending = decide());
  try {
    // The tabs of a visit whose state the client carries take turns, each sending the
    // state the last answer left: a once-per-session cap holds across them. A page left
    // gives its turn up at once: one holding a Web Lock is not kept in the bfcache.
    const locks = stateToken() && W.navigator.locks;
    if (locks) {
      const quit = new AbortController();
      const gone = new Promise((done) => (release = () => done(quit.abort())));
      await locks.request("nudge.decide." + sid, { signal: quit.signal },
                          () => Promise.race([send(), gone])).catch(() => {});
    }
    // no Web Locks, or a lock refused (a page being left sends by beacon instead)
    if (!sending && !leaving) send();
    await sending;
  } catch (_) {
    // decide() reports its own failures
  } finally {
    inFlight = false;
    release = null;
  }
  // a hidden page's timers are slowed, and it may be frozen soon: what waits goes at once
  if (queue.length && !retryTimer) schedule(D.visibilityState === "hidden" ? 0 : CADENCE_MS);
}

async function decide() {
  if (!live) return; // stopped while another tab's request went
  const token = stateToken();
  const lost = token && load(tabStorage(), key("unanswered"));
  if (lost) {
    // sent from this tab with the state token still current: the answer never came
    save(tabStorage(), key("unanswered"), null);
    if (lost.sid === sid && lost.token === token && Array.isArray(lost.events)) {
      queue = lost.events.concat(queue).slice(-MAX_QUEUE);
    }
  }
  const batch = take();
  touch(sid);
  const body = request(batch);
  const gen = generation;
  const nav = navs;
  const hid = hides;
  remember(token, batch); // until its answer is read: the page may be left meanwhile
  let res = null;
  try {
    res = await post("/v1/decide", body, true);
    if (gen !== generation) return; // stopped meanwhile (consent withdrawn): dropped
    if (res.ok) {
      failures = 0;
      if (outcomes.length) sendOutcomes(); // the edge is back: what waited goes now
      try {
        answer(parse(await res.text()), nav);
      } catch (err) {
        // the edge took the events: an answer we cannot read is reported, not resent
        emit("error", { status: res.status, error: String(err) });
      }
    } else if (res.status === 429 || res.status >= 500 || res.status === 408) {
      queue = batch.concat(queue).slice(-MAX_QUEUE);
      retryLater(res);
    } else {
      // 400/413: this batch cannot succeed as it is; keep the visit going without it
      const err = (await res.json().catch(() => null)) || {};
      const why = err.error || {};
      if (res.status === 403) blocked = true;
      if (token && why.code === "invalid_state_token") {
        // a token the edge cannot use (its key rotated away, another deployment): the
        // visit's state starts over, and the batch goes once more, without it
        if (stateToken() === token) save(storage(), key("state"), null);
        queue = batch.concat(queue).slice(-MAX_QUEUE);
      }
      emit("error", { status: res.status, error: err.error || null });
    }
  } catch (err) {
    // a page going away cancels its requests, maybe after the edge had them: never sent
    // twice (with a state token, the tab's next page sends them again: remember())
    if (await left(hid)) return;
    if (gen !== generation) return;
    // the network failed: sent again. An answer given up on may come from an edge that
    // applied the batch: sent again only with the token, which makes that exact
    if (token || err.name !== "TimeoutError") queue = batch.concat(queue).slice(-MAX_QUEUE);
    retryLater(null);
    emit("error", { status: 0, error: String(err) });
  } finally {
    if (gen === generation && token && !leaving && hid === hides) settle(token, batch.length);
  }
}

// JSON from the network as objects without a prototype: a field the edge left out is
// absent, never one a script added to Object.prototype.
function parse(text) {
  return JSON.parse(text, (_, v) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.assign(Object.create(null), v) : v);
}

// The next batch, within the edge's limits.
function take() {
  let i = 0;
  for (let views = 0; i < queue.length && i < MAX_BATCH; i++) {
    if (queue[i].type === "page_view" && ++views > MAX_VIEWS) break;
  }
  return queue.splice(0, i);
}

// With client-carried state the edge keeps nothing: events whose answer (the new state)
// this page never reads are lost from the visit unless sent again with the same token,
// which is exact, as the edge starts from that token each time. The tab's next request
// does so. Without a token the edge keeps the session and may have applied them: they are
// never sent twice.
function remember(token, events, more) {
  if (!token) return;
  const rec = more && load(tabStorage(), key("unanswered"));
  const before = rec && rec.sid === sid && rec.token === token ? rec.events : [];
  save(tabStorage(), key("unanswered"),
       { sid: sid, token: token, events: before.concat(events).slice(-MAX_BATCH) });
}

// The answer was read or the batch is queued again; what a beacon added meanwhile (a page
// kept in the back/forward cache) goes again with the next request.
function settle(token, sent) {
  const rec = load(tabStorage(), key("unanswered"));
  save(tabStorage(), key("unanswered"), null);
  if (rec && rec.sid === sid && rec.token === token && Array.isArray(rec.events)) {
    queue = rec.events.slice(sent).concat(queue);
  }
}

// A decide body; with the state token of an edge that keeps sessions client-side.
function request(events) {
  const body = { session_id: sid, now_ms: Date.now(), context: context(), events: events };
  const token = stateToken();
  if (token) body.state_token = token;
  return body;
}

function stateToken() {
  const rec = load(storage(), key("state"));
  return rec && rec.sid === sid && typeof rec.token === "string" ? rec.token : null;
}

function answer(res, nav) {
  if (!live || !res) return;
  // for the visit's next request, on any page (no storage: the state starts over there)
  const token = res.state_token;
  if (typeof token === "string") save(storage(), key("state"), { sid: sid, token: token });
  lastDecision = { sid: sid, decision_id: res.decision_id, outcome_token: res.outcome_token };
  save(storage(), key("decision"), lastDecision);
  callBack(res.next_check_ms);
  for (let n = pending(0); n > 0; n--) {
    report(Object.assign({ trigger: null }, lastDecision), "conversion");
  }
  if (nav !== navs) return; // the page changed while the request went: not drawn on this one
  // every action goes to the listeners; at most MAX_SHOWN nudges are drawn at once
  // (render): a limit taken here first dropped valid actions behind malformed ones
  for (const action of Array.isArray(res.actions) ? res.actions : []) {
    if (!action || typeof action !== "object" || typeof action.trigger !== "string") continue;
    safely(act)(action, res.decision_id); // one malformed action spoils only itself
  }
}

function act(action, decisionId) {
  action.decision_id = decisionId;
  emit("action", action);
  if (action.tier === "predictive") return prefetch(action);
  const delay = Number(action.delay_ms);
  if (!(delay > 0)) return show(action);
  if (delay > MAX_TIMER_MS) return;
  const t = setTimeout(safely(() => {
    renderTimers.delete(t);
    show(action);
  }), delay);
  renderTimers.add(t); // a page change cancels it (pageView)
}

// A nudge answered while the tab is hidden is drawn when the visitor is back to see it.
function show(action) {
  if (D.visibilityState === "hidden") waiting.push(action);
  else render(action);
}

// A timed trigger can come due with no new event: call back at that moment (to the
// millisecond: two triggers may fall due a moment apart). An edge that keeps naming a
// moment already past (a clock off, a stale state) is asked again no more than once a
// second, and a moment beyond what a timer can wait is not asked for at all.
function callBack(due) {
  if (typeof due !== "number" || !Number.isFinite(due)) return;
  const now = Date.now();
  const wait = Math.max(due > now ? due - now : lastCheck + MIN_RECHECK_MS - now,
                        lastCheck + MIN_CHECK_GAP_MS - now, 0);
  if (wait > MAX_TIMER_MS) return;
  clearTimeout(checkTimer);
  checkTimer = setTimeout(() => {
    checkTimer = 0;
    lastCheck = Date.now();
    schedule(0);
  }, wait);
}

function report(action, type) {
  const rec = {
    session_id: sid,
    decision_id: action.decision_id,
    trigger: action.trigger,
    type: type,
    ts_ms: Date.now(),
    outcome_token: action.outcome_token,
  };
  if (!action.trigger) delete rec.trigger;
  outcomes.push(rec);
  if (outcomes.length > MAX_OUTCOMES) outcomes.shift();
  sendOutcomes();
}

async function sendOutcomes() {
  if (sendingOutcomes) return; // one sender: the record at the head is sent once
  sendingOutcomes = true;
  try {
    while (outcomes.length && !blocked) {
      const rec = (sendingOutcomes = outcomes[0]);
      const hid = hides;
      try {
        const res = await post("/v1/outcome", rec, true);
        if (res.status === 429 || res.status >= 500) return; // retried with the next ones
      } catch (_) {
        // offline: kept for the next outcome or the page's last beacon, which does not
        // send it again if it failed as the page was left (it may have reached the edge)
        if (await left(hid)) outcomes = outcomes.filter((o) => o !== rec);
        return;
      }
      if (outcomes[0] === rec) outcomes.shift(); // not if consent emptied the list meanwhile
    }
  } finally {
    sendingOutcomes = null;
  }
}

// --- rendering -------------------------------------------------------------------------

const STYLE =
  ".nudge{position:fixed;z-index:2147483000;font:15px/1.4 system-ui,sans-serif;" +
  "background:#fff;color:#111;box-shadow:0 6px 24px rgba(0,0,0,.18);padding:16px 40px 16px 16px;" +
  "border-radius:8px;max-width:360px}.nudge-toast{right:16px;bottom:16px}" +
  ".nudge-banner{left:0;right:0;top:0;max-width:none;border-radius:0}" +
  ".nudge-modal{left:50%;top:30%;transform:translate(-50%,-30%)}" +
  ".nudge-backdrop{position:fixed;inset:0;background:rgba(0,0,0,.35);z-index:2147482999}" +
  ".nudge h2{font-size:17px;margin:0 0 6px}.nudge p{margin:0 0 10px}.nudge img{max-width:100%}" +
  ".nudge-close{position:absolute;top:6px;right:8px;border:0;background:none;font-size:20px;" +
  "cursor:pointer}.nudge-cta{display:inline-block;background:#0b5;color:#fff;padding:6px 12px;" +
  "border-radius:6px;text-decoration:none}";

// A constructed sheet is not subject to a Content-Security-Policy's style-src, which
// blocks an injected <style> unless it allows 'unsafe-inline'; older browsers get that.
function addStyle() {
  if (sheet && (sheet.nodeType ? D.contains(sheet) : D.adoptedStyleSheets.includes(sheet))) return;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
    D.adoptedStyleSheets = D.adoptedStyleSheets.concat(sheet);
  } catch (_) {
    sheet = el("style", "", STYLE);
    D.head.appendChild(sheet);
  }
}

function el(tag, cls, text) {
  const e = D.createElement(tag);
  if (cls) e.className = cls;
  if (typeof text === "string" || typeof text === "number") e.textContent = String(text); // never HTML from the network
  return e;
}

function str(value) {
  return typeof value === "string" ? value : "";
}

function safeHref(href) {
  try {
    const u = new URL(String(href), W.location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_) {
    return null;
  }
}

// What to draw for an action: the variant the edge chose (its fields ready to render) over
// the site's own catalog entry for the content id.
function own(map, key) {
  return map && typeof key === "string" && Object.prototype.hasOwnProperty.call(map, key)
    ? map[key]
    : null;
}

function contentOf(action) {
  const site = own(cfg.content, action.content);
  const f = action.variant && action.variant.fields;
  if (!f || typeof f !== "object") return site;
  const base = site || {};
  const text = (value, fallback) => (typeof value === "string" ? value : fallback);
  return {
    render: text(f.style, base.render),
    title: text(f.title, base.title),
    body: text(f.body, base.body),
    image: text(f.image_url, base.image),
    cta: typeof f.cta_url === "string" ? { text: str(f.cta_text), href: f.cta_url } : base.cta,
  };
}

function prefetch(action) {
  if (D.querySelectorAll("link[rel=prefetch][data-nudge]").length >= MAX_SHOWN) return;
  const item = contentOf(action);
  const href = item && item.cta && safeHref(item.cta.href);
  if (!href || D.querySelector('link[rel=prefetch][href="' + CSS.escape(href) + '"]')) return;
  const link = el("link");
  link.rel = "prefetch";
  link.href = href;
  link.setAttribute("data-nudge", "");
  D.head.appendChild(link);
}

function builtIn(action, item, close) {
  const kind = ["banner", "toast", "modal"].indexOf(item.render) >= 0 ? item.render : "toast";
  const box = el("div", "nudge nudge-" + kind);
  if (kind === "modal") {
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
  } else {
    box.setAttribute("role", kind === "banner" ? "region" : "status");
    box.setAttribute("aria-live", "polite");
  }
  box.setAttribute("aria-label", str(item.title) || str(action.content));
  if (item.title) box.appendChild(el("h2", "", item.title));
  const img = item.image && safeHref(item.image);
  if (img) {
    const pic = el("img");
    pic.src = img;
    pic.alt = "";
    box.appendChild(pic);
  }
  if (item.body) box.appendChild(el("p", "", item.body));
  const href = item.cta && safeHref(item.cta.href);
  if (href) {
    const a = el("a", "nudge-cta", item.cta.text || "Open");
    a.href = href;
    box.appendChild(a);
  }
  const x = el("button", "nudge-close", "\u00d7");
  x.type = "button";
  x.setAttribute("aria-label", "Dismiss");
  x.addEventListener("click", close);
  box.appendChild(x);
  return box;
}

function render(action) {
  if (!live || shown.has(action.trigger) || shown.size >= MAX_SHOWN) return;
  const found = own(cfg.renderers, action.content);
  const custom = typeof found === "function" ? found : null;
  const item = contentOf(action);
  if (!custom && !item) return; // the site shows this content its own way (on("action"))
  let box = null;
  let backdrop = null;
  const before = D.activeElement;
  const close = safely(function dismiss() {
    if (!shown.has(action.trigger)) return;
    remove();
    report(action, "dismiss");
    push({ type: "dismiss", trigger: action.trigger }); // fatigue rules count it
  });
  const remove = () => {
    shown.delete(action.trigger);
    D.removeEventListener("keydown", onKey, true);
    // focus goes back only from a modal that held it: a toast closing must not pull the
    // visitor out of the field they are typing in
    const held = modal && box && box.contains(D.activeElement);
    if (box) box.remove();
    if (backdrop) backdrop.remove();
    if (held && before && before.focus && D.contains(before)) before.focus();
  };
  const onKey = (e) => {
    // dismissible without moving focus or pointer (WCAG 1.4.13); focus stays where it is
    if (e.key === "Escape") close();
  };
  let modal = false;
  box = custom ? custom(action, { close: close }) : builtIn(action, item, close);
  if (!box || box.nodeType !== 1) return;
  if (!custom) addStyle();
  box.setAttribute("data-trigger", action.trigger);
  box.setAttribute("data-content", str(action.content));
  box.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("a,[data-nudge-cta]")) report(action, "click");
  });
  modal = box.getAttribute("aria-modal") === "true";
  if (modal) {
    backdrop = el("div", "nudge-backdrop");
    backdrop.addEventListener("click", close);
    D.body.appendChild(backdrop);
  }
  if (box.classList.contains("nudge-toast")) {
    // above the toasts on screen: each stacked on the last hid it (and its impression
    // counted all the same)
    let bottom = 16;
    for (const t of D.querySelectorAll(".nudge-toast")) {
      bottom = Math.max(bottom, W.innerHeight - t.getBoundingClientRect().top + 8);
    }
    box.style.bottom = bottom + "px";
  }
  D.body.appendChild(box);
  shown.set(action.trigger, { remove: remove });
  D.addEventListener("keydown", onKey, true);
  if (box.getAttribute("role") === "dialog") {
    const first = box.querySelector("a,button,input,[tabindex]");
    if (first) first.focus();
  }
  seen(box, action);
}

// An impression counts once the element is at least half visible.
function seen(box, action) {
  const done = () => {
    report(action, "impression");
    emit("impression", action);
  };
  if (!W.IntersectionObserver) return done();
  const io = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) {
      io.disconnect();
      done();
    }
  }, { threshold: 0.5 });
  io.observe(box);
}

// --- capture ---------------------------------------------------------------------------

function listen(target, type, fn, opts) {
  const guarded = safely(fn);
  target.addEventListener(type, guarded, opts);
  unhook.push(() => target.removeEventListener(type, guarded, opts));
}

function pageView() {
  const path = W.location.pathname;
  if (path === lastPath) return;
  lastPath = path;
  navs++;
  // what was answered for the page before is not drawn on this one (as the edge delivers
  // a queued action only on a page its trigger covers)
  for (const t of renderTimers) clearTimeout(t);
  renderTimers.clear();
  waiting = [];
  push({ type: "page_view", url: path });
  lastDepth = -1; // a new page: where the visitor stands on it is news
  onScroll();
}

let scrollFrame = 0;
let lastDepth = -1;

function onScroll() {
  if (scrollFrame) return;
  scrollFrame = W.requestAnimationFrame(() => {
    scrollFrame = 0;
    const doc = D.documentElement;
    const y = Math.max(0, Math.round(W.scrollY || doc.scrollTop || 0));
    const full = Math.max(doc.scrollHeight, D.body ? D.body.scrollHeight : 0, 1);
    const depth = Math.min(1, Math.round(((y + W.innerHeight) / full) * 1000) / 1000);
    if (depth === lastDepth) return;
    lastDepth = depth;
    push({ type: "scroll", depth: depth, y: y });
  });
}

function onMouse(e) {
  const now = Date.now();
  if (now - lastMouse < MOUSE_SAMPLE_MS) return;
  lastMouse = now;
  push({ type: "mousemove", x: Math.round(e.clientX), y: Math.round(e.clientY) });
}

function hoverTarget(node) {
  for (const sel of cfg.hover || []) {
    const hit = node && node.closest && node.closest(sel);
    if (hit) return [sel, hit];
  }
  return null;
}

function onOver(e) {
  const t = hoverTarget(e.target);
  if (t && !hovering.has(t[0])) hovering.set(t[0], [t[1], Date.now()]);
}

function onOut(e) {
  for (const [sel, [node, since]] of hovering) {
    if (node.contains(e.relatedTarget)) continue; // still inside the hovered element
    if (node === e.target || node.contains(e.target)) {
      hovering.delete(sel);
      push({ type: "hover", target: sel, duration_ms: Date.now() - since });
    }
  }
}

function onInteract(e) {
  const type = { focusin: "focus", focusout: "blur" }[e.type] || e.type;
  const target = selectorOf(e.target);
  if (type === "input") {
    const now = Date.now();
    if (now - (lastInput.get(target) || 0) < INPUT_SAMPLE_MS) return;
    lastInput.set(target, now);
  }
  push({ type: type, target: target });
}

// Hidden is not gone: the visitor may come back, so what waits goes by keepalive fetch
// (which outlives the page as a beacon does) and its answer is still read.
function onVisibility() {
  if (D.visibilityState !== "hidden") {
    for (const action of waiting.splice(0)) render(action);
    return;
  }
  if (queue.length && !inFlight && !retryTimer) {
    clearTimeout(flushTimer);
    flush();
  }
  if (outcomes.length) sendOutcomes();
}

// Conversions made before any answer have no token yet. They wait in localStorage, and the
// visit's next answer, in whichever tab or page reads it, takes them out and reports them:
// one owner each, so a tab or a page back from the bfcache does not report them again.
// pending(1) adds one, pending(0) takes them all.
function pending(add) {
  const store = storage();
  const rec = store ? load(store, key("convert")) : { sid: sid, n: convertPending };
  const n = (rec && rec.sid === sid && rec.n) || 0;
  convertPending = add ? Math.min(n + add, MAX_OUTCOMES) : 0;
  save(store, key("convert"), convertPending ? { sid: sid, n: convertPending } : null);
  return n;
}

// The visit's latest answer, whichever tab or page read it.
function latest() {
  const d = load(storage(), key("decision"));
  return d && d.sid === sid ? d : lastDecision;
}

// The page is going away: what is still queued travels by beacon, which survives it.
function beacon() {
  if (!live || blocked || !W.navigator.sendBeacon) return;
  const send = (path, body) =>
    W.navigator.sendBeacon(endpoint(path), new Blob([JSON.stringify(body)], { type: "text/plain" }));
  while (queue.length) { // in as many batches as the edge's limits make of it
    const batch = take();
    const body = request(batch);
    if (send("/v1/decide", body)) remember(body.state_token, batch, true);
    else {
      queue = batch.concat(queue);
      break;
    }
  }
  // the one a fetch is sending is not sent twice
  outcomes = outcomes.filter((rec) => rec === sendingOutcomes || !send("/v1/outcome", rec));
}

// A page being left fails its fetches just before its pagehide: a failure is known to
// be the network's only once that has had its turn.
async function left(since) {
  await new Promise((done) => setTimeout(done));
  return leaving || hides !== since;
}

function onPageHide() {
  leaving = true;
  hides++;
  if (release) release();
  beacon();
}

// A page back from the back/forward cache is a page view like any other.
function onPageShow(e) {
  leaving = false;
  if (!e.persisted) return;
  lastPath = null;
  pageView();
}

function patchHistory() {
  for (const name of ["pushState", "replaceState"]) {
    const original = W.history[name];
    const ours = function () {
      const out = original.apply(this, arguments);
      if (live) safely(pageView)();
      return out;
    };
    W.history[name] = ours;
    unhook.push(() => {
      // a wrapper added after ours (a router's) stays; ours then does nothing once stopped
      if (W.history[name] === ours) W.history[name] = original;
    });
  }
}

function start() {
  if (live || !cfg || consentState === "denied" || privacyForbids()) return;
  if (cfg.consent === "required" && consentState !== "granted") return;
  live = true;
  const [id, back] = sessionId();
  sid = id;
  staticContext = { device: deviceClass(), returning: back };
  lastDecision = null;
  const ref = referrer();
  if (ref) staticContext.referrer = ref;
  // the language content variants are chosen by: the site's word, else the browser's
  const lang = cfg.locale || (W.navigator && W.navigator.language);
  if (typeof lang === "string" && lang.length <= 35 && LOCALE.test(lang)) {
    staticContext.locale = lang;
  }
  // the visitor's CRM id for push and email, signed by the site's backend (crm.sig)
  const crm = cfg.crm;
  if (crm && typeof crm.id === "string" && crm.id) {
    staticContext.crm_id = crm.id.slice(0, 256);
    if (typeof crm.sig === "string") staticContext.crm_id_sig = crm.sig.slice(0, 128);
  }
  const passive = { passive: true, capture: true };
  listen(W, "scroll", onScroll, passive);
  listen(D, "mousemove", onMouse, passive);
  listen(D, "mouseover", onOver, passive);
  listen(D, "mouseout", onOut, passive);
  for (const type of ["click", "focusin", "focusout", "input", "submit"]) {
    listen(D, type, onInteract, { capture: true, passive: true });
  }
  listen(W, "popstate", pageView);
  listen(W, "pagehide", onPageHide);
  listen(W, "pageshow", onPageShow);
  listen(D, "visibilitychange", onVisibility);
  patchHistory();
  lastPath = null;
  pageView();
}

function stop() {
  live = false;
  generation++;
  for (const undo of unhook.splice(0)) undo();
  for (const t of [flushTimer, checkTimer, retryTimer, ...renderTimers]) clearTimeout(t);
  renderTimers.clear();
  waiting = [];
  flushTimer = checkTimer = retryTimer = 0;
  for (const s of Array.from(shown.values())) s.remove();
  hovering.clear();
}

// --- the API ---------------------------------------------------------------------------

export function init(options) {
  return safely(function init() {
    if (!W || cfg) return;
    if (!options || typeof options.edge !== "string") {
      emit("error", { where: "init", error: "init needs {edge: 'https://edge.example'}" });
      return;
    }
    cfg = Object.assign({ consent: "not-required" }, options);
    const site = typeof cfg.site === "string" ? "/" + cfg.site : "";
    installed = "@" + cfg.edge.replace(/\/+$/, "") + site;
    start();
  })();
}

// Wire contract v1 carries a custom event's name only; anything else stays in the page.
export function track(name) {
  return safely(function track() {
    if (typeof name !== "string" || !name) return;
    push({ type: "custom", name: name.slice(0, 256) });
  })();
}

export function convert() {
  return safely(function convert() {
    if (!live) return;
    const decided = latest();
    if (!decided) {
      pending(1); // nothing decided in this visit yet: sent with the first answer's token
      return schedule(0);
    }
    // A conversion names no trigger: it counts for every trigger fired before it.
    report(Object.assign({ trigger: null }, decided), "conversion");
  })();
}

export function on(kind, fn) {
  return safely(function on() {
    const set = handlers[kind];
    if (!set || typeof fn !== "function") return () => {};
    set.add(fn);
    return () => set.delete(fn);
  })() || (() => {});
}

export function consent(choice) {
  return safely(function consent() {
    consentState = choice === "granted" ? "granted" : "denied";
    if (consentState === "granted") return start();
    queue = [];
    outcomes = [];
    stop();
    const store = storage();
    if (store) {
      store.removeItem(key("session"));
      store.removeItem(key("state"));
      store.removeItem(key("seen"));
      store.removeItem(key("decision"));
      store.removeItem(key("convert"));
    }
    save(tabStorage(), key("unanswered"), null);
    lastDecision = null;
    convertPending = 0;
    sid = null;
  })();
}

export function shutdown() {
  return safely(function shutdown() {
    beacon();
    stop();
    cfg = null;
  })();
}
