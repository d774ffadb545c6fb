#include "services/complaint_ticket/severity.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace crm::complaint_ticket {

// Generated from deploy/config/complaint-lexicon.textproto by CMake.
extern const char kBuiltInLexiconText[];

namespace {

bool IsAsciiWordChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '\''; }

bool IsAsciiTerm(absl::string_view term) {
  return std::all_of(term.begin(), term.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Start offsets of `term` in `lower` (already lower-cased): whole words/phrases for ASCII terms, anywhere
// for others (CJK text has no spaces).
std::vector<size_t> Find(absl::string_view lower, absl::string_view term) {
  std::vector<size_t> out;
  if (term.empty()) return out;
  const bool ascii = IsAsciiTerm(term);
  for (size_t pos = lower.find(term); pos != absl::string_view::npos; pos = lower.find(term, pos + 1)) {
    if (ascii) {
      const bool left = pos == 0 || !IsAsciiWordChar(lower[pos - 1]);
      const size_t end = pos + term.size();
      const bool right = end >= lower.size() || !IsAsciiWordChar(lower[end]);
      if (!left || !right) continue;
    }
    out.push_back(pos);
  }
  return out;
}

// What comes just before `pos`: the two previous words of English text, or the two previous characters
// of Chinese text (where a negator or intensifier would be).
std::string Before(absl::string_view lower, size_t pos) {
  if (pos == 0) return "";
  size_t start = pos;
  auto byte = [&](size_t i) { return static_cast<unsigned char>(lower[i]); };
  if (byte(pos - 1) < 0x80) {
    for (int words = 0; words < 2 && start > 0; ++words) {
      while (start > 0 && byte(start - 1) < 0x80 && !IsAsciiWordChar(lower[start - 1])) --start;
      if (start == 0 || byte(start - 1) >= 0x80) break;
      while (start > 0 && IsAsciiWordChar(lower[start - 1])) --start;
    }
  } else {
    for (int chars = 0; chars < 2 && start > 0; ++chars) {
      --start;
      while (start > 0 && (byte(start) & 0xC0) == 0x80) --start;
    }
  }
  return std::string(lower.substr(start, pos - start));
}

bool Contains(absl::string_view window, absl::string_view term) {
  if (IsAsciiTerm(term)) return !Find(window, term).empty();
  return window.find(term) != absl::string_view::npos;
}

bool Negated(const internal::SeverityLexicon& lex, absl::string_view lower, size_t pos) {
  const std::string before = Before(lower, pos);
  for (const auto& n : lex.negators()) {
    if (Contains(before, n)) return true;
  }
  return false;
}

double Intensifier(const internal::SeverityLexicon& lex, absl::string_view lower, size_t pos) {
  const std::string before = Before(lower, pos);
  double m = 1.0;
  for (const auto& i : lex.intensifiers()) {
    if (Contains(before, i.text())) m = std::max(m, i.weight());
  }
  return m;
}

void AddSignal(v1::Severity& s, const std::string& kind, const std::string& evidence, double points) {
  if (points <= 0) return;
  auto* sig = s.add_signals();
  sig->set_kind(kind);
  sig->set_evidence(evidence);
  sig->set_points(std::round(points * 10) / 10);
  s.set_score(s.score() + points);
}

bool Repetition(absl::string_view text, absl::string_view lower) {
  // "!!!", "???", "！！！", "啊啊啊": the same character three times running.
  std::vector<std::string> chars;
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0xF0) n = 4;
    else if (c >= 0xE0) n = 3;
    else if (c >= 0xC0) n = 2;
    chars.emplace_back(text.substr(i, n));
    i += n;
  }
  for (size_t i = 2; i < chars.size(); ++i) {
    const std::string& ch = chars[i];
    const bool letter_or_digit = ch.size() == 1 && absl::ascii_isalnum(static_cast<unsigned char>(ch[0]));
    if (!letter_or_digit && ch != " " && ch == chars[i - 1] && ch == chars[i - 2]) return true;
  }
  // The same English word three times running: "never never never".
  std::vector<std::string> words;
  std::string w;
  for (char c : lower) {
    if (absl::ascii_isalpha(static_cast<unsigned char>(c))) {
      w.push_back(c);
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(w);
  for (size_t i = 2; i < words.size(); ++i) {
    if (words[i] == words[i - 1] && words[i] == words[i - 2]) return true;
  }
  return false;
}

std::vector<std::string> ShoutedWords(absl::string_view text) {
  std::vector<std::string> out;
  std::string w;
  auto flush = [&] {
    if (w.size() >= 3 && std::all_of(w.begin(), w.end(), [](char c) { return absl::ascii_isupper(static_cast<unsigned char>(c)); })) {
      out.push_back(w);
    }
    w.clear();
  };
  for (char c : text) {
    if (absl::ascii_isalpha(static_cast<unsigned char>(c))) {
      w.push_back(c);
    } else {
      flush();
    }
  }
  flush();
  return out;
}

class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (message_.empty()) message_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

absl::StatusOr<internal::SeverityLexicon> ParseLexicon(absl::string_view text) {
  internal::SeverityLexicon lex;
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &lex)) {
    return absl::InvalidArgumentError(absl::StrCat("lexicon: ", errors.message()));
  }
  for (const auto* terms : {&lex.intensity(), &lex.positive(), &lex.leave_threats(), &lex.public_threats()}) {
    for (const auto& t : *terms) {
      if (t.text().empty() || t.weight() < 0) {
        return absl::InvalidArgumentError(absl::StrCat("lexicon: term \"", t.text(), "\" needs text and a weight >= 0"));
      }
    }
  }
  if (!(lex.level2_from() > 0 && lex.level3_from() > lex.level2_from())) {
    return absl::InvalidArgumentError("lexicon: need 0 < level2_from < level3_from");
  }
  // Matching is on lower-cased text.
  for (auto* terms : {lex.mutable_intensity(), lex.mutable_positive(), lex.mutable_leave_threats(),
                      lex.mutable_public_threats(), lex.mutable_intensifiers()}) {
    for (auto& t : *terms) t.set_text(absl::AsciiStrToLower(t.text()));
  }
  for (auto& n : *lex.mutable_negators()) n = absl::AsciiStrToLower(n);
  return lex;
}

