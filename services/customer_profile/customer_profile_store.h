// Persistence of the customer-profile service: the only code that knows its column families and
// keys.
//
//   customers            customer_id                          -> Customer (profile, addresses,
//                                                                payment, preferences)
//   emails               normalised email                     -> customer_id (unique index)
//   external_ids         the shop's external id               -> customer_id (imported customers,
//                                                                unique index)
//   behavior             customer_id, time (newest first), n  -> BehaviorEvent
//   affinity             customer_id, category                -> CategoryAffinity (score as of its
//                                                                last activity)
//   contacts             customer_id, time, n                 -> ContactRecord (marketing contacts,
//                                                                for the cap)
//   requests             scope, request_id                    -> the answer to a completed
//                                                                retryable write
//   erased               customer_id                          -> erase time (no personal data)
//   erased_external_ids  the shop's external id               -> erase time (a suppression list:
//                                                                imports skip them)
//   histories            customer_id                          -> CustomerHistory (orders, tickets,
//                                                                from events)
//   retention            customer_id, time (newest first), id -> RetentionAction
//   consumed_events      occur time, event id                 -> libs/events (event ids already
//                                                                applied)
//   outbox*              events for other services (libs/events)
//
// Every change is one RocksDB transaction; profile changes use a synced WAL, behaviour events do
// not (losing the last second of clicks in a power cut is acceptable; losing a registration is
// not). Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/internal/customer_profile_storage.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/events.pb.h"
#include "libs/events/outbox.h"
#include "libs/store/families.h"
#include "libs/store/store.h"

namespace crm::customer_profile {

class CustomerProfileStore {
 public:
  static std::vector<std::string> ColumnFamilies();

  // `store` and `outbox` must outlive this object.
  CustomerProfileStore(store::Store* store, events::Outbox* outbox);

  // Creates `customer` unless its email is taken (ALREADY_EXISTS). A repeat of `request_id` returns
  // the customer the first call created.
  absl::Status Register(const v1::Customer& customer, absl::string_view request_id,
                        uint64_t fingerprint, absl::Time now, v1::Customer* out);

  // Imports `customer` (with its external_id) unless that external id was imported before, or links
  // its email's existing customer to the external id (ALREADY_EXISTS when that customer has another
  // one). `out` is the customer as stored; `outcome` what this call did.
  // kErased: the shop's customer was erased here; nothing is imported and `out` is empty.
  enum class ImportOutcome { kCreated, kAlreadyImported, kLinked, kErased };
  absl::Status Import(const v1::Customer& customer, v1::Customer* out, ImportOutcome* outcome);
  // The customer ids of those external ids this shard knows.
  absl::StatusOr<std::vector<v1::CustomerRef>> LookupExternalIds(
      const std::vector<std::string>& external_ids) const;

  absl::StatusOr<v1::Customer> Get(absl::string_view customer_id) const;
  absl::StatusOr<v1::Customer> GetByEmail(absl::string_view normalized_email) const;
  // Customers ordered by email, starting after `after_email`.
  absl::Status List(absl::string_view email_prefix, absl::string_view after_email, int limit,
                    std::vector<v1::Customer>* out, bool* more) const;

  // Loads the customer for update, lets `change` modify it (its error aborts everything), stamps
  // update_time and saves. When `request_id` is not empty the answer is remembered for retries of
  // `method`.
  absl::Status UpdateCustomer(absl::string_view customer_id, absl::string_view method,
                              absl::string_view request_id, uint64_t fingerprint, absl::Time now,
                              google::protobuf::MessageLite* response,
                              absl::FunctionRef<absl::Status(v1::Customer&)> change);

  // Appends behaviour events (times already resolved in occur_time) and folds them into category
  // affinity, once per request_id.
  absl::Status RecordBehavior(absl::string_view customer_id, absl::string_view request_id,
                              uint64_t fingerprint, const std::vector<v1::BehaviorEvent>& events,
                              absl::Time now, v1::RecordBehaviorEventsResponse* out);
  // Newest first, starting after the key in `after` (from a page token).
  absl::Status ListBehavior(absl::string_view customer_id, absl::string_view after, int limit,
                            std::vector<v1::BehaviorEvent>* out, std::string* last_key,
                            bool* more) const;
  // Stored per-category state (not yet decayed to now).
  absl::StatusOr<std::vector<v1::CategoryAffinity>> Affinities(absl::string_view customer_id) const;

