// The six real binaries as one system: a scripted history for a few hundred customers driven
// through the gateway (orders delivered on time and late, a failed delivery, refunds, reviews
// including 2-star ones, complaints resolved with points, redemptions, an erasure), then every
// customer's 360° view, points, tier, tickets and the KPI gauges checked against values this test
// computes from the script alone. The chaos variant SIGKILLs every process (the gateway too) at
// least once while the script runs and restarts it; the end state must be the same: nothing lost,
// nothing counted twice.
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/customer_view.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/validate.h"
#include "tests/support/crm_system.h"
#include "tests/support/require_ok.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using testing::CrmSystem;
constexpr int kCustomers = 240;
constexpr int kDrivers = 4;
constexpr int64_t kCompensationPoints = 100;
constexpr int64_t kRedeemedPoints = 50;

// What the script does to one customer.
struct Plan {
  std::string email;
  int orders = 1;
  int64_t price_minor = 0;  // every order: one item at this price, no shipping fee
  bool late_first = false;  // the first order arrives after its window
  bool fail_first = false;  // the first order's delivery fails once, then succeeds on time
  bool refund_first = false;
  int review_rating = 0;   // of the first order's item; 0 = no review
  bool complaint = false;  // opened by the customer, resolved with points, rated 4
  bool redeem = false;
  bool erase = false;
};

// What no log line may carry (checked after the calm scenario): the card number a customer tries to
// store.
constexpr char kCardNumber[] = "4111 1111 1111 1111";
std::string PaymentToken(const Plan& p) { return "tok_" + p.email.substr(0, p.email.find('@')); }

std::vector<Plan> Script() {
  std::vector<Plan> plans(kCustomers);
  for (int i = 0; i < kCustomers; ++i) {
    Plan& p = plans[i];
    const int kind = i % 8;
    p.email = absl::StrCat("shopper", i, "@example.com");
    p.orders = 1 + (i / 8) % 3;
    p.price_minor = 100'00 * (1 + i % 5);
    p.late_first = kind == 1;
    p.fail_first = kind == 2;
    p.refund_first = kind == 3 && p.orders >= 2;
    p.review_rating = kind == 4 ? 2 : kind == 5 ? 5 : 0;
    p.complaint = kind == 6;
    p.redeem = kind == 7;
    p.erase = i % 60 == 59;
  }
  return plans;
}

// What the script implies for one customer, computed without asking the system.
struct Expected {
  int orders = 0;
  int64_t spend_minor = 0;  // orders minus refunds
  int64_t points = 0;
  int64_t growth = 0;
  v1::Tier tier = v1::TIER_REGISTERED;
  int open_tickets = 0;
  int closed_tickets = 0;
  int late = 0, failures = 0, returns = 0, low_reviews = 0;
  v1::BuyerLevel level = v1::BUYER_LEVEL_NEWBIE;
};

