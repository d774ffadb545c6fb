#include "services/customer_profile/customer_profile_store.h"

#include <type_traits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/behavior/interest.h"
#include "libs/events/store_families.h"
#include "libs/sharding/hash.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"

namespace crm::customer_profile {
namespace {

using store::Durability;
using store::Key;
using store::Transaction;

// The column families, by what they hold (the header's table), and their names on disk.
enum Family {
  kCustomers,
  kEmails,
  kBehavior,
  kAffinity,
  kContacts,
  kRequests,
  kErased,
  kErasedExternalIds,
  kHistories,
  kRetention,
  kExternalIds
};
constexpr store::FamilyName<Family> kFamilies[] = {
    {kCustomers, "customers"},     {kEmails, "emails"},
    {kBehavior, "behavior"},       {kAffinity, "affinity"},
    {kContacts, "contacts"},       {kRequests, "requests"},
    {kErased, "erased"},           {kErasedExternalIds, "erased_external_ids"},
    {kHistories, "histories"},     {kRetention, "retention"},
    {kExternalIds, "external_ids"}};
static_assert(store::InEnumOrder(kFamilies));

std::string CustomerPrefix(absl::string_view customer_id) { return Key().Str(customer_id).Build(); }

// Retryable writes of one customer are remembered under the customer, so erasure removes them too.
std::string RequestKey(absl::string_view customer_id, absl::string_view method,
                       absl::string_view request_id) {
  return Key().Str(customer_id).Str(method).Str(request_id).Build();
}

// Registration happens before there is a customer id; it is remembered under the email instead.
std::string RegisterRequestPrefix(absl::string_view email) {
  return Key().Str("register").Str(email).Build();
}

// The event that tells other services what the customer did (types, categories, items, dwell).
v1::Event BehaviorRecorded(absl::string_view customer_id,
                           const std::vector<v1::BehaviorEvent>& events, absl::Time now) {
  v1::Event event;
  event.set_customer_id(std::string(customer_id));
  api::SetTimestamp(now, event.mutable_occur_time());
  for (const auto& e : events) {
    auto* signal = event.mutable_behavior_recorded()->add_signals();
    signal->set_type(std::string(behavior::ActionName(behavior::ActionOf(e.type()))));
    signal->set_category(e.category());
    signal->set_sku(e.sku());
    signal->set_dwell_seconds(e.dwell_seconds());
    *signal->mutable_occur_time() = e.occur_time();
  }
  return event;
}

}  // namespace

std::vector<std::string> CustomerProfileStore::ColumnFamilies() {
  return events::WithConsumerAndOutboxFamilies(store::FamilyNames(kFamilies));
}

CustomerProfileStore::CustomerProfileStore(store::Store* store, events::Outbox* outbox)
    : store_(store), outbox_(outbox), cf_(*store, kFamilies) {}

absl::Status CustomerProfileStore::NotFound(absl::string_view customer_id) const {
  return absl::NotFoundError(absl::StrCat("customer_id: no customer \"", customer_id, "\""));
}

absl::StatusOr<v1::Customer> CustomerProfileStore::LockCustomer(
    Transaction& txn, absl::string_view customer_id) const {
  v1::Customer c;
  CRM_ASSIGN_OR_RETURN(auto found,
                       txn.GetProto(cf_[kCustomers], customer_id, &c, /*for_update=*/true));
  if (!found) return NotFound(customer_id);
  return c;
}

absl::Status CustomerProfileStore::Register(const v1::Customer& customer,
                                            absl::string_view request_id, uint64_t fingerprint,
                                            absl::Time now, v1::Customer* out) {
  const std::string request_key =
      RegisterRequestPrefix(customer.email()) + Key().Str(request_id).bytes();
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], request_key, fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(auto existing, txn.GetForUpdate(cf_[kEmails], customer.email()));
        if (existing.has_value()) {
          return absl::AlreadyExistsError(
              absl::StrCat("email: \"", customer.email(), "\" is already registered"));
        }
        if (auto s = txn.Put(cf_[kEmails], customer.email(), customer.customer_id()); !s.ok()) {
          return s;
        }
        *out = customer;
        return txn.PutProto(cf_[kCustomers], customer.customer_id(), customer);
      });
}

