#include "tests/eval/severity_eval.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/text/file.h"
#include "libs/text/utf8.h"
#include "services/complaint_ticket/severity.h"

namespace crm::eval {

SeverityEvaluation EvaluateSeverity(const std::vector<LabelledComplaint>& complaints,
                                    const Judgment& judge) {
  SeverityEvaluation e;
  for (const LabelledComplaint& c : complaints) {
    const int level = judge(c);
    const bool right = level == c.level;
    for (SeverityFigures* f : {&e.all, text::ContainsCjk(c.text) ? &e.zh : &e.en}) {
      ++f->total;
      f->correct += right;
      if (c.level == 3) {
        ++f->level3;
        f->level3_caught += level == 3;
      }
    }
    ++e.confusion[{c.level, level}];
    if (!right)
      e.misses.push_back(absl::StrCat("expected ", c.level, " got ", level, ": ", c.text));
  }
  return e;
}

std::string FormatEvaluation(const SeverityEvaluation& e) {
  std::string out;
  for (const auto& [name, f] : {std::pair<const char*, const SeverityFigures&>{"all", e.all},
                                {"Chinese", e.zh},
                                {"English", e.en}}) {
    absl::StrAppendFormat(
        &out, "  %-8s accuracy %3d/%3d = %5.1f%%   level-3 recall %3d/%3d = %5.1f%%\n", name,
        f.correct, f.total, 100 * f.accuracy(), f.level3_caught, f.level3, 100 * f.level3_recall());
  }
  return out;
}

absl::StatusOr<std::vector<LabelledComplaint>> ReadLabelledComplaints(const std::string& file) {
  const std::string path = std::string(CRM_SOURCE_ROOT) + "/tests/data/" + file;
  return text::ParseFile(path, file, [&](const std::string& tsv) {
    return complaint_ticket::ParseLabelledComplaints(tsv, file);
  });
}

ComparedJudgments CompareJudgments(const std::vector<LabelledComplaint>& complaints,
                                   const internal::SeverityLexicon& lexicon,
                                   const complaint_ticket::SeverityModel& model) {
  auto served = [&lexicon](const complaint_ticket::SeverityModel* m) {
    return [&lexicon, m](const LabelledComplaint& c) {
      return complaint_ticket::AssessSeverity(lexicon, c.text, c.category, {}, m).handling_level();
    };
  };
  return {EvaluateSeverity(complaints, served(nullptr)),
          EvaluateSeverity(complaints,
                           [&model](const LabelledComplaint& c) {
                             return complaint_ticket::Judge(model, c.text, c.category).level;
                           }),
          EvaluateSeverity(complaints, served(&model))};
}

std::vector<CrossValidationRow> CrossValidateByAuthor(
    const std::vector<LabelledComplaint>& complaints, const internal::SeverityLexicon& lexicon,
    const complaint_ticket::SeverityFitOptions& options, const std::string& always_trained) {
  std::vector<std::string> groups;
  for (const LabelledComplaint& c : complaints) {
    if (c.group != always_trained &&
        std::find(groups.begin(), groups.end(), c.group) == groups.end())
      groups.push_back(c.group);
  }
  std::vector<CrossValidationRow> rows;
  for (const std::string& group : groups) {
    std::vector<LabelledComplaint> training, held_out;
    for (const LabelledComplaint& c : complaints)
      (c.group == group ? held_out : training).push_back(c);
    const complaint_ticket::SeverityModel model = FitSeverityModel(training, options);
    rows.push_back({group, CompareJudgments(held_out, lexicon, model)});
  }
  return rows;
}

}  // namespace crm::eval
