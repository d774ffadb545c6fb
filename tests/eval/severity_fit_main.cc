// crm-severity-fit: fits the learned severity model (services/complaint_ticket/severity_model.h) on
// the labelled complaints and prints how it judges complaints by authors it was not fitted on
// (cross-validation by author), beside the lexicon alone and both together, as complaint-ticket
// judges; then each held-out file, judged with the model fitted on the whole training file. With
// --write_model it writes that model, the file complaint-ticket ships
// (deploy/config/complaint-severity-model.tsv) or reads with --severity_model_file. Figures, never
// a pass or fail.
//   crm-severity-fit [--training=complaints.tsv] [--held_out=a.tsv,b.tsv] [--write_model=<path>]
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "libs/base/flags_help.h"
#include "services/complaint_ticket/severity.h"
#include "tests/eval/severity_eval.h"

ABSL_FLAG(std::string, training, "complaints.tsv",
          "labelled complaints to fit on (under tests/data; \"# group: NAME\" lines name authors)");
ABSL_FLAG(
    std::vector<std::string>, held_out,
    std::vector<std::string>({"complaints_blind.tsv", "complaints_holdout_kinds.tsv",
                              "complaints_holdout.tsv"}),
    "labelled complaints never fitted on, judged once the model is fitted (under tests/data)");
ABSL_FLAG(std::string, write_model, "", "write the model fitted on the training file here");
ABSL_FLAG(std::string, judge, "",
          "only judge this text with the built-in lexicon and model, as complaint-ticket does, and "
          "print the level and signals");
ABSL_FLAG(std::string, judge_category, "OTHER", "the category --judge's text is filed under");
ABSL_FLAG(double, l2, crm::complaint_ticket::SeverityFitOptions().l2, "L2 penalty");
ABSL_FLAG(double, serious_from, crm::complaint_ticket::SeverityFitOptions().serious_from,
          "the probability of level 3 from which the model judges a complaint serious");
ABSL_FLAG(int, min_count, crm::complaint_ticket::SeverityFitOptions().min_count,
          "complaints a word must appear in to get a weight");

namespace {

namespace ct = crm::complaint_ticket;
using crm::eval::SeverityEvaluation;

void PrintRow(const std::string& name, const crm::eval::ComparedJudgments& j) {
  auto cell = [](const SeverityEvaluation& e) {
    return absl::StrFormat("%.1f%% / %.1f%%", 100 * e.all.accuracy(), 100 * e.all.level3_recall());
  };
  std::cout << absl::StrFormat("| %s | %d | %s | %s | **%s** |\n", name, j.lexicon.all.total,
                               cell(j.lexicon), cell(j.model), cell(j.both));
}

constexpr char kTableHead[] =
    " | complaints | lexicon | model | both (as served) |\n|---|---:|---:|---:|---:|\n";

// --judge: the text's level and signals as complaint-ticket gives them; false for a bad category.
bool JudgeText(const std::string& text, const std::string& category_name) {
  crm::v1::TicketCategory category;
  if (!crm::v1::TicketCategory_Parse("TICKET_CATEGORY_" + category_name, &category)) {
    std::cerr << "--judge_category: no category \"" << category_name << "\"" << std::endl;
    return false;
  }
  const auto s =
      ct::AssessSeverity(ct::BuiltInLexicon(), text, category, {}, &ct::BuiltInSeverityModel());
  std::cout << "level " << s.handling_level() << " score " << s.score() << " |";
  for (const auto& sig : s.signals()) {
    std::cout << " " << sig.kind() << ":" << sig.evidence() << "=" << sig.points();
  }
  std::cout << "\n";
  return true;
}

// Each --held_out file judged with `model`; false when one cannot be read.
bool PrintHeldOut(const ct::SeverityModel& model, size_t fitted_on) {
  std::cout << "\nHeld-out files, the model fitted on all " << fitted_on << " complaints:\n\n| file"
            << kTableHead;
  for (const std::string& file : absl::GetFlag(FLAGS_held_out)) {
    auto held_out = crm::eval::ReadLabelledComplaints(file);
    if (!held_out.ok()) {
      std::cerr << held_out.status() << std::endl;
      return false;
    }
    PrintRow(file, crm::eval::CompareJudgments(*held_out, ct::BuiltInLexicon(), model));
  }
  return true;
}

bool WriteModel(const std::string& path, const ct::SeverityModel& model,
                const std::string& training_file, size_t complaints,
                const ct::SeverityFitOptions& options) {
  std::ofstream out(path);
  out << ct::FormatSeverityModel(
      model,
      absl::StrFormat(
          "# The learned severity model complaint-ticket is built with (--severity_model_file "
          "reads another):\n"
          "# FEATURE<TAB>weight towards upset (level 2-3)<TAB>weight towards serious (level 3). "
          "Written by\n"
          "# crm-severity-fit --write_model from tests/data/%s (%d complaints, l2 %g, words "
          "seen in at least %d);\n"
          "# refit after adding labelled complaints. Generated: do not edit by hand.\n",
          training_file, complaints, options.l2, options.min_count));
  if (!out) std::cerr << "cannot write " << path << std::endl;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("crm-severity-fit: fit and evaluate the learned severity model");
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  if (const std::string text = absl::GetFlag(FLAGS_judge); !text.empty()) {
    return JudgeText(text, absl::GetFlag(FLAGS_judge_category)) ? 0 : 2;
  }
  const std::string training_file = absl::GetFlag(FLAGS_training);
  auto training = crm::eval::ReadLabelledComplaints(training_file);
  if (!training.ok()) {
    std::cerr << training.status() << std::endl;
    return 1;
  }
  ct::SeverityFitOptions options;
  options.l2 = absl::GetFlag(FLAGS_l2);
  options.min_count = absl::GetFlag(FLAGS_min_count);
  options.serious_from = absl::GetFlag(FLAGS_serious_from);
  std::cout << "Accuracy / level-3 recall. Cross-validation by author: each group of "
            << training_file << " judged by a model fitted on the others (the lexicon has seen "
            << "them all):\n\n| held out" << kTableHead;
  for (const auto& row :
       crm::eval::CrossValidateByAuthor(*training, ct::BuiltInLexicon(), options, training_file)) {
    PrintRow(row.group, row.judged);
  }
  const ct::SeverityModel model = ct::FitSeverityModel(*training, options);
  if (!PrintHeldOut(model, training->size())) return 1;
  const std::string path = absl::GetFlag(FLAGS_write_model);
  if (!path.empty() && !WriteModel(path, model, training_file, training->size(), options)) return 1;
  return 0;
}
