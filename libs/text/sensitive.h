// What must never be stored or logged in the clear: card numbers, e-mail addresses, bearer tokens
// (JWTs). Request validation refuses card numbers (a payment preference keeps the provider's token
// and the last 4 digits); the JSON logger passes every line through Redact, so an error message
// that quotes an e-mail or a token pasted into a URL path does not reach the logs. Pure functions;
// thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace crm::text {

// A run of 13-19 digits passing the Luhn check (a single space or dash between digits continues the
// run: "4111 1111-1111 1111"), or a run longer than 19 digits (a number with a card inside).
bool ContainsCardNumber(absl::string_view s);

// `s` with e-mail addresses replaced by "<email>", JWTs and bearer credentials by "<token>", and
// card numbers by "<card number>". Returns `s` unchanged (no copy work beyond the scan) when there
// is nothing to hide.
std::string Redact(absl::string_view s);

}  // namespace crm::text
