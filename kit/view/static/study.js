// One study: the CT with its label map as a coloured overlay (NiiVue, served by this server).
import { Niivue, SLICE_TYPE, SHOW_RENDER } from "/vendor/niivue.js";
import { el, fmt, getJson, params, showProblem } from "/static/common.js";

const VIEWS = {
  axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL,
  render: SLICE_TYPE.RENDER, multiplanar: SLICE_TYPE.MULTIPLANAR,
};
const AXIS = { sagittal: 0, coronal: 1, axial: 2, multiplanar: 2 }; // RAS axis each view scrolls through

function labelColormap(labels) {
  const cm = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  for (const l of labels) {
    cm.R.push(l.colour[0]); cm.G.push(l.colour[1]); cm.B.push(l.colour[2]);
    cm.A.push(l.value === 0 ? 0 : 255); cm.I.push(l.value); cm.labels.push(l.name);
  }
  return cm;
}

// A class's volume as the report gives it: an organ's includes the classes it holds ("1496.6 mL (lesion included)").
function volumeText(l) {
  if (typeof l.volume_ml !== "number") return "";
  return `${fmt(l.volume_ml)} mL${l.includes?.length ? ` (${l.includes.join(", ")} included)` : ""}`;
}

function legend(labels) {
  const list = document.getElementById("legend");
  for (const l of labels.filter((x) => x.value !== 0)) {
    const swatch = el("span", { class: "swatch", style: `background: rgb(${l.colour.join(",")})` });
    const volume = volumeText(l);
    list.append(el("li", { "data-label": l.value }, swatch, `${l.value} ${l.name}${volume && ` — ${volume}`}`));
  }
}

function facts(s) {
  const parts = [s.shape && `${s.shape.join(" × ")} voxels`, s.spacing_mm && `${s.spacing_mm.join(" × ")} mm`,
    s.orientation, ...s.labels.filter((l) => l.value !== 0 && volumeText(l)).map((l) => `${l.name} ${volumeText(l)}`),
    s.model, s.transport && `via ${s.transport}`,
    s.ct_name && `CT ${s.ct_name}`];
  return parts.filter(Boolean).join(" · ");
}

// The "model" preset is the HU window the model was given (the report's model.hu_window); without one in the
// report, the preset is hidden and the page opens in the first preset's window (abdomen).
function modelWindow(huWindow) {
  const ok = Array.isArray(huWindow) && huWindow.length === 2 && huWindow[1] > huWindow[0];
  const button = document.getElementById("model-window");
  button.hidden = !ok;
  if (ok) button.dataset.window = huWindow.join(",");
  return ok ? huWindow : document.querySelector("[data-window]:not([hidden])").dataset.window.split(",").map(Number);
}

class Viewer {
  constructor(nv, study) {
    this.nv = nv;
    this.study = study;
    this.view = "multiplanar";
    this.overlay = study.ct_url ? 1 : 0; // index of the label map among the volumes
  }

  setView(name) {
    this.view = name;
    this.nv.setSliceType(VIEWS[name]);
    for (const b of document.querySelectorAll("[data-view]")) b.classList.toggle("active", b.dataset.view === name);
    this.syncSlider();
  }

  dims() {
    const d = this.nv.volumes[0].dimsRAS; // [n, x, y, z]
    return [d[1], d[2], d[3]];
  }

  syncSlider() {
    const slider = document.getElementById("slice");
    const axis = AXIS[this.view];
    slider.disabled = axis === undefined;
    if (axis === undefined) return;
    const n = this.dims()[axis];
    slider.max = String(n - 1);
    slider.value = String(Math.min(n - 1, Math.floor(this.nv.scene.crosshairPos[axis] * n)));
    document.getElementById("slice-value").textContent = `${Number(slider.value) + 1}/${n}`;
  }

  setSlice(index) {
    const axis = AXIS[this.view];
    if (axis === undefined) return;
    const n = this.dims()[axis];
    const pos = [...this.nv.scene.crosshairPos];
    pos[axis] = (index + 0.5) / n;
    this.nv.scene.crosshairPos = pos;
    this.nv.drawScene();
    this.nv.createOnLocationChange?.();
    this.syncSlider();
  }

  setOpacity(value) {
    this.nv.setOpacity(this.overlay, value);
    document.getElementById("opacity-value").textContent = value.toFixed(2);
  }

