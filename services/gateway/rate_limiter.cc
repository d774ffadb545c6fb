#include "services/gateway/rate_limiter.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace crm::gateway {

absl::Duration RateLimiter::Take(absl::string_view key, RateLimit limit, absl::Time now) {
  if (limit.per_second <= 0) return absl::ZeroDuration();
  const double burst = std::max(1.0, limit.burst);
  Stripe& stripe = stripes_[absl::Hash<absl::string_view>{}(key) % kStripes];
  absl::MutexLock lock(&stripe.mu);
  if (stripe.buckets.size() >= kMaxBucketsPerStripe) {
    absl::erase_if(stripe.buckets, [&](const auto& entry) {
      return entry.second.tokens +
                 absl::ToDoubleSeconds(now - entry.second.refilled) * limit.per_second >=
             burst;
    });
  }
  auto [it, inserted] = stripe.buckets.try_emplace(key, Bucket{burst, now});
  Bucket& b = it->second;
  if (!inserted && now > b.refilled) {
    b.tokens =
        std::min(burst, b.tokens + absl::ToDoubleSeconds(now - b.refilled) * limit.per_second);
    b.refilled = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1 - b.tokens) / limit.per_second);
}

size_t RateLimiter::size() {
  size_t n = 0;
  for (Stripe& s : stripes_) {
    absl::MutexLock lock(&s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace crm::gateway
