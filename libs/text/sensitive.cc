#include "libs/text/sensitive.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace crm::text {
namespace {

bool PassesLuhn(absl::string_view digits) {
  int sum = 0;
  for (size_t i = 0; i < digits.size(); ++i) {
    int d = digits[digits.size() - 1 - i] - '0';
    if (i % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 == 0;
}

bool IsCardRun(absl::string_view digits) {
  if (digits.size() > 19) return true;
  return digits.size() >= 13 && PassesLuhn(digits);
}

bool IsDigit(char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }
bool IsEmailLocal(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '%' ||
         c == '+' || c == '-';
}
bool IsDomain(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
}
bool IsBase64Url(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '=';
}
bool IsTokenChar(char c) { return IsBase64Url(c) || c == '.' || c == '/' || c == '+' || c == '~'; }

// The end of a card-number-like run of digits starting at `i` (with single separators), and its
// digits.
size_t DigitRun(absl::string_view s, size_t i, std::string* digits) {
  digits->clear();
  size_t end = i;
  while (end < s.size()) {
    if (IsDigit(s[end])) {
      digits->push_back(s[end]);
      ++end;
    } else if ((s[end] == ' ' || s[end] == '-') && !digits->empty() && end + 1 < s.size() &&
               IsDigit(s[end + 1])) {
      ++end;
    } else {
      break;
    }
  }
  return end;
}

}  // namespace

bool ContainsCardNumber(absl::string_view s) {
  std::string digits;
  for (size_t i = 0; i < s.size();) {
    if (!IsDigit(s[i])) {
      ++i;
      continue;
    }
    const size_t end = DigitRun(s, i, &digits);
    if (IsCardRun(digits)) return true;
    i = end;
  }
  return false;
}

namespace {

// Each matcher answers where the secret that starts at s[i] ends, or i when none starts there.

// "Bearer <anything>": the credential that follows.
size_t BearerTokenEnd(absl::string_view s, size_t i) {
  if (!absl::StartsWith(s.substr(i), "Bearer ") && !absl::StartsWith(s.substr(i), "bearer "))
    return i;
  if (i > 0 && IsBase64Url(s[i - 1])) return i;
  size_t end = i + 7;
  while (end < s.size() && IsTokenChar(s[end])) ++end;
  return end > i + 7 ? end : i;
}

// A JWT: "eyJ" (base64url of '{"') then two dots.
size_t JwtEnd(absl::string_view s, size_t i) {
  if (!absl::StartsWith(s.substr(i), "eyJ") || (i > 0 && IsBase64Url(s[i - 1]))) return i;
  size_t end = i;
  int dots = 0;
  while (end < s.size() && (IsBase64Url(s[end]) || s[end] == '.')) dots += s[end++] == '.';
  return dots >= 1 && end - i >= 16 ? end : i;
}

// The domain of an e-mail address, local@domain.tld, from its '@' (the local part is already out).
size_t EmailDomainEnd(absl::string_view s, size_t i) {
  if (s[i] != '@' || i == 0 || !IsEmailLocal(s[i - 1])) return i;
  size_t end = i + 1;
  bool dot = false;
  while (end < s.size() && IsDomain(s[end])) dot |= s[end++] == '.';
  return dot && end > i + 3 ? end : i;
}

// A card number: a run of digits (spaces or dashes between groups) that passes Luhn.
size_t CardNumberEnd(absl::string_view s, size_t i, std::string* digits) {
  if (!IsDigit(s[i]) || (i > 0 && IsDigit(s[i - 1]))) return i;
  const size_t end = DigitRun(s, i, digits);
  // Digits inside an identifier ("c07531839669485c3", a hex id) are the id's, not a card number: a
  // tenth of long digit runs pass Luhn by chance, and redacting ids would hide whose call a log
  // line is about.
  const bool inside_identifier =
      (i > 0 && absl::ascii_isalpha(static_cast<unsigned char>(s[i - 1]))) ||
      (end < s.size() && absl::ascii_isalpha(static_cast<unsigned char>(s[end])));
  return !inside_identifier && IsCardRun(*digits) ? end : i;
}

}  // namespace

std::string Redact(absl::string_view s) {
  // Fast path: nothing that could start a secret.
  bool suspicious = false;
  for (char c : s)
    suspicious = suspicious || c == '@' || IsDigit(c) || c == 'e' || c == 'B' || c == 'b';
  if (!suspicious) return std::string(s);

  std::string out;
  out.reserve(s.size());
  std::string digits;
  for (size_t i = 0; i < s.size();) {
    if (size_t end = BearerTokenEnd(s, i); end > i) {
      out.append("Bearer <token>");
      i = end;
    } else if (end = JwtEnd(s, i); end > i) {
      out.append("<token>");
      i = end;
    } else if (end = EmailDomainEnd(s, i); end > i) {
      size_t local = out.size();
      while (local > 0 && IsEmailLocal(out[local - 1])) --local;
      out.resize(local);
      out.append("<email>");
      i = end;
    } else if (end = CardNumberEnd(s, i, &digits); end > i) {
      out.append("<card number>");
      i = end;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

}  // namespace crm::text
