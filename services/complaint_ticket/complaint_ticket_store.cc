#include "services/complaint_ticket/complaint_ticket_store.h"

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/events/store_families.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "services/complaint_ticket/routing.h"
#include "services/complaint_ticket/sla.h"

namespace crm::complaint_ticket {
namespace {

using store::Durability;
using store::Key;
using store::Transaction;

// The column families, by what they hold (the header's table), and their names on disk.
enum Family {
  kTickets,
  kDeadlines,
  kDeadlineKeys,
  kUnassigned,
  kAwaiting,
  kAgents,
  kLastAgent,
  kRequests
};
constexpr store::FamilyName<Family> kFamilies[] = {
    {kTickets, "tickets"},       {kDeadlines, "deadlines"}, {kDeadlineKeys, "deadline_keys"},
    {kUnassigned, "unassigned"}, {kAwaiting, "awaiting"},   {kAgents, "agents"},
    {kLastAgent, "last_agent"},  {kRequests, "requests"}};
static_assert(store::InEnumOrder(kFamilies));

std::string TicketKey(absl::string_view cid, absl::string_view tid) {
  return Key().Str(cid).Str(tid).Build();
}

// An open ticket counts against its agent's capacity.
bool CountsAgainstAgent(const v1::Ticket& t) {
  return t.status() == v1::TICKET_STATUS_OPEN || t.status() == v1::TICKET_STATUS_IN_PROGRESS;
}

// Index rows keyed by when each deadline becomes at risk; the value is the due time.
std::vector<std::pair<std::string, std::string>> DeadlineRows(const v1::Ticket& t) {
  std::vector<std::pair<std::string, std::string>> rows;
  if (t.ticket_id().empty()) return rows;
  for (const Deadline& d : OpenDeadlines(t)) {
    rows.emplace_back(Key()
                          .Time(RiskFrom(t, d))
                          .Str(t.customer_id())
                          .Str(t.ticket_id())
                          .U64(static_cast<uint64_t>(d.kind))
                          .Str(d.callback_id)
                          .Build(),
                      Key().Time(d.due).Build());
  }
  return rows;
}

// The deadline index keys a ticket has now, as its deadline_keys row holds them.
std::string KeysRow(const std::vector<std::pair<std::string, std::string>>& rows) {
  Key list;
  for (const auto& [k, v] : rows) list.Str(k);
  return list.Build();
}

std::vector<std::string> KeysIn(absl::string_view row) {
  std::vector<std::string> keys;
  store::KeyReader r(row);
  while (!r.done()) {
    auto k = r.Str();
    if (!k) break;
    keys.push_back(std::move(*k));
  }
  return keys;
}

// Whether the ticket still has the deadline an index row names (a row is stale when not).
bool HasOpenDeadline(const v1::Ticket& t, v1::SlaKind kind, absl::Time due,
                     absl::string_view callback_id) {
  for (const Deadline& d : OpenDeadlines(t)) {
    if (d.kind == kind && d.due == due && d.callback_id == callback_id) return true;
  }
  return false;
}

std::optional<std::string> UnassignedKey(const v1::Ticket& t) {
  if (t.ticket_id().empty() || !CountsAgainstAgent(t) || !t.assigned_agent_id().empty())
    return std::nullopt;
  return Key()
      .Time(api::FromTimestamp(t.create_time()))
      .Str(t.customer_id())
      .Str(t.ticket_id())
      .Build();
}

// The (customer id, ticket id) pairs an index lists; `timed` when its keys start with a time.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TicketsIn(
    store::Store& store, rocksdb::ColumnFamilyHandle* index, bool timed) {
  std::vector<std::pair<std::string, std::string>> out;
  CRM_RETURN_IF_ERROR(store.Scan(index, "", "", [&](absl::string_view k, absl::string_view) {
    store::KeyReader r(k);
    if (timed) (void)r.Time();
    auto cid = r.Str();
    auto tid = r.Str();
    if (cid && tid) out.emplace_back(*cid, *tid);
    return true;
  }));
  return out;
}

// Reads an agent under its row lock; NOT_FOUND naming agent_id when there is none.
absl::StatusOr<v1::Agent> LockAgentRow(Transaction& txn, rocksdb::ColumnFamilyHandle* agents,
                                       absl::string_view agent_id) {
  v1::Agent a;
  CRM_ASSIGN_OR_RETURN(auto found, txn.GetProto(agents, agent_id, &a, /*for_update=*/true));
  if (!found) return absl::NotFoundError(absl::StrCat("agent_id: no agent \"", agent_id, "\""));
  return a;
}

}  // namespace

