// The alliance camp's buyer page: plain script, no framework. Every text it shows is set with
// textContent (never parsed as HTML), so a product title cannot inject anything.
"use strict";

const state = { q: "", category: "", cursor: null, loading: false };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}

async function getJson(path) {
  // the visitor cookie (alliance_vid, HttpOnly) goes along: same origin
  const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new Error(body.message || `request failed (${resp.status})`);
  }
  return body;
}

function productItem(p) {
  const li = el("li", "product");
  li.dataset.store = p.store_id;
  li.dataset.product = p.product_id;
  li.dataset.boost = p.boost;
  li.dataset.category = p.category_id || "";
  li.appendChild(el("p", "title", p.title));
  li.appendChild(el("p", "price", `${p.price} ${p.currency}`));
  const badges = el("p", "badges");
  if (p.hot) badges.appendChild(el("span", "badge hot", "Popular"));
  for (const reason of p.because) {
    badges.appendChild(el("span", "badge because", reason === "category" ? "For you: category" : "For you: shop"));
  }
  li.appendChild(badges);
  li.appendChild(el("p", "meta", `${p.store_id} · ${p.category_id || "no category"}`));
  return li;
}

async function load(reset) {
  if (state.loading) return;
  state.loading = true;
  showError("");
  const list = document.getElementById("products");
  const more = document.getElementById("more");
  if (reset) {
    state.cursor = null;
    list.replaceChildren();
    document.body.removeAttribute("data-loaded");
  }
  const params = new URLSearchParams({ limit: "24" });
  if (state.q) params.set("q", state.q);
  if (state.category) params.set("category_id", state.category);
  if (state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await getJson(`/v1/camp/products?${params}`);
    for (const p of page.items) list.appendChild(productItem(p));
    state.cursor = page.next_cursor;
    more.hidden = !page.next_cursor;
    document.getElementById("empty").hidden = list.children.length > 0;
    document.getElementById("personal").hidden = !page.personalised;
    document.body.dataset.pages = String(Number(reset ? 0 : document.body.dataset.pages || 0) + 1);
    document.body.dataset.loaded = "true";
  } catch (err) {
    showError(err.message);
  } finally {
    state.loading = false;
  }
}

async function loadCategories() {
  const select = document.getElementById("category");
  try {
    const body = await getJson("/v1/camp/categories");
    for (const c of body.items) {
      const option = el("option", "", `${c.category_id} (${c.products})`);
      option.value = c.category_id;
      select.appendChild(option);
    }
    select.dataset.loaded = "true";
  } catch (err) {
    showError(err.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const url = new URLSearchParams(window.location.search);
  state.q = url.get("q") || "";
  state.category = url.get("category_id") || "";
  document.getElementById("q").value = state.q;
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = document.getElementById("q").value.trim();
    state.category = document.getElementById("category").value;
    const shown = new URLSearchParams();
    if (state.q) shown.set("q", state.q);
    if (state.category) shown.set("category_id", state.category);
    history.replaceState(null, "", shown.toString() ? `?${shown}` : window.location.pathname);
    load(true);
  });
  document.getElementById("category").addEventListener("change", () => {
    document.getElementById("search").requestSubmit();
  });
  document.getElementById("more").addEventListener("click", () => load(false));
  loadCategories().then(() => {
    if (state.category) document.getElementById("category").value = state.category;
  });
  load(true);
});
