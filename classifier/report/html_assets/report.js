/* portclass HTML report: the flow table (filter, sort, paginate).
   Rows come from the JSON block #pc-data (layout: classifier.report.html.table_payload); cells are
   filled with textContent only, so nothing from traffic or the registry is ever parsed as HTML. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("pc-data").textContent);
  var rows = D.rows;
  var N = rows.length;
  var SEV = 0, CH = 1, CP = 2, SH = 3, SP = 4, TR = 5, SV = 6, ST = 7, FL = 8, PK = 9, BY = 10, TS = 11, RU = 12, V6 = 13;
  var PR = 14, VD = 15, SN = 16, NT = 17, FI = 18, CS = 19;
  var nf = new Intl.NumberFormat("en-US");

  var table = document.getElementById("pc-table");
  var tbody = table.tBodies[0];
  var filterBox = document.getElementById("pc-filter");
  var flaggedBox = document.getElementById("pc-flagged");
  var sizeBox = document.getElementById("pc-pagesize");
  var countEl = document.getElementById("pc-count");
  var pageEl = document.getElementById("pc-page");
  var prevBtn = document.getElementById("pc-prev");
  var nextBtn = document.getElementById("pc-next");

  function rankOf(names) {
    var idx = names.map(function (_, i) { return i; });
    idx.sort(function (a, b) { return names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b; });
    var r = new Array(names.length);
    idx.forEach(function (v, i) { r[v] = i; });
    return r;
  }
  var statusRank = rankOf(D.statuses);
  var ruleRank = rankOf(D.rules);

  function endpoint(h, p, v6) {
    var a = D.hosts[h];
    return (v6 ? "[" + a + "]" : a) + ":" + p;
  }
  function when(us) {
    var ms = D.base_ms + Math.floor(us / 1000);
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }
  function humanBytes(n) {
    var units = ["B", "kB", "MB", "GB", "TB"];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(n) < 1000 || i === units.length - 1) {
        return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
      }
      n /= 1000;
    }
    return String(n);
  }
  function serviceName(r) { return r[SV] >= 0 ? D.services[r[SV]] : ""; }
  function protocolName(r) { return r[PR] >= 0 ? D.protocols[r[PR]][0] : ""; }
  function verdictName(r) { return D.inspected ? D.verdicts[r[VD]] : "not inspected"; }
  function serverName(r) { return r[SN] >= 0 ? D.server_names[r[SN]] : ""; }
  function filePath(r) { return r[FI] >= 0 ? D.files[r[FI]] : ""; }
  function fileName(r) { var p = filePath(r); return p.slice(p.lastIndexOf("/") + 1); }
  function stateName(r) { return r[CS] >= 0 ? D.states[r[CS]] : ""; }
  var fileRank = rankOf(D.files.map(function (p) { return p.slice(p.lastIndexOf("/") + 1); }));
  var stateRank = rankOf(D.states);

  /* Column id -> sort key, first direction (-1: largest first) and searchable text. */
  var COLS = {
    client: { dir: 1, key: function (r) { return r[CH] * 65536 + r[CP]; } },
    server: { dir: 1, key: function (r) { return r[SH] * 65536 + r[SP]; } },
    port: { dir: 1, key: function (r) { return r[SP] * 64 + r[TR]; } },
    service: { dir: 1, key: function (r) { return r[SV] < 0 ? 1e9 : r[SV]; } },
    payload: { dir: 1, key: function (r) { return D.verdict_rank[r[VD]] * 256 + (r[PR] < 0 ? 255 : r[PR]); } },
    status: { dir: 1, key: function (r) { return statusRank[r[ST]]; } },
    flags: { dir: -1, key: function (r) { return r[SEV] * 4096 + r[FL]; } },
    packets: { dir: -1, key: function (r) { return r[PK]; } },
    bytes: { dir: -1, key: function (r) { return r[BY]; } },
    first: { dir: 1, key: function (r) { return r[TS]; } },
    rule: { dir: 1, key: function (r) { return ruleRank[r[RU]]; } },
    state: { dir: 1, key: function (r) { return r[CS] < 0 ? 1e9 : stateRank[r[CS]]; } },
    file: { dir: 1, key: function (r) { return r[FI] < 0 ? 1e9 : fileRank[r[FI]]; } }
  };

  var hay = null;
  function haystack(i) {
    var r = rows[i];
    return [
      endpoint(r[CH], r[CP], r[V6]), D.hosts[r[SH]], r[SP] + "/" + D.transports[r[TR]], serviceName(r),
      protocolName(r), r[PR] >= 0 ? D.protocols[r[PR]][1] : "", verdictName(r), serverName(r), D.statuses[r[ST]], D.flag_sets[r[FL]].join(" "), nf.format(r[PK]), nf.format(r[BY]), when(r[TS]),
      D.rules[r[RU]], stateName(r), fileName(r)
    ].join(" \u0000 ").toLowerCase();
  }

  var state = { col: null, dir: 1, page: 0, size: Number(sizeBox.value) || 100 };
  var view = [];

  function applyFilter() {
    var tokens = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    var flaggedOnly = flaggedBox.checked;
    if (tokens.length && hay === null) {
      hay = new Array(N);
      for (var h = 0; h < N; h++) hay[h] = haystack(h);
    }
    view = [];
    for (var i = 0; i < N; i++) {
      if (flaggedOnly && rows[i][SEV] === 0) continue;
      var ok = true;
      for (var t = 0; t < tokens.length && ok; t++) ok = hay[i].indexOf(tokens[t]) !== -1;
      if (ok) view.push(i);
    }
    applySort();
  }

  function applySort() {
    if (state.col !== null) {
      var keyOf = COLS[state.col].key, dir = state.dir;
      var keys = new Float64Array(N);
      for (var j = 0; j < view.length; j++) keys[view[j]] = keyOf(rows[view[j]]);
      view.sort(function (a, b) { return (keys[a] - keys[b]) * dir || a - b; });
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var c = th.getAttribute("data-col");
      th.setAttribute("aria-sort", c === state.col ? (state.dir > 0 ? "ascending" : "descending") : "none");
    });
    state.page = 0;
    draw();
  }

  function td(text, cls) {
    var el = document.createElement("td");
    if (cls) el.className = cls;
    el.textContent = text;
    return el;
  }

  function span(text, cls) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  /* Observed protocol (ECS name, as network.protocol), the verdict, and the TLS server name (from
     packets: hostile input, text only). */
  function payloadCell(r) {
    var el = document.createElement("td");
    el.className = "payload";
    if (!D.inspected) {
      el.appendChild(span("not inspected", "none"));
      el.title = "payload not inspected (--dissect none): the label rests on the port number only";
      return el;
    }
    var proto = protocolName(r);
    var v = D.verdicts[r[VD]];
    el.appendChild(span(proto || "\u2014", proto ? "proto" : "proto none"));
    el.appendChild(document.createTextNode(" "));
    el.appendChild(span(v === "mismatch" ? "MISMATCH" : v, "vd vd-" + v));
    var sni = serverName(r);
    if (sni) {
      var s = span(sni, "sni");
      s.title = "TLS server name (SNI): " + sni;
      el.appendChild(document.createTextNode(" "));
      el.appendChild(s);
    }
    var tip = r[NT] >= 0 ? D.notes[r[NT]] : proto ? D.protocols[r[PR]][1] + ": " + v : "nothing recognised: " + v;
    el.title = tip;
    return el;
  }

  function rowEl(i) {
    var r = rows[i];
    var tr = document.createElement("tr");
    tr.className = "sev-" + r[SEV];
    tr.setAttribute("data-row", String(i));
    tr.appendChild(td(endpoint(r[CH], r[CP], r[V6]), "addr"));
    tr.appendChild(td(D.hosts[r[SH]], "addr"));
    tr.appendChild(td(r[SP] + "/" + D.transports[r[TR]], "num"));
    var svc = td(serviceName(r) || "\u2014", r[SV] >= 0 ? "svc" : "svc none");
    if (r[SV] >= 0 && D.descs[r[SV]]) svc.title = D.descs[r[SV]];
    tr.appendChild(svc);
    tr.appendChild(payloadCell(r));
    var st = document.createElement("td");
    var pill = document.createElement("span");
    pill.className = "st st-" + D.statuses[r[ST]];
    pill.textContent = D.statuses[r[ST]];
    st.appendChild(pill);
    tr.appendChild(st);
    var fl = document.createElement("td");
    fl.className = "flags";
    D.flag_sets[r[FL]].forEach(function (name) {
      var chip = document.createElement("span");
      chip.className = "chip s" + (D.flag_severity[name] || 0);
      chip.textContent = name;
      fl.appendChild(chip);
    });
    tr.appendChild(fl);
    tr.appendChild(td(nf.format(r[PK]), "num"));
    var b = td(nf.format(r[BY]), "num");
    b.title = humanBytes(r[BY]);
    tr.appendChild(b);
    var cs = td(stateName(r) || "\u2014", "state");
    if (r[CS] >= 0) cs.title = "Zeek conn_state " + D.states[r[CS]] + ": " + D.state_meanings[r[CS]];
    tr.appendChild(cs);
    var full = when(r[TS]);
    var ts = td(D.day ? full.slice(11) : full, "ts");  /* one-day capture: the date is in the header */
    ts.title = full + " UTC";
    tr.appendChild(ts);
    tr.appendChild(td(D.rules[r[RU]], ""));
    var fi = td(fileName(r) || "\u2014", "file");
    if (r[FI] >= 0) fi.title = filePath(r);
    tr.appendChild(fi);
    return tr;
  }

  function draw() {
    var pages = Math.max(1, Math.ceil(view.length / state.size));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * state.size;
    var end = Math.min(view.length, start + state.size);
    var frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) frag.appendChild(rowEl(view[k]));
    tbody.textContent = "";
    tbody.appendChild(frag);
    var filtered = view.length !== N;
    countEl.textContent = view.length
      ? "Showing " + nf.format(start + 1) + "\u2013" + nf.format(end) + " of " + nf.format(view.length) + " flows" +
        (filtered ? " (filtered from " + nf.format(N) + ")" : "")
      : "No flows match" + (N ? " (of " + nf.format(N) + ")" : "");
    countEl.setAttribute("data-matches", String(view.length));
    pageEl.textContent = "Page " + nf.format(state.page + 1) + " of " + nf.format(pages);
    prevBtn.disabled = state.page === 0;
    nextBtn.disabled = state.page >= pages - 1;
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var col = th.getAttribute("data-col");
    th.querySelector("button").addEventListener("click", function () {
      if (state.col === col) state.dir = -state.dir;
      else { state.col = col; state.dir = COLS[col].dir; }
      applySort();
    });
  });
  var timer = null;
  filterBox.addEventListener("input", function () {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(function () { timer = null; applyFilter(); }, 120);
  });
  flaggedBox.addEventListener("change", applyFilter);
  document.getElementById("pc-reset").addEventListener("click", function () {
    state.col = null;
    applyFilter();
  });
  sizeBox.addEventListener("change", function () {
    state.size = Number(sizeBox.value) || 100;
    state.page = 0;
    draw();
  });
  prevBtn.addEventListener("click", function () { if (state.page > 0) { state.page--; draw(); } });
  nextBtn.addEventListener("click", function () { state.page++; draw(); });

  applyFilter();
})();