std::vector<std::string> ComplaintTicketStore::ColumnFamilies() {
  return events::WithConsumerAndOutboxFamilies(store::FamilyNames(kFamilies));
}

ComplaintTicketStore::ComplaintTicketStore(store::Store* store, events::Outbox* outbox)
    : store_(store), outbox_(outbox), cf_(*store, kFamilies) {}

absl::StatusOr<std::vector<v1::Agent>> TicketSession::Agents() { return store_->Agents(); }

absl::StatusOr<v1::Agent> TicketSession::LockAgent(const std::string& agent_id) {
  return LockAgentRow(txn_, store_->cf_[kAgents], agent_id);
}

absl::StatusOr<std::string> TicketSession::LastAgent() {
  CRM_ASSIGN_OR_RETURN(auto v, txn_.Get(store_->cf_[kLastAgent], ticket_.customer_id()));
  return v.value_or("");
}

absl::Status ComplaintTicketStore::AdjustLoad(Transaction& txn, const std::string& agent_id,
                                              int delta) {
  if (agent_id.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(v1::Agent a, LockAgentRow(txn, cf_[kAgents], agent_id));
  if (delta > 0 && a.open_tickets() + delta > a.capacity()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent_id: agent \"", agent_id, "\" is at capacity"));
  }
  a.set_open_tickets(std::max(0, a.open_tickets() + delta));
  return txn.PutProto(cf_[kAgents], agent_id, a);
}

absl::Status ComplaintTicketStore::Save(TicketSession& s, absl::Time now) {
  Transaction& txn = s.txn_;
  v1::Ticket& t = s.ticket_;
  api::SetTimestamp(now, t.mutable_update_time());
  // Agents' open-ticket counts follow the assignment and the status.
  const std::string counted_before =
      CountsAgainstAgent(s.before_) ? s.before_.assigned_agent_id() : "";
  const std::string counted_after = CountsAgainstAgent(t) ? t.assigned_agent_id() : "";
  if (counted_before != counted_after) {
    if (auto a = AdjustLoad(txn, counted_before, -1); !a.ok() && !absl::IsNotFound(a)) return a;
    CRM_RETURN_IF_ERROR(AdjustLoad(txn, counted_after, +1));
  }
  const std::string ticket_key = TicketKey(t.customer_id(), t.ticket_id());
  // The rows written last time, as recorded: recomputing them from the rules in force would miss
  // them after a restart with other rules. A ticket saved before the record existed has its rows
  // recomputed (any the recomputation misses, the sweep drops when it meets them).
  std::vector<std::string> old_keys;
  CRM_ASSIGN_OR_RETURN(auto recorded, txn.Get(cf_[kDeadlineKeys], ticket_key));
  if (recorded.has_value()) {
    old_keys = KeysIn(*recorded);
  } else {
    for (auto& [k, v] : DeadlineRows(s.before_)) old_keys.push_back(std::move(k));
  }
  for (const std::string& k : old_keys) CRM_RETURN_IF_ERROR(txn.Delete(cf_[kDeadlines], k));
  const auto rows = DeadlineRows(t);
  for (const auto& [k, v] : rows) CRM_RETURN_IF_ERROR(txn.Put(cf_[kDeadlines], k, v));
  if (rows.empty()) {
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kDeadlineKeys], ticket_key));
  } else {
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kDeadlineKeys], ticket_key, KeysRow(rows)));
  }
  if (auto k = UnassignedKey(s.before_)) {
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kUnassigned], *k));
  }
  if (auto k = UnassignedKey(t)) {
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kUnassigned], *k, ""));
  }
  if (t.status() == v1::TICKET_STATUS_AWAITING_COMPENSATION) {
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kAwaiting], ticket_key, ""));
  } else if (s.before_.status() == v1::TICKET_STATUS_AWAITING_COMPENSATION) {
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kAwaiting], ticket_key));
  }
  if (!s.remember_agent_.empty()) {
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kLastAgent], t.customer_id(), s.remember_agent_));
  }
  for (v1::Event& e : s.events_) {
    e.set_customer_id(t.customer_id());
    if (!e.has_occur_time()) api::SetTimestamp(now, e.mutable_occur_time());
    CRM_RETURN_IF_ERROR(outbox_->Append(txn, e));
  }
  return txn.PutProto(cf_[kTickets], ticket_key, t);
}

