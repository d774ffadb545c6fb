#include "services/recommendation/name_index.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/text/utf8.h"

namespace crm::recommendation {

namespace {

constexpr size_t kMinAsciiWord = 3;

// A string's heap beyond the small-string buffer libstdc++ keeps inline (15 characters).
size_t HeapOf(const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; }

size_t HeapOf(const std::vector<int32_t>& ids) { return ids.capacity() * sizeof(int32_t); }

}  // namespace

std::vector<std::string> NameWords(absl::string_view name) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < name.size()) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x80) {
      size_t end = i;
      while (end < name.size() && absl::ascii_isalpha(static_cast<unsigned char>(name[end]))) {
        ++end;
      }
      if (end - i >= kMinAsciiWord) words.push_back(absl::AsciiStrToUpper(name.substr(i, end - i)));
      i = std::max(end, i + 1);
      continue;
    }
    // A run of characters outside ASCII: each pair of neighbours is a word, a lone one is one.
    std::vector<absl::string_view> characters;
    while (i < name.size() && static_cast<unsigned char>(name[i]) >= 0x80) {
      // Names are valid UTF-8 (protobuf checks strings); a malformed byte would stand alone.
      const size_t length = std::max<size_t>(1, text::Utf8SequenceLength(name, i));
      characters.push_back(name.substr(i, length));
      i += length;
    }
    if (characters.size() == 1) words.emplace_back(characters.front());
    for (size_t k = 0; k + 1 < characters.size(); ++k) {
      words.push_back(absl::StrCat(characters[k], characters[k + 1]));
    }
  }
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  return words;
}

void NameIndex::Put(absl::string_view sku, absl::string_view name, absl::Time update_time) {
  const std::vector<std::string> words = NameWords(name);
  absl::MutexLock lock(&mu_);
  const auto [at, fresh] = item_ids_.try_emplace(sku, static_cast<int32_t>(items_.size()));
  const int32_t id = at->second;
  if (fresh) {
    items_.push_back({std::string(sku), {}, update_time});
    variable_bytes_ += HeapOf(items_.back().sku) + HeapOf(at->first);
  } else {
    Item& known = items_[id];
    if (update_time < known.update_time) return;
    for (int32_t word : known.words) {
      std::vector<int32_t>& list = items_of_word_[word];
      list.erase(std::find(list.begin(), list.end(), id));  // keeps its capacity
      Counted(word);
    }
  }
  Item& item = items_[id];
  item.update_time = update_time;
  variable_bytes_ -= HeapOf(item.words);
  item.words.clear();
  for (const std::string& word : words) {
    const auto [w, new_word] = word_ids_.try_emplace(word, static_cast<int32_t>(word_ids_.size()));
    if (new_word) {
      items_of_word_.emplace_back();
      log_items_of_word_.push_back(0);
      variable_bytes_ += HeapOf(w->first);
    }
    std::vector<int32_t>& naming = items_of_word_[w->second];
    variable_bytes_ -= HeapOf(naming);
    naming.push_back(id);
    variable_bytes_ += HeapOf(naming);
    Counted(w->second);
    item.words.push_back(w->second);
  }
  variable_bytes_ += HeapOf(item.words);
}

void NameIndex::Counted(int32_t word) {
  const size_t naming = items_of_word_[word].size();
  log_items_of_word_[word] = naming == 0 ? 0 : std::log(static_cast<double>(naming));
}

double NameIndex::Idf(int32_t word, double log_items) const {
  return items_of_word_[word].empty() ? 0 : log_items - log_items_of_word_[word];
}

double NameIndex::Norm(const Item& item, double log_items) const {
  double sum = 0;
  for (int32_t word : item.words) {
    const double idf = Idf(word, log_items);
    sum += idf * idf;
  }
  return std::sqrt(sum);
}

void NameIndex::Likeness::Close() {
  if (from_seed > closest) {
    closest = from_seed;
    closest_seed = seed;
  }
}

