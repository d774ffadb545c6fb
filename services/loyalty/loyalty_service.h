// crm.v1.LoyaltyService over gRPC's callback API, and the loyalty side of the events (delivered
// orders earn growth and points, refunds take back exactly what they granted, reviews earn review
// points, erasure anonymises). Handlers validate, run the membership rules (loyalty_rules.h,
// membership.h) inside one account transaction (loyalty_store.h) and map the result. Writes run on
// the write executor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/consumer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/backends.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/periodic.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/loyalty/loyalty_store.h"

namespace crm::loyalty {

// Request limits: the points one grant or redemption moves; how long an issued coupon may be valid,
// and how long when the request does not say.
inline constexpr int64_t kMaxPoints = 1000000000;
inline constexpr int kMaxCouponValidDays = 365;
inline constexpr int kDefaultCouponValidDays = 30;
// The lines a coupon reservation may name; a once-per-customer coupon held this long by an order
// order-tracking does not have (a checkout that never completed) or that went back to the sender
// may be taken by another order.
inline constexpr int kMaxReservationItems = 1000;
inline constexpr absl::Duration kAbandonedHoldAfter = absl::Minutes(10);

// The rules in force; replaced whole on reload so a reader never sees half of two rule sets.
class RulesHolder {
 public:
  explicit RulesHolder(v1::LoyaltyRules rules)
      : rules_(std::make_shared<const v1::LoyaltyRules>(std::move(rules))) {}
  std::shared_ptr<const v1::LoyaltyRules> Get() const {
    absl::MutexLock lock(&mu_);
    return rules_;
  }
  void Set(v1::LoyaltyRules rules) {
    absl::MutexLock lock(&mu_);
    rules_ = std::make_shared<const v1::LoyaltyRules>(std::move(rules));
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const v1::LoyaltyRules> rules_ ABSL_GUARDED_BY(mu_);
};

struct LoyaltyMetrics {
  explicit LoyaltyMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Gauge>& members;          // {tier}
  prometheus::Family<prometheus::Counter>& points_issued;  // {source}
  prometheus::Counter& points_redeemed;
  prometheus::Counter& points_expired;
  prometheus::Counter& points_reversed;
  prometheus::Family<prometheus::Counter>& tier_changes;  // {direction}
  // Members in the two highest tiers over all members (a KPI for ops).
  prometheus::Gauge& top_tier_share;
};

class LoyaltyService final : public v1::LoyaltyService::CallbackService {
 public:
  LoyaltyService(LoyaltyStore* store, RulesHolder* rules, std::string rules_file, Clock* clock,
                 rpc::Executor* writes, rpc::Backends* backends, prometheus::Registry& registry);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* GetMembership(Ctx*, const v1::GetMembershipRequest*, v1::Membership*) override;
  Reactor* ExplainMembership(Ctx*, const v1::ExplainMembershipRequest*,
                             v1::MembershipExplanation*) override;
  Reactor* GetRules(Ctx*, const v1::GetRulesRequest*, v1::LoyaltyRules*) override;
  Reactor* ReloadRules(Ctx*, const v1::ReloadRulesRequest*, v1::LoyaltyRules*) override;
  Reactor* ListPointsHistory(Ctx*, const v1::ListPointsHistoryRequest*,
                             v1::ListPointsHistoryResponse*) override;
  Reactor* GrantPoints(Ctx*, const v1::GrantPointsRequest*, v1::LedgerEntry*) override;
  Reactor* RedeemPoints(Ctx*, const v1::RedeemPointsRequest*, v1::LedgerEntry*) override;
  Reactor* RecordReferral(Ctx*, const v1::RecordReferralRequest*, v1::Membership*) override;
  Reactor* RateTrade(Ctx*, const v1::RateTradeRequest*, v1::CreditStanding*) override;
  Reactor* SetEnterpriseAccount(Ctx*, const v1::SetEnterpriseAccountRequest*,
                                v1::Membership*) override;
  Reactor* IssueCoupon(Ctx*, const v1::IssueCouponRequest*, v1::Coupon*) override;
  Reactor* ListCoupons(Ctx*, const v1::ListCouponsRequest*, v1::ListCouponsResponse*) override;
  Reactor* ReserveCoupon(Ctx*, const v1::ReserveCouponRequest*, v1::CouponReservation*) override;
  Reactor* RunMaintenance(Ctx*, const v1::RunMaintenanceRequest*,
                          v1::RunMaintenanceResponse*) override;

  // The loyalty side of an event, inside the consumer's transaction.
  absl::Status HandleEvent(store::Transaction& txn, const v1::Event& event);
  // The events HandleEvent acts on; producers send this service no others.
  static events::Subscription EventsHandled() {
    using E = events::Subscription::EventType;
    return {E::kOrderDelivered, E::kOrderRefunded, E::kOrderCancelled, E::kReviewSubmitted,
            E::kCustomerErased};
  }
  // Expiry sweep and tier re-evaluation as of now; safe to repeat.
  absl::Status Maintain(v1::RunMaintenanceResponse* out);
  // Recomputes crm_kpi_top_tier_share from the per-tier member gauges.
  void UpdateTopTierShare();
  // Counts members per tier from the store (at start).
  void CountMembers();