Expected Expect(const Plan& p, const v1::LoyaltyRules& rules) {
  Expected e;
  const int64_t rate = rules.points().default_rate_hundredths();
  const int64_t growth_rate = rules.growth().default_rate_hundredths();
  // Every customer here stays below silver (checked below), so the multiplier is the base tiers'
  // 100%.
  const int64_t order_points = p.price_minor * rate * 100 / 1000000;
  const int64_t order_growth = p.price_minor * growth_rate / 10000;
  e.orders = p.orders;
  e.spend_minor = p.orders * p.price_minor - (p.refund_first ? p.price_minor : 0);
  e.points = p.orders * order_points - (p.refund_first ? order_points : 0);
  e.growth = p.orders * order_growth - (p.refund_first ? order_growth : 0);
  if (p.review_rating > 0) {
    e.points += rules.points().per_review();
    e.growth += rules.growth().per_review();
  }
  if (p.complaint) e.points += kCompensationPoints;
  if (p.redeem) e.points -= kRedeemedPoints;
  for (const auto& t : rules.tiers()) {
    if (e.growth >= t.min_growth()) e.tier = std::max(e.tier, t.tier());
  }
  e.open_tickets = (p.late_first ? 1 : 0) + (p.fail_first ? 1 : 0) +
                   (p.review_rating > 0 && p.review_rating <= 3 ? 1 : 0);
  e.closed_tickets = p.complaint ? 1 : 0;
  e.late = p.late_first;
  e.failures = p.fail_first;
  e.returns = p.refund_first;
  e.low_reviews = p.review_rating > 0 && p.review_rating <= 2;
  // The default buyer-level rules: junior from 2 orders and 200 CNY in 12 months.
  if (p.orders >= 2 && e.spend_minor >= 200'00) e.level = v1::BUYER_LEVEL_JUNIOR;
  return e;
}

bool Ambiguous(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::CANCELLED || c == grpc::StatusCode::UNKNOWN ||
         c == grpc::StatusCode::ABORTED || c == grpc::StatusCode::INTERNAL;
}

// Calls through the gateway as a client that must not lose a step: an answer that leaves it unknown
// whether the call took effect (the gateway or a service died under it) is retried with the same
// request id until the system answers. A retry that finds the step already done
// (FAILED_PRECONDITION or ALREADY_EXISTS after an unknown outcome) counts as done.
class Client {
 public:
  // `customer_token` mints a customer's own token, for the steps only the customer may take (the
  // survey).
  Client(std::shared_ptr<grpc::Channel> channel, std::string token,
         std::function<std::string(const std::string&)> customer_token = nullptr)
      : token_(std::move(token)),
        customer_token_(std::move(customer_token)),
        profiles_(v1::CustomerProfileService::NewStub(channel)),
        orders_(v1::OrderTrackingService::NewStub(channel)),
        loyalty_(v1::LoyaltyService::NewStub(channel)),
        tickets_(v1::ComplaintTicketService::NewStub(channel)),
        views_(v1::CustomerViewService::NewStub(channel)) {}

  template <typename Stub, typename Req, typename Resp>
  grpc::Status Do(Stub* stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp) {
    return DoWith(token_, stub, method, req, resp);
  }
  // As the customer `customer_id` (a token of their own).
  template <typename Stub, typename Req, typename Resp>
  grpc::Status DoAsCustomer(const std::string& customer_id, Stub* stub,
                            grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                            const Req& req, Resp* resp) {
    if (customer_token_ == nullptr)
      return grpc::Status(grpc::StatusCode::INTERNAL, "no customer tokens");
    return DoWith(customer_token_(customer_id), stub, method, req, resp);
  }

  template <typename Stub, typename Req, typename Resp>
  grpc::Status DoWith(const std::string& token, Stub* stub,
                      grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                      const Req& req, Resp* resp) {
    bool unknown = false;
    const absl::Time give_up = absl::Now() + absl::Seconds(90);
    for (absl::Duration backoff = absl::Milliseconds(20);;
         backoff = std::min(backoff * 2, absl::Milliseconds(500))) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", "Bearer " + token);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      // A restarted gateway is waited for, not failed at: with gRPC's synchronous API only a call
      // in progress drives a reconnection, so a call that failed fast (channel in backoff) while
      // the retry loop sleeps leaves the new connection's handshake unread until the next call.
      ctx.set_wait_for_ready(true);
      grpc::Status s = (stub->*method)(&ctx, req, resp);
      if (s.ok()) return s;
      if (unknown && (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                      s.error_code() == grpc::StatusCode::ALREADY_EXISTS)) {
        return grpc::Status::OK;
      }
      if (!Ambiguous(s.error_code()) || absl::Now() > give_up) return s;
      unknown = true;
      retries_++;
      absl::SleepFor(backoff);
    }
  }

  v1::CustomerProfileService::Stub* profiles() { return profiles_.get(); }
  v1::OrderTrackingService::Stub* orders() { return orders_.get(); }
  v1::LoyaltyService::Stub* loyalty() { return loyalty_.get(); }
  v1::ComplaintTicketService::Stub* tickets() { return tickets_.get(); }
  v1::CustomerViewService::Stub* views() { return views_.get(); }
  int retries() const { return retries_.load(); }

 private:
  std::string token_;
  std::function<std::string(const std::string&)> customer_token_;
  std::unique_ptr<v1::CustomerProfileService::Stub> profiles_;
  std::unique_ptr<v1::OrderTrackingService::Stub> orders_;
  std::unique_ptr<v1::LoyaltyService::Stub> loyalty_;
  std::unique_ptr<v1::ComplaintTicketService::Stub> tickets_;
  std::unique_ptr<v1::CustomerViewService::Stub> views_;
  std::atomic<int> retries_{0};
};

