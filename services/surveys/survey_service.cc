#include "services/surveys/survey_service.h"

#include <functional>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/error_reason.h"
#include "libs/base/status_macros.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "libs/store/idempotency.h"
#include "services/surveys/survey_rules.h"

namespace crm::surveys {
namespace {

using rpc::Finish;

constexpr int kMaxReportDays = 366;
constexpr v1::SurveyKind kKinds[] = {v1::SURVEY_KIND_DELIVERY, v1::SURVEY_KIND_TICKET};
constexpr v1::ServiceStage kStages[] = {v1::SERVICE_STAGE_SHOPPING,
                                        v1::SERVICE_STAGE_PRODUCT_QUALITY,
                                        v1::SERVICE_STAGE_DELIVERY, v1::SERVICE_STAGE_AFTER_SALES};

// A customer acts only on their own surveys (the gateway checks it too; this is the service's own
// fence for any other path in).
absl::Status OwnSurveysOnly(const auth::Caller& caller, const std::string& customer_id) {
  if (rpc::IsCustomer(caller) && caller.customer_id != customer_id) {
    return absl::PermissionDeniedError(
        "customer_id: a customer may only see and answer their own surveys");
  }
  return absl::OkStatus();
}

int64_t Score(const internal::SurveyDayCounts& c, int score) {
  switch (score) {
    case 1: return c.score_1();
    case 2: return c.score_2();
    case 3: return c.score_3();
    case 4: return c.score_4();
    default: return c.score_5();
  }
}

void CountScore(int score, internal::SurveyDayCounts& c) {
  switch (score) {
    case 1: return c.set_score_1(1);
    case 2: return c.set_score_2(1);
    case 3: return c.set_score_3(1);
    case 4: return c.set_score_4(1);
    default: return c.set_score_5(1);
  }
}

void AddTotals(const internal::SurveyDayCounts& c, v1::GetSurveyReportResponse& r) {
  r.set_offered(r.offered() + c.offered());
  r.set_suppressed_no_consent(r.suppressed_no_consent() + c.suppressed_no_consent());
  r.set_suppressed_frequency_cap(r.suppressed_frequency_cap() + c.suppressed_frequency_cap());
  r.set_answered(r.answered() + c.answered());
  r.set_responded(r.responded() + c.responded());
  r.set_promoters(r.promoters() + c.promoters());
  r.set_passives(r.passives() + c.passives());
  r.set_detractors(r.detractors() + c.detractors());
  r.set_referred(r.referred() + c.referred());
  r.set_not_referred(r.not_referred() + c.not_referred());
}

// The ratios of the report's own counts.
v1::SurveyKpis KpisOf(const v1::GetSurveyReportResponse& r, int shard_index) {
  v1::SurveyKpis k;
  k.set_shard_index(shard_index);
  const int64_t nps_answers = r.promoters() + r.passives() + r.detractors();
  if (nps_answers > 0)
    k.set_nps(100.0 * static_cast<double>(r.promoters() - r.detractors()) / nps_answers);
  const int64_t referral_answers = r.referred() + r.not_referred();
  if (referral_answers > 0)
    k.set_referral_rate(static_cast<double>(r.referred()) / referral_answers);
  if (r.offered() > 0) k.set_response_rate(static_cast<double>(r.responded()) / r.offered());
  for (v1::ServiceStage stage : kStages) {
    int64_t answers = 0, points = 0;
    for (const auto& row : r.satisfaction()) {
      if (row.stage() != stage) continue;
      answers += row.count();
      points += row.count() * row.score();
    }
    if (answers == 0) continue;
    auto* s = k.add_satisfaction();
    s->set_stage(stage);
    s->set_answers(answers);
    s->set_mean_score(static_cast<double>(points) / answers);
  }
  return k;
}

// The report of a window's counter rows.
v1::GetSurveyReportResponse Summarise(v1::SurveyKind kind,
                                      const std::vector<SurveyStore::CountRow>& rows,
                                      int shard_index) {
  v1::GetSurveyReportResponse r;
  r.set_kind(kind);
  std::map<std::pair<std::string, int>, internal::SurveyDayCounts> by_question;
  for (const auto& row : rows) {
    if (row.question_id.empty()) {
      AddTotals(row.counts, r);
      continue;
    }
    auto& sum = by_question[{row.question_id, row.stage}];
    sum.set_score_1(sum.score_1() + row.counts.score_1());
    sum.set_score_2(sum.score_2() + row.counts.score_2());
    sum.set_score_3(sum.score_3() + row.counts.score_3());
    sum.set_score_4(sum.score_4() + row.counts.score_4());
    sum.set_score_5(sum.score_5() + row.counts.score_5());
  }
  for (const auto& [question, sum] : by_question) {
    for (int score = 1; score <= 5; ++score) {
      if (Score(sum, score) == 0) continue;
      auto* row = r.add_satisfaction();
      row->set_question_id(question.first);
      row->set_stage(static_cast<v1::ServiceStage>(question.second));
      row->set_score(score);
      row->set_count(Score(sum, score));
    }
  }
  *r.add_kpis() = KpisOf(r, shard_index);
  return r;
}

// Opens `survey` (questions, expire time) when the contact is allowed, else marks it suppressed;
// sets the day count it adds and returns the result as crm_surveys_offered_total names it.
std::string Decide(const v1::ContactDecision& decision,
                   const internal::SurveyDefinition& definition, absl::Time expire,
                   v1::Survey& survey, internal::SurveyDayCounts& delta) {
  if (decision.allowed()) {
    survey.set_status(v1::SURVEY_STATUS_OPEN);
    *survey.mutable_questions() = definition.questions();
    api::SetTimestamp(expire, survey.mutable_expire_time());
    delta.set_offered(1);
    return "offered";
  }
  const bool capped = decision.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP;
  if (capped) {
    delta.set_suppressed_frequency_cap(1);
  } else {
    delta.set_suppressed_no_consent(1);
  }
  survey.set_status(v1::SURVEY_STATUS_SUPPRESSED);
  survey.set_suppressed_reason(capped ? "frequency_cap" : "no_consent");
  return survey.suppressed_reason();
}

// What an NPS or referral answer adds to the day's totals.
void CountTotals(const v1::SurveyQuestion& q, const v1::SurveyAnswer& a,
                 internal::SurveyDayCounts& totals) {
  if (q.kpi() == v1::SURVEY_KPI_LIKELIHOOD_TO_RECOMMEND) {
    if (a.score() >= 9) return totals.set_promoters(1);
    if (a.score() >= 7) return totals.set_passives(1);
    return totals.set_detractors(1);
  }
  if (q.kpi() == v1::SURVEY_KPI_HAS_REFERRED)
    return a.yes() ? totals.set_referred(1) : totals.set_not_referred(1);
}

}  // namespace

v1::Survey AsOf(v1::Survey survey, absl::Time now) {
  if (survey.status() == v1::SURVEY_STATUS_OPEN && survey.has_expire_time() &&
      now >= api::FromTimestamp(survey.expire_time())) {
    survey.set_status(v1::SURVEY_STATUS_EXPIRED);
  }
  return survey;
}

SurveyService::Metrics::Metrics(prometheus::Registry& r)
    : offered(metrics::CounterFamily(
          r, "crm_surveys_offered_total",
          "Surveys due after a delivery or a resolved ticket, by kind and result: offered, "
          "no_consent, frequency_cap (suppressed), no_customer, stale (event older than the "
          "answer period)")),
      answered(
          metrics::CounterFamily(r, "crm_surveys_answered_total", "Surveys answered, by kind")),
      nps(metrics::GaugeFamily(r, "crm_survey_nps",
                               "Net Promoter Score (-100..100) of this shard's answers in the last "
                               "30 days, by kind")),
      referral_rate(metrics::GaugeFamily(
          r, "crm_survey_referral_rate",
          "Share (0-1) of 'have you recommended us' answers that are yes, last 30 days, by kind")),
      response_rate(metrics::GaugeFamily(
          r, "crm_survey_response_rate",
          "Share (0-1) of the surveys offered in the last 30 days that were answered, by kind")),
      satisfaction(metrics::GaugeFamily(
          r, "crm_survey_satisfaction_mean",
          "Mean satisfaction score (1-5) in the last 30 days, by kind and service stage")),
      recommend_answers(metrics::GaugeFamily(
          r, "crm_survey_recommend_answers_30d",
          "Likelihood-to-recommend answers in the last 30 days, by kind and group (promoter 9-10, "
          "passive 7-8, detractor 0-6): sum across shards for NPS")),
      referral_answers(metrics::GaugeFamily(
          r, "crm_survey_referral_answers_30d",
          "'Have you recommended us' answers in the last 30 days, by kind and answer (yes, no)")),
      satisfaction_answers(metrics::GaugeFamily(
          r, "crm_survey_satisfaction_answers_30d",
          "Satisfaction answers in the last 30 days, by kind, service stage and score (1-5): the "
          "distribution")),
      offers(metrics::GaugeFamily(
          r, "crm_survey_offers_30d",
          "Surveys of the last 30 days by kind and outcome (offered, responded, no_consent, "
          "frequency_cap)")) {}

SurveyService::SurveyService(SurveyStore* store, internal::SurveyRules rules, ContactGate gate,
                             Clock* clock, rpc::Executor* writes, prometheus::Registry& registry,
                             int shard_index)
    : store_(store),
      rules_(std::move(rules)),
      gate_(std::move(gate)),
      clock_(clock),
      writes_(writes),
      shard_index_(shard_index),
      metrics_(registry) {}

absl::Status SurveyService::OnEvent(store::Transaction& txn, const v1::Event& event) {
  switch (event.payload_case()) {
    case v1::Event::kOrderDelivered:
      return Offer(txn, event, v1::SURVEY_KIND_DELIVERY, event.order_delivered().order_id());
    case v1::Event::kTicketResolved:
      return Offer(txn, event, v1::SURVEY_KIND_TICKET, event.ticket_resolved().ticket_id());
    default: return absl::OkStatus();
  }
}

absl::Status SurveyService::Offer(store::Transaction& txn, const v1::Event& event,
                                  v1::SurveyKind kind, const std::string& subject_id) {
  if (event.customer_id().empty() || subject_id.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  const absl::Duration period = AnswerPeriodOf(rules_, kind);
  const std::string kind_name = KindName(kind);
  // Counted once the transaction commits (it may run again after a conflict).
  auto count = [&](std::string result) {
    txn.OnFinish([this, kind_name, result = std::move(result)](bool committed) {
      if (!committed) return;
      metrics_.offered.Add({{"kind", kind_name}, {"result", result}}).Increment();
      MaybeRefreshGauges();
    });
  };
  // A delivery or resolution long past (an imported history) is not worth asking about now.
  if (event.has_occur_time() && api::FromTimestamp(event.occur_time()) + period < now) {
    count("stale");
    return absl::OkStatus();
  }
  const std::string survey_id = absl::StrCat(kind_name, "-", subject_id);
  CRM_ASSIGN_OR_RETURN(auto existing, store_->Lock(txn, event.customer_id(), survey_id));
  if (existing.has_value()) return absl::OkStatus();  // one survey per order or ticket
  auto decision =
      gate_(txn, event.customer_id(), absl::StrCat(kSurveyContactPurpose, survey_id), now);
  if (absl::IsNotFound(decision.status())) {
    count("no_customer");
    return absl::OkStatus();
  }
  if (!decision.ok()) return decision.status();

  v1::Survey survey;
  survey.set_survey_id(survey_id);
  survey.set_customer_id(event.customer_id());
  survey.set_kind(kind);
  survey.set_subject_id(subject_id);
  survey.set_rules_version(rules_.version());
  api::SetTimestamp(now, survey.mutable_offer_time());
  internal::SurveyDayCounts delta;
  const std::string result =
      Decide(*decision, DefinitionOf(rules_, kind), now + period, survey, delta);
  CRM_RETURN_IF_ERROR(store_->Put(txn, survey));
  CRM_RETURN_IF_ERROR(
      store_->AddCounts(txn, kind, DayOf(now), v1::SERVICE_STAGE_UNSPECIFIED, "", delta));
  count(result);
  return absl::OkStatus();
}

absl::Status SurveyService::Answer(store::Transaction& txn, const v1::AnswerSurveyRequest& req,
                                   absl::Time now, v1::Survey* out) {
  CRM_ASSIGN_OR_RETURN(auto stored, store_->Lock(txn, req.customer_id(), req.survey_id()));
  if (!stored.has_value() || stored->status() == v1::SURVEY_STATUS_SUPPRESSED) {
    return absl::NotFoundError(
        absl::StrCat("survey_id: the customer has no survey \"", req.survey_id(), "\""));
  }
  v1::Survey survey = AsOf(*std::move(stored), now);
  if (survey.status() == v1::SURVEY_STATUS_ANSWERED) {
    return WithReason(absl::FailedPreconditionError("survey_id: the survey is already answered"),
                      "ALREADY_ANSWERED");
  }
  if (survey.status() == v1::SURVEY_STATUS_EXPIRED) {
    return WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "survey_id: the survey expired at ",
            absl::FormatTime(api::FromTimestamp(survey.expire_time()), absl::UTCTimeZone()))),
        "SURVEY_EXPIRED");
  }
  CRM_RETURN_IF_ERROR(CheckAnswers(survey, req.answers()));
  survey.set_status(v1::SURVEY_STATUS_ANSWERED);
  *survey.mutable_answers() = req.answers();
  api::SetTimestamp(now, survey.mutable_answer_time());
  CRM_RETURN_IF_ERROR(store_->Put(txn, survey));
  CRM_RETURN_IF_ERROR(CountAnswers(txn, survey, now));
  txn.OnFinish([this, kind_name = KindName(survey.kind())](bool committed) {
    if (committed) metrics_.answered.Add({{"kind", kind_name}}).Increment();
  });
  *out = std::move(survey);
  return absl::OkStatus();
}

