// The genloom page: no build step, no third-party code. The API key stays in this tab's
// sessionStorage and travels only in Authorization headers; EventSource (which cannot send headers)
// follows a job with a short-lived token scoped to that one job (POST /v1/jobs/{id}/token).
"use strict";

const KEY_SLOT = "genloom.apiKey";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const EVENT_TYPES = ["accepted", "started", "token", "progress", "artifact", "audio", "moderation", "completed",
  "failed", "cancelled"];
const $ = (id) => document.getElementById(id);
const chatHistory = [];

function apiKey() { return sessionStorage.getItem(KEY_SLOT) || ""; }

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set("Authorization", `Bearer ${apiKey()}`);
  if (init.body && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { const body = await response.json(); message = body.error?.message || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function apiJson(path, init) { return (await api(path, init)).json(); }

// An artifact needs the key too: fetched with the header, shown through a blob: URL.
async function blobUrl(path) { return URL.createObjectURL(await (await api(path)).blob()); }

function showError(element, error) {
  element.textContent = String(error.message || error);
  element.classList.add("error");
}

function showStatus(element, text) {
  element.textContent = text;
  element.classList.remove("error");
}

// Follow a job's events (replayed from the start) until a terminal one; onEvent(type, data, id).
async function follow(jobId, onEvent) {
  const { token } = await apiJson(`/v1/jobs/${encodeURIComponent(jobId)}/token`, { method: "POST" });
  const source = new EventSource(`/v1/jobs/${encodeURIComponent(jobId)}/events?token=${encodeURIComponent(token)}`);
  return new Promise((resolve, reject) => {
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => {
        const data = JSON.parse(message.data);
        onEvent(type, data, message.lastEventId);
        if (TERMINAL.has(type)) { source.close(); resolve({ type, data }); }
      });
    }
    source.addEventListener("error", (message) => {
      source.close();  // no automatic reconnect: the token may have expired; the caller decides
      if (message.data) reject(new Error(JSON.parse(message.data).error.message));
      else reject(new Error("the event stream was interrupted"));
    });
  });
}

async function submitJob(modality, params) {
  return (await apiJson("/v1/jobs", { method: "POST", body: JSON.stringify({ modality, params }) })).id;
}

// A media job: progress bar while it runs, then its first artifact through `show(blobUrl, mimeType)`.
async function runMediaJob(modality, params, bar, status, show) {
  bar.value = 0;
  showStatus(status, "submitting");
  try {
    const id = await submitJob(modality, params);
    let artifact = null;
    const end = await follow(id, (type, data) => {
      if (type === "progress") { bar.max = data.total; bar.value = data.step; showStatus(status, `step ${data.step} of ${data.total}`); }
      else if (type === "artifact" && artifact === null) artifact = data;
      else if (!TERMINAL.has(type)) showStatus(status, type);
    });
    if (end.type !== "completed") throw new Error(end.data.message || end.type);
    bar.value = bar.max;
    if (artifact === null) throw new Error("the job completed without a file");
    show(await blobUrl(artifact.uri), artifact.mime_type);
    showStatus(status, `done: job ${id}`);
    refreshJobs();
  } catch (error) {
    showError(status, error);
  }
}

async function loadModels() {
  const select = $("chat-model");
  select.replaceChildren();
  const models = await apiJson("/v1/models");
  for (const model of models.data) select.append(new Option(model.id, model.id));
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `msg ${role}`;
  element.textContent = text;
  $("chat-log").append(element);
  return element;
}

// Reads an OpenAI chat stream (SSE over fetch) and appends each delta as it arrives.
async function chat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const prompt = input.value.trim();
  if (!prompt) return;
  input.value = "";
  addMessage("user", prompt);
  chatHistory.push({ role: "user", content: prompt });
  const reply = addMessage("assistant", "");
  try {
    const response = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify({
      model: $("chat-model").value, messages: chatHistory, stream: true, max_tokens: 64 }) });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) reply.textContent += delta;
      }
    }
    chatHistory.push({ role: "assistant", content: reply.textContent });
    refreshJobs();
  } catch (error) {
    showError(reply, error);
  }
}

async function speak(event) {
  event.preventDefault();
  const status = $("speech-status");
  showStatus(status, "speaking");
  try {
    const response = await api("/v1/audio/speech", { method: "POST", body: JSON.stringify({
      model: "tts-1", input: $("speech-input").value, voice: $("speech-voice").value }) });
    const audio = $("speech-audio");
    audio.src = URL.createObjectURL(await response.blob());
    showStatus(status, "ready");
    audio.play().catch(() => { /* autoplay may be refused; the controls are there */ });
    refreshJobs();
  } catch (error) {
    showError(status, error);
  }
}

async function showJobEvents(jobId) {
  const pane = $("job-events");
  pane.textContent = "";
  try {
    await follow(jobId, (type, data, id) => {
      const shown = type === "token" ? JSON.stringify(data.text) : JSON.stringify(data);
      pane.textContent += `#${id} ${type} ${shown}\n`;
    });
  } catch (error) {
    pane.textContent += `error: ${error.message}\n`;
  }
}

async function refreshJobs() {
  const list = $("job-list");
  try {
    const jobs = await apiJson("/v1/jobs?limit=20");
    list.replaceChildren(...jobs.data.map((job) => {
      const item = document.createElement("li");
      item.textContent = `${job.id} · ${job.modality} · ${job.status}`;
      item.dataset.jobId = job.id;
      item.addEventListener("click", () => showJobEvents(job.id));
      return item;
    }));
  } catch (error) {
    const item = document.createElement("li");
    showError(item, error);
    list.replaceChildren(item);
  }
}

async function useKey(event) {
  if (event) event.preventDefault();
  const field = $("api-key");
  if (field.value) sessionStorage.setItem(KEY_SLOT, field.value.trim());
  field.value = "";
  const status = $("key-status");
  if (!apiKey()) { showStatus(status, "no key"); return; }
  try {
    await loadModels();
    showStatus(status, "key accepted");
    document.body.dataset.ready = "true";
    refreshJobs();
  } catch (error) {
    showError(status, error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", useKey);
  $("chat-form").addEventListener("submit", chat);
  $("speech-form").addEventListener("submit", speak);
  $("jobs-refresh").addEventListener("click", refreshJobs);
  $("image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runMediaJob("image", { prompt: $("image-prompt").value }, $("image-progress"), $("image-status"), (url) => {
      const img = document.createElement("img");
      img.alt = $("image-prompt").value;
      img.src = url;
      $("image-result").replaceChildren(img);
    });
  });
  $("video-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runMediaJob("video", { prompt: $("video-prompt").value }, $("video-progress"), $("video-status"), (url) => {
      $("video-result").src = url;
    });
  });
  if (apiKey()) useKey();
});