#define STEP(call)                                                    \
  do {                                                                \
    const grpc::Status step_status = (call);                          \
    if (!step_status.ok()) {                                          \
      return absl::StrCat(#call, ": ", step_status.error_code(), " ", \
                          step_status.error_message());               \
    }                                                                 \
  } while (0)

using OS = v1::OrderTrackingService::Stub;

std::string Deliver(Client& c, const v1::Order& order, bool fail_once) {
  v1::Order out;
  STEP(c.Do(c.orders(), &OS::ProcessOrder, testing::AboutOrder<v1::ProcessOrderRequest>(order),
            &out));
  STEP(c.Do(c.orders(), &OS::GetOrder, testing::AboutOrder<v1::GetOrderRequest>(order), &out));
  if (out.packages_size() != 1) return "expected one package";
  const std::string package = out.packages(0).package_id();
  std::vector<v1::PackageStatus> path = {v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED,
                                         v1::PACKAGE_STATUS_HANDED_TO_CARRIER,
                                         v1::PACKAGE_STATUS_OUT_FOR_DELIVERY};
  if (fail_once) {
    path.push_back(v1::PACKAGE_STATUS_DELIVERY_FAILED);
    path.push_back(v1::PACKAGE_STATUS_OUT_FOR_DELIVERY);
  }
  path.push_back(v1::PACKAGE_STATUS_DELIVERED);
  for (v1::PackageStatus s : path) {
    v1::AdvancePackageRequest a = testing::AdvanceRequest(
        order, package, s, testing::SfExpressWhenHanded(s, "SF" + order.order_id()));
    if (s == v1::PACKAGE_STATUS_DELIVERY_FAILED) a.set_failure_reason("nobody home");
    STEP(c.Do(c.orders(), &OS::AdvancePackage, a, &out));
  }
  return "";
}

