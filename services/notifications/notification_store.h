// Persistence of notifications and campaigns, in the store of the process that serves them
// (customer-profile): the only code that knows their column families and keys.
//
//   notifications          customer_id, notification_id       -> Notification (ids sort newest
//                                                                first)
//   notification_sources   customer_id, source                -> notification_id: what a
//                                                                notification was made for (a
//                                                                campaign, an event and channel),
//                                                                so it is made once
//   notification_queue     send_after, customer_id, id        -> "" (SCHEDULED notifications, in
//                                                                the order they fall due)
//   campaigns              campaign_id                        -> CampaignRecord (with this
//                                                                shard's walk through the
//                                                                audience)
//   campaign_members       customer_id, campaign_id           -> CampaignMembership (for
//                                                                attributing orders)
//   campaign_stats         campaign_id                        -> CampaignCounts, counter rows
//                                                                added to without reading
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/internal/notification_storage.pb.h"
#include "crm/v1/notifications.pb.h"
#include "libs/store/families.h"
#include "libs/store/store.h"

namespace crm::notifications {

// A notification's id: newest first in a customer's listing, unique per `source`.
std::string NotificationIdOf(absl::Time create_time, absl::string_view source);

class NotificationStore {
 public:
  // To be opened with the serving process's own families, with MergeOperators() for them.
  static std::vector<std::string> ColumnFamilies();
  static std::map<std::string, std::shared_ptr<rocksdb::MergeOperator>> MergeOperators();

  // `store` must outlive this object.
  explicit NotificationStore(store::Store* store);

  // Runs `body` in one transaction, its commit synced unless `durability` says otherwise.
  absl::Status Transact(absl::FunctionRef<absl::Status(store::Transaction&)> body,
                        store::Durability durability = store::Durability::kSynced);

  // The notification made for `source`, locked until `txn` ends; nullopt when none was.
  absl::StatusOr<std::optional<std::string>> LockSource(store::Transaction& txn,
                                                        absl::string_view customer_id,
                                                        absl::string_view source);
  // Creates `n`, made for `source`, queued when SCHEDULED.
  absl::Status Create(store::Transaction& txn, absl::string_view source, const v1::Notification& n);
  absl::StatusOr<std::optional<v1::Notification>> Lock(store::Transaction& txn,
                                                       absl::string_view customer_id,
                                                       absl::string_view notification_id);
  // Replaces `before` (as locked) with `after`, moving its queue entry.
  absl::Status Update(store::Transaction& txn, const v1::Notification& before,
                      const v1::Notification& after);
  absl::StatusOr<v1::Notification> Get(absl::string_view customer_id,
                                       absl::string_view notification_id) const;
  // A page of the customer's notifications, newest first, after the key `after`; only those a
  // customer sees unless `with_all`.
  absl::Status List(bool with_all, absl::string_view customer_id, absl::string_view after,
                    int limit, std::vector<v1::Notification>* out, std::string* last_key,
                    bool* more) const;

  struct Due {
    std::string customer_id;
    std::string notification_id;
  };
  // Up to `limit` SCHEDULED notifications due at `now`, earliest first.
  absl::StatusOr<std::vector<Due>> DueAt(absl::Time now, int limit) const;

  absl::StatusOr<std::optional<internal::CampaignRecord>> LockCampaign(
      store::Transaction& txn, absl::string_view campaign_id);
  absl::Status PutCampaign(store::Transaction& txn, const internal::CampaignRecord& record);
  absl::StatusOr<std::optional<internal::CampaignRecord>> GetCampaign(
      absl::string_view campaign_id) const;
  // Every campaign this shard keeps.
  absl::StatusOr<std::vector<internal::CampaignRecord>> Campaigns() const;

  absl::StatusOr<std::vector<internal::CampaignMembership>> LockMemberships(
      store::Transaction& txn, absl::string_view customer_id);
  absl::Status PutMembership(store::Transaction& txn, absl::string_view customer_id,
                             const internal::CampaignMembership& membership);
  absl::Status DeleteMembership(store::Transaction& txn, absl::string_view customer_id,
                                absl::string_view campaign_id);

  absl::Status AddCounts(store::Transaction& txn, absl::string_view campaign_id,
                         const internal::CampaignCounts& delta);
  absl::StatusOr<internal::CampaignCounts> Counts(absl::string_view campaign_id) const;

  // Everything held on the customer (on erasure); the campaigns' counts are not personal data.
  absl::Status EraseCustomer(store::Transaction& txn, absl::string_view customer_id);

 private:
  enum Family { kNotifications, kSources, kQueue, kCampaigns, kMembers, kStats };
  static constexpr store::FamilyName<Family> kFamilies[] = {
      {kNotifications, "notifications"}, {kSources, "notification_sources"},
      {kQueue, "notification_queue"},    {kCampaigns, "campaigns"},
      {kMembers, "campaign_members"},    {kStats, "campaign_stats"}};
  static_assert(store::InEnumOrder(kFamilies));

  store::Store* const store_;
  const store::Families cf_;
};

}  // namespace crm::notifications