  // Marketing contacts since `since`.
  absl::StatusOr<std::vector<v1::ContactRecord>> Contacts(absl::string_view customer_id,
                                                          absl::Time since) const;
  // The newest marketing contact of every customer ever contacted, in one pass over the contacts.
  absl::Status ScanLastContacts(
      absl::FunctionRef<void(absl::string_view customer_id, absl::Time last)> visit) const;
  // Decides with `decide(customer, recent contact times)` and, when allowed, records the contact,
  // all under the customer's lock so two senders cannot both take the last slot. Once per
  // request_id.
  absl::Status RequestContact(
      absl::string_view customer_id, absl::string_view request_id, uint64_t fingerprint,
      absl::Time now, absl::Time window_start, const v1::ContactRecord& record,
      absl::FunctionRef<v1::ContactDecision(const v1::Customer&, const std::vector<absl::Time>&)>
          decide,
      v1::ContactDecision* out);
  // RequestContact's step inside the caller's transaction (surveys offered on an event); the
  // contact is recorded under `tag` (a hash of what it is for). NOT_FOUND for an unknown customer.
  absl::Status ContactIn(
      store::Transaction& txn, absl::string_view customer_id, absl::Time now,
      absl::Time window_start, const v1::ContactRecord& record, uint64_t tag,
      absl::FunctionRef<v1::ContactDecision(const v1::Customer&, const std::vector<absl::Time>&)>
          decide,
      v1::ContactDecision* out);

  // Every customer, in customer id order (the order of every customer-keyed family here).
  absl::Status ScanCustomers(absl::FunctionRef<bool(const v1::Customer&)> visit) const;
  // The customers with these ids, in the same order; nullopt for an id not (or no longer) here.
  absl::StatusOr<std::vector<std::optional<v1::Customer>>> GetMany(
      const std::vector<std::string>& customer_ids) const;

  // Everything held on the customer.
  absl::Status Export(absl::string_view customer_id, v1::CustomerDataExport* out) const;

  // For another service's event, inside the consumer's transaction: folds it into the customer's
  // history with `fold`. Events of customers this shard does not know (erased, or never registered)
  // change nothing.
  absl::Status ApplyToHistory(store::Transaction& txn, const v1::Event& event,
                              absl::FunctionRef<bool(internal::CustomerHistory&)> fold);
  // NOT_FOUND for an unknown customer; an empty history for one without orders or tickets yet.
  absl::StatusOr<internal::CustomerHistory> History(absl::string_view customer_id) const;
  // Every stored history (customers who ever ordered or complained), in key order.
  absl::Status ScanHistories(
      absl::FunctionRef<bool(absl::string_view customer_id, const internal::CustomerHistory&)>
          visit) const;

  // Records a retention action (`action` complete but for its id), once per request_id.
  absl::Status RecordRetentionAction(absl::string_view customer_id, absl::string_view request_id,
                                     uint64_t fingerprint, absl::Time now,
                                     v1::RetentionAction action, v1::RetentionAction* out);
  // The customer's retention actions, newest first (outcomes not judged).
  absl::StatusOr<std::vector<v1::RetentionAction>> RetentionActions(
      absl::string_view customer_id) const;
  absl::Status ScanRetentionActions(
      absl::FunctionRef<bool(const v1::RetentionAction&)> visit) const;

  // Deletes every row of the customer, leaves a tombstone without personal data and appends a
  // CustomerErased event for the other services, in one transaction. Once per request_id.
  absl::Status Erase(absl::string_view customer_id, absl::string_view request_id,
                     uint64_t fingerprint, absl::Time now, v1::EraseCustomerResponse* out);
  // Adds what else this process keeps on a customer (surveys) to every erasure's transaction.
  void AlsoErase(std::function<absl::Status(store::Transaction&, absl::string_view)> erase) {
    also_erase_.push_back(std::move(erase));
  }

  // The customer's row, read for update so the transaction holds its lock; NOT_FOUND without one.
  absl::StatusOr<v1::Customer> LockCustomer(store::Transaction& txn,
                                            absl::string_view customer_id) const;

 private:
  absl::Status NotFound(absl::string_view customer_id) const;

  store::Store* const store_;
  events::Outbox* const outbox_;
  // The handles of the column families, indexed by the .cc's Family.
  store::Families cf_;
  std::vector<std::function<absl::Status(store::Transaction&, absl::string_view)>> also_erase_;
};

}  // namespace crm::customer_profile
