// Reads of values stored as one protobuf message type: one key that must exist, a key range, a
// page of a listing. Each works on a Store (committed data) or a Transaction (committed data with
// its own writes); a value that does not parse is DATA_LOSS naming the message type and stops the
// read.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/store/key.h"
#include "libs/store/store.h"

namespace crm::store {

// Parses a stored value into `m`; false, with DATA_LOSS naming the type in `error`, when it does
// not parse.
template <typename M>
bool ParseStored(absl::string_view value, M& m, absl::Status& error) {
  if (m.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
  error = NotParsed(m.GetTypeName());
  return false;
}

// The value of `key` parsed, or the error `absent()` makes when there is none (NOT_FOUND naming the
// request's field, typically; made only then, so a read that finds costs no message).
template <typename M, typename Source>
absl::StatusOr<M> GetProtoOr(Source& source, rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                             absl::FunctionRef<absl::Status()> absent) {
  M m;
  absl::StatusOr<bool> found = source.GetProto(cf, key, &m);
  if (!found.ok()) return found.status();
  if (!*found) return absent();
  return m;
}

// Calls `visit(key, message)` for each key in [begin, end) in order (an empty `end`: no upper
// bound). A `visit` that returns bool stops the scan with false; one that returns nothing sees
// every value.
template <typename M, typename Source, typename Visit>
absl::Status ScanProtos(Source& source, rocksdb::ColumnFamilyHandle* cf, absl::string_view begin,
                        absl::string_view end, Visit&& visit) {
  absl::Status parse;
  absl::Status s = source.Scan(cf, begin, end, [&](absl::string_view k, absl::string_view v) {
    M m;
    if (!ParseStored(v, m, parse)) return false;
    if constexpr (std::is_void_v<std::invoke_result_t<Visit&, absl::string_view, M&&>>) {
      visit(k, std::move(m));
      return true;
    } else {
      return static_cast<bool>(visit(k, std::move(m)));
    }
  });
  return s.ok() ? parse : s;
}

// ScanProtos over the keys that start with `prefix`.
template <typename M, typename Source, typename Visit>
absl::Status ScanPrefixProtos(Source& source, rocksdb::ColumnFamilyHandle* cf,
                              absl::string_view prefix, Visit&& visit) {
  return ScanProtos<M>(source, cf, prefix, PrefixUpperBound(prefix), std::forward<Visit>(visit));
}

// The values under `prefix`, parsed, in key order: all of them, or the first `limit`.
template <typename M, typename Source>
absl::StatusOr<std::vector<M>> ProtosUnder(Source& source, rocksdb::ColumnFamilyHandle* cf,
                                           absl::string_view prefix,
                                           size_t limit = std::numeric_limits<size_t>::max()) {
  std::vector<M> out;
  if (limit == 0) return out;
  absl::Status s = ScanPrefixProtos<M>(source, cf, prefix, [&](absl::string_view, M&& m) {
    out.push_back(std::move(m));
    return out.size() < limit;
  });
  if (!s.ok()) return s;
  return out;
}

// One page of a listing over the keys that start with `prefix`: appends to `out` the values after
// `after` (the last key of the previous page, from its page token; see ResumeAfter), parsed, until
// `out` holds `limit`; `more` says whether any are left, `last_key` is the key of the last value
// appended (the next page's `after`; unchanged when none is).
template <typename M>
absl::Status ScanPage(const Store& store, rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix,
                      absl::string_view after, int limit, std::vector<M>* out,
                      std::string* last_key, bool* more) {
  *more = false;
  absl::StatusOr<std::string> begin = ResumeAfter(prefix, after);
  if (!begin.ok()) return begin.status();
  absl::Status parse;
  absl::Status s = store.Scan(cf, *begin, PrefixUpperBound(prefix),
                              [&](absl::string_view k, absl::string_view v) {
                                // Only the values on the page are parsed.
                                if (static_cast<int>(out->size()) == limit) {
                                  *more = true;
                                  return false;
                                }
                                M m;
                                if (!ParseStored(v, m, parse)) return false;
                                out->push_back(std::move(m));
                                *last_key = std::string(k);
                                return true;
                              });
  return s.ok() ? parse : s;
}

}  // namespace crm::store