absl::StatusOr<bool> ComplaintTicketStore::OpenTicketIn(
    Transaction& txn, absl::string_view customer_id, absl::string_view request_key, absl::Time now,
    absl::FunctionRef<absl::Status(TicketSession&)> build) {
  const std::string key = Key().Str(customer_id).Str("auto").Str(request_key).Build();
  CRM_ASSIGN_OR_RETURN(auto seen, txn.GetForUpdate(cf_[kRequests], key));
  if (seen.has_value()) return false;
  TicketSession s(this, txn);
  s.is_new_ = true;
  s.ticket_.set_customer_id(std::string(customer_id));
  CRM_RETURN_IF_ERROR(build(s));
  CRM_RETURN_IF_ERROR(Save(s, now));
  CRM_RETURN_IF_ERROR(txn.Put(cf_[kRequests], key, s.ticket_.ticket_id()));
  return true;
}

absl::Status ComplaintTicketStore::OpenTicket(absl::string_view customer_id,
                                              absl::string_view request_id, uint64_t fingerprint,
                                              absl::Time now,
                                              absl::FunctionRef<absl::Status(TicketSession&)> build,
                                              v1::Ticket* out) {
  return store::TransactOnce(*store_, Durability::kSynced, cf_[kRequests],
                             Key().Str(customer_id).Str("OpenTicket").Str(request_id).bytes(),
                             fingerprint, now, out, [&](Transaction& txn) -> absl::Status {
                               TicketSession s(this, txn);
                               s.is_new_ = true;
                               s.ticket_.set_customer_id(std::string(customer_id));
                               CRM_RETURN_IF_ERROR(build(s));
                               CRM_RETURN_IF_ERROR(Save(s, now));
                               *out = s.ticket_;
                               return absl::OkStatus();
                             });
}

absl::Status ComplaintTicketStore::UpdateTicketIn(
    Transaction& txn, absl::string_view customer_id, absl::string_view ticket_id, absl::Time now,
    absl::FunctionRef<absl::Status(TicketSession&)> change) {
  TicketSession s(this, txn);
  auto found = txn.GetProto(cf_[kTickets], TicketKey(customer_id, ticket_id), &s.ticket_,
                            /*for_update=*/true);
  if (!found.ok()) return found.status();
  if (!*found)
    return absl::NotFoundError(
        absl::StrCat("ticket_id: no ticket \"", ticket_id, "\" for this customer"));
  s.before_ = s.ticket_;
  CRM_RETURN_IF_ERROR(change(s));
  if (s.unchanged_) return absl::OkStatus();
  return Save(s, now);
}

absl::Status ComplaintTicketStore::UpdateTicket(
    absl::string_view customer_id, absl::string_view ticket_id, absl::string_view request_id,
    uint64_t fingerprint, absl::Time now, absl::FunctionRef<absl::Status(TicketSession&)> change,
    v1::Ticket* out) {
  auto body = [&](Transaction& txn) -> absl::Status {
    return UpdateTicketIn(txn, customer_id, ticket_id, now, [&](TicketSession& s) -> absl::Status {
      CRM_RETURN_IF_ERROR(change(s));
      *out = s.ticket();
      return absl::OkStatus();
    });
  };
  if (request_id.empty()) return store_->Transact(Durability::kSynced, body);
  return store::TransactOnce(*store_, Durability::kSynced, cf_[kRequests],
                             Key().Str(customer_id).Str("ticket").Str(request_id).bytes(),
                             fingerprint, now, out, body);
}

absl::StatusOr<v1::Ticket> ComplaintTicketStore::Get(absl::string_view customer_id,
                                                     absl::string_view ticket_id) const {
  return store::GetProtoOr<v1::Ticket>(
      *store_, cf_[kTickets], TicketKey(customer_id, ticket_id), [&] {
        return absl::NotFoundError(
            absl::StrCat("ticket_id: no ticket \"", ticket_id, "\" for this customer"));
      });
}

absl::Status ComplaintTicketStore::List(absl::string_view customer_id, absl::string_view after,
                                        int limit, std::vector<v1::Ticket>* out,
                                        std::string* last_key, bool* more) const {
  return store::ScanPage(*store_, cf_[kTickets], Key().Str(customer_id).Build(), after, limit, out,
                         last_key, more);
}

absl::StatusOr<std::vector<v1::Ticket>> ComplaintTicketStore::ListAll(
    absl::string_view customer_id) const {
  return store::ProtosUnder<v1::Ticket>(*store_, cf_[kTickets], Key().Str(customer_id).Build(),
                                        100000);
}