 private:
  // OK when the customer has a loyalty account or customer-profile knows them; NOT_FOUND otherwise.
  absl::Status CheckCustomer(const std::string& customer_id);
  // Counts what a committed session did (points issued, redeemed, expired, tier moves).
  void Committed(const AccountSession::Effects& effects);
  // Committed(the session's effects) once the transaction the session belongs to commits: for
  // bodies that Store::Transact may run again after a conflict.
  void CountOnCommit(AccountSession& session);
  void ApplyTierChange(AccountSession& s, const v1::LoyaltyRules& rules, absl::Time now);
  // Runs `change` on the customer's account in its own transaction, then counts what the attempt
  // that committed did; `effects` (optional) receives it too.
  absl::Status ChangeAccount(const std::string& customer_id,
                             absl::FunctionRef<absl::Status(AccountSession&)> change,
                             AccountSession::Effects* effects = nullptr);
  // A call's change to the account of a customer customer-profile knows, on the write executor:
  // the customer confirmed, then `change` run through ChangeAccount with the rules in force;
  // finishes the call with its status.
  Reactor* ChangeMember(
      Ctx* ctx, const std::string& customer_id,
      absl::AnyInvocable<absl::Status(AccountSession&, const v1::LoyaltyRules& rules)> change);
  // The customer's account, or an empty one for a customer customer-profile knows who has had no
  // loyalty activity yet.
  absl::StatusOr<std::pair<internal::LoyaltyAccount, Lots>> AccountOrNew(
      const std::string& customer_id);
  // ExplainMembership's page of growth entries still inside the window.
  absl::Status ListGrowthInWindow(const std::string& customer_id, absl::Time now,
                                  const rpc::PageRequest& page, v1::MembershipExplanation* resp);
  // Maintain's steps: expire the points lots due by now; move the tiers whose growth has left
  // the window.
  absl::Status ExpireDuePoints(absl::Time now, v1::RunMaintenanceResponse* out);
  absl::Status ReevaluateStaleTiers(const v1::LoyaltyRules& rules, absl::Time now,
                                    v1::RunMaintenanceResponse* out);
  // HandleEvent's steps, inside the event's transaction. Each answers whether it changed the
  // account (false for an event seen before).
  absl::Status ForgetMember(store::Transaction& txn, const std::string& customer_id);
  absl::StatusOr<bool> GrantForDelivery(AccountSession& session, const v1::OrderDelivered& d,
                                        absl::Time when, const v1::LoyaltyRules& rules,
                                        absl::Time now);
  absl::StatusOr<bool> TakeBackForRefund(AccountSession& session, const v1::OrderRefunded& r,
                                         const v1::LoyaltyRules& rules, absl::Time now);
  absl::StatusOr<bool> RewardReview(AccountSession& session, const v1::ReviewSubmitted& rv,
                                    const v1::LoyaltyRules& rules, absl::Time now);
  // RecordReferral's points and growth for the referrer, once per referred customer.
  absl::StatusOr<bool> RewardReferral(AccountSession& session, const std::string& source,
                                      const v1::LoyaltyRules& rules, absl::Time now);
  // RedeemPoints' work, once per request id: spends the points oldest first.
  absl::Status Redeem(const v1::RedeemPointsRequest& req, const std::string& request_id,
                      absl::Time now, v1::LedgerEntry* resp);
  // ReserveCoupon's work in the customer's account: the order's reservation (the first one again
  // for a retry), the coupon held or marked for it. `abandoned_order` (may be empty): an order
  // found abandoned whose hold on the coupon is released first.
  absl::Status Reserve(AccountSession& session, const v1::ReserveCouponRequest& req,
                       const std::string& abandoned_order, absl::Time now,
                       v1::CouponReservation* out);
  // The order holding the requested once-per-customer coupon when that hold is abandoned: older
  // than kAbandonedHoldAfter and order-tracking has no such order or sent it back; else empty.
  absl::StatusOr<std::string> AbandonedHold(const v1::ReserveCouponRequest& req, absl::Time now);
  // The end of an order's hold on its coupon: redeemed (delivered) or released (cancelled,
  // abandoned). False when the order holds none (or no longer).
  absl::StatusOr<bool> EndHold(AccountSession& session, const std::string& order_id,
                               v1::ReservationStatus end, absl::Time now);
  // OK when order-tracking has the order delivered: only a completed trade is rated.
  absl::Status CheckDelivered(const std::string& customer_id, const std::string& order_id);

  LoyaltyStore* const store_;
  RulesHolder* const rules_;
  const std::string rules_file_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  rpc::Backends* const backends_;
  LoyaltyMetrics metrics_;
};

}  // namespace crm::loyalty
