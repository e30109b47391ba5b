// Corvus dashboard: polls the broker's admin API (/api/v1) and draws what it says.
//
// Plain browser JavaScript, no framework and no build step: the broker embeds this file as
// it is. Charts are SVG drawn here. Rates are computed from the deltas of the broker's
// counters between two polls, so the page needs nothing but `GET /api/v1/stats`.
//
// Stable hooks for tests and tools: `body[data-state]` (loading, live, auth, error), each
// chart's `data-points` (samples plotted) and `data-max` (largest value plotted), client
// rows' `data-client-id`, topic rows' `data-topic` and `data-rate`, reason items'
// `data-reason` and `data-count`.

'use strict';

(() => {
  // How much history the charts keep: enough to see a trend, little enough to read a spike.
  const HISTORY_MS = 180 * 1000;
  const STATS_EVERY_MS = 1000;
  // Listings walk the broker's sessions: polled less often than the counters.
  const TOPICS_EVERY_MS = 2000;
  const CLIENTS_EVERY_MS = 3000;
  const CLIENTS_LIMIT = 50;
  const SEARCH_DEBOUNCE_MS = 250;
  const TOKEN_KEY = 'corvus.dashboard.token';

  // Resolved against the page, so a reverse proxy that mounts the broker under a prefix
  // still works.
  const API = new URL('../api/v1/', location.href);
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---- formatting ----

  const grouped = new Intl.NumberFormat('en-US');

  function fmtCount(v) {
    if (!Number.isFinite(v)) return '–';
    if (Math.abs(v) >= 1e9) return (v / 1e9).toFixed(1) + 'G';
    if (Math.abs(v) >= 1e7) return (v / 1e6).toFixed(1) + 'M';
    return grouped.format(Math.round(v));
  }

  function fmtRate(v) {
    if (!Number.isFinite(v)) return '–';
    if (v === 0) return '0';
    if (v < 10) return v.toFixed(1);
    if (v < 10000) return grouped.format(Math.round(v));
    if (v < 1e6) return (v / 1e3).toFixed(1) + 'k';
    return (v / 1e6).toFixed(2) + 'M';
  }

  function fmtBytes(v) {
    if (!Number.isFinite(v)) return '–';
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
  }

  // The two most significant units: "3d 4h", "12m 5s".
  function fmtDuration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '–';
    const s = Math.floor(seconds);
    const parts = [
      [Math.floor(s / 86400), 'd'],
      [Math.floor((s % 86400) / 3600), 'h'],
      [Math.floor((s % 3600) / 60), 'm'],
      [s % 60, 's'],
    ];
    const first = parts.findIndex(([n]) => n > 0);
    if (first < 0) return '0s';
    return parts
      .slice(first, first + 2)
      .filter(([n], i) => i === 0 || n > 0)
      .map(([n, u]) => n + u)
      .join(' ');
  }

  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // ---- the token ----

  let token = null;

  function loadToken() {
    // A token in the fragment (`#token=...`) never reaches a server or a log; it is moved to
    // session storage and taken out of the address bar so it does not linger on screen.
    const fragment = new URLSearchParams(location.hash.slice(1));
    const fromFragment = fragment.get('token');
    if (fromFragment) {
      saveToken(fromFragment);
      fragment.delete('token');
      const rest = fragment.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
      return;
    }
    try {
      token = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      // Storage may be disabled: the token then lives in this page only.
    }
  }

  function saveToken(value) {
    token = value;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (_) {
      // As above: kept in memory.
    }
  }

  class AuthNeeded extends Error {
    constructor(sent) {
      super('a bearer token is required');
      // The token the refused request carried: a refusal of an older one is stale.
      this.sent = sent;
    }
  }

  class HttpError extends Error {
    constructor(status, text) {
      super(text || 'HTTP ' + status);
      this.status = status;
    }
  }

  async function api(path) {
    const sent = token;
    const headers = { Accept: 'application/json' };
    if (sent) headers.Authorization = 'Bearer ' + sent;
    const response = await fetch(new URL(path, API), { headers, cache: 'no-store' });
    if (response.status === 401) throw new AuthNeeded(sent);
    if (!response.ok) {
      let text = '';
      try {
        text = (await response.text()).trim();
        // The API's errors are `{"error": "..."}`; other refusals are plain text.
        if (text.startsWith('{')) text = JSON.parse(text).error || text;
      } catch (_) {
        // The status says enough.
      }
      throw new HttpError(response.status, text);
    }
    return response.json();
  }

  // ---- page state ----

  let authNeeded = false;

  function setState(state, text) {
    document.body.dataset.state = state;
    const status = $('status');
    status.dataset.status = state;
    $('status-text').textContent = text;
  }

  function showBanner(text) {
    const banner = $('banner');
    banner.textContent = text;
    banner.hidden = !text;
  }

  function showAuth(refused) {
    authNeeded = true;
    setState('auth', 'token required');
    $('auth').hidden = false;
    $('auth-error').hidden = !refused;
    const input = $('auth-token');
    input.value = '';
    input.focus();
  }

  function onError(e) {
    if (e instanceof AuthNeeded) {
      // Answered after the user gave a new token: that one is still being tried.
      if (e.sent !== token) return;
      // A token we sent was refused: say so, rather than ask as if for the first time.
      showAuth(Boolean(e.sent));
    } else if (e instanceof HttpError) {
      setState('error', 'error ' + e.status);
      const why =
        e.status === 403
          ? 'The broker refused this page: ' + e.message + '. Configure [http] token to open the dashboard from another host.'
          : 'The broker answered ' + e.status + ': ' + e.message;
      showBanner(why);
    } else {
      setState('error', 'unreachable');
      showBanner('Cannot reach the broker (' + (e && e.message ? e.message : e) + '); retrying.');
    }
  }

  // A poll repeats `every` ms after the previous one ended (never two at once); `now()` asks
  // for one at once, or right after the one in progress.
  function poller(every, fn) {
    let timer = null;
    let running = false;
    let again = false;
    async function tick() {
      timer = null;
      if (authNeeded) return;
      running = true;
      try {
        await fn();
      } catch (e) {
        onError(e);
      } finally {
        running = false;
      }
      if (authNeeded) return;
      timer = setTimeout(tick, again ? 0 : every);
      again = false;
    }
    return {
      now() {
        if (running) {
          again = true;
          return;
        }
        if (timer) clearTimeout(timer);
        tick();
      },
    };
  }

  // ---- charts ----

  // A step of 1, 2, 2.5 or 5 times a power of ten giving about `count` intervals up to max.
  function niceStep(max, count, integer) {
    const raw = max / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = magnitude * 10;
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (raw <= m * magnitude) {
        step = m * magnitude;
        break;
      }
    }
    return integer ? Math.max(1, Math.ceil(step)) : step;
  }

  class LineChart {
    // series: [{ key, cls, label, fill }]; integer: whether values are counts.
    constructor(node, series, { integer, format }) {
      this.node = node;
      this.series = series;
      this.integer = integer;
      this.format = format;
      this.times = [];
      this.values = series.map(() => []);
      this.hover = null;
      this.node.addEventListener('mousemove', (e) => this.onMove(e));
      this.node.addEventListener('mouseleave', () => {
        this.hover = null;
        this.drawHover();
      });
    }

    push(time, values) {
      this.times.push(time);
      values.forEach((v, i) => this.values[i].push(v));
      const oldest = time - HISTORY_MS;
      while (this.times.length && this.times[0] < oldest) {
        this.times.shift();
        this.values.forEach((vs) => vs.shift());
      }
    }

    max() {
      let max = 0;
      for (const vs of this.values) for (const v of vs) max = Math.max(max, v);
      return max;
    }

    render() {
      const width = this.node.clientWidth;
      const height = this.node.clientHeight;
      if (!width || !height) return;
      const pad = { left: 44, right: 8, top: 8, bottom: 22 };
      const plotW = width - pad.left - pad.right;
      const plotH = height - pad.top - pad.bottom;
      const max = this.max();
      this.node.dataset.points = String(this.times.length);
      this.node.dataset.max = String(Math.round(max * 100) / 100);

      // Headroom above the highest point, and a floor so an idle chart still has a scale.
      const ceiling = Math.max(max * 1.08, this.integer ? 4 : 1);
      const step = niceStep(ceiling, 4, this.integer);
      const top = Math.ceil(ceiling / step) * step;
      const now = this.times.length ? this.times[this.times.length - 1] : Date.now();
      const start = now - HISTORY_MS;
      const x = (t) => pad.left + ((t - start) / HISTORY_MS) * plotW;
      const y = (v) => pad.top + plotH - (v / top) * plotH;
      this.geometry = { x, y, pad, plotW, plotH, start };

      const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
      const defs = svg('defs');
      for (const s of this.series) {
        if (!s.fill) continue;
        const gradient = svg('linearGradient', { id: 'fill-' + s.cls, x1: 0, y1: 0, x2: 0, y2: 1 });
        gradient.append(
          svg('stop', { offset: '0%', 'stop-color': s.fill, 'stop-opacity': 0.28 }),
          svg('stop', { offset: '100%', 'stop-color': s.fill, 'stop-opacity': 0 }),
        );
        defs.append(gradient);
      }
      root.append(defs);

      for (let v = 0; v <= top + step / 2; v += step) {
        const yy = Math.round(y(v)) + 0.5;
        root.append(svg('line', { class: 'gridline', x1: pad.left, x2: width - pad.right, y1: yy, y2: yy }));
        const label = svg('text', { class: 'axis-label', x: pad.left - 8, y: yy + 4, 'text-anchor': 'end' });
        label.textContent = this.format(v);
        root.append(label);
      }
      for (const minutesAgo of [3, 2, 1, 0]) {
        const label = svg('text', {
          class: 'axis-label',
          x: x(now - minutesAgo * 60000),
          y: height - 5,
          'text-anchor': minutesAgo === 3 ? 'start' : minutesAgo === 0 ? 'end' : 'middle',
        });
        label.textContent = minutesAgo ? `-${minutesAgo}m` : 'now';
        root.append(label);
      }

      if (this.times.length < 2) {
        const waiting = svg('text', { class: 'waiting', x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle' });
        waiting.textContent = 'collecting data…';
        root.append(waiting);
      } else {
        // Sessions (a dashed line) under connections, "out" over "in": draw in reverse order
        // so the first series, the one the legend leads with, is on top.
        for (let i = this.series.length - 1; i >= 0; i--) {
          const s = this.series[i];
          const points = this.times.map((t, j) => `${x(t).toFixed(1)},${y(this.values[i][j]).toFixed(1)}`);
          const group = svg('g', { class: s.cls });
          if (s.fill) {
            const baseline = y(0).toFixed(1);
            const first = x(this.times[0]).toFixed(1);
            const last = x(this.times[this.times.length - 1]).toFixed(1);
            group.append(svg('path', { class: 'area', d: `M${first},${baseline} L${points.join(' L')} L${last},${baseline} Z` }));
          }
          group.append(svg('path', { class: 'line', d: 'M' + points.join(' L') }));
          root.append(group);
        }
      }
      this.hoverLayer = svg('g', { class: 'hover' });
      root.append(this.hoverLayer);
      this.node.replaceChildren(root);
      this.drawHover();
    }

    onMove(event) {
      if (this.times.length < 2 || !this.geometry) return;
      const rect = this.node.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const { pad, plotW, start } = this.geometry;
      const t = start + ((px - pad.left) / plotW) * HISTORY_MS;
      let best = 0;
      for (let i = 1; i < this.times.length; i++) {
        if (Math.abs(this.times[i] - t) < Math.abs(this.times[best] - t)) best = i;
      }
      this.hover = { time: this.times[best], clientX: event.clientX, clientY: event.clientY };
      this.drawHover();
    }

    drawHover() {
      const tooltip = $('tooltip');
      if (!this.hoverLayer) return;
      this.hoverLayer.replaceChildren();
      const i = this.hover ? this.times.indexOf(this.hover.time) : -1;
      if (i < 0) {
        if (tooltip.dataset.owner === this.node.id) tooltip.hidden = true;
        return;
      }
      const { x, y, pad, plotH } = this.geometry;
      const xx = x(this.times[i]);
      this.hoverLayer.append(svg('line', { class: 'cursor', x1: xx, x2: xx, y1: pad.top, y2: pad.top + plotH }));
      const rows = [el('div', { class: 't' }, fmtClock(this.times[i]))];
      this.series.forEach((s, k) => {
        const g = svg('g', { class: s.cls });
        g.append(svg('circle', { class: 'dot', cx: xx, cy: y(this.values[k][i]), r: 4 }));
        this.hoverLayer.append(g);
        rows.push(el('div', { class: 'row' }, el('span', {}, s.label), el('b', {}, this.format(this.values[k][i]))));
      });
      tooltip.replaceChildren(...rows);
      tooltip.dataset.owner = this.node.id;
      tooltip.hidden = false;
      const left = Math.min(this.hover.clientX + 14, window.innerWidth - tooltip.offsetWidth - 8);
      tooltip.style.left = left + 'px';
      tooltip.style.top = this.hover.clientY + 14 + 'px';
    }
  }

  const rateChart = new LineChart(
    $('chart-rate'),
    [
      { key: 'in', cls: 's0', label: 'in', fill: '#4cc2ff' },
      { key: 'out', cls: 's1', label: 'out', fill: '#b48cff' },
    ],
    { integer: false, format: fmtRate },
  );
  const connectionsChart = new LineChart(
    $('chart-connections'),
    [
      { key: 'connected', cls: 's2', label: 'connected', fill: '#3ddc97' },
      { key: 'sessions', cls: 's3', label: 'sessions' },
    ],
    { integer: true, format: fmtCount },
  );

  // ---- stats ----

  let previous = null;

  function renderReasons(list, counts, emptyNote) {
    const entries = Object.entries(counts || {});
    list.replaceChildren(
      ...entries.map(([reason, count]) =>
        el(
          'li',
          { class: count > 0 ? 'nonzero' : '', 'data-reason': reason, 'data-count': String(count), title: reason },
          el('span', { class: 'reason' }, reason.replace(/_/g, ' ')),
          el('b', {}, fmtCount(count)),
        ),
      ),
    );
    if (emptyNote) emptyNote.hidden = entries.length > 0;
  }

  function setValue(id, text, value) {
    const node = $(id);
    node.textContent = text;
    node.dataset.value = String(value);
  }

  function onStats(s, now) {
    $('version').textContent = s.version;
    $('uptime').textContent = fmtDuration(s.uptime_seconds);

    let rateIn = null;
    let rateOut = null;
    let bytesIn = null;
    let bytesOut = null;
    let dropRate = null;
    // Counters only grow; a smaller one means the broker restarted: start the deltas again.
    const grew =
      previous &&
      now > previous.time &&
      s.messages_received >= previous.messages_received &&
      s.messages_sent >= previous.messages_sent &&
      s.messages_dropped >= previous.messages_dropped;
    if (grew) {
      const seconds = (now - previous.time) / 1000;
      rateIn = (s.messages_received - previous.messages_received) / seconds;
      rateOut = (s.messages_sent - previous.messages_sent) / seconds;
      bytesIn = Math.max(0, s.bytes_received - previous.bytes_received) / seconds;
      bytesOut = Math.max(0, s.bytes_sent - previous.bytes_sent) / seconds;
      dropRate = (s.messages_dropped - previous.messages_dropped) / seconds;
      rateChart.push(now, [rateIn, rateOut]);
    }
    previous = { time: now, ...s };
    connectionsChart.push(now, [s.clients_connected, s.clients_total]);

    setValue('stat-clients', fmtCount(s.clients_connected), s.clients_connected);
    $('stat-clients-detail').textContent =
      `peak ${fmtCount(s.clients_maximum)} · ${fmtCount(s.clients_disconnected)} offline sessions`;
    $('stat-clients-detail').title = `${fmtCount(s.connections_total)} connections since start`;
    if (rateIn !== null) {
      setValue('stat-rate-in', fmtRate(rateIn), rateIn);
      setValue('stat-rate-out', fmtRate(rateOut), rateOut);
      $('stat-rate-in-detail').textContent = `${fmtBytes(bytesIn)}/s · ${fmtCount(s.messages_received)} total`;
      $('stat-rate-out-detail').textContent = `${fmtBytes(bytesOut)}/s · ${fmtCount(s.messages_sent)} total`;
      $('legend-rate-in').textContent = fmtRate(rateIn) + '/s';
      $('legend-rate-out').textContent = fmtRate(rateOut) + '/s';
    }
    setValue('stat-dropped', fmtCount(s.messages_dropped), s.messages_dropped);
    $('card-dropped').classList.toggle('alert', s.messages_dropped > 0);
    $('stat-dropped-detail').textContent =
      s.messages_dropped === 0
        ? 'nothing dropped since start'
        : `${dropRate ? fmtRate(dropRate) : '0'}/s now · ${fmtCount(s.messages_queued)} queued · ${fmtCount(s.messages_inflight)} in flight`;
    $('legend-connected').textContent = fmtCount(s.clients_connected);
    $('legend-sessions').textContent = fmtCount(s.clients_total);

    renderReasons($('drops'), s.messages_dropped_by_reason, null);
    renderReasons($('refused'), s.connections_refused, $('refused-empty'));
    rateChart.render();
    connectionsChart.render();
  }

  const statsPoll = poller(STATS_EVERY_MS, async () => {
    const stats = await api('stats');
    onStats(stats, Date.now());
    setState('live', 'live');
    showBanner('');
  });

  // ---- top topics ----

  const topicsPoll = poller(TOPICS_EVERY_MS, async () => {
    const top = await api('topics/top?limit=10');
    const items = top.items || [];
    const busiest = items.reduce((m, t) => Math.max(m, t.messages_per_second), 0);
    $('topics-window').textContent = `last ${fmtDuration(top.window_seconds)}`;
    $('topics-body').replaceChildren(
      ...items.map((t) => {
        const bar = el('span');
        bar.style.width = (busiest > 0 ? (100 * t.messages_per_second) / busiest : 0).toFixed(1) + '%';
        return el(
          'tr',
          { 'data-topic': t.topic, 'data-rate': String(t.messages_per_second) },
          el('td', { class: 'topic' }, el('span', { class: 'topic-name', title: t.topic }, t.topic), el('div', { class: 'bar' }, bar)),
          el('td', { class: 'num' }, fmtRate(t.messages_per_second)),
        );
      }),
    );
    $('topics-empty').hidden = items.length > 0;
  });

  // ---- clients ----

  const search = $('client-search');

  // `text` with every case-insensitive occurrence of `needle` marked.
  function highlighted(text, needle) {
    if (!needle) return [text];
    const parts = [];
    const lower = text.toLowerCase();
    const n = needle.toLowerCase();
    let at = 0;
    for (let i = lower.indexOf(n); i >= 0; i = lower.indexOf(n, at)) {
      if (i > at) parts.push(text.slice(at, i));
      parts.push(el('mark', {}, text.slice(i, i + n.length)));
      at = i + n.length;
    }
    if (at < text.length) parts.push(text.slice(at));
    return parts;
  }

  function clientRow(c, needle) {
    const since = Math.max(0, (Date.now() - c.connected_at) / 1000);
    const count = (v, cls) => el('td', { class: 'num' + (cls ? ' ' + cls : '') }, fmtCount(v));
    return el(
      'tr',
      { 'data-client-id': c.client_id },
      el('td', { class: 'id', title: c.client_id }, ...highlighted(c.client_id, needle)),
      c.username === null || c.username === undefined
        ? el('td', { class: 'dim' }, '—')
        : el('td', {}, ...highlighted(c.username, needle)),
      el('td', { class: 'peer' }, ...highlighted(c.peer, needle)),
      el('td', {}, el('span', { class: 'proto' + (c.protocol === '5.0' ? ' v5' : '') }, c.protocol === '5.0' ? 'v5' : 'v3.1.1')),
      el('td', { class: 'num', title: new Date(c.connected_at).toLocaleString() }, fmtDuration(since)),
      count(c.messages_received),
      count(c.messages_sent),
      count(c.queued, c.queued > 0 ? '' : 'dim'),
      count(c.inflight, c.inflight > 0 ? '' : 'dim'),
      count(c.dropped, c.dropped > 0 ? 'bad' : 'dim'),
    );
  }

  const clientsPoll = poller(CLIENTS_EVERY_MS, async () => {
    const needle = search.value.trim();
    const query = new URLSearchParams({ limit: String(CLIENTS_LIMIT) });
    if (needle) query.set('search', needle);
    const page = await api('clients?' + query);
    // The search changed while this was asked: a poll for the new one follows at once.
    if (search.value.trim() !== needle) return;
    const items = page.items || [];
    $('clients-body').replaceChildren(...items.map((c) => clientRow(c, needle)));
    $('clients-count').textContent =
      page.total > items.length
        ? `first ${items.length} of ${fmtCount(page.total)}`
        : `${fmtCount(page.total)} ${needle ? 'matching' : 'connected'}`;
    const empty = $('clients-empty');
    empty.hidden = items.length > 0;
    empty.textContent = needle ? `No client matches “${needle}”.` : 'No clients connected.';
  });

  let debounce = null;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => clientsPoll.now(), SEARCH_DEBOUNCE_MS);
  });

  // ---- start ----

  function startPolling() {
    authNeeded = false;
    statsPoll.now();
    topicsPoll.now();
    clientsPoll.now();
  }

  $('auth-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('auth-token').value.trim();
    if (!value) return;
    saveToken(value);
    $('auth').hidden = true;
    setState('loading', 'connecting');
    startPolling();
  });

  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      rateChart.render();
      connectionsChart.render();
    }, 100);
  });

  loadToken();
  rateChart.render();
  connectionsChart.render();
  startPolling();
})();
