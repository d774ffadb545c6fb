#!/usr/bin/env node
// Validates manifests rendered by `kubectl kustomize deploy/k8s/overlays/<overlay>`, offline:
//   1. schema: every object against the Kubernetes OpenAPI schema of its kind (kubernetes-models' validators:
//      types, required fields, formats, enums); cert-manager's kinds against its CRD schemas
//      (@kubernetes-models/cert-manager);
//   2. unknown fields: every object type-checked by TypeScript against the same models' interfaces, so a
//      misspelt or misplaced field (which the API server would drop or refuse) is an error;
//   3. policy: what this project requires of its manifests (ports, probes, security, addresses of every shard,
//      network policies, PDBs, graceful shutdown, scrape annotations, the internal key and TLS Secrets every
//      process mounts, the cert-manager chain that issues the TLS Secrets, ...).
// Usage: node validate-k8s.js <overlay name> <rendered.yaml>
// Prints every problem found and exits 1 if there is any.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");
const ts = require("typescript");

const [overlay, file] = process.argv.slice(2);
if (!overlay || !file) {
  console.error("usage: node validate-k8s.js <overlay name> <rendered.yaml>");
  process.exit(2);
}

const problems = [];
function problem(where, message) {
  problems.push(`${overlay}: ${where}: ${message}`);
}

// ---------------------------------------------------------------------------------------------------------
// What the project expects.

// gRPC, metrics and (data services: plaintext, grpc.health.v1 only, for the kubelet's probes) health port of
// every process. The gateway's own gRPC port is plaintext, so it is probed there.
const PORTS = {
  gateway: { grpc: 50050, metrics: 9150 },
  "customer-profile": { grpc: 50051, metrics: 9151, health: 50151 },
  "order-tracking": { grpc: 50052, metrics: 9152, health: 50152 },
  loyalty: { grpc: 50053, metrics: 9153, health: 50153 },
  "complaint-ticket": { grpc: 50054, metrics: 9154, health: 50154 },
  recommendation: { grpc: 50055, metrics: 9155, health: 50155 },
};
const DATA_SERVICES = ["customer-profile", "order-tracking", "loyalty", "complaint-ticket", "recommendation"];
// The service registry the binaries use (rpc::DataServices(), printed by tools/crm-services and handed over
// by render_and_validate.sh in CRM_SERVICES): the manifests' expectations above must agree with it.
if (process.env.CRM_SERVICES) {
  const registry = process.env.CRM_SERVICES.trim().split("\n").map((line) => line.split("\t"));
  const names = registry.map(([name]) => name);
  if (JSON.stringify(names) !== JSON.stringify(DATA_SERVICES)) {
    problem("registry", `data services [${DATA_SERVICES}] are not the registry's [${names}]`);
  }
  for (const [name, grpc, metrics] of registry) {
    const p = PORTS[name] || {};
    if (p.grpc !== Number(grpc) || p.metrics !== Number(metrics)) {
      problem("registry", `${name}: ports ${p.grpc}/${p.metrics}, the registry says ${grpc}/${metrics}`);
    }
  }
}
// Who may reach each data service's gRPC port: the gateway, the services that call it, and every producer
// that delivers to it (customer-profile, order-tracking, complaint-ticket deliver to every service;
// recommendation only to customer-profile, --event_sinks=customer-profile), which asks each consumer what it
// subscribes to.
const CALLERS = {
  "customer-profile": ["gateway", "order-tracking", "loyalty", "complaint-ticket", "recommendation"],
  "order-tracking": ["gateway", "customer-profile", "loyalty", "complaint-ticket"],
  loyalty: ["gateway", "customer-profile", "order-tracking", "complaint-ticket"],
  "complaint-ticket": ["gateway", "customer-profile", "order-tracking"],
  recommendation: ["gateway", "customer-profile", "order-tracking", "complaint-ticket"],
};
// Data files each service reads: flag env var -> ConfigMap (generated from deploy/config) and its key.
const CONFIG_FILES = {
  "customer-profile": { env: "CRM_SEGMENT_RULES_FILE", configMap: "segment-rules", key: "segment-rules.textproto" },
  loyalty: { env: "CRM_RULES_FILE", configMap: "loyalty-rules", key: "loyalty-rules.textproto" },
  "order-tracking": { env: "CRM_RETURN_POLICY_FILE", configMap: "return-policy", key: "return-policy.txt" },
  "complaint-ticket": { env: "CRM_LEXICON_FILE", configMap: "complaint-lexicon", key: "complaint-lexicon.textproto" },
};
const JWT_SECRET = "crm-gateway-jwt";
// The deployment's shared internal key (every process), and each process's TLS Secret (tls.crt, tls.key,
// ca.crt), mounted where CRM_TLS_DIR points. Neither is part of the manifests: the operator creates the key,
// cert-manager (or the operator) the TLS Secrets.
const INTERNAL_KEY_SECRET = "crm-internal-key";
const INTERNAL_KEY_FILE = "internal-key";
const tlsSecret = (name) => `crm-tls-${name}`;
const TLS_USAGES = ["server auth", "client auth"];
const RUN_AS_USER = 10001; // the image's user (deploy/container/Dockerfile)
// Per overlay: shards per data service, and the least number of gateway replicas.
// certManager: the overlay includes deploy/k8s/components/cert-manager (its Certificates must be rendered).
const OVERLAYS = {
  dev: { shards: 1, gatewayMin: 1, certManager: true },
  prod: { shards: 3, gatewayMin: 3, certManager: true },
};

// ---------------------------------------------------------------------------------------------------------
// Load.

const text = fs.readFileSync(file, "utf8");
const docs = [];
for (const d of YAML.parseAllDocuments(text)) {
  if (d.errors.length) {
    for (const e of d.errors) problem("YAML", e.message);
    continue;
  }
  const obj = d.toJS();
  if (obj === null || obj === undefined) continue;
  docs.push(obj);
}
if (problems.length) finish();
if (docs.length === 0) {
  problem("render", "no objects rendered");
  finish();
}

function id(o) {
  return `${o.kind || "?"}/${(o.metadata && o.metadata.name) || "?"}`;
}

// ---------------------------------------------------------------------------------------------------------
// 1. Schema, with kubernetes-models' compiled OpenAPI validators (cert-manager.io: @kubernetes-models/cert-manager's).

