// The abuse suite: what an attacker holding a customer token (or reaching a service's own port)
// tries, generated from the descriptors like the authorization matrix, against the six real
// processes (mutual TLS between them, as in the local run). A victim and an attacker each get a
// full history (profile, address, card token, searches, orders delivered and not, tickets, points,
// a coupon, a return, a review, delivery surveys, order-update e-mails); then the attacker tries:
//   - every customer-callable method with the victim's ids in every id-like field (and the victim's
//   customer id);
//   - every customer listing with forged, tampered, expired, out-of-range and other-scope page
//   tokens;
//   - every retryable method with the victim's request ids replayed;
//   - body fields that claim another identity (author, agent id), as a customer and as an agent;
//   - every method of every service port: without a client certificate, with a certificate but no
//   or a forged
//     caller assertion, with an end user's assertion from a peer that is not the gateway, and as a
//     customer through the gateway's own certificate for methods customers may not call.
// Nothing of the victim's may come back (ids, e-mail, name, texts, card token), and the victim's
// data must be byte-for-byte the same afterwards. The counts are printed.
#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/notifications.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.pb.h"
#include "crm/v1/surveys.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/auth/caller.h"
#include "libs/rpc/backends.h"
#include "libs/sharding/hash.h"
#include "libs/store/key.h"
#include "services/gateway/routes.h"
#include "tests/support/caller.h"
#include "tests/support/crm_system.h"
#include "tests/support/grpc_probe.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/shop_calls.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using gateway::Route;
using gateway::RouteTable;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// One unary call with raw bytes; fills `response` with the answer's bytes.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                     const std::string& request,
                     const std::vector<std::pair<std::string, std::string>>& metadata,
                     std::string* response) {
  testing::RawReply reply =
      testing::RawUnaryCall(channel, path, request, metadata, absl::Seconds(10));
  if (response != nullptr) *response = std::move(reply.body);
  return reply.status;
}

// Everything a customer leaves behind, and the strings that must never reach anyone else.
struct Shopper {
  std::string customer_id, email, name, marker, token;
  std::vector<std::string> order_ids;  // [0], [1] delivered
  std::string item_id, address_id, payment_method_id, return_id, review_id, coupon_id;
  std::vector<std::string> ticket_ids, request_ids;
  // The order updates customer-profile sent about the orders (read once they are there).
  std::vector<std::string> notification_ids;
  std::string registration;  // the RegisterCustomer request as sent (bytes)

  // What may not appear in an answer to anyone else.
  std::vector<std::string> Secrets(bool include_email = true) const {
    // Item ids ("1", "2") number the lines of an order: not secret on their own.
    std::vector<std::string> s = {customer_id, name,
                                  marker,      absl::StrCat("tok_", marker),
                                  address_id,  payment_method_id,
                                  return_id,   review_id,
                                  coupon_id};
    if (include_email) s.push_back(email);
    for (const auto& id : order_ids) s.push_back(id);
    for (const auto& id : ticket_ids) s.push_back(id);
    for (const auto& id : notification_ids) s.push_back(id);
    s.erase(std::remove(s.begin(), s.end(), std::string()), s.end());
    return s;
  }
  // Every id of the customer's, for the id-substitution attack.
  std::vector<std::string> Ids() const {
    std::vector<std::string> ids = {customer_id, item_id,   address_id, payment_method_id,
                                    return_id,   review_id, coupon_id};
    for (const auto& id : order_ids) ids.push_back(id);
    for (const auto& id : ticket_ids) ids.push_back(id);
    // The surveys of the two delivered orders (customer-profile names them after the order).
    for (size_t k = 0; k < 2 && k < order_ids.size(); ++k)
      ids.push_back("delivery-" + order_ids[k]);
    for (const auto& id : notification_ids) ids.push_back(id);
    ids.erase(std::remove(ids.begin(), ids.end(), std::string()), ids.end());
    return ids;
  }
};

class Shop {
 public:
  explicit Shop(testing::CrmSystem& system) : system_(system), gw_(system.gateway()) {}

  std::string Token(const std::string& role, const std::string& subject) const {
    return system_.Token(role, subject);
  }

  // A typed call through the gateway as the bearer of `token`.
  template <typename Req, typename Resp>
  grpc::Status As(const std::string& token, const std::string& path, const Req& req, Resp* resp) {
    std::string bytes;
    grpc::Status s =
        RawCall(gw_, path, req.SerializeAsString(), {{"authorization", "Bearer " + token}}, &bytes);
    if (s.ok() && resp != nullptr) resp->ParseFromString(bytes);
    return s;
  }
  template <typename Req, typename Resp>
  void Must(const std::string& token, const std::string& path, const Req& req, Resp* resp) {
    const grpc::Status s = As(token, path, req, resp);
    INFO(path << ": " << s.error_message());
    REQUIRE(s.ok());
  }

