// Starts real processes for an end-to-end test: customer-profile, order-tracking and the gateway, each on
// free loopback ports (port 0; the port is read from the process's "serving" log line) with its RocksDB
// in a temporary folder, and stops them at the end. Also mints tokens the way an identity provider would.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const build = process.env.CRM_BUILD_DIR ?? path.resolve(import.meta.dirname, "../../../build");
export const descriptorSetPath = path.join(build, "proto/crm_v1.pb");
export const descriptorSet = () => readFileSync(descriptorSetPath);
// Every crm.v1 message and the google.rpc error details, for decoding at run time.
export const descriptorRegistry = () => createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet()));

function startProcess(name, binary, args, readyKeys) {
  const child = spawn(path.join(build, binary), args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  const ports = {};
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${lines.join("\n")}`)), 30000);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on("line", (line) => {
      lines.push(line);
      let entry;
      try { entry = JSON.parse(line); } catch { return; }
      if (entry.message === "http listening") ports.http = entry.port;
      if (entry.message === "serving") {
        ports.grpc = entry.port;
        ports.metrics = entry.metrics_port;
      }
      if (readyKeys.every((k) => ports[k] !== undefined)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr.on("data", (d) => lines.push(String(d)));
    child.on("exit", (code) => reject(new Error(`${name} exited with ${code}:\n${lines.join("\n")}`)));
  });
  return { name, child, ports, lines, ready };
}

export async function startStack({ corsOrigins = "", customerRps = 1000 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), "crm-e2e-js-"));
  const secret = randomBytes(32).toString("hex");
  writeFileSync(path.join(dir, "jwt-secret"), secret);
  // The deployment's internal key: the processes sign their calls to each other with it.
  writeFileSync(path.join(dir, "internal-key"), randomBytes(32).toString("hex"));
  const common = ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--drain_seconds=2",
                  `--internal_key_file=${dir}/internal-key`];
  const profile = startProcess("customer-profile", "services/customer_profile/customer-profile",
    [...common, `--data_dir=${dir}/profile`, "--event_sinks=none"], ["grpc"]);
  await profile.ready;
  const orders = startProcess("order-tracking", "services/order_tracking/order-tracking",
    [...common, `--data_dir=${dir}/orders`, "--event_sinks=none",
     `--customer_profile_address=127.0.0.1:${profile.ports.grpc}`], ["grpc"]);
  await orders.ready;
  const gateway = startProcess("gateway", "services/gateway/gateway",
    [...common, "--http_listen=127.0.0.1:0", `--jwt_secret_file=${dir}/jwt-secret`,
     `--cors_allowed_origins=${corsOrigins}`, `--rate_limit_customer=${customerRps}`,
     "--max_request_bytes=65536",
     `--customer_profile_address=127.0.0.1:${profile.ports.grpc}`,
     `--order_tracking_address=127.0.0.1:${orders.ports.grpc}`,
     // Not run here: the 360° view marks their sections unavailable (port 1: nothing listens).
     "--loyalty_address=127.0.0.1:1", "--complaint_ticket_address=127.0.0.1:1",
     "--recommendation_address=127.0.0.1:1"], ["grpc", "http"]);
  await gateway.ready;
  const processes = [gateway, orders, profile];
  return {
    grpcAddress: `127.0.0.1:${gateway.ports.grpc}`,
    httpBase: `http://127.0.0.1:${gateway.ports.http}`,
    metricsUrl: `http://127.0.0.1:${gateway.ports.metrics}/metrics`,
    gatewayLog: gateway.lines,
    token: (role, subject, ttlSeconds = 3600) => signJwt(secret, { sub: subject, role, exp: Math.floor(Date.now() / 1000) + ttlSeconds }),
    forgedToken: (role, subject) => signJwt("not-the-secret-not-the-secret-xx", { sub: subject, role, exp: Math.floor(Date.now() / 1000) + 3600 }),
    async stop() {
      for (const p of processes) {
        if (p.child.exitCode === null) {
          const exited = new Promise((r) => p.child.once("exit", r));
          p.child.kill("SIGTERM");
          await exited;
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function signJwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
