// The probe page: one form per endpoint, its fields copied in from the
// page's <template> field groups; Run POSTs the form as JSON to the
// same origin and shows the answer.  Everything the server sends is shown
// with textContent (never as markup).  Nothing is stored: the password lives
// in its input and in the request body only.
"use strict";

(function () {
  // Fields kept equal across the forms as you type (the port only between the
  // client forms) (tls is not: its
  // choices differ between /connect and the auth endpoints).
  const SHARED = new Set([
    "host", "port", "domain", "username", "password", "resource",
    "mechanism", "channelBinding", "tlsVerify", "transcript",
  ]);
  const TRIMMED = new Set(["host", "domain", "recipient"]);
  const ROSTER_ROWS = 2000;

  const main = document.querySelector("main");
  const forms = Array.from(document.querySelectorAll("form.probe"));
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  const summary = document.getElementById("summary");
  const details = document.getElementById("details");
  const rawBox = document.getElementById("raw-box");
  const raw = document.getElementById("raw");
  let controller = null;

  // -- small DOM helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function show(value) {
    if (value === null || value === undefined) return "—";
    if (value === true) return "yes";
    if (value === false) return "no";
    if (Array.isArray(value)) return value.length ? value.join(", ") : "(none)";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function section(title) {
    const node = el("section", "part");
    node.appendChild(el("h3", null, title));
    details.appendChild(node);
    return node;
  }

  // A definition list of the [label, key, judged] rows present in obj; a
  // judged yes/no is coloured good/bad.
  function facts(parent, obj, rows) {
    const dl = el("dl", "facts");
    for (const [label, key, judged] of rows) {
      if (!(key in obj)) continue;
      dl.appendChild(el("dt", null, label));
      const dd = el("dd", null, show(obj[key]));
      if (judged && obj[key] === true) dd.classList.add("yes");
      if (judged && obj[key] === false) dd.classList.add("no");
      dl.appendChild(dd);
    }
    if (dl.childElementCount) parent.appendChild(dl);
    return dl;
  }

  // -- the fields

  function formName(form) {
    return form.id.replace(/^form-/, "");
  }

  // Copies the groups the form names (data-groups="server,account,options")
  // from <template id="group-NAME">, then the Run/Cancel buttons.  Ids are
  // prefixed with the form's name ("login-host"), and so are the labels' for
  // and the aria-describedby that point at them.  An element with data-for
  // ("s2s", "account") is kept only if it names the form or one of its
  // groups.  data-FIELD-default on the form sets that number field's default.
  function buildForm(form) {
    const name = formName(form);
    const groups = (form.dataset.groups || "").split(",").filter(Boolean);
    const wanted = new Set([name, ...groups]);
    const prefix = (ids) => ids.split(/\s+/).map((id) => name + "-" + id).join(" ");
    for (const group of [...groups, "actions"]) {
      const part = document.getElementById("group-" + group).content.cloneNode(true);
      for (const node of part.querySelectorAll("[data-for]")) {
        if (node.dataset.for.split(/\s+/).some((w) => wanted.has(w))) {
          node.removeAttribute("data-for");
        } else {
          node.remove();
        }
      }
      for (const node of part.querySelectorAll("[id]")) node.id = prefix(node.id);
      for (const node of part.querySelectorAll("label[for]")) node.htmlFor = prefix(node.htmlFor);
      for (const node of part.querySelectorAll("[aria-describedby]")) {
        node.setAttribute("aria-describedby", prefix(node.getAttribute("aria-describedby")));
      }
      form.appendChild(part);
    }
    for (const control of form.querySelectorAll("input[type=number]")) {
      const value = form.dataset[control.name + "Default"];
      if (value === undefined) continue;
      control.placeholder = value;
      const help = document.getElementById(control.getAttribute("aria-describedby"));
      help.querySelector(".default").textContent = value;
    }
  }

  // -- tabs (the URL's fragment names the open one: /#login)

  function tabOf(hash) {
    return tabs.find((t) => "#" + t.id.replace(/^tab-/, "") === hash) || null;
  }

  function select(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
  }

  function choose(tab, focus) {
    select(tab, focus);
    history.replaceState(null, "", "#" + tab.id.replace(/^tab-/, ""));
  }

  function setupTabs() {
    select(tabOf(location.hash) || tabs[0], false);
    window.addEventListener("hashchange", () => {
      const tab = tabOf(location.hash);
      if (tab) select(tab, false);
    });
    for (const tab of tabs) {
      tab.addEventListener("click", () => choose(tab, false));
      tab.addEventListener("keydown", (event) => {
        const i = tabs.indexOf(tab);
        let next = null;
        if (event.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
        else if (event.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
        else if (event.key === "Home") next = tabs[0];
        else if (event.key === "End") next = tabs[tabs.length - 1];
        if (next) {
          event.preventDefault();
          choose(next, true);
        }
      });
    }
  }

  // -- shared fields

  function copyField(source) {
    if (!SHARED.has(source.name)) return;
    for (const form of forms) {
      if (form.contains(source)) continue;
      // Server-to-server streams use other ports (5269) than clients (5222).
      if (source.name === "port" && (form.id === "form-s2s") !== source.form.matches("#form-s2s")) {
        continue;
      }
      const target = form.elements.namedItem(source.name);
      if (!target) continue;
      if (source.type === "checkbox") target.checked = source.checked;
      else target.value = source.value;
    }
  }

  // -- the request

  function requestBody(form) {
    const body = {};
    for (const control of form.elements) {
      const name = control.name;
      if (!name || control.disabled) continue;
      if (control.type === "checkbox") {
        body[name] = control.checked;
      } else if (control.type === "number") {
        const text = control.value.trim();
        if (text === "") continue;
        const number = Number(text);
        // Anything else goes as typed: the service's 400 names the field.
        body[name] = Number.isInteger(number) ? number : text;
      } else {
        const value = TRIMMED.has(name) ? control.value.trim() : control.value;
        if (value === "") continue; // not given: the service's default applies
        body[name] = value;
      }
    }
    return body;
  }

  function setRunning(running) {
    for (const form of forms) {
      form.querySelector("button.run").disabled = running;
      form.querySelector("button.cancel").hidden = !running;
    }
  }

  async function run(form) {
    const endpoint = form.dataset.endpoint;
    const body = requestBody(form);
    controller = new AbortController();
    setRunning(true);
    summary.className = "summary pending";
    summary.textContent = "Running " + endpoint.replace(/^.*\//, "/") + " against " +
      (body.host || "?") + "…";
    let response;
    let text;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      text = await response.text();
    } catch (error) {
      clear();
      summary.className = "summary fail";
      summary.textContent = error.name === "AbortError"
        ? "Cancelled."
        : "The request did not complete: " + error.message;
      return;
    } finally {
      controller = null;
      setRunning(false);
    }
    let data = null;
    try {
      data = JSON.parse(text);
    } catch (error) {
      data = null;
    }
    render(endpoint, response, data, text);
  }

  // -- the answer

  function clear() {
    details.replaceChildren();
    raw.textContent = "";
    rawBox.hidden = true;
  }

  function render(endpoint, response, data, text) {
    clear();
    renderSummary(response, data);
    rawBox.hidden = false;
    rawBox.open = true;
    if (!data || typeof data !== "object") {
      raw.textContent = text;
      return;
    }
    raw.textContent = JSON.stringify(data, null, 2);
    if (response.status !== 200) return;
    renderOverview(data);
    renderWarnings(data);
    renderPhases(data);
    renderTls(data.tls);
    renderMessage(endpoint, data);
    renderRoster(data.roster);
    renderServerInfo(data.serverInfo);
    renderSrv(data.services);
    renderTranscript(data.transcript);
  }

  function renderSrv(services) {
    if (!services || typeof services !== "object") return;
    for (const [name, service] of Object.entries(services)) {
      const part = section(name + " — " + service.status);
      const rows = {query: service.name, error: service.error, nxdomain: service.nxdomain};
      facts(part, rows, [["Query", "query"], ["Error", "error"], ["Name does not exist", "nxdomain"]]);
      const targets = (service.records || []).map((r) => ({
        where: r.target + ":" + r.port + " (priority " + r.priority + ", weight " + r.weight + ")",
        addresses: r.addresses.map((a) => a.address + (a.allowed ? "" : " (not probeable here)")),
        error: r.error,
      }));
      if (service.fallback) {
        const f = service.fallback;
        targets.push({
          where: "fallback " + f.host + ":" + f.port,
          addresses: f.addresses.map((a) => a.address),
          error: f.error,
        });
      }
      for (const target of targets) {
        facts(part, target, [["Target", "where"], ["Addresses", "addresses"], ["Error", "error"]]);
      }
    }
  }

  function renderServerInfo(info) {
    if (!info || typeof info !== "object") return;
    const part = section("Server information");
    const software = info.software || {};
    const rows = {
      identities: (info.identities || []).map(
        (i) => i.category + "/" + i.type + (i.name ? " (" + i.name + ")" : "")),
      software: [software.name, software.version, software.os].filter(Boolean).join(" "),
      ping: info.pingMs === null || info.pingMs === undefined ? null : info.pingMs + " ms",
      features: info.features,
      contacts: Object.entries(info.contactAddresses || {}).map(
        ([kind, values]) => kind + ": " + values.join(", ")),
    };
    facts(part, rows, [
      ["Identities", "identities"],
      ["Software", "software"],
      ["Ping round trip", "ping"],
      ["Features", "features"],
      ["Contact addresses", "contacts"],
    ]);
    const errors = Object.entries(info.errors || {}).filter(([, why]) => why);
    if (errors.length) {
      facts(part, Object.fromEntries(errors), errors.map(([what]) => ["No " + what, what]));
    }
  }

  function renderSummary(response, data) {
    summary.replaceChildren();
    const status = response.status;
    const add = (cls, value) => summary.appendChild(el("span", cls, value));
    if (!data || typeof data !== "object") {
      summary.className = "summary fail";
      add("verdict", "HTTP " + status);
      add("detail", "The answer was not JSON.");
      return;
    }
    if (status === 200 && data.success === true) {
      summary.className = "summary ok";
      add("verdict", "✓ Success");
      if (typeof data.message === "string") {
        add("detail", data.message);
      } else {
        const bounce = data.deliveryErrorCondition;
        add("detail", "Message sent" + (bounce ? "; delivery error: " + bounce.condition : ""));
      }
    } else if (status === 200) {
      summary.className = "summary fail";
      add("verdict", "✗ Failed");
      if (data.errorType) add("tag", data.errorType);
      add("detail", show(data.error));
    } else {
      summary.className = "summary refused";
      add("verdict", "✗ Refused (HTTP " + status + ")");
      add("detail", show(data.error));
      if (data.blocked) add("tag", "blocked");
      const retry = response.headers.get("Retry-After");
      if (retry) add("detail", "Retry after " + retry + " s.");
    }
    if (typeof data.elapsedMs === "number") add("elapsed", data.elapsedMs + " ms");
  }

  function renderOverview(data) {
    const part = section(data.success ? "Server" : "Details");
    facts(part, data, [
      ["Host", "host"],
      ["Port", "port"],
      ["Domain", "domain"],
      ["Our domain (from)", "from"],
      ["Dialback offered", "dialback", true],
      ["Bound JID", "jid"],
      ["Stream id", "streamId"],
      ["Server (from)", "serverFrom"],
      ["XMPP version", "xmppVersion"],
      ["Stream language", "streamLang"],
      ["SASL mechanisms", "saslMechanisms"],
      ["Mechanism used", "mechanism"],
      ["Channel binding", "channelBinding"],
      ["Features", "features"],
      ["Feature namespaces", "featureNamespaces"],
      ["Compression", "compressionMethods"],
      ["Channel-binding types offered", "saslChannelBindings"],
      ["Stream error text", "streamErrorText"],
      ["SASL condition", "saslCondition"],
      ["SASL text", "saslText"],
      ["SCRAM error", "scramError"],
      ["Error condition", "errorCondition"],
      ["XML error", "xmlError"],
    ]);
    if (!part.querySelector("dl")) part.remove();
  }

  function renderWarnings(data) {
    if (!Array.isArray(data.warnings) || !data.warnings.length) return;
    const part = section("Warnings");
    const list = el("ul", "warnings");
    for (const warning of data.warnings) list.appendChild(el("li", null, warning));
    part.appendChild(list);
  }

  function renderPhases(data) {
    if (!Array.isArray(data.phases)) return;
    const part = section("Phases");
    const list = el("ol", "phases");
    const timings = data.timings || {};
    let previous = 0;
    for (const phase of data.phases) {
      const item = el("li", "done");
      item.appendChild(el("span", "phase", phase));
      const at = timings[phase];
      if (typeof at === "number") {
        item.appendChild(el("span", "ms", at + " ms (+" + (at - previous) + ")"));
        previous = at;
      }
      list.appendChild(item);
    }
    if (data.success === false) {
      const item = el("li", "stopped");
      item.appendChild(el("span", "phase", "stopped: " + show(data.errorType)));
      if (typeof data.elapsedMs === "number") {
        item.appendChild(el("span", "ms", data.elapsedMs + " ms"));
      }
      list.appendChild(item);
    }
    if (!list.childElementCount) list.appendChild(el("li", "stopped", "no phase reached"));
    part.appendChild(list);
  }

  function renderTls(tls) {
    if (!tls || typeof tls !== "object") return;
    const part = section("TLS");
    facts(part, tls, [
      ["STARTTLS offered", "available"],
      ["STARTTLS required", "required"],
      ["Negotiated", "negotiated", true],
      ["Direct TLS", "direct"],
      ["Protocol", "protocol"],
      ["Cipher", "cipher"],
      ["ALPN", "alpn"],
      ["SASL mechanisms after STARTTLS", "saslMechanisms"],
      ["Features after STARTTLS", "features"],
    ]);
    const cert = tls.certificate;
    if ("certificate" in tls && !cert) part.appendChild(el("p", null, "No certificate."));
    if (!cert) return;
    const title = el("h4", null, "Certificate ");
    title.appendChild(el("span", cert.verified ? "badge yes" : "badge no",
      cert.verified ? "verified" : "not verified"));
    part.appendChild(title);
    facts(part, cert, [
      ["Subject", "subject"],
      ["Issuer", "issuer"],
      ["Subject alt names", "subjectAltNames"],
      ["Valid from", "notBefore"],
      ["Valid until", "notAfter"],
      ["Days until expiry", "daysUntilExpiry"],
      ["Verified (chain and name)", "verified", true],
      ["Why not", "verifyError"],
      ["Name matches the domain", "matchesDomain", true],
      ["SHA-256 fingerprint", "fingerprintSha256"],
    ]);
  }

  function renderMessage(endpoint, data) {
    if (!/\/message$/.test(endpoint) || !data.message || typeof data.message !== "object") return;
    const part = section("Message");
    const delivery = facts(part, data.message, [["To", "to"], ["Id", "id"], ["Body", "body"]]);
    const condition = data.deliveryErrorCondition;
    delivery.appendChild(el("dt", null, "Delivery error"));
    delivery.appendChild(el("dd", condition ? "no" : null, condition
      ? [condition.type, condition.condition, condition.text].filter((x) => x).join(" · ")
      : "none within the listening window"));
    const receipt = data.receipt || {};
    delivery.appendChild(el("dt", null, "Receipt"));
    delivery.appendChild(el("dd", null, !receipt.requested
      ? "not requested"
      : receipt.received ? "received after " + receipt.ms + " ms" : "requested, not received"));
    if (!delivery.parentNode) part.appendChild(delivery);
    if (data.deliveryError) part.appendChild(el("pre", "xml", data.deliveryError));
  }

  function renderRoster(roster) {
    if (!roster || !Array.isArray(roster.contacts)) return;
    const part = section("Roster");
    const table = el("table", "roster");
    table.appendChild(el("caption", null, roster.total + " contact" +
      (roster.total === 1 ? "" : "s") + (roster.version ? " · version " + roster.version : "")));
    const head = el("thead");
    const row = el("tr");
    for (const name of ["JID", "Name", "Subscription", "Ask", "Groups"]) {
      const cell = el("th", null, name);
      cell.scope = "col";
      row.appendChild(cell);
    }
    head.appendChild(row);
    table.appendChild(head);
    const body = el("tbody");
    for (const contact of roster.contacts.slice(0, ROSTER_ROWS)) {
      const tr = el("tr");
      tr.appendChild(el("td", null, contact.jid));
      tr.appendChild(el("td", null, show(contact.name)));
      tr.appendChild(el("td", null, contact.subscription));
      tr.appendChild(el("td", null, show(contact.ask)));
      tr.appendChild(el("td", null, show(contact.groups)));
      body.appendChild(tr);
    }
    table.appendChild(body);
    const wrap = el("div", "scroll");
    wrap.appendChild(table);
    part.appendChild(wrap);
    if (roster.contacts.length > ROSTER_ROWS) {
      part.appendChild(el("p", null, "The first " + ROSTER_ROWS + " of " +
        roster.contacts.length + " contacts; all of them are in the raw JSON."));
    }
  }

  // A transcript may hold hundreds of thousands of entries: draw the first
  // and the last TRANSCRIPT_EDGE of them, and the rest TRANSCRIPT_MORE at a
  // time on request (the raw JSON has them all).
  const TRANSCRIPT_EDGE = 100;
  const TRANSCRIPT_MORE = 500;

  function transcriptEntry(entry) {
    const item = el("li", entry.dir === "out" ? "out" : "in");
    item.appendChild(el("span", "dir", (entry.dir === "out" ? "→ " : "← ") + entry.ms + " ms"));
    item.appendChild(el("pre", "xml", entry.xml));
    return item;
  }

  function renderTranscript(transcript) {
    if (!Array.isArray(transcript)) return;
    const part = section("Transcript");
    const box = el("details");
    box.appendChild(el("summary", null, transcript.length + " elements"));
    const list = el("ol", "transcript");
    const head = Math.min(transcript.length, TRANSCRIPT_EDGE);
    const tail = Math.max(head, transcript.length - TRANSCRIPT_EDGE);
    for (let i = 0; i < head; i++) list.appendChild(transcriptEntry(transcript[i]));
    let next = head;
    if (next < tail) {
      const gap = el("li", "more");
      const button = el("button");
      button.type = "button";
      const label = () => {
        const hidden = tail - next;
        button.textContent = "Show " + Math.min(hidden, TRANSCRIPT_MORE) + " more (" +
          hidden + " not shown)";
      };
      button.addEventListener("click", () => {
        const end = Math.min(tail, next + TRANSCRIPT_MORE);
        for (; next < end; next++) list.insertBefore(transcriptEntry(transcript[next]), gap);
        if (next < tail) label();
        else gap.remove();
      });
      label();
      gap.appendChild(button);
      list.appendChild(gap);
    }
    for (let i = tail; i < transcript.length; i++) {
      list.appendChild(transcriptEntry(transcript[i]));
    }
    box.appendChild(list);
    part.appendChild(box);
  }

  // -- wiring

  for (const form of forms) buildForm(form);
  setupTabs();
  for (const form of forms) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!controller) run(form);
    });
    form.addEventListener("input", (event) => copyField(event.target));
    form.addEventListener("change", (event) => copyField(event.target));
    form.querySelector("button.cancel").addEventListener("click", () => {
      if (controller) controller.abort();
    });
  }
  main.hidden = false;
})();
