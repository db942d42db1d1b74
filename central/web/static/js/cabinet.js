// A cabinet: its facts, latest values, a chart of any point over a period (rollups for long ones:
// resolution=auto), and for operators the command form (dim, switch, schedule) with each command's
// lifecycle, pending -> delivered -> executed / failed / expired, updated live from the stream.
import { api, query } from './api.js';
import { h, $ } from './dom.js';
import { t, when, number, onLangChange } from './i18n.js';
import { on, mayCommand, state } from './state.js';
import { drawChart, chartNote, seriesOf } from './chart.js';

let current = null;     // the cabinet shown: {id, detail, points}
let plot = null;
let chartRun = 0;
const commands = new Map(); // command id -> command shown

const SCHEDULE_EXAMPLE = (c) => ({
  latitude: c.latitude ?? 47.32,
  longitude: c.longitude ?? 5.04,
  timezone: 'Europe/Paris',
  switch_on: { event: 'sunset', offset_min: 10 },
  switch_off: { event: 'sunrise', offset_min: -10 },
  default_level_pct: 100,
  dimming: [{ start: '22:00', end: '05:00', level_pct: 70 }],
});

function facts(d) {
  const bits = [
    d.label, d.town,
    d.online ? t('cab.online') : t('cab.offline'),
    d.last_seen_ms ? t('cab.seen', { when: when(d.last_seen_ms) }) : null,
    d.agent_version ? `agent ${d.agent_version}` : null,
    typeof d.latitude === 'number' ? `${number(d.latitude, 4)} N, ${number(d.longitude, 4)} E` : null,
  ];
  return bits.filter(Boolean).join(' · ');
}

function valueText(v) {
  if (typeof v === 'number') return number(v, 3);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return v === null ? '–' : String(v);
}

function renderValues(points) {
  $('#cab-values tbody').replaceChildren(...points.map((p) => h('tr', { dataset: { point: p.point } },
    h('td', {}, p.point), h('td', { class: 'num' }, valueText(p.value)),
    h('td', { title: p.reason || '' }, p.quality), h('td', {}, when(p.ts_ms)))));
  const select = $('#chart-form select[name=point]');
  const chosen = select.value;
  const chartable = points.filter((p) => typeof p.value === 'number' || typeof p.value === 'boolean');
  select.replaceChildren(...chartable.map((p) => h('option', { value: p.point }, p.point)));
  const preferred = chartable.find((p) => p.point === chosen) || chartable.find((p) => p.point.endsWith('power_w')) || chartable[0];
  if (preferred) select.value = preferred.point;
  return chartable.length;
}

async function loadChart() {
  if (!current) return;
  const form = new FormData($('#chart-form'));
  const point = form.get('point');
  const status = $('#chart-status');
  if (!point) { status.textContent = t('cab.no_numeric'); return; }
  const run = ++chartRun;
  const end = Date.now();
  const start = end - Number(form.get('period'));
  try {
    const path = `/cabinets/${encodeURIComponent(current.id)}/points/${point.split('/').map(encodeURIComponent).join('/')}/readings`;
    const page = await api(path + query({ start, end, resolution: 'auto', limit: 20000 }));
    if (run !== chartRun) return;
    plot = drawChart($('#chart'), page, plot);
    status.textContent = chartNote(page, seriesOf(page).data[0].length);
  } catch (error) {
    status.textContent = error.notAvailable ? t('na') : t('error', { detail: error.message });
  }
}

function statusCell(c) {
  const steps = [
    h('span', { class: 'step done' }, `${t('status.pending')} ${when(c.created_ms)}`),
  ];
  if (c.delivered_ms) steps.push(h('span', { class: 'step done' }, `${t('status.delivered')} ${when(c.delivered_ms)}`));
  if (c.status !== 'pending' && c.status !== 'delivered') {
    steps.push(h('span', { class: `step final st-${c.status}` }, `${t(`status.${c.status}`)} ${when(c.finished_ms)}`));
  }
  return h('td', { class: 'lifecycle' }, h('span', { class: `badge st-${c.status}` }, t(`status.${c.status}`)),
    ' ', ...steps, c.reason ? h('div', { class: 'muted' }, c.reason) : null);
}

function commandRow(c) {
  const args = Object.keys(c.args || {}).length ? ` ${JSON.stringify(c.args)}` : '';
  return h('tr', { dataset: { id: c.id, status: c.status } },
    h('td', {}, when(c.created_ms)), h('td', { class: 'args' }, `${t(`action.${c.action}`)}${args}`),
    h('td', {}, c.target.device || t('cmd.all_devices')), h('td', {}, c.issued_by), statusCell(c));
}

function renderCommands() {
  const list = [...commands.values()].sort((a, b) => b.created_ms - a.created_ms).slice(0, 50);
  $('#commands tbody').replaceChildren(...list.map(commandRow));
}

