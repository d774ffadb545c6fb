// Native gRPC through the gateway with @grpc/grpc-js: unary calls, errors, authorization and the
// WatchOrder server stream. Messages are loaded from the descriptor set, so fields keep their proto names.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { descriptorSet, startStack } from "./harness.js";

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

test("health and reflection on the gateway need no token", async () => {
  const health = new grpc.Client(stack.grpcAddress, grpc.credentials.createInsecure());
  // grpc.health.v1.HealthCheckRequest{service: ""} is an empty message; SERVING is field 1 = 1.
  const res = await new Promise((resolve, reject) => health.makeUnaryRequest("/grpc.health.v1.Health/Check",
    (x) => x, (b) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r))));
  assert.deepEqual([...res], [0x08, 0x01]);
  health.close();
});
