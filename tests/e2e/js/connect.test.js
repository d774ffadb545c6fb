// Browser protocols through the gateway's HTTP/1.1 port with @connectrpc/connect-node: Connect (JSON and
// binary) and gRPC-Web, unary and the WatchOrder stream, errors with their google.rpc details; then
// malformed input, CORS and limits with raw HTTP requests, after which the gateway must still serve.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { descriptorSet, startStack } from "./harness.js";

let stack, registry;
const origin = "https://shop.example";

before(async () => {
  stack = await startStack({ corsOrigins: origin });
  registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet()));
});
after(async () => { await stack?.stop(); });

function clients(transport) {
  return {
    profile: createClient(registry.getService("crm.v1.CustomerProfileService"), transport),
    orders: createClient(registry.getService("crm.v1.OrderTrackingService"), transport),
  };
}
const bearer = (token) => ({ headers: { authorization: `Bearer ${token}` } });

const transports = () => ({
  "Connect JSON": createConnectTransport({ baseUrl: stack.httpBase, httpVersion: "1.1" }),
  "Connect binary": createConnectTransport({ baseUrl: stack.httpBase, httpVersion: "1.1", useBinaryFormat: true }),
  "gRPC-Web": createGrpcWebTransport({ baseUrl: stack.httpBase, httpVersion: "1.1" }),
});

test("unary calls and errors over Connect JSON, Connect binary and gRPC-Web", async () => {
  let n = 0;
  for (const [name, transport] of Object.entries(transports())) {
    const { profile } = clients(transport);
    const admin = bearer(stack.token("admin", "ops"));
    const email = `web${n++}@example.com`;
    const created = await profile.registerCustomer({ email, name: "Li Na", requestId: `reg-${email}` }, admin);
    assert.equal(created.email, email, name);
    const self = bearer(stack.token("customer", created.customerId));
    const got = await profile.getCustomer({ customerId: created.customerId }, self);
    assert.equal(got.name, "Li Na", name);
    // Errors keep the gRPC code and the service's message.
    await assert.rejects(profile.getCustomer({ customerId: "c_nobody" }, admin),
      (e) => e instanceof ConnectError && e.code === Code.NotFound, name);
    await assert.rejects(profile.getCustomer({ customerId: "c_nobody" }, self),
      (e) => e.code === Code.PermissionDenied && /customer_id/.test(e.rawMessage), name);
    await assert.rejects(profile.getCustomer({ customerId: created.customerId }),
      (e) => e.code === Code.Unauthenticated, name);
    await assert.rejects(profile.registerCustomer({ email: "nope", requestId: "r" }, admin),
      (e) => e.code === Code.InvalidArgument && /^email/.test(e.rawMessage), name);
  }
});

// The first detail of the named google.rpc type, as the client decodes it.
const detail = (err, type) => ConnectError.from(err).findDetails(registry.getMessage(`google.rpc.${type}`))[0];