absl::Status CustomerProfileStore::Import(const v1::Customer& customer, v1::Customer* out,
                                          ImportOutcome* outcome) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    *outcome = ImportOutcome::kAlreadyImported;
    // An erased customer stays erased: a later run of the same import does not bring them back.
    CRM_ASSIGN_OR_RETURN(auto erased, txn.Get(cf_[kErasedExternalIds], customer.external_id()));
    if (erased.has_value()) {
      out->Clear();
      *outcome = ImportOutcome::kErased;
      return absl::OkStatus();
    }
    auto imported = txn.GetForUpdate(cf_[kExternalIds], customer.external_id());
    if (!imported.ok()) return imported.status();
    if (imported->has_value()) {
      auto found = txn.GetProto(cf_[kCustomers], **imported, out);
      if (!found.ok()) return found.status();
      if (!*found) return absl::DataLossError("an imported customer's row is missing");
      return absl::OkStatus();
    }
    if (!customer.email().empty()) {
      auto registered = txn.GetForUpdate(cf_[kEmails], customer.email());
      if (!registered.ok()) return registered.status();
      if (registered->has_value()) {
        auto found = txn.GetProto(cf_[kCustomers], **registered, out, /*for_update=*/true);
        if (!found.ok()) return found.status();
        if (!*found) return absl::DataLossError("a registered email's customer row is missing");
        if (!out->external_id().empty()) {
          return absl::AlreadyExistsError(absl::StrCat(
              "email: \"", customer.email(), "\" belongs to the customer with external id \"",
              out->external_id(), "\""));
        }
        out->set_external_id(customer.external_id());
        *outcome = ImportOutcome::kLinked;
        CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomers], out->customer_id(), *out));
        return txn.Put(cf_[kExternalIds], customer.external_id(), out->customer_id());
      }
      CRM_RETURN_IF_ERROR(txn.Put(cf_[kEmails], customer.email(), customer.customer_id()));
    }
    *out = customer;
    *outcome = ImportOutcome::kCreated;
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kCustomers], customer.customer_id(), customer));
    return txn.Put(cf_[kExternalIds], customer.external_id(), customer.customer_id());
  });
}

absl::StatusOr<std::vector<v1::CustomerRef>> CustomerProfileStore::LookupExternalIds(
    const std::vector<std::string>& external_ids) const {
  std::vector<v1::CustomerRef> refs;
  absl::Status s =
      store_->MultiGet(cf_[kExternalIds], external_ids, [&](size_t i, absl::string_view id) {
        v1::CustomerRef& ref = refs.emplace_back();
        ref.set_external_id(external_ids[i]);
        ref.set_customer_id(std::string(id));
        return true;
      });
  if (!s.ok()) return s;
  return refs;
}

absl::StatusOr<v1::Customer> CustomerProfileStore::Get(absl::string_view customer_id) const {
  return store::GetProtoOr<v1::Customer>(*store_, cf_[kCustomers], customer_id,
                                         [&] { return NotFound(customer_id); });
}

absl::StatusOr<v1::Customer> CustomerProfileStore::GetByEmail(
    absl::string_view normalized_email) const {
  CRM_ASSIGN_OR_RETURN(auto id, store_->Get(cf_[kEmails], normalized_email));
  if (!id.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("email: no customer registered with \"", normalized_email, "\""));
  }
  return Get(*id);
}