  // A call that creates something of `p`'s, as `token`: it must succeed, and its request id is kept
  // with the customer's (erasure must forget them too).
  template <typename Resp, typename Req>
  Resp Created(Shopper& p, const std::string& token, const std::string& path, const Req& req) {
    Resp resp;
    Must(token, path, req, &resp);
    p.request_ids.push_back(req.request_id());
    return resp;
  }

  Shopper Create(const std::string& who) {
    Shopper p;
    p.marker = absl::StrCat(who, "SECRET", absl::ToUnixMicros(absl::Now()) % 100000);
    p.email = absl::StrCat(who, "@example.com");
    p.name = absl::StrCat("Name", p.marker);
    const std::string admin = Token("admin", "ops-1"), storefront = Token("service", "storefront");
    v1::RegisterCustomerRequest reg;
    reg.set_request_id(absl::StrCat("reg-", who));
    reg.set_email(p.email);
    reg.set_name(p.name);
    p.registration = reg.SerializeAsString();
    v1::Customer customer;
    Must(admin, "/crm.v1.CustomerProfileService/RegisterCustomer", reg, &customer);
    p.customer_id = customer.customer_id();
    p.token = Token("customer", p.customer_id);
    p.request_ids.push_back(reg.request_id());

    v1::AddAddressRequest addr;
    addr.set_customer_id(p.customer_id);
    addr.set_request_id(absl::StrCat("addr-", who));
    addr.mutable_address()->set_recipient_name(p.name);
    addr.mutable_address()->set_city("Hangzhou");
    addr.mutable_address()->set_street(absl::StrCat(p.marker, " Road 1"));
    addr.mutable_address()->set_country_code("CN");
    p.address_id =
        Created<v1::Address>(p, p.token, "/crm.v1.CustomerProfileService/AddAddress", addr)
            .address_id();

    v1::AddPaymentMethodRequest pay;
    pay.set_customer_id(p.customer_id);
    pay.set_request_id(absl::StrCat("pay-", who));
    pay.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CARD);
    pay.mutable_payment_method()->set_token(absl::StrCat("tok_", p.marker));
    pay.mutable_payment_method()->set_last4("4242");
    p.payment_method_id = Created<v1::PaymentMethod>(
                              p, p.token, "/crm.v1.CustomerProfileService/AddPaymentMethod", pay)
                              .payment_method_id();

    v1::RecordBehaviorEventsRequest browse;
    browse.set_customer_id(p.customer_id);
    browse.set_request_id(absl::StrCat("browse-", who));
    for (int i = 0; i < 3; ++i) {
      auto* e = browse.add_events();
      e->set_type(v1::BEHAVIOR_EVENT_TYPE_SEARCH);
      e->set_query(absl::StrCat(p.marker, " private search ", i));
    }
    Created<v1::RecordBehaviorEventsResponse>(
        p, p.token, "/crm.v1.CustomerProfileService/RecordBehaviorEvents", browse);

    // Recommendations shown (two items, so the listing of them has a second page).
    v1::UpsertCatalogItemsRequest catalog;
    for (const char* sku : {"sku-kettle", "sku-teapot"}) {
      v1::CatalogItem* item = catalog.add_items();
      item->set_sku(sku);
      item->set_name(sku);
    }
    v1::UpsertCatalogItemsResponse upserted;
    Must(admin, "/crm.v1.RecommendationService/UpsertCatalogItems", catalog, &upserted);
    v1::RecordFeedbackRequest shown;
    shown.set_customer_id(p.customer_id);
    shown.set_request_id(absl::StrCat("shown-", who));
    shown.set_placement(v1::PLACEMENT_HOME);
    for (const char* sku : {"sku-kettle", "sku-teapot"}) {
      v1::FeedbackItem* impression = shown.add_impressions();
      impression->set_sku(sku);
      impression->set_model(v1::MODEL_ITEM_CF);
    }
    Created<v1::RecordFeedbackResponse>(p, storefront,
                                        "/crm.v1.RecommendationService/RecordFeedback", shown);

    // Consent to e-mail, so each delivered order offers a survey (two: the listing has two pages).
    v1::SetMarketingConsentRequest consent;
    consent.set_customer_id(p.customer_id);
    consent.set_channel(v1::CHANNEL_EMAIL);
    consent.set_granted(true);
    consent.set_source("settings");
    v1::MarketingConsent granted;
    Must(p.token, "/crm.v1.CustomerProfileService/SetMarketingConsent", consent, &granted);

