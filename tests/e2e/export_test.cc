// A customer's complete export (crm.v1.CustomerViewService/ExportCustomerDataBundle) over the six
// real processes: a customer with a profile, an order delivered and returned, a review, a ticket
// with messages, an internal note and a callback, points, a coupon, a recommendation shown, the
// delivery's satisfaction survey and the order's update notifications (failed: no sender is
// configured). The export holds each of them, equal to what each service's own read calls answer
// an admin; a customer's own export leaves out agents' internal notes but holds the notifications
// their own listing does not show; it is reachable as Connect JSON; another customer and
// agents are refused; with a service down it fails naming the service; after erasure it is
// NOT_FOUND, as the 360° view is. And no complaint-ticket method a customer calls answers them an
// internal note.
#include <algorithm>
#include <functional>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/customer_view.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/notifications.grpc.pb.h"
#include "crm/v1/options.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "crm/v1/surveys.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"
#include "libs/api/validate.h"
#include "tests/support/crm_system.h"
#include "tests/support/http.h"
#include "tests/support/require_ok.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using google::protobuf::util::MessageDifferencer;
using testing::AboutOrder;
using testing::ForCustomer;
using PS = v1::CustomerProfileService::Stub;
using OS = v1::OrderTrackingService::Stub;
using LS = v1::LoyaltyService::Stub;
using TS = v1::ComplaintTicketService::Stub;
using RS = v1::RecommendationService::Stub;
using VS = v1::CustomerViewService::Stub;
using SS = v1::SurveyService::Stub;
using NS = v1::NotificationService::Stub;

// Typed stubs on the gateway, each call carrying a token.
class Gateway {
 public:
  explicit Gateway(const std::shared_ptr<grpc::Channel>& channel)
      : profiles(v1::CustomerProfileService::NewStub(channel)),
        orders(v1::OrderTrackingService::NewStub(channel)),
        loyalty(v1::LoyaltyService::NewStub(channel)),
        tickets(v1::ComplaintTicketService::NewStub(channel)),
        recommendations(v1::RecommendationService::NewStub(channel)),
        views(v1::CustomerViewService::NewStub(channel)),
        surveys(v1::SurveyService::NewStub(channel)),
        notifications(v1::NotificationService::NewStub(channel)) {}

  template <typename Stub, typename Req, typename Resp>
  static grpc::Status As(const std::string& token, Stub* stub,
                         grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                         const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return (stub->*method)(&ctx, req, resp);
  }
  // The answer of a call that must succeed.
  template <typename Stub, typename Req, typename Resp>
  static Resp Ok(const std::string& token, Stub* stub,
                 grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                 const std::type_identity_t<Req>& req) {
    Resp resp;
    const grpc::Status s = As(token, stub, method, req, &resp);
    INFO(req.GetTypeName() << ": " << s.error_code() << " " << s.error_message());
    REQUIRE(s.ok());
    return resp;
  }

  std::unique_ptr<PS> profiles;
  std::unique_ptr<OS> orders;
  std::unique_ptr<LS> loyalty;
  std::unique_ptr<TS> tickets;
  std::unique_ptr<RS> recommendations;
  std::unique_ptr<VS> views;
  std::unique_ptr<SS> surveys;
  std::unique_ptr<NS> notifications;
};

struct Tokens {
  std::string admin, agent, storefront, customer, other_customer;
};

