// The operator page: sign in with a token, then the map, the alarm board, a cabinet's page and the
// KPIs, kept up to date by the live stream. Routes live in the URL's fragment (#/map, #/alarms,
// #/cabinet/ID, #/kpi); the token never does.
import { api, token, onUnauthorized } from './api.js';
import { $ } from './dom.js';
import { t, applyLabels, setLang, lang, onLangChange } from './i18n.js';
import { state, emit, loadCabinets, loadOpenAlarms, noteEpisode } from './state.js';
import { openStream } from './stream.js';
import { showMap } from './map.js';
import { initAlarms, showAlarms } from './alarms.js';
import { initCabinet, showCabinet } from './cabinet.js';
import { initKpi, showKpi } from './kpi.js';

let stream = null;
let started = false;

function showOnly(id) {
  for (const view of document.querySelectorAll('main .view')) view.hidden = view.id !== id;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', id.startsWith('view-') && a.getAttribute('href') === `#/${id.slice(5)}`);
  }
}

function route() {
  if (!started) return;
  const [, view, arg] = (location.hash || '#/map').split('/');
  showAlarms(view === 'alarms');
  showKpi(view === 'kpi');
  if (view === 'alarms') showOnly('view-alarms');
  else if (view === 'kpi') showOnly('view-kpi');
  else if (view === 'cabinet' && arg) { showOnly('view-cabinet'); showCabinet(decodeURIComponent(arg)); }
  else { showOnly('view-map'); showMap(); }
}

function setLive(s) {
  document.body.dataset.live = s;
  const el = $('#live');
  el.dataset.state = s;
  el.textContent = t(`live.${s === 'on' ? 'on' : s === 'connecting' ? 'connecting' : 'off'}`);
}

function signOut(message) {
  token.clear();
  if (stream) stream.close();
  stream = null;
  started = false;
  state.who = null;
  $('#main').hidden = true;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#login-token').value = '';
  $('#login-token').focus();
}

async function reloadAll() {
  await Promise.all([loadCabinets(), loadOpenAlarms()]);
}

function onEvent(event, data) {
  if (event === 'hello') reloadAll().catch(console.error);
  else if (event === 'resync') reloadAll().then(route).catch(console.error);
  else if (event === 'cabinets') {
    let unknown = false;
    for (const c of data.cabinets) {
      const known = state.cabinets.get(c.id);
      if (known) state.cabinets.set(c.id, { ...known, ...c }); else unknown = true;
    }
    if (unknown) loadCabinets().catch(console.error); else emit('cabinets', data.cabinets);
  } else if (event === 'registry') {
    // Registered, moved or revoked: where it stands changes, its state stays as it was.
    for (const c of data.cabinets) {
      state.cabinets.set(c.id, { online: false, last_seen_ms: null, ...state.cabinets.get(c.id), ...c });
    }
    emit('cabinets', data.cabinets);
  } else if (event === 'episodes') {
    for (const e of data.episodes) noteEpisode(e);
    emit('episodes', data.episodes);
  } else if (event === 'commands') emit('commands', data.commands);
}

async function start() {
  let who;
  // Who we are and the fleet, asked at once: the map is drawn one round trip sooner.
  const loading = reloadAll().catch(() => null);
  try {
    who = await api('/whoami');
  } catch (error) {
    signOut(error.status === 401 ? t('login.bad') : t('error', { detail: error.message }));
    return;
  }
  state.who = who;
  document.body.dataset.role = who.role;
  $('#who').textContent = t('who', { name: who.name, role: who.role });
  $('#login').hidden = true;
  $('#main').hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  started = true;
  await loading;
  route();
  stream = openStream({ onEvent, onState: setLive, onUnauthorized: () => signOut(t('login.bad')) });
}

function boot() {
  applyLabels();
  const select = $('#lang');
  select.value = lang();
  select.addEventListener('change', () => setLang(select.value));
  onLangChange(() => {
    if (state.who) $('#who').textContent = t('who', { name: state.who.name, role: state.who.role });
    setLive(document.body.dataset.live || 'off');
  });
  initAlarms();
  initCabinet();
  initKpi();
  onUnauthorized(() => signOut(t('login.bad')));
  $('#logout').addEventListener('click', () => signOut(''));
  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('#login-token').value.trim();
    if (!value) return;
    token.set(value);
    start();
  });
  window.addEventListener('hashchange', route);
  setLive('off');
  if (token.get()) start(); else signOut('');
}

boot();