    for (int k = 0; k < 3; ++k) {
      const v1::CreateOrderRequest create = testing::CashOnDeliveryOrderRequest(
          p.customer_id, absl::StrCat("order-", who, "-", k), "sku-tea", "grocery", 5800,
          absl::Now() - absl::Hours(1), absl::Hours(49));
      const v1::Order order =
          Created<v1::Order>(p, storefront, "/crm.v1.OrderTrackingService/CreateOrder", create);
      p.order_ids.push_back(order.order_id());
      if (k < 2) Deliver(order);
      if (k == 0) p.item_id = order.items(0).item_id();
    }

    for (int k = 0; k < 3; ++k) {
      v1::OpenTicketRequest open = testing::TicketRequest(
          p.customer_id, absl::StrCat("ticket-", who, "-", k), v1::TICKET_CHANNEL_WEB,
          v1::TICKET_CATEGORY_QUALITY, absl::StrCat(p.marker, " the tea tasted of soap"));
      open.set_order_id(p.order_ids[0]);
      open.set_subject(absl::StrCat(p.marker, " subject"));
      p.ticket_ids.push_back(
          Created<v1::Ticket>(p, p.token, "/crm.v1.ComplaintTicketService/OpenTicket", open)
              .ticket_id());
    }
    for (int k = 0; k < 3; ++k) {
      v1::GrantPointsRequest grant;
      grant.set_customer_id(p.customer_id);
      grant.set_points(10 + k);
      grant.set_source(v1::POINTS_SOURCE_PROMOTION);
      grant.set_source_id(absl::StrCat("promo-", k));
      grant.set_description("welcome");
      v1::LedgerEntry entry;
      Must(admin, "/crm.v1.LoyaltyService/GrantPoints", grant, &entry);
    }
    v1::IssueCouponRequest coupon;
    coupon.set_customer_id(p.customer_id);
    coupon.set_source_id("welcome");
    coupon.mutable_value()->set_amount_minor(500);
    coupon.mutable_value()->set_currency("CNY");
    v1::Coupon issued;
    Must(admin, "/crm.v1.LoyaltyService/IssueCoupon", coupon, &issued);
    p.coupon_id = issued.coupon_id();

    const v1::RequestReturnRequest ret = testing::OneItemReturnRequest(
        p.customer_id, p.order_ids[0], absl::StrCat("return-", who), p.item_id,
        absl::StrCat(p.marker, " not as described"), v1::FAULT_MERCHANT);
    p.return_id = Created<v1::Return>(p, p.token, "/crm.v1.OrderTrackingService/RequestReturn", ret)
                      .return_id();

