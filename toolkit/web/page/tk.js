// tk's web bundle page: classify a picked, dropped or filmed image with the bundle's verified models,
// and (with ?harness) run every model on its browser runtime over the check set for tk verify/bench --web.
// Every runtime gets the same thing: uint8 RGB pixels at the model's size, row-major (H, W, 3).

const config = await (await fetch("web.json")).json();
const [H, W] = config.size;
const abs = (url) => new URL(url, location.href).href;

// WebAssembly SIMD: a module with one v128 instruction validates only where SIMD is supported.
const SIMD = WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]));
const ISOLATED = self.crossOriginIsolated === true;  // threads need COOP/COEP headers
const THREADS = ISOLATED ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;

function dequantize(values, q) {  // uint8/int8 output -> probabilities (LiteRT.js does not report the scale)
  if (!q || values instanceof Float32Array) return Float32Array.from(values);
  return Float32Array.from(values, (v) => (v - q.zero_point) * q.scale);
}

function inputOf(pixels, dtype) {
  return dtype === "uint8" ? pixels : Float32Array.from(pixels);  // tk models take 0..255 pixels
}

// One loader per runtime: (model entry, threads) -> {run(pixels) -> Promise<Float32Array>, threads}.
const RUNTIMES = {
  async mediapipe(model) {
    const rt = config.runtimes.mediapipe;
    const { FilesetResolver, ImageClassifier } = await import(abs(rt.module));
    const fileset = await FilesetResolver.forVisionTasks(abs(rt.wasm).replace(/\/$/, ""));
    const classifier = await ImageClassifier.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: abs(model.file), delegate: "CPU" },
      runningMode: "IMAGE", maxResults: -1, scoreThreshold: 0,
    });
    const rgba = new Uint8ClampedArray(H * W * 4);
    return {
      threads: 1,  // MediaPipe's vision wasm is single-threaded
      async run(pixels) {
        for (let i = 0, j = 0; i < pixels.length; i += 3, j += 4) {
          rgba[j] = pixels[i]; rgba[j + 1] = pixels[i + 1]; rgba[j + 2] = pixels[i + 2]; rgba[j + 3] = 255;
        }
        const result = classifier.classify(new ImageData(rgba, W, H));  // at the model's size: no resize
        const probs = new Float32Array(config.classes.length);
        for (const c of result.classifications[0].categories) probs[c.index] = c.score;
        return probs;
      },
    };
  },
  async onnxruntime(model, threads) {
    const rt = config.runtimes.onnxruntime;
    const ort = await import(abs(rt.module));
    ort.env.wasm.wasmPaths = abs(rt.wasm);
    ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create(abs(model.file), { executionProviders: ["wasm"] });
    const [input, output] = [session.inputNames[0], session.outputNames[0]];
    return {
      threads: ort.env.wasm.numThreads,
      async run(pixels) {
        const type = model.input.dtype === "uint8" ? "uint8" : "float32";
        const feeds = { [input]: new ort.Tensor(type, inputOf(pixels, model.input.dtype), [1, H, W, 3]) };
        const out = (await session.run(feeds))[output];
        const probs = dequantize(out.data, model.output.quantization);
        out.dispose();
        return probs;
      },
    };
  },
  async litert(model, threads) {
    const rt = config.runtimes.litert;
    const lrt = await import(abs(rt.module));
    if (!RUNTIMES.litertLoaded) RUNTIMES.litertLoaded = lrt.loadLiteRt(abs(rt.wasm), { threads: threads > 1 });
    await RUNTIMES.litertLoaded;
    const compiled = await lrt.loadAndCompile(abs(model.file), { accelerator: "wasm", cpuOptions: { numThreads: threads } });
    return {
      threads,
      async run(pixels) {
        const tensor = new lrt.Tensor(inputOf(pixels, model.input.dtype), [1, H, W, 3]);
        const outputs = await compiled.run([tensor]);
        tensor.delete();
        const probs = dequantize(outputs[0].toTypedArray(), model.output.quantization);
        for (const t of outputs) t.delete();
        return probs;
      },
    };
  },
};

async function load(model, threads = THREADS) {
  const start = performance.now();
  const runner = await RUNTIMES[model.runtime](model, threads);
  return { ...runner, load_ms: performance.now() - start };
}

function environment(loaded) {
  return {
    user_agent: navigator.userAgent, cross_origin_isolated: ISOLATED, simd: SIMD,
    hardware_concurrency: navigator.hardwareConcurrency,
    runtimes: Object.fromEntries(Object.entries(loaded).map(([name, threads]) =>
      [name, { version: config.runtimes[name].version, simd: SIMD, threads }])),
  };
}

async function post(body) {
  const reply = await fetch("/tk/post", { method: "POST", body: JSON.stringify(body) });
  return reply.json();
}

// ---------------------------------------------------------------- harness (tk verify/bench --web)