// Custom resources: API group -> the package with its CRDs' schemas (same layout as kubernetes-models). The Gateway
// API models are ES modules only: they are validated in a child Node.js process with import() (validateEsm).
const CRD_MODELS = {
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
};
const ESM_PACKAGES = new Set(["@kubernetes-models/gateway-api"]);

function modelModule(o) {
  if (typeof o.apiVersion !== "string" || typeof o.kind !== "string") return null;
  const group = o.apiVersion.includes("/") ? o.apiVersion.split("/")[0] : "";
  if (CRD_MODELS[group]) return `${CRD_MODELS[group]}/${o.apiVersion}/${o.kind}`;
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}
// "kubernetes-models/apps/v1/Deployment" -> "kubernetes-models"; "@kubernetes-models/cert-manager/..." -> its package.
const modelPackage = (mod) => mod.split("/").slice(0, mod.startsWith("@") ? 2 : 1).join("/");

// Validates objects whose models are ES modules, synchronously, in a child process: [[index, module], ...] ->
// {index: [error, ...]}.
function validateEsm(items) {
  if (items.length === 0) return {};
  const code = `
    const items = JSON.parse(require("fs").readFileSync(0, "utf8"));
    (async () => {
      const out = {};
      for (const [i, mod, o] of items) {
        try {
          const Model = (await import(mod))[o.kind];
          new Model(o).validate();
        } catch (e) {
          out[i] = Array.isArray(e.errors)
            ? e.errors.map((x) => \`\${x.instancePath || "/"} \${x.message}\${x.params ? " " + JSON.stringify(x.params) : ""}\`)
            : [e.code === "ERR_MODULE_NOT_FOUND" || e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" ? "no schema: " + e.message : e.message];
        }
      }
      process.stdout.write(JSON.stringify(out));
    })();`;
  const r = require("child_process").spawnSync(process.execPath, ["-e", code], {
    cwd: __dirname,
    input: JSON.stringify(items.map(([i, mod]) => [i, mod, docs[i]])),
    encoding: "utf8",
  });
  if (r.status !== 0) {
    problem("schema", `the ES module validator failed: ${r.stderr}`);
    return {};
  }
  return JSON.parse(r.stdout);
}
const esmItems = [];
docs.forEach((o, i) => {
  const mod = modelModule(o);
  if (mod && ESM_PACKAGES.has(modelPackage(mod))) esmItems.push([i, mod]);
});
for (const [i, errors] of Object.entries(validateEsm(esmItems))) {
  for (const e of errors) problem(id(docs[i]), `schema: ${e}`);
}