absl::Status CustomerProfileStore::List(absl::string_view email_prefix,
                                        absl::string_view after_email, int limit,
                                        std::vector<v1::Customer>* out, bool* more) const {
  *more = false;
  CRM_ASSIGN_OR_RETURN(auto begin, store::ResumeAfter(email_prefix, after_email));
  const std::string end = store::PrefixUpperBound(email_prefix);
  std::vector<std::string> ids;
  absl::Status s =
      store_->Scan(cf_[kEmails], begin, end, [&](absl::string_view, absl::string_view id) {
        if (static_cast<int>(ids.size()) == limit) {
          *more = true;
          return false;
        }
        ids.emplace_back(id);
        return true;
      });
  if (!s.ok()) return s;
  for (const auto& id : ids) {
    auto c = Get(id);
    if (c.ok())
      out->push_back(std::move(*c));
    else if (!absl::IsNotFound(c.status()))
      return c.status();
  }
  return absl::OkStatus();
}

absl::Status CustomerProfileStore::UpdateCustomer(
    absl::string_view customer_id, absl::string_view method, absl::string_view request_id,
    uint64_t fingerprint, absl::Time now, google::protobuf::MessageLite* response,
    absl::FunctionRef<absl::Status(v1::Customer&)> change) {
  auto body = [&](Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(v1::Customer c, LockCustomer(txn, customer_id));
    if (absl::Status s = change(c); !s.ok()) return s;
    api::SetTimestamp(now, c.mutable_update_time());
    return txn.PutProto(cf_[kCustomers], customer_id, c);
  };
  if (request_id.empty()) return store_->Transact(Durability::kSynced, body);
  return store::TransactOnce(*store_, Durability::kSynced, cf_[kRequests],
                             RequestKey(customer_id, method, request_id), fingerprint, now,
                             response, body);
}

absl::Status CustomerProfileStore::RecordBehavior(absl::string_view customer_id,
                                                  absl::string_view request_id,
                                                  uint64_t fingerprint,
                                                  const std::vector<v1::BehaviorEvent>& events,
                                                  absl::Time now,
                                                  v1::RecordBehaviorEventsResponse* out) {
  const uint64_t request_hash = sharding::StableHash64(request_id);
  return store::TransactOnce(
      *store_, Durability::kBuffered, cf_[kRequests],
      RequestKey(customer_id, "behavior", request_id), fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        // The customer must exist; a plain read suffices (erasure takes the customer row lock and
        // also deletes these rows, and behaviour for a customer erased a moment later is erased
        // with them).
        CRM_ASSIGN_OR_RETURN(auto exists, txn.Get(cf_[kCustomers], customer_id));
        if (!exists.has_value()) return NotFound(customer_id);
        absl::flat_hash_map<std::string, v1::CategoryAffinity> touched;
        for (size_t i = 0; i < events.size(); ++i) {
          const v1::BehaviorEvent& e = events[i];
          const absl::Time t = api::FromTimestamp(e.occur_time());
          const std::string key =
              Key().Str(customer_id).TimeNewestFirst(t).U64(request_hash + i).Build();
          CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kBehavior], key, e));
          if (e.category().empty()) continue;
          auto it = touched.find(e.category());
          if (it == touched.end()) {
            v1::CategoryAffinity a;
            auto found = txn.GetProto(cf_[kAffinity], Key().Str(customer_id).Str(e.category()), &a,
                                      /*for_update=*/true);
            if (!found.ok()) return found.status();
            a.set_category(e.category());
            it = touched.emplace(e.category(), std::move(a)).first;
          }
          behavior::Accumulate(it->second, behavior::ActionOf(e.type()), e.dwell_seconds(), t);
        }
        for (const auto& [category, a] : touched) {
          CRM_RETURN_IF_ERROR(
              txn.PutProto(cf_[kAffinity], Key().Str(customer_id).Str(category), a));
        }
        // Recommendation learns from browsing too.
        v1::Event event = BehaviorRecorded(customer_id, events, now);
        CRM_RETURN_IF_ERROR(outbox_->Append(txn, event));
        out->set_recorded_count(static_cast<int32_t>(events.size()));
        return absl::OkStatus();
      });
}

