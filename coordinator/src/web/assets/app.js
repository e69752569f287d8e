// poet dashboard: renders each page from its JSON document (/api/v1/...) and re-renders it
// when a poll finds it changed. No framework, no build step; see coordinator/src/web/mod.rs
// for why. Charts are hand-written SVG drawn in pixel coordinates (one <path> per run and
// series). A view's choices (sort, colour, hidden runs, scale, filter, ...) live in the query
// string, so a link or a reload shows the same view; state a re-render must not lose (an open
// <details>, the tooltip under the pointer, brushes, zoom) is kept outside the DOM it rebuilds.
(() => {
  'use strict';
  const POLL_MS = 2000;
  const body = document.body;
  const page = body.dataset.page;
  const pageId = body.dataset.id;
  const main = document.getElementById('main');

  // ---- small helpers -------------------------------------------------------------------
  // <details data-keep="name"> stay open across re-renders: their state lives here.
  const openDetails = new Set();
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (tag === 'details' && attrs && attrs['data-keep']) {
      const key = attrs['data-keep'];
      el.open = openDetails.has(key);
      el.addEventListener('toggle', () => { if (el.open) openDetails.add(key); else openDetails.delete(key); });
    }
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
  // Tags and notes, where the document has them (older coordinators send neither).
  const tagChips = (tags) => (Array.isArray(tags) ? tags.map((t) => h('span', { class: 'tag', 'data-tag': t }, t)) : []);
  function notesList(notes) {
    if (!Array.isArray(notes) || !notes.length) return null;
    return h('div', { id: 'notes' }, h('h2', {}, `Notes (${notes.length})`), h('ul', { class: 'notes' },
      notes.map((n) => h('li', {}, h('span', { class: 'muted' }, `${n.author || 'someone'} · ${when(n.at)}`), h('div', { class: 'note-text' }, n.text)))));
  }

  // ---- view state in the address ---------------------------------------------------------
  // replaceState: a click changes the address but adds no history entry.
  const params = new URLSearchParams(location.search);
  function setParams(obj) {
    for (const [k, v] of Object.entries(obj)) {
      if (v == null || v === '' || v === false) params.delete(k);
      else params.set(k, String(v));
    }
    // Commas stay commas (`runs=1,2,3`, `hidden=4,5`): legal in a query and easier to read.
    const q = params.toString().replace(/%2C/gi, ',');
    const u = `${location.pathname}${q ? `?${q}` : ''}`;
    if (u !== location.pathname + location.search) history.replaceState(null, '', u);
  }
  function parseSort(text, fallback) {
    if (!text) return fallback;
    const [key, dir] = text.split(':');
    return { key, dir: dir === 'desc' ? 'desc' : 'asc' };
  }
  const idList = (text) => (text || '').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);

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
  // Fetches `urls` (a list, or a function that returns the list now) now and every POLL_MS
  // while the tab is visible; calls render(...docs) when any document changed (the first time
  // included). Returns a function that fetches again at once (after the view's query changed):
  // an answer to an older fetch is then dropped.
  function live(urls, render, onError) {
    let last = null, timer = null, seq = 0;
    async function tick() {
      clearTimeout(timer);
      const mine = ++seq;
      if (!document.hidden) {
        try {
          const list = typeof urls === 'function' ? urls() : urls;
          const texts = await Promise.all(list.map(fetchText));
          if (mine !== seq) return;
          const key = `${list.join('\u0001')}\u0000${texts.join('\u0000')}`;
          if (key !== last) {
            last = key;
            await render(...texts.map((t) => JSON.parse(t)));
            body.dataset.renders = String(Number(body.dataset.renders || 0) + 1);
          }
          setLive(true, `live · ${when(new Date().toISOString()).slice(11)}`);
        } catch (e) {
          if (mine !== seq) return;
          setLive(false, `not updating: ${e.message}`);
          if (onError) onError(e);
        }
      }
      timer = setTimeout(tick, POLL_MS);
    }
    tick();
    return tick;
  }
  function view() {
    let v = document.getElementById('view');
    if (!v) { v = h('div', { id: 'view' }); main.append(v); }
    return v;
  }

  // ---- sortable tables -------------------------------------------------------------------
  // cols: [{key, label, num?, get(row) -> sort value, cell(row) -> node|text}]; opts: id,
  // rerender (after a header click changed sortState), rowAttrs(row), sorted.
  function table(cols, rows, sortState, opts = {}) {
    const sorted = rows.slice();
    // opts.sorted: the rows come in the server's order already (sortState only marks it).
    if (sortState && sortState.key && !opts.sorted) {
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
    // Sortable headers are buttons (Enter and Space work from the keyboard) and say their
    // order in aria-sort; after a re-render the focus goes back to the same header.
    const rerender = opts.rerender;
    const head = h('tr', {}, cols.map((c) => {
      const sortable = !!(sortState && c.get);
      const on = sortable && sortState.key === c.key;
      const cls = [c.num ? 'num' : '', sortable ? 'sortable' : '', on ? `sorted-${sortState.dir}` : ''].join(' ').trim();
      return h('th', {
        class: cls, 'data-key': c.key, scope: 'col',
        'aria-sort': sortable ? (on ? (sortState.dir === 'asc' ? 'ascending' : 'descending') : 'none') : null,
        onclick: sortable ? () => {
          if (sortState.key === c.key) sortState.dir = sortState.dir === 'asc' ? 'desc' : 'asc';
          else { sortState.key = c.key; sortState.dir = 'asc'; }
          const hadFocus = document.activeElement && document.activeElement.closest && document.activeElement.closest('th');
          rerender();
          if (hadFocus && opts.id) {
            const b = document.querySelector(`#${opts.id} th[data-key="${CSS.escape(c.key)}"] button`);
            if (b) b.focus();
          }
        } : null,
      }, sortable ? h('button', { type: 'button', class: 'sort', title: `sort by ${c.label || c.key}` }, c.label) : c.label);
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

  // ---- sizing, scales, number formats ------------------------------------------------------
  // Every drawing is made in pixel coordinates: the slot is measured, the SVG is exactly that
  // many pixels wide (viewBox = size, so one unit is one pixel and text and markers keep their
  // shape), and a ResizeObserver draws it again when the slot's width changes.
  function sized(slot, build) {
    if (slot._ro) slot._ro.disconnect();
    let lastW = -1;
    const paint = () => {
      const w = Math.floor(slot.clientWidth);
      if (!w || w === lastW) return;
      lastW = w;
      slot.replaceChildren(...[build(w)].flat());
    };
    slot.replaceChildren();
    paint();
    slot._ro = new ResizeObserver(paint);
    slot._ro.observe(slot);
  }
  // Min and max of finite numbers without spreading (200,000 points would overflow the stack).
  function extent(vals) {
    let lo = Infinity, hi = -Infinity;
    for (const v of vals) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return lo <= hi ? [lo, hi] : null;
  }
  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const e = 10 ** Math.floor(Math.log10(raw)), f = raw / e;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * e;
  }
  const short = (v) => +Number(v).toPrecision(4);
  const si = (n) => (Math.abs(n) >= 1e9 ? `${short(n / 1e9)}G` : Math.abs(n) >= 1e6 ? `${short(n / 1e6)}M` : Math.abs(n) >= 1e3 ? `${short(n / 1e3)}k` : `${short(n)}`);
  // Three significant digits under two minutes: ticks 0.44 s and 0.46 s stay apart.
  const dur = (sec) => (sec < 120 ? `${short(+sec.toPrecision(3))} s` : sec < 7200 ? `${short((sec / 60).toFixed(1))} min` : `${short((sec / 3600).toFixed(2))} h`);
  // The x axes a loss chart offers, and each one's values for a run's epochs (from the run's
  // own document: wall time since the run started, characters trained on so far).
  const XAXES = {
    epoch: { label: 'epoch', fmt: (v) => `${v}`, int: true },
    wall: { label: 'wall time', fmt: dur },
    chars: { label: 'characters seen', fmt: si },
  };
  function xValues(epochs, run, kind) {
    let acc = 0;
    if (kind === 'wall') {
      const t0 = run.started_at ? Date.parse(run.started_at) : NaN;
      return epochs.map((e) => { acc += e.duration_s; const t = e.reported_at ? (Date.parse(e.reported_at) - t0) / 1000 : NaN; return Number.isFinite(t) && t >= 0 ? t : acc; });
    }
    if (kind === 'chars') return epochs.map((e) => (acc += e.chars_per_sec * e.duration_s));
    return epochs.map((e) => e.epoch);
  }
  // The x values of a curve of `/sweeps/{id}/curves` on axis `kind`: the same quantities as
  // xValues, summed by the server before it thinned the curve.
  const curveXs = (c, kind) => (kind === 'wall' ? c.wall_s : kind === 'chars' ? c.chars : null) || c.epochs;
  // Brushes in the address: `brush=units:0.6:1,best_val_loss:0:0.5` (an axis and a range of
  // its [0, 1] positions) and `rect=x0:x1:y0:y1` (the scatter's). Kept to 4 decimals when
  // drawn, so the address holds exactly the brush the page applies.
  const fix4 = (t) => Math.round(t * 1e4) / 1e4;
  const brushText = (b) => Object.entries(b).map(([k, [a, c]]) => `${k}:${a}:${c}`).join(',');
  function parseBrush(text) {
    const out = {};
    for (const item of (text || '').split(',')) {
      const parts = item.split(':');
      if (parts.length < 3) continue;
      const c = Number(parts.pop()), a = Number(parts.pop()), k = parts.join(':');
      if (k && Number.isFinite(a) && Number.isFinite(c) && a <= c) out[k] = [a, c];
    }
    return out;
  }
  const rectText = (r) => (r ? [r.x[0], r.x[1], r.y[0], r.y[1]].join(':') : null);
  function parseRect(text) {
    const v = (text || '').split(':').map(Number);
    return v.length === 4 && v.every(Number.isFinite) && v[0] <= v[1] && v[2] <= v[3] ? { x: [v[0], v[1]], y: [v[2], v[3]] } : null;
  }
  // Exponential moving average, debiased like TensorBoard's (the first points are not pulled
  // towards zero); `a` = 0 is no smoothing.
  function ema(ys, a) {
    if (!(a > 0)) return ys;
    let m = 0, n = 0;
    return ys.map((y) => { if (!Number.isFinite(y)) return y; m = m * a + (1 - a) * y; n += 1; return m / (1 - a ** n); });
  }
  // A [0, 1] position for each value of a column: numbers linearly (log when they span more
  // than 20x), anything else as evenly spaced categories. Missing values have no position.
  function scaleFor(values) {
    const present = values.filter((v) => v != null);
    const nums = present.filter((v) => typeof v === 'number' && Number.isFinite(v));
    if (present.length && nums.length === present.length) {
      const [lo, hi] = extent(nums);
      const lg = lo > 0 && hi / lo > 20;
      const f = lg ? Math.log10 : (v) => v;
      const [a, b] = [f(lo), f(hi)];
      const t = (v) => (typeof v === 'number' && Number.isFinite(v) && !(lg && v <= 0) ? (b === a ? 0.5 : (f(v) - a) / (b - a)) : null);
      const distinct = [...new Set(nums)].sort((x, y) => x - y);
      const ticks = distinct.length <= 8 ? distinct : [0, 0.25, 0.5, 0.75, 1].map((k) => (lg ? 10 ** (a + k * (b - a)) : a + k * (b - a)));
      return { t, ticks: ticks.map((v) => [t(v), `${short(v)}`]), log: lg };
    }
    const cats = [...new Set(present.map(cfgVal))].sort();
    const t = (v) => (v == null ? null : cats.length === 1 ? 0.5 : cats.indexOf(cfgVal(v)) / (cats.length - 1));
    return { t, ticks: cats.map((c, i) => [cats.length === 1 ? 0.5 : i / (cats.length - 1), c]) };
  }

  // ---- the line chart ----------------------------------------------------------------------
  // Draws `series` ([{key, run, label, colour, dash, xs, ys}]) into `slot`. opts: id (names the
  // chart: its hover survives a redraw), height, log, smooth (EMA weight), x ({label, fmt,
  // int}), yLabel, yFmt, rungs (epochs: for the epoch x axis only), marks ([{run, x, y, kind,
  // reason, epoch}], x on the chart's axis), view (an object whose `zoom` holds the
  // zoomed ranges across redraws), redraw (called after a zoom), onclick(run), cls.
  const hoverAt = new Map();
  function chartInto(slot, series, opts) {
    slot.classList.add('chart-box');
    sized(slot, (w) => drawChart(w, series, opts));
  }
  function drawChart(W, series, opts) {
    const H = opts.height || 380, L = 62, R = 16, T = 14, B = 38;
    const xa = opts.x || XAXES.epoch;
    const yFmt = opts.yFmt || loss;
    const svg = s('svg', { class: opts.cls || 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-chart': opts.id, 'data-metric': opts.metric, 'data-series-count': series.length });
    const tip = h('div', { class: 'tip' });
    const log = !!opts.log;
    const ok = (y) => Number.isFinite(y) && (!log || y > 0);
    const drawn = series.map((sr) => ({ ...sr, raw: sr.ys, ys: ema(sr.ys, opts.smooth) }));
    const zoom = opts.view && opts.view.zoom;
    const xr = zoom ? zoom.x : extent(drawn.flatMap((sr) => sr.xs.filter((x, i) => ok(sr.ys[i]))));
    if (!xr) {
      svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, opts.empty || 'no epochs reported yet'));
      return [svg, tip];
    }
    let [xlo, xhi] = xr;
    if (xlo === xhi) { xlo -= xa.int ? 0 : 0.5; xhi += xa.int ? 1 : 0.5; }
    const fy = log ? Math.log10 : (v) => v;
    let ya, yb;
    if (zoom && zoom.y) [ya, yb] = zoom.y.map(fy);
    else {
      const yr = extent(drawn.flatMap((sr) => sr.ys.filter((y, i) => ok(y) && sr.xs[i] >= xlo && sr.xs[i] <= xhi).map(fy))) || [0, 1];
      let [a, b] = yr;
      if (a === b) { const d = Math.abs(a) * 0.1 || 0.5; a -= d; b += d; }
      const pad = (b - a) * 0.05;
      [ya, yb] = [a - pad, b + pad];
    }
    const X = (x) => L + ((x - xlo) / (xhi - xlo)) * (W - L - R);
    const Y = (y) => T + (1 - (fy(y) - ya) / (yb - ya)) * (H - T - B);
    const invX = (px) => xlo + ((px - L) / (W - L - R)) * (xhi - xlo);
    const invY = (py) => { const f = ya + (1 - (py - T) / (H - T - B)) * (yb - ya); return log ? 10 ** f : f; };
    const clip = `clip-${opts.id}`;
    svg.append(s('defs', {}, s('clipPath', { id: clip }, s('rect', { x: L, y: T, width: W - L - R, height: H - T - B }))));
    svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    // Y ticks: 1-2-5 per decade on a log scale (finer within a single decade), nice steps else.
    const yt = [];
    if (log) {
      for (const ms of [[1, 2, 5], [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9], [1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9]]) {
        yt.length = 0;
        for (let e = Math.floor(ya); e <= Math.ceil(yb); e++) for (const m of ms) { const v = m * 10 ** e; if (fy(v) >= ya && fy(v) <= yb) yt.push(v); }
        if (yt.length >= 4) break;
      }
    } else {
      const step = niceStep((yb - ya) / Math.max(2, Math.floor((H - T - B) / 45)));
      for (let v = Math.ceil(ya / step) * step; v <= yb; v += step) yt.push(v);
    }
    for (const v of yt) {
      svg.append(s('line', { class: 'axis grid', x1: L, x2: W - R, y1: Y(v), y2: Y(v) }),
        s('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, opts.yTick ? opts.yTick(v) : short(+v.toPrecision(3))));
    }
    let xstep = niceStep((xhi - xlo) / Math.max(2, Math.floor((W - L - R) / 90)));
    if (xa.int) xstep = Math.max(1, Math.round(xstep));
    for (let v = Math.ceil(xlo / xstep) * xstep; v <= xhi + 1e-9; v += xstep) {
      svg.append(s('text', { x: X(v), y: H - B + 16, 'text-anchor': 'middle' }, xa.fmt(+v.toPrecision(6))));
    }
    svg.append(s('text', { class: 'x-label', x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, xa.label),
      s('text', { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, 'text-anchor': 'middle' }, `${opts.yLabel || 'loss (nats/char)'}${log ? ', log' : ''}`));
    const plot = s('g', { 'clip-path': `url(#${clip})` });
    svg.append(plot);
    // Rungs of an adaptive sweep: a dashed vertical line per rung epoch.
    for (const e of opts.rungs || []) {
      if (e < xlo || e > xhi) continue;
      plot.append(s('line', { class: 'rung', x1: X(e), x2: X(e), y1: T, y2: H - B, 'data-epoch': e }),
        s('text', { class: 'rung-label', x: X(e) + 3, y: T + 10 }, `rung ${e}`));
    }
    // One path per series (a faint raw one under it when smoothed); screen points for hover.
    const screen = [];
    const paths = [];
    const pathOf = (xs, ys) => {
      let d = '';
      xs.forEach((x, i) => { if (ok(ys[i])) d += `${d ? 'L' : 'M'}${X(x).toFixed(1)},${Y(ys[i]).toFixed(1)}`; });
      return d && xs.length === 1 ? `${d}h0.01` : d;
    };
    drawn.forEach((sr, si) => {
      if (opts.smooth > 0) plot.append(s('path', { class: 'raw', d: pathOf(sr.xs, sr.raw), stroke: sr.colour, 'data-run': sr.run }));
      const p = s('path', { class: 'series', d: pathOf(sr.xs, sr.ys), stroke: sr.colour, 'stroke-dasharray': sr.dash ? '5 3' : null, 'data-run': sr.run, 'data-series': sr.key, 'stroke-linecap': 'round' });
      paths.push(p);
      plot.append(p);
      sr.xs.forEach((x, i) => { if (ok(sr.ys[i]) && x >= xlo && x <= xhi) screen.push([X(x), Y(sr.ys[i]), si, i]); });
    });
    // Scheduler decisions on the curves: × stopped, ‖ paused at a rung, ▲ promoted.
    for (const m of opts.marks || []) {
      if (log && m.y <= 0) continue;
      if (m.x < xlo || m.x > xhi) continue;
      const px = X(m.x), py = Y(m.y);
      const shape = m.kind === 'stop' ? s('path', { d: `M${px - 5},${py - 5}L${px + 5},${py + 5}M${px - 5},${py + 5}L${px + 5},${py - 5}` })
        : m.kind === 'pause' ? s('path', { d: `M${px - 3},${py - 6}V${py + 6}M${px + 3},${py - 6}V${py + 6}` })
          : s('path', { d: `M${px},${py - 7}L${px + 6},${py + 4}L${px - 6},${py + 4}Z` });
      shape.setAttribute('class', `mark mark-${m.kind}`);
      shape.setAttribute('data-run', m.run);
      shape.setAttribute('data-epoch', m.epoch ?? m.x);
      shape.append(s('title', {}, `run ${m.run} · epoch ${m.epoch ?? m.x} · ${m.kind}: ${m.reason}`));
      plot.append(shape);
    }
    const dot = s('circle', { r: 4, fill: 'none', stroke: 'currentColor', 'stroke-width': 2, visibility: 'hidden' });
    const sel = s('rect', { class: 'zoom-sel', visibility: 'hidden' });
    svg.append(dot, sel);
    let hot = null;
    const unhover = () => { tip.style.display = 'none'; dot.setAttribute('visibility', 'hidden'); if (hot) hot.classList.remove('hot'); hot = null; };
    const hover = (mx, my) => {
      let best = null, bd = Infinity;
      for (const p of screen) {
        const dx = p[0] - mx, dy = p[1] - my, dd = dx * dx + dy * dy;
        if (dd < bd) { bd = dd; best = p; }
      }
      if (!best || bd > 40 * 40) { unhover(); return; }
      const sr = drawn[best[2]];
      dot.setAttribute('cx', best[0]); dot.setAttribute('cy', best[1]); dot.setAttribute('visibility', 'visible'); dot.style.color = sr.colour;
      if (hot) hot.classList.remove('hot');
      hot = paths[best[2]]; hot.classList.add('hot');
      const raw = sr.raw[best[3]], y = sr.ys[best[3]];
      tip.textContent = `${sr.label} · ${xa.label} ${xa.fmt(sr.xs[best[3]])} · ${yFmt(y)}${opts.smooth > 0 ? ` (raw ${yFmt(raw)})` : ''}`;
      tip.style.display = 'block';
      tip.style.left = `${Math.max(0, Math.min(W - 260, best[0] + 12))}px`;
      tip.style.top = `${best[1] - 30}px`;
    };
    const local = (ev) => { const r = svg.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
    let drag = null;
    svg.addEventListener('mousemove', (ev) => {
      const [mx, my] = local(ev);
      hoverAt.set(opts.id, [mx, my]);
      if (!drag) hover(mx, my);
    });
    svg.addEventListener('mouseleave', () => { hoverAt.delete(opts.id); unhover(); });
    // Drag a rectangle to zoom (a flat one zooms x only), double-click to go back.
    svg.addEventListener('mousedown', (ev) => {
      if (ev.button !== 0) return;
      const [mx, my] = local(ev);
      if (mx < L || mx > W - R || my < T || my > H - B) return;
      ev.preventDefault();
      drag = { x0: mx, y0: my, x1: mx, y1: my };
      const move = (e) => {
        const [x, y] = local(e);
        drag.x1 = Math.max(L, Math.min(W - R, x)); drag.y1 = Math.max(T, Math.min(H - B, y));
        const [a, b] = [Math.min(drag.x0, drag.x1), Math.max(drag.x0, drag.x1)], [c, d] = [Math.min(drag.y0, drag.y1), Math.max(drag.y0, drag.y1)];
        const flat = d - c < 6;
        sel.setAttribute('x', a); sel.setAttribute('width', b - a);
        sel.setAttribute('y', flat ? T : c); sel.setAttribute('height', flat ? H - T - B : d - c);
        sel.setAttribute('visibility', b - a > 3 ? 'visible' : 'hidden');
      };
      const up = () => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        const g = drag;
        drag = null;
        sel.setAttribute('visibility', 'hidden');
        const [a, b] = [Math.min(g.x0, g.x1), Math.max(g.x0, g.x1)], [c, d] = [Math.min(g.y0, g.y1), Math.max(g.y0, g.y1)];
        if (b - a > 5 && opts.view) {
          opts.view.zoom = { x: [invX(a), invX(b)], y: d - c >= 6 ? [invY(d), invY(c)] : null };
          if (opts.redraw) opts.redraw();
        } else if (hot && opts.onclick) opts.onclick(hot.dataset.run);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    svg.addEventListener('dblclick', () => { if (opts.view && opts.view.zoom) { opts.view.zoom = null; if (opts.redraw) opts.redraw(); } });
    if (zoom) svg.append(s('text', { class: 'zoomed', x: W - R - 4, y: T + 12, 'text-anchor': 'end' }, 'zoomed · double-click to reset'));
    // A redraw (new data, a resize) keeps the tooltip where the pointer is.
    if (hoverAt.has(opts.id)) hover(...hoverAt.get(opts.id));
    return [svg, tip];
  }

  // ---- parallel coordinates and scatter (a sweep's hyperparameters) ----------------------
  const val = (r, k) => (k in METRICS ? r[k] : (r.config || {})[k]);
  // The run metrics a scatter's y axis offers.
  const METRICS = { best_val_loss: 'best val loss', last_val_loss: 'last val loss', last_train_loss: 'last train loss', epochs_done: 'epochs done', best_epoch: 'best epoch' };
  // Whether run `r` is inside every brush: `brush` maps an axis key to a [t0, t1] range of
  // its [0, 1] positions, so a brush does not depend on the drawing's size.
  const scalesFor = (runs, keys) => Object.fromEntries(keys.map((k) => [k, scaleFor(runs.map((r) => val(r, k)))]));
  function inBrush(r, brush, scales) {
    return Object.entries(brush).every(([k, [a, b]]) => {
      const sc = scales[k];
      if (!sc) return true;
      const t = sc.t(val(r, k));
      return t != null && t >= a - 1e-9 && t <= b + 1e-9;
    });
  }
  // Starts a drag on `el` (mousedown): calls move(dx, dy, event) and then end(moved?) with the
  // pointer in `svg`'s pixels.
  function dragOn(el, svg, onMove, onEnd) {
    el.addEventListener('mousedown', (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      const r0 = svg.getBoundingClientRect();
      const at = (e) => [e.clientX - r0.left, e.clientY - r0.top];
      const start = at(ev);
      let last = start;
      const move = (e) => { last = at(e); onMove(start, last); };
      const up = (e) => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        last = at(e);
        onEnd(start, last);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
  }
  // One vertical axis per key in `axes` (the swept config keys, then the validation loss) and
  // one line per run; dragging along an axis brushes a range of it (a click clears it).
  function parcoords(W, runs, axes, colours, brush, onBrush) {
    const H = 300, L = 70, R = 70, T = 34, B = 26;
    const svg = s('svg', { class: 'parcoords', id: 'parcoords', width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const scales = scalesFor(runs, axes);
    const AX = (i) => L + (axes.length === 1 ? 0 : (i * (W - L - R)) / (axes.length - 1));
    const Yt = (t) => T + (1 - t) * (H - T - B);
    const missingY = H - 6;
    const lines = s('g', {});
    svg.append(lines);
    for (const r of runs) {
      const d = axes.map((k, i) => { const t = scales[k].t(val(r, k)); return `${i ? 'L' : 'M'}${AX(i).toFixed(1)},${(t == null ? missingY : Yt(t)).toFixed(1)}`; }).join('');
      const on = inBrush(r, brush, scales);
      lines.append(s('path', { class: `pc-line${on ? '' : ' dim'}`, d, stroke: colours.get(r.id), 'data-run': r.id }, s('title', {}, `run ${r.id} · ${axes.map((k) => `${METRICS[k] || k} ${cfgVal(val(r, k))}`).join(' · ')}`)));
    }
    axes.forEach((k, i) => {
      const x = AX(i), sc = scales[k];
      svg.append(s('line', { class: 'pc-axis-line', x1: x, x2: x, y1: T, y2: H - B }),
        s('text', { class: 'pc-title', x, y: T - 14, 'text-anchor': 'middle' }, `${METRICS[k] || k}${sc.log ? ' (log)' : ''}`));
      for (const [t, label] of sc.ticks) if (t != null) svg.append(s('text', { class: 'pc-tick', x: x - 6, y: Yt(t) + 4, 'text-anchor': 'end' }, label));
      const b = brush[k];
      const band = s('rect', { class: 'pc-brush', 'data-axis': k, x: x - 9, width: 18, y: b ? Yt(b[1]) : 0, height: b ? Math.max(1, Yt(b[0]) - Yt(b[1])) : 0, visibility: b ? 'visible' : 'hidden' });
      const hit = s('rect', { class: 'pc-hit', 'data-axis': k, x: x - 14, width: 28, y: T - 8, height: H - T - B + 16 });
      hit.append(s('title', {}, `drag along ${METRICS[k] || k} to select a range; click to clear`));
      svg.append(band, hit);
      const tOf = (py) => Math.max(0, Math.min(1, 1 - (py - T) / (H - T - B)));
      dragOn(hit, svg, (p0, p1) => {
        const [a, c] = [Math.min(p0[1], p1[1]), Math.max(p0[1], p1[1])];
        band.setAttribute('y', a); band.setAttribute('height', c - a); band.setAttribute('visibility', 'visible');
      }, (p0, p1) => {
        if (Math.abs(p1[1] - p0[1]) < 3) delete brush[k];
        else brush[k] = [fix4(tOf(Math.max(p0[1], p1[1]))), fix4(tOf(Math.min(p0[1], p1[1])))];
        onBrush();
      });
    });
    return svg;
  }
  // One dot per run: config key `xKey` against run metric `yKey`; dragging a rectangle selects
  // the runs inside it (a click clears it). `sel` holds {x: [t0, t1], y: [t0, t1]} or null.
  function scatter(W, runs, xKey, yKey, colours, st, onBrush) {
    const H = 300, L = 62, R = 16, T = 14, B = 38;
    const svg = s('svg', { class: 'scatter', id: 'scatter', width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const sx = scaleFor(runs.map((r) => val(r, xKey))), sy = scaleFor(runs.map((r) => val(r, yKey)));
    const X = (t) => L + 8 + t * (W - L - R - 16), Y = (t) => T + 8 + (1 - t) * (H - T - B - 16);
    const tX = (px) => Math.max(0, Math.min(1, (px - L - 8) / (W - L - R - 16))), tY = (py) => Math.max(0, Math.min(1, 1 - (py - T - 8) / (H - T - B - 16)));
    const area = s('rect', { class: 'sc-area', x: L, y: T, width: W - L - R, height: H - T - B });
    svg.append(area, s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    for (const [t, label] of sx.ticks) if (t != null) svg.append(s('text', { x: X(t), y: H - B + 16, 'text-anchor': 'middle' }, label));
    for (const [t, label] of sy.ticks) if (t != null) svg.append(s('text', { x: L - 6, y: Y(t) + 4, 'text-anchor': 'end' }, label));
    svg.append(s('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, `${xKey}${sx.log ? ' (log)' : ''}`),
      s('text', { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, 'text-anchor': 'middle' }, `${METRICS[yKey] || yKey}${sy.log ? ' (log)' : ''}`));
    const r0 = st.rect;
    const box = s('rect', { class: 'sc-brush', x: r0 ? X(r0.x[0]) : 0, y: r0 ? Y(r0.y[1]) : 0, width: r0 ? X(r0.x[1]) - X(r0.x[0]) : 0, height: r0 ? Y(r0.y[0]) - Y(r0.y[1]) : 0, visibility: r0 ? 'visible' : 'hidden' });
    svg.append(box);
    for (const r of runs) {
      const tx = sx.t(val(r, xKey)), ty = sy.t(val(r, yKey));
      if (tx == null || ty == null) continue;
      const on = !r0 || (tx >= r0.x[0] && tx <= r0.x[1] && ty >= r0.y[0] && ty <= r0.y[1]);
      svg.append(s('circle', { class: `sc-dot${on ? '' : ' dim'}`, cx: X(tx), cy: Y(ty), r: 5, fill: colours.get(r.id), 'data-run': r.id },
        s('title', {}, `run ${r.id} · ${xKey} ${cfgVal(val(r, xKey))} · ${METRICS[yKey] || yKey} ${cfgVal(val(r, yKey))}`)));
    }
    const start = (el) => dragOn(el, svg, (p0, p1) => {
      box.setAttribute('x', Math.min(p0[0], p1[0])); box.setAttribute('width', Math.abs(p1[0] - p0[0]));
      box.setAttribute('y', Math.min(p0[1], p1[1])); box.setAttribute('height', Math.abs(p1[1] - p0[1]));
      box.setAttribute('visibility', 'visible');
    }, (p0, p1) => {
      if (Math.abs(p1[0] - p0[0]) < 3 && Math.abs(p1[1] - p0[1]) < 3) st.rect = null;
      else st.rect = { x: [tX(Math.min(p0[0], p1[0])), tX(Math.max(p0[0], p1[0]))].map(fix4), y: [tY(Math.max(p0[1], p1[1])), tY(Math.min(p0[1], p1[1]))].map(fix4) };
      onBrush();
    });
    start(svg);
    return svg;
  }
  // Whether run `r` is inside the scatter's rectangle (every run when there is none).
  function rectInside(runs, xKey, yKey, rect) {
    if (!rect) return () => true;
    const sx = scaleFor(runs.map((r) => val(r, xKey))), sy = scaleFor(runs.map((r) => val(r, yKey)));
    return (r) => {
      const tx = sx.t(val(r, xKey)), ty = sy.t(val(r, yKey));
      return tx != null && ty != null && tx >= rect.x[0] - 1e-9 && tx <= rect.x[1] + 1e-9 && ty >= rect.y[0] - 1e-9 && ty <= rect.y[1] + 1e-9;
    };
  }

  // ---- pages -----------------------------------------------------------------------------
  function sweepsPage() {
    const sort = { key: 'id', dir: 'desc' };
    let data = [];
    const draw = () => {
      const v = view();
      v.replaceChildren(data.length ? table([
        { key: 'id', label: 'Sweep', num: true, get: (r) => r.id, cell: (r) => h('a', { href: `/sweeps/${r.id}` }, `#${r.id}`) },
        { key: 'name', label: 'Name', get: (r) => r.name, cell: (r) => [h('a', { href: `/sweeps/${r.id}` }, r.name), ...tagChips(r.tags)] },
        { key: 'dataset', label: 'Dataset', num: true, get: (r) => r.dataset_id, cell: (r) => r.dataset_id },
        { key: 'runs', label: 'Runs', num: true, get: (r) => r.run_count, cell: (r) => r.run_count },
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
  // Where the scheduler decided about a run: its validation loss at the decision's epoch,
  // placed on x axis `kind` (epoch, wall time or characters seen at that epoch).
  function decisionMarks(sweep, curves, kind) {
    const byRun = new Map(curves.curves.map((c) => [c.run_id, c]));
    return (sweep.decisions || []).filter((d) => d.run_id && d.epoch && ['stop', 'pause', 'promote'].includes(d.kind)).flatMap((d) => {
      const c = byRun.get(d.run_id);
      const i = c ? c.epochs.indexOf(d.epoch) : -1;
      return i < 0 || !Number.isFinite(c.val[i]) ? [] : [{ run: d.run_id, x: curveXs(c, kind)[i], epoch: d.epoch, y: c.val[i], kind: d.kind, reason: d.reason }];
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
  // The filter box over a run table, in the `--filter` language. Built once: a re-render must
  // not take the text or the caret away. Calls onApply(text) after a pause in typing or on
  // Enter; error(message, text) shows the server's message under it with the column moved
  // back into `text` (the page sends `prefix` + text), error(null) clears it.
  function filterBox(initial, prefix, onApply) {
    const input = h('input', { id: 'filter', type: 'search', class: 'filter', placeholder: 'filter runs, e.g. units >= 16 and best_val_loss < 2', spellcheck: 'false', autocomplete: 'off', 'aria-label': 'filter runs', 'aria-describedby': 'filter-error' });
    input.value = initial;
    const err = h('div', { id: 'filter-error', class: 'filter-error', role: 'status' });
    const count = h('span', { id: 'filter-count', class: 'muted' });
    function error(msg, text) {
      if (!msg) { err.replaceChildren(); input.removeAttribute('aria-invalid'); delete err.dataset.column; return; }
      input.setAttribute('aria-invalid', 'true');
      const m = /^(.*?) at column (\d+)/.exec(msg);
      if (!m) { err.replaceChildren(h('div', { class: 'error' }, msg)); return; }
      const col = Math.max(1, Math.min(text.length + 1, Number(m[2]) - prefix.length));
      err.dataset.column = col;
      err.replaceChildren(h('div', { class: 'error' }, `${m[1]} at column ${col}`), h('pre', { class: 'caret' }, `${text}\n${' '.repeat(col - 1)}^`));
    }
    let typing = null;
    const apply = () => { clearTimeout(typing); onApply(input.value); };
    input.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(apply, 300); });
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
    return { el: h('div', { class: 'filter-bar' }, h('label', { for: 'filter' }, 'Filter'), input, count, err), count, error };
  }

  function sweepPage(id) {
    const colourParam = params.get('colour');
    const st = {
      series: params.get('series') || 'val',
      log: params.get('scale') === 'log',
      x: XAXES[params.get('x')] ? params.get('x') : 'epoch',
      colour: colourParam == null ? null : colourParam === 'run' ? '' : colourParam,
      hidden: new Set(idList(params.get('hidden'))),
      sort: parseSort(params.get('sort'), { key: 'best_val_loss', dir: 'asc' }),
      filter: params.get('filter') || '',
      smooth: Number(params.get('smooth')) || 0,
      sx: params.get('sx'), sy: params.get('sy') || 'best_val_loss',
      zoom: null, brush: parseBrush(params.get('brush')), rect: parseRect(params.get('rect')), pick: new Set(),
    };
    const syncUrl = () => setParams({
      sort: `${st.sort.key}:${st.sort.dir}`, colour: st.colour == null ? null : st.colour || 'run',
      hidden: [...st.hidden].sort((a, b) => a - b).join(','), scale: st.log ? 'log' : null, filter: st.filter.trim() ? st.filter : null,
      series: st.series === 'val' ? null : st.series, x: st.x === 'epoch' ? null : st.x, smooth: st.smooth || null,
      sx: st.sx, sy: st.sy === 'best_val_loss' ? null : st.sy, brush: brushText(st.brush), rect: rectText(st.rect),
    });
    let sweep = null, curves = null;
    // Bumped when the sweep, its curves or the filter's answer change: the plots and the table
    // are rebuilt only when their inputs changed (a log-scale click redraws the chart alone;
    // with 1,000 runs the table and the plots are most of a redraw).
    let dataVersion = 0;
    const once = (slot, key, build) => { if (slot._key !== key) { slot._key = key; build(); } };
    // The filter runs on the server, in the same language as `poet runs list --filter`, inside
    // this sweep: `sweep = ID and (TEXT)`. A bad filter keeps the last good selection on
    // screen, with the error under the box.
    let filterIds = null, filterSeq = 0;
    const prefix = `sweep = ${id} and (`;
    const fbox = filterBox(st.filter, prefix, async (text) => {
      if (text === st.filter && (filterIds || !st.filter.trim())) return;
      st.filter = text;
      syncUrl();
      await runFilter();
      draw();
    });
    const v = view();
    const info = h('div'), notes = h('div'), controls = h('div', { class: 'controls' }), chartSlot = h('div', { id: 'loss' }), legend = h('div', { class: 'legend' });
    const pcSlot = h('div', { class: 'plot-box' }), scControls = h('div', { class: 'controls' }), scSlot = h('div', { class: 'plot-box' });
    const brushNote = h('div', { class: 'controls', id: 'selection' }), tableSlot = h('div'), decisionsSlot = h('div', { id: 'decisions' });
    v.append(info, notes, fbox.el,
      h('h2', {}, 'Loss curves'), controls, chartSlot, legend,
      h('h2', {}, 'Hyperparameters'),
      h('p', { class: 'muted' }, 'Drag along an axis (or a rectangle in the scatter) to select runs; the run table below shows the selection. A click clears.'),
      h('div', { class: 'hp-grid' }, h('div', {}, h('h3', {}, 'Parallel coordinates'), pcSlot), h('div', {}, h('h3', {}, 'Scatter'), scControls, scSlot)),
      h('h2', {}, 'Runs'), brushNote, tableSlot, decisionsSlot);

    async function runFilter() {
      const seq = ++filterSeq;
      if (!st.filter.trim()) { if (filterIds) dataVersion += 1; filterIds = null; fbox.error(null); return; }
      try {
        const ids = new Set();
        let token = '';
        do {
          const q = new URLSearchParams({ filter: `${prefix}${st.filter})`, page_size: '1000' });
          if (token) q.set('page_token', token);
          const page = JSON.parse(await fetchText(`/api/v1/runs?${q}`));
          page.runs.forEach((r) => ids.add(r.id));
          token = page.next_page_token;
        } while (token);
        if (seq !== filterSeq) return;
        filterIds = ids;
        dataVersion += 1;
        fbox.error(null);
      } catch (e) {
        if (seq === filterSeq) fbox.error(e.message, st.filter);
      }
    }

    const draw = () => {
      if (!sweep || !curves) return;
      if (st.colour === null) st.colour = sweep.varying[0] || '';
      if (!st.sx || !Object.keys((sweep.runs[0] || {}).config || {}).includes(st.sx)) st.sx = sweep.varying[0] || Object.keys((sweep.runs[0] || {}).config || {})[0] || null;
      syncUrl();
      const runsF = filterIds ? sweep.runs.filter((r) => filterIds.has(r.id)) : sweep.runs;
      fbox.count.textContent = filterIds ? `${runsF.length} of ${sweep.runs.length} runs match` : '';
      const [colours, legendText] = colourBy(sweep.runs, st.colour);
      info.replaceChildren(h('div', { class: 'card facts' },
        h('div', {}, h('span', {}, 'name'), sweep.name, ' ', tagChips(sweep.tags)),
        h('div', {}, h('span', {}, 'dataset'), `#${sweep.dataset_id}`),
        h('div', {}, h('span', {}, 'runs'), [countsBar(sweep.counts), countsText(sweep.counts)]),
        h('div', {}, h('span', {}, 'swept'), sweep.varying.join(', ') || '—'),
        h('div', {}, h('span', {}, 'plan'), planText(sweep)),
        h('div', {}, h('span', {}, 'created'), when(sweep.created_at))),
      h('details', { 'data-keep': 'spec', id: 'spec' }, h('summary', {}, 'spec'), h('pre', { class: 'card' }, sweep.spec)));
      notes.replaceChildren(notesList(sweep.notes) || '');
      // Controls (rebuilt each time so the colour choices follow the runs).
      const configKeys = Object.keys((sweep.runs[0] || {}).config || {});
      const sel = h('select', { id: 'colour-by', onchange: (e) => { st.colour = e.target.value; draw(); } },
        h('option', { value: '' }, 'run'), sweep.varying.concat(configKeys.filter((k) => !sweep.varying.includes(k))).map((k) => h('option', { value: k }, k)));
      sel.value = st.colour;
      const series = h('select', { id: 'series', onchange: (e) => { st.series = e.target.value; draw(); } },
        ['val', 'train', 'both'].map((k) => h('option', { value: k }, k === 'both' ? 'train (dashed) + validation' : k === 'val' ? 'validation' : 'train')));
      series.value = st.series;
      controls.replaceChildren(
        h('label', {}, 'loss ', series),
        ...lossControls(st, draw),
        h('label', {}, 'colour by ', sel),
        h('button', { type: 'button', onclick: () => { st.hidden.clear(); draw(); } }, 'show all'),
        h('button', { type: 'button', onclick: () => { sweep.runs.forEach((r) => st.hidden.add(r.id)); draw(); } }, 'hide all'),
        h('span', { class: 'muted' }, 'hover for values · click a line to open its run'));
      const byRun = new Map(runsF.map((r) => [r.id, r]));
      const ser = [];
      for (const c of curves.curves) {
        if (st.hidden.has(c.run_id) || !byRun.has(c.run_id)) continue;
        const colour = colours.get(c.run_id);
        const r = byRun.get(c.run_id);
        const label = `run ${c.run_id}${st.colour ? ` (${st.colour}=${cfgVal(r.config[st.colour])})` : ''}`;
        const xs = curveXs(c, st.x);
        if (st.series !== 'train') ser.push({ key: 'val', run: c.run_id, label: `${label} val`, colour, xs, ys: c.val });
        if (st.series !== 'val') ser.push({ key: 'train', run: c.run_id, label: `${label} train`, colour, dash: true, xs, ys: c.train });
      }
      const shown = { ...curves, curves: curves.curves.filter((c) => !st.hidden.has(c.run_id) && byRun.has(c.run_id)) };
      // Decisions sit on their run's curve on any x axis; a rung is an epoch, so its line is
      // drawn on the epoch axis only (on the others each run reaches it at its own x).
      const marks = st.series === 'train' ? [] : decisionMarks(sweep, shown, st.x);
      chartInto(chartSlot, ser, { id: 'sweep', log: st.log, smooth: st.smooth, x: XAXES[st.x], rungs: st.x === 'epoch' ? rungEpochs(sweep) : [], marks, view: st, redraw: draw, onclick: (run) => { location.href = `/runs/${run}`; } });
      decisionsSlot.replaceChildren(...rungsTable(sweep), ...decisionsTable(sweep));
      const thinned = curves.curves.some((c) => c.thinned);
      legend.textContent = `${legendText}${thinned ? ' · long curves thinned to 200 points' : ''}`;

      // Parallel coordinates over the swept keys and the validation loss, a scatter of any
      // config key against any run metric; their brushes select the table's rows.
      const axes = sweep.varying.concat(['best_val_loss']);
      for (const k of Object.keys(st.brush)) if (!axes.includes(k)) delete st.brush[k];
      const brushKey = `${dataVersion}|${st.colour}|${JSON.stringify(st.brush)}|${JSON.stringify(st.rect)}|${st.sx}|${st.sy}`;
      once(pcSlot, brushKey, () => {
        if (sweep.varying.length) sized(pcSlot, (w) => parcoords(w, runsF, axes, colours, st.brush, draw));
        else pcSlot.replaceChildren(h('p', { class: 'muted' }, 'No config key differs between these runs.'));
      });
      const xs = h('select', { id: 'scatter-x', onchange: (e) => { st.sx = e.target.value; st.rect = null; draw(); } },
        sweep.varying.concat(configKeys.filter((k) => !sweep.varying.includes(k))).map((k) => h('option', { value: k }, k)));
      xs.value = st.sx || '';
      const ys = h('select', { id: 'scatter-y', onchange: (e) => { st.sy = e.target.value; st.rect = null; draw(); } },
        Object.entries(METRICS).map(([k, label]) => h('option', { value: k }, label)));
      ys.value = st.sy;
      scControls.replaceChildren(h('label', {}, 'x ', xs), h('label', {}, 'y ', ys));
      once(scSlot, brushKey, () => { if (st.sx) sized(scSlot, (w) => scatter(w, runsF, st.sx, st.sy, colours, st, draw)); });
      const scales = scalesFor(runsF, axes);
      const inRect = rectInside(runsF, st.sx, st.sy, st.rect);
      const brushed = runsF.filter((r) => inBrush(r, st.brush, scales) && inRect(r));
      const nBrushes = Object.keys(st.brush).length + (st.rect ? 1 : 0);
      const picked = [...st.pick].sort((a, b) => a - b);
      brushNote.replaceChildren(
        h('span', { id: 'selection-count' }, nBrushes ? `${brushed.length} of ${runsF.length} runs selected by ${nBrushes} brush${nBrushes > 1 ? 'es' : ''}` : `${runsF.length} runs`),
        nBrushes ? h('button', { type: 'button', id: 'clear-brushes', onclick: () => { st.brush = {}; st.rect = null; draw(); } }, 'clear brushes') : '',
        picked.length ? h('a', { id: 'compare-link', class: 'button', href: `/compare?runs=${picked.join(',')}` }, `compare ${picked.length} selected`)
          : h('span', { class: 'muted' }, 'tick runs to compare them'));
      const cols = [
        { key: 'show', label: '', cell: (r) => h('input', { type: 'checkbox', class: 'show', title: 'show on the chart', 'aria-label': `show run ${r.id} on the chart`, checked: !st.hidden.has(r.id), onchange: (e) => { if (e.target.checked) st.hidden.delete(r.id); else st.hidden.add(r.id); draw(); } }) },
        { key: 'pick', label: 'Compare', cell: (r) => h('input', { type: 'checkbox', class: 'pick', title: 'select to compare', 'aria-label': `select run ${r.id} to compare`, checked: st.pick.has(r.id), onchange: (e) => { if (e.target.checked) st.pick.add(r.id); else st.pick.delete(r.id); draw(); } }) },
        { key: 'id', label: 'Run', num: true, get: (r) => r.id, cell: (r) => [h('span', { class: 'swatch', style: `background:${colours.get(r.id)}` }), h('a', { href: `/runs/${r.id}` }, `#${r.id}`), ...tagChips(r.tags)] },
        { key: 'state', label: 'State', get: (r) => r.state, cell: (r) => stateBadge(r.state) },
        { key: 'epochs', label: 'Epochs', num: true, get: (r) => r.epochs_done, cell: (r) => `${r.epochs_done}/${r.epochs_total}` },
        { key: 'best_val_loss', label: 'Best val', num: true, get: (r) => r.best_val_loss, cell: (r) => loss(r.best_val_loss) },
        { key: 'best_epoch', label: 'at epoch', num: true, get: (r) => r.best_epoch, cell: (r) => r.best_epoch ?? '—' },
        { key: 'last_train_loss', label: 'Last train', num: true, get: (r) => r.last_train_loss, cell: (r) => loss(r.last_train_loss) },
        { key: 'last_val_loss', label: 'Last val', num: true, get: (r) => r.last_val_loss, cell: (r) => loss(r.last_val_loss) },
        ...sweep.varying.map((k) => ({ key: `cfg.${k}`, label: k, num: true, get: (r) => r.config[k], cell: (r) => cfgVal(r.config[k]) })),
        { key: 'config', label: 'Config', cell: (r) => { const t = kv(Object.fromEntries(Object.entries(r.config).filter(([k]) => !sweep.varying.includes(k) && k !== 'dataset'))); return h('span', { class: 'kv clip', title: t }, t); } },
      ];
      once(tableSlot, `${brushKey}|${st.sort.key}:${st.sort.dir}|${[...st.hidden]}|${picked}`,
        () => tableSlot.replaceChildren(table(cols, brushed, st.sort, { rerender: draw, id: 'runs', rowAttrs: (r) => ({ 'data-run': r.id }) })));
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
      dataVersion += 1;
      if (st.filter.trim()) await runFilter();
      document.title = `Sweep ${sw.name} · poet`;
      main.querySelector('h1').textContent = `Sweep #${sw.id}: ${sw.name}`;
      draw();
    });
  }
  // The EMA smoothing slider (0 = off), shared by the loss charts.
  function smoothing(st, draw) {
    const out = h('output', { for: 'smooth' }, st.smooth ? st.smooth.toFixed(2) : 'off');
    return h('label', {}, 'smoothing ', h('input', {
      type: 'range', id: 'smooth', min: 0, max: 0.99, step: 0.01, value: st.smooth,
      oninput: (e) => { out.textContent = Number(e.target.value) ? Number(e.target.value).toFixed(2) : 'off'; },
      onchange: (e) => { st.smooth = Number(e.target.value); draw(); },
    }), ' ', out);
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

  // The loss chart's controls of a run or compare page: x axis, log scale, smoothing.
  function lossControls(st, draw, extra) {
    const xsel = h('select', { id: 'x-axis', onchange: (e) => { st.x = e.target.value; st.zoom = null; Object.values(st.mz || {}).forEach((z) => { z.zoom = null; }); draw(); } },
      Object.entries(XAXES).map(([k, a]) => h('option', { value: k }, a.label)));
    xsel.value = st.x;
    return [h('label', {}, 'x axis ', xsel),
      h('label', {}, h('input', { type: 'checkbox', id: 'log-scale', checked: st.log, onchange: (e) => { st.log = e.target.checked; st.zoom = null; draw(); } }), ' log scale'),
      smoothing(st, draw), extra || '',
      h('span', { class: 'muted' }, 'drag to zoom · double-click to reset')];
  }
  // Per-epoch measurements as small charts: throughput, epoch time, then every numeric key of
  // the epochs' metrics (learning rate, grad norm, ...).
  function metricCharts(slot, run, ep, st, draw) {
    const xs = xValues(ep, run, st.x);
    const series = [['chars_per_sec', 'chars/s', ep.map((e) => e.chars_per_sec)], ['duration_s', 'seconds per epoch', ep.map((e) => e.duration_s)]];
    const keys = [];
    for (const e of ep) for (const [k, x] of Object.entries(e.metrics || {})) if (typeof x === 'number' && !keys.includes(k)) keys.push(k);
    for (const k of keys) series.push([`metrics.${k}`, k, ep.map((e) => { const x = (e.metrics || {})[k]; return typeof x === 'number' ? x : NaN; })]);
    st.mz = st.mz || {};
    const boxes = series.map(([key, label, ys]) => {
      const box = h('div', { class: 'mini' }, h('h3', {}, label));
      const plot = h('div');
      box.append(plot);
      return [box, plot, key, label, ys];
    });
    slot.replaceChildren(...boxes.map((b) => b[0]));
    for (const [, plot, key, label, ys] of boxes) {
      const view = (st.mz[key] = st.mz[key] || { zoom: null });
      chartInto(plot, [{ key, run: run.id, label, colour: 'var(--accent)', xs, ys }], {
        id: `metric-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`, metric: key, cls: 'mchart', height: 180, x: XAXES[st.x], yLabel: label,
        yFmt: (y) => (Number.isFinite(y) ? short(y).toLocaleString('en-US') : '—'), yTick: si, smooth: st.smooth, view, redraw: draw, empty: 'not reported',
      });
    }
  }

  function runPage(id) {
    const st = { log: params.get('scale') === 'log', x: XAXES[params.get('x')] ? params.get('x') : 'epoch', smooth: Number(params.get('smooth')) || 0, zoom: null, mz: {} };
    let d = null;
    const v = view();
    const top = h('div'), controls = h('div', { class: 'controls' }), lossSlot = h('div', { id: 'loss' }), metricsSlot = h('div', { class: 'minis', id: 'metrics' }), rest = h('div');
    v.append(top, h('h2', {}, 'Loss'), controls, lossSlot, h('h2', {}, 'Per-epoch metrics'), metricsSlot, rest);
    const draw = () => {
      setParams({ scale: st.log ? 'log' : null, x: st.x === 'epoch' ? null : st.x, smooth: st.smooth || null });
      const r = d.run;
      const ep = d.epochs;
      const xs = xValues(ep, r, st.x);
      top.replaceChildren(
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
          Array.isArray(r.tags) && r.tags.length ? h('div', { id: 'tags' }, h('span', {}, 'tags'), tagChips(r.tags)) : null,
          r.error ? h('div', { class: 'error' }, h('span', {}, 'error'), r.error) : null),
        notesList(r.notes || d.notes) || '');
      controls.replaceChildren(...lossControls(st, draw, h('span', { class: 'muted' }, 'solid: validation · dashed: train')));
      chartInto(lossSlot, [
        { key: 'val', run: r.id, label: 'validation', colour: 'var(--accent)', xs, ys: ep.map((e) => e.val_loss) },
        { key: 'train', run: r.id, label: 'train', colour: 'var(--cancelled)', dash: true, xs, ys: ep.map((e) => e.train_loss) },
      ], { id: 'run', log: st.log, smooth: st.smooth, x: XAXES[st.x], view: st, redraw: draw });
      metricCharts(metricsSlot, r, ep, st, draw);
      rest.replaceChildren(
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

  // /compare?runs=1,2,3: the runs' config diff (the keys whose values differ, highlighted),
  // their loss curves on one chart, and each run's best checkpoint.
  function comparePage() {
    const ids = [...new Set(idList(params.get('runs')))];
    const st = { log: params.get('scale') === 'log', x: XAXES[params.get('x')] ? params.get('x') : 'epoch', smooth: Number(params.get('smooth')) || 0, series: params.get('series') || 'val', all: params.get('keys') === 'all', zoom: null };
    const v = view();
    if (!ids.length) {
      v.replaceChildren(h('p', { class: 'error', id: 'compare-error' }, 'No runs to compare: tick runs in a sweep\'s run table, or open /compare?runs=1,2,3.'));
      return;
    }
    main.querySelector('h1').textContent = `Compare runs ${ids.map((i) => `#${i}`).join(', ')}`;
    const err = h('div'), head = h('div'), diffSlot = h('div'), controls = h('div', { class: 'controls' }), chartSlot = h('div', { id: 'loss' }), best = h('div');
    v.append(err, head, h('h2', {}, 'Config'), diffSlot, h('h2', {}, 'Loss curves'), controls, chartSlot, h('h2', {}, 'Best checkpoints'), best);
    let docs = [];
    const draw = () => {
      setParams({ scale: st.log ? 'log' : null, x: st.x === 'epoch' ? null : st.x, smooth: st.smooth || null, series: st.series === 'val' ? null : st.series, keys: st.all ? 'all' : null });
      err.replaceChildren();
      const runs = docs.map((d) => d.run);
      const colour = new Map(runs.map((r, i) => [r.id, runColour(i)]));
      const runHead = (r) => h('th', { scope: 'col', 'data-run': r.id }, h('span', { class: 'swatch', style: `background:${colour.get(r.id)}` }), h('a', { href: `/runs/${r.id}` }, `run #${r.id}`));
      head.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'compare-runs' },
        h('thead', {}, h('tr', {}, h('th', {}, ''), runs.map(runHead))),
        h('tbody', {}, [
          ['sweep', (r) => h('a', { href: `/sweeps/${r.sweep_id}` }, `#${r.sweep_id}`)], ['state', (r) => stateBadge(r.state)],
          ['epochs', (r) => `${r.epochs_done}/${r.epochs_total}`], ['best val loss', (r) => loss(r.best_val_loss)],
          runs.some((r) => Array.isArray(r.tags) && r.tags.length) ? ['tags', (r) => tagChips(r.tags)] : null,
        ].filter(Boolean).map(([k, f]) => h('tr', {}, h('th', { scope: 'row' }, k), runs.map((r) => h('td', {}, f(r)))))))));
      const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
      const differs = new Set(keys.filter((k) => new Set(runs.map((r) => JSON.stringify((r.config || {})[k] ?? null))).size > 1));
      const shownKeys = keys.filter((k) => st.all || differs.has(k));
      diffSlot.replaceChildren(
        h('div', { class: 'controls' }, h('label', {}, h('input', { type: 'checkbox', id: 'all-keys', checked: st.all, onchange: (e) => { st.all = e.target.checked; draw(); } }), ' show the keys that are the same too'),
          h('span', { class: 'muted', id: 'diff-count' }, runs.length < 2 ? 'one run: nothing to compare it with' : differs.size ? `${differs.size} of ${keys.length} keys differ` : 'the configs are identical')),
        h('div', { class: 'table-wrap' }, h('table', { id: 'config-diff' },
          h('thead', {}, h('tr', {}, h('th', {}, 'key'), runs.map(runHead))),
          h('tbody', {}, shownKeys.map((k) => h('tr', { class: differs.has(k) ? 'differs' : null, 'data-key': k },
            h('th', { scope: 'row' }, k), runs.map((r) => h('td', { class: differs.has(k) ? 'diff' : null }, h('code', {}, cfgVal((r.config || {})[k]))))))))));
      const series = h('select', { id: 'series', onchange: (e) => { st.series = e.target.value; draw(); } },
        ['val', 'train', 'both'].map((k) => h('option', { value: k }, k === 'both' ? 'train (dashed) + validation' : k === 'val' ? 'validation' : 'train')));
      series.value = st.series;
      controls.replaceChildren(h('label', {}, 'loss ', series), ...lossControls(st, draw));
      const ser = [];
      for (const d of docs) {
        const r = d.run, xs = xValues(d.epochs, r, st.x);
        if (st.series !== 'train') ser.push({ key: 'val', run: r.id, label: `run ${r.id} val`, colour: colour.get(r.id), xs, ys: d.epochs.map((e) => e.val_loss) });
        if (st.series !== 'val') ser.push({ key: 'train', run: r.id, label: `run ${r.id} train`, colour: colour.get(r.id), dash: true, xs, ys: d.epochs.map((e) => e.train_loss) });
      }
      chartInto(chartSlot, ser, { id: 'compare', log: st.log, smooth: st.smooth, x: XAXES[st.x], view: st, redraw: draw, onclick: (run) => { location.href = `/runs/${run}`; } });
      best.replaceChildren(table([
        { key: 'run', label: 'Run', cell: (d) => [h('span', { class: 'swatch', style: `background:${colour.get(d.run.id)}` }), h('a', { href: `/runs/${d.run.id}` }, `#${d.run.id}`)] },
        { key: 'epoch', label: 'Best epoch', num: true, cell: (d) => { const c = d.checkpoints.find((x) => x.best); return c ? c.epoch : d.run.best_epoch ?? '—'; } },
        { key: 'val', label: 'Val loss', num: true, cell: (d) => { const c = d.checkpoints.find((x) => x.best); return loss(c ? c.val_loss : d.run.best_val_loss); } },
        { key: 'ckpt', label: 'Checkpoint', cell: (d) => { const c = d.checkpoints.find((x) => x.best); return c ? [h('code', { title: c.sha256 }, c.sha256.slice(0, 12)), ` · ${bytes(c.size)} · ${when(c.created_at)}`] : h('span', { class: 'muted' }, 'none kept yet'); } },
      ], docs, null, { id: 'best-checkpoints', rowAttrs: (d) => ({ 'data-run': d.run.id }) }));
    };
    live(ids.map((i) => `/api/v1/runs/${i}`), (...ds) => { docs = ds; draw(); },
      (e) => { err.replaceChildren(h('p', { class: 'error', id: 'compare-error' }, `cannot compare: ${e.message}`)); });
  }

  // /runs: every run of every sweep, a page at a time, filtered, ordered and paged by the
  // server (`GET /api/v1/runs`: the `--filter` language, `order_by`, keyset page tokens), with
  // the loss curves of the page's runs (from their sweeps' curves documents). The whole view is
  // in the address: filter, order, the page tokens that led to this page, page size, colour,
  // hidden runs, chart settings and the runs ticked for comparison.
  // The run table's sortable columns and the `order_by` field each one asks the server for.
  const ORDER_BY = { id: 'id', state: 'state', epochs: 'epochs_done', best_val_loss: 'best_val_loss', last_train_loss: 'last_train_loss', last_val_loss: 'last_val_loss', duration: 'duration_s', created: 'created_at' };
  const orderBy = (sort) => `${sort.key.startsWith('cfg.') ? `config.${sort.key.slice(4)}` : ORDER_BY[sort.key] || 'id'}:${sort.dir}`;
  function runsPage() {
    const st = {
      filter: params.get('filter') || '',
      sort: parseSort(params.get('sort'), { key: 'id', dir: 'desc' }),
      // Page tokens are URL-safe base64: a comma never occurs in one.
      pages: (params.get('pages') || '').split(',').filter((t) => /^[A-Za-z0-9_-]+$/.test(t)),
      size: Math.max(1, Math.min(1000, Math.floor(Number(params.get('size'))) || 50)),
      colour: params.get('colour') || '',
      hidden: new Set(idList(params.get('hidden'))),
      pick: new Set(idList(params.get('pick'))),
      series: params.get('series') || 'val',
      log: params.get('scale') === 'log', x: XAXES[params.get('x')] ? params.get('x') : 'epoch', smooth: Number(params.get('smooth')) || 0,
      zoom: null, refocus: null,
    };
    const ids = (set) => [...set].sort((a, b) => a - b).join(',');
    const syncUrl = () => setParams({
      filter: st.filter.trim() ? st.filter : null, sort: `${st.sort.key}:${st.sort.dir}`, pages: st.pages.join(','), size: st.size === 50 ? null : st.size,
      colour: st.colour, hidden: ids(st.hidden), pick: ids(st.pick), series: st.series === 'val' ? null : st.series,
      scale: st.log ? 'log' : null, x: st.x === 'epoch' ? null : st.x, smooth: st.smooth || null,
    });
    const url = () => `/api/v1/runs?${new URLSearchParams({ filter: st.filter, order_by: orderBy(st.sort), page_size: String(st.size), page_token: st.pages[st.pages.length - 1] || '' })}`;
    let listing = null;
    // Curves by sweep: {key: the progress of the page's runs of that sweep, doc}.
    const curvesOf = new Map();
    const fbox = filterBox(st.filter, '', (text) => {
      if (text === st.filter) return;
      st.filter = text;
      st.pages = [];
      refresh();
    });
    const v = view();
    const controls = h('div', { class: 'controls' }), chartSlot = h('div', { id: 'loss' }), legend = h('div', { class: 'legend' });
    const pager = h('div', { class: 'controls', id: 'pager' }), selection = h('div', { class: 'controls', id: 'selection' }), tableSlot = h('div');
    v.append(fbox.el, h('h2', {}, 'Loss curves of this page\'s runs'), controls, chartSlot, legend, h('h2', {}, 'Runs'), pager, selection, tableSlot);

    async function loadCurves(runs) {
      const bySweep = new Map();
      for (const r of runs) if (r.epochs_done > 0) bySweep.set(r.sweep_id, (bySweep.get(r.sweep_id) || []).concat([r]));
      await Promise.all([...bySweep].map(async ([sid, rs]) => {
        const key = rs.map((r) => `${r.id}:${r.attempt}:${r.epochs_done}:${r.last_val_loss}`).join(',');
        const have = curvesOf.get(sid);
        if (have && have.key === key) return;
        curvesOf.set(sid, { key, doc: JSON.parse(await fetchText(`/api/v1/sweeps/${sid}/curves`)) });
      }));
    }
    // Colour by run, by sweep, by state, or by a config key.
    const colourRuns = (runs) => (st.colour === 'sweep' || st.colour === 'state'
      ? runs.map((r) => ({ id: r.id, config: { [st.colour]: st.colour === 'sweep' ? `#${r.sweep_id}` : r.state } })) : runs);

    const draw = () => {
      if (!listing) return;
      syncUrl();
      const runs = listing.runs;
      const configKeys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
      if (st.colour && st.colour !== 'sweep' && st.colour !== 'state' && !configKeys.includes(st.colour)) st.colour = '';
      const [colours, legendText] = colourBy(colourRuns(runs), st.colour);
      const sel = h('select', { id: 'colour-by', onchange: (e) => { st.colour = e.target.value; draw(); } },
        h('option', { value: '' }, 'run'), h('option', { value: 'sweep' }, 'sweep'), h('option', { value: 'state' }, 'state'),
        configKeys.filter((k) => k !== 'sweep' && k !== 'state').map((k) => h('option', { value: k }, k)));
      sel.value = st.colour;
      const series = h('select', { id: 'series', onchange: (e) => { st.series = e.target.value; draw(); } },
        ['val', 'train', 'both'].map((k) => h('option', { value: k }, k === 'both' ? 'train (dashed) + validation' : k === 'val' ? 'validation' : 'train')));
      series.value = st.series;
      controls.replaceChildren(h('label', {}, 'loss ', series), ...lossControls(st, draw), h('label', {}, 'colour by ', sel),
        h('button', { type: 'button', onclick: () => { st.hidden.clear(); draw(); } }, 'show all'),
        h('button', { type: 'button', onclick: () => { runs.forEach((r) => st.hidden.add(r.id)); draw(); } }, 'hide all'));
      const curve = new Map();
      for (const { doc } of curvesOf.values()) for (const c of doc.curves) curve.set(c.run_id, c);
      const ser = [];
      for (const r of runs) {
        const c = curve.get(r.id);
        if (!c || st.hidden.has(r.id)) continue;
        const xs = curveXs(c, st.x), colour = colours.get(r.id), label = `run ${r.id} (sweep #${r.sweep_id})`;
        if (st.series !== 'train') ser.push({ key: 'val', run: r.id, label: `${label} val`, colour, xs, ys: c.val });
        if (st.series !== 'val') ser.push({ key: 'train', run: r.id, label: `${label} train`, colour, dash: true, xs, ys: c.train });
      }
      chartInto(chartSlot, ser, { id: 'runs', log: st.log, smooth: st.smooth, x: XAXES[st.x], view: st, redraw: draw, onclick: (run) => { location.href = `/runs/${run}`; } });
      legend.textContent = legendText;
      const first = st.pages.length * st.size;
      pager.replaceChildren(
        h('button', { type: 'button', id: 'prev-page', disabled: !st.pages.length, onclick: () => { st.pages.pop(); refresh(); } }, '← previous'),
        h('span', { id: 'page-info' }, runs.length ? `page ${st.pages.length + 1} · runs ${first + 1}–${first + runs.length}` : `page ${st.pages.length + 1} · no runs`),
        h('button', { type: 'button', id: 'next-page', disabled: !listing.next_page_token, onclick: () => { st.pages.push(listing.next_page_token); refresh(); } }, 'next →'),
        h('span', { class: 'muted' }, 'ordered and paged by the server; click a header to order by it'));
      const picked = [...st.pick].sort((a, b) => a - b);
      selection.replaceChildren(...(picked.length
        ? [h('a', { id: 'compare-link', class: 'button', href: `/compare?runs=${picked.join(',')}` }, `compare ${picked.length} selected`),
          h('button', { type: 'button', id: 'clear-picks', onclick: () => { st.pick.clear(); draw(); } }, 'clear the selection')]
        : [h('span', { class: 'muted' }, 'tick runs (of any sweep, on any page) to compare them')]));
      // The config keys whose values differ on this page get a column each (orderable).
      const varying = configKeys.filter((k) => new Set(runs.map((r) => JSON.stringify((r.config || {})[k] ?? null))).size > 1);
      const cols = [
        { key: 'show', label: '', cell: (r) => h('input', { type: 'checkbox', class: 'show', title: 'show on the chart', 'aria-label': `show run ${r.id} on the chart`, checked: !st.hidden.has(r.id), onchange: (e) => { if (e.target.checked) st.hidden.delete(r.id); else st.hidden.add(r.id); draw(); } }) },
        { key: 'pick', label: 'Compare', cell: (r) => h('input', { type: 'checkbox', class: 'pick', title: 'select to compare', 'aria-label': `select run ${r.id} to compare`, checked: st.pick.has(r.id), onchange: (e) => { if (e.target.checked) st.pick.add(r.id); else st.pick.delete(r.id); draw(); } }) },
        { key: 'id', label: 'Run', num: true, get: (r) => r.id, cell: (r) => [h('span', { class: 'swatch', style: `background:${colours.get(r.id)}` }), h('a', { href: `/runs/${r.id}` }, `#${r.id}`), ...tagChips(r.tags)] },
        { key: 'sweep', label: 'Sweep', num: true, cell: (r) => h('a', { href: `/sweeps/${r.sweep_id}` }, `#${r.sweep_id}`) },
        { key: 'state', label: 'State', get: (r) => r.state, cell: (r) => stateBadge(r.state) },
        { key: 'epochs', label: 'Epochs', num: true, get: (r) => r.epochs_done, cell: (r) => `${r.epochs_done}/${r.epochs_total}` },
        { key: 'best_val_loss', label: 'Best val', num: true, get: (r) => r.best_val_loss, cell: (r) => loss(r.best_val_loss) },
        { key: 'last_train_loss', label: 'Last train', num: true, get: (r) => r.last_train_loss, cell: (r) => loss(r.last_train_loss) },
        { key: 'last_val_loss', label: 'Last val', num: true, get: (r) => r.last_val_loss, cell: (r) => loss(r.last_val_loss) },
        { key: 'duration', label: 'Training', num: true, get: (r) => r.duration_s, cell: (r) => (r.duration_s == null ? '—' : dur(r.duration_s)) },
        ...varying.map((k) => ({ key: `cfg.${k}`, label: k, num: true, get: (r) => (r.config || {})[k], cell: (r) => cfgVal((r.config || {})[k]) })),
        { key: 'created', label: 'Created', get: (r) => r.created_at, cell: (r) => when(r.created_at) },
        { key: 'config', label: 'Config', cell: (r) => { const t = kv(Object.fromEntries(Object.entries(r.config || {}).filter(([k]) => !varying.includes(k) && k !== 'dataset'))); return h('span', { class: 'kv clip', title: t }, t); } },
      ];
      // A header click orders on the server: back to the first page, fetched again; the focus
      // goes back to the header once the new page is drawn.
      const reorder = () => {
        const th = document.activeElement && document.activeElement.closest && document.activeElement.closest('#runs th');
        st.refocus = th ? th.dataset.key : null;
        st.pages = [];
        refresh();
      };
      tableSlot.replaceChildren(runs.length ? table(cols, runs, st.sort, { rerender: reorder, sorted: true, id: 'runs', rowAttrs: (r) => ({ 'data-run': r.id }) })
        : h('p', { class: 'muted', id: 'no-runs' }, st.filter.trim() ? 'No run matches the filter.' : 'No runs yet. Submit a sweep with `poet sweep submit`.'));
      if (st.refocus) {
        const b = document.querySelector(`#runs th[data-key="${CSS.escape(st.refocus)}"] button`);
        if (b) b.focus();
        st.refocus = null;
      }
    };
    const kick = live(() => [url()], async (page) => {
      listing = page;
      fbox.error(null);
      fbox.count.textContent = st.filter.trim() ? `${page.runs.length}${page.next_page_token ? '+' : ''} runs match on this page` : '';
      await loadCurves(page.runs);
      draw();
    }, (e) => {
      // A bad filter (or order) keeps the last good page on screen, the error under the box.
      if (/^(filter|order_by|page_token)/.test(e.message)) fbox.error(e.message, st.filter);
    });
    const refresh = () => { syncUrl(); kick(); };
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

  // A worker's `--label key=value` pairs, sorted, as one line.
  const labelText = (m) => Object.entries(m || {}).sort().map(([k, v]) => `${k}=${v}`).join(', ');

  function workersPage() {
    const sort = { key: 'seen', dir: 'asc' };
    let data = [];
    const draw = () => view().replaceChildren(data.length ? table([
      { key: 'id', label: 'Worker', num: true, get: (w) => w.id, cell: (w) => `#${w.id}` },
      { key: 'host', label: 'Host', get: (w) => w.host, cell: (w) => w.host },
      { key: 'device', label: 'Device', get: (w) => w.device, cell: (w) => w.device },
      { key: 'gpu', label: 'GPU', get: (w) => w.gpu_name, cell: (w) => (w.gpu_name ? `${w.gpu_name} (${bytes(w.gpu_memory_bytes)})` : '—') },
      { key: 'mem', label: 'Host memory', num: true, get: (w) => w.memory_bytes, cell: (w) => (w.memory_bytes > 0 ? bytes(w.memory_bytes) : '—') },
      { key: 'threads', label: 'Threads', num: true, get: (w) => w.cpu_threads, cell: (w) => (w.cpu_threads > 0 ? String(w.cpu_threads) : '—') },
      { key: 'labels', label: 'Labels', get: (w) => labelText(w.labels), cell: (w) => labelText(w.labels) || '—' },
      { key: 'rate', label: 'Chars/s (last epoch)', num: true, get: (w) => w.chars_per_sec, cell: (w) => (w.chars_per_sec == null ? '—' : Math.round(w.chars_per_sec).toLocaleString('en')) },
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

  const pages = { sweeps: sweepsPage, sweep: () => sweepPage(pageId), runs: runsPage, run: () => runPage(pageId), compare: comparePage, workers: workersPage, datasets: datasetsPage };
  if (pages[page]) pages[page]();
})();
