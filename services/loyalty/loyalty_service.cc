#include "services/loyalty/loyalty_service.h"

#include <functional>

#include "absl/numeric/int128.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/peer.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/idempotency.h"
#include "services/loyalty/coupons.h"
#include "services/loyalty/loyalty_rules.h"

namespace crm::loyalty {
namespace {

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

std::string TierLabel(v1::Tier t) { return absl::AsciiStrToLower(TierName(t)); }

v1::GrowthEntry Growth(internal::LoyaltyAccount& account, int64_t growth, v1::GrowthSource source,
                       const std::string& source_id, const std::string& order_id,
                       const std::string& rule, absl::Time now, int64_t counts_on_day,
                       int window_days) {
  v1::GrowthEntry g;
  g.set_entry_id(absl::StrCat("G", TakeSequence(account)));
  api::SetTimestamp(now, g.mutable_time());
  g.set_growth(growth);
  g.set_source(source);
  g.set_source_id(source_id);
  g.set_order_id(order_id);
  g.set_rule(rule);
  api::SetTimestamp(StartOfGrowthDay(counts_on_day + window_days), g.mutable_leaves_window_time());
  AddGrowth(account, counts_on_day, growth);
  return g;
}

// The next tier and what it takes to reach it, and when the current tier would be lost if no
// growth came.
void ExplainTiers(const internal::LoyaltyAccount& a, const v1::LoyaltyRules& rules, absl::Time now,
                  v1::MembershipExplanation* resp) {
  const v1::Tier tier = resp->membership().tier();
  if (const v1::TierRule* next = NextTierRule(rules, tier)) {
    resp->set_next_tier(next->tier());
    resp->set_growth_needed(next->min_growth() - resp->membership().growth_value());
    *resp->mutable_next_tier_benefits() = next->benefits();
  }
  if (auto down = ProjectDowngrade(a, rules, now)) {
    api::SetTimestamp(down->when, resp->mutable_downgrade_time());
    resp->set_downgrade_tier(down->tier);
    if (const v1::TierRule* r = RuleOfTier(rules, down->tier))
      *resp->mutable_downgrade_benefits() = r->benefits();
  }
}

absl::Status ValidateCoupon(const v1::IssueCouponRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("source_id", req.source_id()));
  if (req.value().amount_minor() <= 0) return Invalid("value.amount_minor", "must be positive");
  CRM_RETURN_IF_ERROR(api::CurrencyCode("value.currency", req.value().currency()));
  if (req.min_spend().amount_minor() < 0)
    return Invalid("min_spend.amount_minor", "must not be negative");
  if (req.min_spend().amount_minor() > 0 && req.min_spend().currency() != req.value().currency()) {
    return Invalid("min_spend.currency", "must be the coupon's currency");
  }
  if (req.valid_days() < 0 || req.valid_days() > kMaxCouponValidDays) {
    return Invalid("valid_days", absl::StrCat("must be 0-", kMaxCouponValidDays, " (0 means ",
                                              kDefaultCouponValidDays, ")"));
  }
  if (!v1::CouponUsage_IsValid(req.usage()))
    return Invalid("usage", "must be ONCE_PER_CUSTOMER or ONCE_PER_ORDER");
  if (req.has_bundle()) {
    const v1::BundleOffer& b = req.bundle();
    CRM_RETURN_IF_ERROR(api::ValidateSku("bundle.required_sku", b.required_sku()));
    CRM_RETURN_IF_ERROR(api::ValidateSku("bundle.discounted_sku", b.discounted_sku()));
    if (b.discounted_sku() == b.required_sku())
      return Invalid("bundle.discounted_sku", "must differ from required_sku");
    if (b.percent_off() < 1 || b.percent_off() > 100)
      return Invalid("bundle.percent_off", "must be 1-100");
  }
  return api::OptionalText("reason", req.reason(), 200);
}

absl::Status ValidateReservation(const v1::ReserveCouponRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("coupon_id", req.coupon_id()));
  CRM_RETURN_IF_ERROR(api::RequiredId("order_id", req.order_id()));
  if (req.items().empty() || req.items_size() > kMaxReservationItems)
    return Invalid("items", absl::StrCat("must hold 1-", kMaxReservationItems, " order lines"));
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    const std::string f = absl::StrCat("items[", i, "]");
    CRM_RETURN_IF_ERROR(api::ValidateSku(f + ".sku", item.sku()));
    if (item.quantity() < 1) return Invalid(f + ".quantity", "must be at least 1");
    if (item.unit_price().amount_minor() < 0)
      return Invalid(f + ".unit_price.amount_minor", "must not be negative");
    CRM_RETURN_IF_ERROR(
        api::CurrencyCode(f + ".unit_price.currency", item.unit_price().currency()));
  }
  return absl::OkStatus();
}

// A coupon as the customer sees it now: unused past its expiry, EXPIRED.
v1::Coupon Shown(v1::Coupon c, absl::Time now) {
  c.set_status(StatusAt(c, now));
  if (c.usage() == v1::COUPON_USAGE_UNSPECIFIED) c.set_usage(v1::COUPON_USAGE_ONCE_PER_CUSTOMER);
  return c;
}

// A new coupon: a minimum spend in the coupon's currency, valid for `valid_days` (0 means 30).
v1::Coupon NewCoupon(const v1::IssueCouponRequest& req, absl::Time now) {
  v1::Coupon c;
  c.set_coupon_id(sharding::NewId("cp"));
  c.set_customer_id(req.customer_id());
  *c.mutable_value() = req.value();
  *c.mutable_min_spend() = req.min_spend();
  if (c.min_spend().currency().empty()) c.mutable_min_spend()->set_currency(req.value().currency());
  api::SetTimestamp(
      now + absl::Hours(24) * (req.valid_days() == 0 ? kDefaultCouponValidDays : req.valid_days()),
      c.mutable_expire_time());
  c.set_source_id(req.source_id());
  c.set_reason(req.reason());
  api::SetTimestamp(now, c.mutable_issue_time());
  c.set_status(v1::COUPON_STATUS_AVAILABLE);
  c.set_usage(req.usage() == v1::COUPON_USAGE_UNSPECIFIED ? v1::COUPON_USAGE_ONCE_PER_CUSTOMER
                                                          : req.usage());
  if (req.has_bundle()) *c.mutable_bundle() = req.bundle();
  return c;
}