test("errors carry google.rpc details over Connect JSON, Connect binary and gRPC-Web", async () => {
  let n = 0;
  for (const [name, transport] of Object.entries(transports())) {
    const { profile, orders } = clients(transport);
    const admin = bearer(stack.token("admin", "ops"));
    // A bad field: BadRequest names it, ErrorInfo gives the stable reason, the message is the service's.
    const bad = await profile.registerCustomer({ email: "nope", requestId: `bad-${n}` }, admin).catch((e) => e);
    assert.equal(bad.code, Code.InvalidArgument, name);
    assert.deepEqual(detail(bad, "BadRequest").fieldViolations.map((v) => v.field), ["email"], name);
    assert.equal(`email: ${detail(bad, "BadRequest").fieldViolations[0].description}`, bad.rawMessage, name);
    assert.equal(detail(bad, "ErrorInfo").reason, "INVALID_ARGUMENT", name);
    assert.equal(detail(bad, "ErrorInfo").domain, "crm.v1", name);

    // A state-machine refusal: a PLACED order paid, then paid again with another reference.
    const email = `twice-${n}@example.com`;
    const c = await profile.registerCustomer({ email, requestId: `reg-${email}` }, admin);
    await profile.addAddress({ customerId: c.customerId, requestId: `a-${email}`,
      address: { recipientName: "Li", city: "Beijing", street: "Chang'an 1", countryCode: "CN" } },
      bearer(stack.token("customer", c.customerId)));
    const now = BigInt(Math.floor(Date.now() / 1000));
    const order = await orders.createOrder({
      customerId: c.customerId, requestId: `o-${email}`, paymentMethod: 1,
      items: [{ sku: "sku-1", name: "Tea", category: "grocery", quantity: 1, unitPrice: { amountMinor: 100n, currency: "CNY" } }],
      deliveryWindow: { startTime: { seconds: now + 86400n }, endTime: { seconds: now + 93600n } },
    }, bearer(stack.token("service", "storefront")));
    const payments = bearer(stack.token("service", "payments"));
    await orders.payOrder({ customerId: c.customerId, orderId: order.orderId, paymentReference: "p-1" }, payments);
    const refused = await orders.payOrder({ customerId: c.customerId, orderId: order.orderId, paymentReference: "p-2" }, payments)
      .catch((e) => e);
    assert.equal(refused.code, Code.FailedPrecondition, name);
    const violation = detail(refused, "PreconditionFailure").violations[0];
    assert.equal(violation.subject, "order_id", name);
    assert.equal(`order_id: ${violation.description}`, refused.rawMessage, name);
    assert.equal(detail(refused, "ErrorInfo").reason, "FAILED_PRECONDITION", name);

    // The gateway's own refusal on a stream (Connect's end-stream message, gRPC-Web's trailers).
    const intruder = bearer(stack.token("customer", "c_intruder"));
    const denied = await (async () => {
      for await (const _ of orders.watchOrder({ customerId: c.customerId, orderId: order.orderId }, intruder)) assert.fail(name);
    })().catch((e) => e);
    assert.equal(denied.code, Code.PermissionDenied, name);
    assert.equal(detail(denied, "ErrorInfo").reason, "OTHER_CUSTOMER", name);
    assert.equal(detail(denied, "ErrorInfo").metadata.field, "customer_id", name);

    // The rate limit (an admin may make 50 calls a second, 100 at once): RetryInfo says when to try again.
    const busy = bearer(stack.token("admin", `busy-${n++}`));
    let limited;
    for (let i = 0; i < 1000 && !limited; i++) {
      const e = await profile.getCustomer({ customerId: "c_nobody" }, busy).catch((x) => x);
      if (e.code === Code.ResourceExhausted) limited = e;
    }
    assert.ok(limited, `${name}: never rate limited`);
    assert.equal(detail(limited, "ErrorInfo").reason, "RATE_LIMITED", name);
    const delay = detail(limited, "RetryInfo").retryDelay;
    assert.ok(delay.seconds > 0n || delay.nanos > 0, name);
  }
});

test("a Connect JSON error lists its details as the protocol writes them, readable with curl", async () => {
  const r = await post("/crm.v1.CustomerProfileService/RegisterCustomer", JSON.stringify({ email: "nope", requestId: "raw" }),
    { "content-type": "application/json", ...admin() });
  assert.equal(r.status, 400);
  const body = JSON.parse(r.body);
  assert.match(body.message, /^email: /);
  assert.deepEqual(body.details.map((d) => d.type), ["google.rpc.ErrorInfo", "google.rpc.BadRequest"]);
  // Standard base64 with the padding left off; "debug" is the same message as JSON.
  for (const d of body.details) assert.match(d.value, /^[A-Za-z0-9+/]+$/);
  const badRequest = body.details[1];
  assert.deepEqual(fromBinary(registry.getMessage("google.rpc.BadRequest"), Buffer.from(badRequest.value, "base64"))
    .fieldViolations.map((v) => v.field), ["email"]);
  assert.equal(badRequest.debug.fieldViolations[0].field, "email");
  assert.equal(body.details[0].debug.reason, "INVALID_ARGUMENT");
  // The gateway's own refusals too: no token.
  const anonymous = await post("/crm.v1.CustomerProfileService/GetCustomer", "{}", { "content-type": "application/json" });
  assert.equal(anonymous.status, 401);
  assert.equal(JSON.parse(anonymous.body).details[0].debug.reason, "UNAUTHENTICATED");
});

