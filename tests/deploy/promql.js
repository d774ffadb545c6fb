// Helpers shared by check-alerts.js and check-dashboard.js: which metric names a PromQL expression reads,
// and the list of metric names this project exports (known-metrics.txt).
"use strict";

const fs = require("fs");
const path = require("path");

const KEYWORDS = new Set([
  "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
  "inf", "nan", "atan2",
]);

// The metric names an expression selects (not functions, keywords, label names or label values).
function metricNames(expr) {
  let s = expr;
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""'); // strings
  s = s.replace(/\{[^}]*\}/g, " "); // label matchers
  s = s.replace(/\[[^\]]*\]/g, " "); // ranges and subqueries
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " "); // label lists
  s = s.replace(/\boffset\s+-?[0-9a-z]+/g, " ");
  s = s.replace(/@\s*[0-9.a-z_()]+/g, " ");
  const names = new Set();
  const re = /[a-zA-Z_:][a-zA-Z0-9_:]*/g;
  let m;
  while ((m = re.exec(s)) !== null) {
    const word = m[0];
    const before = s.slice(0, m.index);
    if (/[0-9.]$/.test(before)) continue; // part of a number such as 1e3 or a duration
    const after = s.slice(m.index + word.length);
    if (/^\s*\(/.test(after)) continue; // function call or aggregation
    if (KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

// known-metrics.txt: "name" or "name histogram" a line; # comments.
function loadKnownMetrics(file = path.join(__dirname, "known-metrics.txt")) {
  const known = new Set();
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [name, kind] = line.split(/\s+/);
    known.add(name);
    if (kind === "histogram") for (const suffix of ["_bucket", "_count", "_sum"]) known.add(name + suffix);
  }
  return known;
}

module.exports = { metricNames, loadKnownMetrics };
