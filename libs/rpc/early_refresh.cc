#include "libs/rpc/early_refresh.h"

#include <algorithm>

namespace crm::rpc {

std::optional<absl::Time> EarlyRefresh::Note(int64_t changes, absl::Time now) {
  if (changes == 0) return std::nullopt;  // a periodic pass with nothing new is no activity
  absl::MutexLock lock(&mu_);
  changes_ += changes;
  last_change_ = now;
  const bool enough = changes_ >= (base_ < options_.small_base ? 1 : base_ / 10);
  if (enough && burst_began_ == absl::InfiniteFuture()) burst_began_ = now;
  return DueAtLocked();
}

std::optional<absl::Time> EarlyRefresh::DueAt() const {
  absl::MutexLock lock(&mu_);
  return DueAtLocked();
}

std::optional<absl::Time> EarlyRefresh::DueAtLocked() const {
  const absl::Time paced = std::max(last_end_ + 20 * last_took_, retry_at_);
  if (burst_began_ != absl::InfiniteFuture()) {
    return std::max(std::min(last_change_ + options_.quiet, burst_began_ + options_.longest_wait),
                    paced);
  }
  if (changes_ > 0 && options_.idle != absl::InfiniteDuration()) {
    return std::max(last_change_ + options_.idle, paced);
  }
  return std::nullopt;
}

void EarlyRefresh::Began() {
  absl::MutexLock lock(&mu_);
  covering_ = changes_;
  covering_burst_began_ = burst_began_;
  changes_ = 0;
  burst_began_ = absl::InfiniteFuture();
  running_ = true;
}

void EarlyRefresh::Ended(int64_t base, absl::Time started, absl::Time ended) {
  absl::MutexLock lock(&mu_);
  running_ = false;
  base_ = base;
  last_end_ = ended;
  last_took_ = ended - started;
  covering_ = 0;
  failures_in_a_row_ = 0;
  retry_at_ = absl::InfinitePast();
}

std::optional<absl::Time> EarlyRefresh::Failed(absl::Time now) {
  absl::MutexLock lock(&mu_);
  running_ = false;
  changes_ += covering_;
  covering_ = 0;
  burst_began_ = std::min(burst_began_, covering_burst_began_);
  absl::Duration backoff = options_.retry_after;
  for (int i = 0; i < failures_in_a_row_ && backoff < options_.longest_retry; ++i) backoff *= 2;
  ++failures_in_a_row_;
  retry_at_ = now + std::min(backoff, options_.longest_retry);
  return DueAtLocked();
}

bool EarlyRefresh::pending() const {
  absl::MutexLock lock(&mu_);
  return running_ || DueAtLocked().has_value();
}

bool EarlyRefresh::due(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  const std::optional<absl::Time> at = DueAtLocked();
  return at.has_value() && now >= *at;
}

}  // namespace crm::rpc
