#include "services/recommendation/customer_summary.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/wire_format_lite.h"
#include "libs/api/validate.h"

namespace crm::recommendation {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

bool IsLengthDelimited(uint32_t tag, int field) {
  return WireFormatLite::GetTagFieldNumber(tag) == field &&
         WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
}

// Reads a length-delimited field's bytes in place (`in` reads a flat array).
bool ReadBytesInPlace(CodedInputStream& in, absl::string_view* out) {
  uint32_t length = 0;
  const void* data = nullptr;
  int available = 0;
  if (!in.ReadVarint32(&length) || !in.GetDirectBufferPointer(&data, &available)) {
    // An empty field at the very end of the message has no buffer left to point into.
    if (length == 0) *out = absl::string_view();
    return length == 0;
  }
  if (static_cast<uint32_t>(available) < length) return false;
  *out = absl::string_view(static_cast<const char*>(data), length);
  return in.Skip(static_cast<int>(length));
}

// A google.protobuf.Timestamp's bytes as a time (protobuf's parser; a Timestamp has no strings, so
// it allocates nothing).
bool ReadTimestamp(absl::string_view bytes, absl::Time* out) {
  google::protobuf::Timestamp ts;
  if (!ts.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  *out = api::FromTimestamp(ts);
  return true;
}

// One crm.internal.RecentItem's bytes: its sku, and when it was last bought if it was.
bool ReadRecentItem(absl::string_view bytes, absl::string_view* sku,
                    std::optional<absl::Time>* last_bought) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  while (const uint32_t tag = in.ReadTag()) {
    absl::string_view field;
    if (IsLengthDelimited(tag, internal::RecentItem::kSkuFieldNumber)) {
      if (!ReadBytesInPlace(in, sku)) return false;
    } else if (IsLengthDelimited(tag, internal::RecentItem::kLastBoughtFieldNumber)) {
      absl::Time t;
      if (!ReadBytesInPlace(in, &field) || !ReadTimestamp(field, &t)) return false;
      *last_bought = t;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

internal::RecentItem& Touch(internal::CustomerSummary& s, const std::string& sku,
                            const std::string& category) {
  auto* recent = s.mutable_recent();
  for (int i = 0; i < recent->size(); ++i) {
    if (recent->Get(i).sku() == sku) return *recent->Mutable(i);
  }
  internal::RecentItem* item = recent->Add();
  item->set_sku(sku);
  item->set_category(category);
  return *item;
}

// Newest first, at most kRecentItems.
void Trim(internal::CustomerSummary& s) {
  auto* recent = s.mutable_recent();
  std::stable_sort(recent->begin(), recent->end(),
                   [](const internal::RecentItem& a, const internal::RecentItem& b) {
                     return LastTouched(a) > LastTouched(b);
                   });
  if (recent->size() > kRecentItems)
    recent->DeleteSubrange(kRecentItems, recent->size() - kRecentItems);
}

double Decay(absl::Duration elapsed) {
  return elapsed <= absl::ZeroDuration() ? 1.0
                                         : std::exp2(-absl::FDivDuration(elapsed, kHabitHalfLife));
}

}  // namespace

absl::Time LastTouched(const internal::RecentItem& item) {
  absl::Time t = absl::InfinitePast();
  if (item.has_last_bought()) t = std::max(t, api::FromTimestamp(item.last_bought()));
  if (item.has_last_viewed()) t = std::max(t, api::FromTimestamp(item.last_viewed()));
  return t;
}

void NoteBought(internal::CustomerSummary& s, const std::string& sku, const std::string& category,
                absl::Time when) {
  internal::RecentItem& item = Touch(s, sku, category);
  if (!item.has_last_bought() || api::FromTimestamp(item.last_bought()) < when) {
    api::SetTimestamp(when, item.mutable_last_bought());
  }
  Trim(s);
}

void NoteViewed(internal::CustomerSummary& s, const std::string& sku, const std::string& category,
                absl::Time when, int dwell_seconds) {
  internal::RecentItem& item = Touch(s, sku, category);
  if (!item.has_last_viewed() || api::FromTimestamp(item.last_viewed()) < when) {
    api::SetTimestamp(when, item.mutable_last_viewed());
  }
  item.set_max_dwell_seconds(std::max(item.max_dwell_seconds(), dwell_seconds));
  Trim(s);
}

void ForgetRecent(internal::CustomerSummary& s, const std::string& sku) {
  auto* recent = s.mutable_recent();
  for (int i = 0; i < recent->size(); ++i) {
    if (recent->Get(i).sku() == sku) {
      recent->DeleteSubrange(i, 1);
      return;
    }
  }
}

void NotePurchaseIn(internal::CustomerSummary& s, const std::string& category, absl::Time when) {
  if (category.empty()) return;
  internal::CategoryPurchases* c = nullptr;
  for (auto& existing : *s.mutable_categories()) {
    if (existing.category() == category) c = &existing;
  }
  if (c == nullptr) {
    c = s.add_categories();
    c->set_category(category);
  }
  // Latest purchase times, newest first.
  auto* times = c->mutable_times();
  api::SetTimestamp(when, times->Add());
  std::sort(times->begin(), times->end(), [](const auto& a, const auto& b) {
    return api::FromTimestamp(a) > api::FromTimestamp(b);
  });
  if (times->size() > kPurchaseTimesKept)
    times->DeleteSubrange(kPurchaseTimesKept, times->size() - kPurchaseTimesKept);
  // The habit, decayed to the later of the two times (purchases may arrive out of order).
  const absl::Time last = c->has_habit_time() ? api::FromTimestamp(c->habit_time()) : when;
  if (when >= last) {
    c->set_habit(c->habit() * Decay(when - last) + 1);
    api::SetTimestamp(when, c->mutable_habit_time());
  } else {
    c->set_habit(c->habit() + Decay(last - when));
  }
}

double HabitAsOf(const internal::CategoryPurchases& c, absl::Time now) {
  if (!c.has_habit_time()) return 0;
  return c.habit() * Decay(now - api::FromTimestamp(c.habit_time()));
}

bool ForEachRecentPurchase(
    absl::string_view summary,
    absl::FunctionRef<void(absl::string_view sku, absl::Time last_bought)> visit) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(summary.data()),
                      static_cast<int>(summary.size()));
  while (const uint32_t tag = in.ReadTag()) {
    if (!IsLengthDelimited(tag, internal::CustomerSummary::kRecentFieldNumber)) {
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    absl::string_view item;
    absl::string_view sku;
    std::optional<absl::Time> last_bought;
    if (!ReadBytesInPlace(in, &item) || !ReadRecentItem(item, &sku, &last_bought)) return false;
    if (last_bought.has_value()) visit(sku, *last_bought);
  }
  return in.ConsumedEntireMessage();
}

}  // namespace crm::recommendation
