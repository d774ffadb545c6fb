#include "services/complaint_ticket/ticket_search.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "libs/text/utf8.h"

namespace crm::complaint_ticket {
namespace {

// Longer words are cut to this many bytes (a pasted tracking URL is not a word to search by).
constexpr size_t kMaxTermBytes = 40;
// Counts above this add nothing to a match's weight: repeating a word is not relevance.
constexpr uint32_t kMaxCountedRepeats = 10;

enum class CharClass { kSeparator, kWord, kCjk };

// Fullwidth ASCII (ＡＢＣ１２３) as ASCII.
char32_t Narrow(char32_t c) {
  if (c >= 0xFF01 && c <= 0xFF5E) return c - 0xFEE0;
  return c;
}

CharClass ClassOf(char32_t c) {
  if (c < 0x80) {
    return std::isalnum(static_cast<int>(c)) ? CharClass::kWord : CharClass::kSeparator;
  }
  if (text::IsCjk(c)) return CharClass::kCjk;
  // Punctuation and spaces: Latin-1's, general punctuation, CJK symbols and punctuation, fullwidth
  // forms' punctuation.
  if (c <= 0xBF || (c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
      (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFFEF)) {
    return CharClass::kSeparator;
  }
  return CharClass::kWord;  // other alphabets (é, ü, кириллица) are word characters
}

void AppendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(std::tolower(static_cast<int>(c))));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool IsStopWord(const std::string& w) {
  static const auto* const kStop = new absl::flat_hash_set<std::string>{
      "a",    "an",   "and",  "are",  "as",  "at",   "be",   "but",  "by",   "for",  "i",
      "if",   "in",   "is",   "it",   "me",  "my",   "no",   "not",  "of",   "on",   "or",
      "so",   "that", "the",  "this", "to",  "was",  "we",   "were", "will", "with", "you",
      "your", "our",  "have", "has",  "had", "been", "from", "they", "them", "its",  "am"};
  return kStop->contains(w);
}

void EmitWord(std::string& word, std::vector<std::string>& out) {
  if (word.size() > kMaxTermBytes) word.resize(kMaxTermBytes);
  if (!word.empty() && !IsStopWord(word)) out.push_back(word);
  word.clear();
}

// A run of CJK characters as its bigrams; one alone as itself.
void EmitCjkRun(const std::vector<char32_t>& run, std::vector<std::string>& out) {
  if (run.size() == 1) {
    std::string t;
    AppendUtf8(run[0], t);
    out.push_back(std::move(t));
    return;
  }
  for (size_t k = 0; k + 1 < run.size(); ++k) {
    std::string t;
    AppendUtf8(run[k], t);
    AppendUtf8(run[k + 1], t);
    out.push_back(std::move(t));
  }
}

}  // namespace

std::vector<std::string> TermsOf(absl::string_view text) {
  std::vector<std::string> out;
  std::string word;
  std::vector<char32_t> run;
  size_t i = 0;
  while (i <= text.size()) {
    // A malformed byte reads as a separator.
    const char32_t c =
        i < text.size() ? Narrow(text::NextCodePoint(text, i).value_or(U' ')) : (++i, U' ');
    const CharClass k = ClassOf(c);
    if (k != CharClass::kWord) EmitWord(word, out);
    if (k != CharClass::kCjk && !run.empty()) {
      EmitCjkRun(run, out);
      run.clear();
    }
    if (k == CharClass::kWord) AppendUtf8(c, word);
    if (k == CharClass::kCjk) run.push_back(c);
  }
  return out;
}

std::map<std::string, TermCount> TicketTerms(const v1::Ticket& ticket) {
  std::map<std::string, TermCount> terms;
  for (std::string& t : TermsOf(ticket.subject())) ++terms[std::move(t)].subject;
  for (const v1::TicketMessage& m : ticket.messages()) {
    for (std::string& t : TermsOf(m.text())) {
      TermCount& c = terms[std::move(t)];
      ++(m.internal() ? c.internal : c.messages);
    }
  }
  return terms;
}

uint64_t TermScore(const TermCount& count, bool staff) {
  uint64_t score = 3 * std::min(count.subject, kMaxCountedRepeats) +
                   std::min(count.messages, kMaxCountedRepeats);
  if (staff) score += std::min(count.internal, kMaxCountedRepeats);
  return score;
}

std::vector<std::string> QueryTerms(absl::string_view query, size_t max_terms) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::string& t : TermsOf(query)) {
    if (out.size() == max_terms) break;
    if (seen.insert(t).second) out.push_back(std::move(t));
  }
  return out;
}

}  // namespace crm::complaint_ticket