function setupForm(detail) {
  const form = $('#command-form');
  form.hidden = !mayCommand();
  if (form.hidden) return;
  const devices = (detail.inventory || []).filter((d) => (d.points || []).some((p) => /relay|dim_level/.test(p)));
  const select = form.elements.device;
  select.replaceChildren(h('option', { value: '' }, t('cmd.all_devices')),
    ...devices.map((d) => h('option', { value: d.name }, d.name)));
  form.elements.schedule.value = JSON.stringify(SCHEDULE_EXAMPLE(detail), null, 2);
  showFields();
}

function showFields() {
  const form = $('#command-form');
  const action = form.elements.action.value;
  for (const label of form.querySelectorAll('label[data-for]')) {
    label.hidden = !label.dataset.for.split(' ').includes(action);
  }
}

function argsOf(form) {
  const action = form.elements.action.value;
  const until = form.elements.until.value ? new Date(form.elements.until.value).getTime() : null;
  if (action === 'dim') {
    const args = { level_pct: Number(form.elements.level_pct.value) };
    if (until) args.until = until;
    return args;
  }
  if (action === 'switch') {
    const args = { on: form.elements.on.value === 'true' };
    if (until) args.until = until;
    return args;
  }
  if (action === 'set_schedule') {
    try { return { schedule: JSON.parse(form.elements.schedule.value) }; } catch (error) {
      throw new Error(t('cmd.bad_json', { error: error.message }));
    }
  }
  return {};
}

async function send(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = $('#command-error');
  error.textContent = '';
  try {
    const target = { cabinet: current.id };
    if (form.elements.device.value) target.device = form.elements.device.value;
    const command = await api('/commands', {
      method: 'POST', body: { target, action: form.elements.action.value, args: argsOf(form) },
    });
    commands.set(command.id, command);
    renderCommands();
  } catch (e) {
    error.textContent = e.message;
  }
}

async function refreshCommand(id) {
  try {
    const c = await api(`/commands/${encodeURIComponent(id)}`);
    if (current && c.target && c.target.cabinet === current.id) { commands.set(c.id, c); renderCommands(); }
  } catch { /* gone: keep what is shown */ }
}

export function initCabinet() {
  $('#chart-form').addEventListener('change', loadChart);
  $('#command-form').addEventListener('submit', send);
  $('#command-form').elements.action.addEventListener('change', showFields);
  on('commands', (list) => {
    if (!current) return;
    let changed = false;
    for (const c of list) {
      if (c.target && c.target.cabinet === current.id) { commands.set(c.id, c); changed = true; }
    }
    if (changed) renderCommands();
  });
  on('cabinets', () => {
    const c = current && state.cabinets.get(current.id);
    if (c) $('#cab-facts').textContent = facts({ ...current.detail, ...c });
  });
  // Without the stream (a proxy that buffers it), open commands are still followed.
  setInterval(() => {
    if (!current || document.body.dataset.live === 'on') return;
    for (const c of commands.values()) if (c.status === 'pending' || c.status === 'delivered') refreshCommand(c.id);
  }, 3000);
  onLangChange(() => { if (current) { renderValues(current.points); renderCommands(); } });
  // The latest values are not on the stream (they change every few seconds on every cabinet).
  setInterval(async () => {
    if (!current || $('#view-cabinet').hidden) return;
    try {
      const id = current.id;
      const points = await api(`/cabinets/${encodeURIComponent(id)}/points`);
      if (current && current.id === id) { current.points = points.points; renderValues(current.points); }
    } catch { /* shown as it was; the next round tries again */ }
  }, 10000);
}

export async function showCabinet(id) {
  current = null;
  commands.clear();
  $('#cab-title').textContent = id;
  $('#cab-facts').textContent = '';
  $('#commands tbody').replaceChildren();
  $('#cab-values tbody').replaceChildren();
  $('#chart').replaceChildren();
  $('#command-form').hidden = true;
  try {
    const [detail, points, recent] = await Promise.all([
      api(`/cabinets/${encodeURIComponent(id)}`),
      api(`/cabinets/${encodeURIComponent(id)}/points`),
      api(`/commands${query({ cabinet: id, limit: 20 })}`),
    ]);
    current = { id, detail, points: points.points };
    $('#cab-title').textContent = detail.label ? `${id} — ${detail.label}` : id;
    $('#cab-facts').textContent = facts(detail);
    renderValues(current.points);
    for (const c of recent.commands) commands.set(c.id, c);
    renderCommands();
    setupForm(detail);
    await loadChart();
  } catch (error) {
    $('#cab-facts').textContent = error.status === 404 ? t('cab.unknown', { id }) : t('error', { detail: error.message });
  }
}