absl::Status CustomerProfileStore::ListBehavior(absl::string_view customer_id,
                                                absl::string_view after, int limit,
                                                std::vector<v1::BehaviorEvent>* out,
                                                std::string* last_key, bool* more) const {
  return store::ScanPage(*store_, cf_[kBehavior], CustomerPrefix(customer_id), after, limit, out,
                         last_key, more);
}

absl::StatusOr<std::vector<v1::CategoryAffinity>> CustomerProfileStore::Affinities(
    absl::string_view customer_id) const {
  return store::ProtosUnder<v1::CategoryAffinity>(*store_, cf_[kAffinity],
                                                  CustomerPrefix(customer_id));
}

absl::StatusOr<std::vector<v1::ContactRecord>> CustomerProfileStore::Contacts(
    absl::string_view customer_id, absl::Time since) const {
  std::vector<v1::ContactRecord> out;
  const std::string prefix = CustomerPrefix(customer_id);
  absl::Status s =
      store_->Scan(cf_[kContacts], Key().Str(customer_id).Time(since).bytes(),
                   store::PrefixUpperBound(prefix), [&](absl::string_view, absl::string_view v) {
                     v1::ContactRecord r;
                     if (r.ParseFromArray(v.data(), static_cast<int>(v.size())))
                       out.push_back(std::move(r));
                     return true;
                   });
  if (!s.ok()) return s;
  return out;
}

absl::Status CustomerProfileStore::ScanLastContacts(
    absl::FunctionRef<void(absl::string_view, absl::Time)> visit) const {
  // Keys are (customer, time, n): each customer's contacts are adjacent and oldest first, so the
  // last key seen of a customer is their newest contact.
  std::string current;
  absl::Time last = absl::InfinitePast();
  absl::Status s =
      store_->ScanPrefix(cf_[kContacts], "", [&](absl::string_view key, absl::string_view) {
        store::KeyReader reader(key);
        std::optional<std::string> customer_id = reader.Str();
        std::optional<absl::Time> time = reader.Time();
        if (!customer_id.has_value() || !time.has_value()) return true;
        if (*customer_id != current) {
          if (!current.empty()) visit(current, last);
          current = *std::move(customer_id);
        }
        last = *time;
        return true;
      });
  if (s.ok() && !current.empty()) visit(current, last);
  return s;
}

absl::Status CustomerProfileStore::RequestContact(
    absl::string_view customer_id, absl::string_view request_id, uint64_t fingerprint,
    absl::Time now, absl::Time window_start, const v1::ContactRecord& record,
    absl::FunctionRef<v1::ContactDecision(const v1::Customer&, const std::vector<absl::Time>&)>
        decide,
    v1::ContactDecision* out) {
  return store::TransactOnce(*store_, Durability::kSynced, cf_[kRequests],
                             RequestKey(customer_id, "contact", request_id), fingerprint, now, out,
                             [&](Transaction& txn) -> absl::Status {
                               return ContactIn(txn, customer_id, now, window_start, record,
                                                sharding::StableHash64(request_id), decide, out);
                             });
}

absl::Status CustomerProfileStore::ContactIn(
    Transaction& txn, absl::string_view customer_id, absl::Time now, absl::Time window_start,
    const v1::ContactRecord& record, uint64_t tag,
    absl::FunctionRef<v1::ContactDecision(const v1::Customer&, const std::vector<absl::Time>&)>
        decide,
    v1::ContactDecision* out) {
  // Locking the customer row serialises contact requests of this customer.
  CRM_ASSIGN_OR_RETURN(v1::Customer c, LockCustomer(txn, customer_id));
  std::vector<absl::Time> times;
  absl::Status scanned = txn.Scan(cf_[kContacts], Key().Str(customer_id).Time(window_start).bytes(),
                                  store::PrefixUpperBound(CustomerPrefix(customer_id)),
                                  [&](absl::string_view, absl::string_view v) {
                                    v1::ContactRecord r;
                                    if (r.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                      times.push_back(api::FromTimestamp(r.contact_time()));
                                    }
                                    return true;
                                  });
  if (!scanned.ok()) return scanned;
  *out = decide(c, times);
  if (!out->allowed()) return absl::OkStatus();
  out->set_contacts_in_period(out->contacts_in_period() + 1);
  return txn.PutProto(cf_[kContacts], Key().Str(customer_id).Time(now).U64(tag).Build(), record);
}

