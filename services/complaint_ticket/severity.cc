#include "services/complaint_ticket/severity.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "libs/api/text_format.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::complaint_ticket {

// Generated from deploy/config/complaint-lexicon.textproto by CMake.
extern const char kBuiltInLexiconText[];

namespace {

using Span = std::pair<size_t, size_t>;  // [start, end) bytes of a match

// How far apart the parts of a cue ("promised ... never") may be: about two short sentences of
// English or thirty Chinese characters, so the parts are about the same thing.
constexpr size_t kMaxGapBytes = 90;
// A negator reaches this many English words ("no need to involve a lawyer") or Chinese characters
// ("不需要找律师") ahead, within its clause.
constexpr int kNegationWords = 5;
constexpr int kNegationChars = 4;
// A post-negator ("... is not necessary") must follow within this many bytes.
constexpr size_t kPostNegationBytes = 24;
// An exception ("saw", "how do I") reaches this many bytes around a match, within its clause.
constexpr size_t kExceptionReachBytes = 24;

bool IsAsciiWordChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '\'';
}

bool IsAsciiTerm(absl::string_view term) {
  return std::all_of(term.begin(), term.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

size_t CharLength(unsigned char lead) {
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Where a clause ends: ASCII or full-width punctuation, or a line break. Negation does not cross
// it.
size_t ClauseMarkLength(absl::string_view text, size_t pos) {
  static constexpr absl::string_view kAscii = ",.;:!?()\n";
  if (kAscii.find(text[pos]) != absl::string_view::npos) return 1;
  for (absl::string_view mark : {"，", "。", "！", "？", "；", "：", "、", "（", "）", "…"}) {
    if (text.substr(pos, mark.size()) == mark) return mark.size();
  }
  return 0;
}

// Where `term` occurs in `lower` (already lower-cased), as [start, end) byte ranges: whole
// words/phrases for ASCII terms (a trailing '*' allows any ending: "refund*"), anywhere for others
// (CJK text has no spaces).
std::vector<Span> Spans(absl::string_view lower, absl::string_view term) {
  std::vector<Span> out;
  const bool prefix = absl::EndsWith(term, "*");
  if (prefix) term.remove_suffix(1);
  if (term.empty()) return out;
  const bool ascii = IsAsciiTerm(term);
  for (size_t pos = lower.find(term); pos != absl::string_view::npos;
       pos = lower.find(term, pos + 1)) {
    size_t end = pos + term.size();
    if (ascii) {
      if (pos > 0 && IsAsciiWordChar(lower[pos - 1]) && IsAsciiWordChar(term.front())) continue;
      if (prefix) {
        while (end < lower.size() && IsAsciiWordChar(lower[end])) ++end;
      } else if (end < lower.size() && IsAsciiWordChar(lower[end]) &&
                 IsAsciiWordChar(term.back())) {
        continue;
      }
    }
    out.emplace_back(pos, end);
  }
  return out;
}

bool Contains(absl::string_view window, absl::string_view term) {
  return !Spans(window, term).empty();
}

// The pairs of adjacent bytes a text holds. A term with a pair the text lacks cannot occur in it:
// most of the lexicon's thousands of terms are ruled out so, in a lookup or two, instead of a
// search of the whole text each (what took most of an assessment's time).
class BytePairs {
 public:
  explicit BytePairs(absl::string_view text) {
    for (size_t i = 0; i + 1 < text.size(); ++i) seen_.set(Pair(text[i], text[i + 1]));
  }
  // False only when `term` (as Spans reads it: a trailing '*' is no byte of it) cannot occur.
  bool MayContain(absl::string_view term) const {
    term = absl::StripSuffix(term, "*");
    for (size_t i = 0; i + 1 < term.size(); ++i) {
      if (!seen_.test(Pair(term[i], term[i + 1]))) return false;
    }
    return true;
  }

 private:
  static size_t Pair(char a, char b) {
    return (size_t{static_cast<unsigned char>(a)} << 8) | static_cast<unsigned char>(b);
  }
  std::bitset<1 << 16> seen_;
};

// Spans of `term` in the whole text `lower`, whose byte pairs are `pairs`.
std::vector<Span> SpansIn(const BytePairs& pairs, absl::string_view lower, absl::string_view term) {
  if (!pairs.MayContain(term)) return {};
  return Spans(lower, term);
}

// What comes just before `pos`: the two previous words of English text, or the two previous
// characters of Chinese text (where an intensifier would be).
std::string Before(absl::string_view lower, size_t pos) {
  if (pos == 0) return "";
  size_t start = pos;
  auto byte = [&](size_t i) { return static_cast<unsigned char>(lower[i]); };
  if (byte(pos - 1) < 0x80) {
    for (int words = 0; words < 2 && start > 0; ++words) {
      while (start > 0 && byte(start - 1) < 0x80 && !IsAsciiWordChar(lower[start - 1])) {
        if (ClauseMarkLength(lower, start - 1) > 0)
          return std::string(lower.substr(start, pos - start));
        --start;
      }
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

// Start of the negation window before `pos`: up to kNegationWords English words or kNegationChars
// other characters, stopping at the clause's start.
size_t NegationWindowStart(absl::string_view lower, size_t pos) {
  size_t start = pos;
  int words = 0, chars = 0;
  while (start > 0) {
    size_t prev = start - 1;
    while (prev > 0 && (static_cast<unsigned char>(lower[prev]) & 0xC0) == 0x80) --prev;
    if (ClauseMarkLength(lower, prev) > 0) break;
    const unsigned char c = static_cast<unsigned char>(lower[prev]);
    if (c < 0x80) {
      // Count a word on reaching its last letter, so a word beyond the limit is left out whole.
      const bool word_end = IsAsciiWordChar(lower[prev]) && !IsAsciiWordChar(lower[prev + 1]);
      if (word_end && ++words > kNegationWords) break;
    } else if (++chars > kNegationChars) {
      break;
    }
    start = prev;
  }
  return start;
}

// Whether the text around [start, end) denies it: a negator shortly before in the same clause ("not
// dangerous", "没有受伤") that no pseudo-negator explains away and no break ("if", "就") cuts off,
// or a post-negator right after ("a lawyer is not necessary"). The negator used goes to `used`, if
// given.
bool Negated(const internal::SeverityLexicon& lex, absl::string_view lower, size_t start,
             size_t end, std::vector<Span>* used = nullptr) {
  const size_t from = NegationWindowStart(lower, start);
  for (const auto& negator : lex.negators()) {
    for (const auto& [n_start, n_end] : Spans(lower.substr(from, start - from), negator)) {
      const size_t at = from + n_start;
      const size_t after = from + n_end;
      bool pseudo = false;
      for (const auto& p : lex.pseudo_negators()) {
        const size_t look = at >= p.size() ? at - p.size() : 0;
        for (const auto& [p_start, p_end] : Spans(lower.substr(look, 2 * p.size() + 1), p)) {
          if (look + p_start <= at && look + p_end >= after) pseudo = true;
        }
      }
      if (pseudo) continue;
      const absl::string_view between = lower.substr(after, start - after);
      const bool broken = std::any_of(lex.negation_breaks().begin(), lex.negation_breaks().end(),
                                      [&](const std::string& b) { return Contains(between, b); });
      if (!broken) {
        if (used != nullptr) used->emplace_back(at, after);
        return true;
      }
    }
  }
  size_t to = end;
  while (to < lower.size() && to - end < kPostNegationBytes && ClauseMarkLength(lower, to) == 0) {
    ++to;
  }
  const absl::string_view after = lower.substr(end, to - end);
  return std::any_of(lex.post_negators().begin(), lex.post_negators().end(),
                     [&](const std::string& p) { return Contains(after, p); });
}

double Intensifier(const internal::SeverityLexicon& lex, absl::string_view lower, size_t pos) {
  const std::string before = Before(lower, pos);
  double m = 1.0;
  for (const auto& i : lex.intensifiers()) {
    if (Contains(before, i.text())) m = std::max(m, i.weight());
  }
  return m;
}

void AddSignal(v1::Severity& s, const std::string& kind, const std::string& evidence,
               double points) {
  if (points <= 0) return;
  auto* sig = s.add_signals();
  sig->set_kind(kind);
  sig->set_evidence(evidence);
  sig->set_points(std::round(points * 10) / 10);
  s.set_score(s.score() + points);
}

// A cue's pattern split into parts that may be apart ("promised ... never"), each part into pieces
// that must be adjacent: literal text and {CLASS} references.
struct Piece {
  std::string text;
  bool word_class = false;
};
using Part = std::vector<Piece>;

std::vector<Part> ParsePattern(absl::string_view pattern) {
  std::vector<Part> parts;
  for (absl::string_view part_text : absl::StrSplit(pattern, " ... ")) {
    Part part;
    while (!part_text.empty()) {
      const size_t open = part_text.find('{');
      const size_t close = open == absl::string_view::npos ? open : part_text.find('}', open);
      if (close == absl::string_view::npos) {
        part.push_back({std::string(part_text), false});
        break;
      }
      if (open > 0) part.push_back({std::string(part_text.substr(0, open)), false});
      part.push_back({std::string(part_text.substr(open + 1, close - open - 1)), true});
      part_text.remove_prefix(close + 1);
    }
    parts.push_back(std::move(part));
  }
  return parts;
}

// The parts of `pattern`, parsed once per thread: every assessment matches every cue of the
// lexicon, and parsing them all again took about a quarter of an assessment's time. Keyed by the
// pattern's text, so a lexicon reloaded with other cues is parsed afresh; dropped whole if reloads
// ever leave more than kMaxParsedPatterns.
const std::vector<Part>& PartsOf(absl::string_view pattern) {
  constexpr size_t kMaxParsedPatterns = 4096;
  thread_local absl::flat_hash_map<std::string, std::vector<Part>> parsed;
  if (auto it = parsed.find(pattern); it != parsed.end()) return it->second;
  if (parsed.size() >= kMaxParsedPatterns) parsed.clear();
  return parsed.emplace(std::string(pattern), ParsePattern(pattern)).first->second;
}

// Matches cue patterns in one text, finding each word class's occurrences once.
class CueMatcher {
 public:
  // `pairs` are the byte pairs of `lower`; both must outlive the matcher.
  CueMatcher(const internal::SeverityLexicon& lex, absl::string_view lower, const BytePairs& pairs)
      : lex_(lex), lower_(lower), pairs_(pairs) {
    for (const auto& c : lex.word_classes()) classes_[c.name()] = &c;
  }

  // The first non-negated, non-excepted match of `pattern`: the matched text of each part.
  std::optional<std::vector<std::string>> Match(absl::string_view pattern,
                                                const internal::SeverityKind& kind) {
    const std::vector<Part>& parts = PartsOf(pattern);
    if (parts.empty()) return std::nullopt;
    for (const auto& first : PartSpans(parts[0])) {
      std::vector<Span> matched = {first};
      for (size_t i = 1; i < parts.size() && matched.size() == i; ++i) {
        const size_t from = matched.back().second;
        for (const auto& next : PartSpans(parts[i])) {
          if (next.first < from || next.first - from > kMaxGapBytes) continue;
          const absl::string_view gap = lower_.substr(from, next.first - from);
          if (std::any_of(kind.gap_breaks().begin(), kind.gap_breaks().end(),
                          [&](const std::string& b) { return Contains(gap, b); })) {
            continue;
          }
          matched.push_back(next);
          break;
        }
      }
      if (matched.size() != parts.size()) continue;
      const size_t start = matched.front().first, end = matched.back().second;
      if (Negated(lex_, lower_, start, end, &used_negators_) || Excepted(kind, start, end))
        continue;
      std::vector<std::string> evidence;
      for (const auto& [s, e] : matched) evidence.emplace_back(lower_.substr(s, e - s));
      return evidence;
    }
    return std::nullopt;
  }

  // Negators that denied a cue: "nobody" in "nobody was hurt" is not a complaint that nobody
  // helped.
  const std::vector<Span>& used_negators() const { return used_negators_; }

 private:
  const std::vector<Span>& ClassSpans(const std::string& name) {
    auto [it, inserted] = class_spans_.try_emplace(name);
    if (inserted) {
      if (auto c = classes_.find(name); c != classes_.end()) {
        for (const auto& term : c->second->terms()) {
          for (const auto& span : SpansIn(pairs_, lower_, term)) it->second.push_back(span);
        }
      }
      std::sort(it->second.begin(), it->second.end());
    }
    return it->second;
  }

  // Where the pieces of `part` occur one right after another ("再也不" then a {BUY} word).
  std::vector<Span> PartSpans(const Part& part) {
    std::vector<Span> spans;
    if (part.empty()) return spans;
    spans = part[0].word_class ? ClassSpans(part[0].text) : SpansIn(pairs_, lower_, part[0].text);
    for (size_t i = 1; i < part.size() && !spans.empty(); ++i) {
      std::vector<Span> longer;
      const auto next =
          part[i].word_class ? ClassSpans(part[i].text) : SpansIn(pairs_, lower_, part[i].text);
      for (const auto& [s, e] : spans) {
        for (const auto& [ns, ne] : next) {
          if (ns == e) longer.emplace_back(s, ne);
        }
      }
      spans = std::move(longer);
    }
    return spans;
  }

  // An exception overlapping the match, or near it in its clause ("saw your ad on YouTube", "how do
  // I delete my account", "burns one side of the bread"), cancels it.
  bool Excepted(const internal::SeverityKind& kind, size_t start, size_t end) const {
    const size_t limit = start > kExceptionReachBytes ? start - kExceptionReachBytes : 0;
    while (start > limit) {
      size_t prev = start - 1;
      while (prev > 0 && (static_cast<unsigned char>(lower_[prev]) & 0xC0) == 0x80) --prev;
      if (ClauseMarkLength(lower_, prev) > 0) break;
      start = prev;
    }
    const size_t stop = std::min(lower_.size(), end + kExceptionReachBytes);
    while (end < stop && ClauseMarkLength(lower_, end) == 0) ++end;
    for (const auto& e : kind.exceptions()) {
      for (const auto& [s, t] : SpansIn(pairs_, lower_, e)) {
        if (s < end && t > start) return true;
      }
    }
    return false;
  }

  const internal::SeverityLexicon& lex_;
  absl::string_view lower_;
  const BytePairs& pairs_;
  std::map<std::string, const internal::WordClass*> classes_;
  std::map<std::string, std::vector<Span>> class_spans_;
  std::vector<Span> used_negators_;
};

bool Repetition(absl::string_view text, absl::string_view lower) {
  // "!!!", "???", "！！！", "啊啊啊": the same character three times running.
  std::vector<std::string> chars;
  for (size_t i = 0; i < text.size();) {
    const size_t n = CharLength(static_cast<unsigned char>(text[i]));
    chars.emplace_back(text.substr(i, n));
    i += n;
  }
  for (size_t i = 2; i < chars.size(); ++i) {
    const std::string& ch = chars[i];
    const bool letter_or_digit =
        ch.size() == 1 && absl::ascii_isalnum(static_cast<unsigned char>(ch[0]));
    // "..." trails off rather than shouts.
    if (!letter_or_digit && ch != " " && ch != "." && ch == chars[i - 1] && ch == chars[i - 2]) {
      return true;
    }
  }
  // The same English word three times running: "never never never".
  std::vector<std::string> words =
      absl::StrSplit(lower, absl::ByAnyChar(" ,.!?;:"), absl::SkipEmpty());
  for (size_t i = 2; i < words.size(); ++i) {
    if (words[i] == words[i - 1] && words[i] == words[i - 2]) return true;
  }
  return false;
}

struct Capitals {
  std::vector<std::string> shouted;  // words of 3+ letters all in capitals
  int words = 0;                     // all words of 2+ letters
};

Capitals CountCapitals(absl::string_view text) {
  Capitals out;
  std::string w;
  auto flush = [&] {
    if (w.size() >= 2) ++out.words;
    if (w.size() >= 3 && std::all_of(w.begin(), w.end(), [](char c) {
          return absl::ascii_isupper(static_cast<unsigned char>(c));
        })) {
      out.shouted.push_back(w);
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

// Text as matched: lower case, typographic apostrophes as ASCII ("don’t").
std::string Normalize(absl::string_view text) {
  return absl::StrReplaceAll(absl::AsciiStrToLower(text), {{"\xE2\x80\x99", "'"}});
}

// ParseLexicon's checks, in the order a lexicon file is read: plain terms, word classes, kinds.
absl::Status BadTerm(absl::string_view text, const internal::LexiconTerm& t,
                     absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("severity lexicon: ", api::LineOf(text, t.text()),
                                                 what, " \"", t.text(),
                                                 "\" needs text and a weight >= 0"));
}

absl::Status CheckTerms(const internal::SeverityLexicon& lex, absl::string_view text) {
  for (const auto* terms : {&lex.intensity(), &lex.positive(), &lex.intensifiers()}) {
    for (const auto& t : *terms) {
      if (t.text().empty() || t.weight() < 0) return BadTerm(text, t, "term");
    }
  }
  for (const auto& t : lex.valence()) {
    if (t.text().empty() || t.weight() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("severity lexicon: ", api::LineOf(text, t.text()), "valence \"", t.text(),
                       "\" needs text and a weight <= 0"));
    }
  }
  return absl::OkStatus();
}

// The names of the word classes, each unique and with terms.
absl::StatusOr<std::set<std::string>> CheckWordClasses(const internal::SeverityLexicon& lex,
                                                       absl::string_view text) {
  std::set<std::string> classes;
  for (const auto& c : lex.word_classes()) {
    if (c.name().empty() || c.terms().empty() || !classes.insert(c.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("severity lexicon: ", api::LineOf(text, c.name()), "word class \"", c.name(),
                       "\" needs a unique name and terms"));
    }
  }
  return classes;
}

// A cue names only word classes the lexicon defines.
absl::Status CheckCue(const internal::LexiconTerm& cue, absl::string_view text,
                      const std::set<std::string>& classes) {
  if (cue.text().empty() || cue.weight() < 0) return BadTerm(text, cue, "cue");
  for (const Part& part : ParsePattern(cue.text())) {
    for (const Piece& piece : part) {
      if (piece.word_class && classes.count(piece.text) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("severity lexicon: ", api::LineOf(text, cue.text()), "cue \"", cue.text(),
                         "\" names an unknown word class {", piece.text, "}"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckKinds(const internal::SeverityLexicon& lex, absl::string_view text,
                        const std::set<std::string>& classes) {
  for (const auto& kind : lex.kinds()) {
    if (kind.name().empty() || kind.cues().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("severity lexicon: ", api::LineOf(text, kind.name()), "kind \"", kind.name(),
                       "\" needs a name and cues"));
    }
    for (const auto& cue : kind.cues()) CRM_RETURN_IF_ERROR(CheckCue(cue, text, classes));
    // A floor at or above level 3 would make the kind a serious one without saying so.
    if (!(kind.lifts_to() >= 0 && kind.lifts_to() < lex.level3_from())) {
      return absl::InvalidArgumentError(
          absl::StrCat("severity lexicon: ", api::LineOf(text, kind.name()), "kind \"", kind.name(),
                       "\" needs 0 <= lifts_to < level3_from"));
    }
  }
  return absl::OkStatus();
}

// Matching is on lower-cased text; class names are lower-cased alike so {LAWYER} finds "lawyer".
void LowerCase(internal::SeverityLexicon& lex) {
  auto lower = [](std::string* s) { *s = Normalize(*s); };
  for (auto* terms : {lex.mutable_intensity(), lex.mutable_positive(), lex.mutable_intensifiers(),
                      lex.mutable_valence()}) {
    for (auto& t : *terms) lower(t.mutable_text());
  }
  for (auto* words :
       {lex.mutable_negators(), lex.mutable_pseudo_negators(), lex.mutable_negation_breaks(),
        lex.mutable_post_negators(), lex.mutable_delight()}) {
    for (auto& w : *words) lower(&w);
  }
  for (auto& c : *lex.mutable_word_classes()) {
    lower(c.mutable_name());
    for (auto& t : *c.mutable_terms()) lower(&t);
  }
  for (auto& kind : *lex.mutable_kinds()) {
    for (auto& cue : *kind.mutable_cues()) lower(cue.mutable_text());
    for (auto& e : *kind.mutable_exceptions()) lower(&e);
    for (auto& b : *kind.mutable_gap_breaks()) lower(&b);
  }
}

// AssessSeverity's steps. The order the signals are added in is the order they are listed in.

// A kind of trouble the text names (a legal threat, harm, ...) and the points of its strongest cue.
struct KindFound {
  const std::string* name;
  std::string evidence;
  double points;
  double lifts_to;  // above 0: adds at most what lifts the score to this
};

// Each kind counts once, by its strongest cue: two ways of saying "lawyer" are one legal threat.
std::vector<KindFound> FindKinds(const internal::SeverityLexicon& lex, CueMatcher& matcher) {
  std::vector<KindFound> kinds;
  for (const auto& kind : lex.kinds()) {
    const internal::LexiconTerm* best = nullptr;
    std::vector<std::string> evidence;
    for (const auto& cue : kind.cues()) {
      if (best != nullptr && cue.weight() <= best->weight()) continue;
      if (auto found = matcher.Match(cue.text(), kind)) {
        best = &cue;
        evidence = *std::move(found);
      }
    }
    if (best != nullptr) {
      kinds.push_back(
          {&kind.name(), absl::StrJoin(evidence, " … "), best->weight(), kind.lifts_to()});
    }
  }
  return kinds;
}

// Whether [start, end) overlaps a negator that denied a cue.
bool DeniedSomething(const std::vector<Span>& used_negators, size_t start, size_t end) {
  return std::any_of(used_negators.begin(), used_negators.end(),
                     [&](const Span& n) { return n.first < end && n.second > start; });
}

// Angry words, with the intensifier before them ("really terrible").
void AddIntensity(const internal::SeverityLexicon& lex, absl::string_view lower,
                  const BytePairs& pairs, const std::vector<Span>& used_negators, v1::Severity& s) {
  for (const auto& term : lex.intensity()) {
    int counted = 0;
    for (const auto& [start, end] : SpansIn(pairs, lower, term.text())) {
      if (counted == 2) break;  // one word twice is emphasis; ten times is not ten times angrier
      if (Negated(lex, lower, start, end)) continue;             // "not terrible"
      if (DeniedSomething(used_negators, start, end)) continue;  // "nobody" in "nobody was hurt"
      const double m = Intensifier(lex, lower, start);
      const std::string word(lower.substr(start, end - start));
      AddSignal(s, "intensity", m > 1 ? absl::StrCat(Before(lower, start), word) : word,
                term.weight() * m);
      ++counted;
    }
  }
}

// Words that lean negative, each once, and praise denied ("not helpful"), each once.
void AddValence(const internal::SeverityLexicon& lex, absl::string_view lower,
                const BytePairs& pairs, v1::Severity& s) {
  for (const auto& term : lex.valence()) {
    for (const auto& [start, end] : SpansIn(pairs, lower, term.text())) {
      if (Negated(lex, lower, start, end)) continue;
      AddSignal(s, "intensity", std::string(lower.substr(start, end - start)),
                -term.weight() * lex.points_per_valence() * Intensifier(lex, lower, start));
      break;
    }
  }
  for (const auto& term : lex.positive()) {
    for (const auto& [start, end] : SpansIn(pairs, lower, term.text())) {
      if (!Negated(lex, lower, start, end)) continue;
      AddSignal(s, "negated_positive",
                absl::StrCat(Before(lower, start), lower.substr(start, end - start)),
                term.weight() * Intensifier(lex, lower, start));
      break;
    }
  }
}

// "!" and "！" count, and so does a question asked twice over ("??", "？？"), which is not calm.
int CountExclamations(absl::string_view text) {
  int exclamations = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if (text[pos] == '!') ++exclamations;
    if (text.substr(pos, 3) == "\xEF\xBC\x81") ++exclamations;  // full-width ！
    if (text[pos] == '?' && pos > 0 && text[pos - 1] == '?') ++exclamations;
    if (pos >= 3 && text.substr(pos, 3) == "\xEF\xBC\x9F" &&
        text.substr(pos - 3, 3) == "\xEF\xBC\x9F") {
      ++exclamations;  // full-width ？？
    }
  }
  return exclamations;
}

// Whether the text shows delight: a word of delight that is not negated ("not happy").
bool Delighted(const internal::SeverityLexicon& lex, absl::string_view lower) {
  for (const auto& word : lex.delight()) {
    for (const auto& [start, end] : Spans(lower, word)) {
      if (!Negated(lex, lower, start, end)) return true;
    }
  }
  return false;
}

// How the text is written: exclamations, the same mark or word over and over, shouting.
void AddTone(const internal::SeverityLexicon& lex, absl::string_view text, absl::string_view lower,
             bool kind_found, v1::Severity& s) {
  // Delight with no complaint word, kind or valence so far: the marks are joy, not anger.
  if (!kind_found && s.signals().empty() && Delighted(lex, lower)) return;
  if (const int exclamations = CountExclamations(text); exclamations > 0) {
    AddSignal(s, "exclamation", std::string(std::min(exclamations, 5), '!'),
              std::min(exclamations * lex.points_per_exclamation(), lex.max_exclamation_points()));
  }
  if (Repetition(text, lower)) {
    AddSignal(s, "repetition", "the same mark or word three times running",
              lex.repetition_points());
  }
  // A few words in capitals among lower-case ones are shouting; a whole text in capitals is a habit
  // (or a keyboard) and says nothing about anger.
  const Capitals caps = CountCapitals(text);
  if (caps.shouted.size() >= 2 && caps.shouted.size() * 2 < static_cast<size_t>(caps.words)) {
    AddSignal(s, "all_caps", absl::StrJoin(caps.shouted, " "), lex.all_caps_points());
  }
}

// What the complaint is about and who makes it: the category's and the customer's value's points.
void AddContext(const internal::SeverityLexicon& lex, v1::TicketCategory category,
                CustomerValue value, v1::Severity& s) {
  const std::string category_name = v1::TicketCategory_Name(category);
  if (auto it = lex.category_points().find(category_name); it != lex.category_points().end()) {
    AddSignal(s, "category", category_name.substr(16), it->second);
  }
  if (value.tier > 0 && value.tier < lex.tier_points_size()) {
    AddSignal(s, "customer_value", absl::StrCat("tier ", value.tier), lex.tier_points(value.tier));
  }
  if (value.enterprise)
    AddSignal(s, "customer_value", "enterprise account", lex.enterprise_points());
}

// A signal that lifts the score to `floor` (adding at most `at_most`), or nothing when the other
// signals already reached it: what a fault or the model adds is what the rest left short.
void LiftTo(v1::Severity& s, const std::string& kind, const std::string& evidence, double floor,
            double at_most) {
  AddSignal(s, kind, evidence, std::min(at_most, floor - s.score()));
}

// The model's level when the lexicon scored lower, with the probability and the words that weighed
// most as evidence. Not asked when the lexicon already reached level 3.
void AddModelJudgement(const internal::SeverityLexicon& lex, const SeverityModel& model,
                       absl::string_view text, v1::TicketCategory category, v1::Severity& s) {
  if (s.score() >= lex.level3_from()) return;
  const ModelJudgement j = Judge(model, text, category);
  if (j.level == 1) return;
  LiftTo(s, "text_model",
         absl::StrFormat("%s %.2f: %s", j.level == 3 ? "serious" : "upset",
                         j.level == 3 ? j.serious : j.upset, absl::StrJoin(j.reasons, ", ")),
         j.level == 3 ? lex.level3_from() : lex.level2_from(),
         std::numeric_limits<double>::infinity());
}

// The score, capped at 100, sets the handling level and the priority.
void SetLevel(const internal::SeverityLexicon& lex, v1::Severity& s) {
  s.set_score(std::min(100.0, std::round(s.score() * 10) / 10));
  const int level = s.score() >= lex.level3_from() ? 3 : s.score() >= lex.level2_from() ? 2 : 1;
  s.set_handling_level(level);
  s.set_priority(level == 3 ? v1::PRIORITY_P1 : level == 2 ? v1::PRIORITY_P2 : v1::PRIORITY_P3);
}

}  // namespace

absl::StatusOr<internal::SeverityLexicon> ParseLexicon(absl::string_view text) {
  internal::SeverityLexicon lex;
  CRM_RETURN_IF_ERROR(api::ParseTextProto("severity lexicon", text, &lex));
  CRM_RETURN_IF_ERROR(CheckTerms(lex, text));
  CRM_ASSIGN_OR_RETURN(const std::set<std::string> classes, CheckWordClasses(lex, text));
  CRM_RETURN_IF_ERROR(CheckKinds(lex, text, classes));
  if (!(lex.level2_from() > 0 && lex.level3_from() > lex.level2_from())) {
    return absl::InvalidArgumentError(
        absl::StrCat("severity lexicon: ", api::LineOf(text, "level3_from"),
                     "need 0 < level2_from < level3_from"));
  }
  // Without angry words every complaint would be judged by its category and the customer's value
  // alone: refused rather than run.
  if (lex.intensity().empty()) {
    return absl::InvalidArgumentError("severity lexicon: intensity: at least one term is required");
  }
  LowerCase(lex);
  return lex;
}

namespace {
const text::BuiltIn<internal::SeverityLexicon>& ShippedLexicon() {
  static const auto* lexicon = new text::BuiltIn<internal::SeverityLexicon>(
      "severity lexicon", kBuiltInLexiconText, ParseLexicon);
  return *lexicon;
}
}  // namespace

const absl::StatusOr<internal::SeverityLexicon>& ParseBuiltInLexicon() {
  return ShippedLexicon().parsed();
}

const internal::SeverityLexicon& BuiltInLexicon() { return ShippedLexicon().value(); }

v1::Severity AssessSeverity(const internal::SeverityLexicon& lex, absl::string_view text,
                            v1::TicketCategory category, CustomerValue value,
                            const SeverityModel* model) {
  v1::Severity s;
  const std::string lower = Normalize(text);
  // Kinds first: the negators their cues used are not angry words of their own.
  const BytePairs pairs(lower);
  CueMatcher matcher(lex, lower, pairs);
  const std::vector<KindFound> kinds = FindKinds(lex, matcher);
  AddIntensity(lex, lower, pairs, matcher.used_negators(), s);
  AddValence(lex, lower, pairs, s);
  for (const auto& k : kinds) {
    if (k.lifts_to <= 0) AddSignal(s, *k.name, k.evidence, k.points);
  }
  AddTone(lex, text, lower, !kinds.empty(), s);
  AddContext(lex, category, value, s);
  // Kinds that set a floor come last, so what they add is what the rest left short of it.
  for (const auto& k : kinds) {
    if (k.lifts_to > 0) LiftTo(s, *k.name, k.evidence, k.lifts_to, k.points);
  }
  if (model != nullptr) AddModelJudgement(lex, *model, text, category, s);
  SetLevel(lex, s);
  return s;
}

}  // namespace crm::complaint_ticket
