// The results page: one table of studies, one of pipeline runs.
import { el, fmt, getJson, params, showProblem } from "/static/common.js";

function timings(t) {
  const keys = ["total", "inference", "preprocess", "postprocess"].filter((k) => k in t);
  return keys.map((k) => `${k} ${fmt(t[k], 2)}`).join(", ");
}

// The volume of each of the study's own classes (the model's labels, in label order): "name: x mL"; an organ's
// volume includes the classes it holds (its tooltip names them).
function volumesCell(labels) {
  const cell = el("td", { class: "volumes" });
  labels.filter((l) => l.value !== 0).forEach((l, i) => {
    if (i) cell.append(", ");
    const title = l.includes.length ? `${l.includes.join(", ")} included` : null;
    cell.append(el("span", { class: "volume", "data-class": l.name, title }, `${l.name}: ${fmt(l.volume_ml)} mL`));
  });
  return cell;
}

function studyRow(s) {
  const name = s.seg_url ? el("a", { href: s.view_url }, s.name) : s.name;
  const spacing = s.spacing_mm ? s.spacing_mm.map((v) => fmt(v, 2)).join(" × ") : "";
  const reason = [s.reason, s.viewable || !s.ct_problem || s.status === "failed" ? "" : s.ct_problem]
    .filter(Boolean).join("; ");
  return el("tr", { class: `status-${s.status}`, "data-study": s.id },
    el("td", {}, name), el("td", {}, s.folder || "."), el("td", { class: "status" }, s.status),
    el("td", {}, s.shape ? s.shape.join(" × ") : ""), el("td", {}, spacing),
    volumesCell(s.labels),
    el("td", {}, timings(s.timings_s)), el("td", {}, s.transport ?? ""), el("td", {}, s.model ?? ""),
    el("td", { class: "reason" }, reason));
}

function operatorsCell(run) {
  const list = el("ul", { class: "ops" });
  for (const op of run.operators) {
    const time = op.seconds === null ? "" : ` ${fmt(op.seconds)} s`;
    list.append(el("li", { class: `status-${op.status}`, "data-operator": op.name },
      `${op.name}: `, el("span", { class: "status" }, op.status), time,
      op.detail ? ` (${op.detail})` : "", op.log_url ? " " : "", op.log_url ? el("a", { href: op.log_url }, "log") : null));
  }
  return el("td", {}, run.operators.length ? list : "no operator logs yet");
}

function runRow(run, source) {
  const info = run.info || {};
  const details = ["study_instance_uid", "calling_aet", "instances", "pipeline", "received_at", "started_at",
    "finished_at", "reason", "logs"].filter((k) => info[k] !== undefined && info[k] !== null && info[k] !== "")
    .map((k) => el("div", {}, `${k.replaceAll("_", " ")}: ${info[k]}`));
  return el("tr", { class: `state-${run.state}`, "data-run": run.name },
    el("td", {}, run.kind === "listener" ? `listener job ${run.name}` : run.name),
    el("td", { class: "state" }, run.state), operatorsCell(run), el("td", {}, ...details),
    el("td", {}, run.log_url ? el("a", { href: run.log_url }, "job.log") : ""),
    el("td", {}, run.results_url && run.source !== source ? el("a", { href: run.results_url }, "studies") : ""));
}

async function main() {
  const source = params().get("source") || "out";
  const problems = document.getElementById("problems");
  try {
    const data = await getJson(`/api/overview?source=${encodeURIComponent(source)}`);
    document.getElementById("where").textContent =
      `${data.title}${data.inputs ? ` — CT from ${data.inputs}` : ""}`;
    if (source !== "out") {
      document.getElementById("where").append(" ", el("a", { href: "/" }, "← all results"));
    }
    for (const p of data.problems) showProblem(problems, p);
    const body = document.querySelector("#studies tbody");
    for (const s of data.studies) body.append(studyRow(s));
    const runs = document.querySelector("#runs tbody");
    for (const r of data.runs) runs.append(runRow(r, source));
    document.getElementById("no-runs").hidden = data.runs.length > 0;
    document.getElementById("runs-section").hidden = source !== "out" && data.runs.length === 0;
    document.body.dataset.ready = "1";
  } catch (err) {
    showProblem(problems, `Cannot read the results: ${err.message}`);
    document.body.dataset.ready = "error";
  }
}

main();
