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
  // Groups (many warnings of one domain, hazard and commune): a head line with the
  // count, its rows folded under it until opened.
  function members(head) {
    return rows.querySelectorAll('tr.member[data-group="' + head.id + '"]');
  }
  function recount(head) {
    if (!head) return;
    const n = members(head).length;
    head.querySelector(".group-count").textContent = n;
    if (n === 0) head.remove();
  }
  rows.addEventListener("click", (ev) => {
    const button = ev.target.closest("button.group-toggle");
    if (!button) return;
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = open ? button.dataset.open : button.dataset.closed;
    for (const tr of members(button.closest("tr"))) tr.hidden = !open;
  });
  function place(tr) {
    const head = document.getElementById(tr.dataset.group);
    if (head) {  // a new warning of a group shown: under its head, folded as it is
      tr.classList.add("member");
      tr.hidden = head.querySelector("button").getAttribute("aria-expanded") !== "true";
      head.after(tr);
      recount(head);
      return;
    }
    // Highest level first, as the server orders the page (a group by its head).
    const level = Number(tr.dataset.level);
    for (const other of rows.children) {
      if (other.classList.contains("member")) continue;
      if (Number(other.dataset.level) < level) { rows.insertBefore(tr, other); return; }
    }
    rows.appendChild(tr);
  }
  // The server sends a group's head with each of its rows once the group is large
  // enough to fold: a group formed while the page is open folds at once.
  function groupHead(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();  // rendered by the server, autoescaped
    const fresh = tpl.content.firstElementChild;
    const old = document.getElementById(fresh.id);
    if (old) {  // its level or labels may have changed; what the operator opened stays
      const was = old.querySelector("button.group-toggle");
      const now = fresh.querySelector("button.group-toggle");
      now.setAttribute("aria-expanded", was.getAttribute("aria-expanded"));
      now.textContent = was.textContent;
      fresh.className = old.className;
      old.replaceWith(fresh);
      return;
    }
    const mine = Array.from(rows.querySelectorAll('tr[data-group="' + fresh.id + '"]'));
    place(fresh);  // where its highest row stood: heads sort by level like rows
    for (const tr of mine.reverse()) {
      tr.classList.add("member");
      tr.hidden = true;
      fresh.after(tr);
    }
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
    if (data.group_html) groupHead(data.group_html);
    place(tr);
    if (old && old.dataset.group !== tr.dataset.group) recount(document.getElementById(old.dataset.group));
    tr.classList.add(data.escalated ? "escalated" : "changed");
    // A folded row's change shows on its group's head, so it is not missed.
    const head = tr.classList.contains("member") && document.getElementById(tr.dataset.group);
    if (head) head.classList.add(data.escalated ? "escalated" : "changed");
    if (data.escalated && data.level >= 2 && sound.checked) beep();
    refresh();
  });
  source.addEventListener("remove", (ev) => {
    const old = document.getElementById("w-" + JSON.parse(ev.data).id);
    if (old) {
      old.remove();
      recount(document.getElementById(old.dataset.group));
    }
    refresh();
  });
})();
