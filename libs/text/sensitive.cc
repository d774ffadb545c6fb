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
    // "Bearer <anything>": the credential that follows.
    if ((absl::StartsWith(s.substr(i), "Bearer ") || absl::StartsWith(s.substr(i), "bearer ")) &&
        (i == 0 || !IsBase64Url(s[i - 1]))) {
      size_t end = i + 7;
      while (end < s.size() && IsTokenChar(s[end])) ++end;
      if (end > i + 7) {
        out.append("Bearer <token>");
        i = end;
        continue;
      }
    }
    // A JWT: "eyJ" (base64url of '{"') then two dots.
    if (absl::StartsWith(s.substr(i), "eyJ") && (i == 0 || !IsBase64Url(s[i - 1]))) {
      size_t end = i;
      int dots = 0;
      while (end < s.size() && (IsBase64Url(s[end]) || s[end] == '.')) dots += s[end++] == '.';
      if (dots >= 1 && end - i >= 16) {
        out.append("<token>");
        i = end;
        continue;
      }
    }
    // An e-mail address: local@domain.tld.
    if (s[i] == '@' && i > 0 && IsEmailLocal(s[i - 1])) {
      size_t end = i + 1;
      bool dot = false;
      while (end < s.size() && IsDomain(s[end])) dot |= s[end++] == '.';
      if (dot && end > i + 3) {
        size_t start = out.size();
        while (start > 0 && IsEmailLocal(out[start - 1])) --start;
        out.resize(start);
        out.append("<email>");
        i = end;
        continue;
      }
    }
    if (IsDigit(s[i]) && (i == 0 || !IsDigit(s[i - 1]))) {
      const size_t end = DigitRun(s, i, &digits);
      // Digits inside an identifier ("c07531839669485c3", a hex id) are the id's, not a card
      // number: a tenth of long digit runs pass Luhn by chance, and redacting ids would hide whose
      // call a log line is about.
      const bool inside_identifier =
          (i > 0 && absl::ascii_isalpha(static_cast<unsigned char>(s[i - 1]))) ||
          (end < s.size() && absl::ascii_isalpha(static_cast<unsigned char>(s[end])));
      if (!inside_identifier && IsCardRun(digits)) {
        out.append("<card number>");
        i = end;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

}  // namespace crm::text
