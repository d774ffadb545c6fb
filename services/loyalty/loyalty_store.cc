#include "services/loyalty/loyalty_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/events/store_families.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"

namespace crm::loyalty {
namespace {

using store::Durability;
using store::Key;
using store::Transaction;

// The column families, by what they hold (the header's table), and their names on disk.
enum Family {
  kAccounts,
  kLedger,
  kGrowth,
  kSources,
  kLots,
  kLotExpiry,
  kGrants,
  kRatings,
  kTierHistory,
  kCoupons,
  kCouponOrders,
  kRequests
};
constexpr store::FamilyName<Family> kFamilies[] = {{kAccounts, "accounts"},
                                                   {kLedger, "ledger"},
                                                   {kGrowth, "growth"},
                                                   {kSources, "sources"},
                                                   {kLots, "lots"},
                                                   {kLotExpiry, "lot_expiry"},
                                                   {kGrants, "grants"},
                                                   {kRatings, "ratings"},
                                                   {kTierHistory, "tier_history"},
                                                   {kCoupons, "coupons"},
                                                   {kCouponOrders, "coupon_orders"},
                                                   {kRequests, "requests"}};
static_assert(store::InEnumOrder(kFamilies));

internal::NextExpiry NextExpiryOf(const Lots& lots) {
  internal::NextExpiry next;
  for (const auto& lot : lots) {
    if (lot.remaining() == 0) continue;
    const int64_t at = lot.expire_time().seconds();
    if (next.points() == 0 || at < next.expire_time().seconds()) {
      *next.mutable_expire_time() = lot.expire_time();
      next.set_points(lot.remaining());
    } else if (at == next.expire_time().seconds()) {
      next.set_points(next.points() + lot.remaining());
    }
  }
  return next;
}

int64_t SequenceOf(absl::string_view entry_id) {
  int64_t seq = 0;
  (void)absl::SimpleAtoi(entry_id.substr(1), &seq);
  return seq;
}

std::string LotKey(absl::string_view customer_id, const internal::PointsLot& lot) {
  return Key()
      .Str(customer_id)
      .Time(api::FromTimestamp(lot.expire_time()))
      .U64(lot.sequence())
      .Build();
}

std::string LotExpiryKey(absl::string_view customer_id, const internal::PointsLot& lot) {
  return Key()
      .Time(api::FromTimestamp(lot.expire_time()))
      .Str(customer_id)
      .U64(lot.sequence())
      .Build();
}

// The source index: what a source (an order, a review, a referral, a compensation) produced, so
// that it counts once.
absl::Status PutSource(Transaction& txn, rocksdb::ColumnFamilyHandle* sources,
                       absl::string_view customer_id, absl::string_view kind,
                       absl::string_view source_id, absl::string_view produced_id) {
  return txn.Put(sources, Key().Str(customer_id).Str(kind).Str(source_id).bytes(), produced_id);
}

// A new ledger or growth entry, newest first, and its source.
template <typename Entry>
absl::Status PutEntry(Transaction& txn, rocksdb::ColumnFamilyHandle* entries,
                      rocksdb::ColumnFamilyHandle* sources, absl::string_view customer_id,
                      absl::string_view kind, const Entry& e) {
  CRM_RETURN_IF_ERROR(txn.PutProto(
      entries, Key().Str(customer_id).Descending(SequenceOf(e.entry_id())).bytes(), e));
  return PutSource(txn, sources, customer_id, kind, e.source_id(), e.entry_id());
}

}  // namespace

std::vector<std::string> LoyaltyStore::ColumnFamilies() {
  return events::WithConsumerFamilies(store::FamilyNames(kFamilies));
}

LoyaltyStore::LoyaltyStore(store::Store* store) : store_(store), cf_(*store, kFamilies) {}

absl::StatusOr<std::optional<std::string>> AccountSession::Source(absl::string_view kind,
                                                                  absl::string_view source_id) {
  CRM_ASSIGN_OR_RETURN(
      auto v,
      txn_.GetForUpdate(store_->cf_[kSources],
                        Key().Str(account_.customer_id()).Str(kind).Str(source_id).bytes()));
  return v;
}

absl::StatusOr<std::optional<internal::OrderGrant>> AccountSession::Grant(
    absl::string_view order_id) {
  internal::OrderGrant g;
  CRM_ASSIGN_OR_RETURN(
      auto found, txn_.GetProto(store_->cf_[kGrants],
                                Key().Str(account_.customer_id()).Str(order_id).bytes(), &g, true));
  if (!found) return std::optional<internal::OrderGrant>();
  return std::optional<internal::OrderGrant>(std::move(g));
}

absl::Status AccountSession::PutGrant(const internal::OrderGrant& grant) {
  return txn_.PutProto(store_->cf_[kGrants],
                       Key().Str(account_.customer_id()).Str(grant.order_id()).bytes(), grant);
}

absl::StatusOr<bool> AccountSession::Rated(absl::string_view order_id) {
  auto v = txn_.GetForUpdate(store_->cf_[kRatings],
                             Key().Str(account_.customer_id()).Str(order_id).bytes());
  if (!v.ok()) return v.status();
  return v->has_value();
}

absl::Status AccountSession::PutRating(absl::string_view order_id, v1::TradeRating rating) {
  return txn_.Put(store_->cf_[kRatings], Key().Str(account_.customer_id()).Str(order_id).bytes(),
                  std::string(1, static_cast<char>(rating)));
}

absl::StatusOr<std::optional<v1::LedgerEntry>> AccountSession::LedgerEntryById(
    absl::string_view entry_id) {
  v1::LedgerEntry e;
  auto found =
      txn_.GetProto(store_->cf_[kLedger],
                    Key().Str(account_.customer_id()).Descending(SequenceOf(entry_id)).bytes(), &e);
  if (!found.ok()) return found.status();
  if (!*found) return std::optional<v1::LedgerEntry>();
  return std::optional<v1::LedgerEntry>(std::move(e));
}

absl::StatusOr<std::optional<v1::Coupon>> AccountSession::Coupon(absl::string_view coupon_id) {
  // This session's own change first: a coupon released and then reserved in one session.
  for (auto it = coupons_.rbegin(); it != coupons_.rend(); ++it) {
    if (it->coupon_id() == coupon_id) return std::optional<v1::Coupon>(*it);
  }
  v1::Coupon c;
  auto found = txn_.GetProto(store_->cf_[kCoupons],
                             Key().Str(account_.customer_id()).Str(coupon_id).bytes(), &c,
                             /*for_update=*/true);
  if (!found.ok()) return found.status();
  if (!*found) return std::optional<v1::Coupon>();
  return std::optional<v1::Coupon>(std::move(c));
}

absl::StatusOr<std::optional<v1::CouponReservation>> AccountSession::Reservation(
    absl::string_view order_id) {
  v1::CouponReservation r;
  auto found = txn_.GetProto(store_->cf_[kCouponOrders],
                             Key().Str(account_.customer_id()).Str(order_id).bytes(), &r,
                             /*for_update=*/true);
  if (!found.ok()) return found.status();
  if (!*found) return std::optional<v1::CouponReservation>();
  return std::optional<v1::CouponReservation>(std::move(r));
}

absl::Status AccountSession::PutReservation(const v1::CouponReservation& r) {
  return txn_.PutProto(store_->cf_[kCouponOrders],
                       Key().Str(account_.customer_id()).Str(r.order_id()).bytes(), r);
}

absl::Status LoyaltyStore::Load(AccountSession& s, absl::string_view customer_id) {
  CRM_ASSIGN_OR_RETURN(
      auto found, s.txn_.GetProto(cf_[kAccounts], customer_id, &s.account_, /*for_update=*/true));
  s.existed_ = found;
  if (!s.existed_) {
    s.account_.set_customer_id(std::string(customer_id));
    s.account_.set_next_sequence(1);
    return absl::OkStatus();
  }
  if (s.account_.erased()) {
    return absl::NotFoundError(
        absl::StrCat("customer_id: customer \"", customer_id, "\" was erased"));
  }
  const std::string prefix = Key().Str(customer_id).Build();
  return store::ScanPrefixProtos<internal::PointsLot>(
      s.txn_, cf_[kLots], prefix, [&](absl::string_view k, internal::PointsLot&& lot) {
        s.lots_.push_back(std::move(lot));
        s.loaded_lot_keys_.emplace_back(k);
      });
}

absl::Status LoyaltyStore::Save(AccountSession& s) {
  const std::string& cid = s.account_.customer_id();
  Transaction& txn = s.txn_;
  // Lots: rewrite what changed, drop what is used up.
  for (const std::string& key : s.loaded_lot_keys_) {
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kLots], key));
  }
  for (const auto& lot : s.lots_) {
    if (lot.remaining() == 0) {
      CRM_RETURN_IF_ERROR(txn.Delete(cf_[kLotExpiry], LotExpiryKey(cid, lot)));
      continue;
    }
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kLots], LotKey(cid, lot), lot));
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kLotExpiry], LotExpiryKey(cid, lot), ""));
  }
  for (const auto& e : s.ledger_) {
    CRM_RETURN_IF_ERROR(PutEntry(txn, cf_[kLedger], cf_[kSources], cid, "points", e));
  }
  for (const auto& g : s.growth_) {
    CRM_RETURN_IF_ERROR(PutEntry(txn, cf_[kGrowth], cf_[kSources], cid, "growth", g));
  }
  for (const auto& t : s.tier_changes_) {
    const int64_t seq = s.account_.next_sequence();
    s.account_.set_next_sequence(seq + 1);
    CRM_RETURN_IF_ERROR(
        txn.PutProto(cf_[kTierHistory], Key().Str(cid).U64(static_cast<uint64_t>(seq)).bytes(), t));
  }
  for (const auto& c : s.coupons_) {
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCoupons], Key().Str(cid).Str(c.coupon_id()).bytes(), c));
    CRM_RETURN_IF_ERROR(PutSource(txn, cf_[kSources], cid, "coupon", c.source_id(), c.coupon_id()));
  }
  *s.account_.mutable_next_expiry() = NextExpiryOf(s.lots_);
  return txn.PutProto(cf_[kAccounts], cid, s.account_);
}

