#include "libs/store/key.h"

#include "absl/strings/match.h"

namespace crm::store {
namespace {

void AppendBigEndian(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

}  // namespace

Key& Key::Str(absl::string_view s) {
  for (char c : s) {
    bytes_.push_back(c);
    if (c == '\0') bytes_.push_back('\xFF');
  }
  bytes_.push_back('\0');
  bytes_.push_back('\x01');
  return *this;
}

Key& Key::U64(uint64_t v) {
  AppendBigEndian(bytes_, v);
  return *this;
}

Key& Key::I64(int64_t v) {
  AppendBigEndian(bytes_, static_cast<uint64_t>(v) ^ (uint64_t{1} << 63));
  return *this;
}

Key& Key::Descending(uint64_t v) {
  AppendBigEndian(bytes_, ~v);
  return *this;
}

std::optional<std::string> KeyReader::Str() {
  std::string out;
  for (size_t i = 0; i < rest_.size(); ++i) {
    const char c = rest_[i];
    if (c != '\0') {
      out.push_back(c);
      continue;
    }
    if (i + 1 >= rest_.size()) return std::nullopt;
    if (rest_[i + 1] == '\xFF') {
      out.push_back('\0');
      ++i;
      continue;
    }
    if (rest_[i + 1] == '\x01') {
      rest_.remove_prefix(i + 2);
      return out;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<uint64_t> KeyReader::U64() {
  if (rest_.size() < 8) return std::nullopt;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(rest_[i]);
  rest_.remove_prefix(8);
  return v;
}

std::optional<int64_t> KeyReader::I64() {
  auto v = U64();
  if (!v) return std::nullopt;
  return static_cast<int64_t>(*v ^ (uint64_t{1} << 63));
}

std::optional<uint64_t> KeyReader::Descending() {
  auto v = U64();
  if (!v) return std::nullopt;
  return ~*v;
}

std::optional<absl::Time> KeyReader::Time() {
  auto v = I64();
  if (!v) return std::nullopt;
  return absl::FromUnixMicros(*v);
}

std::optional<absl::Time> KeyReader::TimeNewestFirst() {
  auto v = Descending();
  if (!v) return std::nullopt;
  return absl::FromUnixMicros(static_cast<int64_t>(*v));
}

std::string PrefixUpperBound(absl::string_view prefix) {
  std::string bound(prefix);
  while (!bound.empty()) {
    auto last = static_cast<unsigned char>(bound.back());
    if (last != 0xFF) {
      bound.back() = static_cast<char>(last + 1);
      return bound;
    }
    bound.pop_back();
  }
  return bound;
}

absl::StatusOr<std::string> ResumeAfter(absl::string_view prefix, absl::string_view after) {
  if (after.empty()) return std::string(prefix);
  if (!absl::StartsWith(after, prefix)) {
    return absl::InvalidArgumentError("page_token: does not belong to this listing");
  }
  std::string begin(after);
  begin.push_back('\0');
  return begin;
}

}  // namespace crm::store