test("the 360-degree view over Connect JSON: what runs is filled, what does not is named unavailable", async () => {
  const transport = createConnectTransport({ baseUrl: stack.httpBase, httpVersion: "1.1" });
  const { profile } = clients(transport);
  const views = createClient(registry.getService("crm.v1.CustomerViewService"), transport);
  const admin = bearer(stack.token("admin", "ops"));
  const created = await profile.registerCustomer({ email: "view@example.com", requestId: "reg-view" }, admin);
  const agent = bearer(stack.token("agent", "agent-1"));
  const view = await views.getCustomerView({ customerId: created.customerId, recommendationCount: 3 }, agent);
  assert.equal(view.profile.email, "view@example.com");
  assert.equal(view.purchases.orders, 0);
  assert.equal(view.insights.customerId, created.customerId);
  assert.deepEqual(view.unavailable.map((u) => u.section).sort(), ["complaints", "membership", "recommendations"]);
  assert.ok(view.unavailable.every((u) => u.code === "UNAVAILABLE"));
  // A customer sees their own view without the staff-only insights; an unknown customer is NOT_FOUND.
  const own = await views.getCustomerView({ customerId: created.customerId }, bearer(stack.token("customer", created.customerId)));
  assert.equal(own.insights, undefined);
  await assert.rejects(views.getCustomerView({ customerId: "c_nobody" }, agent), (e) => e.code === Code.NotFound);
});

test("WatchOrder as a server stream over Connect and gRPC-Web", async () => {
  for (const [name, transport] of Object.entries(transports())) {
    const { profile, orders } = clients(transport);
    const email = `watch-${name.replace(/\W/g, "")}@example.com`;
    const c = await profile.registerCustomer({ email, requestId: `reg-${email}` }, bearer(stack.token("admin", "ops")));
    const self = bearer(stack.token("customer", c.customerId));
    await profile.addAddress({ customerId: c.customerId, requestId: `a-${email}`, address: { recipientName: "Li", city: "Beijing", street: "Chang'an 1", countryCode: "CN" } }, self);
    const now = BigInt(Math.floor(Date.now() / 1000));
    const order = await orders.createOrder({
      customerId: c.customerId, requestId: `o-${email}`, paymentMethod: 1,
      items: [{ sku: "sku-1", name: "Tea", category: "grocery", quantity: 1, unitPrice: { amountMinor: 100n, currency: "CNY" } }],
      deliveryWindow: { startTime: { seconds: now + 86400n }, endTime: { seconds: now + 93600n } },
    }, bearer(stack.token("service", "storefront")));  // checkout places orders, not the shopper's own token
    const abort = new AbortController();
    const seen = [];
    try {
      for await (const update of orders.watchOrder({ customerId: c.customerId, orderId: order.orderId }, { ...self, signal: abort.signal })) {
        seen.push(update);
        if (seen.length === 1) {
          await orders.payOrder({ customerId: c.customerId, orderId: order.orderId, paymentReference: "p" }, bearer(stack.token("service", "payments")));
        }
        if (seen.length === 2) abort.abort();
      }
    } catch (e) {
      if (ConnectError.from(e).code !== Code.Canceled) throw e;
    }
    assert.equal(seen.length, 2, name);
    assert.equal(seen[0].order.orderId, order.orderId, name);
    assert.notEqual(seen[1].order.status, seen[0].order.status, name);
  }
});

