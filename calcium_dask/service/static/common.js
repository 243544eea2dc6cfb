"use strict";
// Shared by the pages: JSON calls to the API (the login cookie goes along), and DOM helpers
// that only ever set text (never HTML), so nothing a run's name holds can run as code.

async function api(path, options = {}) {
  const init = {credentials: "same-origin", ...options,
                headers: {"Content-Type": "application/json", ...(options.headers || {})}};
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  const isJson = (response.headers.get("content-type") || "").includes("application/json");
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) {
    throw new Error(isJson && body.detail ? body.detail : `${response.status} ${response.statusText}`);
  }
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function formatSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function stageBar(stage) {
  const bar = el("progress", {max: "1", value: String(stage ? stage.progress : 0)});
  if (stage) {
    const label = stage.state === "running" && stage.pass_label
      ? `${stage.stage}: ${stage.pass_label} ${stage.done}/${stage.total}` : `${stage.stage}: ${stage.state}`;
    bar.title = label;
    bar.dataset.state = stage.state;
  }
  return bar;
}

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      await api("/api/logout", {method: "POST", body: "{}"});
      window.location.assign("/login");
    });
  }
});
