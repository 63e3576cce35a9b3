// Drives Debian's Chromium (headless, WebGL through SwiftShader) over the results viewer with playwright-core.
//   NODE_PATH=kit/view/node_modules node tests/view_browser.cjs BASE_URL OUT_DIR STUDY_ID AXIAL_SLICE [page]
// Prints one JSON object: the study table, what the page of STUDY_ID reports, what the pages of the other
// studies in the table report, console errors, refused requests; writes OUT_DIR/axial.png (the axial canvas of
// STUDY_ID at AXIAL_SLICE) and, with "page", OUT_DIR/viewer.png (the whole page, all views).
"use strict";
const { chromium } = require("playwright-core");
const path = require("node:path");

const [base, outDir, studyId, axialSlice, wholePage] = process.argv.slice(2);
const origin = new URL(base).origin;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
      "--ignore-gpu-blocklist"],
  });
  const result = { console: [], refused: [], failed: [], served: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin) || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
      result.refused.push(url);
      return route.abort();
    });
    const page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") result.console.push(`${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
    // NiiVue reads the first bytes of a volume to tell its compression, then cancels that stream and fetches
    // the file again: a cancelled request (net::ERR_ABORTED) is that, not an error.
    page.on("requestfailed", (r) => {
      const why = r.failure()?.errorText ?? "";
      if (why !== "net::ERR_ABORTED") result.failed.push(`${r.url()} ${why}`);
    });
    page.on("response", (r) => {
      if (r.status() >= 400) result.failed.push(`${r.url()} ${r.status()}`);
      else result.served.push(new URL(r.url()).pathname + new URL(r.url()).search);
    });

    const t0 = Date.now(); const mark = (k) => { result[`t_${k}`] = Date.now() - t0; };
    await page.goto(base, { waitUntil: "load" });
    await page.waitForSelector("body[data-ready]", { timeout: 20000 });
    result.index = await page.evaluate(() => ({
      ready: document.body.dataset.ready,
      problems: [...document.querySelectorAll("#problems li")].map((li) => li.textContent),
      headers: [...document.querySelectorAll("#studies thead th")].map((th) => th.textContent),
      studies: [...document.querySelectorAll("#studies tbody tr")].map((tr) => ({
        id: tr.dataset.study, cells: [...tr.cells].map((c) => c.textContent),
        volumes: [...tr.querySelectorAll("[data-class]")].map((v) => [v.dataset.class, v.textContent]),
        href: tr.querySelector("a")?.getAttribute("href") ?? null,
      })),
      runs: [...document.querySelectorAll("#runs tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
    }));
    mark("index");
    const href = result.index.studies.find((s) => s.id === studyId)?.href;
    if (!href) throw new Error(`no study ${studyId} with a viewer link in the table`);

    await page.goto(new URL(`${href}&view=axial&opacity=1`, base).href, { waitUntil: "load" });
    await page.waitForSelector("body[data-ready]", { timeout: 60000 });
    mark("study_loaded");
    result.study = await page.evaluate(async (slice) => {
      const ready = document.body.dataset.ready;
      const problems = [...document.querySelectorAll("#problems li")].map((li) => li.textContent);
      const v = window.odkViewer;
      if (!v) return { ready, problems };
      const nv = v.nv;
      v.setSlice(Number(slice));
      nv.setCrosshairWidth(0);
      nv.drawScene();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const canvas = document.getElementById("gl");
      return {
        ready, problems,
        volumes: nv.volumes.map((vol) => ({ name: vol.name, dimsRAS: [...vol.dimsRAS], cal: [vol.cal_min, vol.cal_max] })),
        slices: nv.screenSlices.map((s) => ({ ltwh: [...s.leftTopWidthHeight], axCorSag: s.axCorSag })),
        canvas: { width: canvas.width, height: canvas.height, css: [canvas.clientWidth, canvas.clientHeight] },
        crosshair: [...nv.scene.crosshairPos],
        legend: [...document.querySelectorAll("#legend li")].map((li) => li.textContent),
        swatches: [...document.querySelectorAll("#legend .swatch")].map((sw) => getComputedStyle(sw).backgroundColor),
        facts: document.getElementById("facts").textContent,
        webgl2: !!nv.gl,
      };
    }, axialSlice);
    mark("axial_set");
    await page.locator("#gl").screenshot({ path: path.join(outDir, "axial.png") });
    mark("axial_shot");

    // The controls, as a user works them: a view button, an HU window preset, the opacity slider.
    await page.click('button[data-view="coronal"]');
    await page.click('button[data-window="-160,240"]');
    await page.locator("#opacity").fill("0.3");
    result.controls = await page.evaluate(() => {
      const nv = window.odkViewer.nv;
      return {
        axCorSag: nv.screenSlices.map((s) => s.axCorSag), cal: [nv.volumes[0].cal_min, nv.volumes[0].cal_max],
        huInputs: [document.getElementById("hu-min").value, document.getElementById("hu-max").value],
        opacity: nv.volumes[1].opacity, active: document.querySelector("button.active")?.dataset.view,
      };
    });
    await page.click("#model-window");
    result.controls.modelCal = await page.evaluate(() => {
      const ct = window.odkViewer.nv.volumes[0];
      return [ct.cal_min, ct.cal_max];
    });
    mark("controls");

    if (wholePage === "page") {
      await page.evaluate(() => {
        const v = window.odkViewer;
        if (!v) return;
        document.getElementById("opacity").value = "0.6";
        document.getElementById("opacity").dispatchEvent(new Event("input"));
        v.nv.setCrosshairWidth(1);
        v.setView("multiplanar");
      });
      await page.waitForTimeout(500);
      await page.screenshot({ path: path.join(outDir, "viewer.png") });
      mark("viewer_shot");
    }

    result.others = [];
    for (const other of result.index.studies.filter((s) => s.href && s.id !== studyId)) {
      await page.goto(new URL(other.href, base).href, { waitUntil: "load" });
      await page.waitForSelector("body[data-ready]", { timeout: 30000 });
      result.others.push(await page.evaluate((id) => ({
        id, ready: document.body.dataset.ready,
        problems: [...document.querySelectorAll("#problems li")].map((li) => li.textContent),
        volumes: window.odkViewer ? window.odkViewer.nv.volumes.map((v) => v.name) : [],
        legend: [...document.querySelectorAll("#legend li")].map((li) => li.textContent),
        modelWindow: document.getElementById("model-window").hidden ? null
          : document.getElementById("model-window").dataset.window,
      }), other.id));
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