    v1::SubmitReviewRequest review;
    review.set_customer_id(p.customer_id);
    review.set_order_id(p.order_ids[1]);
    review.set_item_id(Item(p, 1));
    review.set_rating(5);
    review.set_text(absl::StrCat(p.marker, " lovely"));
    review.set_request_id(absl::StrCat("review-", who));
    p.review_id =
        Created<v1::Review>(p, p.token, "/crm.v1.OrderTrackingService/SubmitReview", review)
            .review_id();
    // A second review, so the listing of reviews has a second page.
    review.set_order_id(p.order_ids[0]);
    review.set_item_id(p.item_id);
    review.set_request_id(absl::StrCat("review-0-", who));
    Created<v1::Review>(p, p.token, "/crm.v1.OrderTrackingService/SubmitReview", review);
    return p;
  }

  // The customer's data as an operator reads it, every part that an attack could change.
  std::string Snapshot(const Shopper& p) {
    const std::string admin = Token("admin", "ops-1");
    std::string out;
    auto add = [&](const std::string& path, const Message& req, Message* resp) {
      const grpc::Status s = As(admin, path, req, resp);
      INFO(path << ": " << s.error_message());
      REQUIRE(s.ok());
      absl::StrAppend(&out, path, "\n", resp->SerializeAsString(), "\n");
    };
    v1::ExportCustomerDataRequest exp;
    exp.set_customer_id(p.customer_id);
    v1::CustomerDataExport data;
    Must(admin, "/crm.v1.CustomerProfileService/ExportCustomerData", exp, &data);
    data.clear_export_time();  // the only part that changes by itself
    absl::StrAppend(&out, data.SerializeAsString(), "\n");
    // Each of the customer's lists, 100 to a page where the list pages.
    auto list = [&]<typename Req, typename Resp>(const std::string& path, Req req, Resp resp) {
      req.set_customer_id(p.customer_id);
      if constexpr (requires { req.set_page_size(100); }) req.set_page_size(100);
      add(path, req, &resp);
    };
    list("/crm.v1.OrderTrackingService/ListOrders", v1::ListOrdersRequest(),
         v1::ListOrdersResponse());
    list("/crm.v1.ComplaintTicketService/ListTickets", v1::ListTicketsRequest(),
         v1::ListTicketsResponse());
    list("/crm.v1.LoyaltyService/ListPointsHistory", v1::ListPointsHistoryRequest(),
         v1::ListPointsHistoryResponse());
    list("/crm.v1.LoyaltyService/ListCoupons", v1::ListCouponsRequest(), v1::ListCouponsResponse());
    list("/crm.v1.OrderTrackingService/ListReturns", v1::ListReturnsRequest(),
         v1::ListReturnsResponse());
    return out;
  }

  std::shared_ptr<grpc::Channel> gateway() const { return gw_; }

 private:
  std::string Item(const Shopper& p, int order) {
    v1::GetOrderRequest get;
    get.set_customer_id(p.customer_id);
    get.set_order_id(p.order_ids[order]);
    v1::Order o;
    Must(Token("admin", "ops-1"), "/crm.v1.OrderTrackingService/GetOrder", get, &o);
    return o.items(0).item_id();
  }

  // Ships and delivers a one-package order, as the warehouse and the carrier feed would (service
  // tokens).
  void Deliver(const v1::Order& order) {
    const std::string warehouse = Token("service", "warehouse");
    const auto process = testing::AboutOrder<v1::ProcessOrderRequest>(order);
    v1::Order out;
    Must(warehouse, "/crm.v1.OrderTrackingService/ProcessOrder", process, &out);
    for (v1::PackageStatus s :
         {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
          v1::PACKAGE_STATUS_HANDED_TO_CARRIER, v1::PACKAGE_STATUS_OUT_FOR_DELIVERY,
          v1::PACKAGE_STATUS_DELIVERED}) {
      const v1::AdvancePackageRequest a =
          testing::AdvanceRequest(order, out.packages(0).package_id(), s,
                                  testing::SfExpressWhenHanded(s, "SF" + order.order_id()));
      Must(warehouse, "/crm.v1.OrderTrackingService/AdvancePackage", a, &out);
    }
  }

  testing::CrmSystem& system_;
  std::shared_ptr<grpc::Channel> gw_;
};

bool IsIdField(const FieldDescriptor* f) {
  return f->type() == FieldDescriptor::TYPE_STRING && absl::EndsWith(f->name(), "_id") &&
         f->name() != "request_id";
}

// A plausible request: every field set to something valid-looking, so that calls get past
// validation to the lookups the attack is about. Ids are placeholders the attack replaces.
void Fill(Message* m, const std::string& customer_id, int depth = 0) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  if (d->full_name() == "google.protobuf.Timestamp") {
    static_cast<google::protobuf::Timestamp*>(m)->set_seconds(
        absl::ToUnixSeconds(absl::Now() + absl::Hours(30)));
    return;
  }
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) continue;
    if (f->is_repeated()) {
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 2)
        Fill(r->AddMessage(m, f), customer_id, depth + 1);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) r->AddString(m, f, "abuse");
      continue;
    }
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        if (f->name() == "customer_id")
          r->SetString(m, f, customer_id);
        else if (f->name() == "request_id")
          r->SetString(m, f, absl::StrCat("abuse-", absl::ToUnixNanos(absl::Now())));
        else if (f->name() == "currency")
          r->SetString(m, f, "CNY");
        else if (IsIdField(f))
          r->SetString(m, f, "placeholder");
        else if (f->name() != "page_token")
          r->SetString(m, f, "abuse");
        break;
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
        if (f->name() == "page_size") break;
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) r->SetInt32(m, f, 1);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT64) r->SetInt64(m, f, 1);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32) r->SetUInt32(m, f, 1);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64) r->SetUInt64(m, f, 1);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        if (f->enum_type()->value_count() > 1) r->SetEnum(m, f, f->enum_type()->value(1));
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 2) Fill(r->MutableMessage(m, f), customer_id, depth + 1);
        break;
      default: break;
    }
  }
}

// Every (message, field) holding an id, at any depth reached by Fill.
void IdFields(Message* m, std::vector<std::pair<Message*, const FieldDescriptor*>>* out) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_map()) continue;
      if (f->is_repeated()) {
        for (int k = 0; k < r->FieldSize(*m, f); ++k)
          IdFields(r->MutableRepeatedMessage(m, f, k), out);
      } else if (r->HasField(*m, f)) {
        IdFields(r->MutableMessage(m, f), out);
      }
    } else if (!f->is_repeated() && IsIdField(f) && f->name() != "customer_id") {
      out->emplace_back(m, f);
    }
  }
}