absl::Status ValidatePoints(int64_t points) {
  if (points <= 0 || points > kMaxPoints) {
    return Invalid("points", absl::StrCat("must be 1-", kMaxPoints));
  }
  return absl::OkStatus();
}

absl::Status ValidateGrant(const v1::GrantPointsRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(ValidatePoints(req.points()));
  CRM_RETURN_IF_ERROR(api::RequiredId("source_id", req.source_id()));
  const auto src = req.source();
  if (src != v1::POINTS_SOURCE_REVIEW && src != v1::POINTS_SOURCE_REFERRAL &&
      src != v1::POINTS_SOURCE_COMPENSATION && src != v1::POINTS_SOURCE_PROMOTION) {
    return Invalid("source", "must be REVIEW, REFERRAL, COMPENSATION or PROMOTION");
  }
  return api::OptionalText("description", req.description(), 200);
}

// A source counts once: granting it again answers the first entry, unless it names other points.
absl::Status AnswerFirstGrant(AccountSession& session, const std::string& entry_id,
                              const v1::GrantPointsRequest& req, v1::LedgerEntry* resp) {
  CRM_ASSIGN_OR_RETURN(auto first, session.LedgerEntryById(entry_id));
  if (!first.has_value())
    return absl::DataLossError("source index points at a missing ledger entry");
  if (first->points() != req.points()) {
    return Invalid("source_id", absl::StrCat("\"", req.source_id(), "\" already granted ",
                                             first->points(), " points; a source counts once"));
  }
  *resp = *first;
  return absl::OkStatus();
}

absl::Status ValidateRedeem(const v1::RedeemPointsRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  CRM_RETURN_IF_ERROR(ValidatePoints(req.points()));
  return api::OptionalText("description", req.description(), 200);
}

// A trade's rating moves the credit score once per order; rating it again changes nothing.
absl::Status RateOnce(AccountSession& session, const std::string& order_id,
                      v1::TradeRating rating) {
  CRM_ASSIGN_OR_RETURN(const bool rated, session.Rated(order_id));
  if (rated) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(session.PutRating(order_id, rating));
  auto& a = session.account();
  switch (rating) {
    case v1::TRADE_RATING_GOOD:
      a.set_credit_score(a.credit_score() + 1);
      a.set_good_ratings(a.good_ratings() + 1);
      break;
    case v1::TRADE_RATING_BAD:
      a.set_credit_score(a.credit_score() - 1);
      a.set_bad_ratings(a.bad_ratings() + 1);
      break;
    default: a.set_neutral_ratings(a.neutral_ratings() + 1);
  }
  return absl::OkStatus();
}

}  // namespace

LoyaltyMetrics::LoyaltyMetrics(prometheus::Registry& r)
    : members(metrics::GaugeFamily(r, "crm_loyalty_members", "Members per tier.")),
      points_issued(metrics::CounterFamily(
          r, "crm_points_issued_total",
          "Points earned, by source (purchase, review, referral, compensation, promotion).")),
      points_redeemed(metrics::Counter(r, "crm_points_redeemed_total", "Points redeemed.")),
      points_expired(metrics::Counter(r, "crm_points_expired_total", "Points expired.")),
      points_reversed(metrics::Counter(r, "crm_points_reversed_total",
                                       "Points taken back by refunds (including settled debts).")),
      tier_changes(metrics::CounterFamily(r, "crm_tier_changes_total",
                                          "Tier changes, by direction (up, down).")),
      top_tier_share(metrics::Gauge(r, "crm_kpi_top_tier_share",
                                    "Share of members in the two highest tiers.")) {}

LoyaltyService::LoyaltyService(LoyaltyStore* store, RulesHolder* rules, std::string rules_file,
                               Clock* clock, rpc::Executor* writes, rpc::Backends* backends,
                               prometheus::Registry& registry)
    : store_(store),
      rules_(rules),
      rules_file_(std::move(rules_file)),
      clock_(clock),
      writes_(writes),
      backends_(backends),
      metrics_(registry) {}

void LoyaltyService::CountMembers() {
  std::map<v1::Tier, int64_t> counts;
  (void)store_->ForEachAccount([&](const internal::LoyaltyAccount& a) {
    if (!a.erased()) ++counts[a.tier()];
    return true;
  });
  for (const auto& t : rules_->Get()->tiers()) {
    metrics_.members.Add({{"tier", TierLabel(t.tier())}})
        .Set(static_cast<double>(counts[t.tier()]));
  }
  UpdateTopTierShare();
}

void LoyaltyService::UpdateTopTierShare() {
  std::vector<v1::Tier> tiers;
  for (const auto& t : rules_->Get()->tiers()) tiers.push_back(t.tier());
  std::sort(tiers.begin(), tiers.end(), std::greater<>());
  double all = 0, top = 0;
  for (size_t i = 0; i < tiers.size(); ++i) {
    const double n = metrics_.members.Add({{"tier", TierLabel(tiers[i])}}).Value();
    all += n;
    if (i < 2) top += n;
  }
  metrics_.top_tier_share.Set(all > 0 ? top / all : 0);
}