absl::Status ComplaintTicketStore::Due(absl::Time until, absl::string_view after, int limit,
                                       std::vector<DueEntry>* out, bool* more) const {
  *more = false;
  const std::string begin =
      after.empty() ? std::string() : absl::StrCat(after, std::string(1, '\0'));
  return store_->Scan(
      cf_[kDeadlines], begin, Key().Time(until + absl::Microseconds(1)).bytes(),
      [&](absl::string_view k, absl::string_view v) {
        if (static_cast<int>(out->size()) == limit) {
          *more = true;
          return false;
        }
        store::KeyReader r(k);
        auto risk_from = r.Time();
        auto cid = r.Str();
        auto tid = r.Str();
        auto kind = r.U64();
        auto callback_id = r.Str();
        auto due = store::KeyReader(v).Time();
        if (risk_from && cid && tid && kind && callback_id && due) {
          out->push_back({*risk_from, *due, *cid, *tid, static_cast<v1::SlaKind>(*kind),
                          *callback_id, std::string(k)});
        }
        return true;
      });
}

bool ComplaintTicketStore::StillOpen(const DueEntry& d, const v1::Ticket& ticket) {
  return HasOpenDeadline(ticket, d.kind, d.due, d.callback_id);
}

absl::StatusOr<bool> ComplaintTicketStore::DropIfStale(const DueEntry& d) {
  bool dropped = false;
  CRM_RETURN_IF_ERROR(store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    dropped = false;
    v1::Ticket t;
    CRM_ASSIGN_OR_RETURN(auto found,
                         txn.GetProto(cf_[kTickets], TicketKey(d.customer_id, d.ticket_id), &t,
                                      /*for_update=*/true));
    if (found && StillOpen(d, t)) return absl::OkStatus();
    dropped = true;
    return txn.Delete(cf_[kDeadlines], d.key);
  }));
  return dropped;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ComplaintTicketStore::Unassigned()
    const {
  return TicketsIn(*store_, cf_[kUnassigned], /*timed=*/true);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
ComplaintTicketStore::AwaitingCompensation() const {
  return TicketsIn(*store_, cf_[kAwaiting], /*timed=*/false);
}

absl::StatusOr<std::map<v1::Priority, int64_t>> ComplaintTicketStore::OpenByPriority() const {
  std::map<v1::Priority, int64_t> out;
  absl::Status s = store_->Scan(cf_[kTickets], "", "", [&](absl::string_view, absl::string_view v) {
    v1::Ticket t;
    if (t.ParseFromArray(v.data(), static_cast<int>(v.size())) && CountsAgainstAgent(t))
      ++out[t.priority()];
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<v1::Agent>> ComplaintTicketStore::Agents() const {
  std::vector<v1::Agent> out;
  absl::Status s = store_->Scan(cf_[kAgents], "", "", [&](absl::string_view, absl::string_view v) {
    v1::Agent a;
    if (a.ParseFromArray(v.data(), static_cast<int>(v.size()))) out.push_back(std::move(a));
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status ComplaintTicketStore::PutAgent(const v1::Agent& agent, v1::Agent* out) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    v1::Agent existing;
    CRM_ASSIGN_OR_RETURN(
        auto found, txn.GetProto(cf_[kAgents], agent.agent_id(), &existing, /*for_update=*/true));
    *out = agent;
    out->set_open_tickets(found ? existing.open_tickets() : 0);
    return txn.PutProto(cf_[kAgents], agent.agent_id(), *out);
  });
}

absl::Status ComplaintTicketStore::SetAgentAvailability(absl::string_view agent_id, bool available,
                                                        v1::Agent* out) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(*out, LockAgentRow(txn, cf_[kAgents], agent_id));
    out->set_available(available);
    return txn.PutProto(cf_[kAgents], agent_id, *out);
  });
}

absl::Status ComplaintTicketStore::Anonymise(Transaction& txn, absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).Build();
  std::vector<std::pair<std::string, v1::Ticket>> tickets;
  absl::Status s = txn.Scan(cf_[kTickets], prefix, store::PrefixUpperBound(prefix),
                            [&](absl::string_view k, absl::string_view v) {
                              v1::Ticket t;
                              if (t.ParseFromArray(v.data(), static_cast<int>(v.size())))
                                tickets.emplace_back(std::string(k), std::move(t));
                              return true;
                            });
  if (!s.ok()) return s;
  for (auto& [k, t] : tickets) {
    t.clear_subject();
    t.set_text("[erased]");
    for (auto& m : *t.mutable_messages()) m.set_text("[erased]");
    for (auto& c : *t.mutable_callbacks()) c.clear_note();
    if (t.has_satisfaction()) t.mutable_satisfaction()->clear_comment();
    for (auto& sig : *t.mutable_severity()->mutable_signals()) sig.clear_evidence();
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kTickets], k, t));
  }
  CRM_RETURN_IF_ERROR(txn.Delete(cf_[kLastAgent], customer_id));
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

}  // namespace crm::complaint_ticket