absl::Status LoyaltyStore::WithAccountIn(Transaction& txn, absl::string_view customer_id,
                                         absl::FunctionRef<absl::Status(AccountSession&)> change) {
  AccountSession s(this, txn);
  CRM_RETURN_IF_ERROR(Load(s, customer_id));
  CRM_RETURN_IF_ERROR(change(s));
  return Save(s);
}

absl::Status LoyaltyStore::WithAccount(absl::string_view customer_id,
                                       absl::FunctionRef<absl::Status(AccountSession&)> change) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) {
    return WithAccountIn(txn, customer_id, change);
  });
}

absl::Status LoyaltyStore::WithAccountOnce(
    absl::string_view customer_id, absl::string_view method, absl::string_view request_id,
    uint64_t fingerprint, absl::Time now, google::protobuf::MessageLite* response,
    absl::FunctionRef<absl::Status(AccountSession&)> change) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests],
      Key().Str(customer_id).Str(method).Str(request_id).bytes(), fingerprint, now, response,
      [&](Transaction& txn) { return WithAccountIn(txn, customer_id, change); });
}

absl::StatusOr<std::optional<std::pair<internal::LoyaltyAccount, Lots>>> LoyaltyStore::Account(
    absl::string_view customer_id) const {
  internal::LoyaltyAccount account;
  CRM_ASSIGN_OR_RETURN(auto found, store_->GetProto(cf_[kAccounts], customer_id, &account));
  if (!found) return std::optional<std::pair<internal::LoyaltyAccount, Lots>>();
  if (account.erased())
    return absl::NotFoundError(
        absl::StrCat("customer_id: customer \"", customer_id, "\" was erased"));
  Lots lots;
  if (account.has_next_expiry()) {
    // Saved with its summary: the lots that expire first are all a read needs.
    if (account.next_expiry().points() > 0) {
      internal::PointsLot& first = lots.emplace_back();
      first.set_remaining(account.next_expiry().points());
      first.set_earned(account.next_expiry().points());
      *first.mutable_expire_time() = account.next_expiry().expire_time();
    }
  } else {
    absl::Status s = store_->ScanPrefix(
        cf_[kLots], Key().Str(customer_id).bytes(), [&](absl::string_view, absl::string_view v) {
          internal::PointsLot lot;
          if (lot.ParseFromArray(v.data(), static_cast<int>(v.size())))
            lots.push_back(std::move(lot));
          return true;
        });
    if (!s.ok()) return s;
  }
  return std::optional<std::pair<internal::LoyaltyAccount, Lots>>(
      std::make_pair(std::move(account), std::move(lots)));
}

