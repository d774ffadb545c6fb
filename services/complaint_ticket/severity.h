// How serious is a complaint? Scores a complaint (Chinese or English) from a lexicon kept as data,
// in two layers. Tone: intensity words, negated satisfaction ("不满意", "not happy"), intensifiers,
// exclamation, repetition, a few shouted words (a text all in capitals is habit and scores
// nothing). Kinds: harm (health, safety, property, lost documents), legal or regulatory action,
// public exposure, leaving, broken or repeated promises, sarcasm. Each kind is recognised from cue
// patterns over word classes such as "{PROMISE} ... {FAILED}", with negation ("没有受伤", "no need
// to involve a lawyer") and exceptions ("my lawyer friend"); one strong kind reaches level 3
// however calmly it is put. Plus the category and the customer's value. The score maps to a
// handling level 1-3 (seed 001 §4(2): severity decides who handles it) and a priority, and every
// signal that produced it is returned so an agent can see why. Pure functions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "crm/internal/complaint_lexicon.pb.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "services/complaint_ticket/severity_model.h"

namespace crm::complaint_ticket {

// Parses a lexicon in protobuf text format; errors name the line. Checks weights are not negative,
// cues name known word classes and the level thresholds are in order.
absl::StatusOr<internal::SeverityLexicon> ParseLexicon(absl::string_view text);
// The lexicon this binary was built with (deploy/config/complaint-lexicon.textproto at build time),
// parsed once per process: or INTERNAL naming the line (the service refuses to start);
// BuiltInLexicon is the same, empty if it did not parse (for tests and tools).
const absl::StatusOr<internal::SeverityLexicon>& ParseBuiltInLexicon();
const internal::SeverityLexicon& BuiltInLexicon();

struct CustomerValue {
  int tier = 0;  // crm.v1.Tier number; 0 unknown
  bool enterprise = false;
};

// With a model (severity_model.h), a complaint the lexicon scores lower than the model judges it is
// lifted to the model's level by a "text_model" signal naming the words that weighed most; the
// lexicon is never argued down.
v1::Severity AssessSeverity(const internal::SeverityLexicon& lexicon, absl::string_view text,
                            v1::TicketCategory category, CustomerValue value,
                            const SeverityModel* model = nullptr);

}  // namespace crm::complaint_ticket
