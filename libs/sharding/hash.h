// A hash that never changes between builds, machines or processes: shard placement and request
// fingerprints are persisted, so they cannot use absl::Hash (seeded per process) or std::hash.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace crm::sharding {

inline constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// FNV-1a's state after `bytes`, continuing from `state`: keys that share a start (an id's prefix)
// hash it once.
inline uint64_t Fnv1a(absl::string_view bytes, uint64_t state = kFnvOffsetBasis) {
  for (unsigned char c : bytes) {
    state ^= c;
    state *= kFnvPrime;
  }
  return state;
}

// The splitmix64 round that finishes the hash, so that nearby inputs spread over all buckets.
inline uint64_t FinishHash(uint64_t state) {
  uint64_t h = state + 0x9e3779b97f4a7c15ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

// FNV-1a over the bytes, finished with a splitmix64 round.
inline uint64_t StableHash64(absl::string_view bytes) { return FinishHash(Fnv1a(bytes)); }

}  // namespace crm::sharding