absl::Status LoyaltyStore::ListLedger(absl::string_view customer_id, absl::string_view after,
                                      int limit, std::vector<v1::LedgerEntry>* out,
                                      std::string* last_key, bool* more) const {
  return store::ScanPage(*store_, cf_[kLedger], Key().Str(customer_id).Build(), after, limit, out,
                         last_key, more);
}

absl::Status LoyaltyStore::ListGrowth(absl::string_view customer_id, absl::string_view after,
                                      int limit, std::vector<v1::GrowthEntry>* out,
                                      std::string* last_key, bool* more) const {
  return store::ScanPage(*store_, cf_[kGrowth], Key().Str(customer_id).Build(), after, limit, out,
                         last_key, more);
}

absl::StatusOr<std::vector<v1::TierChange>> LoyaltyStore::TierHistory(
    absl::string_view customer_id) const {
  return store::ProtosUnder<v1::TierChange>(*store_, cf_[kTierHistory],
                                            Key().Str(customer_id).Build(), 1000);
}

absl::StatusOr<std::vector<v1::Coupon>> LoyaltyStore::Coupons(absl::string_view customer_id) const {
  return store::ProtosUnder<v1::Coupon>(*store_, cf_[kCoupons], Key().Str(customer_id).Build(),
                                        1000);
}