// Registers a customer and gives them one of everything; returns the customer id.
std::string CustomerWithHistory(Gateway& gw, testing::CrmSystem& system, Tokens& t) {
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg");
  reg.set_email("mei.export@example.com");
  reg.set_name("Mei");
  const std::string id =
      Gateway::Ok(t.admin, gw.profiles.get(), &PS::RegisterCustomer, reg).customer_id();
  t.customer = system.Token("customer", id);

  v1::AddAddressRequest address;
  address.set_customer_id(id);
  address.set_request_id("addr");
  address.mutable_address()->set_recipient_name("Mei");
  address.mutable_address()->set_city("Hangzhou");
  address.mutable_address()->set_street("West Lake Road 1");
  Gateway::Ok(t.customer, gw.profiles.get(), &PS::AddAddress, address);
  v1::AddPaymentMethodRequest pay;
  pay.set_customer_id(id);
  pay.set_request_id("pay");
  pay.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CARD);
  pay.mutable_payment_method()->set_token("tok_mei");
  pay.mutable_payment_method()->set_last4("4242");
  Gateway::Ok(t.customer, gw.profiles.get(), &PS::AddPaymentMethod, pay);
  v1::SetMarketingConsentRequest consent;
  consent.set_customer_id(id);
  consent.set_channel(v1::CHANNEL_EMAIL);
  consent.set_granted(true);
  consent.set_source("signup form");
  Gateway::Ok(t.customer, gw.profiles.get(), &PS::SetMarketingConsent, consent);

  v1::UpsertCatalogItemsRequest catalog;
  auto* tea = catalog.add_items();
  tea->set_sku("sku-tea");
  tea->set_name("Longjing tea");
  tea->set_category("grocery");
  Gateway::Ok(t.admin, gw.recommendations.get(), &RS::UpsertCatalogItems, catalog);

  // An order delivered, then a return of it and a review of its item. With the e-mail consent
  // above its delivery offers a survey; its shipping and delivery each make an order update.
  v1::Order order = Gateway::Ok(
      t.storefront, gw.orders.get(), &OS::CreateOrder,
      testing::CashOnDeliveryOrderRequest(id, "order-1", "sku-tea", "grocery", 5800,
                                          absl::Now() - absl::Hours(1), absl::Hours(49)));
  order = Gateway::Ok(t.admin, gw.orders.get(), &OS::ProcessOrder,
                      AboutOrder<v1::ProcessOrderRequest>(order));
  for (v1::PackageStatus s : testing::kWarehouseToDoor) {
    Gateway::Ok(t.admin, gw.orders.get(), &OS::AdvancePackage,
                testing::AdvanceRequest(order, order.packages(0).package_id(), s,
                                        testing::SfExpressWhenHanded(s, "SF-export-1")));
  }
  const std::string item_id = order.items(0).item_id();
  v1::SubmitReviewRequest review = AboutOrder<v1::SubmitReviewRequest>(order);
  review.set_item_id(item_id);
  review.set_rating(4);
  review.set_text("fragrant");
  review.set_request_id("review");
  Gateway::Ok(t.customer, gw.orders.get(), &OS::SubmitReview, review);
  Gateway::Ok(t.customer, gw.orders.get(), &OS::RequestReturn,
              testing::OneItemReturnRequest(id, order.order_id(), "return", item_id, "tin dented",
                                            v1::FAULT_CARRIER));

  // A ticket with the customer's reply, an agent's internal note and a promised callback.
  Gateway::Ok(t.admin, gw.tickets.get(), &TS::RegisterAgent,
              testing::AgentRequest("agent-7", 3, 10, "Wang"));
  v1::OpenTicketRequest open = testing::TicketRequest(
      id, "ticket", v1::TICKET_CHANNEL_WEB, v1::TICKET_CATEGORY_DELIVERY, "the tin arrived dented");
  const std::string ticket_id =
      Gateway::Ok(t.customer, gw.tickets.get(), &TS::OpenTicket, open).ticket_id();
  v1::ReplyToTicketRequest reply;
  reply.set_customer_id(id);
  reply.set_ticket_id(ticket_id);
  reply.set_text("photos attached");
  reply.set_request_id("reply");
  Gateway::Ok(t.customer, gw.tickets.get(), &TS::ReplyToTicket, reply);
  v1::AddInternalNoteRequest note;
  note.set_customer_id(id);
  note.set_ticket_id(ticket_id);
  note.set_text("internal: carrier claim filed");
  note.set_request_id("note");
  Gateway::Ok(t.agent, gw.tickets.get(), &TS::AddInternalNote, note);
  v1::PromiseCallbackRequest callback;
  callback.set_customer_id(id);
  callback.set_ticket_id(ticket_id);
  api::SetTimestamp(absl::Now() + absl::Hours(2), callback.mutable_callback_time());
  callback.set_note("call about the replacement");
  callback.set_request_id("callback");
  Gateway::Ok(t.agent, gw.tickets.get(), &TS::PromiseCallback, callback);

  v1::GrantPointsRequest grant;
  grant.set_customer_id(id);
  grant.set_points(30);
  grant.set_source(v1::POINTS_SOURCE_PROMOTION);
  grant.set_source_id("welcome");
  grant.set_description("welcome");
  Gateway::Ok(t.admin, gw.loyalty.get(), &LS::GrantPoints, grant);
  v1::IssueCouponRequest coupon;
  coupon.set_customer_id(id);
  coupon.set_source_id("welcome");
  coupon.mutable_value()->set_amount_minor(500);
  coupon.mutable_value()->set_currency("CNY");
  Gateway::Ok(t.admin, gw.loyalty.get(), &LS::IssueCoupon, coupon);

  v1::RecordFeedbackRequest shown;
  shown.set_customer_id(id);
  shown.set_placement(v1::PLACEMENT_HOME);
  shown.set_request_id("shown");
  v1::FeedbackItem* impression = shown.add_impressions();
  impression->set_sku("sku-tea");
  impression->set_model(v1::MODEL_COLD_START);
  Gateway::Ok(t.customer, gw.recommendations.get(), &RS::RecordFeedback, shown);
  return id;
}

