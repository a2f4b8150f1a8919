// The area map: communes from the console's GeoJSON, coloured by their highest active
// level (with the level written on the map), refreshed when the live stream says a
// warning changed. Leaflet is served by the console itself: no tiles, no CDN.
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el || typeof L === "undefined") return;
  const colours = JSON.parse(el.dataset.colours);
  const live = document.getElementById("live");
  const detail = document.getElementById("area-detail");
  const map = L.map(el, { zoomSnap: 0.25, attributionControl: false });
  const layers = {};  // commune code -> Leaflet polygon layer
  let levels = {};
  let selected = null;

  function text(tag, content, cls) {
    const node = document.createElement(tag);
    node.textContent = content;
    if (cls) node.className = cls;
    return node;
  }
  function style(code) {
    const a = levels[code];
    return {
      color: selected === code ? "#000" : "#333",
      weight: selected === code ? 4 : 1.5,
      fillColor: a ? colours[a.level] : "#e6e6e6",
      fillOpacity: a ? 0.75 : 0.35,
    };
  }
  function tooltip(layer, name, code) {
    const a = levels[code];
    layer.unbindTooltip();
    if (a) {
      // The level is written on the map beside its colour (a colour alone says nothing
      // to a colour-blind reader); short, so that neighbours' labels stay readable.
      layer.bindTooltip(name + ": " + a.label.split(" · ")[0], {
        permanent: true, direction: "center", className: "area-label lvl-" + a.level,
      });
    } else {
      layer.bindTooltip(name, { direction: "top" });
    }
  }
  function show(code, name) {
    selected = code;
    for (const c in layers) layers[c].setStyle(style(c));
    detail.hidden = false;
    document.getElementById("area-name").textContent = name;
    const list = document.getElementById("area-warnings");
    list.replaceChildren();
    const a = levels[code];
    if (!a) list.appendChild(text("li", el.dataset.tNone));
    else for (const w of a.warnings) {
      const li = document.createElement("li");
      li.appendChild(text("span", w.label, "badge lvl-" + w.level));
      li.appendChild(document.createTextNode(" "));
      const link = text("a", w.hazard + " – " + w.subject);
      link.href = "/warnings/" + encodeURIComponent(w.id);
      li.appendChild(link);
      list.appendChild(li);
    }
    document.getElementById("area-link").href = el.dataset.stream + encodeURIComponent(code);
  }
  function paintRows() {
    for (const tr of document.querySelectorAll("#area-rows tr")) {
      const a = levels[tr.dataset.code];
      const badge = tr.children[1].firstElementChild;
      badge.className = "badge lvl-" + (a ? a.level : 0);
      badge.textContent = a ? a.label : badge.dataset.quiet;
      const count = tr.children[2];
      count.replaceChildren();
      if (a) {
        const link = text("a", String(a.warnings.length));
        link.href = "/?status=active&area=" + encodeURIComponent(tr.dataset.code);
        count.appendChild(link);
      } else count.textContent = "0";
    }
  }
  async function refresh() {
    const resp = await fetch(el.dataset.levels, { credentials: "same-origin" });
    if (!resp.ok) return;
    levels = (await resp.json()).areas;
    for (const code in layers) {
      layers[code].setStyle(style(code));
      tooltip(layers[code], layers[code].feature.properties.name, code);
    }
    paintRows();
    if (selected) show(selected, layers[selected].feature.properties.name);
  }
  async function draw() {
    const geo = await (await fetch(el.dataset.areas, { credentials: "same-origin" })).json();
    const communes = L.geoJSON(geo, {
      filter: (f) => f.properties.kind === "commune",
      // A class per commune: its polygon is found by code (tests, user styles).
      style: (f) => ({ ...style(f.properties.code), className: "area area-" + f.properties.code }),
      onEachFeature: (f, layer) => {
        const code = f.properties.code;
        layers[code] = layer;
        tooltip(layer, f.properties.name, code);
        layer.on("click", () => show(code, f.properties.name));
      },
    }).addTo(map);
    L.geoJSON(geo, {
      filter: (f) => f.properties.kind === "station",
      pointToLayer: (f, latlng) => L.circleMarker(latlng, {
        radius: 5, color: "#000", weight: 1.5, fillColor: "#fff", fillOpacity: 1,
      }).bindTooltip(el.dataset.tStation + ": " + f.properties.name, { direction: "top" })
        // A station sits inside its commune: a click on it is a click on the commune.
        .on("click", () => {
          const commune = layers[f.properties.commune];
          if (commune) show(f.properties.commune, commune.feature.properties.name);
        }),
    }).addTo(map);
    map.fitBounds(communes.getBounds(), { padding: [40, 40], animate: false });
    await refresh();
    // Open on the communes with a warning (the geography may reach far beyond them):
    // their labels then stand apart; zooming out shows the rest.
    const active = Object.keys(levels).filter((c) => layers[c]).map((c) => layers[c]);
    if (active.length) map.fitBounds(L.featureGroup(active).getBounds(), { padding: [40, 40], maxZoom: 11, animate: false });
  }
  // Keyboard: the commune table's rows open the same detail as a click on the map.
  for (const tr of document.querySelectorAll("#area-rows tr")) {
    tr.tabIndex = 0;
    const open = () => { if (layers[tr.dataset.code]) show(tr.dataset.code, tr.children[0].textContent); };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
  }
  let pending = null;
  const later = () => { clearTimeout(pending); pending = setTimeout(refresh, 250); };
  const source = new EventSource(el.dataset.events);
  source.onopen = () => {
    live.textContent = live.dataset.on; live.className = "live on";
    if (Object.keys(layers).length) later();  // reconnected: what changed meanwhile
  };
  source.onerror = () => { live.textContent = live.dataset.off; live.className = "live off"; };
  source.addEventListener("warning", later);
  source.addEventListener("remove", later);
  draw();
})();