  setWindow(lo, hi) {
    if (!this.study.ct_url || !(hi > lo)) return;
    const ct = this.nv.volumes[0];
    ct.cal_min = lo;
    ct.cal_max = hi;
    this.nv.updateGLVolume();
    document.getElementById("hu-min").value = String(lo);
    document.getElementById("hu-max").value = String(hi);
  }
}

function wire(viewer) {
  for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => viewer.setView(b.dataset.view));
  document.getElementById("slice").addEventListener("input", (e) => viewer.setSlice(Number(e.target.value)));
  document.getElementById("opacity").addEventListener("input", (e) => viewer.setOpacity(Number(e.target.value)));
  const readWindow = () => viewer.setWindow(Number(document.getElementById("hu-min").value),
    Number(document.getElementById("hu-max").value));
  document.getElementById("hu-min").addEventListener("change", readWindow);
  document.getElementById("hu-max").addEventListener("change", readWindow);
  for (const b of document.querySelectorAll("[data-window]")) {
    b.addEventListener("click", () => viewer.setWindow(...b.dataset.window.split(",").map(Number)));
  }
  viewer.nv.onLocationChange = (data) => {
    const values = data?.values ?? [];
    const ct = viewer.study.ct_url && values[0] ? `CT ${Math.round(values[0].value)} HU` : "";
    const label = values[viewer.overlay];
    const name = label ? viewer.study.labels.find((l) => l.value === Math.round(label.value))?.name : "";
    const vox = data?.vox ? `voxel ${[...data.vox].join(", ")}` : "";
    document.getElementById("location").textContent = [vox, ct, name].filter(Boolean).join(" · ");
    viewer.syncSlider();
  };
}

async function main() {
  const q = params();
  const source = q.get("source") || "out";
  const problems = document.getElementById("problems");
  document.getElementById("back").href = `/?source=${encodeURIComponent(source)}`;
  let study;
  try {
    study = await getJson(`/api/study?source=${encodeURIComponent(source)}&id=${encodeURIComponent(q.get("id") || "")}`);
  } catch (err) {
    showProblem(problems, `Cannot open this study: ${err.message}`);
    document.body.dataset.ready = "error";
    return;
  }
  document.title = `ODK · ${study.name}`;
  document.getElementById("title").textContent = study.name;
  document.getElementById("facts").textContent = facts(study);
  legend(study.labels);
  if (study.reason) showProblem(problems, `${study.status}: ${study.reason}`);
  if (!study.seg_url) {
    showProblem(problems, "This study has no label map to show.");
    document.body.dataset.ready = "error";
    return;
  }
  if (!study.ct_url) showProblem(problems, `${study.ct_problem}. Showing the label map alone.`);

  const view = q.get("view") in VIEWS ? q.get("view") : "multiplanar";
  const nv = new Niivue({
    sliceType: VIEWS[view],
    isRadiologicalConvention: true, // the patient's right on the screen's left, as in the QA overlay and at a PACS
    backColor: [0, 0, 0, 1], crosshairColor: [1, 1, 1, 0.8], show3Dcrosshair: true, isColorbar: false, dragAndDropEnabled: false,
    multiplanarShowRender: SHOW_RENDER.ALWAYS, logLevel: "warn", loadingText: "loading",
  });
  await nv.attachToCanvas(document.getElementById("gl"));
  const volumes = [];
  const [lo, hi] = modelWindow(study.hu_window);
  if (study.ct_url) volumes.push({ url: study.ct_url, name: study.ct_name, colormap: "gray", cal_min: lo, cal_max: hi });
  const asked = Number.parseFloat(q.get("opacity") ?? "");
  const opacity = asked >= 0 && asked <= 1 ? asked : 0.6;
  document.getElementById("opacity").value = String(opacity);
  volumes.push({ url: study.seg_url, name: `${study.name}_seg.nii.gz`, opacity });
  try {
    await nv.loadVolumes(volumes);
  } catch (err) {
    showProblem(problems, `Cannot load the volumes: ${err.message ?? err}`);
    document.body.dataset.ready = "error";
    return;
  }
  const viewer = new Viewer(nv, study);
  nv.volumes[viewer.overlay].setColormapLabel(labelColormap(study.labels));
  nv.updateGLVolume(); // once: window and opacity came with the volumes
  wire(viewer);
  document.getElementById("hu-min").value = String(lo);
  document.getElementById("hu-max").value = String(hi);
  document.getElementById("opacity-value").textContent = opacity.toFixed(2);
  viewer.setView(view);
  window.odkViewer = viewer;
  document.body.dataset.ready = "1";
}

main();