void LoyaltyService::Committed(const AccountSession::Effects& s) {
  for (const auto& e : s.ledger) {
    switch (e.type()) {
      case v1::POINTS_ENTRY_TYPE_EARN:
        metrics_.points_issued
            .Add({{"source", absl::AsciiStrToLower(v1::PointsSource_Name(e.source()).substr(14))}})
            .Increment(static_cast<double>(e.points()));
        break;
      case v1::POINTS_ENTRY_TYPE_REDEEM:
        metrics_.points_redeemed.Increment(static_cast<double>(-e.points()));
        break;
      case v1::POINTS_ENTRY_TYPE_EXPIRE:
        metrics_.points_expired.Increment(static_cast<double>(-e.points()));
        break;
      case v1::POINTS_ENTRY_TYPE_REVERSE:
      case v1::POINTS_ENTRY_TYPE_SETTLE:
        metrics_.points_reversed.Increment(static_cast<double>(-e.points()));
        break;
      default: break;
    }
  }
  for (const auto& c : s.tier_changes) {
    if (c.from_tier() != v1::TIER_UNSPECIFIED)
      metrics_.members.Add({{"tier", TierLabel(c.from_tier())}}).Decrement();
    metrics_.members.Add({{"tier", TierLabel(c.to_tier())}}).Increment();
    if (c.from_tier() != v1::TIER_UNSPECIFIED) {
      metrics_.tier_changes.Add({{"direction", c.to_tier() > c.from_tier() ? "up" : "down"}})
          .Increment();
    }
  }
  if (!s.tier_changes.empty()) UpdateTopTierShare();
}

void LoyaltyService::CountOnCommit(AccountSession& session) {
  // The consumer's transaction may run its body again after a conflict: count what it did once it
  // has committed, never per attempt.
  session.txn().OnFinish([this, effects = session.effects()](bool committed) {
    if (committed) Committed(effects);
  });
}

void LoyaltyService::ApplyTierChange(AccountSession& s, const v1::LoyaltyRules& rules,
                                     absl::Time now) {
  DropGrowthOutsideWindow(s.account(), now, rules.growth().window_days());
  if (auto change = ReevaluateTier(s.account(), rules, now)) s.Add(*change);
}

absl::Status LoyaltyService::CheckCustomer(const std::string& customer_id) {
  CRM_ASSIGN_OR_RETURN(auto account, store_->Account(customer_id));
  if (account.has_value()) return absl::OkStatus();
  return rpc::FetchCustomer(*backends_, customer_id).status();
}

