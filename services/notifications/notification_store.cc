#include "services/notifications/notification_store.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/sharding/hash.h"
#include "libs/store/counters.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"

namespace crm::notifications {
namespace {

using store::Key;

std::string CustomerKey(absl::string_view customer_id, absl::string_view second) {
  return Key().Str(customer_id).Str(second).Build();
}

std::string QueueKey(const v1::Notification& n) {
  return Key()
      .Time(api::FromTimestamp(n.send_after()))
      .Str(n.customer_id())
      .Str(n.notification_id())
      .Build();
}

bool Queued(const v1::Notification& n) { return n.status() == v1::NOTIFICATION_STATUS_SCHEDULED; }

// What the customer sees of their own notifications: what was sent or will be.
bool CustomerSees(const v1::Notification& n) {
  return n.status() == v1::NOTIFICATION_STATUS_SCHEDULED ||
         n.status() == v1::NOTIFICATION_STATUS_SENT;
}

}  // namespace

std::string NotificationIdOf(absl::Time create_time, absl::string_view source) {
  const uint64_t newest_first =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - absl::ToUnixMicros(create_time));
  return absl::StrFormat("n%016x-%08x", newest_first,
                         static_cast<uint32_t>(sharding::StableHash64(source)));
}

std::vector<std::string> NotificationStore::ColumnFamilies() {
  return store::FamilyNames(kFamilies);
}

std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> NotificationStore::MergeOperators() {
  return {
      {kFamilies[kStats].name, store::CounterSum(internal::CampaignCounts::default_instance())}};
}

NotificationStore::NotificationStore(store::Store* store) : store_(store), cf_(*store, kFamilies) {}

absl::Status NotificationStore::Transact(absl::FunctionRef<absl::Status(store::Transaction&)> body,
                                         store::Durability durability) {
  return store_->Transact(durability, body);
}

absl::StatusOr<std::optional<std::string>> NotificationStore::LockSource(
    store::Transaction& txn, absl::string_view customer_id, absl::string_view source) {
  return txn.GetForUpdate(cf_[kSources], CustomerKey(customer_id, source));
}