const internal::SeverityLexicon& BuiltInLexicon() {
  static const internal::SeverityLexicon* lexicon = [] {
    auto parsed = ParseLexicon(kBuiltInLexiconText);
    return new internal::SeverityLexicon(parsed.ok() ? *parsed : internal::SeverityLexicon());
  }();
  return *lexicon;
}

v1::Severity AssessSeverity(const internal::SeverityLexicon& lex, absl::string_view text, v1::TicketCategory category,
                            CustomerValue value) {
  v1::Severity s;
  const std::string lower = absl::AsciiStrToLower(text);

  for (const auto& term : lex.intensity()) {
    int counted = 0;
    for (size_t pos : Find(lower, term.text())) {
      if (counted == 2) break;  // repeating one word twice is emphasis; ten times is not ten times angrier
      if (Negated(lex, lower, pos)) continue;  // "not terrible"
      const double m = Intensifier(lex, lower, pos);
      AddSignal(s, "intensity", m > 1 ? absl::StrCat(Before(lower, pos), term.text()) : term.text(), term.weight() * m);
      ++counted;
    }
  }
  for (const auto& term : lex.positive()) {
    for (size_t pos : Find(lower, term.text())) {
      if (!Negated(lex, lower, pos)) continue;
      AddSignal(s, "negated_positive", absl::StrCat(Before(lower, pos), term.text()),
                term.weight() * Intensifier(lex, lower, pos));
      break;
    }
  }
  for (const auto& term : lex.leave_threats()) {
    if (!Find(lower, term.text()).empty()) AddSignal(s, "threat_to_leave", term.text(), term.weight());
  }
  for (const auto& term : lex.public_threats()) {
    if (!Find(lower, term.text()).empty()) AddSignal(s, "threat_to_go_public", term.text(), term.weight());
  }
  int exclamations = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (text[pos] == '!') ++exclamations;
    if (text.substr(pos, 3) == "\xEF\xBC\x81") ++exclamations;  // full-width ！
  }
  if (exclamations > 0) {
    AddSignal(s, "exclamation", std::string(std::min(exclamations, 5), '!'),
              std::min(exclamations * lex.points_per_exclamation(), lex.max_exclamation_points()));
  }
  if (Repetition(text, lower)) AddSignal(s, "repetition", "the same mark or word three times running", lex.repetition_points());
  const auto shouted = ShoutedWords(text);
  if (shouted.size() >= 2) AddSignal(s, "all_caps", absl::StrJoin(shouted, " "), lex.all_caps_points());
  const std::string category_name = v1::TicketCategory_Name(category);
  if (auto it = lex.category_points().find(category_name); it != lex.category_points().end()) {
    AddSignal(s, "category", category_name.substr(16), it->second);
  }
  if (value.tier > 0 && value.tier < lex.tier_points_size()) {
    AddSignal(s, "customer_value", absl::StrCat("tier ", value.tier), lex.tier_points(value.tier));
  }
  if (value.enterprise) AddSignal(s, "customer_value", "enterprise account", lex.enterprise_points());

  s.set_score(std::min(100.0, std::round(s.score() * 10) / 10));
  const int level = s.score() >= lex.level3_from() ? 3 : s.score() >= lex.level2_from() ? 2 : 1;
  s.set_handling_level(level);
  s.set_priority(level == 3 ? v1::PRIORITY_P1 : level == 2 ? v1::PRIORITY_P2 : v1::PRIORITY_P3);
  return s;
}

}  // namespace crm::complaint_ticket
