// hashret web page: query by image or by indexed item, over the JSON API of the same server.
// Plain JavaScript, no build step. Every URL is relative, so the page also works under a prefix.
// A server started with a read key answers 401 until the user pastes the key; the page then sends
// it as "Authorization: Bearer KEY" (kept in sessionStorage: this tab only), and loads images
// through fetch (an <img src> cannot send the header).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_ITEM = "hashret-key";
let last = null; // the last query: {file} or {id}
let queryUrl = null; // object URL of the uploaded query image
let imageUrls = []; // object URLs of the images loaded with the key

function key() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (key()) headers.set("Authorization", `Bearer ${key()}`);
  return fetch(url, { ...options, headers });
}

class NeedsKey extends Error {}

async function checked(resp) {
  if (resp.status === 401 || (resp.status === 403 && key())) {
    $("key-form").hidden = false;
    throw new NeedsKey(await errorText(resp));
  }
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp;
}

function setImage(img, url) {
  if (!key()) {
    img.src = url;
    return;
  }
  api(url).then((r) => (r.ok ? r.blob() : null)).then((blob) => {
    if (!blob) return;
    const u = URL.createObjectURL(blob);
    imageUrls.push(u);
    img.src = u;
  });
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function groupBits(code) {
  return code.match(/.{1,8}/g).join(" ");
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return `${resp.status}: ${body.detail || JSON.stringify(body)}`;
  } catch {
    return `${resp.status} ${resp.statusText}`;
  }
}

async function loadStats() {
  try {
    const resp = await checked(await api("stats"));
    const s = await resp.json();
    $("key-form").hidden = true;
    const m = s.model || {};
    $("stats").textContent = `${s.items.toLocaleString("en")} items · ${s.bits}-bit codes · ` +
      `${s.backend} · ${[m.method, m.backbone].filter(Boolean).join(" ")}` +
      (s.writable ? "" : " · read-only");
    $("k").max = s.max_k;
  } catch (e) {
    $("stats").textContent = "";
    showError(e instanceof NeedsKey ? e.message : `cannot reach the server: ${e.message}`);
  }
}

function renderQuery(data, query) {
  $("query").hidden = false;
  if (query.file) {
    $("query-img").src = queryUrl;
    $("query-title").textContent = `uploaded: ${query.file.name || "image"}`;
  } else {
    setImage($("query-img"), `items/${query.id}/image`);
    $("query-title").textContent = `item #${query.id}`;
  }
  $("query-bits").textContent = data.query.bits;
  $("query-code").textContent = groupBits(data.query.code);
  $("query-code").title = `hex ${data.query.code_hex}`;
}

function hitCard(hit) {
  const li = document.createElement("li");
  li.className = "hit";
  li.dataset.id = hit.id;
  li.dataset.rank = hit.rank;
  const button = document.createElement("button");
  button.type = "button";
  button.title = `search by item #${hit.id} (${hit.source})`;
  button.addEventListener("click", () => search({ id: hit.id }));
  const img = document.createElement("img");
  img.alt = `item ${hit.id}`;
  img.loading = "lazy";
  if (hit.image_url) setImage(img, hit.image_url);
  else img.classList.add("missing");
  const name = document.createElement("div");
  name.className = "label";
  name.textContent = hit.class_name ?? (hit.label >= 0 ? `label ${hit.label}` : "unlabelled");
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `#${hit.rank} · id ${hit.id}`;
  const dist = document.createElement("div");
  dist.className = "meta";
  dist.title = "Hamming distance of the codes · Euclidean distance of the float features";
  dist.textContent = `H ${hit.hamming}` + (hit.euclidean === null ? "" : ` · E ${hit.euclidean.toFixed(3)}`);
  button.append(img, name, meta, dist);
  li.append(button);
  return li;
}

async function search(query) {
  last = query;
  const form = new FormData();
  if (query.file) {
    form.append("image", query.file);
    if (queryUrl) URL.revokeObjectURL(queryUrl);
    queryUrl = URL.createObjectURL(query.file);
  } else {
    form.append("id", String(query.id));
  }
  form.append("k", $("k").value || "12");
  form.append("rerank", $("rerank").checked ? "true" : "false");
  showError("");
  $("status").textContent = "searching…";
  document.body.classList.add("busy");
  try {
    const resp = await checked(await api("search", { method: "POST", body: form }));
    const data = await resp.json();
    imageUrls.forEach((u) => URL.revokeObjectURL(u));
    imageUrls = [];
    renderQuery(data, query);
    $("results").replaceChildren(...data.results.map(hitCard));
    const how = data.rerank ? "Hamming, then Euclidean re-rank" : "Hamming distance";
    $("status").textContent = `${data.results.length} results by ${how} in ${data.took_ms.toFixed(1)} ms`;
    if (query.id !== undefined) history.replaceState(null, "", `#id=${query.id}`);
  } catch (e) {
    // the results of an earlier query under this error would read as this query's answer
    $("results").replaceChildren();
    $("query").hidden = true;
    $("status").textContent = "";
    showError(e.message);
  } finally {
    document.body.classList.remove("busy");
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) search({ file });
    ev.target.value = ""; // choosing the same file again searches again
  });
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) search({ file });
  });
  for (const id of ["k", "rerank"]) {
    $(id).addEventListener("change", () => last && search(last));
  }
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
    $("key").value = "";
    showError("");
    loadStats();
    if (last) search(last);
  });
  const m = location.hash.match(/^#id=(\d+)$/);
  if (m) search({ id: Number(m[1]) });
  loadStats();
}

setup();
