#include "services/customer_profile/insights.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::customer_profile {
namespace {

constexpr absl::Duration kDay = absl::Hours(24);

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

internal::OrderRecord* FindOrder(internal::CustomerHistory& h, absl::string_view order_id) {
  for (auto& o : *h.mutable_orders()) {
    if (o.order_id() == order_id) return &o;
  }
  return nullptr;
}

internal::TicketRecord* FindTicket(internal::CustomerHistory& h, absl::string_view ticket_id) {
  for (auto& t : *h.mutable_tickets()) {
    if (t.ticket_id() == ticket_id) return &t;
  }
  return nullptr;
}

internal::OrderRecord* AddOrder(internal::CustomerHistory& h, absl::string_view order_id,
                                const google::protobuf::Timestamp& placed, const v1::Money& total) {
  auto* o = h.add_orders();
  o->set_order_id(std::string(order_id));
  *o->mutable_placed_time() = placed;
  *o->mutable_total() = total;
  // Events of one customer arrive in commit order, so this is nearly always already last.
  auto* orders = h.mutable_orders();
  std::stable_sort(orders->begin(), orders->end(), [](const auto& a, const auto& b) {
    return api::FromTimestamp(a.placed_time()) < api::FromTimestamp(b.placed_time());
  });
  while (h.orders_size() > kMaxOrdersKept) {
    const internal::OrderRecord& oldest = h.orders(0);
    if (!oldest.cancelled()) {
      h.set_dropped_orders(h.dropped_orders() + 1);
      h.set_dropped_net_spend_minor(h.dropped_net_spend_minor() + oldest.total().amount_minor() -
                                    oldest.refunded_minor());
      if (!IsSet(h.dropped_first_order_time()))
        *h.mutable_dropped_first_order_time() = oldest.placed_time();
    }
    orders->erase(orders->begin());
  }
  return FindOrder(h, order_id);
}

internal::TicketRecord* AddTicket(internal::CustomerHistory& h, absl::string_view ticket_id,
                                  const google::protobuf::Timestamp& opened) {
  auto* t = h.add_tickets();
  t->set_ticket_id(std::string(ticket_id));
  *t->mutable_opened_time() = opened;
  // Oldest resolved ones go first when over the bound; open complaints are always kept.
  auto* tickets = h.mutable_tickets();
  while (h.tickets_size() > kMaxTicketsKept) {
    auto it = std::find_if(tickets->begin(), tickets->end(),
                           [](const auto& x) { return IsSet(x.resolved_time()); });
    if (it == tickets->end()) break;
    tickets->erase(it);
  }
  return FindTicket(h, ticket_id);
}

// Value at the p-th quantile of ascending `v` (not empty).
double Quantile(const std::vector<double>& v, double p) {
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

std::array<double, 4> Cuts(std::vector<double> v) {
  std::array<double, 4> cuts{};
  if (v.empty()) return cuts;
  std::sort(v.begin(), v.end());
  for (int i = 0; i < 4; ++i) cuts[i] = Quantile(v, 0.2 * (i + 1));
  return cuts;
}

// 1 + the cut points `x` is strictly better than + half of those it equals: equal values share a
// score, the middle of the quintiles their group spans. Counting only strict wins gave a crowd of
// equal values the lowest score: when most buyers have one order, or everyone ordered today (a new
// shop), every cut point is the same number and all of them scored 1.
int Score(double x, const std::array<double, 4>& cuts, bool lower_is_better) {
  int better = 0, equal = 0;
  for (double c : cuts) {
    if (x == c) {
      ++equal;
    } else {
      better += lower_is_better ? (x < c) : (x > c);
    }
  }
  return 1 + better + equal / 2;
}

// FoldEvent for an order's events: placed, delivered, a failed delivery, refunded, cancelled.
bool FoldOrderEvent(const v1::Event& e, internal::CustomerHistory& h) {
  using P = v1::Event::PayloadCase;
  switch (e.payload_case()) {
    case P::kOrderPlaced: {
      if (FindOrder(h, e.order_placed().order_id()) != nullptr) return false;
      AddOrder(h, e.order_placed().order_id(), e.occur_time(), e.order_placed().total());
      return true;
    }
    case P::kOrderDelivered: {
      const auto& d = e.order_delivered();
      internal::OrderRecord* o = FindOrder(h, d.order_id());
      // An order placed before this service listened: known from its delivery on.
      if (o == nullptr) o = AddOrder(h, d.order_id(), e.occur_time(), d.items_amount());
      if (o == nullptr || IsSet(o->delivered_time())) return false;
      *o->mutable_delivered_time() =
          IsSet(d.delivered_time()) ? d.delivered_time() : e.occur_time();
      o->set_timeliness(d.timeliness());
      return true;
    }
    case P::kDeliveryFailed: {
      internal::OrderRecord* o = FindOrder(h, e.delivery_failed().order_id());
      if (o == nullptr) return false;
      o->set_delivery_failures(o->delivery_failures() + 1);
      return true;
    }
    case P::kOrderRefunded: {
      internal::OrderRecord* o = FindOrder(h, e.order_refunded().order_id());
      if (o == nullptr) return false;
      o->set_refunded_minor(o->refunded_minor() + e.order_refunded().amount().amount_minor());
      o->set_returns(o->returns() + 1);
      return true;
    }
    case P::kOrderCancelled: {
      internal::OrderRecord* o = FindOrder(h, e.order_cancelled().order_id());
      if (o == nullptr || o->cancelled()) return false;
      o->set_cancelled(true);
      return true;
    }
    default: return false;
  }
}

// FoldEvent for a complaint's events: opened, resolved, rated, a deadline breached.
bool FoldTicketEvent(const v1::Event& e, internal::CustomerHistory& h) {
  using P = v1::Event::PayloadCase;
  switch (e.payload_case()) {
    case P::kTicketOpened: {
      if (FindTicket(h, e.ticket_opened().ticket_id()) != nullptr) return false;
      AddTicket(h, e.ticket_opened().ticket_id(), e.occur_time());
      return true;
    }
    case P::kTicketResolved: {
      internal::TicketRecord* t = FindTicket(h, e.ticket_resolved().ticket_id());
      if (t == nullptr) t = AddTicket(h, e.ticket_resolved().ticket_id(), e.occur_time());
      if (t == nullptr || IsSet(t->resolved_time())) return false;
      *t->mutable_resolved_time() = e.occur_time();
      return true;
    }
    case P::kSatisfactionRated: {
      internal::TicketRecord* t = FindTicket(h, e.satisfaction_rated().ticket_id());
      if (t == nullptr) return false;
      t->set_csat(e.satisfaction_rated().csat());
      return true;
    }
    case P::kSlaBreached: {
      internal::TicketRecord* t = FindTicket(h, e.sla_breached().ticket_id());
      if (t == nullptr) t = AddTicket(h, e.sla_breached().ticket_id(), e.occur_time());
      if (t == nullptr) return false;
      t->set_sla_breaches(t->sla_breaches() + 1);
      return true;
    }
    default: return false;
  }
}

// Summarise's steps. Orders: how many, what they were worth net of refunds, how their deliveries
// went, the times of those not cancelled, and the last 180 days' trouble the churn model weighs.
void SummariseOrders(const internal::CustomerHistory& h, absl::Time now, Summary& s) {
  v1::PurchaseFacts& f = s.facts;
  const absl::Time year_ago = now - 365 * kDay, half_year_ago = now - 180 * kDay;
  std::string currency;
  int64_t net = h.dropped_net_spend_minor();
  int orders = h.dropped_orders();
  int on_time = 0, late = 0, failures = 0, returns = 0;
  for (const auto& o : h.orders()) {
    const absl::Time placed = api::FromTimestamp(o.placed_time());
    if (currency.empty()) currency = o.total().currency();
    failures += o.delivery_failures();
    returns += o.returns();
    if (IsSet(o.delivered_time())) {
      if (o.timeliness() == v1::TIMELINESS_LATE) {
        ++late;
      } else {
        ++on_time;
      }
    }
    if (placed >= half_year_ago) {
      ++s.churn.orders_180d;
      s.churn.failed_or_late_deliveries +=
          o.delivery_failures() + (o.timeliness() == v1::TIMELINESS_LATE ? 1 : 0);
      s.churn.returns += o.returns();
    }
    if (o.cancelled()) continue;
    ++orders;
    const int64_t value = o.total().amount_minor() - o.refunded_minor();
    net += value;
    s.order_times.push_back(placed);
    if (placed >= year_ago) {
      f.set_orders_last_12_months(f.orders_last_12_months() + 1);
      s.value_12m_minor += value;
    }
  }
  f.set_orders(orders);
  f.mutable_net_spend()->set_amount_minor(net);
  f.mutable_net_spend()->set_currency(currency);
  f.mutable_net_spend_last_12_months()->set_amount_minor(s.value_12m_minor);
  f.mutable_net_spend_last_12_months()->set_currency(currency);
  f.set_deliveries_on_time(on_time);
  f.set_deliveries_late(late);
  f.set_delivery_failures(failures);
  f.set_returns(returns);
}

// The rhythm: first and last order, whole days since the last, the median days between orders.
void SummariseRhythm(const internal::CustomerHistory& h, absl::Time now, Summary& s) {
  v1::PurchaseFacts& f = s.facts;
  if (IsSet(h.dropped_first_order_time())) {
    *f.mutable_first_order_time() = h.dropped_first_order_time();
  } else if (!s.order_times.empty()) {
    api::SetTimestamp(s.order_times.front(), f.mutable_first_order_time());
  }
  if (!s.order_times.empty()) {
    api::SetTimestamp(s.order_times.back(), f.mutable_last_order_time());
    // Whole days: customers who bought the same day share a recency score however many seconds
    // apart.
    s.days_since_last_order =
        std::max(0.0, std::floor(absl::ToDoubleHours(now - s.order_times.back()) / 24));
  }
  if (s.order_times.size() >= 2) {
    std::vector<double> gaps;
    for (size_t i = 1; i < s.order_times.size(); ++i) {
      gaps.push_back(absl::ToDoubleHours(s.order_times[i] - s.order_times[i - 1]) / 24);
    }
    std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
    f.set_typical_days_between_orders(gaps[gaps.size() / 2]);
  }
}

// Complaints: how many, still open, deadlines breached (the last 180 days' for churn), and the
// average satisfaction.
void SummariseComplaints(const internal::CustomerHistory& h, absl::Time now, Summary& s) {
  v1::PurchaseFacts& f = s.facts;
  const absl::Time half_year_ago = now - 180 * kDay;
  int csat_sum = 0, csat_count = 0;
  for (const auto& t : h.tickets()) {
    f.set_complaints(f.complaints() + 1);
    f.set_sla_breaches(f.sla_breaches() + t.sla_breaches());
    if (!IsSet(t.resolved_time())) f.set_open_complaints(f.open_complaints() + 1);
    if (t.csat() > 0) {
      csat_sum += t.csat();
      ++csat_count;
    }
    if (api::FromTimestamp(t.opened_time()) >= half_year_ago)
      s.churn.sla_breaches += t.sla_breaches();
  }
  if (csat_count > 0) f.set_csat_average(static_cast<double>(csat_sum) / csat_count);
}

}  // namespace

bool FoldEvent(const v1::Event& e, internal::CustomerHistory& h) {
  using P = v1::Event::PayloadCase;
  switch (e.payload_case()) {
    case P::kOrderPlaced:
    case P::kOrderDelivered:
    case P::kDeliveryFailed:
    case P::kOrderRefunded:
    case P::kOrderCancelled: return FoldOrderEvent(e, h);
    case P::kReviewSubmitted:
      h.set_reviews(h.reviews() + 1);
      if (e.review_submitted().rating() <= 2) h.set_low_reviews(h.low_reviews() + 1);
      return true;
    case P::kTicketOpened:
    case P::kTicketResolved:
    case P::kSatisfactionRated:
    case P::kSlaBreached: return FoldTicketEvent(e, h);
    default: return false;
  }
}

internal::SegmentRules DefaultSegmentRules() {
  internal::SegmentRules r;
  auto add = [&](v1::BuyerLevel level, int orders, int64_t spend_minor) {
    auto* t = r.add_buyer_levels();
    t->set_level(level);
    t->set_min_orders(orders);
    t->set_min_net_spend_minor(spend_minor);
  };
  add(v1::BUYER_LEVEL_JUNIOR, 2, 200'00);
  add(v1::BUYER_LEVEL_INTERMEDIATE, 5, 1'000'00);
  add(v1::BUYER_LEVEL_SENIOR, 12, 5'000'00);
  add(v1::BUYER_LEVEL_VETERAN, 24, 20'000'00);
  return *ValidateSegmentRules(r);
}

absl::StatusOr<internal::SegmentRules> ValidateSegmentRules(internal::SegmentRules r) {
  if (r.at_risk_threshold() == 0) r.set_at_risk_threshold(0.5);
  if (r.retention_window_days() == 0) r.set_retention_window_days(30);
  if (r.key_customer_share() == 0) r.set_key_customer_share(0.2);
  if (!(r.at_risk_threshold() > 0 && r.at_risk_threshold() < 1)) {
    return api::Invalid("at_risk_threshold", "must be between 0 and 1");
  }
  if (r.retention_window_days() < 1 || r.retention_window_days() > 365) {
    return api::Invalid("retention_window_days", "must be 1-365");
  }
  if (!(r.key_customer_share() > 0 && r.key_customer_share() <= 1)) {
    return api::Invalid("key_customer_share", "must be in (0, 1]");
  }
  auto* levels = r.mutable_buyer_levels();
  std::sort(levels->begin(), levels->end(),
            [](const auto& a, const auto& b) { return a.level() < b.level(); });
  for (int i = 0; i < r.buyer_levels_size(); ++i) {
    const auto& t = r.buyer_levels(i);
    const std::string field = absl::StrCat("buyer_levels[", i, "]");
    if (t.level() <= v1::BUYER_LEVEL_NEWBIE || !v1::BuyerLevel_IsValid(t.level())) {
      return api::Invalid(field + ".level",
                          "must be JUNIOR, INTERMEDIATE, SENIOR or VETERAN (newbie is below all)");
    }
    if (t.min_orders() < 0 || t.min_net_spend_minor() < 0) {
      return api::Invalid(field, "thresholds must not be negative");
    }
    if (i > 0) {
      const auto& prev = r.buyer_levels(i - 1);
      if (prev.level() == t.level()) return api::Invalid(field + ".level", "appears twice");
      if (t.min_orders() < prev.min_orders() ||
          t.min_net_spend_minor() < prev.min_net_spend_minor()) {
        return api::Invalid(field, "a higher level must not need less than a lower one");
      }
    }
  }
  return r;
}

absl::StatusOr<internal::SegmentRules> ReadSegmentRulesFile(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(auto contents, text::ReadFile(path));
  internal::SegmentRules rules;
  if (!google::protobuf::TextFormat::ParseFromString(contents, &rules)) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment rules file ", path, ": not a text-format SegmentRules"));
  }
  auto valid = ValidateSegmentRules(std::move(rules));
  if (!valid.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("segment rules file ", path, ": ", valid.status().message()));
  return valid;
}

Summary Summarise(const internal::CustomerHistory& h, absl::Time now) {
  Summary s;
  SummariseOrders(h, now, s);
  SummariseRhythm(h, now, s);
  s.facts.set_reviews(h.reviews());
  s.facts.set_low_reviews(h.low_reviews());
  SummariseComplaints(h, now, s);
  s.churn.order_times = s.order_times;
  s.churn.value_12m_minor = s.value_12m_minor;
  s.churn.open_complaints = s.facts.open_complaints();
  return s;
}

void PopulationBuilder::Add(const Summary& s) {
  if (s.order_times.empty()) return;
  days_since_.push_back(static_cast<float>(s.days_since_last_order));
  frequency_.push_back(s.facts.orders_last_12_months());
  monetary_.push_back(s.value_12m_minor);
}

Population PopulationBuilder::Build(const internal::SegmentRules& rules, absl::Time now) {
  Population p;
  p.computed = now;
  p.buyers = static_cast<int64_t>(days_since_.size());
  p.days_since_cuts = Cuts(std::vector<double>(days_since_.begin(), days_since_.end()));
  p.frequency_cuts = Cuts(std::vector<double>(frequency_.begin(), frequency_.end()));
  p.monetary_cuts = Cuts(std::vector<double>(monetary_.begin(), monetary_.end()));
  std::vector<int64_t> values;
  for (int64_t v : monetary_) {
    if (v > 0) values.push_back(v);
  }
  if (!values.empty()) {
    std::sort(values.begin(), values.end(), std::greater<>());
    const size_t keys =
        std::max<size_t>(1, static_cast<size_t>(std::ceil(rules.key_customer_share() *
                                                          static_cast<double>(values.size()))));
    p.key_customer_min_value = values[std::min(keys, values.size()) - 1];
  }
  return p;
}

v1::BuyerLevel LevelOf(const Summary& s, const internal::SegmentRules& rules) {
  v1::BuyerLevel level = v1::BUYER_LEVEL_NEWBIE;
  for (const auto& t : rules.buyer_levels()) {
    if (s.facts.orders_last_12_months() >= t.min_orders() &&
        s.value_12m_minor >= t.min_net_spend_minor()) {
      level = t.level();
    }
  }
  return level;
}

v1::RfmScores RfmOf(const Summary& s, const Population& p) {
  v1::RfmScores rfm;
  if (s.order_times.empty()) return rfm;
  rfm.set_recency(Score(s.days_since_last_order, p.days_since_cuts, /*lower_is_better=*/true));
  rfm.set_frequency(Score(s.facts.orders_last_12_months(), p.frequency_cuts, false));
  rfm.set_monetary(Score(static_cast<double>(s.value_12m_minor), p.monetary_cuts, false));
  const int f = rfm.frequency();
  // Who just ordered is not slipping away, however recent everyone else's orders are.
  const int r =
      s.days_since_last_order < kJustOrderedDays ? std::max(rfm.recency(), 3) : rfm.recency();
  if (r >= 4 && f >= 4) {
    rfm.set_segment(v1::RFM_SEGMENT_CHAMPIONS);
  } else if (r >= 3 && f >= 3) {
    rfm.set_segment(v1::RFM_SEGMENT_LOYAL);
  } else if (r >= 4) {
    rfm.set_segment(v1::RFM_SEGMENT_NEW);
  } else if (r == 3) {
    rfm.set_segment(v1::RFM_SEGMENT_NEEDS_ATTENTION);
  } else if (f >= 3) {
    rfm.set_segment(v1::RFM_SEGMENT_AT_RISK);
  } else {
    rfm.set_segment(v1::RFM_SEGMENT_HIBERNATING);
  }
  return rfm;
}

v1::CustomerInsights Assess(absl::string_view customer_id, const Summary& s, const Population& p,
                            const internal::SegmentRules& rules,
                            const internal::ChurnModel& churn_model, absl::Time now) {
  v1::CustomerInsights out;
  out.set_customer_id(std::string(customer_id));
  *out.mutable_rfm() = RfmOf(s, p);
  out.set_buyer_level(LevelOf(s, rules));
  out.set_key_customer(p.key_customer_min_value > 0 &&
                       s.value_12m_minor >= p.key_customer_min_value);
  const ChurnScore churn = ScoreChurn(churn_model, s.churn, now);
  out.mutable_churn()->set_score(churn.score);
  for (const std::string& r : churn.reasons) out.mutable_churn()->add_reasons(r);
  // Someone who never bought cannot stop buying: a prospect, not a churn risk.
  out.mutable_churn()->set_at_risk(!s.order_times.empty() &&
                                   s.days_since_last_order >= kJustOrderedDays &&
                                   churn.score >= rules.at_risk_threshold());
  *out.mutable_facts() = s.facts;
  if (p.computed != absl::InfinitePast()) {
    api::SetTimestamp(p.computed, out.mutable_population_time());
  }
  return out;
}

void JudgeRetention(const Summary& s, absl::Time now, v1::RetentionAction& action) {
  const absl::Time taken = api::FromTimestamp(action.action_time());
  const absl::Time window_end = api::FromTimestamp(action.window_end_time());
  for (absl::Time t : s.order_times) {
    if (t > taken && t <= window_end) {
      action.set_outcome(v1::RETENTION_OUTCOME_RETAINED);
      api::SetTimestamp(t, action.mutable_outcome_time());
      return;
    }
  }
  action.clear_outcome_time();
  action.set_outcome(now > window_end ? v1::RETENTION_OUTCOME_LOST : v1::RETENTION_OUTCOME_PENDING);
}

void KpiAccumulator::Add(const internal::CustomerHistory& h, const Summary& s, bool at_risk) {
  ++customers_;
  const absl::Time d90 = now_ - 90 * kDay, d180 = now_ - 180 * kDay;
  if (s.facts.orders() > 0) ++buyers_;
  if (s.facts.orders() > 1) ++repeat_buyers_;
  bool in_cohort = false, came_back = false;
  for (absl::Time t : s.order_times) {
    if (t >= d180 && t < d90) in_cohort = true;
    if (t >= d90 && t <= now_) came_back = true;
  }
  if (in_cohort) {
    ++cohort_;
    if (came_back) ++retained_;
  }
  for (const auto& o : h.orders()) {
    if (IsSet(o.delivered_time()) && api::FromTimestamp(o.delivered_time()) >= d90) {
      ++delivered_;
      if (o.timeliness() == v1::TIMELINESS_ON_TIME) ++on_time_;
    }
  }
  for (const auto& t : h.tickets()) {
    if (t.csat() > 0 && api::FromTimestamp(t.opened_time()) >= d90) {
      csat_sum_ += t.csat();
      ++csat_count_;
    }
    if (IsSet(t.resolved_time()) && api::FromTimestamp(t.resolved_time()) >= d90) {
      ++resolved_;
      if (t.sla_breaches() == 0) ++compliant_;
    }
  }
  if (at_risk) ++at_risk_;
}

Kpis KpiAccumulator::Finish() const {
  auto ratio = [](int64_t a, int64_t b) {
    return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
  };
  Kpis k;
  k.customers = customers_;
  k.repeat_purchase_rate = ratio(repeat_buyers_, buyers_);
  k.retention_90d_rate = ratio(retained_, cohort_);
  k.csat_average = ratio(csat_sum_, csat_count_);
  k.on_time_delivery_rate = ratio(on_time_, delivered_);
  k.sla_compliance_rate = ratio(compliant_, resolved_);
  k.at_risk_customers = at_risk_;
  return k;
}

}  // namespace crm::customer_profile