v1::CustomerDataExportBundle Export(Gateway& gw, const std::string& token, const std::string& id) {
  auto request = ForCustomer<v1::ExportCustomerDataBundleRequest>(id);
  return Gateway::Ok(token, gw.views.get(), &VS::ExportCustomerDataBundle, request);
}

grpc::Status ExportStatus(Gateway& gw, const std::string& token, const std::string& id) {
  v1::CustomerDataExportBundle ignored;
  return Gateway::As(token, gw.views.get(), &VS::ExportCustomerDataBundle,
                     ForCustomer<v1::ExportCustomerDataBundleRequest>(id), &ignored);
}

template <typename M>
void CheckEqual(const M& exported, const M& read) {
  std::string diff;
  MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  INFO(M::descriptor()->full_name() << " differs: " << diff);
  CHECK(d.Compare(exported, read));
}

// Every part of an admin's export equals what the services' own read calls answer the admin.
void CheckMatchesServices(Gateway& gw, const std::string& admin, const std::string& id,
                          v1::CustomerDataExportBundle bundle) {
  auto profile = Gateway::Ok(admin, gw.profiles.get(), &PS::ExportCustomerData,
                             ForCustomer<v1::ExportCustomerDataRequest>(id));
  profile.clear_export_time();
  bundle.mutable_profile()->clear_export_time();
  CheckEqual(bundle.profile(), profile);
  CheckEqual(bundle.insights(), Gateway::Ok(admin, gw.profiles.get(), &PS::GetCustomerInsights,
                                            ForCustomer<v1::GetCustomerInsightsRequest>(id)));

  auto orders = ForCustomer<v1::ListOrdersRequest>(id);
  orders.set_page_size(100);
  const auto listed = Gateway::Ok(admin, gw.orders.get(), &OS::ListOrders, orders);
  const auto returns = Gateway::Ok(admin, gw.orders.get(), &OS::ListReturns,
                                   ForCustomer<v1::ListReturnsRequest>(id));
  REQUIRE(bundle.orders_size() == listed.orders_size());
  int exported_returns = 0;
  for (int i = 0; i < listed.orders_size(); ++i) {
    const v1::ExportedOrder& o = bundle.orders(i);
    CheckEqual(o.order(), listed.orders(i));
    const auto history = Gateway::Ok(admin, gw.orders.get(), &OS::GetOrderHistory,
                                     AboutOrder<v1::GetOrderHistoryRequest>(listed.orders(i)));
    REQUIRE(o.history_size() == history.entries_size());
    for (int k = 0; k < o.history_size(); ++k) CheckEqual(o.history(k), history.entries(k));
    for (const v1::Return& r : o.returns()) {
      CHECK(r.order_id() == o.order().order_id());
      const v1::Return& read = returns.returns(exported_returns++);
      CheckEqual(r, read);
    }
  }
  CHECK(exported_returns == returns.returns_size());
  CHECK(bundle.returns_listing().count() == returns.returns_size());
  const auto reviews = Gateway::Ok(admin, gw.orders.get(), &OS::ListReviews,
                                   ForCustomer<v1::ListReviewsRequest>(bundle.customer_id()));
  int exported_reviews = 0;
  for (const v1::ExportedOrder& o : bundle.orders()) {
    for (const v1::Review& r : o.reviews()) CheckEqual(r, reviews.reviews(exported_reviews++));
  }
  CHECK(exported_reviews == reviews.reviews_size());

  auto tickets = ForCustomer<v1::ListTicketsRequest>(id);
  tickets.set_page_size(100);
  const auto read_tickets = Gateway::Ok(admin, gw.tickets.get(), &TS::ListTickets, tickets);
  REQUIRE(bundle.tickets_size() == read_tickets.tickets_size());
  for (int i = 0; i < bundle.tickets_size(); ++i)
    CheckEqual(bundle.tickets(i), read_tickets.tickets(i));

  CheckEqual(bundle.loyalty().membership(), Gateway::Ok(admin, gw.loyalty.get(), &LS::GetMembership,
                                                        ForCustomer<v1::GetMembershipRequest>(id)));
  auto ledger = ForCustomer<v1::ListPointsHistoryRequest>(id);
  ledger.set_page_size(100);
  const auto entries = Gateway::Ok(admin, gw.loyalty.get(), &LS::ListPointsHistory, ledger);
  REQUIRE(bundle.loyalty().ledger_size() == entries.entries_size());
  for (int i = 0; i < entries.entries_size(); ++i)
    CheckEqual(bundle.loyalty().ledger(i), entries.entries(i));
  const auto coupons = Gateway::Ok(admin, gw.loyalty.get(), &LS::ListCoupons,
                                   ForCustomer<v1::ListCouponsRequest>(id));
  REQUIRE(bundle.loyalty().coupons_size() == coupons.coupons_size());
  for (int i = 0; i < coupons.coupons_size(); ++i)
    CheckEqual(bundle.loyalty().coupons(i), coupons.coupons(i));

  auto shown = ForCustomer<v1::ListShownItemsRequest>(id);
  const auto items = Gateway::Ok(admin, gw.recommendations.get(), &RS::ListShownItems, shown);
  REQUIRE(bundle.shown_recommendations_size() == items.items_size());
  for (int i = 0; i < items.items_size(); ++i)
    CheckEqual(bundle.shown_recommendations(i), items.items(i));

  auto surveys = ForCustomer<v1::ListSurveysRequest>(id);
  surveys.set_page_size(100);
  const auto read_surveys = Gateway::Ok(admin, gw.surveys.get(), &SS::ListSurveys, surveys);
  REQUIRE(bundle.surveys_size() == read_surveys.surveys_size());
  for (int i = 0; i < bundle.surveys_size(); ++i)
    CheckEqual(bundle.surveys(i), read_surveys.surveys(i));

  auto notifications = ForCustomer<v1::ListNotificationsRequest>(id);
  notifications.set_page_size(100);
  const auto read_notifications =
      Gateway::Ok(admin, gw.notifications.get(), &NS::ListNotifications, notifications);
  REQUIRE(bundle.notifications_size() == read_notifications.notifications_size());
  for (int i = 0; i < bundle.notifications_size(); ++i)
    CheckEqual(bundle.notifications(i), read_notifications.notifications(i));
}

