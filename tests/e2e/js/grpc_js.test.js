// Native gRPC through the gateway with @grpc/grpc-js: unary calls, errors (with their google.rpc details),
// authorization and the WatchOrder server stream. Messages are loaded from the descriptor set, so fields keep
// their proto names.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { descriptorRegistry, descriptorSet, startStack } from "./harness.js";

let stack, profile, orders;

before(async () => {
  stack = await startStack();
  const definition = protoLoader.loadFileDescriptorSetFromBuffer(descriptorSet(), { longs: String, enums: String, defaults: false });
  const api = grpc.loadPackageDefinition(definition).crm.v1;
  profile = new api.CustomerProfileService(stack.grpcAddress, grpc.credentials.createInsecure());
  orders = new api.OrderTrackingService(stack.grpcAddress, grpc.credentials.createInsecure());
});
after(async () => {
  profile?.close();
  orders?.close();
  await stack?.stop();
});

function as(token, extra = {}) {
  const md = new grpc.Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function registerWithAddress(email) {
  const admin = stack.token("admin", "ops");
  const customer = await unary(profile, "RegisterCustomer", { email, name: "Wang Fang", request_id: `reg-${email}` }, as(admin));
  const self = stack.token("customer", customer.customer_id);
  await unary(profile, "AddAddress", {
    customer_id: customer.customer_id, request_id: `addr-${email}`,
    address: { recipient_name: "Wang Fang", city: "Hangzhou", street: "Wensan Road 1", country_code: "CN" },
  }, as(self));
  return { customer, self };
}

test("unary calls: a customer reads their own profile, not someone else's", async () => {
  const { customer, self } = await registerWithAddress("fang@example.com");
  const got = await unary(profile, "GetCustomer", { customer_id: customer.customer_id }, as(self, { "x-request-id": "js-1" }));
  assert.equal(got.email, "fang@example.com");

  const other = await unary(profile, "RegisterCustomer", { email: "lei@example.com", request_id: "reg-lei" }, as(stack.token("admin", "ops")));
  await assert.rejects(unary(profile, "GetCustomer", { customer_id: other.customer_id }, as(self)),
    (e) => e.code === grpc.status.PERMISSION_DENIED && /customer_id/.test(e.details));
  await assert.rejects(unary(profile, "GetCustomer", { customer_id: customer.customer_id }, as(null)),
    (e) => e.code === grpc.status.UNAUTHENTICATED);
  await assert.rejects(unary(profile, "GetCustomer", { customer_id: customer.customer_id }, as(stack.forgedToken("admin", "x"))),
    (e) => e.code === grpc.status.UNAUTHENTICATED);
  // The service's own validation message comes through unchanged.
  await assert.rejects(unary(profile, "RegisterCustomer", { email: "not-an-email", request_id: "bad" }, as(stack.token("admin", "ops"))),
    (e) => e.code === grpc.status.INVALID_ARGUMENT && /^email/.test(e.details));
  // The access log has a line for the call with our request id.
  const line = stack.gatewayLog.map((l) => { try { return JSON.parse(l); } catch { return {}; } })
    .find((e) => e.message === "call" && e.request_id === "js-1");
  assert.ok(line, "access log line for request js-1");
  assert.equal(line.code, "OK");
  assert.equal(line.principal, `customer:${customer.customer_id}`);
});

test("WatchOrder streams order updates through the gateway", async () => {
  const { customer, self } = await registerWithAddress("stream@example.com");
  const now = Date.now();
  const order = await unary(orders, "CreateOrder", {
    customer_id: customer.customer_id, request_id: "order-1", payment_method: "PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE",
    items: [{ sku: "sku-tea", name: "Longjing tea", category: "grocery", quantity: 1, unit_price: { amount_minor: 5800, currency: "CNY" } }],
    delivery_window: { start_time: { seconds: String(Math.floor(now / 1000) + 86400) }, end_time: { seconds: String(Math.floor(now / 1000) + 93600) } },
  }, as(stack.token("service", "storefront")));  // checkout places orders, not the shopper's own token
  const updates = [];
  const call = orders.WatchOrder({ customer_id: customer.customer_id, order_id: order.order_id }, as(self));
  const firstTwo = new Promise((resolve, reject) => {
    call.on("data", (u) => { updates.push(u); if (updates.length === 2) resolve(); });
    call.on("error", (e) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
  });
  // Wait for the current state, then pay (as the payment service would) and see the change arrive.
  while (updates.length === 0) await new Promise((r) => setTimeout(r, 20));
  await unary(orders, "PayOrder", { customer_id: customer.customer_id, order_id: order.order_id, payment_reference: "pay-1" },
    as(stack.token("service", "payments")));
  await firstTwo;
  call.cancel();
  assert.equal(updates[0].order.order_id, order.order_id);
  assert.notEqual(updates[1].order.status, updates[0].order.status);

  // Someone else's order stream is refused.
  const intruder = stack.token("customer", "c_intruder");
  await new Promise((resolve) => {
    const denied = orders.WatchOrder({ customer_id: customer.customer_id, order_id: order.order_id }, as(intruder));
    denied.on("data", () => assert.fail("no data for an intruder"));
    denied.on("error", (e) => { assert.equal(e.code, grpc.status.PERMISSION_DENIED); resolve(); });
  });
});

// What grpc-js hands over of an error's google.rpc.Status: the trailer's bytes, decoded here by type name.
function detailsOf(err, registry) {
  const [bin] = err.metadata.get("grpc-status-details-bin");
  assert.ok(Buffer.isBuffer(bin), `no grpc-status-details-bin on ${err.code} ${err.details}`);
  const status = fromBinary(registry.getMessage("google.rpc.Status"), bin);
  assert.equal(status.code, err.code);
  assert.equal(status.message, err.details);  // the same words as grpc-message
  const byType = {};
  for (const any of status.details) byType[any.typeUrl.split("/").pop()] = anyUnpack(any, registry);
  return byType;
}

function failure(promise) {
  return promise.then(() => assert.fail("the call should have failed"), (e) => e);
}

test("errors carry google.rpc details: BadRequest, PreconditionFailure, RetryInfo, ErrorInfo", async () => {
  const registry = descriptorRegistry();
  const admin = as(stack.token("admin", "ops"));
  // A bad field, named by the service.
  let err = await failure(unary(profile, "RegisterCustomer", { email: "no-at-sign", request_id: "bad-details" }, admin));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  let d = detailsOf(err, registry);
  assert.equal(d["google.rpc.ErrorInfo"].reason, "INVALID_ARGUMENT");
  assert.equal(d["google.rpc.ErrorInfo"].domain, "crm.v1");
  assert.equal(d["google.rpc.ErrorInfo"].metadata.field, "email");
  assert.equal(d["google.rpc.BadRequest"].fieldViolations[0].field, "email");
  assert.equal(`email: ${d["google.rpc.BadRequest"].fieldViolations[0].description}`, err.details);

  // The order's state forbids a second, different payment.
  const { customer } = await registerWithAddress("paid-twice@example.com");
  const now = Math.floor(Date.now() / 1000);
  const service = as(stack.token("service", "storefront"));
  const order = await unary(orders, "CreateOrder", {
    customer_id: customer.customer_id, request_id: "order-paid-twice", payment_method: "PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE",
    items: [{ sku: "sku-tea", name: "Longjing tea", category: "grocery", quantity: 1, unit_price: { amount_minor: 5800, currency: "CNY" } }],
    delivery_window: { start_time: { seconds: String(now + 86400) }, end_time: { seconds: String(now + 93600) } },
  }, service);
  const pay = (ref) => unary(orders, "PayOrder", { customer_id: customer.customer_id, order_id: order.order_id, payment_reference: ref },
    as(stack.token("service", "payments")));
  await pay("pay-1");
  err = await failure(pay("pay-2"));
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  d = detailsOf(err, registry);
  assert.equal(d["google.rpc.ErrorInfo"].reason, "FAILED_PRECONDITION");
  const violation = d["google.rpc.PreconditionFailure"].violations[0];
  assert.equal(violation.type, "FAILED_PRECONDITION");
  assert.equal(violation.subject, "order_id");
  assert.match(violation.description, /only a PLACED order can be paid/);

  // The gateway's rate limit (an admin may make 50 calls a second, 100 at once): RetryInfo says when to
  // try again, as the older retry-after-ms trailer does.
  const busy = as(stack.token("admin", "busy-admin"));
  const results = await Promise.allSettled(Array.from({ length: 300 }, () =>
    unary(profile, "GetCustomer", { customer_id: "c_nobody" }, busy)));
  const limited = results.find((r) => r.status === "rejected" && r.reason.code === grpc.status.RESOURCE_EXHAUSTED);
  assert.ok(limited, "300 calls at once were all admitted");
  d = detailsOf(limited.reason, registry);
  assert.equal(d["google.rpc.ErrorInfo"].reason, "RATE_LIMITED");
  const delay = d["google.rpc.RetryInfo"].retryDelay;
  const [hint] = limited.reason.metadata.get("retry-after-ms");
  assert.equal(Number(delay.seconds) * 1000 + delay.nanos / 1e6, Number(hint));
});

test("health and reflection on the gateway need no token", async () => {
  const health = new grpc.Client(stack.grpcAddress, grpc.credentials.createInsecure());
  // grpc.health.v1.HealthCheckRequest{service: ""} is an empty message; SERVING is field 1 = 1.
  const res = await new Promise((resolve, reject) => health.makeUnaryRequest("/grpc.health.v1.Health/Check",
    (x) => x, (b) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r))));
  assert.deepEqual([...res], [0x08, 0x01]);
  health.close();
});
