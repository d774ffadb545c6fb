// A real browser: Debian's chromium (headless, driven by puppeteer-core) loads a page served by this test
// on one origin and calls the gateway on another with Connect JSON through fetch(), so the browser itself
// sends the CORS preflight (Authorization and Content-Type are not "simple" headers) and enforces the answer.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import puppeteer from "puppeteer-core";
import { startStack } from "./harness.js";

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

before(async () => {
  assert.ok(existsSync(chromium), `${chromium} is missing: deploy/local/install-deps.sh --test installs Debian's chromium`);
  page_server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page_server.html);
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