// The customer's order updates about `order_id` as an admin lists them (every status).
std::vector<v1::Notification> OrderUpdates(Gateway& gw, const std::string& admin,
                                           const std::string& id, const std::string& order_id) {
  std::vector<v1::Notification> out;
  v1::ListNotificationsResponse listed;
  if (!Gateway::As(admin, gw.notifications.get(), &NS::ListNotifications,
                   ForCustomer<v1::ListNotificationsRequest>(id), &listed)
           .ok())
    return out;
  for (const v1::Notification& n : listed.notifications()) {
    if (n.kind() == v1::NOTIFICATION_KIND_ORDER_UPDATE && n.reference() == order_id)
      out.push_back(n);
  }
  return out;
}

// True when the ticket holds a message only agents may see.
bool HasInternalNote(const v1::Ticket& ticket) {
  for (const v1::TicketMessage& m : ticket.messages()) {
    if (m.internal()) return true;
  }
  return false;
}

bool HasInternalNote(const v1::CustomerDataExportBundle& bundle) {
  for (const v1::Ticket& t : bundle.tickets()) {
    if (HasInternalNote(t)) return true;
  }
  return false;
}

// The six processes with one customer who has one of everything, and the callers' tokens.
struct World {
  World() : system(Options(dir)), gw((Start(system), system.gateway())) {
    t = Tokens{system.Token("admin", "ops-1"), system.Token("agent", "agent-7"),
               system.Token("service", "storefront"), "", system.Token("customer", "c_someone")};
    id = CustomerWithHistory(gw, system, t);
  }
  static testing::CrmSystem::Options Options(const testing::TempDir& dir) {
    testing::CrmSystem::Options options;
    options.data_root = dir.path();
    // No quiet hours: the order updates are tried at once whatever the time of day, and with no
    // sender configured they end FAILED, so they do not change while the export is compared.
    options.extra["customer-profile"] = {"--quiet_hours=00:00-00:00"};
    return options;
  }
  static void Start(testing::CrmSystem& system) { REQUIRE_OK(system.Start()); }

