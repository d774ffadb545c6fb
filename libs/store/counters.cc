#include "libs/store/counters.h"

#include <cstdlib>
#include <string>

#include "google/protobuf/descriptor.h"
#include "libs/log/log.h"

namespace crm::store {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

class CounterSumOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  explicit CounterSumOperator(const Message& prototype)
      : prototype_(prototype), name_("crm.CounterSum." + prototype.GetTypeName()) {
    const auto* d = prototype.GetDescriptor();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (f->is_repeated() || f->cpp_type() != FieldDescriptor::CPPTYPE_INT64) {
        log::Error("a counter row may hold only int64 fields",
                   {{"message", prototype.GetTypeName()}, {"field", f->name()}});
        std::abort();
      }
    }
  }

  // Both sides are serialized messages of the prototype's type (the stored sum, or a delta); a
  // missing `existing` is all zeros. False (corruption, reported by RocksDB) when one does not
  // parse.
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    std::unique_ptr<Message> sum(prototype_.New());
    std::unique_ptr<Message> delta(prototype_.New());
    if (existing != nullptr &&
        !sum->ParseFromArray(existing->data(), static_cast<int>(existing->size()))) {
      return false;
    }
    if (!delta->ParseFromArray(value.data(), static_cast<int>(value.size()))) return false;
    const auto* reflection = sum->GetReflection();
    const auto* d = sum->GetDescriptor();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      reflection->SetInt64(sum.get(), f,
                           reflection->GetInt64(*sum, f) + reflection->GetInt64(*delta, f));
    }
    return sum->SerializeToString(new_value);
  }

  const char* Name() const override { return name_.c_str(); }

 private:
  const Message& prototype_;
  const std::string name_;
};

}  // namespace

std::shared_ptr<rocksdb::MergeOperator> CounterSum(const Message& prototype) {
  return std::make_shared<CounterSumOperator>(prototype);
}

void FloorCounters(Message& counters) {
  const auto* reflection = counters.GetReflection();
  const auto* d = counters.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (!f->is_repeated() && f->cpp_type() == FieldDescriptor::CPPTYPE_INT64 &&
        reflection->GetInt64(counters, f) < 0) {
      reflection->SetInt64(&counters, f, 0);
    }
  }
}

}  // namespace crm::store
