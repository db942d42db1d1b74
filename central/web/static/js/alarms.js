// The alarm board: episodes filtered by cabinet, town, equipment, severity and state; an operator
// acknowledges, assigns and comments (a viewer sees no buttons). Live: the stream's episode events.
import { api, query } from './api.js';
import { h, $ } from './dom.js';
import { t, when, onLangChange } from './i18n.js';
import { on, mayCommand, noteEpisode, emit } from './state.js';

const rows = new Map(); // episode id -> episode shown
let nextAfter = null;
let visible = false;
let reloadTimer = null;

function filters() {
  const form = new FormData($('#alarm-filters'));
  return Object.fromEntries([...form.entries()].map(([k, v]) => [k, String(v).trim()]));
}

async function load(append = false) {
  const status = $('#alarms-status');
  const body = $('#alarms tbody');
  try {
    const data = await api(`/alarm-episodes${query({ ...filters(), limit: 200, after: append ? nextAfter : null })}`);
    if (!append) { rows.clear(); body.replaceChildren(); }
    for (const e of data.episodes) { rows.set(e.id, e); body.append(row(e)); }
    nextAfter = data.next_after ?? null;
    $('#alarms-more').hidden = nextAfter === null;
    status.textContent = rows.size ? t('alarms.count', { n: rows.size }) : t('alarms.none');
  } catch (error) {
    body.replaceChildren();
    $('#alarms-more').hidden = true;
    status.textContent = error.notAvailable ? t('na') : t('error', { detail: error.message });
  }
}

async function act(e, path, payload) {
  try {
    const updated = await api(`/alarm-episodes/${e.id}/${path}`, { method: 'POST', body: payload });
    if (updated && updated.id !== undefined) merge(updated);
  } catch (error) {
    $('#alarms-status').textContent = t('error', { detail: error.message });
  }
}

function inlineForm(e, label, path, field) {
  const input = h('input', { name: field, maxlength: field === 'to' ? 64 : 2000, placeholder: t(label), required: true });
  return h('form', {
    class: 'inline',
    onsubmit: (ev) => { ev.preventDefault(); act(e, path, { [field]: input.value.trim() }); },
  }, input, h('button', { type: 'submit' }, t('alarms.ok')));
}

function actions(e) {
  if (!mayCommand() || e.state === 'cleared') return h('td', {});
  const cell = h('td', { class: 'actions' });
  if (e.state === 'raised') {
    cell.append(h('button', { type: 'button', class: 'ack', onclick: () => act(e, 'acknowledge', {}) }, t('alarms.ack')));
  }
  const more = h('details', {}, h('summary', {}, `${t('alarms.assign')} / ${t('alarms.comment')}`),
    inlineForm(e, 'alarms.assign_to', 'assign', 'to'),
    inlineForm(e, 'alarms.comment_text', 'comments', 'text'));
  cell.append(more);
  return cell;
}

function row(e) {
  const who = [
    e.acked_by ? t('alarms.by', { who: e.acked_by }) : null,
    e.assigned_to ? t('alarms.to', { who: e.assigned_to }) : null,
  ].filter(Boolean).join(', ');
  return h('tr', { dataset: { id: String(e.id), state: e.state, severity: e.severity } },
    h('td', {}, when(e.raised_ms)),
    h('td', {}, h('a', { href: `#/cabinet/${encodeURIComponent(e.cabinet)}` }, e.cabinet)),
    h('td', {}, e.town || '–'),
    h('td', {}, e.device),
    h('td', { title: e.message || '' }, e.alarm),
    h('td', {}, h('span', { class: `sev sev-${e.severity}` }, t(`sev.${e.severity}`))),
    h('td', { class: 'state' }, t(`state.${e.state}`)),
    h('td', {}, who || '–'),
    actions(e));
}

function merge(e) {
  noteEpisode(e);
  const shown = rows.get(e.id);
  if (!shown) { scheduleReload(); return; }
  const next = { ...shown, ...e };
  rows.set(e.id, next);
  const old = $(`#alarms tr[data-id="${CSS.escape(String(e.id))}"]`);
  if (old) old.replaceWith(row(next));
}

function scheduleReload() {
  if (!visible || reloadTimer) return;
  reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, 500);
}

export function initAlarms() {
  $('#alarm-filters').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  $('#alarms-more').addEventListener('click', () => load(true));
  on('episodes', (list) => {
    for (const e of list) merge(e);
    emit('alarms', null);
  });
  onLangChange(() => { if (visible) load(); });
}

export function showAlarms(shown) {
  visible = shown;
  if (shown) load();
}

