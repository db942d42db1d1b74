// The performance contract's figures for a period (GET /api/v1/kpi): energy against its baselines
// (the same lamps at full power; a city's historical figure), availability per equipment class,
// intervention delays (raised -> acknowledged, raised -> cleared). A daily chart with uPlot.
import { api, query } from './api.js';
import { h, $ } from './dom.js';
import { t, number, when, onLangChange } from './i18n.js';

const uPlot = window.uPlot;
const plots = [];
let visible = false;

// A report ends at the last quarter hour that ended a minute ago (central's settled quarter); the
// last N days are the N days before it, the period central makes ahead for this page.
const QUARTER_MS = 900000;
const SETTLE_MS = 60000;

function period() {
  const form = new FormData($('#kpi-form'));
  const now = new Date();
  const choice = form.get('period');
  const settled = Math.floor((now.getTime() - SETTLE_MS) / QUARTER_MS) * QUARTER_MS;
  // This month; in its first quarter hour (nothing settled yet), the month before.
  const month = (back) => Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1);
  const from = choice === 'month'
    ? (month(0) < settled ? month(0) : month(1))
    : settled - Number(choice) * 86400000;
  return { from, to: now.getTime(), town: String(form.get('town') || '').trim() };
}

const fmt = (v, digits = 1, unit = '') => (v === null || v === undefined ? '–' : `${number(v, digits)}${unit}`);
const duration = (s) => {
  if (s === null || s === undefined) return '–';
  if (s < 120) return `${number(s, 0)} s`;
  if (s < 7200) return `${number(s / 60, 1)} min`;
  return `${number(s / 3600, 1)} h`;
};

function card(label, value) {
  return h('div', { class: 'kcard' }, h('dt', {}, label), h('dd', {}, value));
}

function table(head, rows) {
  return h('table', { class: 'grid compact' },
    h('thead', {}, h('tr', {}, ...head.map((x) => h('th', {}, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((x) => h('td', { class: typeof x === 'string' && /^[\d–]/.test(x) ? 'num' : '' }, x))))));
}

function energyChart(days) {
  if (!days || days.length < 1) return null;
  const el = h('div', { class: 'chart', id: 'kpi-energy-chart' });
  const xs = days.map((d) => Date.parse(`${d.date}T12:00:00Z`) / 1000);
  requestAnimationFrame(() => {
    plots.push(new uPlot({
      width: Math.max(300, el.clientWidth || 600), height: 220,
      series: [{}, { label: t('kpi.kwh'), stroke: '#1f5f99', width: 2 },
        { label: t('kpi.full_power_kwh'), stroke: '#d98c1f', width: 2, dash: [6, 4] }],
      scales: { x: { time: true } },
    }, [xs, days.map((d) => d.kwh), days.map((d) => d.full_power_kwh)], el));
  });
  return el;
}

function energy(e) {
  const total = e.total.total;
  return h('section', { class: 'card', id: 'kpi-energy' }, h('h3', {}, t('kpi.energy')),
    h('dl', { class: 'cards' },
      card(t('kpi.kwh'), fmt(total.kwh, 1, ' kWh')),
      card(t('kpi.full_power_kwh'), fmt(total.full_power_kwh, 1, ' kWh')),
      card(t('kpi.saved'), fmt(total.full_power_saved_pct, 1, ' %')),
      card(t('kpi.historical_kwh'), fmt(total.historical_kwh, 1, ' kWh')),
      card(t('kpi.historical_saved'), fmt(total.historical_saved_pct, 1, ' %')),
      card(t('kpi.lit_hours'), fmt(total.lit_hours, 1, ' h')),
      card(t('kpi.coverage'), fmt(total.coverage * 100, 0, ' %'))),
    energyChart(e.total.days),
    h('h4', {}, t('kpi.per_town')),
    table([t('alarms.town'), t('map.title'), t('kpi.kwh'), t('kpi.full_power_kwh'), t('kpi.saved')],
      e.towns.map((x) => [x.town ?? '–', String(x.cabinets), fmt(x.total.kwh, 1), fmt(x.total.full_power_kwh, 1),
        fmt(x.total.full_power_saved_pct, 1, ' %')])));
}

function availability(a) {
  const cls = (x) => t(`class.${x.equipment_class}`);
  return h('section', { class: 'card', id: 'kpi-availability' }, h('h3', {}, t('kpi.availability')),
    h('dl', { class: 'cards' }, ...a.classes.map((x) => card(cls(x), fmt(x.availability_pct, 1, ' %')))),
    h('h4', {}, t('kpi.per_town')),
    table([t('alarms.town'), t('alarms.device_class'), t('kpi.devices'), t('kpi.availability')],
      a.towns.map((x) => [x.town ?? '–', cls(x), String(x.devices), fmt(x.availability_pct, 1, ' %')])));
}

function delays(d) {
  const row = (x, first) => [first, String(x.episodes), String(x.acknowledged), duration(x.ack_median_s),
    duration(x.ack_p90_s), String(x.cleared), duration(x.clear_median_s), duration(x.clear_p90_s)];
  const head = ['', t('kpi.episodes'), t('state.acknowledged'), t('kpi.ack_median'), t('kpi.ack_p90'),
    t('state.cleared'), t('kpi.clear_median'), t('kpi.clear_p90')];
  return h('section', { class: 'card', id: 'kpi-delays' }, h('h3', {}, t('kpi.delays')),
    table(head, [row(d.total, t('kpi.all')),
      ...d.severities.map((x) => row(x, t(`sev.${x.severity}`))),
      ...d.towns.map((x) => row(x, x.severity ? `${x.town ?? '–'} · ${t(`sev.${x.severity}`)}` : x.town ?? '–'))]));
}

async function load() {
  const status = $('#kpi-status');
  const out = $('#kpi');
  while (plots.length) plots.pop().destroy();
  out.replaceChildren();
  const p = period();
  try {
    const data = await api(`/kpi${query({ from: p.from, to: p.to, town: p.town, format: 'json' })}`);
    status.textContent = t('kpi.period_shown', { from: when(data.period.from_ms), to: when(data.period.to_ms) });
    if (data.energy) out.append(energy(data.energy));
    if (data.availability) out.append(availability(data.availability));
    if (data.delays) out.append(delays(data.delays));
  } catch (error) {
    status.textContent = error.notAvailable ? t('na') : t('error', { detail: error.message });
  }
}

export function initKpi() {
  $('#kpi-form').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  onLangChange(() => { if (visible) load(); });
}

export function showKpi(shown) {
  visible = shown;
  if (shown) load();
}
