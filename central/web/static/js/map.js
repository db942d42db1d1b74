// The map: every cabinet with coordinates (from the registry), coloured by its state, clustered
// (Leaflet.markercluster) so that thousands stay readable. No tiles by default: a plain background
// with a graticule and the towns' names, so that it works with no internet; a city's own tile
// server when central's config names one ([web] tile_url).
import { h, $ } from './dom.js';
import { t, onLangChange } from './i18n.js';
import { state, on, cabinetState } from './state.js';

const L = window.L;
const STATES = ['alarm', 'offline', 'online'];
let map = null;
let cluster = null;
let towns = null;
let graticule = null;
let fitted = false;
const markers = new Map(); // cabinet id -> marker

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el && el.content ? el.content : null;
}

function icon(kind) {
  return L.divIcon({ className: `cab cab-${kind}`, iconSize: [14, 14], html: '' });
}

function clusterIcon(group) {
  const children = group.getAllChildMarkers();
  const worst = STATES.find((s) => children.some((m) => m.options.kind === s)) || 'online';
  const count = h('span', {}, String(group.getChildCount()));
  return L.divIcon({
    html: h('div', {}, count),
    className: `marker-cluster cluster-${worst}`,
    iconSize: L.point(36, 36),
  });
}

function init() {
  const tileUrl = meta('cityedge-tile-url');
  map = L.map('map', { attributionControl: Boolean(tileUrl), zoomSnap: 0.5, minZoom: 3, maxZoom: 19 });
  if (tileUrl) {
    map.attributionControl.setPrefix(false);
    L.tileLayer(tileUrl, { attribution: meta('cityedge-tile-attribution') || '', maxZoom: 19 }).addTo(map);
  }
  L.control.scale({ imperial: false }).addTo(map);
  cluster = L.markerClusterGroup({
    iconCreateFunction: clusterIcon, maxClusterRadius: 45, showCoverageOnHover: false, chunkedLoading: true,
  });
  map.addLayer(cluster);
  towns = L.layerGroup().addTo(map);
  if (!tileUrl) graticule = L.layerGroup().addTo(map);
  map.setView([47.32, 5.04], 12);
  on('cabinets', redraw);
  on('alarms', recolour);
  onLangChange(legend);
}

function tooltip(c, kind) {
  return h('div', { class: 'tip' },
    h('strong', {}, c.id), c.label ? ` ${c.label}` : '', h('br'),
    c.town ? `${c.town} · ` : '', t(`map.${kind}`));
}

function place(c) {
  return typeof c.latitude === 'number' && typeof c.longitude === 'number'
    && Math.abs(c.latitude) <= 90 && Math.abs(c.longitude) <= 180;
}

function redraw() {
  if (!map) return;
  const seen = new Set();
  const added = [];
  for (const c of state.cabinets.values()) {
    if (!place(c)) continue;
    seen.add(c.id);
    const kind = cabinetState(c);
    let marker = markers.get(c.id);
    if (!marker) {
      marker = L.marker([c.latitude, c.longitude], { icon: icon(kind), kind, title: c.id, keyboard: true });
      marker.on('click', () => { location.hash = `#/cabinet/${encodeURIComponent(c.id)}`; });
      markers.set(c.id, marker);
      added.push(marker);
    } else {
      marker.setLatLng([c.latitude, c.longitude]);
      if (marker.options.kind !== kind) { marker.options.kind = kind; marker.setIcon(icon(kind)); }
    }
    marker.bindTooltip(tooltip(c, kind));
  }
  const gone = [...markers.keys()].filter((id) => !seen.has(id));
  cluster.removeLayers(gone.map((id) => markers.get(id)));
  for (const id of gone) markers.delete(id);
  cluster.addLayers(added);
  cluster.refreshClusters();
  drawTowns();
  if (!fitted && markers.size) {
    fitted = true;
    map.fitBounds(cluster.getBounds(), { padding: [30, 30], maxZoom: 15 });
    drawGraticule();
  }
  legend();
  const el = $('#map');
  el.dataset.placed = String(markers.size);
  if (markers.size && !document.body.dataset.mapDrawnMs) {
    // When the map first showed the cabinets: what bench/web_page.py measures.
    requestAnimationFrame(() => { document.body.dataset.mapDrawnMs = String(Math.round(performance.now())); });
  }
}

function recolour() { redraw(); }

function drawTowns() {
  towns.clearLayers();
  const byTown = new Map();
  for (const c of state.cabinets.values()) {
    if (!place(c) || !c.town) continue;
    const acc = byTown.get(c.town) || { lat: 0, lon: 0, n: 0 };
    acc.lat += c.latitude; acc.lon += c.longitude; acc.n += 1;
    byTown.set(c.town, acc);
  }
  for (const [town, acc] of byTown) {
    L.marker([acc.lat / acc.n, acc.lon / acc.n], {
      interactive: false, keyboard: false,
      icon: L.divIcon({ className: 'town-label', html: h('span', {}, town), iconSize: null }),
    }).addTo(towns);
  }
}

function drawGraticule() {
  if (!graticule) return;
  graticule.clearLayers();
  const b = cluster.getBounds().pad(2);
  const step = 0.02;
  const line = { color: '#9fb3c8', weight: 1, opacity: 0.5, interactive: false };
  for (let lat = Math.floor(b.getSouth() / step) * step; lat <= b.getNorth(); lat += step) {
    L.polyline([[lat, b.getWest()], [lat, b.getEast()]], line).addTo(graticule);
  }
  for (let lon = Math.floor(b.getWest() / step) * step; lon <= b.getEast(); lon += step) {
    L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], line).addTo(graticule);
  }
}

function legend() {
  const counts = { online: 0, offline: 0, alarm: 0 };
  let unplaced = 0;
  for (const c of state.cabinets.values()) {
    counts[cabinetState(c)] += 1;
    if (!place(c)) unplaced += 1;
  }
  const ul = $('#map-legend');
  ul.replaceChildren(
    h('li', {}, t('map.total', { n: state.cabinets.size })),
    ...['online', 'offline', 'alarm'].map((k) =>
      h('li', { dataset: { state: k } }, h('span', { class: `dot cab-${k}` }), ` ${counts[k]} ${t(`map.${k}`)}`)),
  );
  $('#map-unplaced').textContent = unplaced ? t('map.unplaced', { n: unplaced }) : '';
}

export function showMap() {
  if (!map) init();
  redraw();
  setTimeout(() => map.invalidateSize(), 0);
}
