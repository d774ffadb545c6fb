// CustomerProfileService's segment, churn and retention calls, and its event handler: the half of
// the service that learns from other services (see insights.h for the model).
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/api/view_sections.h"
#include "libs/base/status_macros.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "libs/store/idempotency.h"
#include "services/customer_profile/customer_profile_service.h"

namespace crm::customer_profile {
namespace {

using rpc::Finish;
using rpc::FinishOn;

// Resume point of an at-risk page: the last entry's place in the order (priority, score, id).
std::string AtRiskPosition(const InsightsRefresher::AtRisk& a) {
  return absl::StrFormat("%a|%a|%s", a.priority, static_cast<double>(a.score), a.customer_id);
}

bool ParsePosition(absl::string_view text, InsightsRefresher::AtRisk* out) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits('|', 2));
  if (parts.size() != 3) return false;
  char* end = nullptr;
  out->priority = std::strtod(parts[0].c_str(), &end);
  if (end == parts[0].c_str()) return false;
  out->score = static_cast<float>(std::strtod(parts[1].c_str(), &end));
  if (end == parts[1].c_str()) return false;
  out->customer_id = parts[2];
  return true;
}

// The snapshot's order: true when `a` comes before `b`.
bool Before(const InsightsRefresher::AtRisk& a, const InsightsRefresher::AtRisk& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  if (a.score != b.score) return a.score > b.score;
  return a.customer_id < b.customer_id;
}

// Where an at-risk listing stands: the page and, past the first page, the entry it resumes after.
struct AtRiskPage {
  rpc::PageRequest page;
  std::optional<InsightsRefresher::AtRisk> resume;
};

absl::StatusOr<AtRiskPage> AtRiskPageOf(const v1::ListAtRiskCustomersRequest& req) {
  if (!v1::RfmSegment_IsValid(req.segment())) return api::Invalid("segment", "unknown segment");
  if (!v1::BuyerLevel_IsValid(req.buyer_level())) {
    return api::Invalid("buyer_level", "unknown buyer level");
  }
  AtRiskPage at_risk;
  CRM_ASSIGN_OR_RETURN(
      at_risk.page, rpc::PageOf(req.page_size(), req.page_token(),
                                absl::StrCat("at-risk/", req.segment(), "/", req.buyer_level(), "/",
                                             req.key_customers_only()),
                                {50, 1000}));
  if (!at_risk.page.after.empty()) {
    InsightsRefresher::AtRisk resume;
    if (!ParsePosition(at_risk.page.after, &resume)) {
      return api::Invalid("page_token", "does not belong to this listing");
    }
    at_risk.resume = std::move(resume);
  }
  return at_risk;
}

// Whether an at-risk customer is in the listing's segment, buyer level and key-customer choice.
bool Matches(const v1::ListAtRiskCustomersRequest& req, const InsightsRefresher::AtRisk& a) {
  return (req.segment() == v1::RFM_SEGMENT_UNSPECIFIED || a.segment == req.segment()) &&
         (req.buyer_level() == v1::BUYER_LEVEL_UNSPECIFIED || a.level == req.buyer_level()) &&
         (!req.key_customers_only() || a.key_customer);
}

void FillAtRiskCustomer(const InsightsRefresher::AtRisk& a, const v1::CustomerInsights& insights,
                        v1::AtRiskCustomer* out) {
  out->set_customer_id(a.customer_id);
  out->set_churn_score(insights.churn().score());
  *out->mutable_reasons() = insights.churn().reasons();
  *out->mutable_value_last_12_months() = insights.facts().net_spend_last_12_months();
  out->set_priority(a.priority);
  *out->mutable_rfm() = insights.rfm();
  out->set_buyer_level(insights.buyer_level());
  out->set_key_customer(insights.key_customer());
  *out->mutable_last_order_time() = insights.facts().last_order_time();
}

absl::Status ValidateRetentionAction(const v1::RecordRetentionActionRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  if (req.type() == v1::RETENTION_ACTION_TYPE_UNSPECIFIED ||
      !v1::RetentionActionType_IsValid(req.type())) {
    return api::Invalid("type", "must be COUPON, DEDICATED_AGENT or POINTS");
  }
  return api::RequiredText("reference", req.reference(), 128);
}

// A retention action as recorded: pending until an order inside its window retains the customer,
// with the churn score it was taken against.
v1::RetentionAction NewRetentionAction(const v1::RecordRetentionActionRequest& req,
                                       const std::string& agent_id,
                                       const v1::CustomerInsights& insights,
                                       const internal::SegmentRules& rules, absl::Time now) {
  v1::RetentionAction action;
  action.set_customer_id(req.customer_id());
  action.set_type(req.type());
  action.set_reference(req.reference());
  action.set_agent_id(agent_id);
  action.set_note(req.note());
  api::SetTimestamp(now, action.mutable_action_time());
  api::SetTimestamp(now + absl::Hours(24) * rules.retention_window_days(),
                    action.mutable_window_end_time());
  action.set_churn_score(insights.churn().score());
  action.set_outcome(v1::RETENTION_OUTCOME_PENDING);
  return action;
}

}  // namespace

absl::Status CustomerProfileService::HandleEvent(store::Transaction& txn, const v1::Event& event) {
  if (event.customer_id().empty()) return absl::OkStatus();
  bool folded = false;
  absl::Status s = store_->ApplyToHistory(txn, event, [&](internal::CustomerHistory& h) {
    folded = FoldEvent(event, h);
    return folded;
  });
  // A new order moves the population's cut points; the refresher decides when that is worth a
  // refresh.
  if (s.ok() && folded && event.has_order_placed()) {
    txn.OnFinish([this](bool committed) {
      if (committed) insights_->NoteNewOrder();
    });
  }
  return s;
}