  testing::TempDir dir;
  testing::CrmSystem system;
  Gateway gw;
  Tokens t;
  std::string id;
};

TEST_CASE(
    "export: every service's data on a customer in one document equal to their own reads, refused "
    "to others, UNAVAILABLE with a service down and NOT_FOUND once erased") {
  World w;
  testing::CrmSystem& system = w.system;
  Gateway& gw = w.gw;
  Tokens& t = w.t;
  const std::string id = w.id;

  // The events of the delivery, the review and the ticket have reached loyalty and the insights:
  // purchase and review points beside the welcome grant, and the order counted.
  REQUIRE(testing::WaitUntil(
      [&] {
        auto ledger = ForCustomer<v1::ListPointsHistoryRequest>(id);
        v1::ListPointsHistoryResponse entries;
        v1::CustomerInsights insights;
        return Gateway::As(t.admin, gw.loyalty.get(), &LS::ListPointsHistory, ledger, &entries)
                   .ok() &&
               entries.entries_size() >= 3 &&
               Gateway::As(t.admin, gw.profiles.get(), &PS::GetCustomerInsights,
                           ForCustomer<v1::GetCustomerInsightsRequest>(id), &insights)
                   .ok() &&
               insights.facts().orders() >= 1 && insights.facts().reviews() >= 1 &&
               insights.facts().complaints() >= 1;
      },
      absl::Seconds(30)));

  // The delivery has reached customer-profile too: its survey offered (the customer consented to
  // e-mail), and the order's updates (shipped, delivered) tried and settled as FAILED.
  auto listed_orders = ForCustomer<v1::ListOrdersRequest>(id);
  const std::string order_id =
      Gateway::Ok(t.admin, gw.orders.get(), &OS::ListOrders, listed_orders).orders(0).order_id();
  const std::string survey_id = "delivery-" + order_id;
  REQUIRE(testing::WaitUntil(
      [&] {
        v1::ListSurveysResponse surveys;
        if (!Gateway::As(t.admin, gw.surveys.get(), &SS::ListSurveys,
                         ForCustomer<v1::ListSurveysRequest>(id), &surveys)
                 .ok() ||
            surveys.surveys_size() != 1 || surveys.surveys(0).survey_id() != survey_id)
          return false;
        const std::vector<v1::Notification> updates = OrderUpdates(gw, t.admin, id, order_id);
        return updates.size() == 2 &&
               std::all_of(updates.begin(), updates.end(), [](const v1::Notification& n) {
                 return n.status() == v1::NOTIFICATION_STATUS_FAILED;
               });
      },
      absl::Seconds(30)));
  const std::vector<v1::Notification> updates = OrderUpdates(gw, t.admin, id, order_id);

  const v1::CustomerDataExportBundle admin_export = Export(gw, t.admin, id);
  CHECK(admin_export.customer_id() == id);
  CHECK(admin_export.has_export_time());
  const v1::Customer& profile = admin_export.profile().customer();
  CHECK(profile.email() == "mei.export@example.com");
  REQUIRE(profile.addresses_size() == 1);
  CHECK(profile.addresses(0).city() == "Hangzhou");
  REQUIRE(profile.payment_methods_size() == 1);
  CHECK(profile.payment_methods(0).last4() == "4242");
  REQUIRE(profile.marketing_consents_size() >= 1);
  REQUIRE(admin_export.orders_size() == 1);
  const v1::ExportedOrder& order = admin_export.orders(0);
  CHECK(order.order().status() == v1::ORDER_STATUS_DELIVERED);
  CHECK(order.order().reviewed_item_ids_size() == 1);
  REQUIRE(order.returns_size() == 1);
  CHECK(order.returns(0).reason() == "tin dented");
  bool review_in_history = false, delivered_in_history = false;
  for (const v1::OrderHistoryEntry& e : order.history()) {
    review_in_history = review_in_history || absl::StrContains(e.description(), "review");
    delivered_in_history = delivered_in_history || e.status() == v1::ORDER_STATUS_DELIVERED;
  }
  CHECK(review_in_history);
  CHECK(delivered_in_history);
  REQUIRE(order.reviews_size() == 1);
  CHECK(order.reviews(0).text() == "fragrant");
  CHECK(order.reviews(0).rating() == 4);
  CHECK(admin_export.reviews_listing().count() == 1);
  REQUIRE(admin_export.tickets_size() == 1);
  CHECK(admin_export.tickets(0).callbacks_size() == 1);
  CHECK(HasInternalNote(admin_export));
  CHECK(admin_export.loyalty().ledger_size() >= 3);
  CHECK(admin_export.loyalty().membership().points_balance() > 0);
  REQUIRE(admin_export.loyalty().coupons_size() == 1);
  REQUIRE(admin_export.shown_recommendations_size() == 1);
  CHECK(admin_export.shown_recommendations(0).sku() == "sku-tea");
  CHECK(admin_export.shown_recommendations(0).impressions() == 1);
  CHECK(admin_export.insights().customer_id() == id);
  REQUIRE(admin_export.surveys_size() == 1);
  CHECK(admin_export.surveys(0).survey_id() == survey_id);
  CHECK(admin_export.surveys(0).subject_id() == order_id);
  CHECK(admin_export.surveys(0).status() == v1::SURVEY_STATUS_OPEN);
  CHECK(admin_export.surveys_listing().count() == 1);
  REQUIRE(admin_export.notifications_size() == 2);
  for (const v1::Notification& n : admin_export.notifications()) {
    INFO(n.ShortDebugString());
    CHECK(n.customer_id() == id);
    CHECK(n.kind() == v1::NOTIFICATION_KIND_ORDER_UPDATE);
    CHECK(n.reference() == order_id);
    CHECK(n.status() == v1::NOTIFICATION_STATUS_FAILED);
    CHECK(absl::StartsWith(n.status_reason(), "no sender is configured"));
    CHECK(std::any_of(updates.begin(), updates.end(), [&](const v1::Notification& u) {
      return u.notification_id() == n.notification_id();
    }));
  }
  CHECK(admin_export.notifications_listing().count() == 2);
  for (const v1::ExportedListing* l :
       {&admin_export.orders_listing(), &admin_export.tickets_listing(),
        &admin_export.loyalty().ledger_listing(), &admin_export.loyalty().coupons_listing(),
        &admin_export.shown_recommendations_listing(), &admin_export.returns_listing(),
        &admin_export.surveys_listing(), &admin_export.notifications_listing()}) {
    CHECK_FALSE(l->truncated());
    CHECK(l->count() >= 1);
  }
  CheckMatchesServices(gw, t.admin, id, admin_export);

  // The customer's own export: the same, but agents' internal notes stay out, and the profiling
  // (insights) is theirs to see.
  const v1::CustomerDataExportBundle own = Export(gw, t.customer, id);
  CHECK_FALSE(HasInternalNote(own));
  REQUIRE(own.tickets_size() == 1);
  CHECK(own.tickets(0).messages_size() == admin_export.tickets(0).messages_size() - 1);
  CHECK(own.insights().customer_id() == id);
  CHECK(own.orders_size() == 1);
  // Failed notifications are left out of the customer's own listing, but they are data held on
  // them: their export has them, as the admin's does.
  const auto own_listing = Gateway::Ok(t.customer, gw.notifications.get(), &NS::ListNotifications,
                                       ForCustomer<v1::ListNotificationsRequest>(id));
  CHECK(own_listing.notifications_size() == 0);
  REQUIRE(own.notifications_size() == admin_export.notifications_size());
  for (int i = 0; i < own.notifications_size(); ++i)
    CheckEqual(own.notifications(i), admin_export.notifications(i));
  REQUIRE(own.surveys_size() == 1);
  CheckEqual(own.surveys(0), admin_export.surveys(0));

  // Over Connect JSON, as a browser calls it.
  const testing::CommandResult curl = testing::RunCommand(
      absl::StrCat("curl -s -H 'Authorization: Bearer ", t.customer,
                   "' -H 'Content-Type: application/json' -d '", "{\"customerId\":\"", id,
                   "\"}' http://127.0.0.1:", system.http_port(),
                   "/crm.v1.CustomerViewService/ExportCustomerDataBundle"));
  INFO(curl.output);
  CHECK(absl::StrContains(curl.output, "\"shownRecommendations\""));
  CHECK(absl::StrContains(curl.output, "\"tin dented\""));
  CHECK(absl::StrContains(curl.output, "\"surveys\""));
  CHECK(absl::StrContains(curl.output, absl::StrCat("\"", survey_id, "\"")));
  CHECK(absl::StrContains(curl.output, "\"notifications\""));
  CHECK(absl::StrContains(curl.output, absl::StrCat("\"", updates[0].notification_id(), "\"")));

  // Refusals: another customer, an agent, no customer id.
  CHECK(ExportStatus(gw, t.other_customer, id).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(ExportStatus(gw, t.agent, id).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status no_id = ExportStatus(gw, t.admin, "");
  CHECK(no_id.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(absl::StartsWith(no_id.error_message(), "customer_id:"));

  // A service down: no export rather than an incomplete one.
  REQUIRE(system.Stop("recommendation") == 0);
  const grpc::Status down = ExportStatus(gw, t.customer, id);
  CHECK(down.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::StrContains(down.error_message(), "recommendation"));
  REQUIRE(system.Start("recommendation").ok());

  // Erased: NOT_FOUND, as the view answers.
  v1::EraseCustomerRequest erase;
  erase.set_customer_id(id);
  erase.set_request_id("erase");
  erase.set_reason("the customer asked");
  Gateway::Ok(t.admin, gw.profiles.get(), &PS::EraseCustomer, erase);
  CHECK(ExportStatus(gw, t.admin, id).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(ExportStatus(gw, t.customer, id).error_code() == grpc::StatusCode::NOT_FOUND);
  // Nor does customer-profile keep the surveys or notifications an export would have held.
  CHECK(testing::WaitUntil(
      [&] {
        v1::ListSurveysResponse surveys;
        v1::ListNotificationsResponse notifications;
        const grpc::Status s = Gateway::As(t.admin, gw.surveys.get(), &SS::ListSurveys,
                                           ForCustomer<v1::ListSurveysRequest>(id), &surveys);
        const grpc::Status n =
            Gateway::As(t.admin, gw.notifications.get(), &NS::ListNotifications,
                        ForCustomer<v1::ListNotificationsRequest>(id), &notifications);
        return (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) &&
               (n.ok() || n.error_code() == grpc::StatusCode::NOT_FOUND) &&
               surveys.surveys_size() == 0 && notifications.notifications_size() == 0;
      },
      absl::Seconds(30)));
  v1::CustomerView view;
  auto view_request = ForCustomer<v1::GetCustomerViewRequest>(id);
  CHECK(Gateway::As(t.admin, gw.views.get(), &VS::GetCustomerView, view_request, &view)
            .error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE(
    "internal notes: no complaint-ticket method a customer may call answers them an agent's "
    "internal note, while the agent still sees it") {
  World w;
  Gateway& gw = w.gw;
  Tokens& t = w.t;
  const std::string id = w.id;
  const v1::ListTicketsResponse as_agent = Gateway::Ok(t.agent, gw.tickets.get(), &TS::ListTickets,
                                                       ForCustomer<v1::ListTicketsRequest>(id));
  REQUIRE(as_agent.tickets_size() == 1);
  REQUIRE(HasInternalNote(as_agent.tickets(0)));
  const std::string ticket_id = as_agent.tickets(0).ticket_id();

  // Each method a customer may call, called as the customer; its answer's tickets.
  std::map<std::string, std::function<std::vector<v1::Ticket>()>> calls;
  calls["OpenTicket"] = [&] {
    return std::vector<v1::Ticket>{
        Gateway::Ok(t.customer, gw.tickets.get(), &TS::OpenTicket,
                    testing::TicketRequest(id, "second", v1::TICKET_CHANNEL_WEB,
                                           v1::TICKET_CATEGORY_OTHER, "and the lid is loose"))};
  };
  calls["GetTicket"] = [&] {
    v1::GetTicketRequest get;
    get.set_customer_id(id);
    get.set_ticket_id(ticket_id);
    return std::vector<v1::Ticket>{Gateway::Ok(t.customer, gw.tickets.get(), &TS::GetTicket, get)};
  };
  calls["ListTickets"] = [&] {
    const auto list = Gateway::Ok(t.customer, gw.tickets.get(), &TS::ListTickets,
                                  ForCustomer<v1::ListTicketsRequest>(id));
    return std::vector<v1::Ticket>(list.tickets().begin(), list.tickets().end());
  };
  calls["SearchTickets"] = [&] {
    v1::SearchTicketsRequest search;
    search.set_customer_id(id);
    search.set_query("dented");
    const auto found = Gateway::Ok(t.customer, gw.tickets.get(), &TS::SearchTickets, search);
    CHECK(found.tickets_size() == 1);
    search.set_query("filed");  // only in the agent's internal note
    CHECK(Gateway::Ok(t.customer, gw.tickets.get(), &TS::SearchTickets, search).tickets_size() ==
          0);
    return std::vector<v1::Ticket>(found.tickets().begin(), found.tickets().end());
  };
  calls["ReplyToTicket"] = [&] {
    v1::ReplyToTicketRequest reply;
    reply.set_customer_id(id);
    reply.set_ticket_id(ticket_id);
    reply.set_text("any news?");
    reply.set_request_id("reply-again");
    return std::vector<v1::Ticket>{
        Gateway::Ok(t.customer, gw.tickets.get(), &TS::ReplyToTicket, reply)};
  };
  calls["SubmitSatisfaction"] = [&] {
    v1::ResolveTicketRequest resolve;
    resolve.set_customer_id(id);
    resolve.set_ticket_id(ticket_id);
    resolve.set_summary("carrier claim paid, replacement sent");
    resolve.set_request_id("resolve");
    Gateway::Ok(t.agent, gw.tickets.get(), &TS::ResolveTicket, resolve);
    v1::SubmitSatisfactionRequest csat;
    csat.set_customer_id(id);
    csat.set_ticket_id(ticket_id);
    csat.set_csat(4);
    return std::vector<v1::Ticket>{
        Gateway::Ok(t.customer, gw.tickets.get(), &TS::SubmitSatisfaction, csat)};
  };

  // Every method whose policy lets a customer call it is tried, so a new one cannot be forgotten.
  const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      v1::ComplaintTicketService::service_full_name());
  REQUIRE(service != nullptr);
  for (int m = 0; m < service->method_count(); ++m) {
    const auto& roles = service->method(m)->options().GetExtension(v1::policy).roles();
    if (std::find(roles.begin(), roles.end(), v1::ROLE_CUSTOMER) == roles.end()) continue;
    INFO(service->method(m)->name() << " is callable by a customer: add it to the calls here");
    CHECK(calls.count(service->method(m)->name()) == 1);
  }
  for (const auto& [method, call] : calls) {
    INFO(method);
    for (const v1::Ticket& ticket : call()) CHECK_FALSE(HasInternalNote(ticket));
  }
  // The agent's own view of the ticket keeps the note.
  v1::GetTicketRequest get;
  get.set_customer_id(id);
  get.set_ticket_id(ticket_id);
  CHECK(HasInternalNote(Gateway::Ok(t.agent, gw.tickets.get(), &TS::GetTicket, get)));
}

}  // namespace
}  // namespace crm