for (const o of docs) {
  const mod = modelModule(o);
  if (!mod) {
    problem(id(o), "no apiVersion or kind");
    continue;
  }
  if (ESM_PACKAGES.has(modelPackage(mod))) continue;
  let Model;
  try {
    Model = require(mod)[o.kind];
  } catch (e) {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    problem(id(o), `unknown apiVersion/kind ${o.apiVersion} ${o.kind} (no schema in ${modelPackage(mod)})`);
    continue;
  }
  try {
    new Model(o).validate();
  } catch (e) {
    const details = Array.isArray(e.errors)
      ? e.errors.map((x) => `${x.instancePath || "/"} ${x.message}${x.params ? " " + JSON.stringify(x.params) : ""}`)
      : [e.message];
    for (const d of details) problem(id(o), `schema: ${d}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// 2. Unknown fields: TypeScript's excess-property check of each object literal against its interface.

(function typeCheck() {
  const virtualName = path.join(__dirname, `__rendered_${overlay.replace(/[^A-Za-z0-9_]/g, "_")}.ts`);
  const lines = [];
  const ranges = []; // [first line, last line, object]
  // Documents whose schema module resolves (the others are reported above), with their index.
  const typed = [];
  docs.forEach((o, i) => {
    const mod = modelModule(o);
    if (!mod) return;
    // TypeScript reads the declaration files directly (an ES module package exports nothing to require).
    const pkg = modelPackage(mod);
    const declaration = path.join(__dirname, "node_modules", pkg, `${mod.slice(pkg.length + 1)}.d.ts`);
    if (!fs.existsSync(declaration)) return;
    typed.push([o, i, mod]);
  });
  for (const [o, i, mod] of typed) {
    lines.push(`import type { I${o.kind} as T${i} } from ${JSON.stringify(mod)};`);
  }
  for (const [o, i] of typed) {
    const body = JSON.stringify(o, null, 2).split("\n");
    const first = lines.length;
    lines.push(`export const doc${i}: T${i} = ${body[0]}`);
    for (const l of body.slice(1)) lines.push(l);
    lines[lines.length - 1] += ";";
    ranges.push([first, lines.length - 1, o]);
  }
  const source = lines.join("\n") + "\n";
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, create) =>
    path.resolve(name) === virtualName
      ? ts.createSourceFile(name, source, lang, true)
      : getSourceFile(name, lang, onError, create);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtualName || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (path.resolve(name) === virtualName ? source : readFile(name));
  const program = ts.createProgram([virtualName], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const d of diagnostics) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
    if (!d.file || path.resolve(d.file.fileName) !== virtualName) {
      problem("typescript", message);
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const range = ranges.find(([a, b]) => line >= a && line <= b);
    const where = range ? id(range[2]) : "typescript";
    problem(where, `fields: ${message} (at: ${lines[line].trim()})`);
  }
})();

// ---------------------------------------------------------------------------------------------------------
// 3. Policy.

const byKind = {};
for (const o of docs) (byKind[o.kind] = byKind[o.kind] || []).push(o);
const all = (kind) => byKind[kind] || [];
const named = (kind, name) => all(kind).find((o) => o.metadata && o.metadata.name === name);
const configMaps = new Map(all("ConfigMap").map((c) => [c.metadata.name, c]));
// Generated ConfigMaps carry a hash suffix: "crm-addresses-5k84dk468f".
const configMapBase = (name) => name.replace(/-[a-z0-9]{10}$/, "");
const findConfigMap = (base) => all("ConfigMap").find((c) => configMapBase(c.metadata.name) === base);

function quantityBytes(q) {
  if (q === undefined || q === null) return NaN;
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) return NaN;
  const mult = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2]] || 1;
  return Number(m[1]) * mult;
}

function selects(selector, labels) {
  if (!selector || !labels) return false;
  for (const [k, v] of Object.entries(selector.matchLabels || {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

// The environment a container sees: envFrom ConfigMaps first, then env (which wins).
function effectiveEnv(where, container) {
  const env = {};
  for (const src of container.envFrom || []) {
    if (src.configMapRef) {
      const cm = configMaps.get(src.configMapRef.name);
      if (!cm) {
        problem(where, `envFrom ConfigMap ${src.configMapRef.name} is not in the rendered manifests`);
        continue;
      }
      Object.assign(env, cm.data || {});
    } else {
      problem(where, "envFrom other than a ConfigMap");
    }
  }
  for (const e of container.env || []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom && e.valueFrom.configMapKeyRef) {
      const cm = configMaps.get(e.valueFrom.configMapKeyRef.name);
      if (!cm) problem(where, `env ${e.name}: ConfigMap ${e.valueFrom.configMapKeyRef.name} is not rendered`);
      else env[e.name] = (cm.data || {})[e.valueFrom.configMapKeyRef.key];
    } else env[e.name] = undefined;
  }
  return env;
}

const expectation = OVERLAYS[overlay];
const workloads = [...all("Deployment"), ...all("StatefulSet")];
// The site's settings the overlay was rendered with (render_and_validate.sh passes its site.env in CRM_SITE_ENV).
const site = {};
if (process.env.CRM_SITE_ENV) {
  for (const line of fs.readFileSync(process.env.CRM_SITE_ENV, "utf8").split("\n")) {
    const m = /^([a-z_]+)=(.*)$/.exec(line.trim());
    if (m) site[m[1]] = m[2];
  }
}
// Prometheus' namespace: the one namespace allow-metrics-scrape admits to the metrics ports.
const scrapePolicy = named("NetworkPolicy", "allow-metrics-scrape");
const monitoringNamespace = (() => {
  try {
    return scrapePolicy.spec.ingress[0].from[0].namespaceSelector.matchLabels["kubernetes.io/metadata.name"];
  } catch (e) {
    problem("NetworkPolicy/allow-metrics-scrape", "missing, or admits no namespace by kubernetes.io/metadata.name");
    return undefined;
  }
})();

// Every process is there, as the right kind.
if (!named("Deployment", "gateway")) problem("gateway", "no Deployment gateway");
for (const s of DATA_SERVICES) if (!named("StatefulSet", s)) problem(s, `no StatefulSet ${s}`);

// Deleting never deletes data: the overlay holds no Namespace (`kubectl delete -k` would take every volume of it
// along) and no PersistentVolumeClaim (the StatefulSets' claim templates make them, and keep them: below).
// Everything is in one namespace, which deploy/k8s/namespaces/<namespace>.yaml creates.
for (const kind of ["Namespace", "PersistentVolumeClaim"]) {
  for (const o of all(kind)) problem(id(o), `a ${kind} in the overlay: kubectl delete -k would delete it and its data`);
}
const account = named("ServiceAccount", "crm");
const namespace = account && account.metadata.namespace;
if (!namespace) problem("namespace", "ServiceAccount crm has no namespace: the overlay must set `namespace:`");
for (const o of docs) {
  if (!o.metadata || o.metadata.namespace !== namespace) {
    problem(id(o), `namespace is ${o.metadata && o.metadata.namespace}, expected ${namespace}`);
  }
}
if (namespace) checkNamespaceFile(namespace);

function checkNamespaceFile(name) {
  const nsFile = path.join(__dirname, "..", "..", "deploy", "k8s", "namespaces", `${name}.yaml`);
  if (!fs.existsSync(nsFile)) {
    problem("namespace", `no deploy/k8s/namespaces/${name}.yaml creating the namespace ${name}`);
    return;
  }
  const ns = YAML.parseAllDocuments(fs.readFileSync(nsFile, "utf8")).map((d) => d.toJS()).filter(Boolean);
  if (ns.length !== 1 || ns[0].kind !== "Namespace" || ns[0].metadata.name !== name) {
    problem(`namespaces/${name}.yaml`, `expected exactly one Namespace named ${name}`);
    return;
  }
  try {
    new (require("kubernetes-models/v1/Namespace").Namespace)(ns[0]).validate();
  } catch (e) {
    problem(`namespaces/${name}.yaml`, `schema: ${e.message}`);
  }
  if ((ns[0].metadata.labels || {})["pod-security.kubernetes.io/enforce"] !== "restricted") {
    problem(`namespaces/${name}.yaml`, "does not enforce the restricted Pod Security Standard");
  }
}

// Shards actually deployed per data service, for the address checks.
const shards = {};
for (const s of DATA_SERVICES) {
  const sts = named("StatefulSet", s);
  shards[s] = sts ? sts.spec.replicas : undefined;
  if (expectation && sts && sts.spec.replicas !== expectation.shards) {
    problem(id(sts), `replicas (shards) ${sts.spec.replicas}, expected ${expectation.shards} in ${overlay}`);
  }
}
const expectedAddress = (s) =>
  Array.from({ length: shards[s] || 0 }, (_, i) => `${s}-${i}.${s}:${PORTS[s].grpc}`).join("|");

for (const w of workloads) {
  const name = w.metadata.name;
  const where = id(w);
  const ports = PORTS[name];
  if (!ports) {
    problem(where, "not one of the CRM processes");
    continue;
  }
  const pod = w.spec.template;
  const spec = pod.spec;
  const podLabels = (pod.metadata && pod.metadata.labels) || {};
  if (!selects(w.spec.selector, podLabels)) problem(where, "selector does not select its own pod template");
  if (podLabels["app.kubernetes.io/name"] !== name) problem(where, `pod label app.kubernetes.io/name is not ${name}`);

  // Prometheus scrape annotations.
  const ann = (pod.metadata && pod.metadata.annotations) || {};
  if (ann["prometheus.io/scrape"] !== "true") problem(where, 'pod annotation prometheus.io/scrape is not "true"');
  if (ann["prometheus.io/port"] !== String(ports.metrics)) {
    problem(where, `pod annotation prometheus.io/port is ${ann["prometheus.io/port"]}, expected "${ports.metrics}"`);
  }
  if (ann["prometheus.io/path"] !== "/metrics") problem(where, "pod annotation prometheus.io/path is not /metrics");

  // Security.
  const psc = spec.securityContext || {};
  if (psc.runAsNonRoot !== true) problem(where, "pod securityContext.runAsNonRoot is not true");
  if (psc.runAsUser !== RUN_AS_USER) problem(where, `pod securityContext.runAsUser is not ${RUN_AS_USER} (the image's user)`);
  if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault") {
    problem(where, "pod securityContext.seccompProfile is not RuntimeDefault");
  }
  if (spec.automountServiceAccountToken !== false) problem(where, "automountServiceAccountToken is not false");

  if (!spec.containers || spec.containers.length !== 1) {
    problem(where, "expected exactly one container");
    continue;
  }
  const c = spec.containers[0];
  const cw = `${where} container ${c.name}`;
  const sc = c.securityContext || {};
  if (sc.allowPrivilegeEscalation !== false) problem(cw, "allowPrivilegeEscalation is not false");
  if (sc.readOnlyRootFilesystem !== true) problem(cw, "readOnlyRootFilesystem is not true");
  if (!sc.capabilities || !(sc.capabilities.drop || []).includes("ALL")) problem(cw, "capabilities do not drop ALL");
  if (sc.privileged) problem(cw, "privileged");
  if (!c.command || c.command[0] !== `/usr/local/bin/${name}`) {
    problem(cw, `command is ${JSON.stringify(c.command)}, expected ["/usr/local/bin/${name}"]`);
  }

  // Resources.
  const res = c.resources || {};
  const req = res.requests || {};
  const lim = res.limits || {};
  if (!req.cpu || !req.memory) problem(cw, "resources.requests needs cpu and memory");
  if (!lim.memory) problem(cw, "resources.limits needs memory");
  if (quantityBytes(req.memory) > quantityBytes(lim.memory)) problem(cw, "memory request above its limit");

  // Ports.
  const portOf = {};
  for (const p of c.ports || []) portOf[p.name] = p.containerPort;
  if (portOf.grpc !== ports.grpc) problem(cw, `container port "grpc" is ${portOf.grpc}, expected ${ports.grpc}`);
  if (portOf.metrics !== ports.metrics) {
    problem(cw, `container port "metrics" is ${portOf.metrics}, expected ${ports.metrics}`);
  }

  // Flags through the environment.
  const env = effectiveEnv(cw, c);
  if (env.CRM_LISTEN !== `0.0.0.0:${ports.grpc}`) problem(cw, `CRM_LISTEN is ${env.CRM_LISTEN}, expected 0.0.0.0:${ports.grpc}`);
  if (env.CRM_METRICS_LISTEN !== `0.0.0.0:${ports.metrics}`) {
    problem(cw, `CRM_METRICS_LISTEN is ${env.CRM_METRICS_LISTEN}, expected 0.0.0.0:${ports.metrics}`);
  }
  for (const s of DATA_SERVICES) {
    const key = `CRM_${s.toUpperCase().replace(/-/g, "_")}_ADDRESS`;
    if (env[key] !== expectedAddress(s)) {
      problem(cw, `${key} is "${env[key]}", expected every shard: "${expectedAddress(s)}"`);
    }
  }
  const drain = Number(env.CRM_DRAIN_SECONDS || 10);
  let preStopSleep = 0;
  const preStop = c.lifecycle && c.lifecycle.preStop;
  if (preStop && preStop.sleep) preStopSleep = Number(preStop.sleep.seconds);
  else if (preStop) problem(cw, "preStop other than sleep (the image has no shell)");
  const grace = spec.terminationGracePeriodSeconds === undefined ? 30 : spec.terminationGracePeriodSeconds;
  if (!(grace > drain + preStopSleep)) {
    problem(where, `terminationGracePeriodSeconds ${grace} is not longer than preStop ${preStopSleep} s + --drain_seconds ${drain}`);
  }

  // Probes: native gRPC health checks. A data service's gRPC port requires a client certificate, which the
  // kubelet does not have: its probes go to the plaintext health port (CRM_HEALTH_LISTEN). The gateway's own
  // port is plaintext and is probed there.
  // The gateway's readiness is its HTTP front door's GET /healthz (the port browsers use), its liveness the gRPC
  // port: both ports are watched.
  const probePort = ports.health || ports.grpc;
  const probes = ["livenessProbe"];
  if (w.kind === "StatefulSet") probes.push("readinessProbe", "startupProbe");
  else {
    const ready = c.readinessProbe && c.readinessProbe.httpGet;
    if (!ready || ready.path !== "/healthz" || (ready.port !== "http" && ready.port !== 8080)) {
      problem(cw, "readinessProbe is not GET /healthz on the HTTP port");
    }
  }
  for (const p of probes) {
    const probe = c[p];
    if (!probe || !probe.grpc) problem(cw, `${p} is not a gRPC probe`);
    else if (probe.grpc.port !== probePort) problem(cw, `${p} checks port ${probe.grpc.port}, not ${probePort}`);
  }
  if (ports.health) {
    if (portOf.health !== ports.health) problem(cw, `container port "health" is ${portOf.health}, expected ${ports.health}`);
    if (env.CRM_HEALTH_LISTEN !== `0.0.0.0:${ports.health}`) {
      problem(cw, `CRM_HEALTH_LISTEN is ${env.CRM_HEALTH_LISTEN}, expected 0.0.0.0:${ports.health} (its probes' port)`);
    }
  } else {
    if (portOf.health !== undefined) problem(cw, 'container port "health" on a process without a health port');
    if (env.CRM_HEALTH_LISTEN !== undefined) problem(cw, "CRM_HEALTH_LISTEN set on a process without a health port");
  }

  // Volumes and what they mount.
  const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
  for (const v of spec.volumes || []) {
    if (v.configMap && !configMaps.has(v.configMap.name)) {
      problem(where, `volume ${v.name}: ConfigMap ${v.configMap.name} is not in the rendered manifests`);
    }
  }
  const mountOf = (predicate) => (c.volumeMounts || []).find((m) => predicate(m, volumes.get(m.name)));
  const secretMount = (secretName) => mountOf((mount, vol) => vol && vol.secret && vol.secret.secretName === secretName);

  // The deployment's internal key (every process signs and checks caller assertions and page tokens with it):
  // Secret crm-internal-key mounted read-only, CRM_INTERNAL_KEY_FILE in it.
  const keyMount = secretMount(INTERNAL_KEY_SECRET);
  if (!keyMount) problem(cw, `Secret ${INTERNAL_KEY_SECRET} is not mounted`);
  else {
    if (keyMount.readOnly !== true) problem(cw, `Secret ${INTERNAL_KEY_SECRET} is not mounted readOnly`);
    if (env.CRM_INTERNAL_KEY_FILE !== `${keyMount.mountPath}/${INTERNAL_KEY_FILE}`) {
      problem(cw, `CRM_INTERNAL_KEY_FILE is ${env.CRM_INTERNAL_KEY_FILE}, expected ${keyMount.mountPath}/${INTERNAL_KEY_FILE}`);
    }
  }
  // Mutual TLS between the processes: the process's own Secret crm-tls-<name> (and no other process's),
  // mounted read-only where CRM_TLS_DIR points.
  const tlsMount = secretMount(tlsSecret(name));
  if (!tlsMount) problem(cw, `Secret ${tlsSecret(name)} (its TLS certificate) is not mounted`);
  else {
    if (tlsMount.readOnly !== true) problem(cw, `Secret ${tlsSecret(name)} is not mounted readOnly`);
    if (env.CRM_TLS_DIR !== tlsMount.mountPath) {
      problem(cw, `CRM_TLS_DIR is ${env.CRM_TLS_DIR}, expected ${tlsMount.mountPath} (where ${tlsSecret(name)} is mounted)`);
    }
  }
  for (const v of spec.volumes || []) {
    const other = v.secret && v.secret.secretName;
    if (other && other.startsWith("crm-tls-") && other !== tlsSecret(name)) {
      problem(where, `volume ${v.name} holds another process's TLS Secret ${other}`);
    }
  }

  // Every pod has a PodDisruptionBudget and a NetworkPolicy.
  if (!all("PodDisruptionBudget").some((p) => selects(p.spec.selector, podLabels))) problem(where, "no PodDisruptionBudget");
  const policies = all("NetworkPolicy").filter((p) => selects(p.spec.podSelector, podLabels));
  const own = policies.filter((p) => p.metadata.name === name);
  if (own.length !== 1) problem(where, `expected one NetworkPolicy named ${name} selecting its pods, found ${own.length}`);
  const resolvePort = (p) => (typeof p === "number" ? p : portOf[p]);
  const allowed = { grpc: [], metrics: [], http: [], health: [] };
  for (const pol of policies) {
    if (!(pol.spec.policyTypes || []).includes("Ingress")) problem(id(pol), "policyTypes does not include Ingress");
    for (const rule of pol.spec.ingress || []) {
      const rulePorts = (rule.ports || []).map((p) => resolvePort(p.port));
      if (rulePorts.length === 0) problem(id(pol), "an ingress rule opens every port");
      for (const port of rulePorts) {
        const portName = Object.keys(portOf).find((k) => portOf[k] === port) || String(port);
        (allowed[portName] = allowed[portName] || []).push(rule.from || null);
      }
    }
  }
  const fromMonitoringOnly = (froms) =>
    froms.length > 0 &&
    froms.every(
      (f) =>
        f !== null &&
        f.length > 0 &&
        f.every(
          (peer) =>
            peer.namespaceSelector &&
            (peer.namespaceSelector.matchLabels || {})["kubernetes.io/metadata.name"] === monitoringNamespace &&
            !peer.ipBlock
        )
    );
  if (!fromMonitoringOnly(allowed.metrics)) {
    problem(where, `metrics port not open to exactly the monitoring namespace "${monitoringNamespace}"`);
  }
  // The health port serves nothing but grpc.health.v1: it stays open to every source, so that no policy stands
  // between it and the kubelet's probes (whatever source address the CNI gives them).
  if (ports.health && !allowed.health.some((f) => f === null || f.length === 0)) {
    problem(where, "health port not open to every source (the kubelet's probes must reach it)");
  }

  if (w.kind === "StatefulSet") {
    // Sharding, storage, headless service.
    if (env.CRM_SHARD_INDEX !== "-1") problem(cw, `CRM_SHARD_INDEX is ${env.CRM_SHARD_INDEX}, expected -1 (ordinal from the pod name)`);
    if (w.spec.serviceName !== name) problem(where, `serviceName is ${w.spec.serviceName}, expected ${name}`);
    const headless = named("Service", name);
    if (!headless) problem(where, `no Service ${name}`);
    else {
      if (headless.spec.clusterIP !== "None") problem(id(headless), "is not headless (clusterIP: None)");
      if (!selects({ matchLabels: headless.spec.selector }, podLabels)) problem(id(headless), "does not select the pods");
      if (!(headless.spec.ports || []).some((p) => p.port === ports.grpc)) problem(id(headless), `no port ${ports.grpc}`);
    }
    const claims = (w.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
    const dataMount = (c.volumeMounts || []).find((m) => m.mountPath === "/var/lib/crm");
    if (!dataMount || !claims.includes(dataMount.name)) problem(cw, "/var/lib/crm is not a volumeClaimTemplate volume");
    if (!env.CRM_DATA_DIR || !(env.CRM_DATA_DIR + "/").startsWith("/var/lib/crm/")) {
      problem(cw, `CRM_DATA_DIR ${env.CRM_DATA_DIR} is not on the /var/lib/crm volume`);
    }
    const retention = w.spec.persistentVolumeClaimRetentionPolicy || {};
    if (retention.whenScaled !== "Retain" || retention.whenDeleted !== "Retain") {
      problem(where, "persistentVolumeClaimRetentionPolicy must Retain shard data when deleted and when scaled");
    }
    for (const t of w.spec.volumeClaimTemplates || []) {
      if (!t.spec.storageClassName) problem(where, `volumeClaimTemplate ${t.metadata.name} has no storageClassName`);
    }
    const startup = c.startupProbe;
    if (startup && (startup.failureThreshold || 3) * (startup.periodSeconds || 10) < 300) {
      problem(cw, "startupProbe allows less than 5 minutes for RocksDB recovery");
    }
    const cacheMb = Number(env.CRM_BLOCK_CACHE_MB || 64);
    if (quantityBytes(lim.memory) < (cacheMb + 128) * 2 ** 20) {
      problem(cw, `memory limit ${lim.memory} leaves less than 128 MiB beyond the ${cacheMb} MiB block cache`);
    }
    // Who may call it.
    const grpcFroms = allowed.grpc;
    const callers = [];
    let open = false;
    for (const f of grpcFroms) {
      if (f === null || f.length === 0) open = true;
      else
        for (const peer of f) {
          if (peer.namespaceSelector || peer.ipBlock) open = true;
          const sel = peer.podSelector || {};
          const ml = sel.matchLabels || {};
          if (ml["app.kubernetes.io/name"]) callers.push(ml["app.kubernetes.io/name"]);
          for (const e of sel.matchExpressions || []) {
            if (e.key === "app.kubernetes.io/name" && e.operator === "In") callers.push(...e.values);
            else open = true;
          }
          if (!ml["app.kubernetes.io/name"] && !(sel.matchExpressions || []).length) open = true;
        }
    }
    if (open) problem(where, "gRPC port open beyond the pods of the calling services");
    const want = [...CALLERS[name]].sort();
    const got = [...new Set(callers)].sort();
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      problem(where, `gRPC port callers are [${got}], expected [${want}]`);
    }
    // Data files.
    const cfg = CONFIG_FILES[name];
    if (cfg) {
      const m = mountOf((mount, vol) => vol && vol.configMap && configMapBase(vol.configMap.name) === cfg.configMap);
      const cm = findConfigMap(cfg.configMap);
      if (!cm || !(cm.data || {})[cfg.key]) problem(where, `ConfigMap ${cfg.configMap} with key ${cfg.key} not rendered`);
      if (!m) problem(cw, `ConfigMap ${cfg.configMap} is not mounted`);
      else if (env[cfg.env] !== `${m.mountPath}/${cfg.key}`) {
        problem(cw, `${cfg.env} is ${env[cfg.env]}, expected ${m.mountPath}/${cfg.key}`);
      }
    }
  } else {
    // The gateway.
    if (env.CRM_SHARD_INDEX !== undefined) problem(cw, "CRM_SHARD_INDEX set on a Deployment (its pod names have no ordinal)");
    const hpa = all("HorizontalPodAutoscaler").find(
      (h) => h.spec.scaleTargetRef.kind === "Deployment" && h.spec.scaleTargetRef.name === name
    );
    if (!hpa) problem(where, "no HorizontalPodAutoscaler");
    else {
      if (!(hpa.spec.metrics || []).some((m) => m.type === "Resource" && m.resource.name === "cpu")) {
        problem(id(hpa), "does not scale on CPU");
      }
      if (expectation && (hpa.spec.minReplicas || 1) < expectation.gatewayMin) {
        problem(id(hpa), `minReplicas ${hpa.spec.minReplicas} below ${expectation.gatewayMin} in ${overlay}`);
      }
      if (hpa.spec.maxReplicas < (hpa.spec.minReplicas || 1)) problem(id(hpa), "maxReplicas below minReplicas");
    }
    // The autoscaler owns the replica count: a value in the manifest would reset its scale on every apply.
    if (hpa && w.spec.replicas !== undefined) {
      problem(where, `sets replicas (${w.spec.replicas}) although ${id(hpa)} scales it; leave replicas out`);
    }
    if (portOf.http !== 8080) problem(cw, 'container port "http" is not 8080');
    if (env.CRM_HTTP_LISTEN !== "0.0.0.0:8080") problem(cw, `CRM_HTTP_LISTEN is ${env.CRM_HTTP_LISTEN}, expected 0.0.0.0:8080`);
    const svc = named("Service", name);
    if (!svc) problem(where, `no Service ${name}`);
    else {
      const sp = (svc.spec.ports || []).map((p) => p.port).sort();
      if (JSON.stringify(sp) !== JSON.stringify([50050, 8080].sort())) problem(id(svc), `ports ${sp}, expected 50050 and 8080`);
      if (!selects({ matchLabels: svc.spec.selector }, podLabels)) problem(id(svc), "does not select the gateway pods");
    }
    // The JWT key: a reference to a Secret the operator creates, mounted read-only; never the secret itself.
    if (named("Secret", JWT_SECRET)) problem(where, `the Secret ${JWT_SECRET} must not be in the manifests`);
    const jwt = mountOf((mount, vol) => vol && vol.secret && vol.secret.secretName === JWT_SECRET);
    if (!jwt) problem(cw, `Secret ${JWT_SECRET} is not mounted`);
    const keyFiles = ["CRM_JWT_SECRET_FILE", "CRM_JWT_PUBLIC_KEY_FILE"].filter((k) => env[k]);
    if (keyFiles.length !== 1) problem(cw, "expected exactly one of CRM_JWT_SECRET_FILE, CRM_JWT_PUBLIC_KEY_FILE");
    for (const k of keyFiles) {
      if (jwt && !env[k].startsWith(jwt.mountPath + "/")) problem(cw, `${k} ${env[k]} is not in the Secret mount ${jwt.mountPath}`);
    }
    if (!env.CRM_JWT_ISSUER || !env.CRM_JWT_AUDIENCE) problem(cw, "CRM_JWT_ISSUER and CRM_JWT_AUDIENCE must be set");
    const publicPorts = [...(allowed.grpc || []), ...(allowed.http || [])];
    if (publicPorts.length === 0) problem(where, "NetworkPolicy does not let clients reach the gateway");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Secrets: the internal key and the TLS keys are referenced, never part of the manifests.

for (const secret of [INTERNAL_KEY_SECRET, ...Object.keys(PORTS).map(tlsSecret)]) {
  if (named("Secret", secret)) problem(`Secret/${secret}`, "must not be in the manifests (a private key in the repository)");
}

// ---------------------------------------------------------------------------------------------------------
// cert-manager: Issuer crm-selfsigned -> CA Certificate -> CA Issuer -> one Certificate per process.

// Whether gRPC (C core: tsi_ssl_peer_matches_name, checked on every call) accepts the certificate name `entry`
// for the host it dials: an exact match, or "*.<rest>" where the host minus its first label equals <rest> and
// itself contains a dot. So "*.loyalty" does NOT cover "loyalty-0.loyalty" for gRPC.
function grpcNameMatches(entry, host) {
  entry = entry.toLowerCase().replace(/\.$/, "");
  host = host.toLowerCase().replace(/\.$/, "");
  if (entry === host) return true;
  if (!entry.startsWith("*.") || entry.length < 3) return false;
  const dot = host.indexOf(".");
  if (dot < 0 || dot >= host.length - 2) return false;
  const rest = host.slice(dot + 1);
  const inner = rest.indexOf(".");
  if (inner < 0 || inner === rest.length - 1) return false;
  return entry.slice(2) === rest;
}

// A Go duration ("2160h", "720h0m0s", "90m") in seconds; NaN if it is not one.
function durationSeconds(d) {
  if (typeof d !== "string" || !/^([0-9.]+(h|m|s|ms))+$/.test(d)) return NaN;
  let total = 0;
  for (const [, n, unit] of d.matchAll(/([0-9.]+)(h|ms|m|s)/g)) total += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit];
  return total;
}

const isCertManager = (o) => typeof o.apiVersion === "string" && o.apiVersion.startsWith("cert-manager.io/");
const certificates = docs.filter((o) => isCertManager(o) && o.kind === "Certificate");
const issuers = docs.filter((o) => isCertManager(o) && (o.kind === "Issuer" || o.kind === "ClusterIssuer"));
// Every address clients dial for each data service (crm-addresses: shards split by "|", replicas by ",").
const addresses = findConfigMap("crm-addresses");
const dialedHosts = (s) => {
  const key = `CRM_${s.toUpperCase().replace(/-/g, "_")}_ADDRESS`;
  const value = ((addresses && addresses.data) || {})[key] || "";
  return value.split(/[|,]/).filter(Boolean).map((a) => a.replace(/:[0-9]+$/, ""));
};
const issuerOf = (cert) => {
  const ref = (cert.spec && cert.spec.issuerRef) || {};
  return issuers.find((i) => i.kind === (ref.kind || "Issuer") && i.metadata.name === ref.name);
};

if ((expectation && expectation.certManager) || certificates.length || issuers.length) {
  const processIssuers = new Set();
  for (const name of Object.keys(PORTS)) {
    const secret = tlsSecret(name);
    const found = certificates.filter((c) => c.spec && c.spec.secretName === secret);
    if (found.length !== 1) {
      problem(name, `expected one cert-manager Certificate with secretName ${secret}, found ${found.length}`);
      continue;
    }
    const cert = found[0];
    const cs = cert.spec;
    const where = id(cert);
    if (cs.commonName !== name) problem(where, `commonName is ${cs.commonName}, expected ${name} (the services check it against the caller's signer)`);
    for (const u of TLS_USAGES) if (!(cs.usages || []).includes(u)) problem(where, `usages lack "${u}" (every process is TLS server and client)`);
    if (cs.isCA) problem(where, "isCA on a process's certificate");
    const key = cs.privateKey || {};
    const strongKey =
      (key.algorithm === "ECDSA" && [256, 384, 521].includes(key.size)) || (key.algorithm === "RSA" && key.size >= 2048);
    if (!strongKey) problem(where, `privateKey ${JSON.stringify(key)}: expected ECDSA 256/384/521 or RSA of 2048 bits or more`);
    const duration = durationSeconds(cs.duration);
    const renewBefore = durationSeconds(cs.renewBefore);
    if (!(duration > 0) || !(renewBefore > 0)) problem(where, "duration and renewBefore must both be set (Go durations)");
    else if (!(renewBefore < duration)) problem(where, `renewBefore ${cs.renewBefore} is not shorter than duration ${cs.duration}`);
    else if (renewBefore < 24 * 3600) problem(where, `renewBefore ${cs.renewBefore} leaves less than a day to notice a failed renewal`);
    // The names clients dial.
    const dnsNames = cs.dnsNames || [];
    const want = [name, `*.${name}`, `${name}.${namespace}.svc`, `*.${name}.${namespace}.svc`, `*.${name}.${namespace}.svc.cluster.local`];
    for (const n of want) if (!dnsNames.includes(n)) problem(where, `dnsNames lack ${n}`);
    for (const n of dnsNames) {
      const m = /^(?:\*\.)?[a-z0-9-]+\.([a-z0-9-]+)\.svc(?:\.|$)/i.exec(n);
      if (m && m[1] !== namespace) problem(where, `dnsName ${n} names namespace ${m[1]}, not ${namespace}`);
    }
    if (DATA_SERVICES.includes(name)) {
      for (const host of dialedHosts(name)) {
        if (!dnsNames.some((n) => grpcNameMatches(n, host))) {
          problem(where, `no dnsName that gRPC accepts for ${host}, which crm-addresses dials (a wildcard does not cover a one-label suffix: list ${host})`);
        }
      }
    }
    // Issued by a CA Issuer whose CA is itself a Certificate of these manifests.
    const issuer = issuerOf(cert);
    if (!issuer) {
      problem(where, `issuerRef ${JSON.stringify(cs.issuerRef)} is not a rendered Issuer`);
      continue;
    }
    processIssuers.add(`${issuer.kind}/${issuer.metadata.name}`);
    if (issuer.kind !== "Issuer") problem(where, `issued by a ${issuer.kind}: use a namespaced Issuer (the CA is the deployment's)`);
    const caSecret = issuer.spec && issuer.spec.ca && issuer.spec.ca.secretName;
    if (!caSecret) {
      problem(id(issuer), "is not a CA Issuer (spec.ca.secretName), yet issues the processes' certificates");
      continue;
    }
    const ca = certificates.find((c) => c.spec && c.spec.secretName === caSecret);
    if (!ca) problem(id(issuer), `its CA Secret ${caSecret} is not issued by a Certificate of these manifests`);
    else {
      if (ca.spec.isCA !== true) problem(id(ca), "is the processes' CA but not isCA: true");
      const root = issuerOf(ca);
      if (!root) problem(id(ca), `issuerRef ${JSON.stringify(ca.spec.issuerRef)} is not a rendered Issuer`);
      else if (!(root.spec && root.spec.selfSigned) && !(root.spec && root.spec.ca)) {
        problem(id(root), "issues the CA certificate but is neither selfSigned nor a CA Issuer");
      }
      if (durationSeconds(ca.spec.duration) < 2 * duration) problem(id(ca), "the CA does not outlive two of its certificates' lifetimes");
    }
  }
  if (processIssuers.size > 1) {
    problem("Certificate", `the processes' certificates come from ${processIssuers.size} issuers [${[...processIssuers]}]: each process trusts only its own ca.crt, so one CA must sign them all`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The site's settings (site.env, components/site), exposure and the Prometheus Operator.

// No placeholder reaches a cluster: an example domain, a value the site component was to replace, or the
// namespace placeholder of the certificates' DNS names.
const PLACEHOLDERS = [/example\.(com|org|net)/, /set-by-site\.env/, /\bNAMESPACE\b/];
function findPlaceholders(value, o, at) {
  if (typeof value === "string") {
    for (const re of PLACEHOLDERS) if (re.test(value)) problem(id(o), `placeholder ${JSON.stringify(value)} at ${at}`);
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) findPlaceholders(v, o, at ? `${at}.${k}` : k);
  }
}
for (const o of docs) findPlaceholders(o, o, "");
for (const o of docs) if (o.metadata && o.metadata.name === "crm-site") problem(id(o), "the site settings were rendered (they must be local-config)");

if (Object.keys(site).length) {
  const expect = (where, what, got, want) => {
    if (want !== undefined && got !== want) problem(where, `${what} is ${JSON.stringify(got)}, site.env says ${JSON.stringify(want)}`);
  };
  for (const w of workloads) {
    for (const c of w.spec.template.spec.containers || []) expect(id(w), `container ${c.name} image`, c.image, site.image);
    for (const t of w.spec.volumeClaimTemplates || []) expect(id(w), `volumeClaimTemplate ${t.metadata.name} storageClassName`, t.spec.storageClassName, site.storage_class);
  }
  const gw = findConfigMap("crm-gateway");
  const gwData = (gw && gw.data) || {};
  expect("ConfigMap/crm-gateway", "CRM_JWT_ISSUER", gwData.CRM_JWT_ISSUER, site.jwt_issuer);
  expect("ConfigMap/crm-gateway", "CRM_JWT_AUDIENCE", gwData.CRM_JWT_AUDIENCE, site.jwt_audience);
  expect("ConfigMap/crm-gateway", "CRM_CORS_ALLOWED_ORIGINS", gwData.CRM_CORS_ALLOWED_ORIGINS, site.cors_allowed_origins);
  expect("NetworkPolicy/allow-metrics-scrape", "the monitoring namespace", monitoringNamespace, site.monitoring_namespace);
}

// Exposure (components/gateway-api, components/ingress-nginx): browsers' protocols to the HTTP port, native gRPC to
// the gRPC port, on two host names.
const gatewayService = named("Service", "gateway");
const servicePort = (ref) =>
  ((gatewayService && gatewayService.spec.ports) || []).find((p) => p.port === ref || p.name === ref);
function checkBackend(where, ref, wantPort) {
  const port = servicePort(ref.port !== undefined ? ref.port : ref.name);
  if (ref.name !== "gateway" || !port || port.port !== wantPort) {
    problem(where, `backend ${JSON.stringify(ref)} is not the gateway Service's port ${wantPort}`);
  }
}
const routes = [...all("HTTPRoute"), ...all("GRPCRoute")];
for (const r of routes) {
  const wantPort = r.kind === "GRPCRoute" ? PORTS.gateway.grpc : 8080;
  for (const rule of r.spec.rules || []) for (const b of rule.backendRefs || []) checkBackend(id(r), b, wantPort);
  if (!(r.spec.rules || []).some((rule) => (rule.backendRefs || []).length)) problem(id(r), "routes nowhere");
  if (!(r.spec.parentRefs || []).length) problem(id(r), "attaches to no Gateway");
  expect2(id(r), "hostnames", r.spec.hostnames, [r.kind === "GRPCRoute" ? site.public_grpc_host : site.public_host]);
  for (const p of r.spec.parentRefs || []) {
    expect2(id(r), "parent Gateway", [p.name, p.namespace], [site.gateway_api_parent_name, site.gateway_api_parent_namespace]);
  }
}
if (routes.length) {
  const http = all("HTTPRoute").flatMap((r) => r.spec.hostnames || []);
  const grpc = all("GRPCRoute").flatMap((r) => r.spec.hostnames || []);
  if (!http.length || !grpc.length) problem("routes", "expected an HTTPRoute (Connect, gRPC-Web) and a GRPCRoute (native gRPC)");
  for (const h of grpc) if (http.includes(h)) problem("routes", `host ${h} on an HTTPRoute and a GRPCRoute (the Gateway API refuses one)`);
}
for (const ing of all("Ingress")) {
  const grpcBackend = (ing.metadata.annotations || {})["nginx.ingress.kubernetes.io/backend-protocol"] === "GRPC";
  const wantPort = grpcBackend ? PORTS.gateway.grpc : 8080;
  for (const rule of ing.spec.rules || []) {
    for (const p of (rule.http && rule.http.paths) || []) {
      const { name, port } = p.backend.service;
      checkBackend(id(ing), { name, port: port.number !== undefined ? port.number : port.name }, wantPort);
    }
  }
  const hosts = (ing.spec.rules || []).map((r) => r.host);
  const tlsHosts = (ing.spec.tls || []).flatMap((t) => t.hosts || []);
  for (const h of hosts) if (!tlsHosts.includes(h)) problem(id(ing), `host ${h} without TLS (nginx serves HTTP/2, so gRPC, only over TLS)`);
  expect2(id(ing), "hosts", hosts, [grpcBackend ? site.public_grpc_host : site.public_host]);
  expect2(id(ing), "ingressClassName", [ing.spec.ingressClassName], [site.ingress_class]);
  expect2(id(ing), "TLS Secret", (ing.spec.tls || []).map((t) => t.secretName), [site.public_tls_secret]);
}
if (all("Ingress").length && !all("Ingress").some((i) => (i.metadata.annotations || {})["nginx.ingress.kubernetes.io/backend-protocol"] === "GRPC")) {
  problem("Ingress", "no Ingress with backend-protocol GRPC for native gRPC clients");
}
// Prometheus Operator: a PodMonitor that scrapes the metrics port of every CRM pod.
for (const pm of all("PodMonitor")) {
  for (const w of workloads) {
    const labels = w.spec.template.metadata.labels || {};
    if (!selects(pm.spec.selector, labels)) problem(id(pm), `does not select ${id(w)}'s pods`);
  }
  if (!(pm.spec.podMetricsEndpoints || []).some((e) => e.port === "metrics" && (e.path || "/metrics") === "/metrics")) {
    problem(id(pm), 'no endpoint for the port named "metrics" at /metrics');
  }
  expect2(id(pm), "release label", [(pm.metadata.labels || {}).release], [site.prometheus_release]);
}

// Compares lists when site.env has the setting.
function expect2(where, what, got, want) {
  if (want.some((x) => x === undefined)) return;
  if (JSON.stringify(got) !== JSON.stringify(want)) problem(where, `${what} ${JSON.stringify(got)}, site.env says ${JSON.stringify(want)}`);
}

finish();

function finish() {
  if (problems.length) {
    for (const p of problems) console.error(`FAIL ${p}`);
    console.error(`${overlay}: ${problems.length} problem(s) in ${docs.length} objects`);
    process.exit(1);
  }
  console.log(`${overlay}: ${docs.length} objects valid (schema, fields, policy)`);
  process.exit(0);
}
