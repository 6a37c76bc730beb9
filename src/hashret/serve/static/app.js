// hashret web page: query by image or by indexed item, over the JSON API of the same server.
// Plain JavaScript, no build step. Every URL is relative, so the page also works under a prefix.
"use strict";

const $ = (id) => document.getElementById(id);
let last = null; // the last query: {file} or {id}
let queryUrl = null; // object URL of the uploaded query image

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
    const resp = await fetch("stats");
    if (!resp.ok) throw new Error(await errorText(resp));
    const s = await resp.json();
    const m = s.model || {};
    $("stats").textContent = `${s.items.toLocaleString("en")} items · ${s.bits}-bit codes · ` +
      `${s.backend} · ${[m.method, m.backbone].filter(Boolean).join(" ")}` +
      (s.writable ? "" : " · read-only");
    $("k").max = s.max_k;
  } catch (e) {
    $("stats").textContent = "";
    showError(`cannot reach the server: ${e.message}`);
  }
}

function renderQuery(data, query) {
  $("query").hidden = false;
  if (query.file) {
    $("query-img").src = queryUrl;
    $("query-title").textContent = `uploaded: ${query.file.name || "image"}`;
  } else {
    $("query-img").src = `items/${query.id}/image`;
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
  if (hit.image_url) img.src = hit.image_url;
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
    const resp = await fetch("search", { method: "POST", body: form });
    if (!resp.ok) throw new Error(await errorText(resp));
    const data = await resp.json();
    renderQuery(data, query);
    $("results").replaceChildren(...data.results.map(hitCard));
    const how = data.rerank ? "Hamming, then Euclidean re-rank" : "Hamming distance";
    $("status").textContent = `${data.results.length} results by ${how} in ${data.took_ms.toFixed(1)} ms`;
    if (query.id !== undefined) history.replaceState(null, "", `#id=${query.id}`);
  } catch (e) {
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
  const m = location.hash.match(/^#id=(\d+)$/);
  if (m) search({ id: Number(m[1]) });
  loadStats();
}

setup();
