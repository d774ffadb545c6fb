#include "libs/sharding/shard_map.h"

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/sharding/hash.h"

namespace crm::sharding {

uint32_t BucketOf(absl::string_view shard_key) {
  return static_cast<uint32_t>(StableHash64(shard_key) % kBucketCount);
}

ShardMap::ShardMap(int shards)
    : shard_count_(shards < 1 ? 1 : shards), bucket_to_shard_(kBucketCount) {
  for (uint32_t b = 0; b < kBucketCount; ++b) {
    bucket_to_shard_[b] = static_cast<int>(uint64_t{b} * shard_count_ / kBucketCount);
  }
}

absl::StatusOr<ShardMap> ShardMap::Parse(absl::string_view spec) {
  ShardMap map(1);
  std::vector<int> assigned(kBucketCount, -1);
  int max_shard = -1;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> range_shard = absl::StrSplit(part, ':');
    std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(range_shard.first, '-');
    uint32_t lo, hi;
    int shard;
    if (!absl::SimpleAtoi(range.first, &lo) || !absl::SimpleAtoi(range.second, &hi) ||
        !absl::SimpleAtoi(range_shard.second, &shard) || lo > hi || hi >= kBucketCount ||
        shard < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard map: \"", part, "\" is not <first bucket>-<last bucket>:<shard>"));
    }
    for (uint32_t b = lo; b <= hi; ++b) {
      if (assigned[b] != -1) {
        return absl::InvalidArgumentError(
            absl::StrCat("shard map: bucket ", b, " is assigned twice"));
      }
      assigned[b] = shard;
    }
    max_shard = std::max(max_shard, shard);
  }
  for (uint32_t b = 0; b < kBucketCount; ++b) {
    if (assigned[b] == -1) {
      return absl::InvalidArgumentError(absl::StrCat("shard map: bucket ", b, " is not assigned"));
    }
  }
  std::vector<bool> used(max_shard + 1, false);
  for (int s : assigned) used[s] = true;
  for (int s = 0; s <= max_shard; ++s) {
    if (!used[s])
      return absl::InvalidArgumentError(absl::StrCat("shard map: shard ", s, " has no bucket"));
  }
  map.shard_count_ = max_shard + 1;
  map.bucket_to_shard_ = std::move(assigned);
  return map;
}

std::string ShardMap::ToSpec() const {
  std::vector<std::string> parts;
  uint32_t start = 0;
  for (uint32_t b = 1; b <= kBucketCount; ++b) {
    if (b == kBucketCount || bucket_to_shard_[b] != bucket_to_shard_[start]) {
      parts.push_back(absl::StrCat(start, "-", b - 1, ":", bucket_to_shard_[start]));
      start = b;
    }
  }
  return absl::StrJoin(parts, ",");
}

namespace {

// The digit of each nibble of an id's hex part.
constexpr char kHex[] = "0123456789abcdef";

// Writes the 16 lowercase hex digits of `v`, most significant first, to `out`.
void WriteHex16(uint64_t v, char* out) {
  for (int i = 0; i < 16; ++i) out[i] = kHex[(v >> (60 - 4 * i)) & 0xF];
}

}  // namespace

std::string NewId(absl::string_view prefix) {
  thread_local absl::BitGen gen;
  std::string id(prefix);
  id.resize(prefix.size() + 16);
  WriteHex16(absl::Uniform<uint64_t>(gen), id.data() + prefix.size());
  return id;
}

std::string NewIdInBucket(absl::string_view prefix, uint32_t bucket) {
  thread_local absl::BitGen gen;
  return FirstIdInBucket(prefix, bucket, [](uint64_t) { return absl::Uniform<uint64_t>(gen); });
}

std::string FirstIdInBucket(absl::string_view prefix, uint32_t bucket,
                            absl::FunctionRef<uint64_t(uint64_t attempt)> candidate) {
  // Candidates are hashed kSideBySide at a time, their digits interleaved: FNV-1a is a chain of
  // dependent multiplies, so one candidate at a time leaves the core waiting on each (4% of
  // order-tracking's CPU). Same hashes, same pick: the first in attempt order.
  constexpr int kSideBySide = 4;
  const uint64_t after_prefix = Fnv1a(prefix);
  bucket %= kBucketCount;
  for (uint64_t first = 0;; first += kSideBySide) {
    uint64_t value[kSideBySide];
    uint64_t state[kSideBySide];
    for (int k = 0; k < kSideBySide; ++k) {
      value[k] = candidate(first + static_cast<uint64_t>(k));
      state[k] = after_prefix;
    }
    for (int shift = 60; shift >= 0; shift -= 4) {
      for (int k = 0; k < kSideBySide; ++k) {
        state[k] ^= static_cast<unsigned char>(kHex[(value[k] >> shift) & 0xF]);
        state[k] *= kFnvPrime;
      }
    }
    for (int k = 0; k < kSideBySide; ++k) {
      if (FinishHash(state[k]) % kBucketCount != bucket) continue;
      std::string id(prefix);
      id.resize(prefix.size() + 16);
      WriteHex16(value[k], id.data() + prefix.size());
      return id;
    }
  }
}

}  // namespace crm::sharding
