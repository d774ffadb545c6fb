// The learned half of the severity judgment: two logistic regressions over the words of a complaint
// (Chinese characters and pairs of them, English words and pairs of them, and the category), one
// for "upset" (level 2 or 3) and one for "serious" (level 3). The lexicon (severity.h) names what
// it recognises and cannot be argued down; the model lifts a complaint the word list has no cue for
// to the level that complaints written like it had. Fitted offline by crm-severity-fit on the
// labelled complaints (tests/data/complaints.tsv) and shipped as data
// (deploy/config/complaint-severity-model.tsv, --severity_model_file); the binary carries the copy
// it was built with.
//
// Pure functions. A loaded model is immutable and may be shared between threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

struct SeverityModel {
  // The probabilities from which the model calls a complaint upset (level 2) and serious (level 3).
  // Serious starts below one half: a serious complaint routed as routine costs more than the
  // reverse.
  double upset_from = 0.5;
  double serious_from = 0.35;
  // Feature -> {weight towards upset, weight towards serious}; "(bias)" is the intercept.
  absl::flat_hash_map<std::string, std::array<double, 2>> weights;
};

// A text's features and their values: "c1:律" (a Chinese character, 0.5 each time it appears, at
// most 1), "c2:律师" (two characters in a row), "w:lawyer" and "w2:my lawyer" (words, lower-cased,
// accented Latin letters included, typographic apostrophes read as ASCII, and pairs of words),
// "cat:QUALITY"; sorted by name.
std::vector<std::pair<std::string, double>> ComplaintFeatures(absl::string_view text,
                                                              v1::TicketCategory category);

struct ModelJudgement {
  double upset = 0;    // P(level >= 2)
  double serious = 0;  // P(level 3)
  // 3 when serious reaches serious_from, else 2 when upset reaches upset_from; either only when the
  // text's words (not the intercept and category alone) lean that way.
  int level = 1;
  // What pushed the deciding probability up most: the words as written ("律师", "my lawyer").
  std::vector<std::string> reasons;
};
ModelJudgement Judge(const SeverityModel& model, absl::string_view text,
                     v1::TicketCategory category);

// One labelled complaint of tests/data/complaints*.tsv: "LEVEL<TAB>CATEGORY<TAB>TEXT". A comment
// line "# group: NAME" starts the lines of one author (cross-validation leaves each out in turn).
struct LabelledComplaint {
  int level = 1;
  v1::TicketCategory category = v1::TICKET_CATEGORY_UNSPECIFIED;
  std::string text;
  std::string group;
};
// INVALID_ARGUMENT naming the line when one is not in that form. Lines before any "# group:" line
// are in `group`.
absl::StatusOr<std::vector<LabelledComplaint>> ParseLabelledComplaints(absl::string_view tsv,
                                                                       const std::string& group);

struct SeverityFitOptions {
  double l2 = 1e-2;
  int epochs = 30;
  double learning_rate = 0.2;
  // A feature must appear in this many complaints to get a weight: one author's one phrase is not a
  // pattern.
  int min_count = 2;
  uint32_t seed = 1;
  // The labelled sets hold more serious complaints than a desk receives; the intercepts are moved
  // so that the model judges as if each level were equally common (a short "Where is my parcel?"
  // is not upset because most training lines were).
  bool equal_levels = true;
  // The fitted model's thresholds (SeverityModel::upset_from, serious_from).
  double upset_from = SeverityModel().upset_from;
  double serious_from = SeverityModel().serious_from;
};
// Stochastic gradient descent on the L2-penalised log loss, in a seeded order: the same complaints
// give the same model.
SeverityModel FitSeverityModel(const std::vector<LabelledComplaint>& complaints,
                               const SeverityFitOptions& options);

// The model file: comment lines ("#"), "upset_from<TAB>P", "serious_from<TAB>P", and one line per
// feature, "FEATURE<TAB>W_UPSET<TAB>W_SERIOUS". Errors name the line.
absl::StatusOr<SeverityModel> ParseSeverityModel(absl::string_view tsv);
// The file ParseSeverityModel reads, features sorted, after `header` (comment lines).
std::string FormatSeverityModel(const SeverityModel& model, absl::string_view header);
// The model this binary was built with (deploy/config/complaint-severity-model.tsv at build time),
// parsed once per process; INTERNAL naming the line if that file did not parse.
// BuiltInSeverityModel is the same, for tools and tests (an empty model if it did not parse, which
// tests/unit/severity_test.cc would catch).
const absl::StatusOr<SeverityModel>& ParseBuiltInSeverityModel();
const SeverityModel& BuiltInSeverityModel();

}  // namespace crm::complaint_ticket
