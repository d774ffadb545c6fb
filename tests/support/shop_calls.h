// The few calls many integration tests make to set a scene: a registered customer, an address, a
// one-item cash-on-delivery order (or its request, for calls through the gateway) shipped and
// delivered, a complaint's request, events made and delivered to a consumer. Header-only, Catch2
// tests only (a failed call fails the test there).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/events.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/validate.h"
#include "tests/support/rpc_call.h"

namespace crm::testing {

// A request that names only a customer (GetMembershipRequest, ListTicketsRequest, ...), or the
// start of a longer one.
template <typename Request>
Request ForCustomer(const std::string& customer_id) {
  Request request;
  request.set_customer_id(customer_id);
  return request;
}

// A request about one of a customer's orders (GetOrderRequest, ProcessOrderRequest, ...).
template <typename Request>
Request AboutOrder(const v1::Order& order) {
  Request request = ForCustomer<Request>(order.customer_id());
  request.set_order_id(order.order_id());
  return request;
}

// Registers `email` (request id "reg-<email>") and returns the customer id.
inline std::string RegisterCustomer(v1::CustomerProfileService::Stub* profiles,
                                    const std::string& email) {
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-" + email);
  reg.set_email(email);
  v1::Customer c;
  REQUIRE(Call(profiles, &v1::CustomerProfileService::Stub::RegisterCustomer, reg, &c).ok());
  return c.customer_id();
}

// Adds an address (the customer's first becomes the default) with request id `request_id`.
inline v1::Address AddAddress(v1::CustomerProfileService::Stub* profiles,
                              const std::string& customer_id, const std::string& request_id,
                              const std::string& recipient, const std::string& city,
                              const std::string& street) {
  v1::AddAddressRequest add;
  add.set_customer_id(customer_id);
  add.set_request_id(request_id);
  add.mutable_address()->set_recipient_name(recipient);
  add.mutable_address()->set_city(city);
  add.mutable_address()->set_street(street);
  v1::Address address;
  REQUIRE(Call(profiles, &v1::CustomerProfileService::Stub::AddAddress, add, &address).ok());
  return address;
}

// Adds a line of `quantity` times `sku` (of `category`) at `price_minor` fen each to an order.
inline v1::OrderItem* AddLine(v1::CreateOrderRequest& create, const std::string& sku,
                              const std::string& category, int quantity, int64_t price_minor) {
  v1::OrderItem* item = create.add_items();
  item->set_sku(sku);
  item->set_category(category);
  item->set_quantity(quantity);
  item->mutable_unit_price()->set_amount_minor(price_minor);
  item->mutable_unit_price()->set_currency("CNY");
  return item;
}

// The request for one item, cash on delivery, delivered in [window_start, window_start + window).
inline v1::CreateOrderRequest CashOnDeliveryOrderRequest(
    const std::string& customer_id, const std::string& request_id, const std::string& sku,
    const std::string& category, int64_t price_minor, absl::Time window_start,
    absl::Duration window) {
  v1::CreateOrderRequest create;
  create.set_customer_id(customer_id);
  create.set_request_id(request_id);
  AddLine(create, sku, category, 1, price_minor);
  create.set_payment_method(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  api::SetTimestamp(window_start, create.mutable_delivery_window()->mutable_start_time());
  api::SetTimestamp(window_start + window, create.mutable_delivery_window()->mutable_end_time());
  return create;
}

// That order placed (request id "o").
inline v1::Order PlaceCashOnDeliveryOrder(v1::OrderTrackingService::Stub* orders,
                                          const std::string& customer_id, const std::string& sku,
                                          const std::string& category, int64_t price_minor,
                                          absl::Time window_start, absl::Duration window) {
  const v1::CreateOrderRequest create = CashOnDeliveryOrderRequest(
      customer_id, "o", sku, category, price_minor, window_start, window);
  v1::Order order;
  REQUIRE(Call(orders, &v1::OrderTrackingService::Stub::CreateOrder, create, &order).ok());
  return order;
}

// A package's moves from the warehouse to the customer's door, when nothing goes wrong.
inline constexpr v1::PackageStatus kWarehouseToDoor[] = {
    v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED, v1::PACKAGE_STATUS_HANDED_TO_CARRIER,
    v1::PACKAGE_STATUS_DELIVERED};

// Who carries a package: what AdvancePackage requires when it is handed to a carrier.
struct Carrier {
  std::string name;
  std::string tracking_number;
  v1::CarrierType type = v1::CARRIER_TYPE_UNSPECIFIED;
};

// Whom a warehouse names for a move: SF Express, a partner courier, when it hands the package over
// (tracking number `tracking_number`), nobody for the other moves.
inline Carrier SfExpressWhenHanded(v1::PackageStatus status, const std::string& tracking_number) {
  if (status != v1::PACKAGE_STATUS_HANDED_TO_CARRIER) return {};
  return {"SF Express", tracking_number, v1::CARRIER_TYPE_PARTNER_COURIER};
}

// The request moving `order`'s package `package_id` to `status`, naming `carrier` (none: empty).
inline v1::AdvancePackageRequest AdvanceRequest(const v1::Order& order,
                                                const std::string& package_id,
                                                v1::PackageStatus status,
                                                const Carrier& carrier = {}) {
  auto advance = AboutOrder<v1::AdvancePackageRequest>(order);
  advance.set_package_id(package_id);
  advance.set_status(status);
  advance.set_carrier(carrier.name);
  advance.set_carrier_type(carrier.type);
  advance.set_tracking_number(carrier.tracking_number);
  return advance;
}

// Processes a placed one-package order and moves its package through picking and packing to
// `carrier` (tracking number `tracking_number`) and to the door; returns the order as delivered.
inline v1::Order ShipAndDeliver(v1::OrderTrackingService::Stub* orders, v1::Order order,
                                const std::string& carrier, const std::string& tracking_number) {
  using Stub = v1::OrderTrackingService::Stub;
  order = CallOk(orders, &Stub::ProcessOrder, AboutOrder<v1::ProcessOrderRequest>(order));
  for (v1::PackageStatus status : kWarehouseToDoor) {
    order = CallOk(
        orders, &Stub::AdvancePackage,
        AdvanceRequest(order, order.packages(0).package_id(), status, {carrier, tracking_number}));
  }
  return order;
}

// A customer's request to return one unit of the item `item_id` of an order, for `reason`, at
// `fault`'s cost.
inline v1::RequestReturnRequest OneItemReturnRequest(const std::string& customer_id,
                                                     const std::string& order_id,
                                                     const std::string& request_id,
                                                     const std::string& item_id,
                                                     const std::string& reason, v1::Fault fault) {
  v1::RequestReturnRequest ret;
  ret.set_customer_id(customer_id);
  ret.set_order_id(order_id);
  ret.set_request_id(request_id);
  ret.set_reason(reason);
  ret.set_fault(fault);
  auto* item = ret.add_items();
  item->set_item_id(item_id);
  item->set_quantity(1);
  return ret;
}

// An available agent as an admin registers them ("Agent <id>" unless named), for any category
// unless the caller adds some.
inline v1::RegisterAgentRequest AgentRequest(const std::string& agent_id, int level, int capacity,
                                             const std::string& name = "") {
  v1::RegisterAgentRequest r;
  r.mutable_agent()->set_agent_id(agent_id);
  r.mutable_agent()->set_name(name.empty() ? "Agent " + agent_id : name);
  r.mutable_agent()->set_level(level);
  r.mutable_agent()->set_capacity(capacity);
  r.mutable_agent()->set_available(true);
  return r;
}

// A complaint as a customer opens it on `channel` (set an order id or a subject on it as needed).
inline v1::OpenTicketRequest TicketRequest(const std::string& customer_id,
                                           const std::string& request_id, v1::TicketChannel channel,
                                           v1::TicketCategory category, const std::string& text) {
  v1::OpenTicketRequest open;
  open.set_request_id(request_id);
  open.set_customer_id(customer_id);
  open.set_channel(channel);
  open.set_category(category);
  open.set_text(text);
  return open;
}

// An event as `producer`'s outbox writes it: id "<producer>/0/1.<seq>", about `customer_id`, at
// `when`; the caller sets the payload.
inline v1::Event EventFrom(const std::string& producer, int seq, const std::string& customer_id,
                           absl::Time when) {
  v1::Event e;
  e.set_event_id(producer + "/0/1." + std::to_string(seq));
  e.set_customer_id(customer_id);
  e.set_producer(producer);
  api::SetTimestamp(when, e.mutable_occur_time());
  return e;
}

// Delivers `events` to a service's EventSink as a producer's dispatcher would; all must be applied.
inline void DeliverEvents(v1::EventSink::Stub* sink, const std::vector<v1::Event>& events) {
  v1::DeliverEventsRequest req;
  for (const auto& e : events) *req.add_events() = e;
  v1::DeliverEventsResponse resp;
  const grpc::Status s = Call(sink, &v1::EventSink::Stub::DeliverEvents, req, &resp);
  INFO(s.error_message() << " " << resp.failed_message());
  REQUIRE(s.ok());
  REQUIRE(resp.processed_count() == req.events_size());
}

}  // namespace crm::testing
