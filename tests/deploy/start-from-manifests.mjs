// Starts every container of a rendered overlay as a local process, with the command, args and environment
// the manifests give it (env, envFrom ConfigMaps, files from mounted ConfigMaps), then probes it as the
// kubelet would: each readiness/liveness/startup probe on the port the manifest names (gRPC health, HTTP or
// TCP), and each declared containerPort accepts connections. A flag the binary does not accept, a port it
// does not listen on or a probe that never passes fails the test.
//
// A data service's gRPC port is also checked to speak mutual TLS: it answers a health check from a client
// with a certificate of the deployment's CA and refuses one in plaintext.
//
// What only a cluster provides is replaced, and nothing else: the image's /usr/local/bin is the build
// folder, 0.0.0.0 listens on 127.0.0.1, other pods' DNS names are 127.0.0.1, volumes are temporary folders
// (ConfigMap volumes hold the ConfigMap's files), the JWT Secret is a generated secret, the internal key
// Secret one random key for every pod, each TLS Secret crm-tls-<process> a certificate from one development CA
// (deploy/local/dev-pki.sh: CN <process>, SANs <process> and IP 127.0.0.1, so TLS verifies for the 127.0.0.1
// the processes dial here as it does for the pod names in the cluster), and the shard index the pod would take
// from its host name's ordinal is 0.
//   node start-from-manifests.mjs <rendered.yaml> <build dir>
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import YAML from "yaml";

const [renderedPath, build] = process.argv.slice(2);
const docs = YAML.parseAllDocuments(readFileSync(renderedPath, "utf8")).map((d) => d.toJS()).filter(Boolean);
const configMaps = new Map(docs.filter((d) => d.kind === "ConfigMap").map((d) => [d.metadata.name, d.data ?? {}]));
const workloads = docs.filter((d) => d.kind === "Deployment" || d.kind === "StatefulSet");
const root = mkdtempSync(path.join(tmpdir(), "crm-manifests-"));
const failures = [];
const children = [];
// The deployment's internal key (Secret crm-internal-key): one for every pod.
const internalKey = randomBytes(32).toString("hex");
// The TLS Secrets (crm-tls-<process>): one development CA signs a certificate for every process whose pod
// mounts one, in the Secret's layout (tls.crt, tls.key, ca.crt).
const TLS_PREFIX = "crm-tls-";
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pki = path.join(root, "pki");
const tlsNames = [...new Set(workloads.flatMap((w) => (w.spec.template.spec.volumes ?? [])
  .map((v) => v.secret?.secretName).filter((n) => n?.startsWith(TLS_PREFIX)).map((n) => n.slice(TLS_PREFIX.length))))];
const tlsFiles = ["tls.crt", "tls.key", "ca.crt"];

const local = (value) =>
  String(value)
    .replaceAll("0.0.0.0:", "127.0.0.1:")
    .replace(/[a-z0-9-]+-\d+\.[a-z0-9-]+(\.[a-z0-9.-]+)?:(\d+)/g, "127.0.0.1:$2");