async function post(path, body, headers = {}) {
  const res = await fetch(stack.httpBase + path, { method: "POST", body, headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
const admin = () => ({ authorization: `Bearer ${stack.token("admin", "ops")}` });
const frame = (flags, payload) => { const h = Buffer.alloc(5); h[0] = flags; h.writeUInt32BE(payload.length, 1); return Buffer.concat([h, payload]); };

test("Connect over HTTP/2: GET for read-only methods (cacheable), gzip both ways", async () => {
  // What a connect-node client with useHttpGet and sendCompression sends; the interceptor records, per call,
  // the HTTP method the client used and the encoding the answer came in.
  const seen = [];
  const options = (useHttpGet) => ({
    baseUrl: stack.httpBase, httpVersion: "2", useHttpGet,
    sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 1,
    interceptors: [(next) => async (req) => {
      const res = await next(req);
      seen.push({ rpc: req.method.name, get: useHttpGet, encoding: res.header.get("content-encoding"),
                  cache: res.header.get("cache-control"), etag: res.header.get("etag") });
      return res;
    }],
  });
  const transport = createConnectTransport(options(true));
  const { profile } = clients(transport);
  const created = await profile.registerCustomer({ email: "gzip@example.com", name: "Zhou Min", requestId: "reg-gzip" },
    bearer(stack.token("admin", "ops")));
  const self = bearer(stack.token("customer", created.customerId));
  // Enough addresses that the profile is worth compressing (over 1 KiB).
  for (let i = 0; i < 12; i++) {
    await profile.addAddress({ customerId: created.customerId, requestId: `addr-gzip-${i}`, address: {
      recipientName: "Zhou Min", city: "Shenzhen", street: `Keyuan Road ${i}, Nanshan District, building ${i}`, countryCode: "CN" } }, self);
  }
  const got = await profile.getCustomer({ customerId: created.customerId }, self);
  assert.equal(got.addresses.length, 12);
  // The same read as a POST, whose client advertises gzip (connect-node leaves Accept-Encoding off its GETs).
  const posted = await clients(createConnectTransport(options(false))).profile.getCustomer({ customerId: created.customerId }, self);
  assert.deepEqual(posted.addresses, got.addresses);
  // The interceptor sees the request before the transport turns it into a GET, so the answer tells: only a
  // Connect GET is answered with an ETag and cache headers.
  const reg = seen.find((s) => s.rpc === "RegisterCustomer");
  const get = seen.find((s) => s.rpc === "GetCustomer" && s.get);
  const postedRead = seen.find((s) => s.rpc === "GetCustomer" && !s.get);
  assert.equal(reg.etag, null);            // a write is never a GET
  assert.ok(get.etag);                     // idempotency_level = NO_SIDE_EFFECTS in the proto: sent as GET
  assert.match(get.cache, /private/);      // a customer's data: cacheable by the browser only
  assert.equal(postedRead.etag, null);
  assert.equal(postedRead.encoding, "gzip");    // the answer came compressed, and the client read it
  // The browser revalidates with the ETag: 304 while the profile is unchanged.
  const url = `${stack.httpBase}/crm.v1.CustomerProfileService/GetCustomer?connect=v1&encoding=json&message=` +
    encodeURIComponent(JSON.stringify({ customerId: created.customerId }));
  const first = await fetch(url, self);
  assert.equal(first.status, 200);
  const again = await fetch(url, { headers: { ...self.headers, "if-none-match": first.headers.get("etag") } });
  assert.equal(again.status, 304);
  // A gzip request body the server could not read would have failed the write above; one it cannot inflate
  // is refused with the protocol's error, and an unknown encoding is named.
  let r = await post("/crm.v1.CustomerProfileService/RegisterCustomer", Buffer.from("not gzip"),
    { "content-type": "application/json", "content-encoding": "gzip", ...admin() });
  assert.equal(JSON.parse(r.body).code, "invalid_argument");
  r = await post("/crm.v1.CustomerProfileService/RegisterCustomer", Buffer.from("{}"),
    { "content-type": "application/json", "content-encoding": "br", ...admin() });
  assert.equal(JSON.parse(r.body).code, "unimplemented");
  // GET of a method with side effects is refused.
  const res = await fetch(`${stack.httpBase}/crm.v1.CustomerProfileService/RegisterCustomer?encoding=json&message=%7B%7D`,
    { headers: admin() });
  assert.equal(res.status, 405);
});

test("malformed requests get the protocol's error and the gateway keeps serving", async () => {
  const get = "/crm.v1.CustomerProfileService/GetCustomer";
  let r = await post(get, "{not json", { "content-type": "application/json", ...admin() });
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.body).code, "invalid_argument");
  r = await post(get, JSON.stringify({ customerId: 5 }), { "content-type": "application/json", ...admin() });
  assert.equal(JSON.parse(r.body).code, "invalid_argument");
  r = await post("/crm.v1.Nothing/Here", "{}", { "content-type": "application/json", ...admin() });
  assert.equal(JSON.parse(r.body).code, "unimplemented");
  r = await post(get, "hello", { "content-type": "text/plain", ...admin() });
  assert.equal(r.status, 415);
  r = await post(get, JSON.stringify({ customerId: "x".repeat(70000) }), { "content-type": "application/json", ...admin() });
  assert.equal(JSON.parse(r.body).code, "resource_exhausted");
  // gRPC-Web: a truncated frame, then garbage inside a well-formed frame.
  r = await post(get, Buffer.from([0, 0, 0, 0, 9, 1]), { "content-type": "application/grpc-web+proto", ...admin() });
  assert.equal(r.status, 200);
  assert.match(r.body.toString("latin1"), /grpc-status: 3/);
  r = await post(get, frame(0, Buffer.from([0xff, 0xff, 0xff])), { "content-type": "application/grpc-web+proto", ...admin() });
  assert.match(r.body.toString("latin1"), /grpc-status: 3/);
  r = await post(get, "!!!not base64!!!", { "content-type": "application/grpc-web-text", ...admin() });
  assert.match(Buffer.from(r.body.toString(), "base64").toString("latin1"), /grpc-status: 3/);
  // Still serving.
  const { profile } = clients(createConnectTransport({ baseUrl: stack.httpBase, httpVersion: "1.1" }));
  const ok = await profile.registerCustomer({ email: "after-garbage@example.com", requestId: "after" }, bearer(stack.token("admin", "ops")));
  assert.ok(ok.customerId);
});

test("CORS: preflight from an allowed origin, refusal for others, headers exposed on answers", async () => {
  const preflight = (o) => fetch(stack.httpBase + "/crm.v1.CustomerProfileService/GetCustomer", {
    method: "OPTIONS",
    headers: { origin: o, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
  });
  let res = await preflight(origin);
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), origin);
  assert.match(res.headers.get("access-control-allow-headers"), /authorization/);
  res = await preflight("https://evil.example");
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  const r = await post("/crm.v1.CustomerProfileService/GetCustomer", JSON.stringify({ customerId: "c_x" }),
    { "content-type": "application/json", origin, "x-request-id": "cors-1", ...admin() });
  assert.equal(r.headers.get("access-control-allow-origin"), origin);
  assert.equal(r.headers.get("x-request-id"), "cors-1");
});

test("metrics count calls by route, protocol and code", async () => {
  const text = await (await fetch(stack.metricsUrl)).text();
  assert.match(text, /crm_gateway_requests_total\{code="OK",protocol="connect",route="\/crm.v1.CustomerProfileService\/RegisterCustomer"\}/);
  assert.match(text, /crm_gateway_requests_total\{code="OK",protocol="grpc-web",route=/);
  assert.match(text, /crm_gateway_denied_total\{reason="other_customer"\}/);
  // The streams the clients abandoned above were noticed and ended: nothing is left in flight.
  for (let i = 0; i < 100; i++) {
    const now = await (await fetch(stack.metricsUrl)).text();
    if (/crm_gateway_in_flight\{protocol="connect"\} 0/.test(now) && /crm_gateway_in_flight\{protocol="grpc-web"\} 0/.test(now)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail("calls still in flight after their clients went away");
});
