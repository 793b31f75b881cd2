// The live transcript: new turns and status changes from the hub's Server-Sent Events.
// Every value is set as text (textContent), never as HTML, so content cannot inject markup.
// The one exception is the sequence diagram, redrawn from the server's SVG (timeline.rs,
// where every text is escaped), parsed as SVG, never as HTML.
(() => {
  const body = document.body;
  const id = body.dataset.conversation;
  if (!id || body.dataset.live !== "true") return;
  const rows = document.querySelector("#transcript tbody");
  let last = Number(body.dataset.lastTurn || "0");
  // An element with a class and a text, both optional.
  const element = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  // A table cell holding `children`.
  const cell = (className, text, ...children) => {
    const td = element("td", className, text);
    for (const child of children) td.appendChild(child);
    return td;
  };
  const row = (t) => {
    const tr = element("tr", `${t.kind}${t.control ? " control" : ""} fresh`);
    tr.id = `turn-${t.turn}`;
    const answers = cell();
    if (t.reply_to !== null && t.reply_to !== undefined) {
      const a = element("a", null, `turn ${t.reply_to}`);
      a.href = `#turn-${t.reply_to}`;
      answers.appendChild(a);
    }
    tr.append(
      cell("number", t.turn),
      cell("time", t.time),
      cell(null, `${t.source} → ${t.target}`, ...(t.hub ? [hubNote(t.hub)] : [])),
      cell(null, null, element("span", "kind", t.kind)),
      answers,
      contentCell(t),
    );
    return tr;
  };
  // The hub that stored the turn, on a cluster.
  function hubNote(hub) {
    const note = element("div", "hub", `via ${hub}`);
    note.title = "the hub that stored this turn";
    return note;
  }
  // Long content folded behind one line, as the server renders it; a link to the turn's JSON.
  function contentCell(t) {
    const td = cell();
    if (t.folded) {
      const details = element("details", "fold");
      const summary = element("summary");
      summary.appendChild(element("code", null, t.folded));
      details.append(summary, element("pre", "content", t.content));
      td.appendChild(details);
    } else {
      td.appendChild(element("pre", "content", t.content));
    }
    const raw = element("a", "raw", "JSON");
    raw.href = `/inspect/conversations/${encodeURIComponent(id)}/turns/${t.turn}`;
    td.append(" ", raw);
    return td;
  }
  // Redraws the diagram; several turns in a row cost one fetch.
  let redrawing = null;
  const redraw = () => {
    if (redrawing) return;
    redrawing = setTimeout(async () => {
      redrawing = null;
      const box = document.getElementById("timeline-box");
      const answer = await fetch(`/inspect/conversations/${encodeURIComponent(id)}/timeline`);
      if (!box || !answer.ok) return;
      const svg = new DOMParser().parseFromString(await answer.text(), "image/svg+xml").documentElement;
      if (svg.nodeName === "svg") box.replaceChildren(document.importNode(svg, true));
    }, 100);
  };
  const version = Number(body.dataset.version || "0");
  const change = (c) => {
    const tr = element("tr", "change fresh");
    tr.id = `change-${c.version}`;
    const label = cell(null, null, element("span", "kind", "state change"));
    label.colSpan = 3;
    const list = element("ul", "change-items");
    for (const item of c.items) list.appendChild(element("li", null, item));
    const what = cell(null, null, list);
    if (c.context !== null && c.context !== undefined) {
      const details = element("details");
      details.append(element("summary", null, "context after"), element("pre", "content", c.context));
      what.appendChild(details);
    }
    tr.append(cell("number", ""), cell("time", c.time), label, what);
    return tr;
  };
  const events = new EventSource(
    `/inspect/conversations/${encodeURIComponent(id)}/live?after=${last}&version=${version}`,
  );
  events.addEventListener("change", (e) => {
    const c = JSON.parse(e.data);
    if (document.getElementById(`change-${c.version}`)) return;
    rows.appendChild(change(c));
  });
  events.addEventListener("turn", (e) => {
    const t = JSON.parse(e.data);
    if (t.turn <= last) return;
    last = t.turn;
    body.dataset.lastTurn = String(last);
    const empty = document.getElementById("no-turns");
    if (empty) empty.remove();
    rows.appendChild(row(t));
    redraw();
  });
  events.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    const status = document.getElementById("status");
    status.textContent = s.status;
    status.className = `status ${s.status}`;
    document.getElementById("turns").textContent = String(s.turns);
    document.getElementById("last-activity").textContent = s.last_activity;
    document.getElementById("context").textContent = s.context;
    const reason = document.getElementById("reason");
    if (s.status === "failed") reason.textContent = s.reason || "";
    else if (s.status === "completed") reason.textContent = "completed by a participant";
    else if (s.status === "timed_out") reason.textContent = "idle for longer than its idle timeout";
    redraw();
    if (["completed", "failed", "timed_out"].includes(s.status)) events.close();
  });
  events.addEventListener("reload", () => window.location.reload());
})();
