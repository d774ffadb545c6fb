// crm.v1.SurveyService, served by the process that owns consent and the contact cap
// (customer-profile): it offers a survey when a delivery completes or a ticket is resolved
// (OnEvent, inside that process's event transaction), lets the customer answer it once, and reports
// satisfaction per service stage, NPS and the referral rate from per-day counter rows.
//
// This library does not know customer-profile: whether a customer may be contacted, and recording
// the contact against the cap, come in as a ContactGate the serving process implements on its own
// store, in the same transaction.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/internal/survey_storage.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/events.pb.h"
#include "crm/v1/surveys.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/rpc/executor.h"
#include "libs/store/store.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/surveys/survey_store.h"

namespace crm::surveys {

// May the customer be contacted for `purpose` now? When allowed, the gate has recorded the contact
// (in `txn`) so the frequency cap counts it. NOT_FOUND when the customer is unknown there.
using ContactGate = std::function<absl::StatusOr<v1::ContactDecision>(
    store::Transaction& txn, absl::string_view customer_id, absl::string_view purpose,
    absl::Time now)>;

// A survey's contact is recorded under the purpose "survey:<survey id>" (one contact per survey).
inline constexpr absl::string_view kSurveyContactPurpose = "survey:";
// The window of the KPI gauges.
inline constexpr int kGaugeWindowDays = 30;

class SurveyService final : public v1::SurveyService::CallbackService {
 public:
  // Not owned; all must outlive the service. `shard_index`: this process's shard, named in reports.
  SurveyService(SurveyStore* store, internal::SurveyRules rules, ContactGate gate, Clock* clock,
                rpc::Executor* writes, prometheus::Registry& registry, int shard_index);

  // An event the serving process consumes, inside its transaction: OrderDelivered offers a DELIVERY
  // survey (one per order), TicketResolved a TICKET survey (one per ticket); others are ignored. An
  // event older than the survey's answer period (an imported history) offers nothing.
  absl::Status OnEvent(store::Transaction& txn, const v1::Event& event);
  // Recomputes the 30-day KPI gauges from the counter rows (the serving process calls it every so
  // often; answers refresh them too).
  void RefreshGauges();

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* ListSurveys(Ctx*, const v1::ListSurveysRequest*, v1::ListSurveysResponse*) override;
  Reactor* GetSurvey(Ctx*, const v1::GetSurveyRequest*, v1::Survey*) override;
  Reactor* AnswerSurvey(Ctx*, const v1::AnswerSurveyRequest*, v1::Survey*) override;
  Reactor* GetSurveyReport(Ctx*, const v1::GetSurveyReportRequest*,
                           v1::GetSurveyReportResponse*) override;

 private:
  struct Metrics {
    explicit Metrics(prometheus::Registry& registry);
    prometheus::Family<prometheus::Counter>& offered;
    prometheus::Family<prometheus::Counter>& answered;
    prometheus::Family<prometheus::Gauge>& nps;
    prometheus::Family<prometheus::Gauge>& referral_rate;
    prometheus::Family<prometheus::Gauge>& response_rate;
    prometheus::Family<prometheus::Gauge>& satisfaction;
    prometheus::Family<prometheus::Gauge>& recommend_answers;
    prometheus::Family<prometheus::Gauge>& referral_answers;
    prometheus::Family<prometheus::Gauge>& satisfaction_answers;
    prometheus::Family<prometheus::Gauge>& offers;
  };

  // Offers (or suppresses) the survey of `kind` about `subject_id`, once.
  absl::Status Offer(store::Transaction& txn, const v1::Event& event, v1::SurveyKind kind,
                     const std::string& subject_id);
  // The answer recorded in `txn` (which holds the request's record).
  absl::Status Answer(store::Transaction& txn, const v1::AnswerSurveyRequest& req, absl::Time now,
                      v1::Survey* out);
  // Adds the answered survey's answers to the day counts.
  absl::Status CountAnswers(store::Transaction& txn, const v1::Survey& survey, absl::Time now);
  absl::StatusOr<v1::GetSurveyReportResponse> Report(v1::SurveyKind kind, int64_t first_day,
                                                     int64_t last_day) const;
  // RefreshGauges at most once a second from the write path.
  void MaybeRefreshGauges();

  SurveyStore* const store_;
  const internal::SurveyRules rules_;
  const ContactGate gate_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  const int shard_index_;
  Metrics metrics_;
  std::atomic<int64_t> gauges_refreshed_us_{0};
};

// The survey as its reader sees it at `now`: an open survey past its expire_time is EXPIRED.
v1::Survey AsOf(v1::Survey survey, absl::Time now);

}  // namespace crm::surveys
