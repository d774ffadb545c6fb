// UTF-8 checks shared by request validation and the JSON logger: a text field from a client must be
// valid UTF-8, and its length limits count characters, not bytes (a Chinese name is 3 bytes a
// character). Also reading text code point by code point, and telling CJK characters, for ticket
// search and the severity model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace crm::text {

// Length of the well-formed UTF-8 sequence starting at s[i] (1-4), or 0 when it is not well formed
// (overlong, surrogate, beyond U+10FFFF, truncated).
inline size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

inline bool IsValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The code point of the UTF-8 sequence at s[i], advancing `i` past it; none, advancing one byte,
// when the sequence is not well formed.
inline std::optional<char32_t> NextCodePoint(absl::string_view s, size_t& i) {
  const size_t n = Utf8SequenceLength(s, i);
  if (n == 0) {
    ++i;
    return std::nullopt;
  }
  const auto lead = static_cast<unsigned char>(s[i]);
  char32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// Chinese characters (unified ideographs and their extensions, compatibility ideographs) and
// Japanese kana: the scripts written without spaces between words.
inline bool IsCjk(char32_t c) {
  return (c >= 0x3040 && c <= 0x30FF) ||  // hiragana, katakana
         (c >= 0x3400 && c <= 0x4DBF) ||  // CJK extension A
         (c >= 0x4E00 && c <= 0x9FFF) ||  // CJK unified ideographs
         (c >= 0xF900 && c <= 0xFAFF) ||  // compatibility ideographs
         (c >= 0x20000 && c <= 0x2FA1F);  // extensions B-F, compatibility supplement
}

// Whether the text holds a CJK character (a Chinese line may open with Latin letters: "iPhone 壳").
inline bool ContainsCjk(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (const std::optional<char32_t> c = NextCodePoint(s, i); c && IsCjk(*c)) return true;
  }
  return false;
}

// Number of code points in valid UTF-8 text.
inline size_t CodePointCount(absl::string_view s) {
  size_t count = 0;
  for (unsigned char c : s) count += (c & 0xC0) != 0x80;
  return count;
}

}  // namespace crm::text
