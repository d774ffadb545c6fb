#include "libs/rpc/early_refresh.h"

#include <algorithm>

namespace crm::rpc {

std::optional<absl::Time> EarlyRefresh::Note(int64_t changes, absl::Time now) {
  if (changes == 0) return std::nullopt;  // a periodic pass with nothing new is no activity
  absl::MutexLock lock(&mu_);
  changes_ += changes;
  last_change_ = now;
  const absl::Time paced = last_end_ + 20 * last_took_;
  if (changes_ < (base_ < options_.small_base ? 1 : base_ / 10)) {
    if (options_.idle == absl::InfiniteDuration()) return std::nullopt;
    return std::max(now + options_.idle, paced);
  }
  if (burst_began_ == absl::InfiniteFuture()) burst_began_ = now;
  return std::max(std::min(now + options_.quiet, burst_began_ + options_.longest_wait), paced);
}

void EarlyRefresh::Began() {
  absl::MutexLock lock(&mu_);
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
}

void EarlyRefresh::Failed() {
  absl::MutexLock lock(&mu_);
  running_ = false;
}

bool EarlyRefresh::pending() const {
  absl::MutexLock lock(&mu_);
  return running_ || burst_began_ != absl::InfiniteFuture() ||
         (changes_ > 0 && options_.idle != absl::InfiniteDuration());
}

bool EarlyRefresh::due(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (now < last_end_ + 20 * last_took_) return false;  // paced, whoever asks
  return burst_began_ != absl::InfiniteFuture() ||
         (changes_ > 0 && now >= last_change_ + options_.idle);
}

}  // namespace crm::rpc