// Runs one customer's part of the script; returns "" or what failed. `customer_id` receives the id.
std::string RunPlan(Client& c, const Plan& p, std::string* customer_id) {
  using PS = v1::CustomerProfileService::Stub;
  using TS = v1::ComplaintTicketService::Stub;
  using LS = v1::LoyaltyService::Stub;
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("reg-" + p.email);
  reg.set_email(p.email);
  v1::Customer customer;
  STEP(c.Do(c.profiles(), &PS::RegisterCustomer, reg, &customer));
  const std::string cid = customer.customer_id();
  *customer_id = cid;
  v1::AddAddressRequest address;
  address.set_customer_id(cid);
  address.set_request_id("home");
  address.mutable_address()->set_recipient_name("Li Lei");
  address.mutable_address()->set_city("Beijing");
  address.mutable_address()->set_street("1 Chang'an Avenue");
  address.mutable_address()->set_country_code("CN");
  v1::Address added;
  STEP(c.Do(c.profiles(), &PS::AddAddress, address, &added));
  // A card kept as the payment provider's token; a card number itself is refused (and must reach no
  // log).
  v1::AddPaymentMethodRequest card;
  card.set_customer_id(cid);
  card.set_request_id("card");
  card.mutable_payment_method()->set_type(v1::PAYMENT_METHOD_TYPE_CARD);
  card.mutable_payment_method()->set_token(PaymentToken(p));
  card.mutable_payment_method()->set_last4("1111");
  v1::PaymentMethod method;
  STEP(c.Do(c.profiles(), &PS::AddPaymentMethod, card, &method));
  card.set_request_id("card-number");
  card.mutable_payment_method()->set_token(kCardNumber);
  if (c.Do(c.profiles(), &PS::AddPaymentMethod, card, &method).error_code() !=
      grpc::StatusCode::INVALID_ARGUMENT) {
    return "a card number was accepted as a payment token";
  }

  std::vector<v1::Order> orders;
  for (int k = 0; k < p.orders; ++k) {
    v1::CreateOrderRequest create;
    create.set_customer_id(cid);
    create.set_request_id(absl::StrCat("order-", k));
    testing::AddLine(create, absl::StrCat("sku-", k % 7), "home", 1, p.price_minor)
        ->set_name("thing");
    create.set_payment_method(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
    const absl::Time now = absl::Now();
    // A late order's window closed two days ago; everyone else's is open until the day after
    // tomorrow.
    const bool late = k == 0 && p.late_first;
    api::SetTimestamp(late ? now - absl::Hours(72) : now - absl::Hours(1),
                      create.mutable_delivery_window()->mutable_start_time());
    api::SetTimestamp(late ? now - absl::Hours(48) : now + absl::Hours(48),
                      create.mutable_delivery_window()->mutable_end_time());
    v1::Order order;
    STEP(c.Do(c.orders(), &OS::CreateOrder, create, &order));
    if (std::string e = Deliver(c, order, k == 0 && p.fail_first); !e.empty()) return e;
    orders.push_back(order);
  }
  if (p.refund_first) {
    const v1::RequestReturnRequest ret = testing::OneItemReturnRequest(
        cid, orders[0].order_id(), "return-1", "1", "changed my mind", v1::FAULT_CUSTOMER);
    v1::Return r;
    STEP(c.Do(c.orders(), &OS::RequestReturn, ret, &r));
    for (v1::ReturnStatus s : {v1::RETURN_STATUS_PICKUP_SCHEDULED, v1::RETURN_STATUS_RECEIVED,
                               v1::RETURN_STATUS_REFUNDED}) {
      v1::AdvanceReturnRequest adv;
      adv.set_customer_id(cid);
      adv.set_return_id(r.return_id());
      adv.set_status(s);
      if (s == v1::RETURN_STATUS_PICKUP_SCHEDULED) {
        api::SetTimestamp(absl::Now() + absl::Hours(24), adv.mutable_pickup_start_time());
        api::SetTimestamp(absl::Now() + absl::Hours(27), adv.mutable_pickup_end_time());
      }
      v1::Return out;
      STEP(c.Do(c.orders(), &OS::AdvanceReturn, adv, &out));
    }
  }
  if (p.review_rating > 0) {
    v1::SubmitReviewRequest review;
    review.set_customer_id(cid);
    review.set_order_id(orders[0].order_id());
    review.set_item_id("1");
    review.set_rating(p.review_rating);
    review.set_text(p.review_rating <= 2 ? "broke after a day" : "love it");
    review.set_request_id("review-1");
    v1::Review out;
    STEP(c.Do(c.orders(), &OS::SubmitReview, review, &out));
  }
  if (p.complaint) {
    v1::OpenTicketRequest open = testing::TicketRequest(cid, "complaint-1", v1::TICKET_CHANNEL_WEB,
                                                        v1::TICKET_CATEGORY_SERVICE_ATTITUDE,
                                                        "The hotline agent hung up on me.");
    open.set_subject("rude hotline");
    v1::Ticket ticket;
    STEP(c.Do(c.tickets(), &TS::OpenTicket, open, &ticket));
    v1::ResolveTicketRequest resolve;
    resolve.set_customer_id(cid);
    resolve.set_ticket_id(ticket.ticket_id());
    resolve.set_agent_id("agent-1");
    resolve.set_summary("Apologised; points as a gesture.");
    auto* points = resolve.add_compensations();
    points->set_kind(v1::COMPENSATION_KIND_POINTS);
    points->set_points(kCompensationPoints);
    v1::Ticket resolved;
    STEP(c.Do(c.tickets(), &TS::ResolveTicket, resolve, &resolved));
    // Satisfaction is asked once the compensation is confirmed (loyalty may have been down
    // meanwhile).
    v1::GetTicketRequest get;
    get.set_customer_id(cid);
    get.set_ticket_id(ticket.ticket_id());
    grpc::Status read_status;
    const bool confirmed = testing::WaitUntil(
        [&] {
          read_status = c.Do(c.tickets(), &TS::GetTicket, get, &resolved);
          return !read_status.ok() || resolved.status() == v1::TICKET_STATUS_RESOLVED ||
                 resolved.status() == v1::TICKET_STATUS_CLOSED;
        },
        absl::Seconds(60));
    STEP(read_status);
    if (!confirmed) return "the complaint's compensation was never confirmed";
    v1::SubmitSatisfactionRequest csat;
    csat.set_customer_id(cid);
    csat.set_ticket_id(ticket.ticket_id());
    csat.set_csat(4);
    v1::Ticket closed;
    // Only the ticket's own customer rates it.
    STEP(c.DoAsCustomer(cid, c.tickets(), &TS::SubmitSatisfaction, csat, &closed));
  }
  if (p.redeem) {
    // Points arrive with the delivery event: wait for them before spending.
    v1::GetMembershipRequest get;
    get.set_customer_id(cid);
    v1::Membership m;
    grpc::Status read_status;
    testing::WaitUntil(
        [&] {
          read_status = c.Do(c.loyalty(), &LS::GetMembership, get, &m);
          return !read_status.ok() || m.points_balance() >= kRedeemedPoints;
        },
        absl::Seconds(60));
    STEP(read_status);
    v1::RedeemPointsRequest redeem;
    redeem.set_customer_id(cid);
    redeem.set_points(kRedeemedPoints);
    redeem.set_request_id("redeem-1");
    redeem.set_description("coupon for points");
    v1::LedgerEntry entry;
    STEP(c.Do(c.loyalty(), &LS::RedeemPoints, redeem, &entry));
  }
  if (p.erase) {
    v1::EraseCustomerRequest erase;
    erase.set_customer_id(cid);
    erase.set_request_id("erase-1");
    erase.set_reason("customer request");
    v1::EraseCustomerResponse erased;
    STEP(c.Do(c.profiles(), &PS::EraseCustomer, erase, &erased));
  }
  return "";
}

// Compares one customer's state with the expectation; "" when equal, else the differences.
std::string Compare(Client& c, const std::string& cid, const Plan& p, const Expected& e) {
  v1::GetCustomerViewRequest req;
  req.set_customer_id(cid);
  req.set_recommendation_count(3);
  v1::CustomerView view;
  const grpc::Status s =
      c.Do(c.views(), &v1::CustomerViewService::Stub::GetCustomerView, req, &view);
  if (p.erase) {
    return s.error_code() == grpc::StatusCode::NOT_FOUND
               ? ""
               : absl::StrCat("erased but view answered ", s.error_code());
  }
  if (!s.ok()) return absl::StrCat("view: ", s.error_code(), " ", s.error_message());
  std::string diff;
  auto check = [&](const char* what, int64_t got, int64_t want) {
    if (got != want) absl::StrAppend(&diff, " ", what, "=", got, " (want ", want, ")");
  };
  for (const auto& u : view.unavailable())
    absl::StrAppend(&diff, " unavailable:", u.section(), ":", u.code());
  check("profile.email_matches", view.profile().email() == p.email, 1);
  check("purchases.orders", view.purchases().orders(), e.orders);
  check("purchases.spend", view.purchases().spend().amount_minor(), e.spend_minor);
  check("purchases.open_deliveries", view.purchases().open_deliveries(), 0);
  check("membership.points", view.membership().points_balance(), e.points);
  check("membership.growth", view.membership().growth_value(), e.growth);
  check("membership.tier", view.membership().tier(), e.tier);
  check("complaints.open", view.complaints().open_tickets_size(), e.open_tickets);
  check("complaints.closed", view.complaints().recent_closed_tickets_size(), e.closed_tickets);
  for (const auto& t : view.complaints().recent_closed_tickets()) {
    // The customer's own complaint: resolved with its points confirmed, rated, closed.
    check("closed_ticket.status", t.status(), v1::TICKET_STATUS_CLOSED);
    check("closed_ticket.csat", t.satisfaction().csat(), 4);
    check("closed_ticket.points_confirmed",
          t.resolution().compensations_size() == 1 &&
              t.resolution().compensations(0).status() == v1::COMPENSATION_STATUS_CONFIRMED,
          1);
  }
  for (const auto& t : view.complaints().open_tickets()) {
    // Opened by the system from a late or failed delivery or a low review, and still being worked.
    check("open_ticket.automatic", t.automatic(), 1);
  }
  const v1::PurchaseFacts& f = view.insights().facts();
  check("insights.orders", f.orders(), e.orders);
  check("insights.net_spend", f.net_spend().amount_minor(), e.spend_minor);
  check("insights.late", f.deliveries_late(), e.late);
  check("insights.failures", f.delivery_failures(), e.failures);
  check("insights.returns", f.returns(), e.returns);
  check("insights.low_reviews", f.low_reviews(), e.low_reviews);
  check("insights.complaints", f.complaints(), e.open_tickets + e.closed_tickets);
  check("insights.open_complaints", f.open_complaints(), e.open_tickets);
  check("insights.csat_x10", static_cast<int64_t>(f.csat_average() * 10), p.complaint ? 40 : 0);
  check("insights.buyer_level", view.insights().buyer_level(), e.level);
  check("insights.at_risk", view.insights().churn().at_risk(), 0);
  return diff;
}

struct Kpis {
  double repeat_purchase = 0, on_time = 0, csat = 0, sla = 0;
};

Kpis ExpectKpis(const std::vector<Plan>& plans) {
  int buyers = 0, repeat = 0, delivered = 0, late = 0;
  for (const Plan& p : plans) {
    if (p.erase) continue;
    ++buyers;
    repeat += p.orders >= 2;
    delivered += p.orders;
    late += p.late_first;
  }
  Kpis k;
  k.repeat_purchase = static_cast<double>(repeat) / buyers;
  k.on_time = static_cast<double>(delivered - late) / delivered;
  k.csat = 4;
  k.sla = 1;
  return k;
}

// Drives the script with kDrivers clients in parallel; `between` runs on the side (chaos) until
// done.
void RunScenario(CrmSystem& system,
                 const std::function<void(const std::atomic<bool>& done)>& between) {
  const std::vector<Plan> plans = Script();
  Client admin(system.gateway(), system.Token("admin", "ops-1"));
  {
    v1::RegisterAgentRequest agent = testing::AgentRequest("agent-1", 3, 1000, "Wang Fang");
    for (auto cat :
         {v1::TICKET_CATEGORY_DELIVERY, v1::TICKET_CATEGORY_QUALITY, v1::TICKET_CATEGORY_REFUND,
          v1::TICKET_CATEGORY_SERVICE_ATTITUDE, v1::TICKET_CATEGORY_OTHER}) {
      agent.mutable_agent()->add_categories(cat);
    }
    v1::Agent out;
    REQUIRE(admin.Do(admin.tickets(), &v1::ComplaintTicketService::Stub::RegisterAgent, agent, &out)
                .ok());
  }
  v1::LoyaltyRules rules;
  REQUIRE(
      admin.Do(admin.loyalty(), &v1::LoyaltyService::Stub::GetRules, v1::GetRulesRequest(), &rules)
          .ok());

  std::vector<std::string> ids(plans.size());
  std::vector<std::string> failures(plans.size());
  std::atomic<bool> done{false};
  std::thread side([&] { between(done); });
  std::vector<std::thread> drivers;
  std::vector<std::unique_ptr<Client>> clients;
  for (int d = 0; d < kDrivers; ++d)
    clients.push_back(std::make_unique<Client>(
        system.gateway(), system.Token("admin", "ops-1"),
        [&system](const std::string& cid) { return system.Token("customer", cid); }));
  for (int d = 0; d < kDrivers; ++d) {
    drivers.emplace_back([&, d] {
      for (size_t i = d; i < plans.size(); i += kDrivers)
        failures[i] = RunPlan(*clients[d], plans[i], &ids[i]);
    });
  }
  for (auto& t : drivers) t.join();
  done = true;
  side.join();
  int retries = 0;
  for (const auto& c : clients) retries += c->retries();
  WARN("client retries after an unknown outcome: " << retries);
  for (size_t i = 0; i < plans.size(); ++i) {
    INFO("customer " << i << " " << plans[i].email);
    REQUIRE(failures[i] == "");
  }

  // Events settle asynchronously: compare until everything matches or a minute has passed.
  Client agent(system.gateway(), system.Token("agent", "agent-1"));
  std::vector<std::string> diffs(plans.size());
  testing::WaitUntil(
      [&] {
        int wrong = 0;
        for (size_t i = 0; i < plans.size(); ++i) {
          diffs[i] = Compare(agent, ids[i], plans[i], Expect(plans[i], rules));
          wrong += !diffs[i].empty();
        }
        return wrong == 0;
      },
      absl::Seconds(90));
  for (size_t i = 0; i < plans.size(); ++i) {
    INFO("customer " << i << " " << plans[i].email << " " << ids[i]);
    CHECK(diffs[i] == "");
  }
  // Everyone stayed below silver, so the 100% multiplier in Expect holds.
  for (const Plan& p : plans) CHECK(Expect(p, rules).tier < v1::TIER_SILVER);

  // KPIs: recomputed now, then read from each process's /metrics as Prometheus would.
  v1::RefreshInsightsResponse refreshed;
  REQUIRE(admin
              .Do(admin.profiles(), &v1::CustomerProfileService::Stub::RefreshInsights,
                  v1::RefreshInsightsRequest(), &refreshed)
              .ok());
  int kept = 0;
  for (const Plan& p : plans) kept += !p.erase;
  CHECK(refreshed.customers() == kept);
  const Kpis want = ExpectKpis(plans);
  auto metric = [&](const std::string& process, const std::string& name) {
    auto v = system.Metric(process, name);
    INFO(v.status().ToString());
    REQUIRE(v.ok());
    return *v;
  };
  // Every process reports its memory; every data service its budget (the alert compares the two).
  for (const std::string process : {"customer-profile", "order-tracking", "loyalty",
                                    "complaint-ticket", "recommendation", "gateway"}) {
    INFO(process);
    CHECK(metric(process, "process_resident_memory_bytes") > 0);
    CHECK(metric(process, "process_open_fds") > 0);
    if (process != "gateway") CHECK(metric(process, "crm_memory_budget_bytes") > 0);
  }
  CHECK(metric("customer-profile", "crm_kpi_repeat_purchase_rate") == Approx(want.repeat_purchase));
  CHECK(metric("customer-profile", "crm_kpi_on_time_delivery_rate") == Approx(want.on_time));
  CHECK(metric("customer-profile", "crm_kpi_csat_average") == Approx(want.csat));
  CHECK(metric("customer-profile", "crm_kpi_sla_compliance_rate") == Approx(want.sla));
  CHECK(metric("customer-profile", "crm_kpi_at_risk_customers") == 0);
  CHECK(metric("customer-profile", "crm_kpi_retention_90d_rate") ==
        0);                                                 // nobody bought 90-180 days ago
  CHECK(metric("loyalty", "crm_kpi_top_tier_share") == 0);  // nobody reached gold
  // Dead letters would mean an event some service refused: none.
  for (const char* producer : {"customer-profile", "order-tracking", "complaint-ticket"}) {
    auto dead = system.Metric(producer, "crm_event_dead_letters");
    if (dead.ok()) CHECK(*dead == 0);
  }
}

std::unique_ptr<CrmSystem> StartSystem(testing::TempDir& dir) {
  CrmSystem::Options o;
  o.data_root = dir.path();
  o.extra["complaint-ticket"] = {"--sla_sweep_interval_s=1"};
  o.access_log = true;
  auto system = std::make_unique<CrmSystem>(o);
  REQUIRE_OK(system->Start());
  return system;
}

TEST_CASE(
    "scenario: a few hundred customers through the gateway, every 360-degree view and KPI as "
    "scripted") {
  testing::TempDir dir;
  auto system = StartSystem(dir);
  RunScenario(*system, [](const std::atomic<bool>&) {});

  // Every log line of every process (the gateway's access log included): no e-mail, token, payment
  // token or card number of any customer, whatever the calls were.
  std::vector<std::string> secrets = {kCardNumber, absl::StrReplaceAll(kCardNumber, {{" ", ""}}),
                                      "eyJhbGciOi", "Bearer "};
  for (const Plan& p : Script()) {
    secrets.push_back(p.email);
    secrets.push_back(PaymentToken(p));
  }
  int lines = 0;
  for (const std::string& name : CrmSystem::Names()) {
    const std::string out = system->Output(name);
    lines += static_cast<int>(std::count(out.begin(), out.end(), '\n'));
    for (const std::string& secret : secrets) {
      INFO(name << "'s log contains \"" << secret << "\"");
      CHECK_FALSE(absl::StrContains(out, secret));
    }
  }
  CHECK(lines > 1000);  // the access log was on: one line per call
  WARN("log lines scanned: " << lines << ", for " << secrets.size() << " secrets");
}

TEST_CASE(
    "scenario with chaos: every process SIGKILLed and restarted mid-script, the same end state") {
  testing::TempDir dir;
  auto system = StartSystem(dir);
  std::vector<std::string> killed;
  std::string restart_error;  // assertions stay on the test's thread
  RunScenario(*system, [&](const std::atomic<bool>& done) {
    std::mt19937 rng(20261123);
    std::vector<std::string> order = CrmSystem::Names();
    std::shuffle(order.begin(), order.end(), rng);
    // Each process once in a shuffled order, then random ones until the script ends.
    for (size_t round = 0; !done || round < order.size(); ++round) {
      absl::SleepFor(absl::Milliseconds(400));
      const std::string victim = round < order.size() ? order[round] : order[rng() % order.size()];
      if (done && round >= order.size()) break;
      system->Kill(victim);
      killed.push_back(victim);
      absl::SleepFor(absl::Milliseconds(300));
      if (const absl::Status s = system->Start(victim); !s.ok()) {
        restart_error = s.ToString();
        return;
      }
    }
  });
  CHECK(restart_error == "");
  std::set<std::string> distinct(killed.begin(), killed.end());
  CHECK(distinct.size() == CrmSystem::Names().size());
  WARN("processes killed: " << killed.size());
}

TEST_CASE(
    "scenario: the 360-degree view with loyalty stopped answers with membership marked "
    "unavailable") {
  testing::TempDir dir;
  auto system = StartSystem(dir);
  Client admin(system->gateway(), system->Token("admin", "ops-1"));
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("r1");
  reg.set_email("alone@example.com");
  v1::Customer c;
  REQUIRE(admin.Do(admin.profiles(), &v1::CustomerProfileService::Stub::RegisterCustomer, reg, &c)
              .ok());
  REQUIRE(system->Stop("loyalty") == 0);

  v1::GetCustomerViewRequest req;
  req.set_customer_id(c.customer_id());
  v1::CustomerView view;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + system->Token("customer", c.customer_id()));
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  const grpc::Status s = admin.views()->GetCustomerView(&ctx, req, &view);
  INFO(s.error_message());
  REQUIRE(s.ok());
  REQUIRE(view.unavailable_size() == 1);
  CHECK(view.unavailable(0).section() == "membership");
  CHECK(view.unavailable(0).code() == "UNAVAILABLE");
  CHECK(view.profile().email() == "alone@example.com");
  CHECK_FALSE(view.has_insights());  // a customer's own view leaves out the staff-only section
  CHECK_FALSE(view.has_membership());
}

}  // namespace
}  // namespace crm