absl::Status SurveyService::CountAnswers(store::Transaction& txn, const v1::Survey& survey,
                                         absl::Time now) {
  // Answers count on the day they are given; the response on the day of the offer it answers.
  const int64_t today = DayOf(now);
  const v1::SurveyKind kind = survey.kind();
  internal::SurveyDayCounts totals, responded;
  totals.set_answered(1);
  responded.set_responded(1);
  for (const auto& a : survey.answers()) {
    for (const auto& q : survey.questions()) {
      if (q.question_id() != a.question_id()) continue;
      CountTotals(q, a, totals);
      if (q.kpi() != v1::SURVEY_KPI_SATISFACTION) continue;
      internal::SurveyDayCounts score;
      CountScore(a.score(), score);
      CRM_RETURN_IF_ERROR(store_->AddCounts(txn, kind, today, q.stage(), q.question_id(), score));
    }
  }
  CRM_RETURN_IF_ERROR(
      store_->AddCounts(txn, kind, today, v1::SERVICE_STAGE_UNSPECIFIED, "", totals));
  return store_->AddCounts(txn, kind, DayOf(api::FromTimestamp(survey.offer_time())),
                           v1::SERVICE_STAGE_UNSPECIFIED, "", responded);
}

grpc::ServerUnaryReactor* SurveyService::ListSurveys(Ctx* ctx, const v1::ListSurveysRequest* req,
                                                     v1::ListSurveysResponse* resp) {
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = OwnSurveysOnly(*caller, req->customer_id()); !s.ok()) return Finish(ctx, s);
  const bool with_suppressed = !rpc::IsCustomer(*caller);
  const absl::Status listed =
      rpc::ReadCustomerPage(*req, with_suppressed ? "surveys-all" : "surveys", {20, 100},
                            std::bind_front(&SurveyStore::List, store_, with_suppressed),
                            resp->mutable_surveys(), resp->mutable_next_page_token());
  const absl::Time now = clock_->Now();
  for (auto& survey : *resp->mutable_surveys()) survey = AsOf(std::move(survey), now);
  return Finish(ctx, listed);
}

