// JSON log lines on stdout, one object per line: {"time","level","service","message", ...fields},
// then "trace_id" and "span_id" when the line is written in a trace (libs/trace/trace.h).
// Abseil 20220623 has no absl/log, and a collector (Loki, Elasticsearch, kubectl logs | jq) wants
// one parseable object per line, so this is all a process needs. Thread-safe: lines never
// interleave.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"

namespace crm::log {

enum class Level { kDebug, kInfo, kWarning, kError };

// One key/value pair of a log line. Holds views: build it in the call expression only.
struct Field {
  Field(absl::string_view k, absl::string_view v) : key(k), value(v) {}
  Field(absl::string_view k, const std::string& v) : key(k), value(absl::string_view(v)) {}
  Field(absl::string_view k, const char* v) : key(k), value(absl::string_view(v)) {}
  Field(absl::string_view k, int64_t v) : key(k), value(v) {}
  Field(absl::string_view k, int v) : key(k), value(int64_t{v}) {}
  Field(absl::string_view k, uint64_t v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(absl::string_view k, uint32_t v) : key(k), value(int64_t{v}) {}
  Field(absl::string_view k, double v) : key(k), value(v) {}
  Field(absl::string_view k, bool v) : key(k), value(v) {}

  absl::string_view key;
  std::variant<absl::string_view, int64_t, double, bool> value;
};

// Names the process in every line; call once at start-up.
void SetService(absl::string_view service);
// Lines below this level are dropped (default kInfo; CRM_LOG_LEVEL=debug lowers it).
void SetMinLevel(Level level);
// Whether lines of `level` are written (to skip preparing a line that would be dropped).
bool Enabled(Level level);

void Write(Level level, absl::string_view message, std::initializer_list<Field> fields = {});

inline void Debug(absl::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kDebug, m, f);
}
inline void Info(absl::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kInfo, m, f);
}
inline void Warning(absl::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kWarning, m, f);
}
inline void Error(absl::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kError, m, f);
}

// Appends `s` to `out` as a JSON string literal (quotes included), escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD so a line is always valid JSON.
void AppendJsonString(std::string& out, absl::string_view s);

}  // namespace crm::log
