// poet dashboard: renders each page from its JSON document (/api/v1/...) and re-renders it
// when a poll finds it changed. No framework, no build step; see coordinator/src/web/mod.rs
// for why. The chart is hand-written SVG (one <path> per run and series).
(() => {
  'use strict';
  const POLL_MS = 2000;
  const body = document.body;
  const page = body.dataset.page;
  const pageId = body.dataset.id;
  const main = document.getElementById('main');

  // ---- small helpers -------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }
  const NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
    for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return el;
  }
  const loss = (x) => (x == null || Number.isNaN(x) ? '—' : Number(x).toFixed(4));
  const num = (x) => (x == null ? '—' : Number(x).toLocaleString('en-US'));
  const pad = (n) => String(n).padStart(2, '0');
  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function ago(sec) {
    if (sec == null) return '—';
    if (sec < 60) return `${Math.round(sec)} s ago`;
    if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
    if (sec < 86400) return `${(sec / 3600).toFixed(1)} h ago`;
    return `${(sec / 86400).toFixed(1)} d ago`;
  }
  const bytes = (b) => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`);
  const stateBadge = (st) => h('span', { class: `state s-${st}` }, st);
  const STATES = ['queued', 'running', 'paused', 'stopped', 'succeeded', 'failed', 'cancelled'];
  function countsBar(c) {
    const total = STATES.reduce((a, k) => a + (c[k] || 0), 0) || 1;
    return h('span', { class: 'bar', title: STATES.map((k) => `${k} ${c[k]}`).join(', ') },
      STATES.filter((k) => c[k]).map((k) => h('i', { style: `width:${(100 * c[k]) / total}%;background:var(--${k})` })));
  }
  const countsText = (c) => STATES.filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(' · ') || 'no runs';
  const kv = (o) => (o && typeof o === 'object' ? Object.entries(o).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join('  ') : '');
  const cfgVal = (v) => (v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));

  // ---- live polling ----------------------------------------------------------------------
  const liveEl = document.getElementById('live');
  function setLive(ok, text) {
    liveEl.className = ok ? 'ok' : 'err';
    liveEl.textContent = text;
  }
  async function fetchText(u) {
    const r = await fetch(u, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    const t = await r.text();
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg = JSON.parse(t).error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return t;
  }
  // Fetches `urls` now and every POLL_MS while the tab is visible; calls render(...docs) when
  // any document changed (the first time included).
  function live(urls, render) {
    let last = null;
    async function tick() {
      if (!document.hidden) {
        try {
          const texts = await Promise.all(urls.map(fetchText));
          const key = texts.join('\u0000');
          if (key !== last) {
            last = key;
            await render(...texts.map((t) => JSON.parse(t)));
            body.dataset.renders = String(Number(body.dataset.renders || 0) + 1);
          }
          setLive(true, `live · ${when(new Date().toISOString()).slice(11)}`);
        } catch (e) {
          setLive(false, `not updating: ${e.message}`);
        }
      }
      setTimeout(tick, POLL_MS);
    }
    tick();
  }
  function view() {
    let v = document.getElementById('view');
    if (!v) { v = h('div', { id: 'view' }); main.append(v); }
    return v;
  }

  // ---- sortable tables -------------------------------------------------------------------
  // cols: [{key, label, num?, get(row) -> sort value, cell(row) -> node|text}]
  function table(cols, rows, sortState, opts = {}) {
    const sorted = rows.slice();
    if (sortState && sortState.key) {
      const col = cols.find((c) => c.key === sortState.key);
      if (col) {
        const dir = sortState.dir === 'desc' ? -1 : 1;
        sorted.sort((a, b) => {
          const x = col.get(a), y = col.get(b);
          if (x == null && y == null) return 0;
          if (x == null) return 1;
          if (y == null) return -1;
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
      }
    }
    const rerender = opts.rerender;
    const head = h('tr', {}, cols.map((c) => {
      const cls = [c.num ? 'num' : '', sortState && c.get ? 'sortable' : '',
        sortState && sortState.key === c.key ? `sorted-${sortState.dir}` : ''].join(' ').trim();
      return h('th', {
        class: cls, 'data-key': c.key,
        onclick: sortState && c.get ? () => {
          if (sortState.key === c.key) sortState.dir = sortState.dir === 'asc' ? 'desc' : 'asc';
          else { sortState.key = c.key; sortState.dir = 'asc'; }
          rerender();
        } : null,
      }, c.label);
    }));
    const trs = sorted.map((r) => h('tr', opts.rowAttrs ? opts.rowAttrs(r) : {}, cols.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(r)))));
    return h('div', { class: 'table-wrap' }, h('table', { id: opts.id }, h('thead', {}, head), h('tbody', {}, trs)));
  }

  // ---- colours ---------------------------------------------------------------------------
  const runColour = (i) => `hsl(${(i * 137.508) % 360}, 62%, 46%)`;
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function ramp(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
    const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
    return `rgb(${c.join(',')})`;
  }
  const CATS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  // Colours per run id for `key` ('' = by run), and a legend text.
  function colourBy(runs, key) {
    const out = new Map();
    if (!key) { runs.forEach((r, i) => out.set(r.id, runColour(i))); return [out, 'colour: one per run']; }
    const vals = runs.map((r) => (r.config || {})[key]);
    const nums = vals.filter((v) => typeof v === 'number');
    if (nums.length === vals.length && nums.length > 0) {
      let lo = Math.min(...nums), hi = Math.max(...nums);
      const useLog = lo > 0 && hi / lo > 20;
      const f = (v) => (useLog ? Math.log(v) : v);
      const [a, b] = [f(lo), f(hi)];
      runs.forEach((r, i) => out.set(r.id, ramp(b === a ? 0.5 : (f(vals[i]) - a) / (b - a))));
      return [out, `colour: ${key} from ${lo} (purple) to ${hi} (yellow)${useLog ? ', log' : ''}`];
    }
    const cats = [...new Set(vals.map(cfgVal))];
    runs.forEach((r, i) => out.set(r.id, CATS[cats.indexOf(cfgVal(vals[i])) % CATS.length]));
    return [out, `colour: ${key} — ${cats.slice(0, 10).map((c, i) => `${c} = ${['blue', 'orange', 'green', 'red', 'purple', 'brown', 'pink', 'grey', 'olive', 'cyan'][i]}`).join(', ')}`];
  }

  // ---- the chart -------------------------------------------------------------------------
  // series: [{key, run, label, colour, dash, xs:[], ys:[]}]; returns an element.
  function chart(series, opts) {
    const W = 1000, H = 380, L = 58, R = 16, T = 14, B = 36;
    const box = h('div', { class: 'chart-box' });
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'data-series-count': series.length });
    const tip = h('div', { class: 'tip' });
    box.append(svg, tip);
    const pts = series.flatMap((sr) => sr.ys.filter((y) => Number.isFinite(y) && (!opts.log || y > 0)));
    const xsAll = series.flatMap((sr) => sr.xs);
    if (!pts.length) {
      svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no epochs reported yet'));
      return box;
    }
    let [ylo, yhi] = [Math.min(...pts), Math.max(...pts)];
    if (ylo === yhi) { ylo -= 0.5; yhi += 0.5; }
    const fy = opts.log ? Math.log10 : (v) => v;
    const [a, b] = [fy(ylo), fy(yhi)];
    const pad = (b - a) * 0.05;
    const [ya, yb] = [a - pad, b + pad];
    const xhi = Math.max(1, ...xsAll), xlo = Math.min(1, ...xsAll);
    const X = (x) => L + ((x - xlo) / Math.max(1, xhi - xlo)) * (W - L - R);
    const Y = (y) => T + (1 - (fy(y) - ya) / (yb - ya)) * (H - T - B);
    // Axes and ticks.
    svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    const yt = [];
    if (opts.log) {
      // 1-2-5 per decade; within a single decade, every half step instead.
      for (const ms of [[1, 2, 5], [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9], [1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9]]) {
        yt.length = 0;
        for (let e = Math.floor(ya); e <= Math.ceil(yb); e++) for (const m of ms) { const v = m * 10 ** e; if (fy(v) >= ya && fy(v) <= yb) yt.push(v); }
        if (yt.length >= 4) break;
      }
    } else {
      const step = niceStep((yb - ya) / 6);
      for (let v = Math.ceil(ya / step) * step; v <= yb; v += step) yt.push(v);
    }
    for (const v of yt) {
      svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: Y(v), y2: Y(v), 'stroke-dasharray': '2 4' }),
        s('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, +v.toPrecision(3)));
    }
    const xstep = Math.max(1, niceStep((xhi - xlo) / 10));
    for (let v = Math.ceil(xlo / xstep) * xstep; v <= xhi; v += xstep) {
      svg.append(s('text', { x: X(v), y: H - B + 16, 'text-anchor': 'middle' }, v));
    }
    // Rungs of an adaptive sweep: a dashed vertical line per rung epoch.
    for (const e of opts.rungs || []) {
      if (e < xlo || e > xhi) continue;
      svg.append(s('line', { class: 'rung', x1: X(e), x2: X(e), y1: T, y2: H - B, 'data-epoch': e }),
        s('text', { class: 'rung-label', x: X(e) + 3, y: T + 10 }, `rung ${e}`));
    }
    svg.append(s('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, 'epoch'),
      s('text', { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, 'text-anchor': 'middle' }, `loss (nats/char)${opts.log ? ', log' : ''}`));
    // One path per series; screen points kept for hover.
    const screen = [];
    const paths = [];
    series.forEach((sr, si) => {
      let d = '';
      sr.xs.forEach((x, i) => {
        const y = sr.ys[i];
        if (!Number.isFinite(y) || (opts.log && y <= 0)) return;
        const px = X(x), py = Y(y);
        d += `${d ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`;
        screen.push([px, py, si, i]);
      });
      if (sr.xs.length === 1) d += 'h0.01';
      const p = s('path', { class: 'series', d, stroke: sr.colour, 'stroke-dasharray': sr.dash ? '5 3' : null, 'data-run': sr.run, 'data-series': sr.key, 'stroke-linecap': 'round' });
      paths.push(p);
      svg.append(p);
    });
    // Scheduler decisions on the curves: × stopped, ‖ paused at a rung, ▲ promoted.
    for (const m of opts.marks || []) {
      if (opts.log && m.y <= 0) continue;
      const px = X(m.x), py = Y(m.y);
      const shape = m.kind === 'stop' ? s('path', { d: `M${px - 5},${py - 5}L${px + 5},${py + 5}M${px - 5},${py + 5}L${px + 5},${py - 5}` })
        : m.kind === 'pause' ? s('path', { d: `M${px - 3},${py - 6}V${py + 6}M${px + 3},${py - 6}V${py + 6}` })
          : s('path', { d: `M${px},${py - 7}L${px + 6},${py + 4}L${px - 6},${py + 4}Z` });
      shape.setAttribute('class', `mark mark-${m.kind}`);
      shape.setAttribute('data-run', m.run);
      shape.setAttribute('data-epoch', m.x);
      shape.append(s('title', {}, `run ${m.run} · epoch ${m.x} · ${m.kind}: ${m.reason}`));
      svg.append(shape);
    }
    const dot = s('circle', { r: 4, fill: 'none', stroke: 'currentColor', 'stroke-width': 2, visibility: 'hidden' });
    svg.append(dot);
    let hot = null;
    svg.addEventListener('mousemove', (ev) => {
      const rect = svg.getBoundingClientRect();
      const mx = ((ev.clientX - rect.left) / rect.width) * W, my = ((ev.clientY - rect.top) / rect.height) * H;
      const sx = rect.width / W, sy = rect.height / H;
      let best = null, bd = Infinity;
      for (const p of screen) {
        const dx = (p[0] - mx) * sx, dy = (p[1] - my) * sy, dd = dx * dx + dy * dy;
        if (dd < bd) { bd = dd; best = p; }
      }
      if (!best || bd > 40 * 40) { tip.style.display = 'none'; dot.setAttribute('visibility', 'hidden'); if (hot) hot.classList.remove('hot'); hot = null; return; }
      const sr = series[best[2]];
      dot.setAttribute('cx', best[0]); dot.setAttribute('cy', best[1]); dot.setAttribute('visibility', 'visible'); dot.style.color = sr.colour;
      if (hot) hot.classList.remove('hot');
      hot = paths[best[2]]; hot.classList.add('hot');
      tip.textContent = `${sr.label} · epoch ${sr.xs[best[3]]} · ${loss(sr.ys[best[3]])}`;
      tip.style.display = 'block';
      tip.style.left = `${Math.min(rect.width - 220, best[0] * sx + 12)}px`;
      tip.style.top = `${best[1] * sy - 30}px`;
    });
    svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; dot.setAttribute('visibility', 'hidden'); if (hot) hot.classList.remove('hot'); hot = null; });
    if (opts.onclick) svg.addEventListener('click', () => { if (hot) opts.onclick(hot.dataset.run); });
    return box;
  }
  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const e = 10 ** Math.floor(Math.log10(raw)), f = raw / e;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * e;
  }

  // ---- pages -----------------------------------------------------------------------------
  function sweepsPage() {
    const sort = { key: 'id', dir: 'desc' };
    let data = [];
    const draw = () => {
      const v = view();
      v.replaceChildren(data.length ? table([
        { key: 'id', label: 'Sweep', num: true, get: (r) => r.id, cell: (r) => h('a', { href: `/sweeps/${r.id}` }, `#${r.id}`) },
        { key: 'name', label: 'Name', get: (r) => r.name, cell: (r) => h('a', { href: `/sweeps/${r.id}` }, r.name) },
        { key: 'dataset', label: 'Dataset', num: true, get: (r) => r.dataset_id, cell: (r) => r.dataset_id },
        { key: 'runs', label: 'Runs', num: true, get: (r) => r.runs, cell: (r) => r.runs },
        { key: 'states', label: 'States', get: (r) => r.counts.running, cell: (r) => [countsBar(r.counts), countsText(r.counts)] },
        { key: 'best', label: 'Best val loss', num: true, get: (r) => r.best_val_loss, cell: (r) => (r.best_run_id ? h('a', { href: `/runs/${r.best_run_id}` }, loss(r.best_val_loss)) : '—') },
        { key: 'created', label: 'Created', get: (r) => r.created_at, cell: (r) => when(r.created_at) },
      ], data, sort, { rerender: draw, id: 'sweeps' }) : h('p', { class: 'muted' }, 'No sweeps yet. Submit one with `poet sweep submit`.'));
    };
    live(['/api/v1/sweeps'], (d) => { data = d; draw(); });
  }

  // The scheduler's plan in words: search, stopping rule, budget spent.
  function planText(sweep) {
    const p = sweep.plan || {};
    const parts = [];
    if (p.search) parts.push(`search ${p.search.method}${p.search.trials ? ` (${p.search.trials} trials)` : ''}`);
    const rule = (p.policy || {}).rule || {};
    if (rule.rule && rule.rule !== 'none') parts.push(`${rule.rule}${rule.eta ? ` (eta ${rule.eta}, from epoch ${rule.min_epochs})` : ''}`);
    const b = (p.policy || {}).budget;
    if (b && b.epochs) parts.push(`budget ${sweep.epochs_spent} of ${b.epochs} epochs`);
    else parts.push(`${sweep.epochs_spent} epochs spent`);
    if (sweep.paused) parts.push('paused');
    if (sweep.finished_at) parts.push(`finished ${when(sweep.finished_at)}`);
    return parts.join(' · ');
  }
  // The rung epochs of an ASHA / HyperBand sweep (every bracket's), ascending; [] otherwise.
  function rungEpochs(sweep) {
    const rule = ((sweep.plan || {}).policy || {}).rule || {};
    if (rule.rule !== 'asha' && rule.rule !== 'hyperband') return [];
    const epochs = new Set();
    const brackets = rule.rule === 'asha' ? 1 : Math.floor(Math.log(rule.max_epochs / rule.min_epochs) / Math.log(rule.eta) + 1e-9) + 1;
    for (let b = 0; b < brackets; b++) for (let r = rule.min_epochs * rule.eta ** b; r < rule.max_epochs; r *= rule.eta) epochs.add(r);
    return [...epochs].sort((a, b) => a - b);
  }
  // Where the scheduler decided about a run: its validation loss at the decision's epoch.
  function decisionMarks(sweep, curves) {
    const byRun = new Map(curves.curves.map((c) => [c.run_id, c]));
    return (sweep.decisions || []).filter((d) => d.run_id && d.epoch && ['stop', 'pause', 'promote'].includes(d.kind)).flatMap((d) => {
      const c = byRun.get(d.run_id);
      const i = c ? c.epochs.indexOf(d.epoch) : -1;
      return i < 0 || !Number.isFinite(c.val[i]) ? [] : [{ run: d.run_id, x: d.epoch, y: c.val[i], kind: d.kind, reason: d.reason }];
    });
  }
  // ASHA / HyperBand rungs: per rung epoch, runs that reached it, went on, wait or stopped there.
  function rungsTable(sweep) {
    const epochs = rungEpochs(sweep);
    if (!epochs.length) return [];
    const rows = epochs.map((e) => {
      const at = (st) => sweep.runs.filter((r) => r.epochs_done === e && r.state === st).length;
      return h('tr', {}, h('td', { class: 'num' }, e), h('td', { class: 'num' }, sweep.runs.filter((r) => r.epochs_done >= e).length),
        h('td', { class: 'num' }, sweep.runs.filter((r) => r.epochs_done > e).length), h('td', { class: 'num' }, at('paused')), h('td', { class: 'num' }, at('stopped')));
    });
    return [h('h2', {}, 'Rungs'), h('table', { class: 'rungs' }, h('thead', {}, h('tr', {}, ['Epoch', 'Reached', 'Went on', 'Paused there', 'Stopped there'].map((k) => h('th', {}, k)))), h('tbody', {}, rows))];
  }
  // Stop, pause, promote and propose decisions with their reasons, newest first.
  function decisionsTable(sweep) {
    if (!sweep.decisions || !sweep.decisions.length) return [];
    const rows = sweep.decisions.slice().reverse().map((d) => h('tr', { class: `d-${d.kind}` },
      h('td', { class: 'num' }, d.id), h('td', {}, d.run_id ? h('a', { href: `/runs/${d.run_id}` }, `#${d.run_id}`) : '—'),
      h('td', { class: 'num' }, d.epoch || '—'), h('td', {}, d.kind), h('td', {}, d.reason)));
    return [h('h2', {}, `Decisions (${sweep.decisions.length})`),
      h('table', { class: 'decisions' }, h('thead', {}, h('tr', {}, ['#', 'Run', 'Epoch', 'Kind', 'Reason'].map((k) => h('th', {}, k)))), h('tbody', {}, rows))];
  }
  function sweepPage(id) {
    const st = { series: 'val', log: false, colour: null, hidden: new Set(), sort: { key: 'best_val_loss', dir: 'asc' } };
    let sweep = null, curves = null;
    const v = view();
    const info = h('div'), controls = h('div', { class: 'controls' }), chartSlot = h('div'), legend = h('div', { class: 'legend' }), tableSlot = h('div'), decisionsSlot = h('div', { id: 'decisions' });
    v.append(info, h('h2', {}, 'Loss curves'), controls, chartSlot, legend, h('h2', {}, 'Runs'), tableSlot, decisionsSlot);
    const draw = () => {
      if (!sweep || !curves) return;
      if (st.colour === null) st.colour = sweep.varying[0] || '';
      const [colours, legendText] = colourBy(sweep.runs, st.colour);
      info.replaceChildren(h('div', { class: 'card facts' },
        h('div', {}, h('span', {}, 'name'), sweep.name),
        h('div', {}, h('span', {}, 'dataset'), `#${sweep.dataset_id}`),
        h('div', {}, h('span', {}, 'runs'), [countsBar(sweep.counts), countsText(sweep.counts)]),
        h('div', {}, h('span', {}, 'swept'), sweep.varying.join(', ') || '—'),
        h('div', {}, h('span', {}, 'plan'), planText(sweep)),
        h('div', {}, h('span', {}, 'created'), when(sweep.created_at))),
      h('details', {}, h('summary', {}, 'spec'), h('pre', { class: 'card' }, sweep.spec)));
      // Controls (rebuilt each time so the colour choices follow the runs).
      const sel = h('select', { id: 'colour-by', onchange: (e) => { st.colour = e.target.value; draw(); } },
        h('option', { value: '' }, 'run'), sweep.varying.concat(Object.keys((sweep.runs[0] || {}).config || {}).filter((k) => !sweep.varying.includes(k)))
          .map((k) => h('option', { value: k }, k)));
      sel.value = st.colour;
      const series = h('select', { id: 'series', onchange: (e) => { st.series = e.target.value; draw(); } },
        ['val', 'train', 'both'].map((k) => h('option', { value: k }, k === 'both' ? 'train (dashed) + validation' : k === 'val' ? 'validation' : 'train')));
      series.value = st.series;
      controls.replaceChildren(
        h('label', {}, 'loss ', series),
        h('label', {}, h('input', { type: 'checkbox', id: 'log-scale', checked: st.log, onchange: (e) => { st.log = e.target.checked; draw(); } }), ' log scale'),
        h('label', {}, 'colour by ', sel),
        h('button', { onclick: () => { st.hidden.clear(); draw(); } }, 'show all'),
        h('button', { onclick: () => { sweep.runs.forEach((r) => st.hidden.add(r.id)); draw(); } }, 'hide all'),
        h('span', { class: 'muted' }, 'hover for values · click a line to open its run'));
      const byRun = new Map(sweep.runs.map((r) => [r.id, r]));
      const ser = [];
      for (const c of curves.curves) {
        if (st.hidden.has(c.run_id) || !byRun.has(c.run_id)) continue;
        const colour = colours.get(c.run_id);
        const r = byRun.get(c.run_id);
        const label = `run ${c.run_id}${st.colour ? ` (${st.colour}=${cfgVal(r.config[st.colour])})` : ''}`;
        if (st.series !== 'train') ser.push({ key: 'val', run: c.run_id, label: `${label} val`, colour, xs: c.epochs, ys: c.val });
        if (st.series !== 'val') ser.push({ key: 'train', run: c.run_id, label: `${label} train`, colour, dash: true, xs: c.epochs, ys: c.train });
      }
      const shown = { ...curves, curves: curves.curves.filter((c) => !st.hidden.has(c.run_id)) };
      const marks = st.series === 'train' ? [] : decisionMarks(sweep, shown);
      chartSlot.replaceChildren(chart(ser, { log: st.log, rungs: rungEpochs(sweep), marks, onclick: (run) => { location.href = `/runs/${run}`; } }));
      decisionsSlot.replaceChildren(...rungsTable(sweep), ...decisionsTable(sweep));
      const thinned = curves.curves.some((c) => c.thinned);
      legend.textContent = `${legendText}${thinned ? ' · long curves thinned to 200 points' : ''}`;
      const cols = [
        { key: 'show', label: '', cell: (r) => h('input', { type: 'checkbox', title: 'show on the chart', checked: !st.hidden.has(r.id), onchange: (e) => { if (e.target.checked) st.hidden.delete(r.id); else st.hidden.add(r.id); draw(); } }) },
        { key: 'id', label: 'Run', num: true, get: (r) => r.id, cell: (r) => [h('span', { class: 'swatch', style: `background:${colours.get(r.id)}` }), h('a', { href: `/runs/${r.id}` }, `#${r.id}`)] },
        { key: 'state', label: 'State', get: (r) => r.state, cell: (r) => stateBadge(r.state) },
        { key: 'epochs', label: 'Epochs', num: true, get: (r) => r.epochs_done, cell: (r) => `${r.epochs_done}/${r.epochs_total}` },
        { key: 'best_val_loss', label: 'Best val', num: true, get: (r) => r.best_val_loss, cell: (r) => loss(r.best_val_loss) },
        { key: 'best_epoch', label: 'at epoch', num: true, get: (r) => r.best_epoch, cell: (r) => r.best_epoch ?? '—' },
        { key: 'last_train_loss', label: 'Last train', num: true, get: (r) => r.last_train_loss, cell: (r) => loss(r.last_train_loss) },
        { key: 'last_val_loss', label: 'Last val', num: true, get: (r) => r.last_val_loss, cell: (r) => loss(r.last_val_loss) },
        ...sweep.varying.map((k) => ({ key: `cfg.${k}`, label: k, num: true, get: (r) => r.config[k], cell: (r) => cfgVal(r.config[k]) })),
        { key: 'config', label: 'Config', cell: (r) => { const t = kv(Object.fromEntries(Object.entries(r.config).filter(([k]) => !sweep.varying.includes(k) && k !== 'dataset'))); return h('span', { class: 'kv clip', title: t }, t); } },
      ];
      tableSlot.replaceChildren(table(cols, sweep.runs, st.sort, { rerender: draw, id: 'runs', rowAttrs: (r) => ({ 'data-run': r.id }) }));
    };
    // The curves (the big document) are fetched again only when a run's progress changed.
    let curvesKey = null;
    live([`/api/v1/sweeps/${id}`], async (sw) => {
      const key = sw.runs.map((r) => `${r.id}:${r.attempt}:${r.epochs_done}:${r.last_val_loss}`).join(',');
      if (key !== curvesKey) {
        curves = JSON.parse(await fetchText(`/api/v1/sweeps/${id}/curves`));
        curvesKey = key;
      }
      sweep = sw;
      document.title = `Sweep ${sw.name} · poet`;
      main.querySelector('h1').textContent = `Sweep #${sw.id}: ${sw.name}`;
      draw();
    });
  }

  function timeline(attempts) {
    if (!attempts.length) return h('p', { class: 'muted' }, 'Never leased.');
    const now = Date.now();
    const t0 = Math.min(...attempts.map((a) => Date.parse(a.started_at)));
    const t1 = Math.max(now, ...attempts.map((a) => (a.ended_at ? Date.parse(a.ended_at) : now)));
    const W = 1000, row = 22, L = 170;
    const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${W} ${attempts.length * row + 8}` });
    const X = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 10);
    const col = { completed: 'var(--succeeded)', failed: 'var(--failed)', lease_expired: 'var(--cancelled)', released: 'var(--queued)', cancelled: 'var(--cancelled)', '': 'var(--running)' };
    attempts.forEach((a, i) => {
      const x0 = X(Date.parse(a.started_at)), x1 = X(a.ended_at ? Date.parse(a.ended_at) : now);
      svg.append(s('text', { x: 4, y: i * row + 16 }, `#${a.attempt} ${a.worker_host}`),
        s('rect', { x: x0, y: i * row + 5, width: Math.max(2, x1 - x0), height: row - 8, rx: 3, fill: col[a.outcome] || 'var(--queued)' },
          s('title', {}, `${a.outcome || 'running'} ${when(a.started_at)} → ${when(a.ended_at)}`)));
    });
    return svg;
  }

  function runPage(id) {
    const st = { log: false };
    let d = null;
    const draw = () => {
      const r = d.run;
      const v = view();
      const ep = d.epochs;
      const curve = chart([
        { key: 'val', run: r.id, label: 'validation', colour: 'var(--accent)', xs: ep.map((e) => e.epoch), ys: ep.map((e) => e.val_loss) },
        { key: 'train', run: r.id, label: 'train', colour: 'var(--cancelled)', dash: true, xs: ep.map((e) => e.epoch), ys: ep.map((e) => e.train_loss) },
      ], { log: st.log });
      v.replaceChildren(
        h('div', { class: 'card facts', id: 'summary' },
          h('div', {}, h('span', {}, 'state'), stateBadge(r.state), r.cancel_requested ? ' (cancel requested)' : '', r.halt_reason ? h('span', { class: 'muted halt' }, ` ${r.halt_reason}`) : ''),
          h('div', {}, h('span', {}, 'sweep'), h('a', { href: `/sweeps/${r.sweep_id}` }, `#${r.sweep_id}`)),
          h('div', {}, h('span', {}, 'dataset'), `#${r.dataset_id}`),
          h('div', {}, h('span', {}, 'epochs'), h('b', { id: 'epochs-done' }, `${r.epochs_done}`), `/${r.epochs_total}`),
          h('div', {}, h('span', {}, 'best val loss'), `${loss(r.best_val_loss)}${r.best_epoch ? ` (epoch ${r.best_epoch})` : ''}`),
          h('div', {}, h('span', {}, 'attempt'), `${r.attempt}/${r.max_attempts}`),
          h('div', {}, h('span', {}, 'worker'), r.worker_id ? `#${r.worker_id}` : '—'),
          h('div', {}, h('span', {}, 'created'), when(r.created_at)),
          h('div', {}, h('span', {}, 'started'), when(r.started_at)),
          h('div', {}, h('span', {}, 'finished'), when(r.finished_at)),
          r.error ? h('div', { class: 'error' }, h('span', {}, 'error'), r.error) : null),
        h('h2', {}, 'Loss'),
        h('div', { class: 'controls' }, h('label', {}, h('input', { type: 'checkbox', checked: st.log, onchange: (e) => { st.log = e.target.checked; draw(); } }), ' log scale'),
          h('span', { class: 'muted' }, 'solid: validation · dashed: train')),
        curve,
        h('h2', {}, 'Config'),
        table([{ key: 'k', label: 'key', cell: (x) => x[0] }, { key: 'v', label: 'value', cell: (x) => h('code', {}, cfgVal(x[1])) }], Object.entries(r.config || {}), null, { id: 'config' }),
        h('h2', {}, 'Attempts'),
        timeline(d.attempts),
        table([
          { key: 'a', label: '#', num: true, cell: (a) => a.attempt },
          { key: 'w', label: 'Worker', cell: (a) => `${a.worker_host} (#${a.worker_id})` },
          { key: 's', label: 'Started', cell: (a) => when(a.started_at) },
          { key: 'e', label: 'Ended', cell: (a) => when(a.ended_at) },
          { key: 'o', label: 'Outcome', cell: (a) => a.outcome || 'running' },
          { key: 'r', label: 'Resumed from', num: true, cell: (a) => (a.resumed_from_epoch ? `epoch ${a.resumed_from_epoch}` : 'scratch') },
          { key: 'd', label: 'Detail', cell: (a) => a.detail },
        ], d.attempts, null, { id: 'attempts' }),
        h('h2', {}, `Epochs (${ep.length})`),
        table([
          { key: 'epoch', label: 'Epoch', num: true, cell: (e) => e.epoch },
          { key: 'attempt', label: 'Attempt', num: true, cell: (e) => e.attempt },
          { key: 'train', label: 'Train loss', num: true, cell: (e) => loss(e.train_loss) },
          { key: 'val', label: 'Val loss', num: true, cell: (e) => loss(e.val_loss) },
          { key: 'dur', label: 'Seconds', num: true, cell: (e) => e.duration_s.toFixed(1) },
          { key: 'cps', label: 'Chars/s', num: true, cell: (e) => num(Math.round(e.chars_per_sec)) },
          { key: 'm', label: 'Metrics', cell: (e) => h('span', { class: 'kv' }, kv(e.metrics)) },
          { key: 'at', label: 'Reported', cell: (e) => when(e.reported_at) },
        ], ep, null, { id: 'epochs', rowAttrs: (e) => ({ 'data-epoch': e.epoch }) }),
        h('h2', {}, 'Checkpoints'),
        d.checkpoints.length ? table([
          { key: 'epoch', label: 'Epoch', num: true, cell: (c) => [c.epoch, c.best ? ' ★ best' : ''] },
          { key: 'val', label: 'Val loss', num: true, cell: (c) => loss(c.val_loss) },
          { key: 'size', label: 'Size', num: true, cell: (c) => bytes(c.size) },
          { key: 'sha', label: 'sha256', cell: (c) => h('code', { title: c.sha256 }, c.sha256.slice(0, 12)) },
          { key: 'at', label: 'Stored', cell: (c) => when(c.created_at) },
        ], d.checkpoints, null, { id: 'checkpoints' }) : h('p', { class: 'muted' }, 'None kept yet.'),
        h('h2', {}, 'Poems'),
        d.generations.length ? h('div', { id: 'generations' }, d.generations.map(generation)) : h('p', { class: 'muted' }, 'None generated yet: `poet generate --run ' + r.id + '`.'));
    };
    live([`/api/v1/runs/${id}`], (doc) => { d = doc; draw(); });
  }

  function report(r) {
    if (!r) return '';
    return `${r.shared.length}/${r.ngrams} 4-grams in the corpus (${(100 * r.shared_fraction).toFixed(1)}%), longest copied run ${r.longest_copied_run} words${r.flagged ? ' — flagged' : ''}`;
  }
  function generation(g) {
    const p = g.params || {};
    return h('div', { class: 'generation', 'data-generation': g.id },
      h('h3', {}, `Generation #${g.id} · epoch ${g.epoch} `, h('span', { class: `state s-${{ done: 'succeeded', failed: 'failed', queued: 'queued' }[g.state] || 'running'}` }, g.state)),
      h('p', { class: 'muted' }, `temperatures ${(p.temperatures || []).join(', ')} · ${p.chars} chars · seed ${p.seed} · ${when(g.created_at)}`),
      g.error ? h('p', { class: 'error' }, g.error) : null,
      g.overall ? h('p', {}, `Overall: ${report(g.overall)}`) : null,
      g.poems.map((pm) => h('div', { class: 'poem-box' },
        h('div', { class: 'muted' }, `poem ${pm.index + 1} · temperature ${pm.temperature} · ${report(pm.report)}`),
        h('div', { class: `poem${pm.report && pm.report.flagged ? ' flagged' : ''}` },
          pm.segments.map((sg) => (sg.copied ? h('mark', { title: 'found in the training corpus' }, sg.text) : sg.text))))));
  }

  function workersPage() {
    const sort = { key: 'seen', dir: 'asc' };
    let data = [];
    const draw = () => view().replaceChildren(data.length ? table([
      { key: 'id', label: 'Worker', num: true, get: (w) => w.id, cell: (w) => `#${w.id}` },
      { key: 'host', label: 'Host', get: (w) => w.host, cell: (w) => w.host },
      { key: 'device', label: 'Device', get: (w) => w.device, cell: (w) => w.device },
      { key: 'gpu', label: 'GPU', get: (w) => w.gpu_name, cell: (w) => (w.gpu_name ? `${w.gpu_name} (${bytes(w.gpu_memory_bytes)})` : '—') },
      { key: 'run', label: 'Current run', num: true, get: (w) => w.current_run_id, cell: (w) => (w.current_run_id ? h('a', { href: `/runs/${w.current_run_id}` }, `#${w.current_run_id}`) : 'idle') },
      { key: 'epoch', label: 'Epoch', num: true, get: (w) => w.current_epoch, cell: (w) => (w.current_run_id ? `${w.current_epoch}/${w.current_epochs_total}` : '—') },
      { key: 'seen', label: 'Last heartbeat', num: true, get: (w) => w.seen_seconds_ago, cell: (w) => h('span', { class: w.seen_seconds_ago > 60 ? 'error' : '', title: when(w.last_seen_at) }, ago(w.seen_seconds_ago)) },
      { key: 'version', label: 'Version', get: (w) => w.version, cell: (w) => w.version || '—' },
      { key: 'reg', label: 'Registered', get: (w) => w.registered_at, cell: (w) => when(w.registered_at) },
    ], data, sort, { rerender: draw, id: 'workers' }) : h('p', { class: 'muted' }, 'No worker seen in the last hour.'));
    live(['/api/v1/workers'], (d) => { data = d; draw(); });
  }

  function datasetsPage() {
    const sort = { key: 'id', dir: 'desc' };
    let data = [];
    const draw = () => view().replaceChildren(data.length ? table([
      { key: 'id', label: 'Id', num: true, get: (d) => d.id, cell: (d) => `#${d.id}` },
      { key: 'name', label: 'Name', get: (d) => d.name, cell: (d) => d.name },
      { key: 'version', label: 'Version', num: true, get: (d) => d.version, cell: (d) => `v${d.version}` },
      { key: 'poems', label: 'Poems', num: true, get: (d) => d.poems, cell: (d) => num(d.poems) },
      { key: 'chars', label: 'Chars', num: true, get: (d) => d.chars, cell: (d) => num(d.chars) },
      { key: 'vocab', label: 'Vocab', num: true, get: (d) => d.vocab_size, cell: (d) => d.vocab_size },
      { key: 'shards', label: 'Shards (val)', cell: (d) => `${d.shards} (${d.validation_shards.join(', ')})` },
      { key: 'params', label: 'Filter parameters', cell: (d) => h('span', { class: 'kv' }, kv(d.params)) },
      { key: 'counts', label: 'Ingest counts', cell: (d) => h('span', { class: 'kv' }, kv(d.counts && d.counts.lines ? d.counts.lines : d.counts)) },
      { key: 'left', label: 'Left out, by reason', cell: (d) => h('span', { class: 'kv' }, kv(d.counts && d.counts.not_poems_by_reason) || '—') },
      { key: 'hash', label: 'Content', cell: (d) => h('code', { title: d.content_hash }, d.content_hash.slice(0, 10)) },
      { key: 'created', label: 'Created', get: (d) => d.created_at, cell: (d) => when(d.created_at) },
    ], data, sort, { rerender: draw, id: 'datasets' }) : h('p', { class: 'muted' }, 'No dataset yet: `poet ingest`.'));
    live(['/api/v1/datasets'], (d) => { data = d; draw(); });
  }

  const pages = { sweeps: sweepsPage, sweep: () => sweepPage(pageId), run: () => runPage(pageId), workers: workersPage, datasets: datasetsPage };
  if (pages[page]) pages[page]();
})();
