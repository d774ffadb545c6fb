#include "libs/store/counters.h"

#include <string>

#include "google/protobuf/unknown_field_set.h"

namespace crm::store {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Folds `operand` into `value` (both serialized messages of one type).
bool AddInto(UnknownFieldSet& value, const UnknownFieldSet& operand) {
  for (int i = 0; i < operand.field_count(); ++i) {
    const UnknownField& f = operand.field(i);
    if (f.type() == UnknownField::TYPE_VARINT) {
      bool added = false;
      for (int j = 0; j < value.field_count() && !added; ++j) {
        UnknownField* v = value.mutable_field(j);
        if (v->number() == f.number() && v->type() == UnknownField::TYPE_VARINT) {
          v->set_varint(v->varint() + f.varint());
          added = true;
        }
      }
      if (!added) value.AddVarint(f.number(), f.varint());
      continue;
    }
    value.DeleteByNumber(f.number());
    value.AddField(f);
  }
  return true;
}

class CounterSum final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& operand,
             std::string* out, rocksdb::Logger*) const override {
    UnknownFieldSet value, delta;
    if (existing != nullptr && !value.ParseFromArray(existing->data(), static_cast<int>(existing->size()))) {
      return false;  // RocksDB reports Corruption for this key
    }
    if (!delta.ParseFromArray(operand.data(), static_cast<int>(operand.size()))) return false;
    return AddInto(value, delta) && value.SerializeToString(out);
  }
  const char* Name() const override { return "crm.CounterSum"; }
};

}  // namespace

std::shared_ptr<rocksdb::MergeOperator> CounterMergeOperator() {
  static const auto* op = new std::shared_ptr<rocksdb::MergeOperator>(std::make_shared<CounterSum>());
  return *op;
}

}  // namespace crm::store
