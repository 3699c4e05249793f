// The dashboard: state, transcript, streamed answer, last frame and latencies, from the
// WebSocket event stream; questions go to POST /api/v1/ask as an SSE stream. No build step.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const auth = token ? { Authorization: "Bearer " + token } : {};
const $ = (id) => document.getElementById(id);
let answeringTurn = null;
let localAsk = false;

function setState(state) {
  $("state").textContent = state;
  $("state").className = state;
}

async function refreshStatus() {
  const response = await fetch("/api/v1/status", { headers: auth });
  if (!response.ok) return;
  const status = await response.json();
  setState(status.state);
  const last = status.last_turn;
  if (last && $("transcript").textContent === "-" && !localAsk) {
    // A fresh page: show the last turn until a new one starts.
    $("transcript").textContent = last.question;
    $("answer").textContent = last.answer;
  }
  const rows = status.recent_turns.slice(-8).reverse().map((t) => {
    const ms = (k) => (k in t.stages_ms ? t.stages_ms[k] : "");
    const q = document.createElement("td");
    q.textContent = t.question;
    const tr = document.createElement("tr");
    tr.append(q);
    for (const k of ["transcript", "first_token", "first_audio", "total"]) {
      const td = document.createElement("td");
      td.textContent = ms(k);
      tr.append(td);
    }
    return tr;
  });
  $("turns").replaceChildren(...rows);
}

async function refreshFrame() {
  const response = await fetch("/api/v1/frame", { headers: auth });
  if (!response.ok) return;
  const url = URL.createObjectURL(await response.blob());
  $("frame").src = url;
  $("frame").style.display = "block";
  $("noframe").style.display = "none";
}

async function refreshHealth() {
  const response = await fetch("/api/v1/health", { headers: auth });
  const health = await response.json();
  $("health").textContent = health.llm.reachable && health.llm.model_loaded
    ? "LLM ready" + (health.vision ? ", vision" : "") : "LLM: " + health.llm.detail;
  // Devices that do not work: a missing microphone, speaker or camera is said here.
  const problems = ["microphone", "speaker", "camera"]
    .filter((k) => k in health && /error|missing|failed/.test(health[k]))
    .map((k) => health[k].startsWith(k) ? health[k] : k + ": " + health[k]);
  $("devices").textContent = problems.join("; ");
}

// Timers: listed from GET /api/v1/timers at each timer event, counted down here.
let timers = [];
let timersAt = 0;

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(r).padStart(2, "0");
  return (h ? h + ":" : "") + mm + ":" + ss;
}

function showTimers() {
  const elapsed = (Date.now() - timersAt) / 1000;
  const rows = timers.map((t) => {
    const tr = document.createElement("tr");
    tr.className = t.status;
    const name = document.createElement("td");
    name.textContent = t.name || clock(t.duration_s) + " timer";
    const left = document.createElement("td");
    left.textContent = t.status === "ringing" ? "ringing"
      : clock(t.status === "running" ? t.remaining_s - elapsed : t.remaining_s)
        + (t.status === "paused" ? " (paused)" : "");
    const cancel = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = t.status === "ringing" ? "stop" : "cancel";
    button.onclick = () => fetch("/api/v1/timers/" + encodeURIComponent(t.timer_id),
                                 { method: "DELETE", headers: auth });
    cancel.append(button);
    tr.append(name, left, cancel);
    return tr;
  });
  $("timers").replaceChildren(...rows);
  $("notimers").style.display = rows.length ? "none" : "block";
}

async function refreshTimers() {
  const response = await fetch("/api/v1/timers", { headers: auth });
  if (!response.ok) return;
  timers = (await response.json()).timers;
  timersAt = Date.now();
  showTimers();
}
setInterval(() => { if (timers.length) showTimers(); }, 1000);

function onEvent(event) {
  if (event.type.startsWith("timer_")) {
    refreshTimers();
    return;
  }
  switch (event.type) {
    case "state_changed":
      setState(event.new);
      if (event.new === "idle") refreshStatus();
      break;
    case "transcription_final":
      if (localAsk && event.source === "api") break; // our own question: SSE fills it
      $("transcript").textContent = event.text;
      $("answer").textContent = "";
      answeringTurn = event.turn_id;
      break;
    case "llm_token":
      if (event.turn_id === answeringTurn) $("answer").textContent += event.text;
      break;
    case "frame_captured":
      refreshFrame();
      break;
    case "error":
      $("error").textContent = event.message;
      break;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const ws = new WebSocket(scheme + location.host + "/ws/stream" + query);
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = () => { setState("disconnected"); setTimeout(connect, 2000); };
  ws.onopen = () => { refreshStatus(); refreshFrame(); refreshTimers(); };
}

// Typed questions stream their answer over SSE; the WebSocket shows the same tokens, so the
// answer box is filled by whichever comes first for this turn, once.
async function ask(text) {
  $("error").textContent = "";
  $("transcript").textContent = text;
  $("answer").textContent = "";
  answeringTurn = null;
  localAsk = true;
  try {
    await streamAnswer(text);
  } finally {
    localAsk = false;
  }
  $("answer").dataset.done = "1";
  refreshStatus();
}

async function streamAnswer(text) {
  const response = await fetch("/api/v1/ask", {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ text }),
  });
  if (!response.ok) {
    $("error").textContent = (await response.json()).detail;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let answer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [null, "message"])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [null, "null"])[1]);
      if (kind === "message" && data) {
        answer += data.token;
        $("answer").textContent = answer;
      } else if (kind === "error") {
        $("error").textContent = data.detail;
      } else if (kind === "done" && data.error) {
        $("error").textContent = data.error;
      }
    }
  }
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("question").value.trim();
  if (!text) return;
  $("answer").dataset.done = "";
  ask(text);
});

connect();
refreshHealth();
setInterval(refreshHealth, 5000);
