// A real browser: Debian's chromium (headless, driven by puppeteer-core) loads a page served by this test
// on one origin and calls the gateway on another with Connect JSON through fetch(), so the browser itself
// sends the CORS preflight (Authorization and Content-Type are not "simple" headers) and enforces the answer.
// A second page runs @connectrpc/connect-web (its ES modules served from node_modules through an import map)
// over gRPC-Web and Connect, and decodes errors' google.rpc details as a frontend would.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import puppeteer from "puppeteer-core";
import { descriptorSet, startStack } from "./harness.js";

const chromium = process.env.CRM_CHROMIUM ?? "/usr/bin/chromium";
let stack, page_server, browser, profileDir, pageOrigin;

const page = (gateway, token, customerId) => `<!doctype html>
<html><body><pre id="out">pending</pre><script>
async function call(method, body) {
  const res = await fetch(${JSON.stringify(gateway)} + "/crm.v1.CustomerProfileService/" + method, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Authorization": "Bearer ${token}" },
    body: JSON.stringify(body),
  });
  return { status: res.status, requestId: res.headers.get("x-request-id"), body: await res.json() };
}
(async () => {
  try {
    const mine = await call("GetCustomer", { customerId: ${JSON.stringify(customerId)} });
    const other = await call("GetCustomer", { customerId: "c_someone_else" });
    document.getElementById("out").textContent = JSON.stringify({ mine, other });
  } catch (e) {
    document.getElementById("out").textContent = "error: " + e;
  }
})();
</script></body></html>`;

// The packages the details page imports, as an import map: each package's ES module entry points by the
// names its package.json exports.
const modulePackages = ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web"];
function importMap() {
  const imports = {};
  for (const name of modulePackages) {
    const { exports } = JSON.parse(readFileSync(path.join(import.meta.dirname, "node_modules", name, "package.json")));
    for (const [sub, target] of Object.entries(exports)) {
      imports[path.posix.join(name, sub)] = path.posix.join("/node_modules", name, target.import);
    }
  }
  return { imports };
}

// Serves a file of those packages (nothing else under node_modules), or nothing.
function serveModule(url, res) {
  const file = path.normalize(decodeURIComponent(url.split("?")[0])).replace(/^\/+/, "");
  if (!modulePackages.some((name) => file.startsWith(`node_modules/${name}/dist/esm/`)) || !file.endsWith(".js")) return false;
  const full = path.join(import.meta.dirname, file);
  if (!existsSync(full)) return false;
  res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
  res.end(readFileSync(full));
  return true;
}

// Runs in the page: connect-web clients over gRPC-Web and Connect make a call each of three kinds of
// failure, and report what ConnectError.findDetails decodes.
const detailsPage = (config) => `<!doctype html>
<html><head><script type="importmap">${JSON.stringify(importMap())}</script></head>
<body><pre id="out">pending</pre><script type="module">
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
const config = ${JSON.stringify(config)};
const as = (token) => ({ headers: { authorization: "Bearer " + token } });
try {
  const set = new Uint8Array(await (await fetch("/crm_v1.pb")).arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, set));
  const decoded = (e) => {
    const err = ConnectError.from(e);
    const all = (type) => err.findDetails(registry.getMessage("google.rpc." + type));
    return { code: Code[err.code], message: err.rawMessage, errorInfo: all("ErrorInfo"), badRequest: all("BadRequest"),
             preconditionFailure: all("PreconditionFailure"), retryInfo: all("RetryInfo") };
  };
  const out = {};
  for (const [name, transport] of [["gRPC-Web", createGrpcWebTransport({ baseUrl: config.gateway })],
                                   ["Connect", createConnectTransport({ baseUrl: config.gateway })]]) {
    const profile = createClient(registry.getService("crm.v1.CustomerProfileService"), transport);
    const orders = createClient(registry.getService("crm.v1.OrderTrackingService"), transport);
    const failure = (call) => call.then(() => ({ code: "OK" }), decoded);
    const bad = await failure(profile.registerCustomer({ email: "nope", requestId: "page-bad" }, as(config.admin)));
    const refused = await failure(orders.payOrder(
      { customerId: config.customerId, orderId: config.orderId, paymentReference: "page-" + name }, as(config.payments)));
    let limited = null;
    for (let i = 0; i < 1000 && limited === null; i++) {
      const e = await failure(profile.getCustomer({ customerId: "c_nobody" }, as(config.busyAdmins[name])));
      if (e.code === "ResourceExhausted") limited = e;
    }
    // Decoded messages carry bigints (Duration.seconds): written as strings.
    out[name] = JSON.parse(JSON.stringify({ bad, refused, limited }, (k, v) => (typeof v === "bigint" ? String(v) : v)));
  }
  document.getElementById("out").textContent = JSON.stringify(out);
} catch (e) {
  document.getElementById("out").textContent = "error: " + e + "\\n" + e.stack;
}
</script></body></html>`;

