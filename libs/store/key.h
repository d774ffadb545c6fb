// Order-preserving key encoding for composite RocksDB keys: (customer, time, sequence, ...).
//
// Strings escape 0x00 as 00 FF and end with 00 01, so no component can run into the next and a
// string sorts before every longer string it prefixes. Unsigned integers are big-endian; signed
// ones flip the sign bit; `Descending` inverts the bits so that newer-first scans are plain forward
// iteration.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace crm::store {

class Key {
 public:
  Key() = default;
  Key& Str(absl::string_view s);
  Key& U64(uint64_t v);
  Key& I64(int64_t v);
  // Sorts larger values first.
  Key& Descending(uint64_t v);
  // Microseconds since the epoch, ascending or newest first.
  Key& Time(absl::Time t) { return I64(absl::ToUnixMicros(t)); }
  Key& TimeNewestFirst(absl::Time t) {
    return Descending(static_cast<uint64_t>(absl::ToUnixMicros(t)));
  }

  const std::string& bytes() const { return bytes_; }
  std::string Build() const { return bytes_; }
  operator absl::string_view() const { return bytes_; }

 private:
  std::string bytes_;
};

// Reads back what Key wrote, component by component. Each method returns nullopt on malformed
// input.
class KeyReader {
 public:
  explicit KeyReader(absl::string_view bytes) : rest_(bytes) {}
  std::optional<std::string> Str();
  std::optional<uint64_t> U64();
  std::optional<int64_t> I64();
  std::optional<uint64_t> Descending();
  std::optional<absl::Time> Time();
  std::optional<absl::Time> TimeNewestFirst();
  bool done() const { return rest_.empty(); }
  absl::string_view rest() const { return rest_; }

 private:
  absl::string_view rest_;
};

// The smallest key greater than every key starting with `prefix`; empty when there is none.
std::string PrefixUpperBound(absl::string_view prefix);

// Where the next page of a listing over the keys starting with `prefix` begins: just after `after`
// (the last key of the previous page, from a page token), or at the prefix when `after` is empty. A
// resume key outside the prefix is another listing's (another customer's) position:
// INVALID_ARGUMENT on page_token, naming nothing of it, whatever the page token's own checks said.
absl::StatusOr<std::string> ResumeAfter(absl::string_view prefix, absl::string_view after);

}  // namespace crm::store
