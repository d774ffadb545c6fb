// libs/trace: the traceparent value as W3C Trace Context level 1 defines it (every malformed form
// refused, future versions read by their prefix), new traces and child spans, the current trace of
// a thread (scopes, a server call entered in one place and left in another), and that log lines and
// executor work carry it.
#include "libs/trace/trace.h"

#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "catch2/catch.hpp"
#include "libs/log/log.h"
#include "libs/rpc/executor.h"
#include "tests/support/source_files.h"
#include "tests/support/temp_dir.h"

namespace crm::trace {
namespace {

// The example of the specification.
constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kSpanId[] = "00f067aa0ba902b7";
const std::string kValid = std::string("00-") + kTraceId + "-" + kSpanId + "-01";

TEST_CASE("traceparent: a valid value parses and formats back the same") {
  const std::optional<TraceContext> c = Parse(kValid);
  REQUIRE(c.has_value());
  CHECK(c->TraceIdHex() == kTraceId);
  CHECK(c->SpanIdHex() == kSpanId);
  CHECK(c->flags == 1);
  CHECK(Format(*c) == kValid);

  const std::string unsampled = std::string("00-") + kTraceId + "-" + kSpanId + "-00";
  REQUIRE(Parse(unsampled).has_value());
  CHECK(Parse(unsampled)->flags == 0);
  CHECK(Format(*Parse(unsampled)) == unsampled);
}

TEST_CASE("traceparent: flags level 1 does not define are not passed on") {
  const std::optional<TraceContext> c =
      Parse(std::string("00-") + kTraceId + "-" + kSpanId + "-09");
  REQUIRE(c.has_value());
  CHECK(Format(*c) == kValid);
  CHECK(Format(ChildOf(*c)).substr(52) == "-01");
}

TEST_CASE("traceparent: every malformed form is refused") {
  const std::string t = kTraceId, s = kSpanId;
  const std::string upper_trace = "4BF92F3577B34DA6A3CE929D0E0E4736";
  for (const std::string& bad : {
           std::string(),
           std::string("00"),
           kValid.substr(0, 54),                   // one character short
           kValid + "-",                           // version 00 is exactly 55 characters
           kValid + "-extra",                      // nothing may follow version 00
           " " + kValid,                           // no surrounding space
           kValid + " ",                           //
           "ff-" + t + "-" + s + "-01",            // version ff is never valid
           "0g-" + t + "-" + s + "-01",            // version not hex
           "0A-" + t + "-" + s + "-01",            // upper-case version
           "00-" + upper_trace + "-" + s + "-01",  // upper-case trace id
           "00-" + t + "-00F067AA0BA902B7-01",     // upper-case span id
           "00-" + t + "-" + s + "-0A",            // upper-case flags
           "00-" + t + "-" + s + "-0z",            // flags not hex
           "00-4bf92f3577b34da6a3ce929d0e0e473g-" + s + "-01",  // trace id not hex
           "00-" + t + "-00f067aa0ba902bx-01",                  // span id not hex
           "00-00000000000000000000000000000000-" + s + "-01",  // all-zero trace id
           "00-" + t + "-0000000000000000-01",                  // all-zero span id
           "00_" + t + "-" + s + "-01",                         // separators
           "00-" + t + "_" + s + "-01",                         //
           "00-" + t + "-" + s + "_01",                         //
           "00-" + t.substr(1) + "-" + s + "-001",              // field lengths shifted
           "00-" + t + "0-" + s.substr(1) + "-01",              //
           "00-" + t + "-" + s + "-1",                          // short flags
       }) {
    INFO("traceparent \"" << bad << "\"");
    CHECK_FALSE(Parse(bad).has_value());
  }
}

TEST_CASE("traceparent: a future version is read by its version-00 prefix") {
  const std::string future = std::string("01-") + kTraceId + "-" + kSpanId + "-01";
  REQUIRE(Parse(future).has_value());
  CHECK(Parse(future)->TraceIdHex() == kTraceId);
  REQUIRE(Parse(future + "-what-comes-next").has_value());
  CHECK(Parse(future + "-what-comes-next")->SpanIdHex() == kSpanId);
  // After the prefix a future version needs a separator; what it continues with is its own.
  CHECK_FALSE(Parse(future + "x").has_value());
  // Passed on as version 00, the one this participant speaks.
  CHECK(Format(*Parse(future)) == kValid);
}

TEST_CASE("new traces are random, sampled, never all zero, and parse back") {
  std::set<std::string> traces, spans;
  for (int i = 0; i < 100; ++i) {
    const TraceContext c = NewTrace();
    CHECK(c.flags == 1);
    CHECK(c.TraceIdHex() != std::string(32, '0'));
    CHECK(c.SpanIdHex() != std::string(16, '0'));
    REQUIRE(Parse(Format(c)).has_value());
    CHECK(*Parse(Format(c)) == c);
    traces.insert(c.TraceIdHex());
    spans.insert(c.SpanIdHex());
  }
  CHECK(traces.size() == 100);
  CHECK(spans.size() == 100);
}

TEST_CASE("a child span keeps the trace and its sampled flag, with a span id of its own") {
  const TraceContext parent = *Parse(kValid);
  const TraceContext child = ChildOf(parent);
  CHECK(child.TraceIdHex() == kTraceId);
  CHECK(child.SpanIdHex() != kSpanId);
  CHECK(child.flags == 1);
  const TraceContext unsampled = *Parse(std::string("00-") + kTraceId + "-" + kSpanId + "-00");
  CHECK(ChildOf(unsampled).flags == 0);
}

TEST_CASE("a receiver continues a valid traceparent and starts a new trace for anything else") {
  const TraceContext continued = ContinueOrStart(kValid);
  CHECK(continued.TraceIdHex() == kTraceId);
  CHECK(continued.SpanIdHex() != kSpanId);
  for (const std::string& bad :
       {std::string(), std::string("garbage"),
        std::string("00-00000000000000000000000000000000-") + kSpanId + "-01"}) {
    const TraceContext started = ContinueOrStart(bad);
    CHECK(started.TraceIdHex() != kTraceId);
    CHECK(started.TraceIdHex() != std::string(32, '0'));
    CHECK(started.flags == 1);
  }
}

TEST_CASE("scopes make a trace current on their thread only, and nest") {
  REQUIRE_FALSE(Current().has_value());
  const TraceContext outer = NewTrace(), inner = NewTrace();
  {
    Scope a(outer);
    REQUIRE(Current().has_value());
    CHECK(*Current() == outer);
    std::optional<TraceContext> seen_elsewhere = NewTrace();
    std::thread([&] { seen_elsewhere = Current(); }).join();
    CHECK_FALSE(seen_elsewhere.has_value());
    {
      Scope b(inner);
      CHECK(*Current() == inner);
      {
        Scope none(std::nullopt);
        CHECK_FALSE(Current().has_value());
      }
      CHECK(*Current() == inner);
    }
    CHECK(*Current() == outer);
  }
  CHECK_FALSE(Current().has_value());
}

TEST_CASE("a call's trace is left where it was entered, and only there") {
  const TraceContext call = NewTrace(), outer = NewTrace();
  int token = 0, other_token = 0;
  Scope around(outer);
  EnterCall(call, &token);
  CHECK(*Current() == call);
  // Leaving on another thread, or leaving another call, changes nothing here.
  std::thread([&] { LeaveCall(&token); }).join();
  LeaveCall(&other_token);
  CHECK(*Current() == call);
  LeaveCall(&token);
  CHECK(*Current() == outer);

  // A handler that hands its call to another thread leaves it on its own.
  EnterCall(call, &token);
  LeaveCallOnThisThread();
  CHECK(*Current() == outer);
  // ... but never a scope still open above it.
  EnterCall(call, &token);
  {
    Scope inner(std::nullopt);
    LeaveCallOnThisThread();
    CHECK_FALSE(Current().has_value());
  }
  CHECK(*Current() == call);
  // Leaving a call also leaves what was entered on top of it and never left.
  EnterCall(NewTrace(), &other_token);
  LeaveCall(&token);
  CHECK(*Current() == outer);
}

TEST_CASE("executor work runs in the trace it was submitted in, and in none without one") {
  rpc::Executor executor("trace-test", 1);
  const TraceContext submitted_in = NewTrace();
  std::optional<TraceContext> first, second;
  absl::Notification done;
  {
    Scope scope(submitted_in);
    executor.Submit([&] { first = Current(); });
  }
  executor.Submit([&] {
    second = Current();
    done.Notify();
  });
  REQUIRE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  REQUIRE(first.has_value());
  CHECK(*first == submitted_in);
  CHECK_FALSE(second.has_value());
}

// What log lines written by `write` look like on stdout.
template <typename F>
std::string CapturedLog(F write) {
  testing::TempDir dir;
  const std::string path = dir.Sub("stdout");
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  REQUIRE(std::freopen(path.c_str(), "w", stdout) != nullptr);
  write();
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  const auto text = testing::ReadFile(path);
  REQUIRE(text.ok());
  return *text;
}

TEST_CASE("a log line written in a trace names its trace and span, one outside names none") {
  const TraceContext c = *Parse(kValid);
  const std::string traced = CapturedLog([&] {
    Scope scope(c);
    log::Info("traced line", {{"k", "v"}});
  });
  CHECK(traced.find(std::string("\"k\":\"v\",\"trace_id\":\"") + kTraceId + "\",\"span_id\":\"" +
                    kSpanId + "\"}\n") != std::string::npos);
  const std::string plain = CapturedLog([] { log::Info("plain line"); });
  CHECK(plain.find("\"message\":\"plain line\"}") != std::string::npos);
  CHECK(plain.find("trace_id") == std::string::npos);
}

}  // namespace
}  // namespace crm::trace
