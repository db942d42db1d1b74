// What the views share: the cabinets, the open alarms per cabinet, and who is signed in.
// The live stream and the loaders update it; views subscribe to topics and redraw what changed.
import { api } from './api.js';

export const state = {
  who: null,                 // {name, role, may_command}
  cabinets: new Map(),       // id -> cabinet as GET /cabinets answers it (plus live changes)
  openAlarms: new Map(),     // cabinet id -> Set of open episode ids
  alarmsAvailable: true,     // false when this server has no alarm-episodes API
};

const topics = new Map();
export function on(topic, fn) {
  if (!topics.has(topic)) topics.set(topic, []);
  topics.get(topic).push(fn);
}
export function emit(topic, payload) {
  for (const fn of topics.get(topic) || []) {
    try { fn(payload); } catch (error) { console.error(error); }
  }
}

export async function loadCabinets() {
  const list = await api('/cabinets');
  state.cabinets = new Map(list.map((c) => [c.id, c]));
  emit('cabinets', null);
}

const OPEN = new Set(['raised', 'acknowledged']);
export function noteEpisode(e) {
  const ids = state.openAlarms.get(e.cabinet) || new Set();
  if (OPEN.has(e.state)) ids.add(e.id); else ids.delete(e.id);
  if (ids.size) state.openAlarms.set(e.cabinet, ids); else state.openAlarms.delete(e.cabinet);
}

export async function loadOpenAlarms() {
  const open = new Map();
  let after = null;
  try {
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ state: 'open', limit: '1000' });
      if (after !== null) q.set('after', after);
      const data = await api(`/alarm-episodes?${q}`);
      for (const e of data.episodes) {
        if (!open.has(e.cabinet)) open.set(e.cabinet, new Set());
        open.get(e.cabinet).add(e.id);
      }
      after = data.next_after;
      if (after === null || after === undefined) break;
    }
    state.alarmsAvailable = true;
  } catch (error) {
    if (!error.notAvailable) throw error;
    state.alarmsAvailable = false;
  }
  state.openAlarms = open;
  emit('alarms', null);
}

export function cabinetState(cabinet) {
  if (state.openAlarms.has(cabinet.id)) return 'alarm';
  return cabinet.online ? 'online' : 'offline';
}

export function mayCommand() { return Boolean(state.who && state.who.may_command); }
