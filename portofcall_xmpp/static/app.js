// The probe page: a tab and a form for each probe the OpenAPI document
// (api/openapi.json) lists, its fields those of the endpoint's request
// schema, copied in from the page's <template> field groups; Run POSTs the
// form as JSON to the same origin and shows the answer.  Everything the
// server sends is shown with textContent (never as markup).  Nothing is
// stored: the password lives in its input and in the request body only.
"use strict";

(function () {
  const TRIMMED = new Set(["host", "domain", "recipient"]);
  const GROUPS = ["server", "account", "message", "options"];
  const ROSTER_ROWS = 2000;

  const main = document.querySelector("main");
  const tablist = document.querySelector("[role=tablist]");
  const formBox = document.getElementById("forms");
  const summary = document.getElementById("summary");
  const details = document.getElementById("details");
  const rawBox = document.getElementById("raw-box");
  const raw = document.getElementById("raw");
  const forms = [];
  const tabs = [];
  const schemaOf = new WeakMap(); // control -> its field's schema, as JSON
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

  // Text with `code` spans (the document's Markdown) as DOM nodes.
  function withCode(parent, text) {
    String(text).split("`").forEach((part, i) => {
      if (part) parent.appendChild(i % 2 ? el("code", null, part) : document.createTextNode(part));
    });
  }

  // -- the forms, from the OpenAPI document

  // The schema with its $ref resolved and allOf merged (properties, required).
  function flat(doc, schema) {
    while (schema && schema.$ref) {
      const { $ref: ref, ...siblings } = schema;
      const target = ref.slice(2).split("/").reduce((node, key) => node[key], doc);
      schema = { ...target, ...siblings };
    }
    if (!schema.allOf) return schema;
    const merged = { ...schema, properties: { ...(schema.properties || {}) },
      required: [...(schema.required || [])] };
    delete merged.allOf;
    for (const part of schema.allOf.map((p) => flat(doc, p))) {
      Object.assign(merged.properties, part.properties || {});
      merged.required.push(...(part.required || []));
      for (const [key, value] of Object.entries(part)) {
        if (!(key in merged)) merged[key] = value;
      }
    }
    return merged;
  }

  // A field the page's templates do not know: a control fitting its type.
  function genericField(name, prop) {
    const box = el("div", prop.type === "boolean" ? "check" : "field");
    let control;
    if (prop.enum) {
      control = el("select");
      control.appendChild(el("option", null, "default")).value = "";
    } else if (prop.type === "boolean") {
      control = el("input");
      control.type = "checkbox";
    } else if (prop.type === "array" && prop.items && prop.items.enum) {
      control = arrayChoice(prop);
    } else {
      control = el("input");
      // A secret (format "password") is never shown, nor put in a link.
      if (prop.type === "integer") control.type = "number";
      else control.type = prop.format === "password" ? "password" : "text";
      if (control.type !== "number") control.autocomplete = "off";
    }
    control.id = name;
    control.name = name;
    const label = el("label");
    label.htmlFor = name;
    withCode(label, "`" + name + "`");
    if (prop.type === "boolean") {
      box.append(control, label);
    } else {
      const help = el("small");
      help.id = name + "-help";
      control.setAttribute("aria-describedby", help.id);
      box.append(label, control, help);
    }
    return box;
  }

  // Fits a field's control, label and help to its schema: required, choices,
  // limits, default, description.
  function fitField(box, name, prop, required) {
    const control = box.querySelector("[name]");
    schemaOf.set(control, JSON.stringify(prop));
    control.required = required;
    if (required) box.querySelector("label").append(" ", el("span", "req", "(required)"));
    if (prop.enum) {
      const empty = control.querySelector('option[value=""]');
      control.replaceChildren(...(empty ? [empty] : []));
      for (const value of prop.enum) {
        const option = el("option", null, value);
        option.value = value;
        option.defaultSelected = !empty && value === prop.default;
        control.appendChild(option);
      }
    } else if (prop.type === "boolean") {
      control.defaultChecked = prop.default === true;
    } else if (prop.type === "integer") {
      control.min = prop.minimum;
      control.max = prop.maximum;
      control.placeholder = prop.default;
    } else {
      if (prop.maxLength !== undefined) control.maxLength = prop.maxLength;
      if (prop.default !== undefined) control.placeholder = prop.default;
      else if (required && prop.examples) control.placeholder = prop.examples[0];
    }
    const help = box.querySelector("small");
    if (!help) return;
    help.replaceChildren(el("code", null, name), " — ");
    withCode(help, prop.description || "");
    if (prop.type === "integer") {
      help.append(" " + prop.minimum + "–" + prop.maximum + ", default " + prop.default);
    }
  }

  // The form of one POST operation: the template groups' fields that its
  // request schema lists (then any field no template knows), fitted to the
  // schema; ids prefixed with the form's name ("login-host"), and so are the
  // labels' for and the aria-describedby that point at them.
  function buildForm(doc, path, operation) {
    const name = operation.operationId;
    const schema = flat(doc, operation.requestBody.content["application/json"].schema);
    const properties = schema.properties || {};
    const required = new Set(schema.required || []);
    const form = el("form", "probe");
    form.id = "form-" + name;
    form.setAttribute("role", "tabpanel");
    form.setAttribute("aria-labelledby", "tab-" + name);
    form.dataset.endpoint = path.slice(1);
    form.action = path.slice(1);
    form.method = "post";
    form.hidden = true;
    const heading = el("h2", null, operation.summary + " ");
    heading.appendChild(el("code", null, "POST " + path));
    const intro = el("p", "intro");
    withCode(intro, operation.description || "");
    form.append(heading, intro);
    const placed = new Set();
    const parts = GROUPS.map((group) => document.getElementById("group-" + group)
      .content.cloneNode(true));
    for (const part of parts) {
      for (const control of part.querySelectorAll("[name]")) {
        const box = control.closest(".field, .check");
        if (control.name in properties) {
          placed.add(control.name);
          fitField(box, control.name, flat(doc, properties[control.name]),
            required.has(control.name));
        } else {
          box.remove();
        }
      }
    }
    const others = Object.keys(properties).filter((field) => !placed.has(field));
    if (others.length) {
      const fieldset = el("fieldset");
      fieldset.appendChild(el("legend", null, "More"));
      for (const field of others) {
        const prop = flat(doc, properties[field]);
        const box = genericField(field, prop);
        fitField(box, field, prop, required.has(field));
        fieldset.appendChild(box);
      }
      parts.push(fieldset);
    }
    parts.push(document.getElementById("group-actions").content.cloneNode(true));
    const prefix = (ids) => ids.split(/\s+/).map((id) => name + "-" + id).join(" ");
    for (const part of parts) {
      if (part.querySelector && !part.querySelector("[name]") && !part.querySelector("button")) {
        continue; // a group none of whose fields this form has
      }
      for (const node of part.querySelectorAll("[id]")) node.id = prefix(node.id);
      for (const node of part.querySelectorAll("label[for]")) node.htmlFor = prefix(node.htmlFor);
      for (const node of part.querySelectorAll("[aria-describedby]")) {
        node.setAttribute("aria-describedby", prefix(node.getAttribute("aria-describedby")));
      }
      form.appendChild(part);
    }
    const tab = el("button", null, operation.summary);
    tab.type = "button";
    tab.id = "tab-" + name;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", form.id);
    tab.setAttribute("aria-selected", "false");
    tab.tabIndex = -1;
    tablist.appendChild(tab);
    formBox.appendChild(form);
    tabs.push(tab);
    forms.push(form);
  }

  // -- tabs (the URL's fragment names the open one: /#login; its name=value
  // parts fill the forms: /#login&host=127.0.0.1&port=5222)

  function tabOf(hash) {
    const name = hash.replace(/^#/, "").split("&").find((part) => part && !part.includes("="));
    return tabs.find((t) => t.id === "tab-" + name) || null;
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

  // A value typed into one form is copied into the other forms' field of the
  // same name when both take the same values (the same schema): a host, the
  // account; not the port between client and server-to-server forms.
  function copyField(source) {
    const kind = schemaOf.get(source);
    if (!kind) return;
    for (const form of forms) {
      if (form.contains(source)) continue;
      const target = form.elements.namedItem(source.name);
      if (!target || schemaOf.get(target) !== kind) continue;
      if (source.type === "checkbox") target.checked = source.checked;
      else target.value = source.value;
    }
  }

  // -- values given from outside: the URL's fragment, the demo server

  //: Fields the URL's fragment may fill (never a password: it is not for URLs).
  const FROM_URL = new Set(["host", "port", "domain", "username"]);

  // Sets each named field of every form that has it; a port only where it
  // is a client port (as the first form's), not the server-to-server one.
  function fill(values) {
    const clientPort = forms.map((f) => f.elements.namedItem("port")).find(Boolean);
    for (const form of forms) {
      for (const [name, value] of Object.entries(values)) {
        const control = form.elements.namedItem(name);
        if (!control || value === null || value === undefined) continue;
        if (name === "port" && schemaOf.get(control) !== schemaOf.get(clientPort)) continue;
        control.value = String(value);
      }
    }
  }

  function fillFromUrl() {
    const values = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const at = part.indexOf("=");
      if (at < 1) continue;
      const name = decodeURIComponent(part.slice(0, at));
      if (FROM_URL.has(name)) values[name] = decodeURIComponent(part.slice(at + 1));
    }
    fill(values);
  }

  // With twistd's --demo, api/demo names the demo server and an account on
  // it (404 otherwise): every form starts filled with them.
  async function fillFromDemo() {
    const response = await fetch("api/demo", {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const demo = await response.json();
    fill(demo);
    document.body.dataset.demo = "on";
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
        body[name] = control.dataset.array ? [value] : value;
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
    if (isCheck(form.dataset.endpoint)) return runCheck(form);
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
    rawBox.open = false; // under the readable result, opened on demand
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
    renderPings(data);
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
      contacts: Object.entries(info.contactAddresses || {})
        .filter(([, values]) => Array.isArray(values) && values.length)
        .map(([kind, values]) => kind + ": " + values.join(", ")),
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

  // /ping: each ping's outcome and the round trips of the pongs.
  function renderPings(data) {
    if (!Array.isArray(data.pings)) return;
    const part = section("Pings to " + data.target);
    const rtt = data.rttMs;
    facts(part, {
      sent: data.pings.length + " of " + data.count,
      rtt: rtt ? rtt.min + " / " + rtt.median + " / " + rtt.max + " ms" : null,
    }, [["Sent", "sent"], ["Round trip min / median / max", "rtt"]]);
    const list = el("ol", "pings");
    for (const ping of data.pings) {
      const outcome = ping.result === "error" ?
        "error: " + ping.condition + (ping.text ? " (" + ping.text + ")" : "") : ping.result;
      list.appendChild(el("li", null, outcome + (ping.ms === null ? "" : " · " + ping.ms + " ms")));
    }
    part.appendChild(list);
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
      successDetail(data, add);
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
      ["Component", "componentName"],
      ["Handshake accepted", "authenticated", true],
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

  // -- the check (POST /api/xmpp/check): a report, filled in live from its
  // Server-Sent Events (read from a fetch body: EventSource cannot POST)

  const SEVERITIES = ["critical", "warning", "info"];
  const VERDICTS = {
    ok: ["summary ok", "✓ OK"],
    warning: ["summary warn", "⚠ Warning"],
    critical: ["summary critical", "✗ Critical"],
  };

  function isCheck(endpoint) {
    return /\/check$/.test(endpoint);
  }

  // A select for an array of choices: one of them, or the default (all).
  function arrayChoice(prop) {
    const control = el("select");
    control.dataset.array = "1";
    control.appendChild(el("option", null, "default (" + show(prop.default) + ")")).value = "";
    for (const value of prop.items.enum) control.appendChild(el("option", null, value)).value = value;
    return control;
  }

  // A link such as /#check?domain=example.org&run opens that tab with its
  // fields filled in (never the password), and with "run" runs it.
  function linkedForm(hash) {
    const match = /^#([\w-]+)\?(.*)$/.exec(hash);
    if (!match) return null;
    const tab = tabOf("#" + match[1]);
    if (!tab) return null;
    choose(tab, false);
    const form = document.getElementById(tab.getAttribute("aria-controls"));
    const params = new URLSearchParams(match[2]);
    for (const [name, value] of params) {
      const control = form.elements.namedItem(name);
      if (!control || control.type === "password" || !control.name) continue;
      if (control.type === "checkbox") control.checked = value !== "false";
      else control.value = value;
    }
    return params.has("run") ? form : null;
  }

  // Calls onEvent(name, data) for each event of a text/event-stream body.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async function runCheck(form) {
    const endpoint = form.dataset.endpoint;
    const body = requestBody(form);
    controller = new AbortController();
    setRunning(true);
    clear();
    summary.className = "summary pending";
    summary.textContent = "Checking " + (body.domain || "?") + "…";
    const rows = endpointTable(section("Endpoints"));
    let report = null;
    try {
      const response = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
        body: JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      const type = response.headers.get("Content-Type") || "";
      if (!type.startsWith("text/event-stream")) {
        const text = await response.text();
        let data = null;
        try {
          data = JSON.parse(text);
        } catch (error) {
          data = null;
        }
        render(endpoint, response, data, text);
        return;
      }
      await readEvents(response, (name, data) => {
        if (name === "endpoint") {
          rows.add(data);
          summary.textContent = "Checking " + (body.domain || "?") + "… " +
            rows.count() + " endpoint" + (rows.count() === 1 ? "" : "s") + " done";
        } else if (name === "report") {
          report = data;
        }
      });
      if (report && report.success) renderCheck(report);
      else if (report) render(endpoint, response, report, JSON.stringify(report));
      else throw new Error("the event stream ended without a report");
    } catch (error) {
      summary.className = "summary fail";
      summary.textContent = error.name === "AbortError"
        ? "Cancelled."
        : "The check did not complete: " + error.message;
    } finally {
      controller = null;
      setRunning(false);
    }
  }

  // A table of endpoints; add(endpoint) puts its row in id order.
  function endpointTable(part) {
    const table = el("table", "endpoints");
    const head = el("tr");
    for (const name of ["#", "Service", "Target", "Address", "TLS", "Reachable", "Time"]) {
      const cell = el("th", null, name);
      cell.scope = "col";
      head.appendChild(cell);
    }
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    const wrap = el("div", "scroll");
    wrap.appendChild(table);
    part.appendChild(wrap);
    return {
      add(e) {
        const tr = el("tr");
        tr.dataset.id = e.id;
        const probe = e.probe || {};
        const tls = probe.tls || {};
        const reached = e.blocked ? "blocked" : e.reachable ? "yes" : "no";
        tr.append(
          el("td", null, e.id),
          el("td", null, e.service),
          el("td", null, e.target + ":" + e.port),
          el("td", null, e.address),
          el("td", null, e.tls + (tls.protocol ? " · " + tls.protocol : "") +
            (e.tlsVersions ? " · accepts " + Object.entries(e.tlsVersions)
              .filter(([, on]) => on).map(([v]) => v).join(", ") : "")),
          el("td", e.reachable ? "yes" : "no",
            reached + (!e.reachable && probe.errorType ? " (" + probe.errorType + ")" : "")),
          el("td", null, e.elapsedMs === null || e.elapsedMs === undefined ? "—"
            : e.elapsedMs + " ms"),
        );
        const next = [...body.children].find((row) => Number(row.dataset.id) > e.id);
        body.insertBefore(tr, next || null);
      },
      count() {
        return body.childElementCount;
      },
    };
  }

  function renderCheck(report) {
    clear();
    const [className, verdict] = VERDICTS[report.status] || VERDICTS.critical;
    summary.replaceChildren();
    summary.className = className;
    summary.dataset.status = report.status;
    const add = (cls, value) => summary.appendChild(el("span", cls, value));
    add("verdict", verdict);
    add("detail", report.domain + ": " + SEVERITIES.map((s) => report.summary[s] + " " + s)
      .join(" · "));
    if (report.software) {
      add("tag", [report.software.name, report.software.version].filter(Boolean).join(" "));
    }
    add("elapsed", report.elapsedMs + " ms");
    renderFindings(report.findings);
    const rows = endpointTable(section("Endpoints"));
    for (const e of report.endpoints) rows.add(e);
    renderCertificates(report.certificates);
    const respects = Object.entries(report.respectsTo || {});
    if (respects.length) {
      const part = section("Streams to unknown names");
      facts(part, Object.fromEntries(respects),
        respects.map(([kind]) => ["Refused (" + kind + ")", kind, true]));
    }
    if (report.login) {
      const part = section("Login");
      facts(part, report.login, [["Success", "success", true], ["Bound JID", "jid"],
        ["Mechanism", "mechanism"], ["Error", "error"], ["Error type", "errorType"]]);
    }
    renderServerInfo(report.serverInfo);
    renderSrv(report.dns);
    raw.textContent = JSON.stringify(report, null, 2);
    rawBox.hidden = false;
  }

  function renderFindings(findings) {
    const part = section("Findings");
    part.classList.add("findings");
    if (!findings.length) part.appendChild(el("p", null, "Nothing to report."));
    for (const severity of SEVERITIES) {
      const mine = findings.filter((f) => f.severity === severity);
      if (!mine.length) continue;
      part.appendChild(el("h4", "severity " + severity, severity + " (" + mine.length + ")"));
      const list = el("ul", "findings " + severity);
      for (const f of mine) {
        const item = el("li");
        item.dataset.id = f.id;
        item.append(el("code", null, f.id), " ", el("span", "message", f.message));
        const fix = el("p", "fix", "Fix: ");
        withCode(fix, f.fix);
        item.appendChild(fix);
        list.appendChild(item);
      }
      part.appendChild(list);
    }
  }

  function renderCertificates(certificates) {
    if (!certificates || !certificates.length) return;
    const part = section("Certificates");
    const table = el("table", "certificates");
    const head = el("tr");
    for (const name of ["Subject", "Valid until", "Verified", "Why not", "Endpoints",
      "SHA-256"]) {
      const cell = el("th", null, name);
      cell.scope = "col";
      head.appendChild(cell);
    }
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    for (const c of certificates) {
      const tr = el("tr");
      tr.append(
        el("td", null, show(c.subject)),
        el("td", null, show(c.notAfter) + " (" + c.daysUntilExpiry + " days)"),
        el("td", c.verified ? "yes" : "no", show(c.verified)),
        el("td", null, show(c.verifyError)),
        el("td", null, c.endpoints.join(", ")),
        el("td", "fingerprint", c.fingerprintSha256),
      );
      body.appendChild(tr);
    }
    const wrap = el("div", "scroll");
    wrap.appendChild(table);
    part.appendChild(wrap);
  }

  // What a successful probe's banner says beyond "Success": its message, the
  // SRV services found, a message's fate; and a critical problem it shows.
  function successDetail(data, add) {
    if (typeof data.message === "string") {
      add("detail", data.message);
    } else if (data.services && typeof data.services === "object") {
      const found = Object.entries(data.services).filter(([, s]) => s.status === "ok")
        .map(([name]) => name);
      add("detail", found.length ? "SRV records found: " + found.join(", ")
        : "No SRV records: clients fall back to the domain itself");
    } else if (data.message && typeof data.message === "object") {
      const bounce = data.deliveryErrorCondition;
      add("detail", "Message sent" + (bounce ? "; delivery error: " + bounce.condition : ""));
    }
    const critical = criticalOf(data);
    if (critical) {
      summary.className = "summary critical";
      add("tag", "critical: " + critical);
    }
  }

  // A critical problem a stream probe's answer shows, in words, or null.
  function criticalOf(data) {
    if (!("streamId" in data) || !data.tls) return null;
    const tls = data.tls;
    if (!tls.direct && (data.saslMechanisms || []).includes("PLAIN")) {
      return "PLAIN is offered before TLS (passwords in clear)";
    }
    if (!tls.available) return "no STARTTLS offered";
    if (tls.certificate && tls.certificate.verified === false) {
      return "the certificate does not verify (" + show(tls.certificate.verifyError) + ")";
    }
    return null;
  }

  // -- wiring

  async function start() {
    const response = await fetch("api/openapi.json", {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const doc = await response.json();
    for (const [path, item] of Object.entries(doc.paths)) {
      if (item.post) buildForm(doc, path, item.post);
    }
    setupTabs();
    fillFromUrl();
    await fillFromDemo();
    const linked = linkedForm(location.hash);
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
    if (linked) run(linked);
  }

  start().catch((error) => {
    const notice = el("p", "notice", "The list of probes (api/openapi.json) could not be " +
      "loaded: " + error.message);
    main.before(notice);
  });
})();
