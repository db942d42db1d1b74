// French and English labels. The language is the user's choice (kept in localStorage), else the
// browser's. Elements with data-i18n get their text from here; code calls t(key, {name: value}).
const LABELS = {
  en: {
    lang: 'Language', logout: 'Log out', any: 'any', filter: 'Filter', more: 'More',
    'nav.map': 'Map', 'nav.alarms': 'Alarms', 'nav.kpi': 'KPI',
    'login.title': 'Sign in', 'login.help': 'Paste your API token (an admin makes one with: cityedge central token create).',
    'login.token': 'Token', 'login.submit': 'Sign in', 'login.bad': 'This token is unknown or revoked.',
    'live.on': 'live', 'live.off': 'not live', 'live.connecting': 'connecting…',
    'who': '{name} ({role})',
    'map.title': 'Cabinets', 'map.online': 'online', 'map.offline': 'offline', 'map.alarm': 'in alarm',
    'map.unplaced': '{n} cabinet(s) without coordinates (not in the registry).',
    'map.total': '{n} cabinets',
    'alarms.cabinet': 'Cabinet', 'alarms.town': 'Town', 'alarms.device_class': 'Equipment',
    'alarms.severity': 'Severity', 'alarms.state': 'State', 'alarms.raised': 'Raised',
    'alarms.device': 'Device', 'alarms.alarm': 'Alarm', 'alarms.who': 'Acknowledged / assigned',
    'alarms.actions': 'Actions', 'alarms.none': 'No alarm matches.', 'alarms.count': '{n} alarm(s)',
    'alarms.ack': 'Acknowledge', 'alarms.assign': 'Assign', 'alarms.comment': 'Comment',
    'alarms.assign_to': 'assign to', 'alarms.comment_text': 'comment', 'alarms.ok': 'OK',
    'alarms.by': 'by {who}', 'alarms.to': 'to {who}',
    'class.lighting': 'lighting', 'class.traffic_controller': 'traffic lights', 'class.camera': 'camera',
    'class.other': 'other',
    'sev.critical': 'critical', 'sev.alarm': 'alarm', 'sev.warning': 'warning', 'sev.info': 'info',
    'state.open': 'open', 'state.raised': 'raised', 'state.acknowledged': 'acknowledged', 'state.cleared': 'cleared',
    'cab.values': 'Latest values', 'cab.point': 'Point', 'cab.value': 'Value', 'cab.quality': 'Quality',
    'cab.time': 'Time', 'cab.chart': 'Chart', 'cab.period': 'Period', 'cab.online': 'online',
    'cab.offline': 'offline', 'cab.seen': 'last seen {when}', 'cab.unknown': 'Unknown cabinet {id}.',
    'cab.no_numeric': 'No numeric point to chart.', 'cab.points_count': '{n} values ({resolution})',
    'cab.no_data': 'No reading in this period.',
    'period.1h': '1 hour', 'period.6h': '6 hours', 'period.24h': '24 hours', 'period.7d': '7 days', 'period.30d': '30 days',
    'cmd.title': 'Command', 'cmd.device': 'Device', 'cmd.action': 'Action', 'cmd.level': 'Level (%)',
    'cmd.on': 'Lights', 'cmd.switch_on': 'on', 'cmd.switch_off': 'off', 'cmd.until': 'Until (optional)',
    'cmd.schedule': 'Schedule (JSON)', 'cmd.send': 'Send', 'cmd.history': 'Commands', 'cmd.by': 'By',
    'cmd.status': 'Status', 'cmd.all_devices': 'all lighting', 'cmd.bad_json': 'The schedule is not valid JSON: {error}',
    'action.dim': 'dim', 'action.switch': 'switch', 'action.set_schedule': 'schedule', 'action.clear_override': 'back to the schedule', 'action.set_config': 'new config',
    'status.pending': 'pending', 'status.delivered': 'delivered', 'status.executed': 'executed',
    'status.failed': 'failed', 'status.expired': 'expired', 'status.rejected': 'rejected',
    'kpi.period': 'Period', 'kpi.7d': 'last 7 days', 'kpi.30d': 'last 30 days', 'kpi.month': 'this month',
    'kpi.energy': 'Energy', 'kpi.availability': 'Availability', 'kpi.delays': 'Intervention delays',
    'kpi.period_shown': '{from} to {to}',
    'kpi.kwh': 'energy (kWh)', 'kpi.full_power_kwh': 'at full power (kWh)', 'kpi.saved': 'saved vs full power',
    'kpi.historical_kwh': 'historical baseline (kWh)', 'kpi.historical_saved': 'saved vs historical',
    'kpi.lit_hours': 'lit hours', 'kpi.coverage': 'data coverage', 'kpi.per_town': 'Per town',
    'kpi.devices': 'devices', 'kpi.episodes': 'episodes', 'kpi.ack_median': 'to acknowledge (median)',
    'kpi.ack_p90': 'to acknowledge (90th pct)', 'kpi.clear_median': 'to clear (median)', 'kpi.clear_p90': 'to clear (90th pct)',
    'kpi.all': 'all',
    'na': 'Not available on this server yet.', 'error': 'Error: {detail}',
  },
  fr: {
    lang: 'Langue', logout: 'Se déconnecter', any: 'tous', filter: 'Filtrer', more: 'Plus',
    'nav.map': 'Carte', 'nav.alarms': 'Alarmes', 'nav.kpi': 'Indicateurs',
    'login.title': 'Connexion', 'login.help': 'Collez votre jeton d’API (un administrateur le crée avec : cityedge central token create).',
    'login.token': 'Jeton', 'login.submit': 'Se connecter', 'login.bad': 'Ce jeton est inconnu ou révoqué.',
    'live.on': 'en direct', 'live.off': 'hors direct', 'live.connecting': 'connexion…',
    'who': '{name} ({role})',
    'map.title': 'Armoires', 'map.online': 'en ligne', 'map.offline': 'hors ligne', 'map.alarm': 'en alarme',
    'map.unplaced': '{n} armoire(s) sans coordonnées (absentes du registre).',
    'map.total': '{n} armoires',
    'alarms.cabinet': 'Armoire', 'alarms.town': 'Commune', 'alarms.device_class': 'Équipement',
    'alarms.severity': 'Gravité', 'alarms.state': 'État', 'alarms.raised': 'Levée',
    'alarms.device': 'Appareil', 'alarms.alarm': 'Alarme', 'alarms.who': 'Acquittée / attribuée',
    'alarms.actions': 'Actions', 'alarms.none': 'Aucune alarme ne correspond.', 'alarms.count': '{n} alarme(s)',
    'alarms.ack': 'Acquitter', 'alarms.assign': 'Attribuer', 'alarms.comment': 'Commenter',
    'alarms.assign_to': 'attribuer à', 'alarms.comment_text': 'commentaire', 'alarms.ok': 'OK',
    'alarms.by': 'par {who}', 'alarms.to': 'à {who}',
    'class.lighting': 'éclairage', 'class.traffic_controller': 'feux tricolores', 'class.camera': 'caméra',
    'class.other': 'autre',
    'sev.critical': 'critique', 'sev.alarm': 'alarme', 'sev.warning': 'avertissement', 'sev.info': 'info',
    'state.open': 'ouverte', 'state.raised': 'levée', 'state.acknowledged': 'acquittée', 'state.cleared': 'terminée',
    'cab.values': 'Dernières valeurs', 'cab.point': 'Point', 'cab.value': 'Valeur', 'cab.quality': 'Qualité',
    'cab.time': 'Heure', 'cab.chart': 'Courbe', 'cab.period': 'Période', 'cab.online': 'en ligne',
    'cab.offline': 'hors ligne', 'cab.seen': 'vue {when}', 'cab.unknown': 'Armoire {id} inconnue.',
    'cab.no_numeric': 'Aucun point numérique à tracer.', 'cab.points_count': '{n} valeurs ({resolution})',
    'cab.no_data': 'Aucune mesure sur cette période.',
    'period.1h': '1 heure', 'period.6h': '6 heures', 'period.24h': '24 heures', 'period.7d': '7 jours', 'period.30d': '30 jours',
    'cmd.title': 'Commande', 'cmd.device': 'Appareil', 'cmd.action': 'Action', 'cmd.level': 'Niveau (%)',
    'cmd.on': 'Éclairage', 'cmd.switch_on': 'allumé', 'cmd.switch_off': 'éteint', 'cmd.until': 'Jusqu’à (facultatif)',
    'cmd.schedule': 'Programme (JSON)', 'cmd.send': 'Envoyer', 'cmd.history': 'Commandes', 'cmd.by': 'Par',
    'cmd.status': 'Statut', 'cmd.all_devices': 'tout l’éclairage', 'cmd.bad_json': 'Le programme n’est pas du JSON valide : {error}',
    'action.dim': 'gradation', 'action.switch': 'allumage', 'action.set_schedule': 'programme', 'action.clear_override': 'retour au programme', 'action.set_config': 'nouvelle configuration',
    'status.pending': 'en attente', 'status.delivered': 'remise', 'status.executed': 'exécutée',
    'status.failed': 'échouée', 'status.expired': 'expirée', 'status.rejected': 'refusée',
    'kpi.period': 'Période', 'kpi.7d': '7 derniers jours', 'kpi.30d': '30 derniers jours', 'kpi.month': 'ce mois-ci',
    'kpi.energy': 'Énergie', 'kpi.availability': 'Disponibilité', 'kpi.delays': 'Délais d’intervention',
    'kpi.period_shown': 'du {from} au {to}',
    'kpi.kwh': 'énergie (kWh)', 'kpi.full_power_kwh': 'à pleine puissance (kWh)', 'kpi.saved': 'économie / pleine puissance',
    'kpi.historical_kwh': 'référence historique (kWh)', 'kpi.historical_saved': 'économie / historique',
    'kpi.lit_hours': 'heures d’éclairage', 'kpi.coverage': 'couverture des données', 'kpi.per_town': 'Par commune',
    'kpi.devices': 'appareils', 'kpi.episodes': 'épisodes', 'kpi.ack_median': 'délai d’acquittement (médiane)',
    'kpi.ack_p90': 'délai d’acquittement (90e centile)', 'kpi.clear_median': 'délai de résolution (médiane)', 'kpi.clear_p90': 'délai de résolution (90e centile)',
    'kpi.all': 'toutes',
    'na': 'Pas encore disponible sur ce serveur.', 'error': 'Erreur : {detail}',
  },
};

const KEY = 'cityedge.lang';
let current = pick();
const listeners = [];

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved in LABELS) return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('fr') ? 'fr' : 'en';
}

export function lang() { return current; }

export function t(key, vars = {}) {
  const text = LABELS[current][key] ?? LABELS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function applyLabels(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

export function setLang(next) {
  if (!(next in LABELS) || next === current) return;
  current = next;
  localStorage.setItem(KEY, next);
  applyLabels();
  for (const fn of listeners) fn();
}

export function onLangChange(fn) { listeners.push(fn); }

const formats = {};
export function when(ms) {
  if (ms === null || ms === undefined) return '–';
  const f = (formats[current] ??= new Intl.DateTimeFormat(current === 'fr' ? 'fr-FR' : 'en-GB', {
    dateStyle: 'short', timeStyle: 'medium',
  }));
  return f.format(new Date(ms));
}

export function number(x, digits = 2) {
  if (typeof x !== 'number') return String(x ?? '–');
  return x.toLocaleString(current === 'fr' ? 'fr-FR' : 'en-GB', { maximumFractionDigits: digits });
}
