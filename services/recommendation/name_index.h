// Which catalog items are named alike: the words of item names, each weighing by how few items it
// names (TF-IDF, cosine), so "LUNCH BAG" ties the lunch bags together while "SET" ties nothing.
// A shop's staples come in families (a lunch bag in a dozen prints, cake cases in every colour),
// and a customer who buys one member buys others; co-purchase counts miss a member few have bought
// together with the customer's items yet.
//
// Words: runs of ASCII letters of three or more (shorter ones are sizes and joiners: "OF", "XL"),
// case-folded, and pairs of adjacent characters in runs of other scripts, which do not separate
// words with spaces (Chinese: 午餐袋 gives 午餐, 餐袋). Digits are not words.
//
// Kept in memory, derived from the catalog: RecommendationStore loads it at start and updates it
// after each catalog write commits (it is the catalog's only writer). Word weights are computed
// when asked, from the counts at that moment, so the answer does not depend on the order items
// came in. About 210 bytes an item, measured at 200,000 (--items_named_alike=false keeps none).
// Thread-safe: reads share a lock, updates take it alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace crm::recommendation {

// The words of an item's name, as NameIndex counts them: each once, sorted.
std::vector<std::string> NameWords(absl::string_view name);

class NameIndex {
 public:
  // A word naming more items than this is left out of the similarity: it says little about a family
  // ("RED", "SET", "CHRISTMAS"), and reading its items would make a call's cost grow with the
  // catalog. On the Online Retail catalog (3,900 items) leaving out words of over 100 items lowered
  // NDCG@10 at three of four cut-offs; 200 and no limit scored the same.
  static constexpr size_t kMaxItemsPerWord = 200;

  // How alike an item is named to the seeds: the sum of its cosine with each seed's name, and the
  // seed contributing most.
  struct Alike {
    std::string sku;
    double similarity = 0;
    std::string closest_seed;
  };

  // Sets the name of `sku` as of `update_time`: adds the item, or moves it to its new words. A
  // write older than the one the index holds for the SKU (two upserts committing in one order and
  // reaching here in the other) is ignored.
  void Put(absl::string_view sku, absl::string_view name, absl::Time update_time);

  // The items named most like `seeds` (each seed weighing the same), best first, equal ones by SKU,
  // at most `count`; never a seed or an item in `leave_out`. Seeds the index lacks are skipped.
  std::vector<Alike> NamedLike(std::span<const std::string> seeds,
                               const absl::flat_hash_set<std::string>& leave_out,
                               size_t count) const;

  size_t size() const;
  // The heap the index holds, from its containers' capacities (the hash maps' slots and control
  // bytes, the strings beyond their inline buffer, the vectors), without the allocator's own
  // overhead. Constant time: Put keeps the per-item and per-word part as it changes it.
  size_t bytes() const;
  // The same, counted by walking every item and word: O(items), for tests to check bytes() by.
  size_t CountBytes() const;

 private:
  struct Item {
    std::string sku;
    // Word ids in the order of the words' text (NameWords' order), not of the ids, which follow
    // the order words first came in: sums then add up in the same order whatever that was.
    std::vector<int32_t> words;
    absl::Time update_time;
  };

  // An item's likeness to the seeds, before dividing by its own norm, and the seed giving most;
  // what the seed being read has given so far finds that seed without a map per seed.
  struct Likeness {
    double total = 0;
    double closest = -1;
    size_t closest_seed = 0;
    size_t seed = 0;
    double from_seed = 0;
    // The seed being read is done.
    void Close();
  };
  // Every item sharing a counted word with a seed, with its likeness; `seed_ids[k]` is the id of
  // the k-th seed, or -1 when the index lacks it. Seeds themselves are left out.
  absl::flat_hash_map<int32_t, Likeness> SumOverSeeds(const std::vector<int32_t>& seed_ids,
                                                      double log_items) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The part of bytes() the maps and outer vectors hold, from their capacities.
  size_t FixedBytes() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Word weights use `log_items`, the log of the catalog's size.
  double Idf(int32_t word, double log_items) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  double Norm(const Item& item, double log_items) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Counted(int32_t word) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<Item> items_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int32_t> item_ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int32_t> word_ids_ ABSL_GUARDED_BY(mu_);
  // Each word's items (ids, unordered), and the log of their number (kept with it so a query takes
  // no logarithms).
  std::vector<std::vector<int32_t>> items_of_word_ ABSL_GUARDED_BY(mu_);
  std::vector<double> log_items_of_word_ ABSL_GUARDED_BY(mu_);
  // The heap of the items' word lists, the words' item lists and the strings beyond their inline
  // buffer, kept by Put.
  size_t variable_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace crm::recommendation
