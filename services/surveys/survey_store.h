// Persistence of the surveys, in the store of the process that serves them (customer-profile):
// the only code that knows their column families and keys.
//
//   surveys          customer_id, survey_id                  -> Survey (offered or suppressed, with
//                                                               its questions and answers)
//   survey_requests  customer_id, scoped request_id          -> the answer to a completed
//                                                               AnswerSurvey
//   survey_stats     kind, UTC day, stage, question_id       -> SurveyDayCounts, counter rows added
//                                                               to without reading (counters.h):
//                                                               the day's totals (stage 0, question
//                                                               "") and one row per satisfaction
//                                                               question
//
// A report over a window reads (1 + questions) rows per day, never the answers. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/internal/survey_storage.pb.h"
#include "crm/v1/surveys.pb.h"
#include "libs/store/families.h"
#include "libs/store/store.h"

namespace crm::surveys {

// A UTC day as days since 1970-01-01.
int64_t DayOf(absl::Time t);

class SurveyStore {
 public:
  // To be opened with the serving process's own families, with MergeOperators() for them.
  static std::vector<std::string> ColumnFamilies();
  static std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> MergeOperators();

  // `store` must outlive this object.
  explicit SurveyStore(store::Store* store);

  // The survey, locked until `txn` ends; nullopt when there is none.
  absl::StatusOr<std::optional<v1::Survey>> Lock(store::Transaction& txn,
                                                 absl::string_view customer_id,
                                                 absl::string_view survey_id);
  absl::Status Put(store::Transaction& txn, const v1::Survey& survey);
  // Adds `delta` to the counts of `kind` on `day`: the day's totals when `question_id` is empty,
  // else that satisfaction question's (of `stage`).
  absl::Status AddCounts(store::Transaction& txn, v1::SurveyKind kind, int64_t day,
                         v1::ServiceStage stage, absl::string_view question_id,
                         const internal::SurveyDayCounts& delta);
  // Every survey of the customer and the recorded answers to their requests (on erasure: answers
  // are personal data; the day counts are not).
  absl::Status EraseCustomer(store::Transaction& txn, absl::string_view customer_id);

  // In one transaction with the answer's record under the customer's `request_id` (already scoped
  // to the caller), as store::TransactOnce.
  absl::Status TransactAnswer(absl::string_view customer_id, absl::string_view request_id,
                              uint64_t fingerprint, absl::Time now, v1::Survey* out,
                              absl::FunctionRef<absl::Status(store::Transaction&)> body);

  // NOT_FOUND "survey_id: ..." when the customer has no such survey.
  absl::StatusOr<v1::Survey> Get(absl::string_view customer_id, absl::string_view survey_id) const;
  // A page of the customer's surveys in survey id order, after the key `after` (a page token's);
  // suppressed ones only when `with_suppressed`.
  absl::Status List(bool with_suppressed, absl::string_view customer_id, absl::string_view after,
                    int limit, std::vector<v1::Survey>* out, std::string* last_key,
                    bool* more) const;

  // One counter row of a report's window.
  struct CountRow {
    int64_t day = 0;
    v1::ServiceStage stage = v1::SERVICE_STAGE_UNSPECIFIED;
    std::string question_id;  // empty: the day's totals
    internal::SurveyDayCounts counts;
  };
  // The rows of `kind` for the days [first_day, last_day].
  absl::StatusOr<std::vector<CountRow>> Counts(v1::SurveyKind kind, int64_t first_day,
                                               int64_t last_day) const;

 private:
  enum Family { kSurveys, kRequests, kStats };
  static constexpr store::FamilyName<Family> kFamilies[] = {
      {kSurveys, "surveys"}, {kRequests, "survey_requests"}, {kStats, "survey_stats"}};
  static_assert(store::InEnumOrder(kFamilies));

  store::Store* const store_;
  const store::Families cf_;
};

}  // namespace crm::surveys
