#include "services/surveys/survey_rules.h"

#include <set>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "libs/api/text_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"
#include "libs/text/utf8.h"

ABSL_FLAG(std::string, survey_rules_file, "",
          "Survey definitions (text-format crm.internal.SurveyRules): questions of the delivery "
          "and ticket surveys, answer period. Empty: the built-in "
          "services/surveys/survey-rules.textproto.");

namespace crm::surveys {

extern const char kBuiltInSurveyRulesText[];

namespace {

using Tree = google::protobuf::TextFormat::ParseInfoTree;

constexpr v1::SurveyKind kKinds[] = {v1::SURVEY_KIND_DELIVERY, v1::SURVEY_KIND_TICKET};
constexpr int kMaxQuestions = 20;
constexpr int kMaxAnswerPeriodDays = 365;
constexpr size_t kMaxFreeTextChars = 2000;

using Place = api::RulesPlace;

// The type a question feeding `kpi` must have.
v1::SurveyQuestionType TypeFor(v1::SurveyKpi kpi) {
  switch (kpi) {
    case v1::SURVEY_KPI_SATISFACTION: return v1::SURVEY_QUESTION_TYPE_SCALE_1_5;
    case v1::SURVEY_KPI_LIKELIHOOD_TO_RECOMMEND: return v1::SURVEY_QUESTION_TYPE_SCALE_0_10;
    case v1::SURVEY_KPI_HAS_REFERRED: return v1::SURVEY_QUESTION_TYPE_YES_NO;
    case v1::SURVEY_KPI_COMMENT: return v1::SURVEY_QUESTION_TYPE_FREE_TEXT;
    default: return v1::SURVEY_QUESTION_TYPE_UNSPECIFIED;
  }
}

bool IsQuestionId(absl::string_view id) {
  if (id.empty() || id.size() > 40) return false;
  for (char c : id) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_') return false;
  }
  return true;
}

absl::Status CheckQuestion(const Place& at, const v1::SurveyQuestion& q) {
  if (!IsQuestionId(q.question_id()))
    return at.Error("question_id", "must be 1-40 of a-z, 0-9 and _");
  if (q.type() == v1::SURVEY_QUESTION_TYPE_UNSPECIFIED) return at.Error("type", "must be set");
  if (q.text_zh().empty() || !text::IsValidUtf8(q.text_zh()))
    return at.Error("text_zh", "must be non-empty UTF-8");
  if (q.text_en().empty() || !text::IsValidUtf8(q.text_en()))
    return at.Error("text_en", "must be non-empty UTF-8");
  if (q.kpi() == v1::SURVEY_KPI_UNSPECIFIED) return at.Error("kpi", "must be set");
  if (q.type() != TypeFor(q.kpi())) {
    return at.Error("type", absl::StrCat("must be ", v1::SurveyQuestionType_Name(TypeFor(q.kpi())),
                                         " for ", v1::SurveyKpi_Name(q.kpi())));
  }
  const bool needs_stage = q.kpi() == v1::SURVEY_KPI_SATISFACTION;
  if (needs_stage && q.stage() == v1::SERVICE_STAGE_UNSPECIFIED)
    return at.Error("stage", "must name the service stage a SATISFACTION question measures");
  if (!needs_stage && q.stage() != v1::SERVICE_STAGE_UNSPECIFIED)
    return at.Error("stage", "is only for SATISFACTION questions");
  return absl::OkStatus();
}

absl::Status CheckDefinition(const Place& at, const internal::SurveyDefinition& d) {
  if (d.kind() == v1::SURVEY_KIND_UNSPECIFIED) return at.Error("kind", "must be set");
  if (d.expire_after_days() < 0 || d.expire_after_days() > kMaxAnswerPeriodDays)
    return at.Error("expire_after_days", "must be 0 (the default) to 365");
  if (d.questions().empty() || d.questions_size() > kMaxQuestions)
    return at.Error("questions", absl::StrCat("must hold 1-", kMaxQuestions, " questions"));
  std::set<std::string> ids;
  int recommend = 0, referred = 0;
  for (int i = 0; i < d.questions_size(); ++i) {
    const v1::SurveyQuestion& q = d.questions(i);
    const Place qat = at.Nested("questions", i, q);
    CRM_RETURN_IF_ERROR(CheckQuestion(qat, q));
    if (!ids.insert(q.question_id()).second)
      return qat.Error("question_id", absl::StrCat("\"", q.question_id(), "\" is used twice"));
    recommend += q.kpi() == v1::SURVEY_KPI_LIKELIHOOD_TO_RECOMMEND;
    referred += q.kpi() == v1::SURVEY_KPI_HAS_REFERRED;
    // One NPS and one referral question per survey, or one answer would count twice.
    if (recommend > 1 || referred > 1)
      return qat.Error("kpi", "appears twice in one survey (NPS and referral take one question)");
  }
  return absl::OkStatus();
}

absl::Status CheckRules(const internal::SurveyRules& rules, const Tree& tree) {
  const Place top("survey rules", "", rules, &tree);
  if (rules.version() <= 0) return top.Error("version", "must be 1 or more");
  if (rules.expire_after_days() < 1 || rules.expire_after_days() > kMaxAnswerPeriodDays)
    return top.Error("expire_after_days", "must be 1-365");
  std::set<int> kinds;
  for (int i = 0; i < rules.surveys_size(); ++i) {
    const Place at = top.Nested("surveys", i, rules.surveys(i));
    CRM_RETURN_IF_ERROR(CheckDefinition(at, rules.surveys(i)));
    if (!kinds.insert(rules.surveys(i).kind()).second) return at.Error("kind", "is defined twice");
  }
  for (v1::SurveyKind kind : kKinds) {
    if (kinds.count(kind) == 0)
      return top.Error("surveys", absl::StrCat("must define ", v1::SurveyKind_Name(kind)));
  }
  return absl::OkStatus();
}

absl::Status CheckAnswer(const std::string& field, const v1::SurveyQuestion& q,
                         const v1::SurveyAnswer& a) {
  const auto range = [&](int low, int high) -> absl::Status {
    if (a.value_case() != v1::SurveyAnswer::kScore)
      return api::Invalid(absl::StrCat(field, ".score"), "must be set for a scale question");
    if (a.score() < low || a.score() > high) {
      return api::Invalid(absl::StrCat(field, ".score"),
                          absl::StrCat(a.score(), " is outside ", low, "-", high,
                                       " for question \"", q.question_id(), "\""));
    }
    return absl::OkStatus();
  };
  switch (q.type()) {
    case v1::SURVEY_QUESTION_TYPE_SCALE_1_5: return range(1, 5);
    case v1::SURVEY_QUESTION_TYPE_SCALE_0_10: return range(0, 10);
    case v1::SURVEY_QUESTION_TYPE_YES_NO:
      if (a.value_case() != v1::SurveyAnswer::kYes)
        return api::Invalid(absl::StrCat(field, ".yes"), "must be set for a yes/no question");
      return absl::OkStatus();
    default:
      if (a.value_case() != v1::SurveyAnswer::kText)
        return api::Invalid(absl::StrCat(field, ".text"), "must be set for a free-text question");
      return api::OptionalText(absl::StrCat(field, ".text"), a.text(), kMaxFreeTextChars);
  }
}

}  // namespace

