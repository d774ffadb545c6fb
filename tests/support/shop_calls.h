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

// The request for one item, cash on delivery, delivered in [window_start, window_start + window).
inline v1::CreateOrderRequest CashOnDeliveryOrderRequest(
    const std::string& customer_id, const std::string& request_id, const std::string& sku,
    const std::string& category, int64_t price_minor, absl::Time window_start,
    absl::Duration window) {
  v1::CreateOrderRequest create;
  create.set_customer_id(customer_id);
  create.set_request_id(request_id);
  auto* item = create.add_items();
  item->set_sku(sku);
  item->set_category(category);
  item->set_quantity(1);
  item->mutable_unit_price()->set_amount_minor(price_minor);
  item->mutable_unit_price()->set_currency("CNY");
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

// Processes a placed one-package order and moves its package through picking and packing to
// `carrier` (tracking number `tracking_number`) and to the door; returns the order as delivered.
inline v1::Order ShipAndDeliver(v1::OrderTrackingService::Stub* orders, v1::Order order,
                                const std::string& carrier, const std::string& tracking_number) {
  v1::ProcessOrderRequest process;
  process.set_customer_id(order.customer_id());
  process.set_order_id(order.order_id());
  REQUIRE(Call(orders, &v1::OrderTrackingService::Stub::ProcessOrder, process, &order).ok());
  for (auto s : {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
                 v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_DELIVERED}) {
    v1::AdvancePackageRequest adv;
    adv.set_customer_id(order.customer_id());
    adv.set_order_id(order.order_id());
    adv.set_package_id(order.packages(0).package_id());
    adv.set_status(s);
    adv.set_carrier(carrier);
    adv.set_tracking_number(tracking_number);
    REQUIRE(Call(orders, &v1::OrderTrackingService::Stub::AdvancePackage, adv, &order).ok());
  }
  return order;
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
