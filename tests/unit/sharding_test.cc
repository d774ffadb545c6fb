#include "absl/strings/str_format.h"
#include "catch2/catch.hpp"
#include "libs/sharding/hash.h"
#include "libs/sharding/shard_map.h"

namespace crm::sharding {
namespace {

TEST_CASE("the stable hash never changes (placement is persisted)", "[sharding]") {
  // Pinned values: changing the hash would move every customer to another shard.
  CHECK(StableHash64("") == StableHash64(""));
  CHECK(BucketOf("c0123456789abcdef") == BucketOf("c0123456789abcdef"));
  CHECK(StableHash64("customer-1") == 0xd253a870bbafcefaULL);
}

TEST_CASE("uniform shard maps split buckets into equal ranges", "[sharding]") {
  ShardMap one(1);
  CHECK(one.ShardOf("anything") == 0);
  ShardMap two(2);
  CHECK(two.ShardOfBucket(0) == 0);
  CHECK(two.ShardOfBucket(511) == 0);
  CHECK(two.ShardOfBucket(512) == 1);
  CHECK(two.ToSpec() == "0-511:0,512-1023:1");
  auto parsed = ShardMap::Parse(two.ToSpec());
  REQUIRE(parsed.ok());
  CHECK(parsed->shard_count() == 2);
}

TEST_CASE("shard map specs must cover every bucket exactly once", "[sharding]") {
  CHECK_FALSE(ShardMap::Parse("0-100:0").ok());
  CHECK_FALSE(ShardMap::Parse("0-600:0,500-1023:1").ok());
  CHECK_FALSE(ShardMap::Parse("0-1023:1").ok());  // shard 0 would own nothing
  CHECK_FALSE(ShardMap::Parse("x").ok());
}

TEST_CASE("ids minted in a bucket land in that bucket", "[sharding]") {
  for (uint32_t bucket : {0u, 1u, 513u, 1023u}) {
    const std::string id = NewIdInBucket("c", bucket);
    CHECK(BucketOf(id) == bucket);
    CHECK(id.size() == 17);
  }
  CHECK(NewId("x") != NewId("x"));
  CHECK(NewId("x").size() == 17);
}

TEST_CASE("the first id of a sequence in a bucket is the same every time", "[sharding]") {
  const auto sequence = [](uint64_t attempt) { return attempt * 0x9E3779B97F4A7C15ULL + 7; };
  for (const uint32_t bucket : {0u, 77u, 1023u}) {
    const std::string id = FirstIdInBucket("r", bucket, sequence);
    CHECK(id == FirstIdInBucket("r", bucket, sequence));
    CHECK(BucketOf(id) == bucket);
    REQUIRE(id.size() == 17);
    // It is the first candidate of the sequence in the bucket, spelt in lowercase hex.
    uint64_t attempt = 0;
    while (BucketOf(absl::StrFormat("r%016x", sequence(attempt))) != bucket) ++attempt;
    CHECK(id == absl::StrFormat("r%016x", sequence(attempt)));
  }
  // Hashing the prefix once gives the hash of the whole key.
  CHECK(FinishHash(Fnv1a("0123", Fnv1a("c"))) == StableHash64("c0123"));
}

TEST_CASE("keys spread evenly over buckets", "[sharding]") {
  std::vector<int> counts(kBucketCount, 0);
  for (int i = 0; i < 102400; ++i) ++counts[BucketOf("customer-" + std::to_string(i))];
  const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
  CHECK(*lo > 50);
  CHECK(*hi < 160);
}

}  // namespace
}  // namespace crm::sharding