absl::StatusOr<internal::SurveyRules> ParseSurveyRules(absl::string_view text) {
  internal::SurveyRules rules;
  Tree tree;
  CRM_RETURN_IF_ERROR(api::ParseTextProto("survey rules", text, &rules, &tree));
  CRM_RETURN_IF_ERROR(CheckRules(rules, tree));
  return rules;
}

absl::StatusOr<internal::SurveyRules> BuiltInSurveyRules() {
  return text::ParseBuiltIn("survey rules", kBuiltInSurveyRulesText, &ParseSurveyRules);
}

absl::StatusOr<internal::SurveyRules> ReadSurveyRulesFile(const std::string& path) {
  return text::ParseFile(path, "--survey_rules_file", &ParseSurveyRules);
}

absl::StatusOr<internal::SurveyRules> LoadSurveyRules() {
  const std::string file = absl::GetFlag(FLAGS_survey_rules_file);
  if (file.empty()) return BuiltInSurveyRules();
  return ReadSurveyRulesFile(file);
}

const internal::SurveyDefinition& DefinitionOf(const internal::SurveyRules& rules,
                                               v1::SurveyKind kind) {
  for (const auto& d : rules.surveys()) {
    if (d.kind() == kind) return d;
  }
  return internal::SurveyDefinition::default_instance();
}

absl::Duration AnswerPeriodOf(const internal::SurveyRules& rules, v1::SurveyKind kind) {
  const int days = DefinitionOf(rules, kind).expire_after_days();
  return absl::Hours(24) * (days > 0 ? days : rules.expire_after_days());
}

absl::Status CheckAnswers(const v1::Survey& survey,
                          const google::protobuf::RepeatedPtrField<v1::SurveyAnswer>& answers) {
  if (answers.empty()) return api::Invalid("answers", "must hold at least one answer");
  std::set<std::string> answered;
  for (int i = 0; i < answers.size(); ++i) {
    const std::string field = absl::StrCat("answers[", i, "]");
    const v1::SurveyAnswer& a = answers[i];
    const v1::SurveyQuestion* question = nullptr;
    for (const auto& q : survey.questions()) {
      if (q.question_id() == a.question_id()) question = &q;
    }
    if (question == nullptr) {
      return api::Invalid(
          absl::StrCat(field, ".question_id"),
          absl::StrCat("\"", a.question_id(), "\" is not a question of this survey"));
    }
    if (!answered.insert(a.question_id()).second) {
      return api::Invalid(absl::StrCat(field, ".question_id"),
                          absl::StrCat("\"", a.question_id(), "\" is answered twice"));
    }
    CRM_RETURN_IF_ERROR(CheckAnswer(field, *question, a));
  }
  for (const auto& q : survey.questions()) {
    if (q.required() && answered.count(q.question_id()) == 0) {
      return api::Invalid(
          "answers", absl::StrCat("must answer the required question \"", q.question_id(), "\""));
    }
  }
  return absl::OkStatus();
}

std::string KindName(v1::SurveyKind kind) {
  switch (kind) {
    case v1::SURVEY_KIND_DELIVERY: return "delivery";
    case v1::SURVEY_KIND_TICKET: return "ticket";
    default: return "unspecified";
  }
}

std::string StageName(v1::ServiceStage stage) {
  return absl::AsciiStrToLower(v1::ServiceStage_Name(stage).substr(sizeof("SERVICE_STAGE_") - 1));
}

}  // namespace crm::surveys