function containerPlan(workload, container) {
  const name = workload.metadata.name;
  const dir = path.join(root, name);
  const mountMap = new Map();  // mount path in the pod -> local folder
  const volumes = new Map((workload.spec.template.spec.volumes ?? []).map((v) => [v.name, v]));
  for (const m of container.volumeMounts ?? []) {
    const folder = path.join(dir, "mounts", m.name);
    mkdirSync(folder, { recursive: true });
    const v = volumes.get(m.name);
    if (v?.configMap) {
      for (const [file, content] of Object.entries(configMaps.get(v.configMap.name) ?? {})) writeFileSync(path.join(folder, file), content);
    }
    if (v?.secret?.secretName === "crm-internal-key") {
      writeFileSync(path.join(folder, "internal-key"), internalKey);
    } else if (v?.secret?.secretName?.startsWith(TLS_PREFIX)) {
      const from = path.join(pki, v.secret.secretName.slice(TLS_PREFIX.length));
      for (const file of tlsFiles) copyFileSync(path.join(from, file), path.join(folder, file));
    } else if (v?.secret) {
      // The JWT Secret an operator creates (deploy/README.md): an HS256 secret or a P-256 public key.
      writeFileSync(path.join(folder, "jwt-secret"), randomBytes(32).toString("hex"));
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      writeFileSync(path.join(folder, "jwt-public-key.pem"), publicKey.export({ type: "spki", format: "pem" }));
    }
    mountMap.set(m.mountPath, folder);
  }
  // A path under a mount becomes the same path under the mount's local folder (longest mount first).
  const mounts = [...mountMap.keys()].sort((a, b) => b.length - a.length);
  const inPod = (value) => {
    const out = local(value);
    const mount = mounts.find((m) => out === m || out.startsWith(m + "/"));
    return mount ? mountMap.get(mount) + out.slice(mount.length) : out;
  };
  const env = { PATH: process.env.PATH };
  for (const from of container.envFrom ?? []) {
    const data = configMaps.get(from.configMapRef?.name);
    if (!data) { failures.push(`${name}: envFrom names a missing ConfigMap ${from.configMapRef?.name}`); continue; }
    for (const [k, v] of Object.entries(data)) env[k] = inPod(v);
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = inPod(e.value);
    else if (e.valueFrom?.configMapKeyRef) env[e.name] = inPod(configMaps.get(e.valueFrom.configMapKeyRef.name)?.[e.valueFrom.configMapKeyRef.key] ?? "");
    else if (e.valueFrom?.fieldRef) env[e.name] = `${name}-0`;
  }
  if (env.CRM_SHARD_INDEX === "-1") env.CRM_SHARD_INDEX = "0";
  const command = (container.command ?? []).map((c) => c.replace("/usr/local/bin/", `${build}/${binaryFolder(c)}`));
  const args = (container.args ?? []).map(inPod);
  return { name, command, args, env, container, tls: env.CRM_TLS_DIR };
}

// The states of the sockets whose local port is `port` ("TIME_WAIT", "ESTABLISHED", ...), from
// /proc/net/tcp and tcp6: what holds a port the test needs.
function socketStates(port) {
  const names = { "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING" };
  const states = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try { text = readFileSync(table, "utf8"); } catch { continue; }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 3 && parseInt(fields[1].split(":")[1], 16) === port) states.push(names[fields[3]] ?? fields[3]);
    }
  }
  return states.length ? states.join(", ") : "no socket seen";
}

// /usr/local/bin/order-tracking -> services/order_tracking/
function binaryFolder(commandPath) {
  const binary = path.basename(commandPath);
  return `services/${binary.replaceAll("-", "_")}/`;
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => { s.destroy(); resolve(true); });
    s.on("error", () => resolve(false));
  });
}

// Whether 127.0.0.1:`port` can be bound now. The manifests' ports lie inside Linux's ephemeral range
// (32768-60999), so a socket of an earlier check or test may briefly hold one as its local port.
function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

function grpcHealth(port, service = "", credentials = grpc.credentials.createInsecure(), options = {}) {
  const client = new grpc.Client(`127.0.0.1:${port}`, credentials, options);
  const name = Buffer.from(service);
  const request = service ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
  return new Promise((resolve) => {
    client.makeUnaryRequest("/grpc.health.v1.Health/Check", (x) => x, (b) => b, request, new grpc.Metadata(),
      { deadline: Date.now() + 1000 }, (err, res) => { client.close(); resolve(!err && res.length === 2 && res[1] === 1); });
  });
}

async function httpGet(port, p) {
  try { return (await fetch(`http://127.0.0.1:${port}${p}`)).status; } catch { return 0; }
}

// A probe's port: a number, or the name of one of the container's ports (as the kubelet resolves it).
const portNumber = (container, port) =>
  typeof port === "number" ? port : (container.ports ?? []).find((p) => p.name === port)?.containerPort;

async function probePasses(probe, name, container) {
  if (probe.grpc) return grpcHealth(portNumber(container, probe.grpc.port), probe.grpc.service ?? "");
  if (probe.httpGet) {
    const s = await httpGet(portNumber(container, probe.httpGet.port), probe.httpGet.path ?? "/");
    return s >= 200 && s < 400;
  }
  if (probe.tcpSocket) return tcpOpen(portNumber(container, probe.tcpSocket.port));
  if (probe.exec) { failures.push(`${name}: exec probes cannot be checked locally`); return true; }
  return false;
}