bool Allows(const Route& route, v1::Role role) {
  for (int r : route.policy.roles()) {
    if (r == role) return true;
  }
  return false;
}

// The listings a customer pages through, and the scope their page tokens are bound to
// (libs/api/paging.h).
struct Listing {
  const char* path;
  const char* scope_prefix;
  const char* next_field;
};
const Listing kListings[] = {
    {"/crm.v1.OrderTrackingService/ListOrders", "orders/", "next_page_token"},
    {"/crm.v1.ComplaintTicketService/ListTickets", "tickets/", "next_page_token"},
    {"/crm.v1.CustomerProfileService/ListBehaviorEvents", "behavior/", "next_page_token"},
    {"/crm.v1.LoyaltyService/ListPointsHistory", "ledger/", "next_page_token"},
    {"/crm.v1.LoyaltyService/ExplainMembership", "growth/", "next_page_token"},
    {"/crm.v1.RecommendationService/ListShownItems", "shown/", "next_page_token"},
    {"/crm.v1.OrderTrackingService/ListReviews", "reviews/", "next_page_token"},
    {"/crm.v1.ComplaintTicketService/SearchTickets", "ticket-search/", "next_page_token"},
    {"/crm.v1.SurveyService/ListSurveys", "surveys/", "next_page_token"},
    {"/crm.v1.NotificationService/ListNotifications", "notifications/", "next_page_token"},
};

TEST_CASE("abuse: every listing a customer pages through is among the page-token attacks") {
  std::set<std::string> attacked;
  for (const Listing& l : kListings) attacked.insert(l.path);
  for (const Route& route : RouteTable::Default().routes()) {
    const auto* request = route.request_prototype->GetDescriptor();
    const auto& roles = route.policy.roles();
    const bool customer_may_call =
        std::find(roles.begin(), roles.end(), v1::ROLE_CUSTOMER) != roles.end();
    if (route.customer_id_field == nullptr || !customer_may_call ||
        request->FindFieldByName("page_token") == nullptr) {
      continue;
    }
    INFO(route.path << " pages with a token a customer holds: add it to kListings");
    CHECK(attacked.count(route.path) == 1);
  }
}

struct Tally {
  std::map<std::string, int> calls;
  std::vector<std::string> leaks;

  // `request`: what the attacker sent; an error quoting the attacker's own input back leaks
  // nothing.
  void Check(const std::string& attack, const std::string& what, const grpc::Status& s,
             const std::string& response, const std::vector<std::string>& secrets,
             const std::string& request) {
    ++calls[attack];
    for (const std::string& secret : secrets) {
      if (absl::StrContains(request, secret)) continue;
      if (absl::StrContains(response, secret) || absl::StrContains(s.error_message(), secret)) {
        leaks.push_back(absl::StrCat(attack, ": ", what, " returned the victim's \"", secret,
                                     "\" (", s.error_code(), " ", s.error_message(), ")"));
      }
    }
  }
};

std::string Field(const Message& m, const char* name) {
  const FieldDescriptor* f = m.GetDescriptor()->FindFieldByName(name);
  return f == nullptr ? "" : m.GetReflection()->GetString(m, f);
}