absl::flat_hash_map<int32_t, NameIndex::Likeness> NameIndex::SumOverSeeds(
    const std::vector<int32_t>& seed_ids, double log_items) const {
  size_t reached = 0;
  for (int32_t id : seed_ids) {
    if (id < 0) continue;
    for (int32_t word : items_[id].words) {
      if (items_of_word_[word].size() <= kMaxItemsPerWord) reached += items_of_word_[word].size();
    }
  }
  absl::flat_hash_map<int32_t, Likeness> sums;
  sums.reserve(std::min(reached, items_.size()));
  for (size_t k = 0; k < seed_ids.size(); ++k) {
    if (seed_ids[k] < 0) continue;
    const Item& seed = items_[seed_ids[k]];
    const double seed_norm = Norm(seed, log_items);
    if (seed_norm <= 0) continue;
    for (int32_t word : seed.words) {
      const std::vector<int32_t>& naming = items_of_word_[word];
      if (naming.size() > kMaxItemsPerWord) continue;
      const double idf = Idf(word, log_items);
      const double part = idf * idf / seed_norm;
      for (int32_t other : naming) {
        Likeness& sum = sums[other];
        if (sum.seed != k) {
          sum.Close();
          sum.seed = k;
          sum.from_seed = 0;
        }
        sum.total += part;
        sum.from_seed += part;
      }
    }
  }
  for (int32_t id : seed_ids) {
    if (id >= 0) sums.erase(id);
  }
  for (auto& [id, sum] : sums) sum.Close();
  return sums;
}

std::vector<NameIndex::Alike> NameIndex::NamedLike(
    std::span<const std::string> seeds, const absl::flat_hash_set<std::string>& leave_out,
    size_t count) const {
  absl::ReaderMutexLock lock(&mu_);
  if (items_.empty() || count == 0) return {};
  const double log_items = std::log(static_cast<double>(items_.size()));
  std::vector<int32_t> seed_ids;
  seed_ids.reserve(seeds.size());
  for (const std::string& sku : seeds) {
    const auto it = item_ids_.find(sku);
    seed_ids.push_back(it == item_ids_.end() ? -1 : it->second);
  }
  const absl::flat_hash_map<int32_t, Likeness> sums = SumOverSeeds(seed_ids, log_items);
  // Ranked by id first; SKUs are copied only for the items kept.
  std::vector<std::pair<double, int32_t>> ranked;
  ranked.reserve(sums.size());
  for (const auto& [id, sum] : sums) {
    const double norm = Norm(items_[id], log_items);
    if (norm <= 0 || sum.total <= 0 || leave_out.contains(items_[id].sku)) continue;
    ranked.emplace_back(sum.total / norm, id);
  }
  const size_t kept = std::min(count, ranked.size());
  const auto better = [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : items_[a.second].sku < items_[b.second].sku;
  };
  // A total order (SKUs are unique): the same items are kept whatever order the map gave.
  std::nth_element(ranked.begin(), ranked.begin() + kept, ranked.end(), better);
  std::sort(ranked.begin(), ranked.begin() + kept, better);
  std::vector<Alike> alike;
  alike.reserve(kept);
  for (size_t i = 0; i < kept; ++i) {
    const auto& [similarity, id] = ranked[i];
    alike.push_back({items_[id].sku, similarity, seeds[sums.at(id).closest_seed]});
  }
  return alike;
}

size_t NameIndex::FixedBytes() const {
  constexpr size_t kSlot = sizeof(std::pair<std::string, int32_t>) + 1;  // and its control byte
  return items_.capacity() * sizeof(Item) +
         items_of_word_.capacity() * sizeof(std::vector<int32_t>) +
         log_items_of_word_.capacity() * sizeof(double) +
         (item_ids_.capacity() + word_ids_.capacity()) * kSlot;
}

size_t NameIndex::bytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return FixedBytes() + variable_bytes_;
}

size_t NameIndex::CountBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  size_t total = FixedBytes();
  for (const Item& item : items_) total += HeapOf(item.sku) + HeapOf(item.words);
  for (const auto& naming : items_of_word_) total += HeapOf(naming);
  for (const auto& [sku, id] : item_ids_) total += HeapOf(sku);
  for (const auto& [word, id] : word_ids_) total += HeapOf(word);
  return total;
}

size_t NameIndex::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return items_.size();
}

}  // namespace crm::recommendation
