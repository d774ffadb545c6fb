#include "tests/load/latency_histogram.h"

#include <algorithm>
#include <bit>

namespace crm::load {

int LatencyHistogram::Index(uint64_t us) {
  // Below 64 µs every microsecond has its bucket; above, 32 buckets per power of two.
  if (us < kSubBuckets) return static_cast<int>(us);
  const int power = std::bit_width(us) - 6;  // us >> power lands in [32, 64)
  const int index = power * (kSubBuckets / 2) + static_cast<int>(us >> power);
  return std::min(index, kSubBuckets * kPowers - 1);
}

uint64_t LatencyHistogram::ValueAt(int index) {
  if (index < kSubBuckets) return static_cast<uint64_t>(index);
  const int power = index / (kSubBuckets / 2) - 1;
  const uint64_t sub = static_cast<uint64_t>(index - power * (kSubBuckets / 2));
  return sub << power;
}

void LatencyHistogram::Record(absl::Duration d) {
  const int64_t us = std::max<int64_t>(0, absl::ToInt64Microseconds(d));
  ++counts_[Index(static_cast<uint64_t>(us))];
  ++count_;
  max_us_ = std::max<uint64_t>(max_us_, static_cast<uint64_t>(us));
  sum_us_ += us;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_us_ = std::max(max_us_, other.max_us_);
  sum_us_ += other.sum_us_;
}

absl::Duration LatencyHistogram::Percentile(double p) const {
  if (count_ == 0) return absl::ZeroDuration();
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(p / 100.0 * count_ + 0.5));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank)
      return absl::Microseconds(std::min<uint64_t>(ValueAt(static_cast<int>(i)), max_us_));
  }
  return Max();
}

absl::Duration LatencyHistogram::Mean() const {
  if (count_ == 0) return absl::ZeroDuration();
  return absl::Microseconds(static_cast<double>(sum_us_ / count_));
}

}  // namespace crm::load