absl::Status CustomerProfileStore::ScanCustomers(
    absl::FunctionRef<bool(const v1::Customer&)> visit) const {
  absl::Status parse_error;
  v1::Customer customer;
  auto s =
      store_->ScanPrefix(cf_[kCustomers], "", [&](absl::string_view key, absl::string_view value) {
        if (!customer.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          parse_error = absl::DataLossError(absl::StrCat("customer \"", key, "\" does not parse"));
          return false;
        }
        return visit(customer);
      });
  return s.ok() ? parse_error : s;
}

absl::StatusOr<std::vector<std::optional<v1::Customer>>> CustomerProfileStore::GetMany(
    const std::vector<std::string>& customer_ids) const {
  return store_->MultiGetProtos<v1::Customer>(cf_[kCustomers], customer_ids);
}

absl::Status CustomerProfileStore::Export(absl::string_view customer_id,
                                          v1::CustomerDataExport* out) const {
  CRM_ASSIGN_OR_RETURN(auto c, Get(customer_id));
  *out->mutable_customer() = std::move(c);
  auto collect = [&](rocksdb::ColumnFamilyHandle* cf, auto* repeated) {
    using M = typename std::remove_pointer_t<decltype(repeated)>::value_type;
    return store::ScanPrefixProtos<M>(
        *store_, cf, CustomerPrefix(customer_id),
        [&](absl::string_view, M&& m) { *repeated->Add() = std::move(m); });
  };
  CRM_RETURN_IF_ERROR(collect(cf_[kBehavior], out->mutable_behavior_events()));
  CRM_RETURN_IF_ERROR(collect(cf_[kAffinity], out->mutable_category_affinities()));
  return collect(cf_[kContacts], out->mutable_contacts());
}

absl::Status CustomerProfileStore::ApplyToHistory(
    Transaction& txn, const v1::Event& event,
    absl::FunctionRef<bool(internal::CustomerHistory&)> fold) {
  // Locking the customer row orders this against a concurrent erasure: either the erasure sees
  // nothing new, or this sees the customer gone.
  CRM_ASSIGN_OR_RETURN(auto customer, txn.GetForUpdate(cf_[kCustomers], event.customer_id()));
  if (!customer.has_value()) return absl::OkStatus();
  internal::CustomerHistory history;
  auto found = txn.GetProto(cf_[kHistories], event.customer_id(), &history, /*for_update=*/true);
  if (!found.ok()) return found.status();
  if (!fold(history)) return absl::OkStatus();
  return txn.PutProto(cf_[kHistories], event.customer_id(), history);
}

absl::StatusOr<internal::CustomerHistory> CustomerProfileStore::History(
    absl::string_view customer_id) const {
  CRM_ASSIGN_OR_RETURN(auto exists, store_->Get(cf_[kCustomers], customer_id));
  if (!exists.has_value()) return NotFound(customer_id);
  internal::CustomerHistory history;
  auto found = store_->GetProto(cf_[kHistories], customer_id, &history);
  if (!found.ok()) return found.status();
  return history;
}

