// A store's column families declared once: a table from what each family holds (an enumerator of
// the <name>_store's own enum) to its name on disk. The table gives both the names the database is
// opened with (FamilyNames) and the handles the store's code uses (Families), so the names, the
// list to open and the handle lookups cannot drift apart.
//
//   enum Family { kTickets, kAgents };
//   constexpr store::FamilyName<Family> kFamilies[] = {{kTickets, "tickets"}, {kAgents, "agents"}};
//   static_assert(store::InEnumOrder(kFamilies));
//   ...
//   cf_(*store, kFamilies)  ...  txn.Get(cf_[kAgents], agent_id)
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "libs/store/store.h"

namespace crm::store {

template <typename Family>
struct FamilyName {
  Family family;
  // The column family's name in the database: never changes once data was written under it.
  const char* name;
};

// True when row i of `table` is the enumerator with value i, so Families can index by it.
template <typename Family, size_t N>
constexpr bool InEnumOrder(const FamilyName<Family> (&table)[N]) {
  for (size_t i = 0; i < N; ++i) {
    if (static_cast<size_t>(table[i].family) != i) return false;
  }
  return true;
}

// The names of the families in `table`, in its order.
template <typename Family, size_t N>
std::vector<std::string> FamilyNames(const FamilyName<Family> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& f : table) names.emplace_back(f.name);
  return names;
}

// The handles of a table's families, looked up once in the open store.
class Families {
 public:
  // Aborts when `store` was not opened with one of them (Store::cf): a programming error.
  template <typename Family, size_t N>
  Families(const Store& store, const FamilyName<Family> (&table)[N]) {
    static_assert(std::is_enum_v<Family>);
    for (const auto& f : table) handles_.push_back(store.cf(f.name));
  }

  template <typename Family>
  rocksdb::ColumnFamilyHandle* operator[](Family family) const {
    static_assert(std::is_enum_v<Family>);
    return handles_[static_cast<size_t>(family)];
  }

 private:
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace crm::store