absl::StatusOr<v1::CustomerInsights> CustomerProfileService::AssessNow(
    absl::string_view customer_id, absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto history, store_->History(customer_id));
  return Assess(customer_id, Summarise(history, now), insights_->snapshot()->population,
                insights_->rules(), insights_->churn_model(), now);
}

grpc::ServerUnaryReactor* CustomerProfileService::GetCustomerInsights(
    Ctx* ctx, const v1::GetCustomerInsightsRequest* req, v1::CustomerInsights* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto insights = AssessNow(req->customer_id(), clock_->Now());
  if (insights.ok()) *resp = *std::move(insights);
  return Finish(ctx, insights.status());
}

grpc::ServerUnaryReactor* CustomerProfileService::GetCustomerViewSections(
    Ctx* ctx, const v1::GetCustomerViewSectionsRequest* req, v1::CustomerViewSections* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  auto profile = store_->Get(req->customer_id());
  if (!profile.ok()) return Finish(ctx, profile.status());
  *resp->mutable_profile() = *std::move(profile);
  // The insights are staff-only, as GetCustomerInsights is.
  if (rpc::IsCustomer(*caller)) return Finish(ctx, absl::OkStatus());
  auto insights = AssessNow(req->customer_id(), clock_->Now());
  if (insights.ok()) {
    *resp->mutable_insights() = *std::move(insights);
  } else if (!absl::IsNotFound(insights.status())) {
    // The view shows the profile and says why the insights are missing, as it does for a section
    // whose own call failed.
    *resp->add_unavailable() = api::UnavailableSectionOf("insights", insights.status());
  }
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::ListAtRiskCustomers(
    Ctx* ctx, const v1::ListAtRiskCustomersRequest* req, v1::ListAtRiskCustomersResponse* resp) {
  auto page = AtRiskPageOf(*req);
  if (!page.ok()) return Finish(ctx, page.status());
  const absl::Time now = clock_->Now();
  auto snapshot = insights_->snapshot();
  int total = 0;
  const InsightsRefresher::AtRisk* last = nullptr;
  bool more = false;
  for (const auto& a : snapshot->at_risk) {
    if (!Matches(*req, a)) continue;
    ++total;
    if (page->resume.has_value() && !Before(*page->resume, a)) continue;
    if (resp->customers_size() >= page->page.size) {
      more = true;
      continue;
    }
    auto insights = AssessNow(a.customer_id, now);
    if (absl::IsNotFound(insights.status())) continue;  // erased since the refresh
    if (!insights.ok()) return Finish(ctx, insights.status());
    FillAtRiskCustomer(a, *insights, resp->add_customers());
    last = &a;
  }
  resp->set_total_count(total);
  if (more && last != nullptr)
    resp->set_next_page_token(api::EncodePageToken(page->page.scope, AtRiskPosition(*last)));
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::RecordRetentionAction(
    Ctx* ctx, const v1::RecordRetentionActionRequest* req, v1::RetentionAction* resp) {
  if (auto s = ValidateRetentionAction(*req); !s.ok()) return Finish(ctx, s);
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  // The agent who acted is the caller: an agent records only their own actions.
  auto agent_id = rpc::ActingAgent(*caller, "agent_id", req->agent_id());
  if (!agent_id.ok()) return Finish(ctx, agent_id.status());
  if (auto s = api::OptionalText("agent_id", *agent_id, 128); !s.ok()) return Finish(ctx, s);
  if (auto s = api::OptionalText("note", req->note(), 1000); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx,
                  [this, req, resp, now, agent_id = *agent_id,
                   request_id = rpc::ScopedRequestId(*caller, req->request_id())] {
                    CRM_ASSIGN_OR_RETURN(auto insights, AssessNow(req->customer_id(), now));
                    return store_->RecordRetentionAction(
                        req->customer_id(), request_id, store::RequestFingerprint(*req), now,
                        NewRetentionAction(*req, agent_id, insights, insights_->rules(), now),
                        resp);
                  });
}

grpc::ServerUnaryReactor* CustomerProfileService::ListRetentionActions(
    Ctx* ctx, const v1::ListRetentionActionsRequest* req, v1::ListRetentionActionsResponse* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  auto history = store_->History(req->customer_id());
  if (!history.ok()) return Finish(ctx, history.status());
  auto actions = store_->RetentionActions(req->customer_id());
  if (!actions.ok()) return Finish(ctx, actions.status());
  const Summary summary = Summarise(*history, now);
  for (v1::RetentionAction& a : *actions) {
    JudgeRetention(summary, now, a);
    *resp->add_actions() = std::move(a);
  }
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::RefreshInsights(
    Ctx* ctx, const v1::RefreshInsightsRequest*, v1::RefreshInsightsResponse* resp) {
  return FinishOn(*writes_, ctx, [this, resp] {
    if (absl::Status s = insights_->Refresh(); !s.ok()) return s;
    auto snapshot = insights_->snapshot();
    resp->set_customers(static_cast<int32_t>(snapshot->kpis.customers));
    resp->set_at_risk_customers(static_cast<int32_t>(snapshot->kpis.at_risk_customers));
    return absl::OkStatus();
  });
}

}  // namespace crm::customer_profile
