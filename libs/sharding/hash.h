// A hash that never changes between builds, machines or processes: shard placement and request
// fingerprints are persisted, so they cannot use absl::Hash (seeded per process) or std::hash.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace crm::sharding {

// FNV-1a over the bytes, finished with a splitmix64 round so that nearby inputs spread over all
// buckets.
inline uint64_t StableHash64(absl::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h += 0x9e3779b97f4a7c15ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace crm::sharding