async function harness() {
  const job = await (await fetch("/tk/job")).json();
  const set = job.checkset;
  const all = new Uint8Array(await (await fetch(set.pixels)).arrayBuffer());
  const one = H * W * 3;
  const loaded = {};
  for (const item of job.items) {
    const model = config.models.find((m) => m.file === item.file && m.runtime === item.runtime);
    let runner;
    try {
      runner = await load(model, job.threads || THREADS);
      loaded[item.runtime] = runner.threads;
    } catch (err) {
      if ((await post({ kind: "error", ...item, error: `${err}` })).stop) return;
      continue;
    }
    const reply = job.mode === "bench" ? await benchOne(job, item, runner, all, set.count, one)
      : await post({ kind: "result", ...item, load_ms: runner.load_ms, probabilities: await predictAll(runner, all, set.count, one) });
    if (reply.stop) return;
  }
  await post({ kind: "done", environment: environment(loaded) });
}

async function predictAll(runner, all, count, one) {
  const rows = [];
  for (let i = 0; i < count; i++) rows.push(Array.from(await runner.run(all.subarray(i * one, (i + 1) * one))));
  return rows;
}

async function benchOne(job, item, runner, all, count, one) {
  // Warm-up, then `runs` timed predictions (or as many as fit job.target_s), in rounds: after each
  // round tk times the native runtime on the same artifact, so load changes hit both alike.
  const pixels = all.subarray(0, one);
  let start = performance.now();
  for (let i = 0; i < job.warmup; i++) await runner.run(pixels);
  const each = job.warmup ? (performance.now() - start) / job.warmup : 1;
  const runs = job.runs || Math.max(job.min_runs, Math.min(job.max_runs, Math.round((job.target_s * 1000) / each)));
  const rounds = Math.min(job.rounds, runs);
  for (let r = 0; r < rounds; r++) {
    const latencies = [];
    const n = Math.floor(runs / rounds) + (r < runs % rounds ? 1 : 0);
    for (let i = 0; i < n; i++) {
      start = performance.now();
      await runner.run(pixels);
      latencies.push(performance.now() - start);
    }
    const reply = await post({ kind: "chunk", ...item, latencies_ms: latencies, threads: runner.threads });
    if (reply.stop) return reply;
  }
  const probabilities = job.accuracy ? await predictAll(runner, all, count, one) : null;
  return post({ kind: "bench-done", ...item, load_ms: runner.load_ms, threads: runner.threads, probabilities });
}

// ---------------------------------------------------------------- the page a person sees

const $ = (id) => document.getElementById(id);
let current = null;

async function choose(index) {
  const model = config.models[index];
  $("status").textContent = `loading ${model.file} on ${model.runtime}...`;
  current = await load(model);
  $("status").textContent = `${model.file} on ${model.runtime} ${config.runtimes[model.runtime].version} ` +
    `(wasm${SIMD ? " SIMD" : ""}, ${current.threads} thread${current.threads > 1 ? "s" : ""}), loaded in ${current.load_ms.toFixed(0)} ms`;
}

async function classify(source) {
  // The browser decodes and resizes here (tk verify uses tk's own decoded pixels instead).
  const canvas = $("preview");
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, W, H);
  const rgba = ctx.getImageData(0, 0, W, H).data;
  const pixels = new Uint8Array(H * W * 3);
  for (let i = 0, j = 0; j < rgba.length; i += 3, j += 4) {
    pixels[i] = rgba[j]; pixels[i + 1] = rgba[j + 1]; pixels[i + 2] = rgba[j + 2];
  }
  const start = performance.now();
  const probs = await current.run(pixels);
  const ms = performance.now() - start;
  const top = [...probs].map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  $("top").replaceChildren(...top.map(([p, i]) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span><span class="bar" style="width:${(p * 100).toFixed(1)}%"></span><span class="score">${(p * 100).toFixed(1)}%</span>`;
    li.querySelector(".name").textContent = config.classes[i];
    return li;
  }));
  $("timing").textContent = `${ms.toFixed(1)} ms`;
  document.body.dataset.top = config.classes[top[0][1]];
}

async function classifyUrl(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  await classify(image);
}

async function page() {
  if ("serviceWorker" in navigator && config.cache) {  // offline once loaded (sw.js)
    navigator.serviceWorker.register(`sw.js?v=${config.cache}`).catch((err) => console.warn("no offline cache:", err));
  }
  document.title = $("title").textContent = `${config.name}: ${config.classes.length} classes`;
  $("model").replaceChildren(...config.models.map((m, i) => new Option(`${m.file} · ${m.runtime}`, i)));
  $("model").onchange = async (e) => { await choose(Number(e.target.value)); };
  $("file").onchange = (e) => e.target.files[0] && classifyUrl(URL.createObjectURL(e.target.files[0]));
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) classifyUrl(URL.createObjectURL(file));
  };
  $("camera").onclick = async () => {
    const video = $("video");
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    video.hidden = false; $("snap").hidden = false;
    await video.play();
  };
  $("snap").onclick = () => classify($("video"));
  await choose(0);
  const given = new URLSearchParams(location.search).get("image");
  if (given) await classifyUrl(given);
}

// The harness with ?harness, the page where its elements are; imported elsewhere (benchmarks/web/
// overhead.html times `load` against each runtime's own example), it only defines.
const main = new URLSearchParams(location.search).has("harness") ? harness : $("model") ? page : null;
main?.().catch(async (err) => {
  if ($("status")) $("status").textContent = `error: ${err}`;
  if (main === harness) await post({ kind: "fatal", error: `${err}\n${err.stack || ""}` });
});

export { config, load };
