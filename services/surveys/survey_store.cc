#include "services/surveys/survey_store.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status_macros.h"
#include "libs/store/counters.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"

namespace crm::surveys {
namespace {

using store::Key;

std::string SurveyKey(absl::string_view customer_id, absl::string_view survey_id) {
  return Key().Str(customer_id).Str(survey_id).Build();
}

std::string StatsKey(v1::SurveyKind kind, int64_t day) {
  return Key().U64(static_cast<uint64_t>(kind)).I64(day).Build();
}

}  // namespace

int64_t DayOf(absl::Time t) {
  return absl::ToUnixSeconds(t) >= 0 ? absl::ToUnixSeconds(t) / 86400
                                     : (absl::ToUnixSeconds(t) - 86399) / 86400;
}

std::vector<std::string> SurveyStore::ColumnFamilies() { return store::FamilyNames(kFamilies); }

std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> SurveyStore::MergeOperators() {
  return {
      {kFamilies[kStats].name, store::CounterSum(internal::SurveyDayCounts::default_instance())}};
}

SurveyStore::SurveyStore(store::Store* store) : store_(store), cf_(*store, kFamilies) {}

absl::StatusOr<std::optional<v1::Survey>> SurveyStore::Lock(store::Transaction& txn,
                                                            absl::string_view customer_id,
                                                            absl::string_view survey_id) {
  v1::Survey survey;
  CRM_ASSIGN_OR_RETURN(bool found, txn.GetProto(cf_[kSurveys], SurveyKey(customer_id, survey_id),
                                                &survey, /*for_update=*/true));
  if (!found) return std::nullopt;
  return survey;
}

absl::Status SurveyStore::Put(store::Transaction& txn, const v1::Survey& survey) {
  return txn.PutProto(cf_[kSurveys], SurveyKey(survey.customer_id(), survey.survey_id()), survey);
}

absl::Status SurveyStore::AddCounts(store::Transaction& txn, v1::SurveyKind kind, int64_t day,
                                    v1::ServiceStage stage, absl::string_view question_id,
                                    const internal::SurveyDayCounts& delta) {
  const std::string key =
      Key().U64(kind).I64(day).U64(static_cast<uint64_t>(stage)).Str(question_id).Build();
  return txn.AddCounters(cf_[kStats], key, delta);
}

absl::Status SurveyStore::EraseCustomer(store::Transaction& txn, absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kSurveys], prefix));
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

absl::Status SurveyStore::TransactAnswer(
    absl::string_view customer_id, absl::string_view request_id, uint64_t fingerprint,
    absl::Time now, v1::Survey* out, absl::FunctionRef<absl::Status(store::Transaction&)> body) {
  return store::TransactOnce(*store_, store::Durability::kSynced, cf_[kRequests],
                             Key().Str(customer_id).Str(request_id).Build(), fingerprint, now, out,
                             body);
}

absl::StatusOr<v1::Survey> SurveyStore::Get(absl::string_view customer_id,
                                            absl::string_view survey_id) const {
  v1::Survey survey;
  CRM_ASSIGN_OR_RETURN(bool found,
                       store_->GetProto(cf_[kSurveys], SurveyKey(customer_id, survey_id), &survey));
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("survey_id: the customer has no survey \"", survey_id, "\""));
  }
  return survey;
}

absl::Status SurveyStore::List(bool with_suppressed, absl::string_view customer_id,
                               absl::string_view after, int limit, std::vector<v1::Survey>* out,
                               std::string* last_key, bool* more) const {
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_ASSIGN_OR_RETURN(const std::string begin, store::ResumeAfter(prefix, after));
  absl::Status parsed = absl::OkStatus();
  CRM_RETURN_IF_ERROR(
      store_->Scan(cf_[kSurveys], begin, store::PrefixUpperBound(prefix),
                   [&](absl::string_view key, absl::string_view value) {
                     v1::Survey survey;
                     if (!survey.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                       parsed = absl::DataLossError("a stored crm.v1.Survey does not parse");
                       return false;
                     }
                     if (!with_suppressed && survey.status() == v1::SURVEY_STATUS_SUPPRESSED)
                       return true;
                     if (static_cast<int>(out->size()) == limit) {
                       *more = true;
                       return false;
                     }
                     out->push_back(std::move(survey));
                     *last_key = std::string(key);
                     return true;
                   }));
  return parsed;
}

absl::StatusOr<std::vector<SurveyStore::CountRow>> SurveyStore::Counts(v1::SurveyKind kind,
                                                                       int64_t first_day,
                                                                       int64_t last_day) const {
  std::vector<CountRow> rows;
  absl::Status parsed = absl::OkStatus();
  CRM_RETURN_IF_ERROR(
      store_->Scan(cf_[kStats], StatsKey(kind, first_day), StatsKey(kind, last_day + 1),
                   [&](absl::string_view key, absl::string_view value) {
                     store::KeyReader reader(key);
                     CountRow row;
                     const auto k = reader.U64();
                     const auto day = reader.I64();
                     const auto stage = reader.U64();
                     auto question = reader.Str();
                     if (!k || !day || !stage || !question ||
                         !row.counts.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                       parsed = absl::DataLossError("a survey counter row does not parse");
                       return false;
                     }
                     row.day = *day;
                     row.stage = static_cast<v1::ServiceStage>(*stage);
                     row.question_id = std::move(*question);
                     store::FloorCounters(row.counts);
                     rows.push_back(std::move(row));
                     return true;
                   }));
  CRM_RETURN_IF_ERROR(parsed);
  return rows;
}

}  // namespace crm::surveys
