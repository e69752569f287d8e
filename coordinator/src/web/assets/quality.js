// The run page's quality block (issue 21): for each generation, its poems' figures beside the
// training corpus's and the goal each is held to. Kept apart from app.js: `poetQuality.block(q)`
// draws one report (the `quality` field of a generation in GET /api/v1/runs/{id}); until
// app.js calls it itself, this script finds each drawn generation (`[data-generation]`) and
// adds the block beside its poems, fetching the run's JSON again when a new one appears.
'use strict';
(() => {
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const fix = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  const ratio = (a, b) => (b > 0 ? `${(a / b).toFixed(2)}×` : '—');

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // One report as a small table: measure, generated, corpus, goal.
  function block(q) {
    const g = q.generated || {};
    const c = q.corpus || {};
    const within = (a, b) => b > 0 && Math.abs(a / b - 1) <= 0.15;
    const rows = [
      ['real words', pct(g.real_word_share), pct(c.real_word_share), '≥ 90%', g.real_word_share >= 0.9],
      ['chars per line', fix(g.mean_line_chars, 1), fix(c.mean_line_chars, 1), `${ratio(g.mean_line_chars, c.mean_line_chars)} (within 15%)`, within(g.mean_line_chars, c.mean_line_chars)],
      ['lines per stanza', fix(g.lines_per_stanza, 2), fix(c.lines_per_stanza, 2), `${ratio(g.lines_per_stanza, c.lines_per_stanza)} (within 15%)`, within(g.lines_per_stanza, c.lines_per_stanza)],
      ['stanzas per poem', fix(g.stanzas_per_poem, 2), fix(c.stanzas_per_poem, 2), ratio(g.stanzas_per_poem, c.stanzas_per_poem), null],
      ['repeated lines', String(g.repeated_lines), String(c.repeated_lines), '0', g.repeated_lines === 0],
      ['shared 4-grams', pct(q.shared_4grams), '—', '≤ 5%', q.shared_4grams <= 0.05],
      ['longest copied run', `${q.longest_copied_run} words`, '—', '< 8 words', q.longest_copied_run < 8],
    ];
    const box = el('div', 'quality-block');
    box.appendChild(el('div', 'muted', 'Quality of these poems beside the training corpus'));
    const t = el('table', 'quality');
    const head = el('tr');
    ['Measure', 'Generated', 'Corpus', 'Goal'].forEach((x) => head.appendChild(el('th', '', x)));
    t.appendChild(head);
    for (const [name, a, b, goal, met] of rows) {
      const tr = el('tr');
      tr.appendChild(el('td', '', name));
      tr.appendChild(el('td', met === false ? 'num error' : 'num', a));
      tr.appendChild(el('td', 'num', b));
      tr.appendChild(el('td', 'muted', goal));
      t.appendChild(tr);
    }
    box.appendChild(t);
    return box;
  }

  window.poetQuality = { block };

  const body = document.body;
  if (!body || body.dataset.page !== 'run') return;
  const id = body.dataset.id;
  let reports = new Map();
  let fetching = null;

  async function refresh() {
    const r = await fetch(`/api/v1/runs/${id}`, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!r.ok) return;
    const d = await r.json();
    reports = new Map((d.generations || []).map((g) => [String(g.id), g]));
  }

  async function attach() {
    const nodes = [...document.querySelectorAll('[data-generation]')].filter((n) => !n.querySelector(':scope > .quality-block'));
    if (!nodes.length) return;
    const stale = nodes.some((n) => {
      const g = reports.get(n.dataset.generation);
      return !g || (!g.quality && g.state !== 'failed');
    });
    if (stale && !fetching) {
      fetching = refresh().finally(() => { fetching = null; });
    }
    if (fetching) await fetching;
    for (const n of nodes) {
      const g = reports.get(n.dataset.generation);
      if (g && g.quality && !n.querySelector(':scope > .quality-block')) {
        // Beside the poems: after the overall line, before the first poem.
        n.insertBefore(block(g.quality), n.querySelector(':scope > .poem-box'));
      }
    }
  }

  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; attach(); }, 50);
  }).observe(document.getElementById('main') || body, { childList: true, subtree: true });
  attach();
})();
