// The console's script layer: CSRF on htmx writes, one EventSource for live updates, charts (uPlot),
// and log following. Pages work without it (plain links and forms); it only keeps them current.
"use strict";

(function () {
  const WINDOW_S = 600; // what a chart keeps: the last 10 minutes
  const SERIES = [
    { label: "CPU %", stroke: "#0550ae" },
    { label: "Memory %", stroke: "#116329" },
    { label: "GPU %", stroke: "#8250df" },
  ];
  const charts = []; // {plot, data, key} where key picks the samples that feed it

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // ------------------------------------------------------------------ charts
  function makeChart(element, rows, key) {
    if (!window.uPlot) return;
    const data = [[], [], [], []];
    for (const r of rows) appendRow(data, r);
    const plot = new window.uPlot(
      {
        width: Math.max(element.clientWidth, 320),
        height: 200,
        scales: { y: { range: [0, 100] } },
        series: [{}].concat(SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5 }))),
        axes: [{}, { values: (u, ticks) => ticks.map((v) => v + "%") }],
      },
      data,
      element
    );
    charts.push({ plot, data, key });
  }

  function appendRow(data, r) {
    const last = data[0].length ? data[0][data[0].length - 1] : -Infinity;
    if (r.at_s <= last) return false;
    data[0].push(r.at_s);
    data[1].push(r.cpu_percent);
    data[2].push(r.memory_percent);
    data[3].push(r.gpu_percent === undefined ? null : r.gpu_percent);
    while (data[0].length && data[0][0] < r.at_s - WINDOW_S) data.forEach((col) => col.shift());
    return true;
  }

  const PALETTE = ["#0550ae", "#116329", "#8250df", "#bc4c00", "#a40e26"];

  // A chart of recorded series (a service's demand and forecast, its replicas and forecast band):
  // {labels, rows: [[x, y1, y2, ...]], band: [i, j]} in a JSON block inside the element.
  function seriesChart(element) {
    const block = element.querySelector('script[type="application/json"]');
    if (!block || !window.uPlot) return;
    const spec = JSON.parse(block.textContent);
    const data = spec.labels.map(() => []);
    data.push([]);
    for (const row of spec.rows) row.forEach((v, i) => data[i].push(v));
    const series = [{}].concat(
      spec.labels.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false }))
    );
    const options = { width: Math.max(element.clientWidth, 320), height: 200, series };
    if (spec.band) options.bands = [{ series: [spec.band[1], spec.band[0]], fill: "rgba(130, 80, 223, 0.15)" }];
    new window.uPlot(options, data, element);
  }

  function initCharts() {
    document.querySelectorAll('[data-chart="series"]').forEach(seriesChart);
    const tierData = document.getElementById("tier-history");
    const history = tierData ? JSON.parse(tierData.textContent) : {};
    document.querySelectorAll('[data-chart="tier"]').forEach((el) => {
      makeChart(el, history[el.dataset.tier] || [], { tier: el.dataset.tier });
    });
    const nodeData = document.getElementById("node-history");
    document.querySelectorAll('[data-chart="node"]').forEach((el) => {
      makeChart(el, nodeData ? JSON.parse(nodeData.textContent) : [], { node: el.dataset.node });
    });
  }

  function mean(values) {
    const known = values.filter((v) => v !== null && v !== undefined);
    return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
  }

  function feedCharts(nodes) {
    for (const chart of charts) {
      let row = null;
      if (chart.key.node) {
        const n = nodes.find((x) => x.id === chart.key.node);
        if (n && n.at_s) row = n;
      } else {
        const alive = nodes.filter((x) => x.tier === chart.key.tier && x.status === "alive" && x.at_s);
        if (alive.length) {
          row = {
            at_s: Math.max(...alive.map((x) => x.at_s)),
            cpu_percent: mean(alive.map((x) => x.cpu_percent)),
            memory_percent: mean(alive.map((x) => x.memory_percent)),
            gpu_percent: mean(alive.map((x) => x.gpu_percent)),
          };
        }
      }
      if (row && appendRow(chart.data, row)) chart.plot.setData(chart.data);
    }
  }

  // ------------------------------------------------------------------ live updates
  function setStatus(element, value, prefix) {
    if (!element || element.textContent === value) return;
    element.textContent = value;
    element.className = "status " + prefix + value;
  }

  function percent(v) {
    return v === null || v === undefined ? "–" : Math.round(v) + "%";
  }

  function refresh(selector, eventName) {
    document.querySelectorAll(selector).forEach((el) => window.htmx && window.htmx.trigger(el, eventName));
  }

  function clockTime(at) {
    return at ? new Date(at * 1000).toISOString().slice(0, 19).replace("T", " ") : "";
  }

  function fill(row, c) {
    const set = (field, value) => {
      const cell = row.querySelector('[data-field="' + field + '"]');
      if (cell && value !== undefined) cell.textContent = value === null ? "" : value;
    };
    setStatus(row.querySelector('[data-field="status"]'), c.status, "status-");
    set("restarts", c.restarts);
    set("exit", c.exit_code);
  }

  // A job the table does not show yet, drawn from the page's own row template (no request).
  function insertRow(table, c) {
    const template = document.getElementById("job-row-template");
    const body = table.querySelector("[data-job-rows]");
    if (!template || !body) return;
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.jobRow = c.job_id;
    const link = row.querySelector('[data-field="link"]');
    link.href = "/ui/jobs/" + encodeURIComponent(c.job_id);
    link.textContent = c.job_id;
    const values = {
      name: c.name, owner: c.owner, kind: c.kind, replicas: c.replicas, cpus: c.cpu_milli / 1000,
      gpus: c.gpu_milli / 1000, submitted: clockTime(c.submitted_at),
    };
    for (const [field, value] of Object.entries(values)) {
      row.querySelector('[data-field="' + field + '"]').textContent = value;
    }
    row.dataset.seq = c.seq;
    fill(row, c);
    // Newest first, as the server orders the page: before the first row that is older.
    const next = Array.from(body.children).find((r) => Number(r.dataset.seq) < c.seq);
    body.insertBefore(row, next || null);
    trim(table, body);
  }

  // A job that now matches the table's filter: counted once, drawn when it falls within this page.
  function admit(table, c) {
    const body = table.querySelector("[data-job-rows]");
    const newest = Number(table.dataset.maxSeq || 0);
    // Without a state filter only a new submission is new here; an older job was counted already.
    if (!table.dataset.statusFilter && c.seq <= newest) return;
    bumpTotal(table, 1);
    table.dataset.maxSeq = Math.max(newest, c.seq);
    const last = body && body.lastElementChild;
    const size = Number(table.dataset.pageSize || 50);
    if (body && (body.children.length < size || !last || c.seq > Number(last.dataset.seq))) insertRow(table, c);
  }

  // The page keeps its size: rows pushed past it leave, and "Older" starts after the last row shown.
  function trim(table, body) {
    const size = Number(table.dataset.pageSize || 50);
    if (body.children.length <= size) return;
    while (body.children.length > size) body.lastElementChild.remove();
    const older = table.querySelector("[data-older]");
    if (older) {
      const url = new URL(older.href, window.location.href);
      url.searchParams.set("before", body.lastElementChild.dataset.seq);
      older.href = url.pathname + url.search;
      older.hidden = false;
    }
  }

  function bumpTotal(table, delta) {
    const total = table.querySelector("[data-total]");
    if (total) total.textContent = Number(total.textContent) + delta;
  }

  // Whether a job belongs in the live table's filter; null when the page cannot tell (a tier filter).
  function matches(table, c) {
    if (table.dataset.tierFilter) return null;
    if (table.dataset.statusFilter && table.dataset.statusFilter !== c.status) return false;
    return !table.dataset.ownerFilter || table.dataset.ownerFilter === c.owner;
  }

  function onJobs(payload) {
    const table = document.querySelector('#jobs-table[data-live="1"]');
    let undecided = false;
    for (const c of payload.changes) {
      const rows = document.querySelectorAll('[data-job-row="' + CSS.escape(c.job_id) + '"]');
      rows.forEach((row) => fill(row, c));
      const belongs = table ? matches(table, c) : false;
      const shown = table && table.querySelector('[data-job-row="' + CSS.escape(c.job_id) + '"]');
      if (belongs === null) undecided = true;
      else if (belongs && !shown) admit(table, c);
      else if (!belongs && shown) {
        shown.remove();
        bumpTotal(table, -1);
      }
      refresh('[data-job-summary="' + CSS.escape(c.job_id) + '"]', "job-changed");
    }
    if (undecided) refresh("#jobs-table", "jobs-refresh");
    refresh("#queue", "jobs-refresh");
    if (payload.counts) {
      for (const [status, n] of Object.entries(payload.counts)) {
        document.querySelectorAll('[data-count="' + status + '"]').forEach((el) => (el.textContent = n));
      }
    }
  }

  function tierCounts(nodes) {
    document.querySelectorAll("article.tier[data-tier]").forEach((card) => {
      const mine = nodes.filter((n) => n.tier === card.dataset.tier);
      const lost = mine.filter((n) => n.status !== "alive").length;
      const alive = card.querySelector("[data-alive]");
      const lostText = card.querySelector("[data-lost]");
      if (alive) alive.textContent = mine.length - lost;
      if (lostText) {
        lostText.textContent = lost;
        lostText.className = lost ? "lost-text" : "";
      }
    });
  }

  function onNodes(payload) {
    const table = document.querySelector("[data-nodes-table]");
    if (table && payload.nodes.some((n) => !table.querySelector('[data-node-row="' + CSS.escape(n.id) + '"]'))) {
      refresh("[data-nodes-table]", "nodes-refresh");
    }
    tierCounts(payload.nodes);
    for (const n of payload.nodes) {
      document.querySelectorAll('[data-node-row="' + CSS.escape(n.id) + '"]').forEach((row) => {
        setStatus(row.querySelector('[data-field="node-status"]'), n.status, "node-");
        if (row.tagName === "TR") row.className = "node-row-" + n.status;
        for (const key of ["cpu", "memory", "gpu"]) {
          const cell = row.querySelector('[data-util="' + key + '"]');
          if (cell) cell.textContent = percent(n[key + "_percent"]);
        }
      });
    }
    feedCharts(payload.nodes);
  }

  function connect() {
    const topics = document.body.dataset.topics;
    if (!topics || !window.EventSource) return;
    const params = new URLSearchParams({ topics });
    if (document.body.dataset.lastEvent) params.set("last_event", document.body.dataset.lastEvent);
    const source = new EventSource("/ui/events?" + params.toString());
    const status = document.getElementById("live-status");
    let renewing = false; // the server ended the stream on purpose: reconnecting is routine, not news
    const show = (text) => status && (status.textContent = text);
    source.addEventListener("open", () => show("live"));
    source.addEventListener("renew", () => (renewing = true));
    source.addEventListener("error", () => {
      if (!renewing) show("reconnecting…");
      renewing = false;
    });
    source.addEventListener("jobs", (e) => onJobs(JSON.parse(e.data)));
    source.addEventListener("nodes", (e) => onNodes(JSON.parse(e.data)));
    source.addEventListener("resync", () => {
      refresh('#jobs-table[data-live="1"], #queue', "jobs-refresh");
      refresh("[data-job-summary]", "job-changed");
    });
  }

  // ------------------------------------------------------------------ logs
  function followLogs() {
    const pre = document.getElementById("logs");
    if (!pre || pre.dataset.follow !== "1" || !window.EventSource) return;
    const follow = document.getElementById("follow");
    const state = document.getElementById("log-state");
    const url = "/ui/jobs/" + encodeURIComponent(pre.dataset.job) + "/logs/stream?after=" + pre.dataset.after;
    const source = new EventSource(url);
    source.addEventListener("lines", (e) => {
      for (const ln of JSON.parse(e.data)) {
        const span = document.createElement("span");
        span.className = "ln";
        span.textContent = "[" + ln.rank + "] " + ln.line + "\n";
        pre.appendChild(span);
      }
      if (follow && follow.checked) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", () => {
      source.close();
      if (state) state.textContent = "the job finished";
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.body.addEventListener("htmx:configRequest", (e) => {
      e.detail.headers["X-CSRF-Token"] = csrfToken();
    });
    initCharts();
    connect();
    followLogs();
  });
})();
