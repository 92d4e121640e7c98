// The playground: an image and a question (or a preset) in, the answer out, as a person
// would try the service. Plain JavaScript, no build step, no other host: every call is
// to this gateway, by a URL relative to the page (so it works behind a path prefix).
//
// Two routes, chosen by the task (why: the native analyze API answers in one piece):
// - A free question goes to the OpenAI face, POST v1/chat/completions with stream: true,
//   so the answer is painted token by token as the model writes it. Its status comes
//   from the X-Gateway-Status header (SUCCESS, or CACHED for a replayed answer); the
//   OpenAI face's errors carry an HTTP status, shown under the native API's status
//   names (STATUS_OF_HTTP). A fixed seed makes a sampled answer repeatable, so the same
//   question again is answered from the cache, as on the native API.
// - A preset goes to the native API, POST api/v1/multimodal/analyze, whose answer is
//   one AnalysisResult: its status and its `data` (JSON that follows the preset's
//   schema), shown pretty-printed.
// The API key, when the service needs one, lives in this tab's sessionStorage only.
(() => {
  "use strict";

  const API = {
    chat: "v1/chat/completions",
    analyze: "api/v1/multimodal/analyze",
    presets: "api/v1/multimodal/presets",
    model: "health/model",
  };
  const KEY_STORAGE = "llava-playground.api-key";
  const REPEATABLE_SEED = 1;
  const DEFAULT_TEMPERATURE = 0.2;  // the native API's default, used on both routes
  const MODEL_POLL_MS = { ready: 2000, other: 500 };  // faster while the model starts: its phases are short
  // The OpenAI face's HTTP statuses as the native API's status names (README, status table).
  const STATUS_OF_HTTP = {
    400: "VALIDATION_ERROR", 404: "VALIDATION_ERROR", 413: "VALIDATION_ERROR", 415: "VALIDATION_ERROR",
    401: "UNAUTHORIZED", 429: "OVERLOADED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE",
  };
  const NOTES = {
    SUCCESS: "Answered by the model.",
    CACHED: "From the cache: this image, question and options were answered recently.",
    FALLBACK: "The model is unavailable, so the service answered with its stand-in message.",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("ask-form"), image: $("image"), drop: $("drop"), preview: $("preview"), dropText: $("drop-text"),
    fileName: $("file-name"), preset: $("preset"), presetHelp: $("preset-help"), prompt: $("prompt"),
    promptLabel: $("prompt-label"), options: $("options"), maxTokens: $("max-tokens"),
    temperature: $("temperature"), key: $("api-key"), ask: $("ask"), askNote: $("ask-note"),
    status: $("status"), statusNote: $("status-note"), latency: $("latency"), firstToken: $("first-token"),
    tokens: $("tokens"), requestId: $("request-id"), error: $("error"), errorTitle: $("error-title"),
    errorText: $("error-text"), errorRetry: $("error-retry"), answer: $("answer"), code: $("code"),
    codeText: $("code-text"), modelState: $("model-state"), modelText: $("model-state-text"),
    modelProgress: $("model-progress"),
  };
  let file = null;
  let previewUrl = null;
  let presets = {};
  let countdown = null;
  let askNote = "";  // shown beside Ask once the answer is in (where the person's eyes are)

  // ------------------------------------------------------------------ the API key

  function apiKey() { return el.key.value.trim(); }

  function authHeaders() {
    return apiKey() ? { Authorization: "Bearer " + apiKey() } : {};
  }

  el.key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  el.key.addEventListener("input", () => {
    if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  el.key.addEventListener("change", loadPresets);

  // ------------------------------------------------------------------ the image

  function chooseFile(chosen) {
    file = chosen || null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    el.preview.hidden = true;
    el.dropText.hidden = false;
    el.fileName.textContent = "";
    if (!file) return;
    el.fileName.textContent = `Chosen: ${file.name} (${sizeText(file.size)}).`;
    if (file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      el.preview.src = previewUrl;
      el.preview.hidden = false;
      el.dropText.hidden = true;
    }
  }

  el.image.addEventListener("change", () => chooseFile(el.image.files[0]));
  el.drop.addEventListener("dragover", (event) => { event.preventDefault(); el.drop.classList.add("dragging"); });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("dragging");
    if (event.dataTransfer.files.length) {
      el.image.files = event.dataTransfer.files;
      chooseFile(event.dataTransfer.files[0]);
    }
  });

  function sizeText(bytes) {
    if (bytes < 1024) return `${bytes} bytes`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function base64Of(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      // Raw base64, not a data: URL: the gateway judges the bytes, whatever type the browser guessed.
      reader.onload = () => resolve(String(reader.result).slice(String(reader.result).indexOf(",") + 1));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  // ------------------------------------------------------------------ presets

  async function loadPresets() {
    let response;
    try {
      response = await fetch(API.presets, { headers: { Accept: "application/json", ...authHeaders() } });
    } catch {
      return;  // the model-state strip says the gateway cannot be reached
    }
    if (response.status === 401) {
      el.presetHelp.textContent = "Enter the API key (Options and API key) to see the presets.";
      return;
    }
    if (!response.ok) return;
    const chosen = el.preset.value;
    presets = {};
    el.preset.replaceChildren(el.preset.options[0]);
    for (const preset of (await response.json()).presets) {
      presets[preset.name] = preset;
      el.preset.add(new Option(`${preset.name}: ${preset.description}`, preset.name));
    }
    el.preset.value = presets[chosen] ? chosen : "";
    showTask();
  }

  function showTask() {
    const preset = presets[el.preset.value];
    el.promptLabel.textContent = preset ? "Extra context (optional)" : "Question";
    el.prompt.placeholder = preset ? "Anything the preset's question should take into account" : "What's in this picture?";
    el.maxTokens.placeholder = String(preset ? preset.maxTokens : 512);
    el.presetHelp.textContent = preset
      ? `Asks: “${preset.prompt}” The answer is JSON following the preset's schema (shown whole, not streamed).`
      : "Or a preset: a ready-made question whose answer is JSON that follows a schema.";
  }

  el.preset.addEventListener("change", showTask);

  // ------------------------------------------------------------------ asking

  el.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      el.form.requestSubmit();
    }
  });

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const preset = el.preset.value;
    const prompt = el.prompt.value.trim();
    if (!file) return refuseHere("Choose an image first.", el.image);
    if (!preset && !prompt) return refuseHere("Type a question first, or pick a preset.", el.prompt);
    begin();
    try {
      if (preset) await askPreset(preset, prompt);
      else await askStreaming(prompt);
    } catch (error) {
      failed("UNREACHABLE", "The service cannot be reached",
             "The gateway did not answer or the connection broke. Check that the service is running, then try again.");
    } finally {
      finish();
    }
  });

  function options() {
    const maxTokens = el.maxTokens.value.trim();
    const temperature = el.temperature.value.trim();
    return { maxTokens: maxTokens ? Number(maxTokens) : null, temperature: temperature ? Number(temperature) : null };
  }

  async function askStreaming(prompt) {
    const { maxTokens, temperature } = options();
    const body = {
      messages: [{ role: "user", content: [
        { type: "image_url", image_url: { url: await base64Of(file) } },
        { type: "text", text: prompt },
      ] }],
      temperature: temperature ?? DEFAULT_TEMPERATURE,
      seed: REPEATABLE_SEED,
      stream: true,
      stream_options: { include_usage: true },
    };
    if (maxTokens !== null) body.max_tokens = maxTokens;
    showCode(prompt, null);
    const started = performance.now();
    const response = await fetch(API.chat, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(body),
    });
    el.requestId.textContent = response.headers.get("X-Request-ID") || "–";
    if (!response.ok) {
      const error = (await jsonOf(response))?.error || {};
      return refused(STATUS_OF_HTTP[response.status] || `HTTP_${response.status}`, error.message, response,
                     /image|too_large/.test(`${error.param} ${error.code}`));  // the image is all that is large
    }
    const status = response.headers.get("X-Gateway-Status") || "SUCCESS";
    el.answer.setAttribute("aria-busy", "true");
    el.status.textContent = "Answering…";
    el.status.dataset.status = "STREAMING";
    const text = document.createTextNode("");
    el.answer.replaceChildren(text);
    let usage = null;
    for await (const event of serverSentEvents(response.body)) {
      if (event.error) {
        return failed("SERVICE_UNAVAILABLE", "The answer broke off", sentence(event.error.message));
      }
      let delta = event.choices?.[0]?.delta?.content;
      if (delta && !text.length) {
        delta = delta.trimStart();  // the model's first token often starts with a space
        el.firstToken.textContent = seconds(performance.now() - started);
      }
      if (delta) {
        // Keep the newest words in view while the reader is at the bottom (not for the first piece:
        // a replayed answer comes whole and is read from its start).
        const following = text.length && el.answer.scrollTop + el.answer.clientHeight >= el.answer.scrollHeight - 4;
        text.appendData(delta);
        if (following) el.answer.scrollTop = el.answer.scrollHeight;
      }
      usage = event.usage || usage;
    }
    el.latency.textContent = seconds(performance.now() - started);
    if (usage) el.tokens.textContent = `${usage.prompt_tokens} / ${usage.completion_tokens}`;
    answered(status);
  }

  async function askPreset(preset, prompt) {
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("preset", preset);
    if (prompt) form.append("prompt", prompt);
    const { maxTokens, temperature } = options();
    if (maxTokens !== null) form.append("max-tokens", String(maxTokens));
    form.append("temperature", String(temperature ?? DEFAULT_TEMPERATURE));
    showCode(prompt, preset);
    el.status.textContent = "Answering…";
    el.status.dataset.status = "STREAMING";
    el.answer.setAttribute("aria-busy", "true");
    const started = performance.now();
    const response = await fetch(API.analyze, {
      method: "POST", headers: { Accept: "application/json", ...authHeaders() }, body: form,
    });
    el.requestId.textContent = response.headers.get("X-Request-ID") || "–";
    const result = await jsonOf(response);
    if (!result || !result.status) {
      return refused(STATUS_OF_HTTP[response.status] || `HTTP_${response.status}`, null, response, false);
    }
    if (!["SUCCESS", "CACHED", "FALLBACK"].includes(result.status)) {
      return refused(result.status, result.result, response, [413, 415].includes(response.status));
    }
    el.latency.textContent = seconds(performance.now() - started);
    el.firstToken.textContent = "not streamed";
    if (result.usage) el.tokens.textContent = `${result.usage.promptTokens} / ${result.usage.completionTokens}`;
    el.answer.textContent = result.data != null ? JSON.stringify(result.data, null, 2) : result.result;
    answered(result.status);
    if (result.data == null && result.status !== "FALLBACK") {
      el.statusNote.textContent += " The answer is not complete JSON (cut at max tokens?), so it is shown as text.";
    }
  }

  async function jsonOf(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  // `data:` events of a text/event-stream body, parsed, until `data: [DONE]`.
  async function* serverSentEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended before [DONE]");
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer.slice(0, end).split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trim()).join("\n");
        buffer = buffer.slice(end + 2);
        if (data === "[DONE]") return;
        if (data) yield JSON.parse(data);
      }
    }
  }

  // ------------------------------------------------------------------ showing

  function begin() {
    clearInterval(countdown);
    askNote = "";
    el.ask.disabled = true;
    el.askNote.textContent = "Asking…";
    el.error.hidden = true;
    el.answer.replaceChildren();
    el.status.textContent = "Sending…";
    el.status.dataset.status = "PENDING";
    el.statusNote.textContent = "";
    for (const cell of [el.latency, el.firstToken, el.tokens, el.requestId]) cell.textContent = "–";
  }

  function finish() {
    el.ask.disabled = false;
    el.askNote.textContent = askNote;
    el.answer.setAttribute("aria-busy", "false");
  }

  function answered(status) {
    el.status.textContent = status;
    el.status.dataset.status = status;
    el.statusNote.textContent = NOTES[status] || "";
  }

  // A refusal from the gateway: its status, its reason in plain words, and when to retry.
  function refused(status, reason, response, aboutImage) {
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    // "...; retry in 3 s": the countdown below says when, and keeps saying it.
    const because = sentence(retryAfter ? String(reason || "").replace(/;\s*retry in \d+ s\.?$/, "") : reason);
    switch (status) {
      case "VALIDATION_ERROR":
        return failed(status, aboutImage ? "This file cannot be used" : "The request was refused", because);
      case "UNAUTHORIZED":
        el.options.open = true;
        el.key.focus();
        askNote = "Enter the API key above, then ask again.";
        return failed(status, apiKey() ? "The API key was not accepted" : "An API key is needed",
                      "Enter the service's API key under Options and API key, then ask again.");
      case "OVERLOADED":
        return failed(status, "The service is at capacity", because, retryAfter);
      case "SERVICE_UNAVAILABLE":
        return failed(status, "The model is unavailable right now", because, retryAfter);
      case "INTERNAL_ERROR":
        return failed(status, "Something went wrong in the gateway",
                      `Quote request id ${el.requestId.textContent} when you report it.`);
      default:
        return failed(status, `The service answered HTTP ${response.status}`, because);
    }
  }

  function failed(status, title, text, retryAfter = null) {
    el.status.textContent = status;
    el.status.dataset.status = status;
    el.errorTitle.textContent = title;
    el.errorText.textContent = text || "";
    el.error.dataset.kind = retryAfter ? "retry" : "refused";
    el.errorRetry.textContent = "";
    el.error.hidden = false;
    if (retryAfter) startCountdown(retryAfter);
  }

  function startCountdown(secondsLeft) {
    const at = new Date(Date.now() + secondsLeft * 1000).toLocaleTimeString();
    const tick = () => {
      el.errorRetry.textContent = secondsLeft > 0
        ? `Try again in ${secondsLeft} s (at ${at}).`
        : "You can try again now.";
      if (secondsLeft-- <= 0) clearInterval(countdown);
    };
    tick();
    countdown = setInterval(tick, 1000);
  }

  function refuseHere(text, field) {
    failed("", "Not sent", text);
    el.status.textContent = "Not sent";
    field.focus();
  }

  // The gateway's reasons are written for clients: drop the field name, start with a capital.
  function sentence(reason) {
    const text = String(reason || "").replace(/^`[^`]*`:\s*/, "").trim();
    if (!text) return "";
    return text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  }

  function seconds(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  // The curl call that does the same (the native API answers free questions too, in one piece).
  function showCode(prompt, preset) {
    const url = new URL(API.analyze, document.baseURI).href;
    const quote = (value) => `'${String(value).replace(/'/g, "'\\''")}'`;
    const parts = ["curl"];
    if (apiKey()) parts.push('-H "Authorization: Bearer $API_KEY"');
    parts.push(`-F image=@${quote(file.name)}`);
    if (preset) parts.push(`-F preset=${quote(preset)}`);
    if (prompt) parts.push(`-F prompt=${quote(prompt)}`);
    const { maxTokens, temperature } = options();
    if (maxTokens !== null) parts.push(`-F max-tokens=${maxTokens}`);
    if (temperature !== null) parts.push(`-F temperature=${temperature}`);
    parts.push(url);
    el.codeText.textContent = parts.join(" \\\n  ");
    el.code.hidden = false;
  }

  // ------------------------------------------------------------------ the model's state

  async function watchModel() {
    let state = "unreachable";
    if (!document.hidden) {
      try {
        const response = await fetch(API.model, { cache: "no-store", headers: { Accept: "application/json" } });
        const health = await response.json();
        state = health.details.state;
        showModel(health.details);
      } catch {
        showModel({ state });
      }
    }
    setTimeout(watchModel, state === "ready" ? MODEL_POLL_MS.ready : MODEL_POLL_MS.other);
  }

  function showModel(model) {
    const replicas = model.replicas && model.replicas.total > 1
      ? ` · ${model.replicas.ready} of ${model.replicas.total} replicas ready` : "";
    const bar = (model.bars || []).find((b) => b.total > 0);
    let text;
    switch (model.state) {
      case "ready":
        text = `Model ready${model.model ? ` · ${model.model}` : ""}${replicas}`;
        break;
      case "loading":
        text = `Model loading · ${model.phase || "starting"}${model.detail ? ` (${model.detail})` : ""}`
          + (bar ? ` · ${bar.desc || "progress"} ${bar.n}/${bar.total}` : "")
          + (model.elapsedSeconds != null ? ` · ${Math.round(model.elapsedSeconds)} s` : "");
        break;
      case "starting":
        text = "Model starting · waiting for the model process to answer";
        break;
      case "restarting":
        text = `Model restarting · it is ${model.reason || "not answering"}; asking works again once it is back`;
        break;
      default:
        text = "Gateway not answering";
    }
    el.modelState.dataset.state = model.state;
    el.modelText.textContent = text;
    el.modelProgress.hidden = !(model.state === "loading" && bar);
    if (bar) {
      el.modelProgress.max = bar.total;
      el.modelProgress.value = bar.n;
      el.modelProgress.setAttribute("aria-label", `${bar.desc || "Loading"}: ${bar.n} of ${bar.total}`);
    }
  }

  showTask();
  loadPresets();
  watchModel();
})();
