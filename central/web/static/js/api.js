// The API with the operator's token: kept in sessionStorage (gone with the tab), sent in the
// Authorization header, never put in a URL.
const KEY = 'cityedge.token';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
  get notAvailable() { return this.status === 404 || this.status === 405; }
}

let unauthorized = () => {};
export function onUnauthorized(fn) { unauthorized = fn; }

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export function authHeaders() {
  return { Authorization: `Bearer ${token.get() ?? ''}` };
}

function detailOf(data, fallback) {
  const detail = data && data.detail;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((x) => x !== 'body').join('.')}: ${d.msg}`).join('; ');
  }
  return fallback;
}

export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { ...authHeaders(), Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`/api/v1${path}`, {
    method, headers, signal, cache: 'no-store', credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401) unauthorized();
  if (!response.ok) throw new ApiError(response.status, detailOf(data, `${response.status} ${response.statusText}`));
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