TEST_CASE(
    "abuse: a customer never reads or changes another's data, and no one reaches a service port "
    "unsigned") {
  testing::TempDir dir;
  // The order updates go out by e-mail to a relay on loopback: a customer's own listing shows
  // notifications sent or scheduled (not failed ones), so whatever the time of day (quiet hours
  // or not) each shopper's has two pages.
  testing::SmtpSink relay;
  REQUIRE_OK(relay.Start());
  testing::CrmSystem::Options options;
  options.data_root = dir.path();
  options.access_log = true;
  options.extra["customer-profile"] = {absl::StrCat("--smtp_server=127.0.0.1:", relay.port()),
                                       "--smtp_from=crm@shop.example", "--smtp_tls=none"};
  testing::CrmSystem system(options);
  REQUIRE_OK(system.Start());
  Shop shop(system);
  Shopper victim = shop.Create("victim");
  Shopper attacker = shop.Create("attacker");
  // Loyalty and customer-profile learn of the deliveries through events: wait until both growth
  // entries, both delivery surveys and the order updates are there, so their listings have two
  // pages.
  for (Shopper* p : {&victim, &attacker}) {
    v1::ListNotificationsRequest notices;
    notices.set_customer_id(p->customer_id);
    v1::ListNotificationsResponse sent;
    REQUIRE(testing::WaitUntil(
        [&] {
          return shop.As(p->token, "/crm.v1.NotificationService/ListNotifications", notices, &sent)
                     .ok() &&
                 sent.notifications_size() >= 2;
        },
        absl::Seconds(30)));
    for (const v1::Notification& n : sent.notifications())
      p->notification_ids.push_back(n.notification_id());
    v1::ListSurveysRequest surveys;
    surveys.set_customer_id(p->customer_id);
    v1::ListSurveysResponse listed;
    REQUIRE(testing::WaitUntil(
        [&] {
          return shop.As(p->token, "/crm.v1.SurveyService/ListSurveys", surveys, &listed).ok() &&
                 listed.surveys_size() >= 2;
        },
        absl::Seconds(30)));
    v1::ExplainMembershipRequest req;
    req.set_customer_id(p->customer_id);
    v1::MembershipExplanation e;
    REQUIRE(testing::WaitUntil(
        [&] {
          return shop.As(p->token, "/crm.v1.LoyaltyService/ExplainMembership", req, &e).ok() &&
                 e.growth_entries_size() >= 2;
        },
        absl::Seconds(30)));
  }
  const std::string before = shop.Snapshot(victim);
  const std::vector<std::string> secrets = victim.Secrets();
  Tally tally;
  const auto& gw = shop.gateway();
  auto call = [&](const std::string& path, const Message& m, const std::string& token,
                  std::string* response) {
    return RawCall(gw, path, m.SerializeAsString(), {{"authorization", "Bearer " + token}},
                   response);
  };

  // 1. Ids: every customer-callable method, the victim's ids in every id-like field, one at a time.
  for (const Route& route : RouteTable::Default().routes()) {
    if (!Allows(route, v1::ROLE_CUSTOMER) || route.server_streaming) continue;
    std::unique_ptr<Message> base(route.request_prototype->New());
    Fill(base.get(), attacker.customer_id);
    if (route.customer_id_field != nullptr) {
      std::unique_ptr<Message> m(base->New());
      m->CopyFrom(*base);
      m->GetReflection()->SetString(m.get(), route.customer_id_field, victim.customer_id);
      std::string response;
      const grpc::Status s = call(route.path, *m, attacker.token, &response);
      CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
      tally.Check("other customer's id", route.path, s, response, secrets, m->SerializeAsString());
    }
    std::vector<std::pair<Message*, const FieldDescriptor*>> fields;
    IdFields(base.get(), &fields);
    for (size_t k = 0; k < fields.size(); ++k) {
      for (const std::string& id : victim.Ids()) {
        std::unique_ptr<Message> m(base->New());
        m->CopyFrom(*base);
        std::vector<std::pair<Message*, const FieldDescriptor*>> copy;
        IdFields(m.get(), &copy);
        copy[k].first->GetReflection()->SetString(copy[k].first, copy[k].second, id);
        std::string response;
        const grpc::Status s = call(route.path, *m, attacker.token, &response);
        tally.Check("victim's ids in id fields",
                    absl::StrCat(route.path, " ", copy[k].second->full_name()), s, response,
                    secrets, m->SerializeAsString());
      }
    }
  }

  // 2. Page tokens on every customer listing: forged (the old unsigned format), tampered, expired,
  //   resuming in the victim's key range under a valid signature, and the victim's own genuine
  //   token.
  const std::string agent = shop.Token("agent", "agent-7");
  for (const Listing& l : kListings) {
    INFO(l.path);
    const Route& route = *RouteTable::Default().Find(l.path);
    auto request = [&](const Shopper& who, const std::string& token) {
      std::unique_ptr<Message> m(route.request_prototype->New());
      m->GetReflection()->SetString(m.get(), route.customer_id_field, who.customer_id);
      m->GetReflection()->SetInt32(m.get(), m->GetDescriptor()->FindFieldByName("page_size"), 1);
      m->GetReflection()->SetString(m.get(), m->GetDescriptor()->FindFieldByName("page_token"),
                                    token);
      return m;
    };
    auto next_token = [&](const Shopper& who, const std::string& bearer) {
      std::string bytes;
      REQUIRE(call(l.path, *request(who, ""), bearer, &bytes).ok());
      std::unique_ptr<Message> resp(route.response_prototype->New());
      REQUIRE(resp->ParseFromString(bytes));
      const std::string t = Field(*resp, l.next_field);
      REQUIRE_FALSE(t.empty());
      return t;
    };
    const std::string own = next_token(attacker, attacker.token);
    const std::string victims = next_token(victim, agent);
    const std::string scope = absl::StrCat(l.scope_prefix, attacker.customer_id);
    const std::string victim_range = store::Key().Str(victim.customer_id).Build();
    // The old format: a 4-byte tag anyone could compute, then the store key to resume after.
    const auto tag = static_cast<uint32_t>(sharding::StableHash64(scope));
    std::string old(4, '\0');
    for (int i = 0; i < 4; ++i) old[i] = static_cast<char>((tag >> (8 * i)) & 0xFF);
    std::string tampered = own;
    tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
    auto resume = api::DecodePageToken(scope, own);
    REQUIRE(resume.ok());
    const std::vector<std::pair<std::string, std::string>> attempts = {
        {"forged unsigned", absl::WebSafeBase64Escape(old + victim_range)},
        {"tampered", tampered},
        {"expired", api::EncodePageToken(scope, *resume, absl::Now() - absl::Hours(2))},
        {"signed, resuming in the victim's range", api::EncodePageToken(scope, victim_range)},
        {"the victim's own token", victims},
    };
    for (const auto& [kind, token] : attempts) {
      INFO(kind);
      std::string response;
      const grpc::Status s = call(l.path, *request(attacker, token), attacker.token, &response);
      CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
      CHECK(absl::StartsWith(s.error_message(), "page_token"));
      tally.Check(absl::StrCat("page token: ", kind), l.path, s, response, secrets, token);
    }
    // The attacker's own token still pages on.
    CHECK(call(l.path, *request(attacker, own), attacker.token, nullptr).ok());
  }

  // 3. Request ids: the victim's replayed on every retryable customer method, and the victim's
  //   registration replayed byte for byte (the e-mail is the attacker's own input there, so only
  //   ids and texts count).
  for (const Route& route : RouteTable::Default().routes()) {
    if (!Allows(route, v1::ROLE_CUSTOMER) || route.server_streaming) continue;
    const FieldDescriptor* request_id =
        route.request_prototype->GetDescriptor()->FindFieldByName("request_id");
    if (request_id == nullptr) continue;
    for (const std::string& id : victim.request_ids) {
      std::unique_ptr<Message> m(route.request_prototype->New());
      Fill(m.get(), attacker.customer_id);
      m->GetReflection()->SetString(m.get(), request_id, id);
      std::string response;
      const grpc::Status s = call(route.path, *m, attacker.token, &response);
      tally.Check("replayed request ids", route.path, s, response, secrets, m->SerializeAsString());
    }
  }
  {
    std::string response;
    const grpc::Status s =
        RawCall(gw, "/crm.v1.CustomerProfileService/RegisterCustomer", victim.registration,
                {{"authorization", "Bearer " + attacker.token}}, &response);
    CHECK(s.error_code() == grpc::StatusCode::ALREADY_EXISTS);
    tally.Check("replayed request ids", "RegisterCustomer, the victim's request as sent", s,
                response, victim.Secrets(/*include_email=*/false), "");
  }

  // 4. Identity claimed in the body: as a customer (author AGENT, an agent id) and as an agent
  //   (another agent's id) on every method whose request names an agent.
  for (const Route& route : RouteTable::Default().routes()) {
    const auto* d = route.request_prototype->GetDescriptor();
    const FieldDescriptor* agent_id = d->FindFieldByName("agent_id");
    const FieldDescriptor* author = d->FindFieldByName("author");
    if (agent_id == nullptr && author == nullptr) continue;
    for (const auto& [role, bearer] :
         {std::pair<v1::Role, std::string>{v1::ROLE_CUSTOMER, attacker.token},
          {v1::ROLE_AGENT, agent}}) {
      if (!Allows(route, role)) continue;
      std::unique_ptr<Message> m(route.request_prototype->New());
      Fill(m.get(), attacker.customer_id);
      if (route.customer_id_field != nullptr)
        m->GetReflection()->SetString(m.get(), route.customer_id_field, attacker.customer_id);
      for (const FieldDescriptor* f : {d->FindFieldByName("ticket_id")}) {
        if (f != nullptr) m->GetReflection()->SetString(m.get(), f, attacker.ticket_ids[0]);
      }
      if (agent_id != nullptr) m->GetReflection()->SetString(m.get(), agent_id, "agent-8");
      if (author != nullptr && role == v1::ROLE_CUSTOMER) {
        m->GetReflection()->SetEnumValue(m.get(), author, v1::MESSAGE_AUTHOR_AGENT);
      }
      std::string response;
      const grpc::Status s = call(route.path, *m, bearer, &response);
      INFO(route.path << " as " << v1::Role_Name(role) << ": " << s.error_message());
      CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
      tally.Check("identity claimed in the body", route.path, s, response, secrets,
                  m->SerializeAsString());
    }
  }

  // 5. Service ports: every method of every service, by every caller that is not the system.
  const std::vector<std::string> services = {"customer-profile", "order-tracking", "loyalty",
                                             "complaint-ticket", "recommendation"};
  std::vector<const Route*> all;
  for (const Route& r : RouteTable::Default().routes()) {
    if (!r.local && !r.server_streaming) all.push_back(&r);
  }
  auth::Caller gateway_admin = testing::ViaGateway(v1::ROLE_ADMIN, "ops-1");
  auth::Caller forged_internal = testing::InternalCaller("test-client");
  const std::string forged = [&] {
    // An assertion signed with a key that is not the deployment's.
    std::string a = testing::AssertionOf(forged_internal);
    char& c = a[a.size() - 10];  // inside the MAC (the last character may only carry padding bits)
    c = c == 'A' ? 'B' : 'A';
    return a;
  }();
  for (const std::string& service : services) {
    const std::string address = absl::StrCat("127.0.0.1:", system.port(service));
    const auto plaintext = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    const auto with_cert = grpc::CreateChannel(address, system.ServiceCredentials("test-client"));
    const auto as_gateway = grpc::CreateChannel(address, system.ServiceCredentials("gateway"));
    for (const Route* r : all) {
      std::unique_ptr<Message> m(r->request_prototype->New());
      Fill(m.get(), victim.customer_id);
      const std::string bytes = m->SerializeAsString();
      std::string response;
      grpc::Status s = RawCall(plaintext, r->path, bytes, {}, &response);
      CHECK(s.error_code() == grpc::StatusCode::UNAVAILABLE);  // no TLS handshake, no call
      tally.Check("service port: no client certificate", r->path, s, response, secrets, bytes);
      s = RawCall(with_cert, r->path, bytes, {}, &response);
      CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
      tally.Check("service port: no caller assertion", r->path, s, response, secrets, bytes);
      s = RawCall(with_cert, r->path, bytes, {{auth::kCallerMetadata, forged}}, &response);
      CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
      tally.Check("service port: forged assertion", r->path, s, response, secrets, bytes);
      s = RawCall(with_cert, r->path, bytes,
                  {{auth::kCallerMetadata, testing::AssertionOf(gateway_admin)}}, &response);
      CHECK(s.error_code() ==
            grpc::StatusCode::UNAUTHENTICATED);  // speaks for an end user, but is not the gateway
      tally.Check("service port: end-user assertion from a non-gateway peer", r->path, s, response,
                  secrets, bytes);
      if (!Allows(*r, v1::ROLE_CUSTOMER)) {
        s = RawCall(as_gateway, r->path, bytes,
                    {{auth::kCallerMetadata,
                      testing::AssertionOf(testing::CustomerCaller(attacker.customer_id))}},
                    &response);
        INFO(r->path << " at " << service << ": " << s.error_message());
        CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
        tally.Check("service port: customer calling a method customers may not", r->path, s,
                    response, secrets, bytes);
      }
    }
  }

  CHECK(shop.Snapshot(victim) == before);

  // 6. A token pasted into a URL path: refused, and not written to the access log.
  const std::string pasted = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMtMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
  CHECK(RawCall(gw, absl::StrCat("/crm.v1.Nope/", pasted), "",
                {{"authorization", "Bearer " + attacker.token}}, nullptr)
            .error_code() == grpc::StatusCode::UNIMPLEMENTED);
  system.Stop("gateway");  // flushes its output
  CHECK_FALSE(absl::StrContains(system.Output("gateway"), "eyJhbGciOiJIUzI1NiJ9"));
  CHECK(absl::StrContains(system.Output("gateway"), "\"method\":\"unknown\""));
  // Admin actions leave an audit line naming who did them, at the service that carried them out.
  CHECK(absl::StrContains(system.Output("loyalty"), "\"message\":\"admin call\""));
  CHECK(absl::StrContains(system.Output("loyalty"), "\"actor\":\"admin:ops-1\""));

  for (const std::string& leak : tally.leaks) FAIL_CHECK(leak);
  CHECK(tally.leaks.empty());
  int total = 0;
  std::printf(
      "abuse suite: attack -> calls (nothing of the victim's came back, the victim's data "
      "unchanged)\n");
  for (const auto& [attack, n] : tally.calls) {
    std::printf("  %-62s %6d\n", attack.c_str(), n);
    total += n;
  }
  std::printf("  %-62s %6d\n", "total", total);
  CHECK(total > 1000);
}

}  // namespace
}  // namespace crm
