// GET /api/v1/stream read with fetch(), so that the token goes in a header (EventSource cannot).
// Parses server-sent events, reconnects with a growing delay, and tells who listens its state.
import { authHeaders } from './api.js';

export function openStream({ onEvent, onState, onUnauthorized }) {
  const controller = new AbortController();
  let delay = 1000;
  let stopped = false;

  async function once() {
    onState('connecting');
    const response = await fetch('/api/v1/stream', {
      headers: { ...authHeaders(), Accept: 'text/event-stream' },
      signal: controller.signal, cache: 'no-store', credentials: 'omit',
    });
    if (response.status === 401) { stopped = true; onUnauthorized(); return; }
    if (!response.ok || !response.body) {
      const retry = Number(response.headers.get('Retry-After'));
      if (retry > 0) delay = Math.max(delay, retry * 1000);
      throw new Error(`stream: ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (!data.length) continue; // a keep-alive comment
        if (event === 'hello') { delay = 1000; onState('on'); }
        let payload;
        try { payload = JSON.parse(data.join('\n')); } catch { continue; }
        onEvent(event, payload);
      }
      if (buffer.length > 4 * 1024 * 1024) throw new Error('stream: an event larger than 4 MiB');
    }
  }

  (async () => {
    while (!stopped) {
      try { await once(); } catch (error) { if (controller.signal.aborted) return; }
      if (stopped) return;
      onState('off');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  })();

  return { close() { stopped = true; controller.abort(); onState('off'); } };
}
