// The live list: each listed conversation's status, turn count and last activity follow the
// hub's Server-Sent Events; a newly opened one is announced (the list is a page of a
// filtered query, so it is reloaded rather than patched). Values are set as text only.
(() => {
  const events = new EventSource("/inspect/live");
  const notice = document.getElementById("new-conversations");
  events.addEventListener("conversation", (e) => {
    const c = JSON.parse(e.data);
    const row = document.querySelector(`tr[data-id="${CSS.escape(c.id)}"]`);
    if (!row) {
      if (c.opened && notice) notice.hidden = false;
      return;
    }
    const status = row.querySelector("span.status");
    status.textContent = c.status;
    status.className = `status ${c.status}`;
    row.querySelector(".reason").textContent = c.reason || "";
    row.querySelector(".turns").textContent = String(c.turns);
    row.querySelector(".last-activity").textContent = c.last_activity;
    row.classList.remove("fresh");
    void row.offsetWidth; // restart the highlight
    row.classList.add("fresh");
  });
  events.addEventListener("reload", () => window.location.reload());
})();