grpc::ServerUnaryReactor* LoyaltyService::GetMembership(Ctx* ctx,
                                                        const v1::GetMembershipRequest* req,
                                                        v1::Membership* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  const auto rules = rules_->Get();
  const absl::Time now = clock_->Now();
  auto account = store_->Account(req->customer_id());
  if (!account.ok()) return Finish(ctx, account.status());
  if (account->has_value()) {
    *resp = MembershipOf((*account)->first, (*account)->second, *rules, now);
    return Finish(ctx, absl::OkStatus());
  }
  // No activity yet: confirm the customer exists (a blocking call, so off gRPC's thread).
  return FinishOn(*writes_, ctx, [this, req, resp, rules, now]() -> absl::Status {
    CRM_RETURN_IF_ERROR(CheckCustomer(req->customer_id()));
    internal::LoyaltyAccount empty;
    empty.set_customer_id(req->customer_id());
    *resp = MembershipOf(empty, {}, *rules, now);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LoyaltyService::ExplainMembership(Ctx* ctx,
                                                            const v1::ExplainMembershipRequest* req,
                                                            v1::MembershipExplanation* resp) {
  auto page = rpc::CustomerPageOf(*req, "growth", {100, 1000});
  if (!page.ok()) return Finish(ctx, page.status());
  const auto rules = rules_->Get();
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx,
                  [this, req, resp, rules, now, page = *std::move(page)]() -> absl::Status {
                    CRM_ASSIGN_OR_RETURN(auto account, AccountOrNew(req->customer_id()));
                    const auto& [a, lots] = account;
                    *resp->mutable_membership() = MembershipOf(a, lots, *rules, now);
                    CRM_RETURN_IF_ERROR(ListGrowthInWindow(req->customer_id(), now, page, resp));
                    ExplainTiers(a, *rules, now, resp);
                    CRM_ASSIGN_OR_RETURN(auto history, store_->TierHistory(req->customer_id()));
                    for (auto& h : history) *resp->add_tier_history() = std::move(h);
                    *resp->mutable_rules() = *rules;
                    return absl::OkStatus();
                  });
}

absl::StatusOr<std::pair<internal::LoyaltyAccount, Lots>> LoyaltyService::AccountOrNew(
    const std::string& customer_id) {
  CRM_ASSIGN_OR_RETURN(auto account, store_->Account(customer_id));
  if (account.has_value()) return *std::move(account);
  CRM_RETURN_IF_ERROR(CheckCustomer(customer_id));
  internal::LoyaltyAccount a;
  a.set_customer_id(customer_id);
  return std::make_pair(std::move(a), Lots());
}

absl::Status LoyaltyService::ListGrowthInWindow(const std::string& customer_id, absl::Time now,
                                                const rpc::PageRequest& page,
                                                v1::MembershipExplanation* resp) {
  // The entries still inside the window, newest first; together they make growth_value.
  std::string cursor = page.after, last;
  bool more = true;
  while (more && resp->growth_entries_size() < page.size) {
    std::vector<v1::GrowthEntry> entries;
    CRM_RETURN_IF_ERROR(store_->ListGrowth(customer_id, cursor, page.size, &entries, &last, &more));
    for (auto& g : entries) {
      if (api::FromTimestamp(g.leaves_window_time()) > now)
        *resp->add_growth_entries() = std::move(g);
    }
    cursor = last;
  }
  if (more) resp->set_next_page_token(api::EncodePageToken(page.scope, last));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* LoyaltyService::GetRules(Ctx* ctx, const v1::GetRulesRequest*,
                                                   v1::LoyaltyRules* resp) {
  *resp = *rules_->Get();
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* LoyaltyService::ReloadRules(Ctx* ctx, const v1::ReloadRulesRequest*,
                                                      v1::LoyaltyRules* resp) {
  if (rules_file_.empty()) {
    return Finish(ctx, absl::FailedPreconditionError(
                           "no --rules_file is configured; the built-in rules are in use"));
  }
  auto rules = ReadRulesFile(rules_file_);
  if (!rules.ok()) return Finish(ctx, rules.status());
  rules_->Set(*rules);
  *resp = *rules;
  log::Info("loyalty rules reloaded", {{"file", rules_file_}});
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* LoyaltyService::ListPointsHistory(Ctx* ctx,
                                                            const v1::ListPointsHistoryRequest* req,
                                                            v1::ListPointsHistoryResponse* resp) {
  auto page = rpc::CustomerPageOf(*req, "ledger", {50, 1000});
  if (!page.ok()) return Finish(ctx, page.status());
  auto account = store_->Account(req->customer_id());
  if (!account.ok()) return Finish(ctx, account.status());
  if (!account->has_value()) {
    return FinishOn(*writes_, ctx, [this, req] { return CheckCustomer(req->customer_id()); });
  }
  resp->set_balance((*account)->first.points_balance());
  return Finish(
      ctx,
      rpc::ReadPage(*page, std::bind_front(&LoyaltyStore::ListLedger, store_, req->customer_id()),
                    resp->mutable_entries(), resp->mutable_next_page_token()));
}

grpc::ServerUnaryReactor* LoyaltyService::GrantPoints(Ctx* ctx, const v1::GrantPointsRequest* req,
                                                      v1::LedgerEntry* resp) {
  if (auto s = ValidateGrant(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return ChangeMember(
      ctx, req->customer_id(),
      [req, resp, now](AccountSession& session, const v1::LoyaltyRules&) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(auto seen, session.Source("points", req->source_id()));
        if (seen.has_value()) return AnswerFirstGrant(session, *seen, *req, resp);
        auto entries = EarnPoints(session.account(), session.lots(), req->points(), req->source(),
                                  req->source_id(), "", "", req->description(), now);
        *resp = entries.front();
        for (auto& e : entries) session.Add(std::move(e));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* LoyaltyService::RedeemPoints(Ctx* ctx, const v1::RedeemPointsRequest* req,
                                                       v1::LedgerEntry* resp) {
  if (auto s = ValidateRedeem(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(*writes_, ctx, req->request_id(),
                              [this, req, resp, now](const std::string& request_id) {
                                return Redeem(*req, request_id, now, resp);
                              });
}

absl::Status LoyaltyService::Redeem(const v1::RedeemPointsRequest& req,
                                    const std::string& request_id, absl::Time now,
                                    v1::LedgerEntry* resp) {
  CRM_ASSIGN_OR_RETURN(auto account, store_->Account(req.customer_id()));
  if (!account.has_value()) {
    CRM_RETURN_IF_ERROR(CheckCustomer(req.customer_id()));
    return absl::FailedPreconditionError(
        absl::StrCat("points: the balance is 0, not enough to redeem ", req.points()));
  }
  bool spent = false;  // false when this is a retry answered from the first call's record
  CRM_RETURN_IF_ERROR(store_->WithAccountOnce(
      req.customer_id(), "RedeemPoints", request_id, store::RequestFingerprint(req), now, resp,
      [&](AccountSession& session) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(
            v1::LedgerEntry entry,
            SpendPoints(session.account(), session.lots(), req.points(),
                        absl::StrCat("redeem:", req.request_id()), req.description(), now));
        *resp = entry;
        session.Add(std::move(entry));
        spent = true;
        return absl::OkStatus();
      }));
  if (spent) metrics_.points_redeemed.Increment(static_cast<double>(req.points()));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* LoyaltyService::RecordReferral(Ctx* ctx,
                                                         const v1::RecordReferralRequest* req,
                                                         v1::Membership* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("referred_customer_id", req->referred_customer_id()); !s.ok())
    return Finish(ctx, s);
  if (req->referred_customer_id() == req->customer_id()) {
    return Finish(ctx, Invalid("referred_customer_id", "a customer cannot refer themselves"));
  }
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now]() -> absl::Status {
    CRM_RETURN_IF_ERROR(CheckCustomer(req->customer_id()));
    if (auto s = CheckCustomer(req->referred_customer_id()); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("referred_customer_id: ", s.message()));
    }
    const auto rules = rules_->Get();
    const std::string source = absl::StrCat("referral:", req->referred_customer_id());
    return ChangeAccount(req->customer_id(), [&](AccountSession& session) -> absl::Status {
      CRM_ASSIGN_OR_RETURN(const bool rewarded, RewardReferral(session, source, *rules, now));
      if (rewarded) ApplyTierChange(session, *rules, now);
      *resp = MembershipOf(session.account(), session.lots(), *rules, now);
      return absl::OkStatus();
    });
  });
}

grpc::ServerUnaryReactor* LoyaltyService::RateTrade(Ctx* ctx, const v1::RateTradeRequest* req,
                                                    v1::CreditStanding* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("order_id", req->order_id()); !s.ok()) return Finish(ctx, s);
  if (req->rating() == v1::TRADE_RATING_UNSPECIFIED || !v1::TradeRating_IsValid(req->rating())) {
    return Finish(ctx, Invalid("rating", "must be GOOD, NEUTRAL or BAD"));
  }
  return FinishOn(*writes_, ctx, [this, req, resp]() -> absl::Status {
    CRM_RETURN_IF_ERROR(CheckDelivered(req->customer_id(), req->order_id()));
    const auto rules = rules_->Get();
    return store_->WithAccount(req->customer_id(), [&](AccountSession& session) -> absl::Status {
      CRM_RETURN_IF_ERROR(RateOnce(session, req->order_id(), req->rating()));
      *resp = CreditOf(session.account(), *rules);
      return absl::OkStatus();
    });
  });
}

absl::Status LoyaltyService::CheckDelivered(const std::string& customer_id,
                                            const std::string& order_id) {
  // Only a completed trade is rated: ask order-tracking.
  v1::GetOrderRequest get;
  get.set_customer_id(customer_id);
  get.set_order_id(order_id);
  CRM_ASSIGN_OR_RETURN(auto order, rpc::Peer<v1::OrderTrackingService>(backends_).Call(
                                       customer_id, "confirm the order",
                                       &v1::OrderTrackingService::Stub::GetOrder, get));
  if (order.status() != v1::ORDER_STATUS_DELIVERED) {
    return absl::FailedPreconditionError(
        "order_id: only a completed (delivered) trade can be rated");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* LoyaltyService::SetEnterpriseAccount(
    Ctx* ctx, const v1::SetEnterpriseAccountRequest* req, v1::Membership* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (req->enterprise()) {
    if (auto s = api::RequiredText("company_name", req->company_name(), 200); !s.ok())
      return Finish(ctx, s);
    if (auto s = api::RequiredId("named_agent_id", req->named_agent_id()); !s.ok())
      return Finish(ctx, s);
  }
  const absl::Time now = clock_->Now();
  return ChangeMember(
      ctx, req->customer_id(),
      [this, req, resp, now](AccountSession& session, const v1::LoyaltyRules& rules) {
        auto& a = session.account();
        a.set_enterprise(req->enterprise());
        a.set_enterprise_company(req->enterprise() ? req->company_name() : "");
        a.set_named_agent_id(req->enterprise() ? req->named_agent_id() : "");
        if (!session.existed()) ApplyTierChange(session, rules, now);
        *resp = MembershipOf(a, session.lots(), rules, now);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* LoyaltyService::IssueCoupon(Ctx* ctx, const v1::IssueCouponRequest* req,
                                                      v1::Coupon* resp) {
  if (auto s = ValidateCoupon(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return ChangeMember(ctx, req->customer_id(),
                      [this, req, resp, now](AccountSession& session,
                                             const v1::LoyaltyRules& rules) -> absl::Status {
                        // A source issues one coupon: a retry answers the first.
                        CRM_ASSIGN_OR_RETURN(auto seen, session.Source("coupon", req->source_id()));
                        if (seen.has_value()) {
                          CRM_ASSIGN_OR_RETURN(auto first, session.Coupon(*seen));
                          if (!first.has_value())
                            return absl::DataLossError("source index points at a missing coupon");
                          *resp = Shown(*first, now);
                          return absl::OkStatus();
                        }
                        *resp = NewCoupon(*req, now);
                        session.Add(*resp);
                        if (!session.existed()) ApplyTierChange(session, rules, now);
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* LoyaltyService::ListCoupons(Ctx* ctx, const v1::ListCouponsRequest* req,
                                                      v1::ListCouponsResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto coupons = store_->Coupons(req->customer_id());
  if (!coupons.ok()) return Finish(ctx, coupons.status());
  const absl::Time now = clock_->Now();
  for (auto& c : *coupons) *resp->add_coupons() = Shown(std::move(c), now);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* LoyaltyService::ReserveCoupon(Ctx* ctx,
                                                        const v1::ReserveCouponRequest* req,
                                                        v1::CouponReservation* resp) {
  if (auto s = ValidateReservation(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(const std::string abandoned, AbandonedHold(*req, now));
    return ChangeAccount(req->customer_id(), [&](AccountSession& session) {
      return Reserve(session, *req, abandoned, now, resp);
    });
  });
}

absl::StatusOr<std::string> LoyaltyService::AbandonedHold(const v1::ReserveCouponRequest& req,
                                                          absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto coupon, store_->FindCoupon(req.customer_id(), req.coupon_id()));
  if (!coupon.has_value() || !SingleUse(*coupon) ||
      coupon->status() != v1::COUPON_STATUS_RESERVED || coupon->order_id() == req.order_id()) {
    return std::string();
  }
  CRM_ASSIGN_OR_RETURN(auto hold, store_->FindReservation(req.customer_id(), coupon->order_id()));
  // A younger hold may belong to a checkout still under way: its order is about to exist.
  if (!hold.has_value() || now - api::FromTimestamp(hold->reserve_time()) < kAbandonedHoldAfter)
    return std::string();
  v1::GetOrderRequest get;
  get.set_customer_id(req.customer_id());
  get.set_order_id(coupon->order_id());
  auto order = rpc::Peer<v1::OrderTrackingService>(backends_).Call(
      req.customer_id(), "tell whether the order holding the coupon exists",
      &v1::OrderTrackingService::Stub::GetOrder, get);
  if (absl::IsNotFound(order.status())) return coupon->order_id();
  // Cannot tell: the hold stays, and the coupon is refused as held.
  if (!order.ok()) return std::string();
  return order->status() == v1::ORDER_STATUS_RETURNED_TO_SENDER ? coupon->order_id()
                                                                : std::string();
}

namespace {

// A second ReserveCoupon for an order that already holds a reservation: a retry of the same coupon
// is answered with the first reservation; anything else is refused.
absl::Status CheckRetriedReservation(const v1::CouponReservation& held,
                                     const v1::ReserveCouponRequest& req) {
  if (held.coupon_id() != req.coupon_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("order_id: the order already holds coupon \"", held.coupon_id(), "\""));
  }
  if (held.status() == v1::RESERVATION_STATUS_RELEASED) {
    return absl::FailedPreconditionError(
        "coupon_id: the coupon's hold for this order was released (the checkout did not "
        "complete in time); place the order again");
  }
  return absl::OkStatus();
}

// Why the coupon cannot be held for a new order at `now`, or OK when it can.
absl::Status CheckCouponUsable(const v1::Coupon& coupon, absl::Time now) {
  switch (StatusAt(coupon, now)) {
    case v1::COUPON_STATUS_RESERVED:
      return absl::FailedPreconditionError(
          absl::StrCat("coupon_id: the coupon is held by order ", coupon.order_id(),
                       " until that order is delivered or cancelled"));
    case v1::COUPON_STATUS_REDEEMED:
      return absl::FailedPreconditionError(
          absl::StrCat("coupon_id: the coupon was used by order ", coupon.order_id()));
    case v1::COUPON_STATUS_EXPIRED:
      return absl::FailedPreconditionError(absl::StrCat(
          "coupon_id: the coupon expired at ",
          absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", api::FromTimestamp(coupon.expire_time()),
                           absl::UTCTimeZone())));
    default: return absl::OkStatus();
  }
}

v1::CouponReservation NewReservation(const v1::ReserveCouponRequest& req, const v1::Coupon& coupon,
                                     const CouponDiscount& discount, absl::Time now) {
  v1::CouponReservation r;
  r.set_customer_id(req.customer_id());
  r.set_coupon_id(coupon.coupon_id());
  r.set_order_id(req.order_id());
  r.mutable_discount()->set_amount_minor(discount.amount);
  r.mutable_discount()->set_currency(coupon.value().currency());
  r.set_rule(discount.rule);
  r.set_status(v1::RESERVATION_STATUS_RESERVED);
  api::SetTimestamp(now, r.mutable_reserve_time());
  api::SetTimestamp(now, r.mutable_update_time());
  return r;
}

}  // namespace

absl::Status LoyaltyService::Reserve(AccountSession& session, const v1::ReserveCouponRequest& req,
                                     const std::string& abandoned_order, absl::Time now,
                                     v1::CouponReservation* out) {
  CRM_ASSIGN_OR_RETURN(auto held, session.Reservation(req.order_id()));
  if (held.has_value()) {
    CRM_RETURN_IF_ERROR(CheckRetriedReservation(*held, req));
    *out = *held;  // a retry: the first reservation
    return absl::OkStatus();
  }
  if (!abandoned_order.empty()) {
    CRM_RETURN_IF_ERROR(
        EndHold(session, abandoned_order, v1::RESERVATION_STATUS_RELEASED, now).status());
  }
  CRM_ASSIGN_OR_RETURN(auto found, session.Coupon(req.coupon_id()));
  // The same answer whether the coupon does not exist or is another customer's.
  if (!found.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("coupon_id: the customer has no coupon \"", req.coupon_id(), "\""));
  }
  v1::Coupon coupon = *std::move(found);
  CRM_RETURN_IF_ERROR(CheckCouponUsable(coupon, now));
  CRM_ASSIGN_OR_RETURN(const CouponDiscount discount, DiscountFor(coupon, req.items()));
  v1::CouponReservation r = NewReservation(req, coupon, discount, now);
  CRM_RETURN_IF_ERROR(session.PutReservation(r));
  coupon.set_status(v1::COUPON_STATUS_AVAILABLE);
  if (SingleUse(coupon)) {
    coupon.set_status(v1::COUPON_STATUS_RESERVED);
    coupon.set_order_id(req.order_id());
  }
  session.Add(std::move(coupon));
  *out = std::move(r);
  return absl::OkStatus();
}

absl::StatusOr<bool> LoyaltyService::EndHold(AccountSession& session, const std::string& order_id,
                                             v1::ReservationStatus end, absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto held, session.Reservation(order_id));
  if (!held.has_value() || held->status() != v1::RESERVATION_STATUS_RESERVED) return false;
  held->set_status(end);
  api::SetTimestamp(now, held->mutable_update_time());
  CRM_RETURN_IF_ERROR(session.PutReservation(*held));
  CRM_ASSIGN_OR_RETURN(auto coupon, session.Coupon(held->coupon_id()));
  if (!coupon.has_value()) return absl::DataLossError("a reservation names a missing coupon");
  if (end == v1::RESERVATION_STATUS_REDEEMED) {
    coupon->set_redeemed_count(coupon->redeemed_count() + 1);
    if (SingleUse(*coupon)) coupon->set_status(v1::COUPON_STATUS_REDEEMED);
  } else if (SingleUse(*coupon) && coupon->order_id() == order_id) {
    coupon->set_status(v1::COUPON_STATUS_AVAILABLE);
    coupon->clear_order_id();
  }
  session.Add(*std::move(coupon));
  return true;
}

grpc::ServerUnaryReactor* LoyaltyService::ChangeMember(
    Ctx* ctx, const std::string& customer_id,
    absl::AnyInvocable<absl::Status(AccountSession&, const v1::LoyaltyRules& rules)> change) {
  return FinishOn(
      *writes_, ctx, [this, customer_id, change = std::move(change)]() mutable -> absl::Status {
        CRM_RETURN_IF_ERROR(CheckCustomer(customer_id));
        const auto rules = rules_->Get();
        return ChangeAccount(customer_id,
                             [&](AccountSession& session) { return change(session, *rules); });
      });
}

absl::Status LoyaltyService::Maintain(v1::RunMaintenanceResponse* out) {
  const absl::Time now = clock_->Now();
  const auto rules = rules_->Get();
  CRM_RETURN_IF_ERROR(ExpireDuePoints(now, out));
  // Tiers move as growth leaves the 12-month window.
  return ReevaluateStaleTiers(*rules, now, out);
}

absl::Status LoyaltyService::ExpireDuePoints(absl::Time now, v1::RunMaintenanceResponse* out) {
  CRM_ASSIGN_OR_RETURN(auto due, store_->CustomersWithExpiringPoints(now));
  for (const std::string& cid : due) {
    int64_t expired = 0;
    absl::Status s = ChangeAccount(cid, [&](AccountSession& session) -> absl::Status {
      expired = 0;
      for (auto& e : ExpirePoints(session.account(), session.lots(), now)) {
        expired -= e.points();
        session.Add(std::move(e));
      }
      return absl::OkStatus();
    });
    if (absl::IsNotFound(s)) continue;  // erased meanwhile
    if (!s.ok()) return s;
    if (expired > 0) {
      out->set_points_expired(out->points_expired() + expired);
      out->set_accounts_with_expired_points(out->accounts_with_expired_points() + 1);
    }
  }
  return absl::OkStatus();
}

absl::Status LoyaltyService::ReevaluateStaleTiers(const v1::LoyaltyRules& rules, absl::Time now,
                                                  v1::RunMaintenanceResponse* out) {
  std::vector<std::string> stale;
  CRM_RETURN_IF_ERROR(store_->ForEachAccount([&](const internal::LoyaltyAccount& a) {
    if (!a.erased() &&
        TierRuleFor(rules, RollingGrowth(a, now, rules.growth().window_days())).tier() !=
            a.tier()) {
      stale.push_back(a.customer_id());
    }
    return true;
  }));
  for (const std::string& cid : stale) {
    AccountSession::Effects effects;
    absl::Status s = ChangeAccount(
        cid,
        [&](AccountSession& session) -> absl::Status {
          ApplyTierChange(session, rules, now);
          return absl::OkStatus();
        },
        &effects);
    if (absl::IsNotFound(s)) continue;
    if (!s.ok()) return s;
    out->set_tier_changes(out->tier_changes() + static_cast<int32_t>(effects.tier_changes.size()));
  }
  return absl::OkStatus();
}

absl::Status LoyaltyService::ChangeAccount(const std::string& customer_id,
                                           absl::FunctionRef<absl::Status(AccountSession&)> change,
                                           AccountSession::Effects* done) {
  AccountSession::Effects effects;
  CRM_RETURN_IF_ERROR(
      store_->WithAccount(customer_id, [&](AccountSession& session) -> absl::Status {
        CRM_RETURN_IF_ERROR(change(session));
        // Taken from the attempt that commits: Store::Transact may run the body again.
        effects = session.effects();
        return absl::OkStatus();
      }));
  Committed(effects);
  if (done != nullptr) *done = std::move(effects);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* LoyaltyService::RunMaintenance(Ctx* ctx, const v1::RunMaintenanceRequest*,
                                                         v1::RunMaintenanceResponse* resp) {
  return FinishOn(*writes_, ctx, [this, resp] { return Maintain(resp); });
}

absl::Status LoyaltyService::HandleEvent(store::Transaction& txn, const v1::Event& event) {
  const std::string& cid = event.customer_id();
  if (event.has_customer_erased()) return ForgetMember(txn, cid);
  const auto rules = rules_->Get();
  const absl::Time now = clock_->Now();
  // Each kind of event changes the account in its own step, which answers whether it changed
  // anything (a redelivered event does not).
  std::function<absl::StatusOr<bool>(AccountSession&)> step;
  if (event.has_order_delivered()) {
    step = [&](AccountSession& session) -> absl::StatusOr<bool> {
      // A delivered order's coupon is used for good.
      CRM_ASSIGN_OR_RETURN(const bool redeemed, EndHold(session, event.order_delivered().order_id(),
                                                        v1::RESERVATION_STATUS_REDEEMED, now));
      CRM_ASSIGN_OR_RETURN(const bool granted,
                           GrantForDelivery(session, event.order_delivered(),
                                            api::FromTimestamp(event.occur_time()), *rules, now));
      return redeemed || granted;
    };
  } else if (event.has_order_cancelled()) {
    // Most cancelled orders hold no coupon: those touch no account.
    CRM_ASSIGN_OR_RETURN(const bool holds,
                         store_->HasReservation(txn, cid, event.order_cancelled().order_id()));
    if (!holds) return absl::OkStatus();
    step = [&](AccountSession& session) {
      return EndHold(session, event.order_cancelled().order_id(), v1::RESERVATION_STATUS_RELEASED,
                     now);
    };
  } else if (event.has_order_refunded()) {
    step = [&](AccountSession& session) {
      return TakeBackForRefund(session, event.order_refunded(), *rules, now);
    };
  } else if (event.has_review_submitted()) {
    step = [&](AccountSession& session) {
      return RewardReview(session, event.review_submitted(), *rules, now);
    };
  } else {
    return absl::OkStatus();
  }
  absl::Status s = store_->WithAccountIn(txn, cid, [&](AccountSession& session) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(const bool changed, step(session));
    if (!changed) return absl::OkStatus();
    ApplyTierChange(session, *rules, now);
    CountOnCommit(session);
    return absl::OkStatus();
  });
  // Events of an erased customer have nothing left to change.
  if (absl::IsNotFound(s)) return absl::OkStatus();
  return s;
}

absl::Status LoyaltyService::ForgetMember(store::Transaction& txn, const std::string& customer_id) {
  v1::Tier left = v1::TIER_UNSPECIFIED;
  CRM_RETURN_IF_ERROR(store_->Anonymise(txn, customer_id, &left));
  if (left != v1::TIER_UNSPECIFIED) {
    txn.OnFinish([this, left](bool committed) {
      if (!committed) return;
      metrics_.members.Add({{"tier", TierLabel(left)}}).Decrement();
      UpdateTopTierShare();
    });
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> LoyaltyService::GrantForDelivery(AccountSession& session,
                                                      const v1::OrderDelivered& d, absl::Time when,
                                                      const v1::LoyaltyRules& rules,
                                                      absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto grant, session.Grant(d.order_id()));
  if (grant.has_value()) return false;  // granted before
  ApplyTierChange(session, rules, now);
  const v1::TierRule& tier =
      TierRuleFor(rules, RollingGrowth(session.account(), now, rules.growth().window_days()));
  internal::OrderGrant g;
  g.set_order_id(d.order_id());
  g.set_growth_day(GrowthDay(when));
  api::SetTimestamp(when, g.mutable_grant_time());
  int64_t growth = 0, points = 0;
  std::vector<std::string> growth_rules, points_rules;
  // A coupon's discount lowers what was paid (items_amount) below the items' list value: each item
  // earns on its share of what was paid, rounded down.
  int64_t list = 0;
  for (const auto& item : d.items()) list += item.unit_price().amount_minor() * item.quantity();
  const int64_t paid = d.items_amount().amount_minor();
  const bool discounted = paid > 0 && paid < list;
  for (const auto& item : d.items()) {
    int64_t amount = item.unit_price().amount_minor() * item.quantity();
    if (discounted) amount = static_cast<int64_t>(absl::int128(amount) * paid / list);
    std::string gr, pr;
    internal::ItemGrant ig;
    ig.set_quantity(item.quantity());
    ig.set_growth(GrowthForPurchase(rules, item.category(), amount, &gr));
    ig.set_points(PointsForPurchase(rules, item.category(), amount,
                                    tier.benefits().points_multiplier_percent(), &pr));
    growth += ig.growth();
    points += ig.points();
    growth_rules.push_back(gr);
    points_rules.push_back(pr);
    auto& slot = (*g.mutable_items())[item.item_id()];
    slot.set_quantity(slot.quantity() + ig.quantity());
    slot.set_growth(slot.growth() + ig.growth());
    slot.set_points(slot.points() + ig.points());
  }
  CRM_RETURN_IF_ERROR(session.PutGrant(g));
  const std::string source = absl::StrCat("order:", d.order_id());
  session.Add(Growth(session.account(), growth, v1::GROWTH_SOURCE_PURCHASE, source, d.order_id(),
                     absl::StrJoin(growth_rules, "; "), now, g.growth_day(),
                     rules.growth().window_days()));
  if (points > 0) {
    for (auto& e : EarnPoints(session.account(), session.lots(), points, v1::POINTS_SOURCE_PURCHASE,
                              source, d.order_id(), absl::StrJoin(points_rules, "; "),
                              "points for a delivered order", when)) {
      session.Add(std::move(e));
    }
  }
  return true;
}

absl::StatusOr<bool> LoyaltyService::TakeBackForRefund(AccountSession& session,
                                                       const v1::OrderRefunded& r,
                                                       const v1::LoyaltyRules& rules,
                                                       absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto grant, session.Grant(r.order_id()));
  if (!grant.has_value()) return false;  // the order granted nothing here
  const std::string source = absl::StrCat("refund:", r.return_id());
  CRM_ASSIGN_OR_RETURN(auto seen, session.Source("growth", source));
  if (seen.has_value()) return false;
  internal::OrderGrant g = *grant;
  int64_t growth = 0, points = 0;
  for (const auto& item : r.items()) {
    auto it = g.mutable_items()->find(item.item_id());
    if (it == g.mutable_items()->end()) continue;
    const ItemReversal rev = ReverseItem(it->second, item.quantity());
    growth += rev.growth;
    points += rev.points;
  }
  CRM_RETURN_IF_ERROR(session.PutGrant(g));
  // Counted on the day the purchase counted, so it leaves the window together with it.
  session.Add(
      Growth(session.account(), -growth, v1::GROWTH_SOURCE_REFUND, source, r.order_id(),
             absl::StrCat("a refund takes back exactly the ", growth, " growth its items earned"),
             now, g.growth_day(), rules.growth().window_days()));
  for (auto& e : ReversePoints(session.account(), session.lots(), points,
                               api::FromTimestamp(g.grant_time()), r.order_id(), source, now)) {
    session.Add(std::move(e));
  }
  return true;
}

absl::StatusOr<bool> LoyaltyService::RewardReview(AccountSession& session,
                                                  const v1::ReviewSubmitted& rv,
                                                  const v1::LoyaltyRules& rules, absl::Time now) {
  const std::string source = absl::StrCat("review:", rv.review_id());
  CRM_ASSIGN_OR_RETURN(auto seen, session.Source("points", source));
  if (seen.has_value()) return false;
  for (auto& e : EarnPoints(session.account(), session.lots(), rules.points().per_review(),
                            v1::POINTS_SOURCE_REVIEW, source, rv.order_id(),
                            absl::StrCat("review: ", rules.points().per_review(), " points"),
                            "thank you for your review", now)) {
    session.Add(std::move(e));
  }
  session.Add(Growth(session.account(), rules.growth().per_review(), v1::GROWTH_SOURCE_REVIEW,
                     source, rv.order_id(), absl::StrCat("review: ", rules.growth().per_review()),
                     now, GrowthDay(now), rules.growth().window_days()));
  return true;
}

absl::StatusOr<bool> LoyaltyService::RewardReferral(AccountSession& session,
                                                    const std::string& source,
                                                    const v1::LoyaltyRules& rules, absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto seen, session.Source("points", source));
  if (seen.has_value()) return false;
  for (auto& e : EarnPoints(session.account(), session.lots(), rules.points().per_referral(),
                            v1::POINTS_SOURCE_REFERRAL, source, "", "referral points",
                            "a customer you referred joined", now)) {
    session.Add(std::move(e));
  }
  session.Add(Growth(session.account(), rules.growth().per_referral(), v1::GROWTH_SOURCE_REFERRAL,
                     source, "", absl::StrCat("referral: ", rules.growth().per_referral()), now,
                     GrowthDay(now), rules.growth().window_days()));
  return true;
}

}  // namespace crm::loyalty
