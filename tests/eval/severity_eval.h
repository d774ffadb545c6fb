// Scoring the severity judgment on labelled complaints (tests/data/complaints*.tsv): accuracy and
// level-3 recall, overall and by language, and cross-validation by author (each author's complaints
// judged by a model fitted without them). Used by crm-severity-fit and the unit tests.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/internal/complaint_lexicon.pb.h"
#include "services/complaint_ticket/severity_model.h"

namespace crm::eval {

using complaint_ticket::LabelledComplaint;

struct SeverityFigures {
  int total = 0, correct = 0, level3 = 0, level3_caught = 0;
  double accuracy() const { return total == 0 ? 0 : static_cast<double>(correct) / total; }
  double level3_recall() const {
    return level3 == 0 ? 1 : static_cast<double>(level3_caught) / level3;
  }
};

struct SeverityEvaluation {
  SeverityFigures all, zh, en;
  std::map<std::pair<int, int>, int> confusion;  // {expected, judged} -> complaints
  std::vector<std::string> misses;               // "expected 2 got 1: TEXT"
};

// The handling level a judgment gives a complaint.
using Judgment = std::function<int(const LabelledComplaint&)>;
SeverityEvaluation EvaluateSeverity(const std::vector<LabelledComplaint>& complaints,
                                    const Judgment& judge);
// "  all      accuracy  90/120 =  75.0%   level-3 recall  36/ 40 =  90.0%" and the same for
// Chinese and English.
std::string FormatEvaluation(const SeverityEvaluation& e);

// tests/data/<file>, its lines before any "# group:" line in group `file`.
absl::StatusOr<std::vector<LabelledComplaint>> ReadLabelledComplaints(const std::string& file);

// The judgments compared: the lexicon alone, the model alone, and both (the service's: the higher).
struct ComparedJudgments {
  SeverityEvaluation lexicon, model, both;
};
ComparedJudgments CompareJudgments(const std::vector<LabelledComplaint>& complaints,
                                   const internal::SeverityLexicon& lexicon,
                                   const complaint_ticket::SeverityModel& model);

struct CrossValidationRow {
  std::string group;
  ComparedJudgments judged;
};
// For each group but `always_trained` (the lines the lexicon was first written on), a model fitted
// on the other groups judges it. The lexicon is the shipped one: it has seen every group folded
// into training, so its own figures here flatter it.
std::vector<CrossValidationRow> CrossValidateByAuthor(
    const std::vector<LabelledComplaint>& complaints, const internal::SeverityLexicon& lexicon,
    const complaint_ticket::SeverityFitOptions& options, const std::string& always_trained);

}  // namespace crm::eval
