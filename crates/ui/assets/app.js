/* kappa dashboard: vanilla JS, no framework, no build step, no network beyond this server.
 *
 * Sections: state · api · dom helpers · formatting · charts · components · pages (login,
 * overview, sweep, trial) · live updates · router · boot.
 *
 * Safety: every piece of data reaches the DOM through textContent / setAttribute / dataset (the
 * `el` helper); nothing is ever parsed as HTML. Links are built from fixed prefixes and
 * encodeURIComponent, so no data can become a javascript: URL.
 */
'use strict';
(function () {
  // ───────────────────────────── state ─────────────────────────────

  const PAGE_SIZE = 50;
  const MAX_CURVES = 50; // the server's limit for /curves?ids=
  const REPORT_EVERY_MS = 5000; // the report is re-fetched at most this often
  const TRIAL_EVERY_MS = 2000; // a running trial's detail page, at most this often
  const STATUSES = ['pending', 'running', 'succeeded', 'failed', 'diverged', 'stopped'];
  const CLASS_ROWS = 40; // classes shown in the plateau table before "show all"

  const state = {
    session: null, // GET /api/session
    overview: null, // latest Overview, from GET /api/sweeps or the event stream
    gen: 0, // bumped on every navigation: results that arrive for an older page are dropped
    page: null, // current page: {name, onProgress(overview)}
    events: null, // the EventSource
    updates: 0, // progress messages handled (test hook body[data-updates])
    sweeps: new Map(), // per sweep: trial-table filters, paging, checked curves (kept across pages)
  };

  const $ = (id) => document.getElementById(id);
  const arr = (x) => (Array.isArray(x) ? x : []);
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
  const enc = encodeURIComponent;

  // ───────────────────────────── api ─────────────────────────────

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const AUTH_PATHS = ['/api/session', '/api/login', '/api/logout'];

  /** fetch + JSON; non-2xx becomes an ApiError carrying the server's {"error"} text. */
  async function api(path, opts = {}) {
    const init = { method: opts.method || 'GET', credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (opts.json !== undefined) {
      init.method = opts.method || 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.json);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `cannot reach the server (${e && e.message ? e.message : e})`);
    }
    if (res.status === 401 && !AUTH_PATHS.includes(path)) {
      needLogin();
      throw new ApiError(401, 'log in to see this');
    }
    if (!res.ok) {
      let msg = '';
      try {
        const body = await res.json();
        msg = body && typeof body.error === 'string' ? body.error : '';
      } catch (_) {
        /* not JSON */
      }
      throw new ApiError(res.status, msg || `${res.status} ${res.statusText}`);
    }
    const text = res.status === 204 ? '' : await res.text();
    return text ? JSON.parse(text) : null;
  }

  const sweepApi = (name) => `/api/sweeps/${enc(name)}`;
  const sweepHref = (name) => `#/sweep/${enc(name)}`;
  const trialHref = (name, id) => `${sweepHref(name)}/trial/${enc(id)}`;

  /** Shows a failed request's message (unless it belongs to a page already left, or is a 401). */
  function report(e, gen) {
    if (e && e.status === 401) return;
    if (gen !== undefined && gen !== state.gen) return;
    showError(e && e.message ? e.message : String(e));
  }

  /** Runs `fn` once at a time; a call while it runs queues exactly one more run. */
  function coalesced(fn, gen) {
    let busy = false;
    let again = false;
    const run = async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        await fn();
      } catch (e) {
        report(e, gen);
      } finally {
        busy = false;
        if (again) {
          again = false;
          run();
        }
      }
    };
    return run;
  }

  /** Calls `fn` at most once per `ms`: at once if it may, else once at the end of the wait. */
  function throttled(fn, ms) {
    let last = 0;
    let timer = null;
    return () => {
      if (timer) return;
      const wait = last + ms - Date.now();
      if (wait <= 0) {
        last = Date.now();
        fn();
      } else {
        timer = setTimeout(() => {
          timer = null;
          last = Date.now();
          fn();
        }, wait);
      }
    };
  }

  // ───────────────────────────── dom helpers ─────────────────────────────

  const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'colSpan', 'rowSpan']);

  /** el('a', {href, class, dataset: {..}, on: {click: fn}}, 'text', node, [more]): strings become
   * text nodes, null / false children are skipped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
        else if (PROPS.has(k)) node[k] = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const clear = (node) => (node.replaceChildren(), node);
  const fill = (node, ...children) => append(clear(node), children);

  /** A table: headers (strings or nodes) and rows (tr nodes). */
  function table(attrs, headers, rows) {
    return el('table', Object.assign({ class: 'data' }, attrs),
      el('thead', null, el('tr', null, headers.map((h) => (h instanceof Node ? h : el('th', null, h))))),
      el('tbody', null, rows));
  }

  /** A numeric cell (right-aligned, tabular digits). */
  const num = (text, attrs) => el('td', Object.assign({ class: 'num' }, attrs), text);
  const section = (title, ...body) => el('section', { class: 'card' }, el('h2', null, title), body);

  function showError(msg) {
    $('error-text').textContent = msg;
    $('error').hidden = false;
  }
  function hideError() {
    $('error').hidden = true;
    $('error-text').textContent = '';
  }

  function crumbs(...items) {
    const parts = [];
    items.forEach((it, i) => {
      if (i) parts.push(el('span', { class: 'sep' }, '/'));
      parts.push(it.href ? el('a', { href: it.href }, it.text) : el('span', null, it.text));
    });
    fill($('crumbs'), parts);
  }

  function storageGet(k) {
    try {
      return window.localStorage.getItem(k);
    } catch (_) {
      return null;
    }
  }
  function storageSet(k, v) {
    try {
      window.localStorage.setItem(k, v);
    } catch (_) {
      /* private mode: the choice lasts this page only */
    }
  }

  // ───────────────────────────── formatting ─────────────────────────────

  const trimZeros = (s) => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);

  /** 4 significant digits: 0.001414, 1.2e-5, 1,234, 12,346. */
  function fmtNum(x) {
    if (x === null || x === undefined) return '–';
    if (typeof x !== 'number') return String(x);
    if (Number.isNaN(x)) return 'NaN';
    if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
    if (x === 0) return '0';
    const a = Math.abs(x);
    if (Number.isInteger(x) && a < 1e9) return x.toLocaleString('en-US');
    if (a >= 1e-3 && a < 1e4) return trimZeros(x.toPrecision(4));
    if (a >= 1e4 && a < 1e9) return Math.round(x).toLocaleString('en-US');
    const [m, e] = x.toExponential(3).split('e');
    return `${trimZeros(m)}e${e.replace('+', '')}`;
  }
  /** Axis ticks: shorter still (160k, 2.5M, 0.001). */
  function fmtAxis(x) {
    if (!isNum(x)) return '';
    const a = Math.abs(x);
    if (a >= 1e3 && a < 1e12) {
      const [d, u] = a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : [1e3, 'k'];
      return `${trimZeros((x / d).toPrecision(3))}${u}`;
    }
    return fmtNum(x);
  }
  const fmtInt = (n) => (isNum(n) ? n.toLocaleString('en-US') : '–');
  const fmtFixed = (x, d) => (isNum(x) ? x.toFixed(d) : '–');
  const fmtPct = (x, d = 1) => (isNum(x) ? `${(x * 100).toFixed(d)}%` : '–');
  const fmtEst = (e) => (e && isNum(e.mean) ? `${fmtNum(e.mean)} ± ${fmtNum(e.se)}` : '–');
  const fmtCi = (ci, f = fmtNum) => (Array.isArray(ci) && ci.length === 2 ? `${f(ci[0])} – ${f(ci[1])}` : '–');
  const fmtParam = (v) => (typeof v === 'number' ? fmtNum(v) : typeof v === 'string' ? v : v === null || v === undefined ? '–' : JSON.stringify(v));
  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtDuration(s) {
    if (!isNum(s)) return '–';
    if (s === 0) return '0 s';
    if (s < 0.01) return `${(s * 1000).toFixed(1)} ms`;
    if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(Math.floor(s % 60))}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  const fmtAgo = (s) => (!isNum(s) ? '–' : s < 60 ? `${s.toFixed(1)} s ago` : `${fmtDuration(s)} ago`);
  const fmtRate = (r) => (isNum(r) ? `${fmtNum(r)}/s` : '–');

  function fmtTime(unix) {
    if (!isNum(unix)) return '–';
    const d = new Date(unix * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
      `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  const verdictText = (v) => (v === 'holds' || v === 'holds-late' || v === 'fails' ? v : 'undecided');
  const verdictClass = (v) => ({ holds: 'holds', 'holds-late': 'late', fails: 'fails' })[v] || 'open';
  const verdictCell = (v, attrs) => el('td', Object.assign({ class: `verdict ${verdictClass(v)}` }, attrs), verdictText(v));

  function sweepState(sp) {
    if (sp.cancelled) return 'cancelled';
    if (sp.finished) return 'finished';
    return 'running';
  }

  /** A short label of a parameter set: the keys in `keys` (all but the seed when absent). */
  function paramsLabel(p, keys) {
    if (!p || typeof p !== 'object') return '';
    const ks = keys || Object.keys(p).filter((k) => k !== 'seed');
    return ks.filter((k) => k in p).map((k) => (k === 'optimizer' ? String(p[k]) : `${k === 'batch_size' ? 'B' : k}=${fmtParam(p[k])}`)).join(' ');
  }

  /** The parameter keys whose values differ between the given parameter sets (seed left out). */
  function varyingKeys(list) {
    const keys = [];
    const all = new Set();
    list.forEach((p) => Object.keys(p || {}).forEach((k) => all.add(k)));
    for (const k of all) {
      if (k === 'seed') continue;
      const vals = new Set(list.map((p) => JSON.stringify(p ? p[k] : null)));
      if (vals.size > 1) keys.push(k);
    }
    return keys.length ? keys : ['optimizer', 'batch_size', 'lr'];
  }

  // ───────────────────────────── charts (uPlot) ─────────────────────────────

  const charts = new Map(); // key → {container, spec, plot}

  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  /** Aligns [[x, y], ...] series on one sorted x array (log axes: x > 0; y > 0 on log scales). */
  function align(series) {
    const xsSet = new Set();
    const maps = series.map((s) => {
      const m = new Map();
      for (const p of arr(s.points)) {
        const x = p && p[0];
        const y = p && p[1];
        if (!isNum(x) || !isNum(y) || x <= 0 || (s.scale !== 'y2' && y <= 0)) continue;
        m.set(x, y);
        xsSet.add(x);
      }
      return m;
    });
    const xs = [...xsSet].sort((a, b) => a - b);
    return { xs, ys: maps.map((m) => xs.map((x) => (m.has(x) ? m.get(x) : null))) };
  }

  /** Draws (or redraws) the chart `key` into `container`. spec: {series: [{label, points, scale?}],
   * xLabel, yLabel, y2Label?, empty?}. Colours come from the CSS variables of the current theme. */
  function drawChart(key, container, spec) {
    const old = charts.get(key);
    if (old && old.plot) old.plot.destroy();
    charts.set(key, { container, spec, plot: null });
    buildChart(charts.get(key));
  }

  function buildChart(c) {
    clear(c.container);
    if (typeof window.uPlot !== 'function') {
      append(c.container, [el('p', { class: 'muted' }, 'charts unavailable (uPlot did not load)')]);
      return;
    }
    const { xs, ys } = align(c.spec.series);
    if (!xs.length) {
      append(c.container, [el('p', { class: 'muted' }, c.spec.empty || 'no points to plot yet')]);
      return;
    }
    const fg = cssVar('--fg') || '#222';
    const grid = cssVar('--grid') || '#ddd';
    const colours = [];
    for (let i = 0; i < 10; i++) colours.push(cssVar(`--c${i}`) || '#888');
    const fmtVal = (u, v) => (v === null || v === undefined ? '–' : fmtNum(v));
    const axis = (label, extra) => Object.assign({
      label, stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
      values: (u, splits) => splits.map(fmtAxis),
    }, extra);
    const hasY2 = c.spec.series.some((s) => s.scale === 'y2');
    const opts = {
      width: Math.max(320, c.container.clientWidth || 800),
      height: c.spec.height || 300,
      scales: Object.assign({ x: { time: false, distr: 3 }, y: { distr: 3 } }, hasY2 ? { y2: { distr: 1 } } : {}),
      series: [{ label: c.spec.xLabel, value: fmtVal }].concat(c.spec.series.map((s, i) => ({
        label: s.label,
        scale: s.scale || 'y',
        stroke: colours[i % colours.length],
        dash: i >= colours.length ? [6, 4] : undefined,
        width: 1.75,
        spanGaps: true,
        points: { show: xs.length < 40 },
        value: fmtVal,
      }))),
      axes: [axis(c.spec.xLabel), axis(c.spec.yLabel, { size: 64 })].concat(hasY2 ? [axis(c.spec.y2Label || '', { scale: 'y2', side: 1, grid: { show: false }, size: 64 })] : []),
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
    try {
      c.plot = new window.uPlot(opts, [xs].concat(ys), c.container);
    } catch (e) {
      c.plot = null;
      append(c.container, [el('p', { class: 'muted' }, `chart failed: ${e && e.message ? e.message : e}`)]);
    }
  }

  function destroyCharts() {
    for (const c of charts.values()) if (c.plot) c.plot.destroy();
    charts.clear();
  }

  /** After a theme change: the same charts in the new colours. */
  function redrawCharts() {
    for (const c of charts.values()) {
      if (c.plot) c.plot.destroy();
      c.plot = null;
      if (c.container.isConnected) buildChart(c);
    }
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of charts.values()) {
        if (c.plot && c.container.clientWidth) c.plot.setSize({ width: Math.max(320, c.container.clientWidth), height: c.spec.height || 300 });
      }
    }, 200);
  });

  // ───────────────────────────── components ─────────────────────────────

  const SEGMENTS = [['succeeded', 'ok'], ['stopped', 'stopped'], ['diverged', 'diverged'], ['failed', 'failed'], ['running', 'running'], ['pending', 'pending']];

  /** Fills a progress element: stacked bar + counts, and data-* attributes (test hooks). */
  function renderProgress(node, counts) {
    const c = counts || {};
    const n = (k) => (isNum(c[k]) ? c[k] : 0);
    const total = n('total');
    for (const k of ['total', 'done', 'running', 'pending', 'failed']) node.setAttribute(`data-${k}`, String(n(k)));
    const bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total, 'aria-valuenow': n('done') });
    for (const [k, cls] of SEGMENTS) {
      if (!n(k) || !total) continue;
      const seg = el('span', { class: `seg ${cls}`, title: `${k}: ${fmtInt(n(k))}` });
      seg.style.width = `${(100 * n(k)) / total}%`;
      bar.appendChild(seg);
    }
    const parts = [`${fmtInt(n('done'))} / ${fmtInt(total)} done`];
    if (n('running')) parts.push(`${fmtInt(n('running'))} running`);
    if (n('failed')) parts.push(`${fmtInt(n('failed'))} failed`);
    if (n('diverged')) parts.push(`${fmtInt(n('diverged'))} diverged`);
    if (n('stopped')) parts.push(`${fmtInt(n('stopped'))} stopped at a rung`);
    if (n('did_not_train')) parts.push(`${fmtInt(n('did_not_train'))} did not train`);
    if (n('unstable')) parts.push(`${fmtInt(n('unstable'))} unstable`);
    if (n('pending')) parts.push(`${fmtInt(n('pending'))} pending`);
    fill(node, bar, el('div', { class: 'progress-label' }, parts.join(' · ')));
  }

  /** A succeeded trial that did not train, or was unstable, flagged beside its status. */
  // Where a trial comes from: a search's probe (group, round, why) or a rule's variant.
  const fmtOrigin = (o) => {
    if (!o || typeof o !== 'object') return '';
    if (o.from === 'probe') return `group ${o.group} round ${o.round}: ${o.reason}`;
    if (o.from === 'scaled') return `${o.rule} κ=${o.kappa}`;
    return '';
  };
  const healthFlag = (h) => (h === 'did_not_train' || h === 'unstable'
    ? el('span', { class: 'flag unsettled', title: h === 'unstable' ? 'its loss grew to 100× its first recorded loss without overflowing' : 'it did not end below its first recorded loss by more than 2 SE, or its loss rose during the averaging window' }, h === 'unstable' ? ' unstable' : ' did not train')
    : null);

  const statePill = (sp) => el('span', { class: `pill state-${sweepState(sp)}` }, sweepState(sp));
  const statusPill = (s) => el('span', { class: `pill status-${STATUSES.includes(s) ? s : 'other'}` }, s || '–');
  // Successive halving: the rung a trial is at, stopped at or finished (its promotions so far).
  const rungNote = (t) => (isNum(t.rung)
    ? el('span', { class: 'muted', title: t.status === 'stopped' ? 'stopped at this rung of successive halving (promoted this many times)' : 'its rung of successive halving (promoted this many times)' }, ` rung ${t.rung}`)
    : null);

  // ───────────────────────────── pages: login ─────────────────────────────

  function needsLogin() {
    const s = state.session;
    return !!(s && s.token_required && !s.authenticated);
  }

  /** A 401 from the API: the session has ended; ask for the token again. */
  function needLogin() {
    if (state.session) {
      state.session.authenticated = false;
      state.session.can_change = false;
    }
    stopEvents();
    if (!state.page || state.page.name !== 'login') route();
  }

  function loginPage(gen) {
    crumbs({ text: 'log in' });
    const input = el('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true, placeholder: 'token' });
    const msg = el('p', { class: 'form-error', hidden: true });
    const form = el('form', { id: 'login', class: 'card login' },
      el('h2', null, 'Log in'),
      el('p', { class: 'muted' }, 'This dashboard needs the token the server was started with.'),
      el('label', { for: 'token' }, 'Token'), input,
      el('button', { type: 'submit' }, 'Log in'), msg);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      msg.hidden = true;
      api('/api/login', { json: { token: input.value } })
        .then(() => api('/api/session'))
        .then((s) => {
          state.session = s;
          applySession();
          if (needsLogin()) throw new ApiError(401, 'the server did not accept the session');
          startEvents();
          route();
        })
        .catch((e) => {
          if (gen !== state.gen) return;
          msg.textContent = e.status === 401 ? `Not accepted: ${e.message}` : e.message;
          msg.hidden = false;
          showError(msg.textContent);
          input.select();
        });
    });
    fill($('app'), form);
    state.page = { name: 'login' };
    document.body.dataset.page = 'login';
    input.focus();
  }

  // ───────────────────────────── pages: overview ─────────────────────────────

  function overviewPage(gen) {
    crumbs({ text: 'sweeps' });
    const sweepsBody = el('tbody');
    const workersBody = el('tbody');
    fill($('app'),
      section('Sweeps', el('div', { class: 'scroll' }, el('table', { id: 'sweeps', class: 'data' },
        el('thead', null, el('tr', null, ['sweep', 'owner', 'progress', 'rate', 'ETA', 'state'].map((h) => el('th', null, h)))),
        sweepsBody))),
      section('Workers', el('div', { class: 'scroll' }, el('table', { id: 'workers', class: 'data' },
        el('thead', null, el('tr', null, ['worker', 'slots', 'GPUs', 'code versions', 'last heard', 'state'].map((h) => el('th', null, h)))),
        workersBody))));

    const render = (ov) => {
      const sweeps = arr(ov && ov.sweeps);
      fill(sweepsBody, sweeps.length ? sweeps.map((sp) => {
        const prog = el('div', { class: 'progress' });
        renderProgress(prog, sp.counts);
        return el('tr', { dataset: { sweep: sp.name } },
          el('td', null, el('a', { href: sweepHref(sp.name) }, sp.name)),
          el('td', { class: 'owner' }, sp.owner || '–'),
          el('td', { class: 'wide' }, prog),
          num(fmtRate(sp.rate)),
          num(sp.finished || sp.cancelled ? '–' : fmtDuration(sp.eta_s)),
          el('td', null, statePill(sp)));
      }) : el('tr', null, el('td', { colSpan: 6, class: 'muted' }, 'no sweeps yet')));
      const workers = arr(ov && ov.workers);
      fill(workersBody, workers.length ? workers.map((w) => el('tr', { class: w.lost ? 'worker lost' : 'worker' },
        el('td', null, w.name),
        num(fmtInt(w.slots)),
        num(fmtInt(w.gpus)),
        el('td', null, arr(w.code_versions).join(', ') || '–'),
        num(fmtAgo(w.silent_s)),
        el('td', null, w.lost ? el('span', { class: 'pill fails-bg' }, 'lost') : el('span', { class: 'pill ok-bg' }, 'ok'))))
        : el('tr', null, el('td', { colSpan: 6, class: 'muted' }, 'no workers connected')));
      document.body.dataset.page = 'overview';
    };

    state.page = { name: 'overview', onProgress: render };
    api('/api/sweeps').then((ov) => {
      if (gen !== state.gen) return;
      state.overview = ov;
      render(ov);
    }).catch((e) => report(e, gen));
  }

  // ───────────────────────────── pages: sweep ─────────────────────────────

  function tableState(name) {
    if (!state.sweeps.has(name)) {
      state.sweeps.set(name, { status: '', axes: {}, free: '', sort: 'seq', order: 'asc', offset: 0, checked: new Set(), classIdx: 0, allClasses: false });
    }
    return state.sweeps.get(name);
  }

  /** "a=1, b=x" → [['a','1'], ['b','x']] (null if a part has no "="). */
  function parseFree(text) {
    const out = [];
    for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
      const i = part.indexOf('=');
      if (i <= 0) return null;
      out.push([part.slice(0, i).trim(), part.slice(i + 1).trim()]);
    }
    return out;
  }

  function sweepPage(name, gen) {
    crumbs({ text: 'sweeps', href: '#/' }, { text: name });
    const ts = tableState(name);
    const ui = {
      title: el('h1', null, name),
      state: el('span'),
      progress: el('div', { id: 'progress', class: 'progress big' }),
      stats: el('div', { class: 'stats' }),
      chips: el('div', { class: 'chips' }),
      meta: el('div', { class: 'meta muted' }),
      actions: el('div', { class: 'actions' }),
      notice: el('p', { class: 'notice', hidden: true }),
      filters: el('div', { class: 'filters' }),
      total: el('span', { id: 'trials-total' }, '0'),
      table: el('div', { class: 'scroll' }),
      pager: el('div', { class: 'pager' }),
      classPick: el('div', { class: 'class-pick' }),
      classChart: el('div', { id: 'class-curves', class: 'chart' }),
      classCaption: el('p', { class: 'muted small' }),
      checkedChart: el('div', { id: 'checked-curves', class: 'chart' }),
      checkedInfo: el('div', { class: 'checked-info' }),
      report: el('div', { id: 'report' }, el('p', { class: 'muted' }, 'loading the report…')),
    };
    let detail = null; // GET /api/sweeps/{name}
    let last = null; // {done, running} of the last update, to see what changed
    let classSig = ''; // what the class chart was drawn from (redrawn only when it changes)

    fill($('app'),
      el('section', { class: 'card head' },
        el('div', { class: 'title-row' }, ui.title, ui.state, el('span', { class: 'spacer' }), ui.actions),
        ui.progress, ui.stats, ui.chips, ui.meta, ui.notice),
      el('section', { class: 'card' },
        el('h2', null, 'Trials ', el('span', { class: 'muted small' }, '(', ui.total, ' matching)')),
        ui.filters, ui.table, ui.pager),
      el('section', { id: 'curves', class: 'card' },
        el('h2', null, 'Loss curves'),
        el('h3', null, 'Checked trials'), ui.checkedInfo, ui.checkedChart,
        el('h3', null, 'Class: one line per κ'), ui.classPick, ui.classChart, ui.classCaption),
      el('section', { class: 'card' }, el('h2', null, 'Report'), ui.report));

    // Header: counts, bar, rate, ETA; updated in place by the event stream.
    function renderHead(sp) {
      fill(ui.state, statePill(sp));
      renderProgress(ui.progress, sp.counts);
      const c = sp.counts || {};
      fill(ui.stats,
        el('span', null, el('b', null, fmtRate(sp.rate)), ' rate'),
        el('span', null, el('b', null, sp.finished || sp.cancelled ? '–' : fmtDuration(sp.eta_s)), ' ETA'),
        el('span', null, el('b', null, fmtInt(c.succeeded || 0)), ' succeeded'),
        sp.reused ? el('span', null, el('b', null, fmtInt(sp.reused)), ' reused from earlier runs') : null,
        isNum(sp.at_most) ? el('span', { title: 'a search proposes trials from the results so far: the total grows up to this' }, 'a search: at most ', el('b', null, fmtInt(sp.at_most)), ' trials') : null,
        arr(sp.rungs).length ? el('span', { id: 'rungs', title: 'successive halving: the trials that finished each rung, by its budget in samples' }, 'rungs ',
          arr(sp.rungs).map((r, i) => el('span', null, i ? ' → ' : '', el('b', null, fmtInt(r.reached)), ` at ${fmtInt(r.samples)}`))) : null);
    }

    function renderMeta() {
      const links = ['report.html', 'export.csv', 'export.jsonl'].map((f) => el('a', { href: `${sweepApi(name)}/${f}`, class: 'button ghost', download: f === 'report.html' ? null : `${name}-${f}`, target: f === 'report.html' ? '_blank' : null, rel: 'noopener' }, f));
      fill(ui.meta,
        el('span', null, 'kind ', el('code', null, detail.kind || '–')),
        detail.owner ? el('span', { id: 'owner' }, 'owner ', el('b', null, detail.owner)) : null,
        el('span', null, 'file ', el('code', null, detail.file || '–')),
        arr(detail.rules).length ? el('span', null, 'rules ', el('code', null, arr(detail.rules).join(', '))) : null,
        el('span', { class: 'downloads' }, links),
        detail.sweep_text ? el('details', null, el('summary', null, 'sweep file'), el('pre', { class: 'code' }, detail.sweep_text)) : null);
      clear(ui.actions);
      // Only where this session's holder may: its own sweeps, or any for an admin (the server says).
      if (detail.can_retry) {
        ui.actions.append(el('button', { id: 'retry', type: 'button', on: { click: () => act('retry') } }, 'retry failed'));
      }
      if (detail.can_change) {
        ui.actions.append(el('button', { id: 'cancel', type: 'button', class: 'danger', on: { click: () => act('cancel') } }, 'cancel sweep'));
      }
    }

    function act(what) {
      if (what === 'cancel' && !window.confirm(`Cancel sweep “${name}”? Its pending trials will not run.`)) return;
      api(`${sweepApi(name)}/${what}`, { method: 'POST' }).then((r) => {
        if (gen !== state.gen) return;
        const n = r && isNum(r.trials) ? r.trials : 0;
        ui.notice.textContent = what === 'cancel' ? `cancelled: ${fmtInt(n)} trials will not run` : `${fmtInt(n)} failed trials put back to pending`;
        ui.notice.hidden = false;
        refreshTrials();
      }).catch((e) => report(e, gen));
    }

    // Filters: status, one <select> per swept axis, free "param=value" text.
    function renderFilters() {
      const status = el('select', { id: 'filter-status', on: { change: () => { ts.status = status.value; ts.offset = 0; refreshTrials(); } } },
        el('option', { value: '' }, 'any status'), STATUSES.map((s) => el('option', { value: s, selected: ts.status === s }, s)));
      const axes = detail.axes && typeof detail.axes === 'object' ? detail.axes : {};
      const axisSelects = Object.keys(axes).filter((k) => arr(axes[k]).length > 1).map((k) => {
        const sel = el('select', { class: 'filter-axis', dataset: { param: k }, on: { change: () => { if (sel.value === '') delete ts.axes[k]; else ts.axes[k] = sel.value; ts.offset = 0; refreshTrials(); } } },
          el('option', { value: '' }, 'any'),
          arr(axes[k]).map((v) => el('option', { value: String(v), selected: ts.axes[k] === String(v) }, fmtParam(v))));
        return el('label', { class: 'filter' }, el('span', null, k), sel);
      });
      const hint = el('span', { class: 'form-error', hidden: true }, 'write param=value, comma-separated');
      const free = el('input', { id: 'filter-free', type: 'text', placeholder: 'param=value, …', value: ts.free, spellcheck: 'false' });
      const applyFree = () => {
        const ok = parseFree(free.value) !== null;
        hint.hidden = ok;
        if (ok && free.value !== ts.free) {
          ts.free = free.value;
          ts.offset = 0;
          refreshTrials();
        }
      };
      free.addEventListener('change', applyFree);
      free.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') applyFree(); });
      fill(ui.filters, el('label', { class: 'filter' }, el('span', null, 'status'), status), axisSelects,
        el('label', { class: 'filter' }, el('span', null, 'other'), free), hint);
    }

    function trialsQuery() {
      const q = new URLSearchParams();
      if (ts.status) q.set('status', ts.status);
      q.set('offset', String(ts.offset));
      q.set('limit', String(PAGE_SIZE));
      q.set('sort', ts.sort);
      q.set('order', ts.order);
      const params = Object.assign({}, ts.axes);
      for (const [k, v] of parseFree(ts.free) || []) params[k] = v; // the free text wins
      for (const [k, v] of Object.entries(params)) q.set(`p.${k}`, v);
      return q.toString();
    }

    const refreshTrials = coalesced(async () => {
      if (gen !== state.gen || !detail) return;
      const res = await api(`${sweepApi(name)}/trials?${trialsQuery()}`);
      if (gen !== state.gen) return;
      const total = isNum(res && res.total) ? res.total : 0;
      const rows = arr(res && res.trials);
      if (!rows.length && ts.offset > 0 && total > 0) { // the page emptied (e.g. running trials finished)
        ts.offset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE;
        refreshTrials();
        return;
      }
      renderTrials(total, rows);
    }, gen);

    function sortHeader(label, key, cls) {
      const active = ts.sort === key;
      const th = el('th', { class: `sortable${cls ? ` ${cls}` : ''}${active ? ' active' : ''}`, title: `sort by ${label}`, 'aria-sort': active ? (ts.order === 'asc' ? 'ascending' : 'descending') : null },
        label, active ? (ts.order === 'asc' ? ' ▲' : ' ▼') : '');
      th.addEventListener('click', () => {
        if (ts.sort === key) ts.order = ts.order === 'asc' ? 'desc' : 'asc';
        else { ts.sort = key; ts.order = 'asc'; }
        ts.offset = 0;
        refreshTrials();
      });
      return th;
    }

    function renderTrials(total, rows) {
      ui.total.textContent = String(total);
      const columns = arr(detail.columns);
      const numeric = new Set(columns.filter((c) => rows.some((r) => r.params && typeof r.params[c] === 'number')));
      // Results first (readable without scrolling sideways), then every parameter, then the error.
      const headers = [el('th', { title: 'add to the loss-curve chart' }, 'plot'), sortHeader('#', 'seq', 'num'), sortHeader('status', 'status'),
        sortHeader('stationary loss', 'stationary', 'num'), el('th', null, 'settled'), sortHeader('attempts', 'attempts', 'num'), sortHeader('duration', 'duration_s', 'num'),
        el('th', { title: 'a search\'s probe (group, round, why) or a scaling rule\'s variant' }, 'origin')]
        .concat(columns.map((c) => sortHeader(c, c, numeric.has(c) ? 'num' : '')))
        .concat([el('th', null, 'error')]);
      const body = rows.map((t) => {
        const p = t.params || {};
        const box = el('input', { type: 'checkbox', checked: ts.checked.has(t.id), title: 'show its loss curve', 'aria-label': `curve of trial ${t.seq}` });
        box.addEventListener('change', () => toggleCurve(t.id, box));
        const err = typeof t.error === 'string' ? t.error : '';
        return el('tr', { class: `trial status-row-${t.status}`, dataset: { id: t.id } },
          el('td', null, box),
          num(el('a', { href: trialHref(name, t.id), title: t.id }, String(t.seq ?? '?'))),
          el('td', null, el('a', { href: trialHref(name, t.id), class: 'plain' }, statusPill(t.status)), healthFlag(t.health), rungNote(t)),
          num(fmtEst(t.stationary)),
          el('td', null, t.settled === false ? el('span', { class: 'unsettled', title: 'the stationary loss was taken before the loss settled' }, 'unsettled') : t.settled === true ? el('span', { class: 'muted' }, 'yes') : '–'),
          num(fmtInt(t.attempts)),
          num(fmtDuration(t.duration_s)),
          el('td', { class: 'str' }, fmtOrigin(t.origin)),
          columns.map((c) => (numeric.has(c) ? num(fmtParam(p[c])) : el('td', { class: 'str', title: fmtParam(p[c]) }, fmtParam(p[c])))),
          el('td', { class: 'error-cell', title: err || null }, err.length > 80 ? `${err.slice(0, 80)}…` : err));
      });
      fill(ui.table, table({ id: 'trials' }, headers, body.length ? body
        : el('tr', null, el('td', { colSpan: headers.length, class: 'muted' }, 'no trials match'))));
      const from = rows.length ? ts.offset + 1 : 0;
      const to = ts.offset + rows.length;
      const prev = el('button', { type: 'button', id: 'prev', disabled: ts.offset === 0, on: { click: () => { ts.offset = Math.max(0, ts.offset - PAGE_SIZE); refreshTrials(); } } }, '‹ prev');
      const next = el('button', { type: 'button', id: 'next', disabled: to >= total, on: { click: () => { ts.offset += PAGE_SIZE; refreshTrials(); } } }, 'next ›');
      fill(ui.pager, prev, el('span', { class: 'range' }, rows.length ? `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(total)}` : `0 of ${fmtInt(total)}`), next);
    }

    // Checked trials' curves: GET /curves?ids=
    function toggleCurve(id, box) {
      if (box.checked) {
        if (ts.checked.size >= MAX_CURVES) {
          box.checked = false;
          showError(`at most ${MAX_CURVES} curves at once`);
          return;
        }
        ts.checked.add(id);
      } else ts.checked.delete(id);
      refreshChecked();
    }

    const refreshChecked = coalesced(async () => {
      if (gen !== state.gen) return;
      const ids = [...ts.checked];
      const clearBtn = ids.length ? el('button', { type: 'button', class: 'ghost', on: { click: () => { ts.checked.clear(); ui.table.querySelectorAll('tr.trial input[type=checkbox]').forEach((b) => { b.checked = false; }); refreshChecked(); } } }, 'clear') : null;
      fill(ui.checkedInfo, el('span', { class: 'muted small' }, ids.length ? `${ids.length} trial${ids.length > 1 ? 's' : ''} checked ` : 'check trials in the table to compare their curves '), clearBtn);
      if (!ids.length) {
        drawChart('checked', ui.checkedChart, { series: [], empty: 'no trials checked' });
        return;
      }
      const res = await api(`${sweepApi(name)}/curves?ids=${ids.map(enc).join(',')}`);
      if (gen !== state.gen) return;
      drawChart('checked', ui.checkedChart, {
        xLabel: 'samples seen', yLabel: 'loss', empty: 'the checked trials have no curve yet',
        series: arr(res && res.series).map((s) => ({ label: s.label || String(s.id).slice(0, 8), points: arr(s.curve) })),
      });
    }, gen);

    // Class picker: classes[i].kappas[j].curve, one line per κ.
    function renderClassPicker(rep) {
      const classes = arr(rep && rep.classes);
      if (!classes.length) {
        fill(ui.classPick, el('span', { class: 'muted small' }, 'this sweep has no scaling classes'));
        clear(ui.classChart);
        clear(ui.classCaption);
        classSig = '';
        return;
      }
      if (ts.classIdx >= classes.length) ts.classIdx = 0;
      const keys = varyingKeys(classes.map((c) => c.base));
      const sel = el('select', { id: 'class-select', on: { change: () => { ts.classIdx = Number(sel.value) || 0; classSig = ''; drawClass(classes); } } },
        classes.map((c, i) => el('option', { value: String(i), selected: i === ts.classIdx }, `${c.rule}: ${paramsLabel(c.base, keys)} — ${verdictText(c.verdict)}`)));
      fill(ui.classPick, sel);
      drawClass(classes);
    }

    function drawClass(classes) {
      const c = classes[ts.classIdx];
      const kappas = arr(c && c.kappas);
      const sig = JSON.stringify([ts.classIdx, kappas.map((k) => [k.kappa, arr(k.curve).length, arr(k.curve).slice(-1)])]);
      if (sig === classSig) return;
      classSig = sig;
      drawChart('class', ui.classChart, {
        xLabel: 'samples seen', yLabel: 'loss', empty: 'no curves for this class yet',
        series: kappas.map((k) => ({ label: `κ=${k.kappa}`, points: arr(k.curve) })),
      });
      fill(ui.classCaption, kappas.map((k) => `κ=${k.kappa}: ${paramsLabel(k.params, ['batch_size', 'lr'])}`).join(' · '));
    }

    const refreshReport = throttled(() => {
      // Not for a page left since, nor while the event stream is down (the server may be gone).
      if (gen !== state.gen || !$('live').hidden) return;
      loadReport().catch((e) => report(e, gen));
    }, REPORT_EVERY_MS);

    async function loadReport() {
      let rep;
      try {
        rep = await api(`${sweepApi(name)}/report`);
      } catch (e) {
        if (gen === state.gen && e.status !== 401) fill(ui.report, el('p', { class: 'muted' }, `no report: ${e.message}`));
        throw e;
      }
      if (gen !== state.gen) return;
      fill(ui.report, renderReport(rep || {}, ts, () => { fill(ui.report, renderReport(rep || {}, ts, null)); }));
      // At a glance: one chip per rule in the header.
      fill(ui.chips, arr(rep && rep.rules).map((r) => el('span', { class: `pill verdict-chip ${verdictClass(r.verdict)}`, title: `rule ${r.name}` }, `${r.name}: ${verdictText(r.verdict)}`)));
      renderClassPicker(rep);
    }

    // Live updates: header in place; trials when done/running moved; the report at most every 5 s.
    state.page = {
      name: 'sweep',
      onProgress(ov) {
        const sp = arr(ov && ov.sweeps).find((s) => s.name === name);
        if (!sp || !detail) return;
        renderHead(sp);
        const c = sp.counts || {};
        const now = { done: c.done, running: c.running };
        if (!last || last.done !== now.done || last.running !== now.running) {
          if (last) {
            refreshTrials();
            refreshReport();
          }
          last = now;
        }
      },
    };

    (async () => {
      try {
        detail = await api(sweepApi(name));
      } catch (e) {
        if (gen !== state.gen) return;
        report(e, gen);
        fill($('app'), section('Sweep not available', el('p', null, e.message), el('p', null, el('a', { href: '#/' }, 'back to the sweeps'))));
        if (e.status !== 401) document.body.dataset.page = 'sweep';
        return;
      }
      if (gen !== state.gen) return;
      const sp = (state.overview && arr(state.overview.sweeps).find((s) => s.name === name)) || detail;
      last = { done: (sp.counts || {}).done, running: (sp.counts || {}).running };
      renderHead(sp);
      renderMeta();
      renderFilters();
      const results = await Promise.allSettled([refreshTrials(), loadReport(), refreshChecked()]);
      results.forEach((r) => { if (r.status === 'rejected') report(r.reason, gen); });
      if (gen === state.gen) document.body.dataset.page = 'sweep';
    })().catch((e) => report(e, gen));
  }

  /** The report's tables (only those with data). `more` re-renders with every class shown. */
  function renderReport(r, ts, more) {
    const out = [];
    const trials = isNum(r.trials) ? r.trials : 0;
    const missing = isNum(r.missing) ? r.missing : 0;
    out.push(el('p', { class: 'summary' },
      missing > 0 ? el('b', null, `${fmtInt(r.finished || 0)} of ${fmtInt(trials)} trials finished; verdicts wait for the rest.`)
        : `${fmtInt(r.finished || 0)} of ${fmtInt(trials)} trials finished.`,
      isNum(r.tolerance) ? ` Tolerance ${fmtPct(r.tolerance, 0)}.` : '',
      isNum(r.computed_at) ? el('span', { class: 'muted small' }, ` Computed ${fmtTime(r.computed_at)}.`) : ''));

    const rules = arr(r.rules);
    if (rules.length) {
      out.push(el('h3', null, 'Verdicts'), el('div', { class: 'scroll' }, table({ id: 'verdicts' },
        ['rule', 'verdict', 'expected', 'plateau ratio [95%]', 'deviation', 'holds from', 'holds up to κ / batch', 'classes holds/late/fails/open', 'unsettled classes'],
        rules.map((rule) => {
          const cl = arr(rule.classes);
          return el('tr', { dataset: { rule: rule.name } },
            el('td', null, rule.name), verdictCell(rule.verdict),
            el('td', null, rule.expect ? verdictText(rule.expect) : '–'),
            num(rule.plateau && isNum(rule.plateau.ratio)
              ? [`${fmtFixed(rule.plateau.ratio, 3)} (${fmtCi(rule.plateau.ci95, (x) => fmtFixed(x, 3))})`,
                rule.plateau.unsettled ? el('span', { class: 'flag' }, ' not settled') : null]
              : '–', rule.plateau && rule.plateau.unsettled ? { class: 'num unsettled', title: 'rests on trials whose loss had not settled; no verdict rests on it' } : null),
            num(fmtPct(rule.deviation)),
            num(fmtPct(rule.holds_from, 0)),
            num(isNum(rule.holds_up_to_kappa) ? `κ ≤ ${fmtInt(rule.holds_up_to_kappa)} / B ${isNum(rule.holds_up_to_batch) ? fmtInt(rule.holds_up_to_batch) : '–'}` : '–'),
            num([0, 1, 2, 3].map((i) => (isNum(cl[i]) ? cl[i] : 0)).join(' / ')),
            num(rule.unsettled_classes ? el('span', { class: 'unsettled' }, fmtInt(rule.unsettled_classes)) : '0'));
        }))));
      for (const note of arr(r.rule_notes)) out.push(el('p', { class: 'muted small' }, note));
    }

    const classes = arr(r.classes);
    if (classes.length) {
      const keys = varyingKeys(classes.map((c) => c.base));
      const shown = ts.allClasses || !more ? classes : classes.slice(0, CLASS_ROWS);
      const rows = [];
      for (const c of shown) {
        const ks = arr(c.kappas);
        ks.forEach((k, j) => {
          const ratio = k.plateau_ratio && isNum(k.plateau_ratio.mean)
            ? [fmtFixed(k.plateau_ratio.mean, 4), Array.isArray(k.plateau_ci95) ? ` (${fmtCi(k.plateau_ci95, (x) => fmtFixed(x, 4))})` : '']
            : ['–'];
          rows.push(el('tr', { class: j === 0 ? 'group-start' : null },
            j === 0 ? el('td', { rowSpan: ks.length }, c.rule) : null,
            j === 0 ? el('td', { rowSpan: ks.length }, paramsLabel(c.base, keys), el('div', { class: 'muted small' }, `${fmtInt(c.seeds)} seed${c.seeds === 1 ? '' : 's'}`)) : null,
            num(fmtInt(k.kappa)),
            num(fmtParam(k.params && k.params.batch_size)),
            num([fmtEst(k.stationary), k.settled === false ? el('span', { class: 'flag' }, ' unsettled') : null], k.settled === false ? { class: 'num unsettled', title: 'not settled: taken before the loss settled' } : null),
            num(j === 0 ? '1' : [ratio, k.plateau_unsettled ? el('span', { class: 'flag' }, ' not settled') : null], k.plateau_unsettled ? { class: 'num unsettled', title: 'rests on a trial whose loss had not settled; no verdict rests on it' } : null),
            num(fmtFixed(k.theory_ratio, 4)),
            num(j === 0 ? '–' : fmtPct(k.deviation)),
            num(j === 0 ? '–' : fmtPct(k.holds_from, 0)),
            j === 0 ? verdictCell(c.verdict, { rowSpan: ks.length }) : null,
            j === 0 ? el('td', { rowSpan: ks.length, class: 'note' }, c.note || '') : null));
        });
      }
      out.push(el('h3', null, 'Plateau ratios'), el('div', { class: 'scroll' }, table({ id: 'plateaus' },
        ['rule', 'base point', 'κ', 'B', 'stationary ± SE', 'ratio (95% CI)', 'theory ratio', 'deviation', 'holds from', 'verdict', 'note'], rows)));
      if (shown.length < classes.length) {
        out.push(el('button', { type: 'button', class: 'ghost', on: { click: () => { ts.allClasses = true; more(); } } }, `show all ${fmtInt(classes.length)} classes`));
      }
    }

    const tracking = arr(r.tracking);
    if (tracking.length) {
      out.push(el('h3', null, 'SDE tracking'), el('div', { class: 'scroll' }, table({ id: 'tracking' },
        ['setting', 'SDE model', 'mean |ΔL|/L ± SE', 'max |ΔL|/L', 'points'],
        tracking.map((t) => el('tr', null, el('td', null, paramsLabel(t.params)), el('td', null, t.sde_model),
          num(isNum(t.mean_rel_error) ? `${fmtPct(t.mean_rel_error, 2)}${isNum(t.mean_rel_error_se) ? ` ± ${fmtPct(t.mean_rel_error_se, 2)}` : ''}` : '–'),
          num(fmtPct(t.max_rel_error, 2)), num(fmtInt(t.points)))))));
    }

    const lr = arr(r.lr_scaling);
    if (lr.length) {
      const rows = [];
      for (const g of lr) {
        const pts = arr(g.points).length ? arr(g.points) : [null];
        pts.forEach((p, j) => {
          const span = { rowSpan: pts.length };
          rows.push(el('tr', { class: j === 0 ? 'group-start' : null },
            j === 0 ? [
              el('td', span, g.group, g.note ? el('div', { class: 'muted small' }, g.note) : null),
              el('td', span, g.objective ? `${g.maximise ? 'highest' : 'lowest'} ${g.objective}` : '–'),
              num(isNum(g.exponent) ? fmtFixed(g.exponent, 3) : '–', span),
              num(fmtCi(g.exponent_ci, (x) => fmtFixed(x, 3)), span),
              num(fmtNum(g.theory_exponent), span),
              el('td', span, arr(g.rule_exponents).map((re) => `${re[0]}: ${fmtNum(re[1])}`).join(', ') || '–')] : null,
            p ? [num(fmtInt(p.batch_size)), num(fmtNum(p.best_lr), p.at_edge ? { class: 'num late', title: 'at the edge of the grid: the optimum may lie beyond' } : p.at_stability_edge ? { class: 'num late', title: 'at a stability edge: a neighbouring learning rate diverged, did not train or was unstable' } : null),
              num(fmtCi(p.best_lr_ci)), num(fmtInt(p.seeds))] : [el('td', { colSpan: 4, class: 'muted' }, 'no points')]));
        });
      }
      const expect = Array.isArray(r.expect_exponent) ? ` (expected ${fmtCi(r.expect_exponent)})` : '';
      out.push(el('h3', null, `Learning-rate exponents${expect}`), el('div', { class: 'scroll' }, table({ id: 'lr-scaling' },
        ['group', 'objective', 'exponent', '95% CI', 'theory', 'rules', 'B', 'best lr', 'best lr 95% CI', 'seeds'], rows)));
    }

    const cb = arr(r.critical_batch);
    if (cb.length) {
      const expect = Array.isArray(r.expect_b_crit) ? ` (expected ${fmtCi(r.expect_b_crit)})` : '';
      out.push(el('h3', null, `Critical batch size${expect}`), el('div', { class: 'scroll' }, table({ id: 'critical-batch' },
        ['group', 'target', 'S_min', 'E_min', 'B_crit', '95% CI', 'noise scale at target', 'reached at B (steps)', 'unreached B'],
        cb.map((g) => el('tr', null,
          el('td', null, g.group, g.note ? el('div', { class: 'muted small' }, g.note) : null),
          num(fmtNum(g.target_loss)), num(fmtNum(g.s_min)), num(fmtNum(g.e_min)),
          num(el('b', null, fmtNum(g.b_crit))), num(fmtCi(g.b_crit_ci)), num(fmtNum(g.noise_scale_at_target)),
          el('td', { class: 'small' }, arr(g.points).map((p) => `${fmtInt(p.batch_size)} (${fmtNum(p.steps)}${p.lr_at_edge ? '*' : ''})`).join(', ') || '–'),
          el('td', null, arr(g.unreached).map(fmtInt).join(', ') || '–'))))));
    }

    const slopes = arr(r.noise_slopes);
    if (slopes.length) {
      out.push(el('h3', null, 'Stationary loss vs noise σ_B'), el('div', { class: 'scroll' }, table({ id: 'noise-slopes' },
        ['setting', 'fitted slope', 'theory slope', 'batch sizes'],
        slopes.map((f) => el('tr', null, el('td', null, f.label), num(fmtFixed(f.slope, 3)), num(fmtFixed(f.theory_slope, 3)), num(fmtInt(arr(f.points).length)))))));
    }
    if (out.length === 1 && !rules.length) out.push(el('p', { class: 'muted' }, 'No verdicts or analyses for this sweep (it has no scaling rules or analysis groups).'));
    return out;
  }

  // ───────────────────────────── pages: trial ─────────────────────────────

  function trialPage(name, id, gen) {
    crumbs({ text: 'sweeps', href: '#/' }, { text: name, href: sweepHref(name) }, { text: `trial ${id.slice(0, 10)}` });
    const chartBox = el('div', { id: 'trial-curve', class: 'chart' });
    let lastSweep = null;

    const fetchTrial = async () => {
      if (gen !== state.gen) return;
      const t = await api(`${sweepApi(name)}/trials/${enc(id)}`);
      if (gen !== state.gen || !t) return;
      render(t);
      document.body.dataset.page = 'trial';
    };
    const reload = throttled(coalesced(fetchTrial, gen), TRIAL_EVERY_MS);

    function render(t) {
      const p = t.params && typeof t.params === 'object' ? t.params : {};
      const kv = (k, v) => el('tr', null, el('th', null, k), el('td', null, v));
      const notes = arr(t.notes);
      const attempts = arr(t.attempts);
      const extra = t.extra && typeof t.extra === 'object' ? t.extra : {};
      fill($('app'),
        el('section', { class: 'card head' },
          el('div', { class: 'title-row' }, el('h1', null, `Trial ${t.seq ?? ''}`), statusPill(t.status)),
          el('p', { class: 'muted small mono' }, t.id || id)),
        el('div', { class: 'grid2' },
          section('Parameters', table({ id: 'trial-params', class: 'data kv' }, ['parameter', 'value'],
            Object.keys(p).map((k) => el('tr', null, el('td', null, k), typeof p[k] === 'number' ? num(fmtParam(p[k])) : el('td', null, fmtParam(p[k])))))),
          section('Result', el('table', { class: 'data kv', id: 'trial-result' }, el('tbody', null,
            kv('status', [statusPill(t.status), healthFlag(t.health)]),
            kv('stationary loss', fmtEst(t.stationary)),
            kv('settled', t.settled === false ? el('span', { class: 'unsettled' }, 'no: taken before the loss settled') : t.settled === true ? 'yes' : '–'),
            kv('theory', fmtNum(t.theory)),
            t.origin ? kv('origin', fmtOrigin(t.origin)) : null,
            isNum(t.rung) ? kv('rung', `${t.rung} (${t.status === 'stopped' ? 'stopped here' : t.status === 'succeeded' ? 'the whole budget' : 'its current rung'}; promoted ${t.rung} time${t.rung === 1 ? '' : 's'})`) : null,
            kv('attempts', fmtInt(attempts.length)),
            kv('worker', t.worker || '–'),
            kv('duration', fmtDuration(t.duration_s)),
            kv('finished', fmtTime(t.finished_at)),
            t.error ? kv('error', el('span', { class: 'fails' }, t.error)) : null)),
          notes.length ? el('ul', { class: 'notes' }, notes.map((n) => el('li', null, n))) : null)),
        section('Attempts', el('div', { class: 'scroll' }, table({ id: 'attempts' },
          ['attempt', 'worker', 'started', 'ended', 'outcome', 'class', 'counted', 'error'],
          attempts.length ? attempts.map((a) => el('tr', null, num(fmtInt(a.attempt)), el('td', null, a.worker || '–'),
            el('td', null, fmtTime(a.started_at)), el('td', null, fmtTime(a.ended_at)),
            el('td', null, a.outcome ? el('span', { class: `outcome-${String(a.outcome).split('-')[0]}` }, a.outcome) : '–'),
            el('td', null, a.class || '–'), el('td', null, a.counted === false ? 'no' : 'yes'),
            el('td', { class: 'error-cell wrap' }, a.error || '')))
            : el('tr', null, el('td', { colSpan: 8, class: 'muted' }, 'not started yet'))))),
        t.stderr_tail ? section('stderr (tail)', el('pre', { id: 'stderr', class: 'code' }, t.stderr_tail)) : null,
        section('Loss curve', chartBox));
      // The loss, plus every extra metric: those named *loss* on the loss axis, the rest on a right axis.
      const series = [{ label: 'loss', points: arr(t.curve) }];
      const others = [];
      for (const [k, v] of Object.entries(extra)) (/loss/i.test(k) ? series : others).push({ label: k, points: arr(v) });
      others.forEach((s) => { s.scale = 'y2'; });
      drawChart('trial', chartBox, {
        xLabel: 'samples seen', yLabel: 'loss', y2Label: others.map((s) => s.label).join(', '),
        empty: 'no curve recorded yet', series: series.concat(others),
      });
    }

    state.page = {
      name: 'trial',
      onProgress(ov) {
        const sp = arr(ov && ov.sweeps).find((s) => s.name === name);
        if (!sp) return;
        const sig = JSON.stringify(sp.counts || {});
        if (lastSweep !== null && sig !== lastSweep) reload();
        lastSweep = sig;
      },
    };
    fill($('app'), el('p', { class: 'muted' }, 'loading the trial…'));
    fetchTrial().catch((e) => {
      if (gen !== state.gen || e.status === 401) return;
      report(e, gen);
      fill($('app'), section('Trial not available', el('p', null, e.message), el('p', null, el('a', { href: sweepHref(name) }, 'back to the sweep'))));
      document.body.dataset.page = 'trial';
    });
  }

  // ───────────────────────────── live updates ─────────────────────────────

  let reconnectTimer = null;

  function startEvents() {
    if (state.events || typeof window.EventSource !== 'function' || needsLogin()) return;
    const es = new EventSource('/api/events');
    state.events = es;
    es.addEventListener('open', () => setLive(true));
    es.addEventListener('progress', (ev) => {
      let ov;
      try {
        ov = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      setLive(true);
      state.overview = ov;
      if (state.page && state.page.onProgress) {
        try {
          state.page.onProgress(ov);
        } catch (e) {
          showError(`update failed: ${e && e.message ? e.message : e}`);
        }
      }
      state.updates += 1;
      document.body.dataset.updates = String(state.updates);
    });
    es.addEventListener('error', () => {
      setLive(false);
      // A network error reconnects by itself; an HTTP error (401, 5xx) closes the stream for good:
      // look at the session again, then open a new one.
      if (es.readyState === EventSource.CLOSED && state.events === es) {
        state.events = null;
        clearTimeout(reconnectTimer);
        reconnectTimer = setTimeout(() => {
          api('/api/session').then((s) => {
            state.session = s;
            applySession();
            if (needsLogin()) needLogin();
            else startEvents();
          }).catch(() => startEvents());
        }, 5000);
      }
    });
  }

  function stopEvents() {
    clearTimeout(reconnectTimer);
    if (state.events) state.events.close();
    state.events = null;
    setLive(true);
  }

  const setLive = (ok) => { $('live').hidden = ok; };

  // ───────────────────────────── router ─────────────────────────────

  function parseRoute() {
    const hash = (location.hash || '#/').replace(/^#/, '');
    const parts = hash.split('?')[0].split('/').filter((s, i) => i > 0 || s !== '');
    try {
      const seg = parts.map(decodeURIComponent);
      if (!seg.length || (seg.length === 1 && seg[0] === '')) return { page: 'overview' };
      if (seg[0] === 'sweep' && seg.length === 2 && seg[1]) return { page: 'sweep', name: seg[1] };
      if (seg[0] === 'sweep' && seg.length === 4 && seg[2] === 'trial' && seg[1] && seg[3]) return { page: 'trial', name: seg[1], id: seg[3] };
    } catch (_) {
      /* malformed escape */
    }
    return { page: 'missing' };
  }

  function route() {
    state.gen += 1;
    const gen = state.gen;
    destroyCharts();
    state.page = null;
    delete document.body.dataset.page;
    hideError();
    if (needsLogin()) return loginPage(gen);
    const r = parseRoute();
    if (r.page === 'overview') return overviewPage(gen);
    if (r.page === 'sweep') return sweepPage(r.name, gen);
    if (r.page === 'trial') return trialPage(r.name, r.id, gen);
    crumbs({ text: 'sweeps', href: '#/' });
    fill($('app'), section('Not found', el('p', null, 'No such page. '), el('a', { href: '#/' }, 'back to the sweeps')));
    state.page = { name: 'missing' };
  }

  // ───────────────────────────── boot ─────────────────────────────

  function effectiveTheme() {
    const t = document.documentElement.dataset.theme;
    if (t === 'light' || t === 'dark') return t;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }

  function setupTheme() {
    const saved = storageGet('kappa-theme');
    if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
    const btn = $('theme-toggle');
    const label = () => { btn.textContent = effectiveTheme() === 'dark' ? '☀ light' : '☾ dark'; };
    label();
    btn.addEventListener('click', () => {
      const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      storageSet('kappa-theme', next);
      label();
      redrawCharts();
    });
    if (window.matchMedia) {
      const mq = window.matchMedia('(prefers-color-scheme: dark)');
      const onChange = () => { label(); redrawCharts(); };
      if (mq.addEventListener) mq.addEventListener('change', onChange);
    }
  }

  /** Header bits that follow the session: who is logged in, log-out link, read-only badge, version. */
  function applySession() {
    const s = state.session || {};
    const h = s.holder;
    $('holder').hidden = !h;
    $('holder').textContent = h ? `${h.name} (${h.role})` : '';
    $('logout').hidden = !(s.token_required && s.authenticated);
    $('readonly').hidden = !!s.can_change || needsLogin();
    $('version').textContent = s.version ? `kappa ${s.version}` : '';
  }

  function boot() {
    document.body.dataset.updates = '0';
    setupTheme();
    $('error-close').addEventListener('click', hideError);
    $('logout').addEventListener('click', (ev) => {
      ev.preventDefault();
      api('/api/logout', { method: 'POST' })
        .then(() => api('/api/session'))
        .then((s) => {
          state.session = s;
          applySession();
          stopEvents();
          if (!needsLogin()) startEvents();
          route();
        })
        .catch((e) => report(e));
    });
    window.addEventListener('hashchange', route);
    api('/api/session').then((s) => {
      state.session = s || {};
      applySession();
      startEvents();
      route();
    }).catch((e) => {
      fill($('app'), section('Cannot reach the dashboard', el('p', null, e.message)));
      report(e);
    });
  }

  boot();
})();