grpc::ServerUnaryReactor* SurveyService::GetSurvey(Ctx* ctx, const v1::GetSurveyRequest* req,
                                                   v1::Survey* resp) {
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("survey_id", req->survey_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = OwnSurveysOnly(*caller, req->customer_id()); !s.ok()) return Finish(ctx, s);
  auto survey = store_->Get(req->customer_id(), req->survey_id());
  if (!survey.ok()) return Finish(ctx, survey.status());
  if (rpc::IsCustomer(*caller) && survey->status() == v1::SURVEY_STATUS_SUPPRESSED) {
    return Finish(ctx, absl::NotFoundError(absl::StrCat("survey_id: the customer has no survey \"",
                                                        req->survey_id(), "\"")));
  }
  *resp = AsOf(*std::move(survey), clock_->Now());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* SurveyService::AnswerSurvey(Ctx* ctx, const v1::AnswerSurveyRequest* req,
                                                      v1::Survey* resp) {
  if (auto s = api::RequiredId("customer_id", req->customer_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredId("survey_id", req->survey_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  if (req->answers().empty())
    return Finish(ctx, api::Invalid("answers", "must hold at least one answer"));
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        if (!rpc::IsCustomer(caller) || caller.customer_id != req->customer_id()) {
          return absl::PermissionDeniedError(
              "customer_id: only the customer may answer their own survey");
        }
        CRM_RETURN_IF_ERROR(store_->TransactAnswer(
            req->customer_id(), rpc::ScopedRequestId(caller, req->request_id(), "AnswerSurvey"),
            store::RequestFingerprint(*req), now, resp,
            [&](store::Transaction& txn) { return Answer(txn, *req, now, resp); }));
        MaybeRefreshGauges();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* SurveyService::GetSurveyReport(Ctx* ctx,
                                                         const v1::GetSurveyReportRequest* req,
                                                         v1::GetSurveyReportResponse* resp) {
  if (req->kind() != v1::SURVEY_KIND_DELIVERY && req->kind() != v1::SURVEY_KIND_TICKET) {
    return Finish(ctx, api::Invalid("kind", "must be SURVEY_KIND_DELIVERY or SURVEY_KIND_TICKET"));
  }
  int64_t last_day = DayOf(clock_->Now());
  int64_t first_day = last_day - (kGaugeWindowDays - 1);
  if (req->has_start_time() != req->has_end_time()) {
    return Finish(ctx, api::Invalid(req->has_start_time() ? "end_time" : "start_time",
                                    "must be set with the other end of the window"));
  }
  if (req->has_start_time()) {
    auto start = api::ToTime("start_time", req->start_time());
    if (!start.ok()) return Finish(ctx, start.status());
    auto end = api::ToTime("end_time", req->end_time());
    if (!end.ok()) return Finish(ctx, end.status());
    first_day = DayOf(*start);
    last_day = DayOf(*end);
    if (last_day < first_day) return Finish(ctx, api::Invalid("end_time", "is before start_time"));
    if (last_day - first_day + 1 > kMaxReportDays) {
      return Finish(ctx, api::Invalid("end_time", absl::StrCat("the window spans more than ",
                                                               kMaxReportDays, " days")));
    }
  }
  return rpc::FinishWith(ctx, Report(req->kind(), first_day, last_day), resp);
}

absl::StatusOr<v1::GetSurveyReportResponse> SurveyService::Report(v1::SurveyKind kind,
                                                                  int64_t first_day,
                                                                  int64_t last_day) const {
  CRM_ASSIGN_OR_RETURN(auto rows, store_->Counts(kind, first_day, last_day));
  return Summarise(kind, rows, shard_index_);
}

void SurveyService::MaybeRefreshGauges() {
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  int64_t last = gauges_refreshed_us_.load();
  if (now_us - last < 1000000 || !gauges_refreshed_us_.compare_exchange_strong(last, now_us))
    return;
  RefreshGauges();
}

void SurveyService::RefreshGauges() {
  const int64_t today = DayOf(clock_->Now());
  for (v1::SurveyKind kind : kKinds) {
    auto report = Report(kind, today - (kGaugeWindowDays - 1), today);
    if (!report.ok()) continue;  // the next refresh tries again; reads fail only on damage
    const std::string k = KindName(kind);
    const v1::SurveyKpis& kpis = report->kpis(0);
    if (report->promoters() + report->passives() + report->detractors() > 0)
      metrics_.nps.Add({{"kind", k}}).Set(kpis.nps());
    if (report->referred() + report->not_referred() > 0)
      metrics_.referral_rate.Add({{"kind", k}}).Set(kpis.referral_rate());
    if (report->offered() > 0) metrics_.response_rate.Add({{"kind", k}}).Set(kpis.response_rate());
    for (const auto& s : kpis.satisfaction()) {
      metrics_.satisfaction.Add({{"kind", k}, {"stage", StageName(s.stage())}}).Set(s.mean_score());
    }
    const std::pair<const char*, int64_t> groups[] = {{"promoter", report->promoters()},
                                                      {"passive", report->passives()},
                                                      {"detractor", report->detractors()}};
    for (const auto& [group, n] : groups)
      metrics_.recommend_answers.Add({{"kind", k}, {"group", group}}).Set(n);
    metrics_.referral_answers.Add({{"kind", k}, {"answer", "yes"}}).Set(report->referred());
    metrics_.referral_answers.Add({{"kind", k}, {"answer", "no"}}).Set(report->not_referred());
    const std::pair<const char*, int64_t> outcomes[] = {
        {"offered", report->offered()},
        {"responded", report->responded()},
        {"no_consent", report->suppressed_no_consent()},
        {"frequency_cap", report->suppressed_frequency_cap()}};
    for (const auto& [outcome, n] : outcomes)
      metrics_.offers.Add({{"kind", k}, {"outcome", outcome}}).Set(n);
    std::map<std::pair<int, int>, int64_t> distribution;
    for (const auto& row : report->satisfaction())
      distribution[{row.stage(), row.score()}] += row.count();
    for (const auto& [at, n] : distribution) {
      metrics_.satisfaction_answers
          .Add({{"kind", k},
                {"stage", StageName(static_cast<v1::ServiceStage>(at.first))},
                {"score", std::to_string(at.second)}})
          .Set(static_cast<double>(n));
    }
  }
}

}  // namespace crm::surveys