async function until(check, seconds) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

try {
  if (tlsNames.length) execFileSync("bash", [path.join(repo, "deploy/local/dev-pki.sh"), pki, ...tlsNames], { stdio: "inherit" });
  const plans = [];
  for (const w of workloads) for (const c of w.spec.template.spec.containers) plans.push(containerPlan(w, c));
  // Data services first, the gateway (a Deployment) last, as Kubernetes would settle them.
  plans.sort((a, b) => (a.name === "gateway") - (b.name === "gateway"));
  for (const plan of plans) {
    if (!existsSync(plan.command[0])) { failures.push(`${plan.name}: ${plan.command[0]} was not built`); continue; }
    const held = [];
    for (const port of plan.container.ports ?? []) {
      // Up to 65 s: a closed connection keeps its local port in TIME_WAIT for 60 s on Linux.
      if (!(await until(() => portFree(port.containerPort), 65))) {
        held.push(`${port.containerPort} (${socketStates(port.containerPort)})`);
      }
    }
    // Started anyway, it would fail to bind and report that too, as if the manifest were wrong.
    if (held.length) {
      failures.push(`${plan.name}: not started: port ${held.join(", ")} still held by another socket after 65 s`);
      continue;
    }
    const out = [];
    const child = spawn(plan.command[0], [...plan.command.slice(1), ...plan.args], { env: plan.env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (d) => out.push(String(d)));
    child.stderr.on("data", (d) => out.push(String(d)));
    children.push(child);
    const c = plan.container;
    const probes = ["startupProbe", "readinessProbe", "livenessProbe"].filter((k) => c[k]);
    if (probes.length === 0) failures.push(`${plan.name}: no probes`);
    for (const kind of probes) {
      if (!(await until(() => probePasses(c[kind], plan.name, c), 30))) {
        failures.push(`${plan.name}: ${kind} ${JSON.stringify(c[kind])} never passed; output:\n${out.join("").slice(-1500)}`);
      }
    }
    for (const port of c.ports ?? []) {
      if (!(await until(() => tcpOpen(port.containerPort), 10))) {
        failures.push(`${plan.name}: nothing listens on containerPort ${port.name} ${port.containerPort}`);
      }
      if (port.name === "metrics" && (await httpGet(port.containerPort, "/metrics")) !== 200) {
        failures.push(`${plan.name}: GET /metrics on port ${port.containerPort} does not answer 200`);
      }
    }
    // A data service's gRPC port (it has a separate health port): mutual TLS only, with the deployment's CA.
    const grpcPort = c.ports?.find((p) => p.name === "grpc")?.containerPort;
    if (plan.tls && grpcPort && c.ports.some((p) => p.name === "health")) {
      const client = tlsNames.includes("gateway") ? "gateway" : tlsNames[0];
      const read = (file) => readFileSync(path.join(pki, client, file));
      const mtls = grpc.credentials.createSsl(read("ca.crt"), read("tls.key"), read("tls.crt"));
      // The server's certificate is checked for its process name (a SAN of the development certificates).
      const asServer = { "grpc.ssl_target_name_override": plan.name, "grpc.default_authority": plan.name };
      if (!(await until(() => grpcHealth(grpcPort, "", mtls, asServer), 10))) {
        failures.push(`${plan.name}: gRPC port ${grpcPort} does not answer a health check over mutual TLS (client certificate CN ${client})`);
      }
      if (await grpcHealth(grpcPort)) failures.push(`${plan.name}: gRPC port ${grpcPort} answers in plaintext despite CRM_TLS_DIR`);
      probes.push("mutual TLS on its gRPC port");
    }
    if (child.exitCode !== null) failures.push(`${plan.name}: exited with ${child.exitCode}:\n${out.join("").slice(-1500)}`);
    else console.log(`ok: ${plan.name} started from the manifest and passed ${probes.join(", ")}`);
  }
} finally {
  for (const child of children.reverse()) {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  }
  rmSync(root, { recursive: true, force: true });
}
if (failures.length) {
  for (const f of failures) console.error(`FAIL: ${f}`);
  process.exit(1);
}
