// The performance contract's figures for a period (GET /api/v1/kpi): energy against its baseline,
// availability per equipment class, intervention delays. Each section is drawn from what the API
// answers: figures as cards, lists as tables, and a daily series as a uPlot chart.
import { api, query } from './api.js';
import { h, $ } from './dom.js';
import { t, number, when, onLangChange } from './i18n.js';

const uPlot = window.uPlot;
const plots = [];
let visible = false;

function period() {
  const form = new FormData($('#kpi-form'));
  const now = new Date();
  const choice = form.get('period');
  let from;
  if (choice === 'month') from = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  else from = Date.now() - Number(choice) * 86400000;
  return { from, to: Date.now(), town: String(form.get('town') || '').trim() };
}

const label = (key) => key.replace(/_/g, ' ');
const isScalar = (v) => v === null || ['number', 'string', 'boolean'].includes(typeof v);

function scalarText(key, v) {
  if (typeof v === 'number') {
    if (key.endsWith('_ms') && v > 1e11) return when(v);
    return number(v, 2);
  }
  return String(v ?? '–');
}

function cards(obj) {
  const items = Object.entries(obj).filter(([, v]) => isScalar(v));
  if (!items.length) return null;
  return h('dl', { class: 'cards' }, ...items.map(([k, v]) => h('div', { class: 'kcard' },
    h('dt', {}, label(k)), h('dd', {}, scalarText(k, v)))));
}

function table(rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => isScalar(r[k]))))];
  return h('table', { class: 'grid compact' },
    h('thead', {}, h('tr', {}, ...keys.map((k) => h('th', {}, label(k))))),
    h('tbody', {}, ...rows.slice(0, 500).map((r) => h('tr', {}, ...keys.map((k) => h('td', { class: typeof r[k] === 'number' ? 'num' : '' }, scalarText(k, r[k])))))));
}

function dailyChart(rows) {
  const dayKey = ['day', 'date'].find((k) => rows.length && typeof rows[0][k] === 'string');
  if (!dayKey || rows.length < 2) return null;
  const numericKeys = Object.keys(rows[0]).filter((k) => typeof rows[0][k] === 'number').slice(0, 3);
  if (!numericKeys.length) return null;
  const xs = rows.map((r) => Date.parse(`${r[dayKey]}T00:00:00Z`) / 1000);
  const el = h('div', { class: 'chart' });
  requestAnimationFrame(() => {
    const colours = ['#1f5f99', '#d98c1f', '#3a9a5b'];
    plots.push(new uPlot({
      width: Math.max(300, el.clientWidth || 600), height: 220,
      series: [{}, ...numericKeys.map((k, i) => ({ label: label(k), stroke: colours[i], width: 2 }))],
      scales: { x: { time: true } },
    }, [xs, ...numericKeys.map((k) => rows.map((r) => r[k]))], el));
  });
  return el;
}

function section(title, value, depth = 0) {
  const parts = [];
  if (isScalar(value)) return h('p', {}, `${label(title)}: ${scalarText(title, value)}`);
  if (Array.isArray(value)) {
    const objects = value.filter((v) => v && typeof v === 'object' && !Array.isArray(v));
    if (objects.length) { parts.push(dailyChart(objects)); parts.push(table(objects)); }
    else parts.push(h('p', {}, value.map((v) => scalarText('', v)).join(', ')));
  } else {
    parts.push(cards(value));
    for (const [k, v] of Object.entries(value)) if (!isScalar(v)) parts.push(section(k, v, depth + 1));
  }
  const heading = depth === 0 ? h('h3', {}, title) : h('h4', {}, label(title));
  return h('section', { class: depth === 0 ? 'card' : 'sub' }, heading, ...parts);
}

async function load() {
  const status = $('#kpi-status');
  const out = $('#kpi');
  while (plots.length) plots.pop().destroy();
  out.replaceChildren();
  const p = period();
  try {
    const data = await api(`/kpi${query({ from: p.from, to: p.to, town: p.town, format: 'json' })}`);
    const shown = data.period ? t('kpi.period_shown', { from: when(data.period.from_ms), to: when(data.period.to_ms) }) : '';
    status.textContent = shown;
    const titles = { energy: t('kpi.energy'), availability: t('kpi.availability'), delays: t('kpi.delays') };
    for (const [key, value] of Object.entries(data)) {
      if (key === 'period') continue;
      out.append(section(titles[key] || label(key), value));
    }
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
