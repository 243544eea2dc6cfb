"use strict";
// The runs table, refreshed every second without reloading the page, and the submit form.
const POLL_MS = 1000;

function runRow(run, stages) {
  const byName = Object.fromEntries(run.stages.map((s) => [s.stage, s]));
  const state = el("span", {className: `state state-${run.state}`, text: run.state});
  const stateCell = el("td", {}, state);
  if (run.message && run.state !== "done") stateCell.append(el("div", {className: "message", text: run.message}));
  const report = run.units !== null
    ? el("a", {href: `/api/runs/${run.id}/report`, target: "_blank", rel: "noopener", text: "report"}) : "";
  const row = el("tr", {"data-run-id": String(run.id), "data-state": run.state},
    el("td", {}, el("a", {href: `/runs/${run.id}`, text: String(run.id)})),
    el("td", {text: run.name}),
    stateCell,
    ...stages.map((name) => el("td", {}, byName[name] ? stageBar(byName[name]) : "")),
    el("td", {className: "num", text: formatSeconds(run.seconds)}),
    el("td", {className: "num", text: run.units === null ? "" : String(run.units)}),
    el("td", {className: "num", text: run.accepted === null ? "" : String(run.accepted)}),
    el("td", {}, report));
  return row;
}

async function refresh(stages) {
  const error = document.getElementById("runs-error");
  try {
    const page = await api("/api/runs?limit=100");
    const body = document.querySelector("#runs tbody");
    body.replaceChildren(...page.runs.map((run) => runRow(run, stages)));
    document.getElementById("runs-total").textContent = `(${page.total})`;
    error.textContent = "";
  } catch (e) {
    error.textContent = `cannot refresh: ${e.message}`;
  }
}

async function submitRun(event) {
  event.preventDefault();
  const result = document.getElementById("submit-result");
  const value = (id) => document.getElementById(id).value.trim();
  let params = {};
  try {
    params = value("params") ? JSON.parse(value("params")) : {};
  } catch (e) {
    result.className = "error";
    result.textContent = `parameters: not valid JSON (${e.message})`;
    return;
  }
  const body = {input: value("input"), output: value("output"), params, until: value("until") || null};
  if (value("name")) body.name = value("name");
  try {
    const run = await api("/api/runs", {method: "POST", body: JSON.stringify(body)});
    result.className = "";
    result.textContent = `queued run ${run.id}` + (run.message ? ` (${run.message})` : "");
  } catch (e) {
    result.className = "error";
    result.textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const stages = document.body.dataset.stages.split(",");
  document.getElementById("submit-form").addEventListener("submit", submitRun);
  refresh(stages);
  setInterval(() => refresh(stages), POLL_MS);
});
