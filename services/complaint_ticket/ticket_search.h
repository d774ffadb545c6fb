// The words of a ticket as full-text search finds them, in Chinese and English: English (and other
// alphabetic or numeric) words lower-cased and whole, Chinese (and Japanese kana) text as every two
// adjacent characters (bigrams; a lone character stands for itself), since Chinese has no spaces
// and a bigram index finds any word of two or more characters without a dictionary. A few English
// words too common to tell tickets apart are left out. Fullwidth letters and digits read as ASCII.
// Pure functions.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

// The terms of `text`, in order, repeats included.
std::vector<std::string> TermsOf(absl::string_view text);

// How often a term occurs in a ticket, by where: what a customer may be matched on (the subject and
// the messages they see) apart from agents' internal notes.
struct TermCount {
  uint32_t subject = 0;
  uint32_t messages = 0;
  uint32_t internal = 0;
  bool operator==(const TermCount&) const = default;
};

// Every term of the ticket's subject and messages.
std::map<std::string, TermCount> TicketTerms(const v1::Ticket& ticket);

// A match's weight: subjects count three times a message; internal notes only for staff.
uint64_t TermScore(const TermCount& count, bool staff);

// The distinct terms of a search query, in order; at most `max_terms` (the rest are dropped).
std::vector<std::string> QueryTerms(absl::string_view query, size_t max_terms);

}  // namespace crm::complaint_ticket
