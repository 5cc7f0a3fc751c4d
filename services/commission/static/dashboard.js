// Alliance seller dashboard: plain JavaScript over the commission service's report APIs.
// Signed in with the store's key (kept in this tab's sessionStorage only); every figure comes
// from /v1/stores/{store}/reports/..., every change goes through the program APIs.
"use strict";

const state = { store: null, key: null, cursor: null, charts: {} };
// the charts, for whoever wants to read their data (the browser test does)
window.allianceCharts = state.charts;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells, numeric = []) {
  const tr = el("tr");
  cells.forEach((c, i) => tr.appendChild(el("td", c, numeric.includes(i) ? "num" : "")));
  return tr;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.key}` }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (!resp.ok) {
    let message = `${resp.status}`;
    try {
      const body = await resp.json();
      message = body.error ? `${body.error.code}: ${body.error.message}` : JSON.stringify(body);
    } catch (_) { /* not JSON */ }
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

async function getJSON(path) {
  return (await api(path)).json();
}

function reportPath(report, extra = {}) {
  const params = new URLSearchParams({ from: $("from").value, to: $("to").value, ...extra });
  return `/v1/stores/${encodeURIComponent(state.store)}/reports/${report}?${params}`;
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

// -- sign in ---------------------------------------------------------------------------------

async function signIn(store, key) {
  state.store = store;
  state.key = key;
  try {
    await getJSON(`/v1/stores/${encodeURIComponent(store)}/program`);
  } catch (err) {
    state.store = state.key = null;
    $("signin-error").textContent =
      err.status === 401 || err.status === 403 ? "That key does not open this store." : err.message;
    return;
  }
  sessionStorage.setItem("alliance.store", store);
  sessionStorage.setItem("alliance.key", key);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-store").textContent = store;
  await refresh();
}

function signOut() {
  sessionStorage.removeItem("alliance.store");
  sessionStorage.removeItem("alliance.key");
  location.reload();
}

// -- the reports -----------------------------------------------------------------------------

function figure(label, value) {
  const box = el("div", null, "figure");
  box.appendChild(el("div", label, "label"));
  box.appendChild(el("div", value, "value"));
  box.dataset.label = label;
  return box;
}

async function loadDashboard() {
  const d = await getJSON(reportPath("dashboard"));
  const box = $("figures");
  box.replaceChildren(
    figure("Affiliate clicks", d.traffic.affiliate_clicks),
    figure("Affiliate visitors", d.traffic.affiliate_visitors),
    figure("Suspicious clicks", d.traffic.suspicious_clicks),
  );
  if (d.totals.length === 0) box.appendChild(figure("Affiliate orders", 0));
  for (const t of d.totals) {
    const c = t.currency;
    box.append(
      figure(`Affiliate orders (${c})`, t.orders),
      figure(`Affiliate sales (${c})`, t.affiliate_sales),
      figure(`Commission payable (${c})`, t.commission_payable),
      figure(`Commission estimated (${c})`, t.commission_estimated),
    );
  }
}

function lineChart(name, labels, datasets) {
  const old = state.charts[name];
  if (old) old.destroy();
  state.charts[name] = new Chart($(`chart-${name}`), {
    type: "line",
    data: { labels, datasets: datasets.map((d) => ({ tension: 0.2, pointRadius: 2, ...d })) },
    options: { animation: false, responsive: true, interaction: { mode: "index", intersect: false } },
  });
}

function firstCurrency(points) {
  for (const p of points) if (p.totals.length) return p.totals[0].currency;
  return null;
}

function ofCurrency(point, currency, field) {
  const t = point.totals.find((x) => x.currency === currency);
  return t ? Number(t[field]) : 0;
}

async function loadCharts() {
  const g = $("granularity").value;
  const [traffic, orders, refunds] = await Promise.all([
    getJSON(reportPath("traffic", { granularity: g })),
    getJSON(reportPath("orders", { granularity: g })),
    getJSON(reportPath("refunds", { granularity: g })),
  ]);
  const tl = traffic.series.map((p) => p.bucket);
  lineChart("traffic", tl, [
    { label: "Affiliate clicks", data: traffic.series.map((p) => p.affiliate_clicks) },
    { label: "Affiliate visitors", data: traffic.series.map((p) => p.affiliate_visitors) },
    { label: "Affiliate page views", data: traffic.series.map((p) => p.affiliate_page_views) },
    { label: "Store visitors", data: traffic.series.map((p) => p.store_visitors) },
  ]);
  const oc = firstCurrency(orders.series);
  lineChart("orders", orders.series.map((p) => p.bucket), [
    { label: "Affiliate orders", data: orders.series.map((p) => ofCurrency(p, oc, "orders")) },
    { label: `Commission payable${oc ? ` (${oc})` : ""}`,
      data: orders.series.map((p) => ofCurrency(p, oc, "commission_payable")) },
    { label: `Commission estimated${oc ? ` (${oc})` : ""}`,
      data: orders.series.map((p) => ofCurrency(p, oc, "commission_estimated")) },
  ]);
  const rc = firstCurrency(refunds.series);
  lineChart("refunds", refunds.series.map((p) => p.bucket), [
    { label: "Refunded orders", data: refunds.series.map((p) => ofCurrency(p, rc, "refunded_orders")) },
    { label: `Refund amount${rc ? ` (${rc})` : ""}`,
      data: refunds.series.map((p) => ofCurrency(p, rc, "refund_amount")) },
    { label: `Commission reversed${rc ? ` (${rc})` : ""}`,
      data: refunds.series.map((p) => ofCurrency(p, rc, "commission_reversed")) },
  ]);
}

async function loadHot() {
  const hot = await getJSON(reportPath("hot-products", { limit: 10 }));
  $("hot").tBodies[0].replaceChildren(
    ...hot.items.map((p) =>
      row([p.product_id, p.title, p.orders, p.units, `${p.affiliate_sales} ${p.currency}`,
        `${p.commission} ${p.currency}`], [2, 3, 4, 5])),
  );
}

function txFilters() {
  const f = {};
  const pairs = [["keyword", "tx-keyword"], ["product_id", "tx-product"], ["order_id", "tx-order"],
    ["type", "tx-type"]];
  for (const [name, id] of pairs) if ($(id).value.trim()) f[name] = $(id).value.trim();
  return f;
}

async function loadTransactions(more = false) {
  const extra = { ...txFilters(), limit: 50 };
  if (more && state.cursor) extra.cursor = state.cursor;
  const page = await getJSON(reportPath("transactions", extra));
  const rows = page.items.map((t) =>
    row([t.at.replace("T", " ").slice(0, 19), t.type, t.store_id, t.order_id, t.product_id,
      t.title, t.quantity ?? "", `${t.amount} ${t.currency}`, `${t.commission} ${t.currency}`,
      t.status, t.affiliate_id ?? ""], [6, 7, 8]));
  const body = $("tx").tBodies[0];
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  state.cursor = page.next_cursor;
  $("tx-more").hidden = !page.next_cursor;
}

async function downloadCsv() {
  const resp = await api(reportPath("transactions", txFilters()), { headers: { Accept: "text/csv" } });
  const blob = await resp.blob();
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = `transactions-${state.store}-${$("from").value}-${$("to").value}.csv`;
  document.body.appendChild(link);
  link.click();
  link.remove();
}

// -- program settings ------------------------------------------------------------------------

async function loadProgram() {
  // a slower, older load (the one at sign-in) must not paint over a newer one (after a change)
  const generation = (state.programLoads = (state.programLoads || 0) + 1);
  const current = () => generation === state.programLoads;
  const p = await getJSON(`/v1/stores/${encodeURIComponent(state.store)}/program`);
  if (!current()) return;
  $("program").replaceChildren(
    figure("Program", p.state),
    figure("Default rate", p.default_rate),
    figure("Attribution window (days)", p.attribution_window_days),
    figure("Main products", `${Object.keys(p.main_products).length} / 60`),
  );
  $("rates").tBodies[0].replaceChildren(
    row(["default", p.default_rate]),
    ...Object.entries(p.category_rates).map(([c, r]) => row([`category ${c}`, r])),
  );
  const mains = await getJSON(reportPath("main-products"));
  if (!current()) return;
  $("mains").tBodies[0].replaceChildren(
    ...mains.items.map((m) => {
      const perf = m.performance[0];
      return row([m.product_id, m.rate ?? "—", m.effective_rate, perf ? perf.orders : 0,
        perf ? `${perf.affiliate_sales} ${perf.currency}` : "0"], [3, 4]);
    }),
  );
  // the whole record, newest first (a change made today must show, whatever the range)
  const ops = await getJSON(
    `/v1/stores/${encodeURIComponent(state.store)}/operations`);
  if (!current()) return;
  $("ops").tBodies[0].replaceChildren(
    ...ops.slice().reverse().map((o) =>
      row([o.at.replace("T", " ").slice(0, 19), o.kind, o.key ?? "", o.rate ?? o.days ?? "",
        o.actor])),
  );
}

async function change(path, body, message) {
  $("settings-result").textContent = "";
  try {
    await api(path, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    await loadProgram();
    $("settings-result").textContent = message;
  } catch (err) {
    $("settings-result").textContent = `Refused — ${err.message}`;
  }
}

// -- wiring ----------------------------------------------------------------------------------

async function refresh() {
  $("app-error").textContent = "";
  $("status").textContent = "Loading…";
  try {
    await Promise.all([loadDashboard(), loadCharts(), loadHot(), loadTransactions(), loadProgram()]);
    $("status").textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    $("status").textContent = "";
    $("app-error").textContent = err.message;
  }
}

function init() {
  const today = new Date();
  $("to").value = isoDay(today);
  $("from").value = isoDay(new Date(today.getTime() - 89 * 86400000));
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("signin-store").value.trim(), $("signin-key").value.trim());
  });
  $("signout").addEventListener("click", signOut);
  $("range").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("tx-filter").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await loadTransactions(); } catch (err) { $("app-error").textContent = err.message; }
  });
  $("tx-more").addEventListener("click", () => loadTransactions(true));
  $("tx-csv").addEventListener("click", () =>
    downloadCsv().catch((err) => { $("app-error").textContent = err.message; }));
  const store = () => encodeURIComponent(state.store);
  $("set-default").addEventListener("submit", (e) => {
    e.preventDefault();
    change(`/v1/stores/${store()}/rates/default`, { rate: $("default-rate").value.trim() },
      "Default rate saved.");
  });
  $("set-category").addEventListener("submit", (e) => {
    e.preventDefault();
    const cat = encodeURIComponent($("category-id").value.trim());
    change(`/v1/stores/${store()}/rates/categories/${cat}`,
      { rate: $("category-rate").value.trim() }, "Category rate saved.");
  });
  $("set-main").addEventListener("submit", (e) => {
    e.preventDefault();
    const pid = encodeURIComponent($("main-product").value.trim());
    const rate = $("main-rate").value.trim();
    change(`/v1/stores/${store()}/main-products/${pid}`, rate ? { rate } : {},
      "Main product saved.");
  });
  const saved = [sessionStorage.getItem("alliance.store"), sessionStorage.getItem("alliance.key")];
  if (saved[0] && saved[1]) signIn(saved[0], saved[1]);
}

init();