absl::Status NotificationStore::Create(store::Transaction& txn, absl::string_view source,
                                       const v1::Notification& n) {
  CRM_RETURN_IF_ERROR(
      txn.Put(cf_[kSources], CustomerKey(n.customer_id(), source), n.notification_id()));
  CRM_RETURN_IF_ERROR(
      txn.PutProto(cf_[kNotifications], CustomerKey(n.customer_id(), n.notification_id()), n));
  if (Queued(n)) return txn.Put(cf_[kQueue], QueueKey(n), "");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::Notification>> NotificationStore::Lock(
    store::Transaction& txn, absl::string_view customer_id, absl::string_view notification_id) {
  v1::Notification n;
  CRM_ASSIGN_OR_RETURN(
      bool found, txn.GetProto(cf_[kNotifications], CustomerKey(customer_id, notification_id), &n,
                               /*for_update=*/true));
  if (!found) return std::nullopt;
  return n;
}

absl::Status NotificationStore::Update(store::Transaction& txn, const v1::Notification& before,
                                       const v1::Notification& after) {
  if (Queued(before)) CRM_RETURN_IF_ERROR(txn.Delete(cf_[kQueue], QueueKey(before)));
  if (Queued(after)) CRM_RETURN_IF_ERROR(txn.Put(cf_[kQueue], QueueKey(after), ""));
  return txn.PutProto(cf_[kNotifications],
                      CustomerKey(after.customer_id(), after.notification_id()), after);
}

absl::StatusOr<v1::Notification> NotificationStore::Get(absl::string_view customer_id,
                                                        absl::string_view notification_id) const {
  return store::GetProtoOr<v1::Notification>(
      *store_, cf_[kNotifications], CustomerKey(customer_id, notification_id), [&] {
        return absl::NotFoundError(absl::StrCat(
            "notification_id: the customer has no notification \"", notification_id, "\""));
      });
}

absl::Status NotificationStore::List(bool with_all, absl::string_view customer_id,
                                     absl::string_view after, int limit,
                                     std::vector<v1::Notification>* out, std::string* last_key,
                                     bool* more) const {
  const std::string prefix = Key().Str(customer_id).Build();
  CRM_ASSIGN_OR_RETURN(const std::string begin, store::ResumeAfter(prefix, after));
  return store::ScanProtos<v1::Notification>(*store_, cf_[kNotifications], begin,
                                             store::PrefixUpperBound(prefix),
                                             [&](absl::string_view key, v1::Notification&& n) {
                                               if (!with_all && !CustomerSees(n)) return true;
                                               if (static_cast<int>(out->size()) == limit) {
                                                 *more = true;
                                                 return false;
                                               }
                                               out->push_back(std::move(n));
                                               *last_key = std::string(key);
                                               return true;
                                             });
}

absl::StatusOr<std::vector<NotificationStore::Due>> NotificationStore::DueAt(absl::Time now,
                                                                             int limit) const {
  std::vector<Due> due;
  absl::Status parsed = absl::OkStatus();
  CRM_RETURN_IF_ERROR(
      store_->Scan(cf_[kQueue], "", Key().Time(now + absl::Microseconds(1)).Build(),
                   [&](absl::string_view key, absl::string_view) {
                     store::KeyReader reader(key);
                     const auto at = reader.Time();
                     auto customer_id = reader.Str();
                     auto notification_id = reader.Str();
                     if (!at || !customer_id || !notification_id) {
                       parsed = absl::DataLossError("a notification queue key does not parse");
                       return false;
                     }
                     due.push_back({std::move(*customer_id), std::move(*notification_id)});
                     return static_cast<int>(due.size()) < limit;
                   }));
  CRM_RETURN_IF_ERROR(parsed);
  return due;
}

absl::StatusOr<std::optional<internal::CampaignRecord>> NotificationStore::LockCampaign(
    store::Transaction& txn, absl::string_view campaign_id) {
  internal::CampaignRecord r;
  CRM_ASSIGN_OR_RETURN(bool found, txn.GetProto(cf_[kCampaigns], Key().Str(campaign_id).Build(), &r,
                                                /*for_update=*/true));
  if (!found) return std::nullopt;
  return r;
}

absl::Status NotificationStore::PutCampaign(store::Transaction& txn,
                                            const internal::CampaignRecord& record) {
  return txn.PutProto(cf_[kCampaigns], Key().Str(record.campaign().campaign_id()).Build(), record);
}

absl::StatusOr<std::optional<internal::CampaignRecord>> NotificationStore::GetCampaign(
    absl::string_view campaign_id) const {
  internal::CampaignRecord r;
  CRM_ASSIGN_OR_RETURN(bool found,
                       store_->GetProto(cf_[kCampaigns], Key().Str(campaign_id).Build(), &r));
  if (!found) return std::nullopt;
  return r;
}

absl::StatusOr<std::vector<internal::CampaignRecord>> NotificationStore::Campaigns() const {
  return store::ProtosUnder<internal::CampaignRecord>(*store_, cf_[kCampaigns], "");
}

absl::StatusOr<std::vector<internal::CampaignMembership>> NotificationStore::LockMemberships(
    store::Transaction& txn, absl::string_view customer_id) {
  CRM_ASSIGN_OR_RETURN(auto out, store::ProtosUnder<internal::CampaignMembership>(
                                     txn, cf_[kMembers], Key().Str(customer_id).Build()));
  // Locked one by one: a conversion and a second order of the customer must not both count.
  for (const auto& m : out) {
    CRM_RETURN_IF_ERROR(
        txn.GetForUpdate(cf_[kMembers], CustomerKey(customer_id, m.campaign_id())).status());
  }
  return out;
}

absl::Status NotificationStore::PutMembership(store::Transaction& txn,
                                              absl::string_view customer_id,
                                              const internal::CampaignMembership& membership) {
  return txn.PutProto(cf_[kMembers], CustomerKey(customer_id, membership.campaign_id()),
                      membership);
}

absl::Status NotificationStore::DeleteMembership(store::Transaction& txn,
                                                 absl::string_view customer_id,
                                                 absl::string_view campaign_id) {
  return txn.Delete(cf_[kMembers], CustomerKey(customer_id, campaign_id));
}

absl::Status NotificationStore::AddCounts(store::Transaction& txn, absl::string_view campaign_id,
                                          const internal::CampaignCounts& delta) {
  return txn.AddCounters(cf_[kStats], Key().Str(campaign_id).Build(), delta);
}

absl::StatusOr<internal::CampaignCounts> NotificationStore::Counts(
    absl::string_view campaign_id) const {
  internal::CampaignCounts counts;
  CRM_RETURN_IF_ERROR(
      store_->GetProto(cf_[kStats], Key().Str(campaign_id).Build(), &counts).status());
  store::FloorCounters(counts);
  return counts;
}

absl::Status NotificationStore::EraseCustomer(store::Transaction& txn,
                                              absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).Build();
  // Queue entries are keyed by time first: found through the customer's scheduled notifications.
  std::vector<std::string> queued;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::Notification>(
      txn, cf_[kNotifications], prefix, [&](absl::string_view, v1::Notification&& n) {
        if (Queued(n)) queued.push_back(QueueKey(n));
      }));
  for (const std::string& key : queued) CRM_RETURN_IF_ERROR(txn.Delete(cf_[kQueue], key));
  CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kNotifications], prefix));
  CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kSources], prefix));
  return txn.DeletePrefix(cf_[kMembers], prefix);
}

}  // namespace crm::notifications
