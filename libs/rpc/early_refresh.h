// When a refresh over a whole data set (the customer base's cut points, the items' neighbour
// lists) should run ahead of its schedule because the data changed a lot: once the changes since
// the last refresh reach a tenth of what that refresh counted (every change while it counted fewer
// than `small_base`), when the changes have been quiet for `quiet` (at most `longest_wait` after
// the burst began), and never so often that refreshing takes more than a twentieth of the time.
// Optionally fewer changes are refreshed too, once they have been quiet for `idle`: the refreshed
// data then ends up holding every change, whatever gaps the burst had. A refresh that fails is due
// again after `retry_after`, doubling with each failure in a row up to `longest_retry`, with what
// it was to cover: a data set nothing refreshes on a timer (the neighbour lists) would otherwise
// keep a failed refresh's changes out until more came. The owner reports changes
// and refreshes with the wall time and runs the refresh when told (e.g. PeriodicTask::RunAt), so
// the rule is tested without waiting. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::rpc {

class EarlyRefresh {
 public:
  struct Options {
    int64_t small_base = 1000;
    absl::Duration quiet = absl::Seconds(2);
    absl::Duration longest_wait = absl::Seconds(30);
    absl::Duration idle = absl::InfiniteDuration();
    absl::Duration retry_after = absl::Seconds(10);
    absl::Duration longest_retry = absl::Minutes(5);
  };
  explicit EarlyRefresh(Options options) : options_(options) {}

  // `changes` were committed at `now`. Returns when the refresh should run once enough changed
  // (each call with changes during a burst moves it later, up to the burst's longest wait), or
  // when fewer changes will have been idle long enough; else nullopt.
  std::optional<absl::Time> Note(int64_t changes, absl::Time now);
  // A refresh begins: changes from here on count toward the next one.
  void Began();
  // The refresh that began at `started` ended at `ended`, having counted `base` (buyers, item
  // pairs): the next early one needs a tenth of that.
  void Ended(int64_t base, absl::Time started, absl::Time ended);
  // The refresh that began failed at `now`: the changes it was to cover count again, and the
  // refresh is due no sooner than the backoff (retry_after, doubled for each failure in a row);
  // the base stays. Returns when it is due again (DueAt), if it is.
  std::optional<absl::Time> Failed(absl::Time now);
  // When the refresh should run for what changed so far (what Note last returned), if it should.
  std::optional<absl::Time> DueAt() const;
  // As of `now`, DueAt has come and the refresh has not begun.
  bool due(absl::Time now) const;
  // Due or to be due once idle, or a refresh is running: what changed is not in the refreshed data
  // yet.
  bool pending() const;

 private:
  std::optional<absl::Time> DueAtLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  int64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_change_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  int64_t base_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time burst_began_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time last_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration last_took_ ABSL_GUARDED_BY(mu_);
  // What the running refresh was to cover, counted again if it fails.
  int64_t covering_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time covering_burst_began_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Failures since the last refresh that ended, and the backoff's end after the latest.
  int failures_in_a_row_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace crm::rpc
