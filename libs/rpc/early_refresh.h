// When a refresh over a whole data set (the customer base's cut points, the items' neighbour
// lists) should run ahead of its schedule because the data changed a lot: once the changes since
// the last refresh reach a tenth of what that refresh counted (every change while it counted fewer
// than `small_base`), when the changes have been quiet for `quiet` (at most `longest_wait` after
// the burst began), and never so often that refreshing takes more than a twentieth of the time.
// Optionally fewer changes are refreshed too, once they have been quiet for `idle`: the refreshed
// data then ends up holding every change, whatever gaps the burst had. The owner reports changes
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
  // The refresh that began failed: the changes it was to cover count no more (the next one on
  // schedule, or by changes, covers them); the pacing and base stay.
  void Failed();
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
};

}  // namespace crm::rpc
