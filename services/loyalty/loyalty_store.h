// Persistence of the loyalty service: the only code that knows its column families and keys.
//
//   accounts      customer_id                          -> LoyaltyAccount (balance, owed, growth
//                                                         per day, tier, credit)
//   ledger        customer_id, sequence (newest first) -> LedgerEntry
//   growth        customer_id, sequence (newest first) -> GrowthEntry
//   sources       customer_id, kind, source_id         -> entry id (each source counts once)
//   lots          customer_id, expiry, sequence        -> PointsLot
//   lot_expiry    expiry, customer_id, sequence        -> "" (what the expiry sweep visits)
//   grants        customer_id, order_id                -> OrderGrant (what a delivered order
//                                                         granted)
//   ratings       customer_id, order_id                -> trade rating (once per order)
//   tier_history  customer_id, sequence                -> TierChange
//   coupons       customer_id, coupon_id               -> Coupon
//   coupon_orders customer_id, order_id                -> CouponReservation (the coupon an order
//                                                         holds or used, keyed by the order)
//   requests, consumed_events                           -> idempotency records
//
// Every change to an account is one transaction holding the account row's lock (so parallel
// redemptions serialise and can never overspend), with a synced WAL. Thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "crm/internal/loyalty_storage.pb.h"
#include "crm/v1/loyalty.pb.h"
#include "libs/store/families.h"
#include "libs/store/store.h"
#include "services/loyalty/membership.h"

namespace crm::loyalty {

class LoyaltyStore;

// One customer's account inside a transaction: load, change, and the store writes it all at commit.
class AccountSession {
 public:
  internal::LoyaltyAccount& account() { return account_; }
  Lots& lots() { return lots_; }
  // False when the customer has no account yet (it is created on first write).
  bool existed() const { return existed_; }
  store::Transaction& txn() { return txn_; }

  // Has this source already been counted (kind: "points", "growth", "coupon")? Returns the entry
  // id.
  absl::StatusOr<std::optional<std::string>> Source(absl::string_view kind,
                                                    absl::string_view source_id);
  absl::StatusOr<std::optional<internal::OrderGrant>> Grant(absl::string_view order_id);
  absl::Status PutGrant(const internal::OrderGrant& grant);
  absl::StatusOr<bool> Rated(absl::string_view order_id);
  absl::Status PutRating(absl::string_view order_id, v1::TradeRating rating);
  absl::StatusOr<std::optional<v1::LedgerEntry>> LedgerEntryById(absl::string_view entry_id);
  // The coupon as this session left it (locked), if the customer has it.
  absl::StatusOr<std::optional<v1::Coupon>> Coupon(absl::string_view coupon_id);
  // The coupon reservation of an order (locked), if the order has one.
  absl::StatusOr<std::optional<v1::CouponReservation>> Reservation(absl::string_view order_id);
  absl::Status PutReservation(const v1::CouponReservation& reservation);

  void Add(v1::LedgerEntry entry) { ledger_.push_back(std::move(entry)); }
  void Add(v1::GrowthEntry entry) { growth_.push_back(std::move(entry)); }
  void Add(v1::TierChange change) { tier_changes_.push_back(std::move(change)); }
  void Add(v1::Coupon coupon) { coupons_.push_back(std::move(coupon)); }
  const std::vector<v1::LedgerEntry>& new_ledger() const { return ledger_; }
  const std::vector<v1::TierChange>& new_tier_changes() const { return tier_changes_; }
  // What this session changed that metrics count, to report once the transaction has committed.
  struct Effects {
    std::vector<v1::LedgerEntry> ledger;
    std::vector<v1::TierChange> tier_changes;
  };
  Effects effects() const { return {ledger_, tier_changes_}; }

 private:
  friend class LoyaltyStore;
  AccountSession(LoyaltyStore* store, store::Transaction& txn) : store_(store), txn_(txn) {}
  LoyaltyStore* store_;
  store::Transaction& txn_;
  internal::LoyaltyAccount account_;
  Lots lots_;
  std::vector<std::string> loaded_lot_keys_;
  bool existed_ = false;
  std::vector<v1::LedgerEntry> ledger_;
  std::vector<v1::GrowthEntry> growth_;
  std::vector<v1::TierChange> tier_changes_;
  std::vector<v1::Coupon> coupons_;
};

class LoyaltyStore {
 public:
  static std::vector<std::string> ColumnFamilies();
  explicit LoyaltyStore(store::Store* store);

  // Runs `change` on the customer's account in a transaction and writes what it produced.
  absl::Status WithAccount(absl::string_view customer_id,
                           absl::FunctionRef<absl::Status(AccountSession&)> change);
  // Inside an existing transaction (event consumers).
  absl::Status WithAccountIn(store::Transaction& txn, absl::string_view customer_id,
                             absl::FunctionRef<absl::Status(AccountSession&)> change);
  // The same, once per request id (redemptions): a retry returns the first answer.
  absl::Status WithAccountOnce(absl::string_view customer_id, absl::string_view method,
                               absl::string_view request_id, uint64_t fingerprint, absl::Time now,
                               google::protobuf::MessageLite* response,
                               absl::FunctionRef<absl::Status(AccountSession&)> change);

  // Reads (no lock): the account and the lots that expire first (what a membership shows; an
  // account session sees every lot); nullopt when there is none.
  absl::StatusOr<std::optional<std::pair<internal::LoyaltyAccount, Lots>>> Account(
      absl::string_view customer_id) const;
  absl::Status ListLedger(absl::string_view customer_id, absl::string_view after, int limit,
                          std::vector<v1::LedgerEntry>* out, std::string* last_key,
                          bool* more) const;
  absl::Status ListGrowth(absl::string_view customer_id, absl::string_view after, int limit,
                          std::vector<v1::GrowthEntry>* out, std::string* last_key,
                          bool* more) const;
  absl::StatusOr<std::vector<v1::TierChange>> TierHistory(absl::string_view customer_id) const;
  absl::StatusOr<std::vector<v1::Coupon>> Coupons(absl::string_view customer_id) const;
  absl::StatusOr<std::optional<v1::Coupon>> FindCoupon(absl::string_view customer_id,
                                                       absl::string_view coupon_id) const;
  // The coupon reservation of an order, read without a lock.
  absl::StatusOr<std::optional<v1::CouponReservation>> FindReservation(
      absl::string_view customer_id, absl::string_view order_id) const;
  // Does the order hold or has it used a coupon? (So an event about an order without one touches
  // no account.)
  absl::StatusOr<bool> HasReservation(store::Transaction& txn, absl::string_view customer_id,
                                      absl::string_view order_id) const;

  // Customers with points lots expiring at or before `until`.
  absl::StatusOr<std::vector<std::string>> CustomersWithExpiringPoints(absl::Time until) const;
  // Every account, for the tier sweep and metrics (visit returns false to stop).
  absl::Status ForEachAccount(absl::FunctionRef<bool(const internal::LoyaltyAccount&)> visit) const;

  // Removes what could identify the customer (descriptions, referral links); amounts stay for
  // accounting. `left_tier` (optional) receives the tier of a member erased now (unchanged when
  // already erased).
  absl::Status Anonymise(store::Transaction& txn, absl::string_view customer_id,
                         v1::Tier* left_tier = nullptr);

 private:
  friend class AccountSession;
  absl::Status Load(AccountSession& s, absl::string_view customer_id);
  absl::Status Save(AccountSession& s);

  store::Store* const store_;
  // The handles of the column families, indexed by the .cc's Family.
  store::Families cf_;
};

}  // namespace crm::loyalty