absl::Status CustomerProfileStore::ScanHistories(
    absl::FunctionRef<bool(absl::string_view, const internal::CustomerHistory&)> visit) const {
  absl::Status parse_error;
  internal::CustomerHistory history;
  auto s =
      store_->ScanPrefix(cf_[kHistories], "", [&](absl::string_view key, absl::string_view value) {
        if (!history.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          parse_error =
              absl::DataLossError(absl::StrCat("history of \"", key, "\" does not parse"));
          return false;
        }
        return visit(key, history);
      });
  return s.ok() ? parse_error : s;
}

absl::Status CustomerProfileStore::RecordRetentionAction(absl::string_view customer_id,
                                                         absl::string_view request_id,
                                                         uint64_t fingerprint, absl::Time now,
                                                         v1::RetentionAction action,
                                                         v1::RetentionAction* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests],
      RequestKey(customer_id, "retention", request_id), fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(auto customer, txn.GetForUpdate(cf_[kCustomers], customer_id));
        if (!customer.has_value()) return NotFound(customer_id);
        const uint64_t id = sharding::StableHash64(absl::StrCat(customer_id, "/", request_id));
        action.set_action_id(absl::StrCat("ra-", absl::Hex(id, absl::kZeroPad16)));
        const std::string key =
            Key().Str(customer_id).TimeNewestFirst(now).Str(action.action_id()).Build();
        *out = action;
        return txn.PutProto(cf_[kRetention], key, action);
      });
}

absl::StatusOr<std::vector<v1::RetentionAction>> CustomerProfileStore::RetentionActions(
    absl::string_view customer_id) const {
  return store::ProtosUnder<v1::RetentionAction>(*store_, cf_[kRetention],
                                                 CustomerPrefix(customer_id));
}

absl::Status CustomerProfileStore::ScanRetentionActions(
    absl::FunctionRef<bool(const v1::RetentionAction&)> visit) const {
  return store::ScanPrefixProtos<v1::RetentionAction>(
      *store_, cf_[kRetention], "",
      [&](absl::string_view, v1::RetentionAction&& action) { return visit(action); });
}

absl::Status CustomerProfileStore::Erase(absl::string_view customer_id,
                                         absl::string_view request_id, uint64_t fingerprint,
                                         absl::Time now, v1::EraseCustomerResponse* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], RequestKey(customer_id, "erase", request_id),
      fingerprint, now, out, [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(v1::Customer c, LockCustomer(txn, customer_id));
        CRM_RETURN_IF_ERROR(txn.Delete(cf_[kCustomers], customer_id));
        CRM_RETURN_IF_ERROR(txn.Delete(cf_[kEmails], c.email()));
        if (!c.external_id().empty()) {
          CRM_RETURN_IF_ERROR(txn.Delete(cf_[kExternalIds], c.external_id()));
        }
        const std::string prefix = CustomerPrefix(customer_id);
        CRM_RETURN_IF_ERROR(txn.Delete(cf_[kHistories], customer_id));
        for (auto* cf :
             {cf_[kBehavior], cf_[kAffinity], cf_[kContacts], cf_[kRequests], cf_[kRetention]}) {
          CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf, prefix));
        }
        CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kRequests], RegisterRequestPrefix(c.email())));
        CRM_RETURN_IF_ERROR(outbox_->DropPendingEventsOf(txn, customer_id));
        for (const auto& erase : also_erase_) CRM_RETURN_IF_ERROR(erase(txn, customer_id));
        google::protobuf::Timestamp erase_time;
        api::SetTimestamp(now, &erase_time);
        CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kErased], customer_id, erase_time));
        if (!c.external_id().empty()) {
          CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kErasedExternalIds], c.external_id(), erase_time));
        }
        v1::Event event;
        event.set_customer_id(std::string(customer_id));
        *event.mutable_occur_time() = erase_time;
        *event.mutable_customer_erased()->mutable_erase_time() = erase_time;
        CRM_RETURN_IF_ERROR(outbox_->Append(txn, event));
        out->set_customer_id(std::string(customer_id));
        *out->mutable_erase_time() = erase_time;
        return absl::OkStatus();
      });
}

}  // namespace crm::customer_profile
