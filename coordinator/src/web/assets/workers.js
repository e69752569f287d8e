// poet dashboard, workers page: the fleet (issue 20). Each worker's device, GPU, memory,
// labels, the throughput of its last epoch and the run it holds, from /api/v1/workers, polled
// every 2 s. Self-contained (no helpers from app.js) so that the page's rendering lives here.
(() => {
  'use strict';
  if (document.body.dataset.page !== 'workers') return;
  const POLL_MS = 2000;
  const root = document.getElementById('fleet');
  if (!root) return;

  // An element with text children only: never innerHTML, so worker-sent text stays text.
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids.flat()) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const gib = (b) => (b > 0 ? `${(b / 2 ** 30).toFixed(b < 2 ** 31 ? 1 : 0)} GiB` : '—');
  const rate = (x) => (x == null ? '—' : `${Math.round(x).toLocaleString('en')}`);
  const labels = (m) => Object.entries(m || {}).sort().map(([k, v]) => `${k}=${v}`).join(', ') || '—';

  const columns = [
    ['Worker', (w) => `#${w.id}`],
    ['Host', (w) => w.host],
    ['Device', (w) => w.device],
    ['GPU', (w) => (w.gpu_name ? `${w.gpu_name} (${gib(w.gpu_memory_bytes)})` : '—')],
    ['Host memory', (w) => gib(w.memory_bytes)],
    ['Threads', (w) => (w.cpu_threads || '—')],
    ['Labels', (w) => labels(w.labels)],
    ['Chars/s (last epoch)', (w) => rate(w.chars_per_sec)],
    ['Current run', (w) => (w.current_run_id ? el('a', { href: `/runs/${w.current_run_id}` }, `#${w.current_run_id}`) : 'idle')],
  ];

  let last = '';
  function draw(workers) {
    const text = JSON.stringify(workers);
    if (text === last) return;
    last = text;
    if (!workers.length) {
      root.replaceChildren(el('p', { class: 'muted' }, 'No worker seen in the last hour.'));
      return;
    }
    root.replaceChildren(el('table', { id: 'fleet-table' },
      el('thead', {}, el('tr', {}, columns.map(([label]) => el('th', {}, label)))),
      el('tbody', {}, workers.map((w) => el('tr', {}, columns.map(([, cell]) => el('td', {}, cell(w))))))));
  }

  async function poll() {
    try {
      const r = await fetch('/api/v1/workers', { credentials: 'same-origin' });
      if (r.ok) draw(await r.json());
    } catch (_) { /* the next poll tries again */ }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
