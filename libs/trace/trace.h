// W3C Trace Context (level 1, https://www.w3.org/TR/trace-context/): the `traceparent` value a call
// carries ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"), and the trace current on a
// thread, which libs/log writes as "trace_id" and "span_id" into every line.
//
// How a trace travels: the gateway continues a client's traceparent or starts a new trace; every
// gRPC server makes the caller's trace current while a unary handler runs (libs/rpc/server.cc) and
// libs/rpc's executor carries it into the work a handler hands off; every channel libs/rpc makes
// sends the current trace with a new span id (libs/rpc/client.cc); an event written to the outbox
// keeps the trace it was written in, and its consumer applies it in that trace (libs/events).
//
// Thread-safe: the current trace is per thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace crm::trace {

// The metadata key and HTTP header (lower case, as gRPC and HTTP/2 want it).
inline constexpr char kTraceparent[] = "traceparent";

struct TraceContext {
  std::array<uint8_t, 16> trace_id{};
  // The span of whoever holds this context: a child's span is new, its trace id the parent's.
  std::array<uint8_t, 8> span_id{};
  // Bit 0: sampled (the caller records this trace). The only flag level 1 defines.
  uint8_t flags = 0;

  std::string TraceIdHex() const;
  std::string SpanIdHex() const;
  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

// The context in a traceparent value; none when it is not one: a version other than a known or
// future one (ff is never valid), wrong lengths or separators, anything but lower-case hex, an
// all-zero trace or span id. A future version (01-fe) is read by its version-00 prefix, as the
// specification asks; version 00 must be exactly 55 characters.
std::optional<TraceContext> Parse(absl::string_view traceparent);
// The version-00 traceparent value of `context`. Only the sampled flag is kept: level 1 defines
// no other, and a participant must not pass on flags it does not know.
std::string Format(const TraceContext& context);

// A new trace: random trace and span ids (never all zero), sampled (every process logs every
// trace).
TraceContext NewTrace();
// A new span in `parent`'s trace: the same trace id and sampled flag, a new random span id.
TraceContext ChildOf(const TraceContext& parent);
// What a receiver of `traceparent` works in: a child of it when it parses, else a new trace (a
// malformed or missing traceparent is never an error).
TraceContext ContinueOrStart(absl::string_view traceparent);

namespace internal {
// The thread's current trace: a stack, since scopes nest and a gRPC thread may run another call's
// handler inside a call it is already serving (gRPC runs pending callbacks at the end of its API
// calls). In the header so that reading it, once per log line, is inlined.
struct Entry {
  std::optional<TraceContext> context;
  const void* owner;  // the Scope or the call that entered it
  bool call;
};
inline thread_local std::vector<Entry> entries;
}  // namespace internal

// The trace current on this thread, if any.
inline std::optional<TraceContext> Current() {
  if (internal::entries.empty()) return std::nullopt;
  return internal::entries.back().context;
}

// Makes `context` current on this thread until destroyed (none: no trace is current in between),
// then restores what was current before. Scopes nest; create and destroy on one thread.
class Scope {
 public:
  explicit Scope(std::optional<TraceContext> context);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// A server call's trace, which no scope can hold: it is entered in a gRPC hook that runs just
// before the handler, and the handler returns into gRPC, not to the code that entered it. `call`
// identifies the call (any address unique while it lives).
//
// EnterCall makes `context` current on this thread. LeaveCall(call) restores what was current
// before, if this thread entered `call` (anything entered since and not left goes too); elsewhere
// it does nothing. LeaveCallOnThisThread leaves the call entered last on this thread, if nothing
// entered since is still current: for a handler that hands its call to another thread
// (rpc::FinishOn) and returns.
void EnterCall(const TraceContext& context, const void* call);
void LeaveCall(const void* call);
void LeaveCallOnThisThread();

}  // namespace crm::trace
