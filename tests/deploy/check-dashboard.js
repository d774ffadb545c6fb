#!/usr/bin/env node
// Checks the Grafana dashboard deploy/grafana/crm-dashboard.json beyond being JSON:
//   - schemaVersion 30-41, a uid and a title;
//   - a "datasource" variable of type datasource for Prometheus, and every panel and query using it;
//   - unique panel ids, every panel inside the 24-column grid, no two panels overlapping;
//   - the rows RED, RocksDB, Events and Business KPIs are there;
//   - every query has an expression, refIds are unique within a panel, and every metric it reads is one this
//     project exports (known-metrics.txt) or a recording rule of alerts.yml.
// With --rules <file>, also writes every query as a recording rule (Grafana variables replaced by plain
// values) so that `promtool check rules <file>` checks the PromQL syntax.
// Usage: node check-dashboard.js <dashboard.json> <alerts.yml> [--rules <out file>]
"use strict";

const fs = require("fs");
const { metricNames, loadKnownMetrics } = require("./promql.js");

const args = process.argv.slice(2);
const [dashboardFile, alertsFile] = args;
const rulesIndex = args.indexOf("--rules");
const rulesOut = rulesIndex >= 0 ? args[rulesIndex + 1] : null;
if (!dashboardFile || !alertsFile || (rulesIndex >= 0 && !rulesOut)) {
  console.error("usage: node check-dashboard.js <dashboard.json> <alerts.yml> [--rules <out file>]");
  process.exit(2);
}
const problems = [];
const problem = (where, message) => problems.push(`${where}: ${message}`);

let d;
try {
  d = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
} catch (e) {
  console.error(`FAIL ${dashboardFile}: not JSON: ${e.message}`);
  process.exit(1);
}
const known = loadKnownMetrics();
// Recording rules: "- record: name" lines of alerts.yml (no YAML parser needed for that).
const records = new Set(
  [...fs.readFileSync(alertsFile, "utf8").matchAll(/^\s*-\s*record:\s*([A-Za-z0-9_:]+)\s*$/gm)].map((m) => m[1])
);

if (!Number.isInteger(d.schemaVersion) || d.schemaVersion < 30 || d.schemaVersion > 41) {
  problem("dashboard", `schemaVersion ${d.schemaVersion}, expected 30-41`);
}
if (!d.uid || !d.title) problem("dashboard", "no uid or title");
const vars = (d.templating && d.templating.list) || [];
const dsVar = vars.find((v) => v.name === "datasource");
if (!dsVar || dsVar.type !== "datasource" || dsVar.query !== "prometheus") {
  problem("templating", 'no variable "datasource" of type datasource with query "prometheus"');
}
const usesDsVar = (ds) => ds && ds.type === "prometheus" && (ds.uid === "${datasource}" || ds.uid === "$datasource");
for (const v of vars) {
  if (v.type === "query" && !usesDsVar(v.datasource)) problem(`variable ${v.name}`, "does not use the datasource variable");
}
const varNames = new Set(vars.map((v) => v.name));

// Panels, with those nested in collapsed rows.
const panels = [];
for (const p of d.panels || []) {
  panels.push(p);
  for (const q of p.panels || []) panels.push(q);
}
if (panels.length === 0) problem("dashboard", "no panels");

const ids = new Set();
const boxes = [];
for (const p of panels) {
  const where = `panel ${p.id} "${p.title}"`;
  if (!Number.isInteger(p.id)) problem(where, "no integer id");
  else if (ids.has(p.id)) problem(where, "id used twice");
  ids.add(p.id);
  const g = p.gridPos || {};
  if (![g.x, g.y, g.w, g.h].every(Number.isInteger) || g.x < 0 || g.y < 0 || g.w < 1 || g.h < 1 || g.x + g.w > 24) {
    problem(where, `gridPos ${JSON.stringify(g)} is not inside the 24-column grid`);
  } else {
    for (const [other, b] of boxes) {
      if (g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h) {
        problem(where, `overlaps panel ${other}`);
      }
    }
    boxes.push([p.id, g]);
  }
  if (p.type === "row") continue;
  if (!p.title) problem(where, "no title");
  if (!usesDsVar(p.datasource)) problem(where, "panel datasource is not ${datasource}");
  const refIds = new Set();
  if (!(p.targets || []).length) problem(where, "no query");
  for (const t of p.targets || []) {
    if (!t.expr || !String(t.expr).trim()) problem(where, `query ${t.refId} has no expr`);
    if (refIds.has(t.refId)) problem(where, `refId ${t.refId} used twice`);
    refIds.add(t.refId);
    if (t.datasource && !usesDsVar(t.datasource)) problem(where, `query ${t.refId} datasource is not \${datasource}`);
    for (const m of String(t.expr || "").matchAll(/\$(\{)?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (!m[2].startsWith("__") && !varNames.has(m[2])) problem(where, `query ${t.refId} uses undefined variable $${m[2]}`);
    }
    for (const name of metricNames(String(t.expr || "").replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, "5m"))) {
      if (!known.has(name) && !records.has(name)) {
        problem(where, `query ${t.refId} reads metric "${name}", which is neither in tests/deploy/known-metrics.txt nor a recording rule`);
      }
    }
  }
}
const rowTitles = panels.filter((p) => p.type === "row").map((p) => p.title);
for (const want of ["RED", "RocksDB", "Events", "Business KPIs"]) {
  if (!rowTitles.some((t) => t.includes(want))) problem("rows", `no row titled with "${want}" (rows: ${rowTitles.join(", ")})`);
}

if (rulesOut) {
  // A rules file in JSON (valid YAML), one recording rule per query, Grafana variables replaced.
  const rules = [];
  for (const p of panels) {
    for (const t of p.targets || []) {
      if (!t.expr) continue;
      const expr = String(t.expr)
        .replace(/\$__rate_interval|\$\{__rate_interval\}/g, "5m")
        .replace(/\$__interval|\$\{__interval\}/g, "1m")
        .replace(/\$__range|\$\{__range\}/g, "1d")
        .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ".*");
      rules.push({ record: `dashboard:panel_${p.id}:${t.refId}`, expr });
    }
  }
  fs.writeFileSync(rulesOut, JSON.stringify({ groups: [{ name: "dashboard-queries", rules }] }, null, 2));
}

if (problems.length) {
  for (const p of problems) console.error(`FAIL ${p}`);
  process.exit(1);
}
console.log(`check-dashboard: ${panels.length} panels OK`);
