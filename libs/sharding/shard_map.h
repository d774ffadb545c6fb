// Where a customer's data lives when a service runs as several shards.
//
// Every shard key (a customer id, or an email before the customer exists) hashes to one of 1024
// fixed buckets; a ShardMap assigns buckets to shards. Buckets never change, so growing from N to M
// shards moves whole buckets and nothing else. Ids minted for a customer (the customer id itself at
// registration) are chosen to fall in the same bucket as the key that routed the request, so the
// customer id and the email it registered with always live on the same shard.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm::sharding {

inline constexpr uint32_t kBucketCount = 1024;

uint32_t BucketOf(absl::string_view shard_key);

class ShardMap {
 public:
  // One shard holding every bucket.
  ShardMap() : ShardMap(1) {}
  // `shards` shards, each holding a contiguous, equal range of buckets.
  explicit ShardMap(int shards);
  // Parses "0-511:0,512-1023:1" (bucket ranges to shard index); every bucket must be assigned once.
  static absl::StatusOr<ShardMap> Parse(absl::string_view spec);

  int shard_count() const { return shard_count_; }
  int ShardOfBucket(uint32_t bucket) const { return bucket_to_shard_[bucket]; }
  int ShardOf(absl::string_view shard_key) const { return bucket_to_shard_[BucketOf(shard_key)]; }
  // The spec string Parse accepts, with adjacent buckets of one shard merged into ranges.
  std::string ToSpec() const;

 private:
  int shard_count_ = 1;
  std::vector<int> bucket_to_shard_;
};

// A fresh random id "<prefix><16 hex digits>".
std::string NewId(absl::string_view prefix);
// A fresh random id that falls in `bucket`, so it lands on the same shard as the key that chose the
// bucket.
std::string NewIdInBucket(absl::string_view prefix, uint32_t bucket);
// The first of the ids "<prefix><16 hex digits of candidate(0)>", candidate(1), ... that falls in
// `bucket`: about kBucketCount tries on average. A try hashes only its digits (the prefix once) and
// allocates nothing; candidates are asked for a few at a time, so `candidate` may be called for up
// to three attempts past the one picked. NewIdInBucket draws the candidates at random; a caller
// that must mint the same id again (an order id derived from its request id) passes a fixed
// sequence.
std::string FirstIdInBucket(absl::string_view prefix, uint32_t bucket,
                            absl::FunctionRef<uint64_t(uint64_t attempt)> candidate);

}  // namespace crm::sharding
