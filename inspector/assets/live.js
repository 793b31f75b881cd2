// The live transcript: new turns and status changes from the hub's Server-Sent Events.
// Every value is set as text (textContent), never as HTML, so content cannot inject markup.
(() => {
  const body = document.body;
  const id = body.dataset.conversation;
  if (!id || body.dataset.live !== "true") return;
  const rows = document.querySelector("#transcript tbody");
  let last = Number(body.dataset.lastTurn || "0");
  const cell = (text, className) => {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text !== undefined && text !== null) td.textContent = String(text);
    return td;
  };
  const row = (t) => {
    const tr = document.createElement("tr");
    tr.id = `turn-${t.turn}`;
    tr.className = `${t.kind}${t.control ? " control" : ""} fresh`;
    tr.appendChild(cell(t.turn, "number"));
    tr.appendChild(cell(t.time, "time"));
    tr.appendChild(cell(`${t.source} → ${t.target}`));
    const kind = cell();
    const span = document.createElement("span");
    span.className = "kind";
    span.textContent = t.kind;
    kind.appendChild(span);
    tr.appendChild(kind);
    const answers = cell();
    if (t.reply_to !== null && t.reply_to !== undefined) {
      const a = document.createElement("a");
      a.href = `#turn-${t.reply_to}`;
      a.textContent = `turn ${t.reply_to}`;
      answers.appendChild(a);
    }
    tr.appendChild(answers);
    const content = cell();
    const pre = document.createElement("pre");
    pre.className = "content";
    pre.textContent = t.content;
    content.appendChild(pre);
    tr.appendChild(content);
    return tr;
  };
  const version = Number(body.dataset.version || "0");
  const change = (c) => {
    const tr = document.createElement("tr");
    tr.id = `change-${c.version}`;
    tr.className = "change fresh";
    tr.appendChild(cell("", "number"));
    tr.appendChild(cell(c.time, "time"));
    const label = cell();
    label.colSpan = 3;
    const span = document.createElement("span");
    span.className = "kind";
    span.textContent = "state change";
    label.appendChild(span);
    tr.appendChild(label);
    const what = cell();
    const list = document.createElement("ul");
    list.className = "change-items";
    for (const item of c.items) {
      const li = document.createElement("li");
      li.textContent = item;
      list.appendChild(li);
    }
    what.appendChild(list);
    if (c.context !== null && c.context !== undefined) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = "context after";
      const pre = document.createElement("pre");
      pre.className = "content";
      pre.textContent = c.context;
      details.appendChild(summary);
      details.appendChild(pre);
      what.appendChild(details);
    }
    tr.appendChild(what);
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
    if (["completed", "failed", "timed_out"].includes(s.status)) events.close();
  });
  events.addEventListener("reload", () => window.location.reload());
})();
