// When a whole-data refresh runs ahead of its schedule (libs/rpc/early_refresh.h): a tenth of what
// the last refresh counted, the quiet after a burst, the burst's longest wait and the pacing.
#include "libs/rpc/early_refresh.h"

#include "catch2/catch.hpp"

namespace crm::rpc {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
const absl::Duration kSecond = absl::Seconds(1);

TEST_CASE("a small base refreshes after every change, once the changes are quiet",
          "[early_refresh]") {
  EarlyRefresh early({.small_base = 1000});
  CHECK_FALSE(early.due(kStart));
  CHECK_FALSE(early.Note(0, kStart).has_value());
  CHECK(early.Note(1, kStart) == kStart + 2 * kSecond);
  CHECK_FALSE(early.due(kStart));
  CHECK(early.due(kStart + 2 * kSecond));
  // Each change during the burst moves the run to 2 s after it, up to 30 s after the burst began.
  CHECK(early.Note(1, kStart + 10 * kSecond) == kStart + 12 * kSecond);
  CHECK(early.Note(1, kStart + 29 * kSecond) == kStart + 30 * kSecond);
  CHECK(early.Note(1, kStart + 40 * kSecond) == kStart + 30 * kSecond);
  early.Began();
  CHECK_FALSE(early.due(kStart));
  CHECK(early.pending());  // running: what changed is not in the refreshed data yet
  early.Ended(999, kStart + 40 * kSecond, kStart + 41 * kSecond);
  CHECK_FALSE(early.pending());
  // A new burst begins its own wait; the last refresh took 1 s, so the next waits 20 s after it.
  CHECK(early.Note(1, kStart + 42 * kSecond) == kStart + 61 * kSecond);
  CHECK_FALSE(early.due(kStart + 60 * kSecond));  // a run asking early is paced too
  CHECK(early.due(kStart + 61 * kSecond));
  CHECK(early.Note(1, kStart + 70 * kSecond) == kStart + 72 * kSecond);
}

TEST_CASE("a large base waits for a tenth of itself in changes", "[early_refresh]") {
  EarlyRefresh early({.small_base = 1000, .quiet = kSecond, .longest_wait = 10 * kSecond});
  early.Began();
  early.Ended(50'000, kStart, kStart);
  CHECK_FALSE(early.Note(4'999, kStart).has_value());
  CHECK_FALSE(early.due(kStart));
  CHECK(early.Note(1, kStart + kSecond) == kStart + 2 * kSecond);
  CHECK(early.DueAt() == kStart + 2 * kSecond);
  CHECK(early.due(kStart + 2 * kSecond));
  // Changes counted while a refresh runs may be missed by it: they count toward the next one.
  early.Began();
  CHECK_FALSE(early.Note(3'000, kStart + 3 * kSecond).has_value());
  early.Ended(60'000, kStart + 2 * kSecond, kStart + 4 * kSecond);
  CHECK(early.Note(3'000, kStart + 5 * kSecond) == kStart + 44 * kSecond);
}

TEST_CASE(
    "a failed refresh is due again after a backoff that doubles, with what it was to cover, and "
    "keeps the last base",
    "[early_refresh]") {
  EarlyRefresh early({.small_base = 10, .quiet = 2 * kSecond, .longest_wait = absl::Minutes(5)});
  early.Began();
  early.Ended(100, kStart, kStart + kSecond);
  REQUIRE(early.Note(10, kStart + 30 * kSecond) == kStart + 32 * kSecond);
  early.Began();
  // Changes while it runs count toward the next refresh, with those the failed one was to cover.
  CHECK_FALSE(early.Note(3, kStart + 33 * kSecond).has_value());
  CHECK(early.Failed(kStart + 34 * kSecond) == kStart + 44 * kSecond);  // 10 s on
  CHECK(early.pending());
  CHECK_FALSE(early.due(kStart + 43 * kSecond));
  CHECK(early.due(kStart + 44 * kSecond));
  // A change meanwhile does not bring the retry forward.
  CHECK(early.Note(1, kStart + 40 * kSecond) == kStart + 44 * kSecond);
  // Each failure in a row doubles the wait, up to the longest.
  absl::Time now = kStart + 44 * kSecond;
  for (const int wait_s : {20, 40, 80, 160, 300, 300}) {
    early.Began();
    CHECK(early.Failed(now) == now + wait_s * kSecond);
    now += wait_s * kSecond;
  }
  // A refresh that ends starts the count again; the base is still 100 (a tenth: 10 changes).
  early.Began();
  early.Ended(100, now, now + kSecond);
  CHECK_FALSE(early.pending());
  CHECK_FALSE(early.Note(9, now + 30 * kSecond).has_value());
  CHECK(early.Note(1, now + 31 * kSecond) == now + 33 * kSecond);
  early.Began();
  CHECK(early.Failed(now + 34 * kSecond) == now + 44 * kSecond);
}

TEST_CASE("a failed refresh with nothing to cover is not due again", "[early_refresh]") {
  EarlyRefresh early({.small_base = 10});
  early.Began();  // a refresh on a schedule, nothing changed
  CHECK_FALSE(early.Failed(kStart).has_value());
  CHECK_FALSE(early.pending());
}

TEST_CASE("with an idle time, fewer changes are refreshed once they have been idle that long",
          "[early_refresh]") {
  EarlyRefresh early({.small_base = 10, .idle = absl::Minutes(1)});
  early.Began();
  early.Ended(1'000, kStart, kStart + kSecond);
  CHECK_FALSE(early.pending());
  // 50 changes, short of the tenth: each moves the idle run later.
  CHECK(early.Note(30, kStart + 60 * kSecond) == kStart + 120 * kSecond);
  CHECK(early.Note(20, kStart + 90 * kSecond) == kStart + 150 * kSecond);
  CHECK(early.pending());
  // A periodic run before then finds it not due, and asks again for the same time.
  CHECK_FALSE(early.due(kStart + 149 * kSecond));
  CHECK(early.DueAt() == kStart + 150 * kSecond);
  CHECK(early.due(kStart + 150 * kSecond));
  // Reaching the tenth brings it to the quiet's end.
  CHECK(early.Note(50, kStart + 100 * kSecond) == kStart + 102 * kSecond);
  CHECK(early.due(kStart + 102 * kSecond));
  early.Began();
  early.Ended(1'100, kStart + 100 * kSecond, kStart + 110 * kSecond);
  CHECK_FALSE(early.pending());
  CHECK_FALSE(early.due(kStart + 1000 * kSecond));
  CHECK_FALSE(early.DueAt().has_value());
  // Pacing holds for idle runs too: the last refresh took 10 s, so not before 200 s after it.
  CHECK(early.Note(1, kStart + 110 * kSecond) == kStart + 310 * kSecond);
}

}  // namespace
}  // namespace crm::rpc
