// Latency histogram with about 3% relative precision from 1 µs to ~100 s in fixed memory:
// log-linear buckets (32 buckets per power of two, ~3% wide), the layout HdrHistogram uses. Not
// thread-safe: keep one per thread and Merge.
#pragma once

#include <array>
#include <cstdint>

#include "absl/time/time.h"

namespace crm::load {

class LatencyHistogram {
 public:
  void Record(absl::Duration d);
  void Merge(const LatencyHistogram& other);
  // p in [0, 100].
  absl::Duration Percentile(double p) const;
  absl::Duration Max() const { return absl::Microseconds(max_us_); }
  absl::Duration Mean() const;
  uint64_t count() const { return count_; }

 private:
  static constexpr int kSubBuckets = 64;
  static constexpr int kPowers = 28;  // 2^27 µs ≈ 134 s
  static int Index(uint64_t us);
  static uint64_t ValueAt(int index);

  std::array<uint64_t, kSubBuckets * kPowers> counts_{};
  uint64_t count_ = 0;
  uint64_t max_us_ = 0;
  long double sum_us_ = 0;
};

}  // namespace crm::load
