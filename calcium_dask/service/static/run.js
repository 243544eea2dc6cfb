"use strict";
// One run's page: state, stages, summary images and log, refreshed every second.
const POLL_MS = 1000;

function stageRow(stage) {
  const details = stage.details
    ? Object.entries(stage.details).filter(([k]) => !["seconds", "finished", "version"].includes(k))
        .map(([k, v]) => `${k}=${v}`).join(", ") : "";
  return el("tr", {"data-stage": stage.stage},
    el("td", {text: stage.stage}),
    el("td", {}, el("span", {className: `state state-${stage.state}`, text: stage.state})),
    el("td", {}, stageBar(stage)),
    el("td", {text: stage.state === "running" && stage.pass_label ? `${stage.pass_label} ${stage.done}/${stage.total}` : ""}),
    el("td", {className: "num", text: stage.seconds === null ? "" : stage.seconds.toFixed(1)}),
    el("td", {text: details}));
}

function showImages(runId, run) {
  const motionDone = run.stages.some((s) => s.stage === "motion" && s.state === "done");
  if (!motionDone) return;
  for (const img of document.querySelectorAll("#images img")) {
    if (img.dataset.loaded) continue;
    img.dataset.loaded = "1";
    img.addEventListener("load", () => { img.parentElement.hidden = false; });
    img.src = `/api/runs/${runId}/images/${img.dataset.name}.png`;
  }
}

async function refresh(runId) {
  const text = (id, value) => { document.getElementById(id).textContent = value ?? ""; };
  try {
    const run = await api(`/api/runs/${runId}`);
    const state = document.getElementById("run-state");
    state.textContent = run.state;
    state.className = `state state-${run.state}`;
    text("run-input", Array.isArray(run.input) ? run.input.join(", ") : run.input);
    text("run-units", run.units);
    text("run-accepted", run.accepted);
    text("run-message", run.message);
    text("run-seconds", formatSeconds(run.seconds));
    document.getElementById("run-progress").value = run.progress;
    document.getElementById("cancel").disabled = !["queued", "running"].includes(run.state);
    document.getElementById("retry").disabled = !["failed", "cancelled"].includes(run.state);
    document.querySelector("#stages tbody").replaceChildren(...run.stages.map(stageRow));
    showImages(runId, run);
    text("log", await api(`/api/runs/${runId}/log?tail=500`));
  } catch (e) {
    text("action-result", `cannot refresh: ${e.message}`);
  }
}

async function act(runId, action) {
  try {
    const out = await api(`/api/runs/${runId}/${action}`, {method: "POST", body: "{}"});
    document.getElementById("action-result").textContent = `${action}: ${out.state}`;
  } catch (e) {
    document.getElementById("action-result").textContent = `${action}: ${e.message}`;
  }
  refresh(runId);
}

document.addEventListener("DOMContentLoaded", () => {
  const runId = document.body.dataset.runId;
  document.getElementById("cancel").addEventListener("click", () => act(runId, "cancel"));
  document.getElementById("retry").addEventListener("click", () => act(runId, "retry"));
  refresh(runId);
  setInterval(() => refresh(runId), POLL_MS);
});
