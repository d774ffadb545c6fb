#!/usr/bin/env node
// Checks what promtool does not about deploy/prometheus/alerts.yml:
//   - every alert has a severity label (page or ticket) and the annotations summary, description and runbook;
//   - every runbook is "deploy/README.md#<anchor>" and deploy/README.md has a heading with that anchor;
//   - alert names are unique;
//   - every alert is tested in alerts_test.yml both firing (non-empty exp_alerts) and not firing (empty);
//   - every metric an expression reads is one this project exports (known-metrics.txt) or a recording rule
//     defined in the file.
// Usage: node check-alerts.js <alerts.yml> <alerts_test.yml> <README.md>
"use strict";

const fs = require("fs");
const YAML = require("yaml");
const { metricNames, loadKnownMetrics } = require("./promql.js");

const [alertsFile, testsFile, readmeFile] = process.argv.slice(2);
if (!alertsFile || !testsFile || !readmeFile) {
  console.error("usage: node check-alerts.js <alerts.yml> <alerts_test.yml> <README.md>");
  process.exit(2);
}
const problems = [];
const problem = (where, message) => problems.push(`${where}: ${message}`);

// GitHub's heading anchors: lower case, punctuation other than '-' and '_' dropped, spaces to '-'.
function anchorsOf(markdown) {
  const anchors = new Set();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    // CommonMark: a fence opens with ``` and an info string, and closes only with ``` alone on its line
    // (anything after it keeps the block open, and every heading below would be read as code).
    if (!fenced && /^\s*```/.test(line)) {
      fenced = true;
      continue;
    }
    if (fenced) {
      if (/^\s*```\s*$/.test(line)) fenced = false;
      continue;
    }
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const text = m[1].replace(/`/g, "").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    anchors.add(text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-"));
  }
  // Explicit <a id="..."></a> / <a name="..."></a> anchors count too.
  for (const m of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]);
  return anchors;
}

const rules = YAML.parse(fs.readFileSync(alertsFile, "utf8"));
const tests = YAML.parse(fs.readFileSync(testsFile, "utf8"));
const readme = fs.readFileSync(readmeFile, "utf8");
const anchors = anchorsOf(readme);
// The README's own links to its sections ([text](#anchor)) lead somewhere.
for (const m of readme.matchAll(/\]\(#([^)\s]+)\)/g)) {
  if (!anchors.has(m[1])) problem("README", `link to #${m[1]}, which is not a heading of ${readmeFile}`);
}
const known = loadKnownMetrics();

const records = new Set();
const alerts = new Map();
for (const group of rules.groups || []) {
  for (const rule of group.rules || []) {
    if (rule.record) records.add(rule.record);
  }
}
for (const group of rules.groups || []) {
  for (const rule of group.rules || []) {
    const where = rule.alert ? `alert ${rule.alert}` : `record ${rule.record}`;
    for (const name of metricNames(String(rule.expr || ""))) {
      if (!known.has(name) && !records.has(name)) {
        problem(where, `reads metric "${name}", which is neither in tests/deploy/known-metrics.txt nor a recording rule`);
      }
    }
    if (!rule.alert) continue;
    if (alerts.has(rule.alert)) problem(where, "defined twice");
    alerts.set(rule.alert, { firing: false, quiet: false });
    const labels = rule.labels || {};
    if (!["page", "ticket"].includes(labels.severity)) problem(where, `severity is ${labels.severity}, expected page or ticket`);
    const ann = rule.annotations || {};
    for (const key of ["summary", "description", "runbook"]) {
      if (!ann[key] || !String(ann[key]).trim()) problem(where, `no ${key} annotation`);
    }
    if (ann.runbook) {
      const m = /^deploy\/README\.md#([A-Za-z0-9_-]+)$/.exec(ann.runbook);
      if (!m) problem(where, `runbook ${ann.runbook} is not deploy/README.md#<anchor>`);
      else if (!anchors.has(m[1])) problem(where, `runbook anchor #${m[1]} is not a heading of deploy/README.md`);
    }
  }
}
if (alerts.size === 0) problem(alertsFile, "no alerts");

for (const t of tests.tests || []) {
  for (const a of t.alert_rule_test || []) {
    const entry = alerts.get(a.alertname);
    if (!entry) {
      problem(`test "${t.name}"`, `tests unknown alert ${a.alertname}`);
      continue;
    }
    if ((a.exp_alerts || []).length > 0) entry.firing = true;
    else entry.quiet = true;
  }
}
for (const [name, { firing, quiet }] of alerts) {
  if (!firing) problem(`alert ${name}`, "no test in alerts_test.yml expects it to fire");
  if (!quiet) problem(`alert ${name}`, "no test in alerts_test.yml expects it not to fire");
}

if (problems.length) {
  for (const p of problems) console.error(`FAIL ${p}`);
  process.exit(1);
}
console.log(`check-alerts: ${alerts.size} alerts and ${records.size} recording rules: labels, annotations, runbooks, tests, metric names OK`);
