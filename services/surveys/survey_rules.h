// The surveys as data: which questions each kind of survey asks, in Chinese and English, the KPI
// each answer feeds, and how long a customer has to answer (survey-rules.textproto, built in;
// --survey_rules_file replaces it). Checked whole when read, so a typo stops the process at start
// with the line and field at fault instead of surveys nobody can answer. Pure functions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/internal/survey_storage.pb.h"
#include "crm/v1/surveys.pb.h"

namespace crm::surveys {

// Parsed and checked rules: INVALID_ARGUMENT "survey rules: line N: surveys[i].questions[j].<field>
// <what is wrong>" (or the parser's own "line N, column C: ...").
absl::StatusOr<internal::SurveyRules> ParseSurveyRules(absl::string_view text);
// The rules this binary was built with (services/surveys/survey-rules.textproto), or INTERNAL
// naming the line if they did not parse (the service refuses to start on it).
absl::StatusOr<internal::SurveyRules> BuiltInSurveyRules();
// ParseSurveyRules of a file; errors name the file ("--survey_rules_file: cannot read ...").
absl::StatusOr<internal::SurveyRules> ReadSurveyRulesFile(const std::string& path);
// --survey_rules_file when given, else the built-in rules.
absl::StatusOr<internal::SurveyRules> LoadSurveyRules();

// The definition of `kind` (checked rules have one for every kind).
const internal::SurveyDefinition& DefinitionOf(const internal::SurveyRules& rules,
                                               v1::SurveyKind kind);
// How long a customer has to answer a survey of `kind`.
absl::Duration AnswerPeriodOf(const internal::SurveyRules& rules, v1::SurveyKind kind);

// The customer's answers checked against the survey's questions: each names a question of the
// survey once, with a value of its type and range, and every required question is answered.
// INVALID_ARGUMENT naming the field, e.g. "answers[2].score: 7 is outside 1-5 for question
// \"delivery\"".
absl::Status CheckAnswers(const v1::Survey& survey,
                          const google::protobuf::RepeatedPtrField<v1::SurveyAnswer>& answers);

// "delivery", "ticket": the kind as metrics and survey ids name it.
std::string KindName(v1::SurveyKind kind);
// "shopping", "product_quality", "delivery", "after_sales".
std::string StageName(v1::ServiceStage stage);

}  // namespace crm::surveys