absl::StatusOr<std::optional<v1::Coupon>> LoyaltyStore::FindCoupon(
    absl::string_view customer_id, absl::string_view coupon_id) const {
  v1::Coupon c;
  CRM_ASSIGN_OR_RETURN(
      auto found,
      store_->GetProto(cf_[kCoupons], Key().Str(customer_id).Str(coupon_id).bytes(), &c));
  if (!found) return std::optional<v1::Coupon>();
  return std::optional<v1::Coupon>(std::move(c));
}

absl::StatusOr<std::optional<v1::CouponReservation>> LoyaltyStore::FindReservation(
    absl::string_view customer_id, absl::string_view order_id) const {
  v1::CouponReservation r;
  CRM_ASSIGN_OR_RETURN(
      auto found,
      store_->GetProto(cf_[kCouponOrders], Key().Str(customer_id).Str(order_id).bytes(), &r));
  if (!found) return std::optional<v1::CouponReservation>();
  return std::optional<v1::CouponReservation>(std::move(r));
}

absl::StatusOr<bool> LoyaltyStore::HasReservation(Transaction& txn, absl::string_view customer_id,
                                                  absl::string_view order_id) const {
  CRM_ASSIGN_OR_RETURN(auto v,
                       txn.Get(cf_[kCouponOrders], Key().Str(customer_id).Str(order_id).bytes()));
  return v.has_value();
}

absl::StatusOr<std::vector<std::string>> LoyaltyStore::CustomersWithExpiringPoints(
    absl::Time until) const {
  std::vector<std::string> out;
  absl::Status s =
      store_->Scan(cf_[kLotExpiry], "", Key().Time(until + absl::Microseconds(1)).bytes(),
                   [&](absl::string_view k, absl::string_view) {
                     store::KeyReader r(k);
                     (void)r.Time();
                     if (auto cid = r.Str(); cid && (out.empty() || out.back() != *cid))
                       out.push_back(*cid);
                     return true;
                   });
  if (!s.ok()) return s;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::Status LoyaltyStore::ForEachAccount(
    absl::FunctionRef<bool(const internal::LoyaltyAccount&)> visit) const {
  return store_->Scan(cf_[kAccounts], "", "", [&](absl::string_view, absl::string_view v) {
    internal::LoyaltyAccount a;
    if (!a.ParseFromArray(v.data(), static_cast<int>(v.size()))) return true;
    return visit(a);
  });
}

absl::Status LoyaltyStore::Anonymise(Transaction& txn, absl::string_view customer_id,
                                     v1::Tier* left_tier) {
  internal::LoyaltyAccount account;
  CRM_ASSIGN_OR_RETURN(auto found,
                       txn.GetProto(cf_[kAccounts], customer_id, &account, /*for_update=*/true));
  if (!found) return absl::OkStatus();
  if (!account.erased() && left_tier != nullptr) *left_tier = account.tier();
  account.set_erased(true);
  account.clear_enterprise_company();
  account.clear_named_agent_id();
  CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kAccounts], customer_id, account));
  const std::string prefix = Key().Str(customer_id).Build();
  // Ledger and growth keep their amounts (the books must still add up) but lose descriptions and
  // the source ids that name other customers (referrals).
  for (auto* cf : {cf_[kLedger], cf_[kGrowth]}) {
    std::vector<std::pair<std::string, std::string>> rewritten;
    absl::Status s = txn.Scan(cf, prefix, store::PrefixUpperBound(prefix),
                              [&](absl::string_view k, absl::string_view v) {
                                if (cf == cf_[kLedger]) {
                                  v1::LedgerEntry e;
                                  if (e.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                    e.clear_description();
                                    if (e.source() == v1::POINTS_SOURCE_REFERRAL)
                                      e.set_source_id("referral");
                                    rewritten.emplace_back(std::string(k), e.SerializeAsString());
                                  }
                                } else {
                                  v1::GrowthEntry e;
                                  if (e.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                    if (e.source() == v1::GROWTH_SOURCE_REFERRAL)
                                      e.set_source_id("referral");
                                    rewritten.emplace_back(std::string(k), e.SerializeAsString());
                                  }
                                }
                                return true;
                              });
    if (!s.ok()) return s;
    for (auto& [k, v] : rewritten) {
      CRM_RETURN_IF_ERROR(txn.Put(cf, k, v));
    }
  }
  CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kSources], prefix));
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

}  // namespace crm::loyalty
