#include "libs/trace/trace.h"

#include <algorithm>

#include "absl/random/random.h"

namespace crm::trace {
namespace {

constexpr char kHex[] = "0123456789abcdef";
// "00-" + 32 + "-" + 16 + "-" + 2
constexpr size_t kVersion00Length = 55;

template <size_t N>
std::string Hex(const std::array<uint8_t, N>& bytes) {
  std::string out(2 * N, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

// A lower-case hex digit's value, or -1: the specification allows no upper case.
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

template <size_t N>
bool ParseHex(absl::string_view s, std::array<uint8_t, N>& out) {
  if (s.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    const int hi = HexValue(s[2 * i]);
    const int lo = HexValue(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

template <size_t N>
void FillRandom(std::array<uint8_t, N>& bytes) {
  // One generator per thread, seeded from the OS: ids must be unpredictable and unique across
  // processes, and a shared generator would need a lock on every call.
  thread_local absl::BitGen gen;
  do {
    for (uint8_t& b : bytes) b = absl::Uniform<uint8_t>(gen);
  } while (AllZero(bytes));
}

using internal::Entry;

// Removes the entry of `owner` and everything above it; false when this thread has none.
bool PopTo(const void* owner) {
  std::vector<Entry>& entries = internal::entries;
  for (size_t i = entries.size(); i-- > 0;) {
    if (entries[i].owner == owner) {
      entries.resize(i);
      return true;
    }
  }
  return false;
}

}  // namespace

std::string TraceContext::TraceIdHex() const { return Hex(trace_id); }
std::string TraceContext::SpanIdHex() const { return Hex(span_id); }

std::optional<TraceContext> Parse(absl::string_view s) {
  if (s.size() < kVersion00Length) return std::nullopt;
  std::array<uint8_t, 1> version{};
  if (!ParseHex(s.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
  if (version[0] == 0 ? s.size() != kVersion00Length
                      : s.size() > kVersion00Length && s[kVersion00Length] != '-') {
    return std::nullopt;
  }
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return std::nullopt;
  TraceContext c;
  std::array<uint8_t, 1> flags{};
  if (!ParseHex(s.substr(3, 32), c.trace_id) || !ParseHex(s.substr(36, 16), c.span_id) ||
      !ParseHex(s.substr(53, 2), flags) || AllZero(c.trace_id) || AllZero(c.span_id)) {
    return std::nullopt;
  }
  c.flags = flags[0];
  return c;
}

std::string Format(const TraceContext& c) {
  std::string out;
  out.reserve(kVersion00Length);
  out.append("00-").append(Hex(c.trace_id)).append("-").append(Hex(c.span_id)).append("-");
  out.append(Hex(std::array<uint8_t, 1>{static_cast<uint8_t>(c.flags & 1)}));
  return out;
}

TraceContext NewTrace() {
  TraceContext c;
  FillRandom(c.trace_id);
  FillRandom(c.span_id);
  c.flags = 1;
  return c;
}

TraceContext ChildOf(const TraceContext& parent) {
  TraceContext c;
  c.trace_id = parent.trace_id;
  FillRandom(c.span_id);
  c.flags = parent.flags & 1;
  return c;
}

TraceContext ContinueOrStart(absl::string_view traceparent) {
  if (auto parent = Parse(traceparent)) return ChildOf(*parent);
  return NewTrace();
}

Scope::Scope(std::optional<TraceContext> context) {
  internal::entries.push_back(Entry{std::move(context), this, false});
}

Scope::~Scope() { PopTo(this); }

void EnterCall(const TraceContext& context, const void* call) {
  internal::entries.push_back(Entry{context, call, true});
}

void LeaveCall(const void* call) { PopTo(call); }

void LeaveCallOnThisThread() {
  std::vector<Entry>& entries = internal::entries;
  if (!entries.empty() && entries.back().call) entries.pop_back();
}

}  // namespace crm::trace
