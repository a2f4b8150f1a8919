// The live stream: rows pushed by the server (server-sent events), nothing polled.
"use strict";
(function () {
  const rows = document.getElementById("rows");
  const live = document.getElementById("live");
  const empty = document.getElementById("empty");
  const sound = document.getElementById("sound");
  if (!rows) return;
  sound.checked = localStorage.getItem("canhbao-sound") === "on";
  sound.addEventListener("change", () => {
    localStorage.setItem("canhbao-sound", sound.checked ? "on" : "off");
  });
  let audio = null;
  function beep() {
    // A short tone, made here: no sound file to fetch.
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.4);
  }
  function refresh() { empty.hidden = rows.children.length > 0; }
  function place(tr) {
    // Highest level first, as the server orders the page.
    const level = Number(tr.dataset.level);
    for (const other of rows.children) {
      if (Number(other.dataset.level) < level) { rows.insertBefore(tr, other); return; }
    }
    rows.appendChild(tr);
  }
  const source = new EventSource(rows.dataset.events);
  source.onopen = () => { live.textContent = live.dataset.on; live.className = "live on"; };
  source.onerror = () => { live.textContent = live.dataset.off; live.className = "live off"; };
  source.addEventListener("warning", (ev) => {
    const data = JSON.parse(ev.data);
    const tpl = document.createElement("template");
    tpl.innerHTML = data.html.trim();  // rendered by the server, autoescaped
    const tr = tpl.content.firstElementChild;
    const old = document.getElementById("w-" + data.id);
    if (old) old.remove();
    place(tr);
    tr.classList.add(data.escalated ? "escalated" : "changed");
    if (data.escalated && data.level >= 2 && sound.checked) beep();
    refresh();
  });
  source.addEventListener("remove", (ev) => {
    const old = document.getElementById("w-" + JSON.parse(ev.data).id);
    if (old) old.remove();
    refresh();
  });
})();
