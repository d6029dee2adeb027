"""The viewer's page: inline CSS and a small script that draws the embedded episodes (viewer.py fills it).

The script builds every node with `textContent`, never `innerHTML`: trajectories hold untrusted
model output. No external resource is loaded, so the file works offline and from `file://`.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>__TITLE__</title>
<style>
:root { --ok: #1a7f37; --bad: #cf222e; --err: #9a6700; --muted: #656d76; --line: #d0d7de; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; display: flex; height: 100vh; }
#side { width: 440px; min-width: 320px; border-right: 1px solid var(--line); display: flex; flex-direction: column; }
#side header { padding: 10px 12px; border-bottom: 1px solid var(--line); background: var(--bg2); }
#side h1 { font-size: 15px; margin: 0 0 6px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#stats { color: var(--muted); font-size: 12px; margin-bottom: 8px; }
.filters { display: flex; gap: 6px; flex-wrap: wrap; }
.filters select, .filters input { font: inherit; font-size: 13px; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px; background: white; }
.filters input { flex: 1; min-width: 140px; }
#list { overflow-y: auto; flex: 1; }
.ep-row { display: grid; grid-template-columns: 12px 1fr auto auto; gap: 8px; align-items: center; padding: 5px 12px; border-bottom: 1px solid #eaeef2; cursor: pointer; }
.ep-row:hover { background: #f3f6f9; }
.ep-row.sel { background: #ddf4ff; }
.ep-task { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.ep-meta { color: var(--muted); font-size: 12px; white-space: nowrap; }
.dot { width: 10px; height: 10px; border-radius: 50%; }
.o-resolved { background: var(--ok); } .o-unresolved { background: var(--bad); } .o-error { background: var(--err); } .o-ungraded { background: #8c959f; }
#more { margin: 10px 12px; }
#main { flex: 1; overflow-y: auto; padding: 16px 24px 40px; }
#main h2 { margin: 0 0 8px; font-size: 18px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.badges { display: flex; gap: 6px; flex-wrap: wrap; margin-bottom: 12px; }
.badge { border: 1px solid var(--line); border-radius: 12px; padding: 1px 9px; font-size: 12px; background: var(--bg2); }
.badge.resolved { color: white; background: var(--ok); border-color: var(--ok); }
.badge.unresolved { color: white; background: var(--bad); border-color: var(--bad); }
.badge.error { color: white; background: var(--err); border-color: var(--err); }
h3 { font-size: 14px; margin: 18px 0 6px; }
pre { margin: 0; padding: 8px 10px; background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; white-space: pre-wrap; word-break: break-word; font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; max-height: 420px; overflow: auto; }
pre.diff span { display: block; }
.d-add { background: #dafbe1; color: #116329; } .d-del { background: #ffebe9; color: #82071e; } .d-hunk { color: #0550ae; background: #ddf4ff; } .d-file { font-weight: 600; }
.turn { border: 1px solid var(--line); border-radius: 8px; margin: 10px 0; padding: 8px 12px 10px; }
.turn.fmt { border: 2px solid var(--bad); background: #fff8f7; }
.turn-head { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px; margin-bottom: 4px; }
.fmt-msg { color: var(--bad); font-weight: 600; margin: 2px 0 6px; }
.label { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 6px 0 2px; }
.thought { white-space: pre-wrap; word-break: break-word; }
pre.cmd { background: #1f2328; color: #e6edf3; border-color: #1f2328; }
table.tests { border-collapse: collapse; font-size: 12.5px; }
table.tests td { padding: 2px 10px 2px 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.t-pass { color: var(--ok); font-weight: 600; } .t-fail { color: var(--bad); font-weight: 600; }
.errbox { border: 1px solid var(--err); background: #fff8c5; border-radius: 6px; padding: 6px 10px; white-space: pre-wrap; }
.empty { color: var(--muted); font-style: italic; }
</style>
</head>
<body>
<nav id="side">
  <header>
    <h1 id="title"></h1>
    <div id="stats"><span id="count"></span> · <span id="summary"></span></div>
    <div class="filters">
      <select id="f-outcome" aria-label="outcome"><option value="">all outcomes</option></select>
      <select id="f-exit" aria-label="exit reason"><option value="">all exit reasons</option></select>
      <input id="f-text" type="search" placeholder="search task, command, patch..." aria-label="search">
    </div>
  </header>
  <div id="list"></div>
</nav>
<main id="main"><p class="empty">Select an episode.</p></main>
<script type="application/json" id="swe-rl-data">__DATA__</script>
<script>
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("swe-rl-data").textContent);
  const EPS = DATA.episodes;
  const PAGE_ROWS = 500;  // rows drawn at once: thousands of episodes stay responsive
  let shown = [], limit = PAGE_ROWS, selected = -1;

  // Every node is built from text: nothing from the data is ever parsed as HTML.
  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  function add(parent, ...kids) { for (const k of kids) if (k) parent.appendChild(k); return parent; }
  function $(id) { return document.getElementById(id); }

  function haystack(e) {
    if (e._hay === undefined) {
      const parts = [e.task, e.exit, e.outcome, e.error, e.patch, e.grade ? e.grade.reason : ""];
      for (const s of e.steps) parts.push(s.command || "", s.format_error || "");
      e._hay = parts.join("\n").toLowerCase();
    }
    return e._hay;
  }

  function fillSelect(id, values) {
    const sel = $(id);
    for (const v of values) { const o = el("option", null, v); o.value = v; sel.appendChild(o); }
  }

  function counts(key) {
    const c = {};
    for (const e of EPS) c[e[key]] = (c[e[key]] || 0) + 1;
    return c;
  }

  function applyFilters() {
    const fo = $("f-outcome").value, fe = $("f-exit").value, q = $("f-text").value.trim().toLowerCase();
    shown = EPS.filter(e => (!fo || e.outcome === fo) && (!fe || e.exit === fe) && (!q || haystack(e).includes(q)));
    limit = PAGE_ROWS;
    drawList();
  }

  function drawList() {
    const list = $("list");
    list.replaceChildren();
    const frag = document.createDocumentFragment();
    for (const e of shown.slice(0, limit)) {
      const row = el("div", "ep-row" + (e.i === selected ? " sel" : ""));
      row.dataset.i = e.i;
      row.title = e.outcome;
      add(row, el("span", "dot o-" + e.outcome), el("span", "ep-task", e.task),
          el("span", "ep-meta", "run " + e.run), el("span", "ep-meta", e.exit + " · " + e.turns + "t"));
      row.addEventListener("click", () => select(e.i));
      frag.appendChild(row);
    }
    list.appendChild(frag);
    if (shown.length > limit) {
      const b = el("button", null, "show " + Math.min(PAGE_ROWS, shown.length - limit) + " more of " + (shown.length - limit));
      b.id = "more";
      b.addEventListener("click", () => { limit += PAGE_ROWS; drawList(); });
      list.appendChild(b);
    }
    if (!shown.length) list.appendChild(el("p", "empty", "  no episode matches the filters"));
    $("count").textContent = shown.length + " of " + EPS.length + " episodes shown";
    document.body.dataset.rows = String(Math.min(limit, shown.length));
  }

  function diffView(patch) {
    if (!patch) return el("p", "empty", "no diff (the episode changed nothing)");
    const pre = el("pre", "diff");
    const lines = patch.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();  // the newline that ends the last line
    for (const line of lines) {
      let cls = "";
      if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) cls = "d-file";
      else if (line.startsWith("+")) cls = "d-add";
      else if (line.startsWith("-")) cls = "d-del";
      else if (line.startsWith("@@")) cls = "d-hunk";
      pre.appendChild(el("span", cls, line === "" ? " " : line));
    }
    return pre;
  }

  function testTable(title, tests) {
    const names = Object.keys(tests || {});
    const box = el("div");
    add(box, el("div", "label", title + " (" + names.length + ")"));
    if (!names.length) return add(box, el("span", "empty", "none"));
    const t = el("table", "tests");
    for (const name of names) {
      const tr = el("tr");
      const st = tests[name];
      add(tr, el("td", st === "PASSED" || st === "XFAIL" ? "t-pass" : "t-fail", st), el("td", null, name));
      t.appendChild(tr);
    }
    return add(box, t);
  }

  function gradeView(g) {
    const box = el("div");
    if (!g) return add(box, el("p", "empty", "not graded"));
    add(box, el("div", null, "status: " + g.status + " · patch applied: " + (g.patch_applied ? "yes" : "no")));
    if (g.reason) add(box, el("div", "ep-meta", g.reason));
    return add(box, testTable("FAIL_TO_PASS", g.f2p), testTable("PASS_TO_PASS", g.p2p));
  }

  function turnView(s, n) {
    const card = el("div", "turn" + (s.format_error ? " fmt" : ""));
    add(card, add(el("div", "turn-head"), el("span", null, "turn " + n), el("span", null, s.tokens + " tokens")));
    if (s.format_error) add(card, el("div", "fmt-msg", "format error: " + s.format_error));
    if (s.thought) add(card, el("div", "label", s.format_error ? "response" : "reasoning"), el("div", "thought", s.thought));
    if (s.command !== null) add(card, el("div", "label", "command"), el("pre", "cmd", s.command));
    add(card, el("div", "label", "observation"), el("pre", "obs", s.observation));
    return card;
  }

  function select(i) {
    selected = i;
    const e = EPS[i];
    for (const r of document.querySelectorAll(".ep-row")) r.classList.toggle("sel", Number(r.dataset.i) === i);
    const main = $("main");
    main.replaceChildren();
    main.scrollTop = 0;
    add(main, el("h2", null, e.task + "  ·  run " + e.run));
    const badges = el("div", "badges");
    add(badges, el("span", "badge " + e.outcome, e.outcome), el("span", "badge", "exit: " + e.exit),
        el("span", "badge", e.turns + " turns"), el("span", "badge", e.tokens + " tokens"),
        el("span", "badge", "reward " + e.reward));
    if (e.format_errors) add(badges, el("span", "badge unresolved", e.format_errors + " format error" + (e.format_errors > 1 ? "s" : "")));
    if (e.model) add(badges, el("span", "badge", e.model));
    add(main, badges);
    if (e.error) add(main, el("h3", null, "Infrastructure error"), el("div", "errbox", e.error));
    add(main, el("h3", null, "Grade"), gradeView(e.grade));
    add(main, el("h3", null, "Final diff"), diffView(e.patch));
    if (e.issue) {
      const d = el("details");
      add(d, el("summary", null, "Issue (first user message)"), el("pre", null, e.issue));
      add(main, el("h3", null, "Task"), d);
    }
    add(main, el("h3", null, "Turns (" + e.steps.length + ")"));
    e.steps.forEach((s, k) => main.appendChild(turnView(s, k + 1)));
    if (location.hash !== "#" + i) history.replaceState(null, "", "#" + i);
  }

  function move(delta) {
    const pos = shown.findIndex(e => e.i === selected) + delta;
    if (pos >= 0 && pos < shown.length) {
      if (pos >= limit) { limit = pos + 1; drawList(); }
      select(shown[pos].i);
      const row = document.querySelector('.ep-row[data-i="' + shown[pos].i + '"]');
      if (row) row.scrollIntoView({ block: "nearest" });
    }
  }

  $("title").textContent = DATA.title;
  const oc = counts("outcome");
  fillSelect("f-outcome", Object.keys(oc).sort());
  fillSelect("f-exit", Object.keys(counts("exit")).sort());
  // ?outcome=...&exit=...&q=... preset the filters, so a filtered view can be shared as a link.
  const params = new URLSearchParams(location.search);
  $("f-outcome").value = params.get("outcome") || "";
  $("f-exit").value = params.get("exit") || "";
  $("f-text").value = params.get("q") || "";
  let timer = null;
  $("f-outcome").addEventListener("change", applyFilters);
  $("f-exit").addEventListener("change", applyFilters);
  $("f-text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(applyFilters, 150); });
  document.addEventListener("keydown", ev => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "j" || ev.key === "ArrowDown") { move(1); ev.preventDefault(); }
    if (ev.key === "k" || ev.key === "ArrowUp") { move(-1); ev.preventDefault(); }
  });
  applyFilters();
  const resolved = oc.resolved || 0;
  $("title").title = DATA.title;
  $("summary").textContent = "resolved " + resolved + " / " + EPS.length +
      (EPS.length ? " (" + (100 * resolved / EPS.length).toFixed(1) + "%)" : "");
  const fromHash = parseInt(location.hash.slice(1), 10);
  if (EPS.length) select(fromHash >= 0 && fromHash < EPS.length ? fromHash : (shown.length ? shown[0].i : 0));
  document.body.dataset.rendered = "1";
})();
</script>
</body>
</html>
"""