before(async () => {
  assert.ok(existsSync(chromium), `${chromium} is missing: deploy/local/install-deps.sh --test installs Debian's chromium`);
  page_server = createServer((req, res) => {
    if (req.url.startsWith("/node_modules/") && serveModule(req.url, res)) return;
    if (req.url === "/crm_v1.pb") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      return res.end(descriptorSet());
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(req.url === "/details" ? page_server.details : page_server.html);
  });
  await new Promise((r) => page_server.listen(0, "127.0.0.1", r));
  // "localhost" and "127.0.0.1" are different origins: the page is on one, the gateway on the other.
  pageOrigin = `http://localhost:${page_server.address().port}`;
  stack = await startStack({ corsOrigins: pageOrigin });
  profileDir = mkdtempSync(path.join(tmpdir(), "crm-chromium-"));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profileDir,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  page_server?.close();
  await stack?.stop();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

test("a browser page on another origin calls the gateway with Connect JSON", async () => {
  const admin = stack.token("admin", "ops");
  const res = await fetch(`${stack.httpBase}/crm.v1.CustomerProfileService/RegisterCustomer`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
    body: JSON.stringify({ email: "browser@example.com", name: "Zhou Min", requestId: "browser-reg" }),
  });
  const customer = await res.json();
  assert.ok(customer.customerId, JSON.stringify(customer));
  page_server.html = page(stack.httpBase, stack.token("customer", customer.customerId), customer.customerId);

  const tab = await browser.newPage();
  await tab.goto(`${pageOrigin}/`, { waitUntil: "load" });
  await tab.waitForFunction(() => document.getElementById("out").textContent !== "pending", { timeout: 20000 });
  const text = await tab.$eval("#out", (e) => e.textContent);
  assert.ok(!text.startsWith("error"), text);
  const { mine, other } = JSON.parse(text);
  assert.equal(mine.status, 200);
  assert.equal(mine.body.name, "Zhou Min");
  assert.match(mine.requestId, /^gw-/);  // an exposed header the page can read
  assert.equal(other.status, 403);
  assert.equal(other.body.code, "permission_denied");

  // The same page served from an origin the gateway does not allow: the browser refuses the call.
  const blocked = await browser.newPage();
  await blocked.goto(`http://127.0.0.1:${page_server.address().port}/`, { waitUntil: "load" });
  await blocked.waitForFunction(() => document.getElementById("out").textContent !== "pending", { timeout: 20000 });
  assert.match(await blocked.$eval("#out", (e) => e.textContent), /^error: TypeError/);
});

test("connect-web in the browser decodes errors' details over gRPC-Web and Connect", async () => {
  // The scene, set up from here: a customer whose order is already paid.
  const call = async (method, body, token) => {
    const res = await fetch(`${stack.httpBase}/crm.v1.${method}`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: JSON.stringify(body),
    });
    const json = await res.json();
    assert.equal(res.status, 200, JSON.stringify(json));
    return json;
  };
  const admin = stack.token("admin", "ops");
  const customer = await call("CustomerProfileService/RegisterCustomer", { email: "details@example.com", requestId: "details-reg" }, admin);
  await call("CustomerProfileService/AddAddress", { customerId: customer.customerId, requestId: "details-addr",
    address: { recipientName: "Zhou Min", city: "Suzhou", street: "Renmin Road 1", countryCode: "CN" } },
    stack.token("customer", customer.customerId));
  const now = Math.floor(Date.now() / 1000);
  const order = await call("OrderTrackingService/CreateOrder", {
    customerId: customer.customerId, requestId: "details-order", paymentMethod: "PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE",
    items: [{ sku: "sku-tea", name: "Tea", category: "grocery", quantity: 1, unitPrice: { amountMinor: "800", currency: "CNY" } }],
    deliveryWindow: { startTime: new Date((now + 86400) * 1000).toISOString(), endTime: new Date((now + 93600) * 1000).toISOString() },
  }, stack.token("service", "storefront"));
  const payments = stack.token("service", "payments");
  await call("OrderTrackingService/PayOrder", { customerId: customer.customerId, orderId: order.orderId, paymentReference: "first" }, payments);
  page_server.details = detailsPage({
    gateway: stack.httpBase, admin, payments, customerId: customer.customerId, orderId: order.orderId,
    busyAdmins: { "gRPC-Web": stack.token("admin", "busy-web"), Connect: stack.token("admin", "busy-connect") },
  });

  const tab = await browser.newPage();
  await tab.goto(`${pageOrigin}/details`, { waitUntil: "load" });
  await tab.waitForFunction(() => document.getElementById("out").textContent !== "pending", { timeout: 60000 });
  const text = await tab.$eval("#out", (e) => e.textContent);
  assert.ok(!text.startsWith("error"), text);
  const results = JSON.parse(text);
  for (const name of ["gRPC-Web", "Connect"]) {
    const { bad, refused, limited } = results[name];
    assert.equal(bad.code, "InvalidArgument", name);
    assert.deepEqual(bad.badRequest[0].fieldViolations.map((v) => v.field), ["email"], name);
    assert.equal(bad.errorInfo[0].reason, "INVALID_ARGUMENT", name);
    assert.equal(bad.errorInfo[0].domain, "crm.v1", name);
    assert.match(bad.message, /^email: /, name);
    assert.equal(refused.code, "FailedPrecondition", name);
    assert.equal(refused.preconditionFailure[0].violations[0].subject, "order_id", name);
    assert.equal(`order_id: ${refused.preconditionFailure[0].violations[0].description}`, refused.message, name);
    assert.ok(limited, `${name}: never rate limited`);
    assert.equal(limited.errorInfo[0].reason, "RATE_LIMITED", name);
    assert.ok(Number(limited.retryInfo[0].retryDelay.seconds ?? 0) > 0 || limited.retryInfo[0].retryDelay.nanos > 0, name);
  }
});
