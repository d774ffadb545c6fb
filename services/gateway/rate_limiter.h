// Token buckets keyed by caller (a principal, or a client IP): each key may spend `per_second`
// requests a second on average and `burst` at once. Keys are spread over independently locked
// stripes so callers do not contend on one mutex, and idle full buckets are dropped so memory stays
// bounded under churn of client IPs. Thread-safe.
#pragma once

#include <array>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::gateway {

struct RateLimit {
  double per_second = 0;  // 0 = unlimited
  double burst = 0;
};

class RateLimiter {
 public:
  // Takes one token from `key`'s bucket. Zero when allowed; otherwise how long until a token is
  // there (the retry hint).
  absl::Duration Take(absl::string_view key, RateLimit limit, absl::Time now);

  // Buckets held (tests).
  size_t size();

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
  };
  struct Stripe {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kStripes = 16;
  // Per stripe; past it, buckets that have refilled completely are forgotten (a new one starts
  // full).
  static constexpr size_t kMaxBucketsPerStripe = 1 << 16;
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace crm::gateway
