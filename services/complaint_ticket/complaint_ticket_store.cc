#include "services/complaint_ticket/complaint_ticket_store.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/events/store_families.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "services/complaint_ticket/canned_replies.h"
#include "services/complaint_ticket/routing.h"
#include "services/complaint_ticket/sla.h"
#include "services/complaint_ticket/ticket_index.h"
#include "services/complaint_ticket/ticket_search.h"

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
  kRequests,
  kIndex,
  kTerms,
  kCanned
};
constexpr store::FamilyName<Family> kFamilies[] = {
    {kTickets, "tickets"},       {kDeadlines, "deadlines"},  {kDeadlineKeys, "deadline_keys"},
    {kUnassigned, "unassigned"}, {kAwaiting, "awaiting"},    {kAgents, "agents"},
    {kLastAgent, "last_agent"},  {kRequests, "requests"},    {kIndex, "ticket_index"},
    {kTerms, "ticket_terms"},    {kCanned, "canned_replies"}};
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

std::string OrderKeyOf(const v1::Ticket& t) {
  return OrderKey(api::FromTimestamp(t.create_time()), t.customer_id(), t.ticket_id());
}

std::string TermPrefix(absl::string_view term) { return Key().Str(term).Build(); }

std::string TermValue(const TermCount& c) {
  return Key().U64(c.subject).U64(c.messages).U64(c.internal).Build();
}

std::optional<TermCount> ParseTermValue(absl::string_view v) {
  store::KeyReader r(v);
  auto subject = r.U64(), messages = r.U64(), internal = r.U64();
  if (!subject || !messages || !internal) return std::nullopt;
  return TermCount{static_cast<uint32_t>(*subject), static_cast<uint32_t>(*messages),
                   static_cast<uint32_t>(*internal)};
}

// The row marking that every ticket has its listing and term rows (sorts apart from dimensions).
const std::string& IndexedMarker() {
  static const std::string* const kMarker = new std::string(Key().Str("~indexed").Build());
  return *kMarker;
}

// Where a listing under `prefix` starts: after the page's resume key and at created_after.
std::string ScanBegin(absl::string_view prefix, absl::string_view after,
                      const v1::TicketFilter& filter) {
  std::string begin(prefix);
  if (!after.empty()) {
    begin = IndexKey(prefix, after);
    begin.push_back('\0');
  }
  if (filter.has_created_after()) {
    std::string from =
        IndexKey(prefix, Key().Time(api::FromTimestamp(filter.created_after())).bytes());
    begin = std::max(begin, from);
  }
  return begin;
}

std::string ScanEnd(absl::string_view prefix, const v1::TicketFilter& filter) {
  if (filter.has_created_before())
    return IndexKey(prefix, Key().Time(api::FromTimestamp(filter.created_before())).bytes());
  return store::PrefixUpperBound(prefix);
}

absl::Status ForeignResume() {
  return absl::InvalidArgumentError("page_token: does not belong to this listing");
}

// The key ranked results sort and resume by: best score first, then newest first.
std::string RankKey(uint64_t score, const OrderPosition& p) {
  return Key()
      .Descending(score)
      .TimeNewestFirst(p.created)
      .Str(p.customer_id)
      .Str(p.ticket_id)
      .Build();
}

// Checks a ranked listing's resume key: well formed and, for one customer's, theirs.
absl::Status CheckRankResume(absl::string_view after, absl::string_view customer_id) {
  if (after.empty()) return absl::OkStatus();
  store::KeyReader r(after);
  auto score = r.Descending();
  auto created = r.TimeNewestFirst();
  auto cid = r.Str();
  auto tid = r.Str();
  if (!score || !created || !cid || !tid || !r.done()) return ForeignResume();
  if (!customer_id.empty() && *cid != customer_id) return ForeignResume();
  return absl::OkStatus();
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
  return PutAgentRow(txn, a);
}

absl::Status ComplaintTicketStore::PutAgentRow(Transaction& txn, const v1::Agent& a) {
  uint64_t order = 0;
  {
    absl::MutexLock lock(&agents_mu_);
    order = ++writes_;
  }
  txn.OnFinish([this, a, order](bool committed) {
    if (!committed) return;
    absl::MutexLock lock(&agents_mu_);
    ++commits_;
    if (!agents_.has_value()) return;
    KnownAgent& known = (*agents_)[a.agent_id()];
    if (order > known.order) known = {a, order};
  });
  return txn.PutProto(cf_[kAgents], a.agent_id(), a);
}

absl::StatusOr<std::vector<v1::Agent>> ComplaintTicketStore::Agents() const {
  std::vector<v1::Agent> out;
  uint64_t commits = 0;
  {
    absl::MutexLock lock(&agents_mu_);
    if (agents_.has_value()) {
      out.reserve(agents_->size());
      for (const auto& [id, known] : *agents_) out.push_back(known.agent);
      return out;
    }
    commits = commits_;
  }
  CRM_ASSIGN_OR_RETURN(out, StoredAgents());
  absl::MutexLock lock(&agents_mu_);
  if (!agents_.has_value() && commits == commits_) {
    agents_.emplace();
    for (const v1::Agent& a : out) (*agents_)[a.agent_id()] = {a, 0};
  }
  return out;
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
  // Messages are only ever appended (erasure rewrites them through Anonymise).
  const bool texts_changed =
      s.before_.subject() != t.subject() || s.before_.messages_size() != t.messages_size();
  CRM_RETURN_IF_ERROR(WriteIndexRows(txn, s.before_, t, texts_changed));
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

absl::Status ComplaintTicketStore::MergeTickets(
    absl::string_view customer_id, absl::string_view source_id, absl::string_view target_id,
    absl::string_view request_id, uint64_t fingerprint, absl::Time now,
    absl::FunctionRef<absl::Status(TicketSession&, TicketSession&)> change, v1::Ticket* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests],
      Key().Str(customer_id).Str("ticket").Str(request_id).bytes(), fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        TicketSession source(this, txn), target(this, txn);
        // Locked in id order, so two merges of the same pair wait for each other, never deadlock.
        std::vector<std::pair<std::string, TicketSession*>> order = {
            {std::string(source_id), &source}, {std::string(target_id), &target}};
        std::sort(order.begin(), order.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& [id, s] : order) {
          CRM_ASSIGN_OR_RETURN(const bool found,
                               txn.GetProto(cf_[kTickets], TicketKey(customer_id, id), &s->ticket_,
                                            /*for_update=*/true));
          if (!found) {
            return absl::NotFoundError(
                absl::StrCat(s == &source ? "source_ticket_id" : "target_ticket_id",
                             ": no ticket \"", id, "\" for this customer"));
          }
          s->before_ = s->ticket_;
        }
        CRM_RETURN_IF_ERROR(change(source, target));
        CRM_RETURN_IF_ERROR(Save(source, now));
        CRM_RETURN_IF_ERROR(Save(target, now));
        *out = target.ticket_;
        return absl::OkStatus();
      });
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

absl::StatusOr<std::vector<v1::Agent>> ComplaintTicketStore::StoredAgents() const {
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
    return PutAgentRow(txn, *out);
  });
}

absl::Status ComplaintTicketStore::SetAgentAvailability(absl::string_view agent_id, bool available,
                                                        v1::Agent* out) {
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(*out, LockAgentRow(txn, cf_[kAgents], agent_id));
    out->set_available(available);
    return PutAgentRow(txn, *out);
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
    const v1::Ticket before = t;
    t.clear_subject();
    t.set_text("[erased]");
    for (auto& m : *t.mutable_messages()) m.set_text("[erased]");
    for (auto& c : *t.mutable_callbacks()) c.clear_note();
    if (t.has_satisfaction()) t.mutable_satisfaction()->clear_comment();
    for (auto& sig : *t.mutable_severity()->mutable_signals()) sig.clear_evidence();
    // Nothing the customer wrote stays findable.
    CRM_RETURN_IF_ERROR(WriteIndexRows(txn, before, t, /*texts_changed=*/true));
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kTickets], k, t));
  }
  CRM_RETURN_IF_ERROR(txn.Delete(cf_[kLastAgent], customer_id));
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

absl::Status ComplaintTicketStore::WriteIndexRows(Transaction& txn, const v1::Ticket& before,
                                                  const v1::Ticket& after, bool texts_changed) {
  const std::string order_key = OrderKeyOf(after);
  const std::vector<std::string> prefixes = IndexPrefixesOf(after);
  const std::set<std::string> kept(prefixes.begin(), prefixes.end());
  const std::string old_key = before.ticket_id().empty() ? order_key : OrderKeyOf(before);
  for (const std::string& p : IndexPrefixesOf(before)) {
    if (!kept.contains(p)) CRM_RETURN_IF_ERROR(txn.Delete(cf_[kIndex], IndexKey(p, old_key)));
  }
  const std::string summary = EncodeSummary(SummaryOf(after));
  for (const std::string& p : prefixes)
    CRM_RETURN_IF_ERROR(txn.Put(cf_[kIndex], IndexKey(p, order_key), summary));
  if (!texts_changed) return absl::OkStatus();
  const std::map<std::string, TermCount> old_terms =
      before.ticket_id().empty() ? std::map<std::string, TermCount>() : TicketTerms(before);
  const std::map<std::string, TermCount> new_terms = TicketTerms(after);
  for (const auto& [term, count] : old_terms) {
    if (!new_terms.contains(term))
      CRM_RETURN_IF_ERROR(txn.Delete(cf_[kTerms], IndexKey(TermPrefix(term), old_key)));
  }
  for (const auto& [term, count] : new_terms) {
    auto old = old_terms.find(term);
    if (old != old_terms.end() && old->second == count) continue;
    CRM_RETURN_IF_ERROR(
        txn.Put(cf_[kTerms], IndexKey(TermPrefix(term), order_key), TermValue(count)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::optional<std::string>>> ComplaintTicketStore::RowsAt(
    absl::string_view prefix, rocksdb::ColumnFamilyHandle* cf,
    const std::vector<std::string>& order_keys) const {
  std::vector<std::string> keys;
  keys.reserve(order_keys.size());
  for (const std::string& k : order_keys) keys.push_back(IndexKey(prefix, k));
  std::vector<std::optional<std::string>> rows(keys.size());
  CRM_RETURN_IF_ERROR(store_->MultiGet(cf, keys, [&](size_t i, absl::string_view v) {
    rows[i] = std::string(v);
    return true;
  }));
  return rows;
}

absl::Status ComplaintTicketStore::FetchMatching(const std::vector<std::string>& order_keys,
                                                 const v1::TicketFilter& filter, absl::Time now,
                                                 std::vector<v1::Ticket>* out) const {
  std::vector<std::string> keys;
  for (const std::string& k : order_keys) {
    auto p = ParseOrderKey(k);
    if (p) keys.push_back(TicketKey(p->customer_id, p->ticket_id));
  }
  CRM_ASSIGN_OR_RETURN(auto tickets, store_->MultiGetProtos<v1::Ticket>(cf_[kTickets], keys));
  for (auto& t : tickets) {
    if (t && Matches(filter, SummaryOf(*t), now)) out->push_back(std::move(*t));
  }
  return absl::OkStatus();
}

absl::Status ComplaintTicketStore::FindTickets(const std::vector<std::string>& prefixes,
                                               const v1::TicketFilter& filter,
                                               absl::string_view customer_id, absl::Time now,
                                               absl::string_view after, int limit,
                                               std::vector<v1::Ticket>* out, std::string* last_key,
                                               bool* more) const {
  *more = false;
  if (!after.empty()) {
    auto resume = ParseOrderKey(after);
    if (!resume || (!customer_id.empty() && resume->customer_id != customer_id))
      return ForeignResume();
  }
  // Each prefix's first limit + 1 matches: the page's are among them.
  std::vector<std::string> found;
  for (const std::string& prefix : prefixes) {
    int taken = 0;
    absl::Status bad_row;
    CRM_RETURN_IF_ERROR(
        store_->Scan(cf_[kIndex], ScanBegin(prefix, after, filter), ScanEnd(prefix, filter),
                     [&](absl::string_view k, absl::string_view v) {
                       auto summary = DecodeSummary(v);
                       if (!summary) {
                         bad_row = absl::DataLossError("a ticket index row does not parse");
                         return false;
                       }
                       if (!Matches(filter, *summary, now)) return true;
                       found.emplace_back(k.substr(prefix.size()));
                       return ++taken <= limit;
                     }));
    CRM_RETURN_IF_ERROR(bad_row);
  }
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  if (static_cast<int>(found.size()) > limit) {
    *more = true;
    found.resize(limit);
  }
  if (!found.empty()) *last_key = found.back();
  return FetchMatching(found, filter, now, out);
}

void ComplaintTicketStore::Scored::KeepWhere(const std::function<uint64_t(size_t)>& keep) {
  size_t kept = 0;
  for (size_t c = 0; c < candidates.size(); ++c) {
    const uint64_t score = keep(c);
    if (score == 0) continue;
    if (kept != c) candidates[kept] = std::move(candidates[c]);
    scores[kept++] = score;
  }
  candidates.resize(kept);
  scores.resize(kept);
}

absl::Status ComplaintTicketStore::CustomerCandidates(absl::string_view customer_id,
                                                      const v1::TicketFilter& filter,
                                                      absl::Time now, Scored* out) const {
  const std::string prefix = CustomerPrefix(customer_id);
  return store_->Scan(cf_[kIndex], ScanBegin(prefix, "", filter), ScanEnd(prefix, filter),
                      [&](absl::string_view k, absl::string_view v) {
                        auto summary = DecodeSummary(v);
                        if (summary && Matches(filter, *summary, now)) {
                          out->candidates.emplace_back(k.substr(prefix.size()));
                          out->scores.push_back(0);
                        }
                        return true;
                      });
}

absl::StatusOr<size_t> ComplaintTicketStore::RarestTermCandidates(
    const std::vector<std::string>& terms, bool staff, const v1::TicketFilter& filter,
    Scored* out) const {
  // The rarest term leads (counted up to a bound: past it, any is as good).
  constexpr int kCountBound = 10000;
  int fewest = kCountBound + 1;
  size_t first_term = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    int n = 0;
    CRM_RETURN_IF_ERROR(store_->ScanPrefix(
        cf_[kTerms], TermPrefix(terms[i]),
        [&](absl::string_view, absl::string_view) { return ++n <= kCountBound; }));
    if (n < fewest) {
      fewest = n;
      first_term = i;
    }
  }
  const std::string prefix = TermPrefix(terms[first_term]);
  CRM_RETURN_IF_ERROR(store_->Scan(cf_[kTerms], ScanBegin(prefix, "", filter),
                                   ScanEnd(prefix, filter),
                                   [&](absl::string_view k, absl::string_view v) {
                                     auto count = ParseTermValue(v);
                                     const uint64_t score = count ? TermScore(*count, staff) : 0;
                                     if (score > 0) {
                                       out->candidates.emplace_back(k.substr(prefix.size()));
                                       out->scores.push_back(score);
                                     }
                                     return true;
                                   }));
  return first_term;
}

absl::Status ComplaintTicketStore::KeepWithTerm(const std::string& term, bool staff,
                                                Scored* scored) const {
  CRM_ASSIGN_OR_RETURN(auto rows, RowsAt(TermPrefix(term), cf_[kTerms], scored->candidates));
  scored->KeepWhere([&](size_t c) -> uint64_t {
    auto count = rows[c] ? ParseTermValue(*rows[c]) : std::nullopt;
    const uint64_t score = count ? TermScore(*count, staff) : 0;
    return score == 0 ? 0 : scored->scores[c] + score;
  });
  return absl::OkStatus();
}

absl::Status ComplaintTicketStore::KeepPassingFilter(const v1::TicketFilter& filter, absl::Time now,
                                                     Scored* scored) const {
  CRM_ASSIGN_OR_RETURN(auto rows, RowsAt(AllPrefix(), cf_[kIndex], scored->candidates));
  scored->KeepWhere([&](size_t c) -> uint64_t {
    auto summary = rows[c] ? DecodeSummary(*rows[c]) : std::nullopt;
    // Scores here are the leading term's, never 0.
    return summary && Matches(filter, *summary, now) ? scored->scores[c] : 0;
  });
  return absl::OkStatus();
}

absl::Status ComplaintTicketStore::SearchTickets(const std::vector<std::string>& terms, bool staff,
                                                 const v1::TicketFilter& filter,
                                                 absl::string_view customer_id, absl::Time now,
                                                 absl::string_view after, int limit,
                                                 std::vector<v1::Ticket>* out,
                                                 std::string* last_key, bool* more) const {
  *more = false;
  CRM_RETURN_IF_ERROR(CheckRankResume(after, customer_id));
  if (terms.empty()) return absl::OkStatus();
  // Candidates: one customer's tickets passing the filter, or every posting of the rarest term.
  Scored scored;
  size_t first_term = terms.size();  // none: every term is looked up per candidate
  if (!customer_id.empty()) {
    CRM_RETURN_IF_ERROR(CustomerCandidates(customer_id, filter, now, &scored));
  } else {
    CRM_ASSIGN_OR_RETURN(first_term, RarestTermCandidates(terms, staff, filter, &scored));
  }
  // Every other term must occur where the searcher may see it.
  for (size_t i = 0; i < terms.size() && !scored.candidates.empty(); ++i) {
    if (i != first_term) CRM_RETURN_IF_ERROR(KeepWithTerm(terms[i], staff, &scored));
  }
  // Every customer's: the filter, on the summaries.
  if (customer_id.empty() && !IsEmpty(filter) && !scored.candidates.empty())
    CRM_RETURN_IF_ERROR(KeepPassingFilter(filter, now, &scored));
  std::vector<std::pair<std::string, std::string>> ranked;  // rank key, order key
  for (size_t c = 0; c < scored.candidates.size(); ++c) {
    auto p = ParseOrderKey(scored.candidates[c]);
    if (!p) continue;
    std::string rank = RankKey(scored.scores[c], *p);
    if (!after.empty() && rank <= after) continue;
    ranked.emplace_back(std::move(rank), std::move(scored.candidates[c]));
  }
  const size_t page = std::min(ranked.size(), static_cast<size_t>(limit));
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(page),
                    ranked.end());
  *more = ranked.size() > page;
  ranked.resize(page);
  std::vector<std::string> order_keys;
  for (auto& [rank, order_key] : ranked) order_keys.push_back(std::move(order_key));
  if (!ranked.empty()) *last_key = ranked.back().first;
  return FetchMatching(order_keys, filter, now, out);
}

absl::Status ComplaintTicketStore::PutCannedReply(const v1::CannedReply& reply,
                                                  absl::string_view request_key,
                                                  uint64_t fingerprint, absl::Time now,
                                                  v1::CannedReply* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], Key().Str("canned").Str(request_key).bytes(),
      fingerprint, now, out, [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(auto existing,
                             txn.GetForUpdate(cf_[kCanned], reply.canned_reply_id()));
        if (!existing.has_value()) {
          int count = 0;
          CRM_RETURN_IF_ERROR(txn.Scan(
              cf_[kCanned], "", "",
              [&](absl::string_view, absl::string_view) { return ++count < kMaxCannedReplies; }));
          if (count >= kMaxCannedReplies) {
            return absl::FailedPreconditionError(
                absl::StrCat("canned_reply.canned_reply_id: at most ", kMaxCannedReplies,
                             " canned replies; delete some first"));
          }
        }
        *out = reply;
        api::SetTimestamp(now, out->mutable_update_time());
        return txn.PutProto(cf_[kCanned], reply.canned_reply_id(), *out);
      });
}

absl::Status ComplaintTicketStore::DeleteCannedReply(absl::string_view canned_reply_id,
                                                     absl::string_view request_key,
                                                     uint64_t fingerprint, absl::Time now) {
  v1::DeleteCannedReplyResponse answer;
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], Key().Str("canned").Str(request_key).bytes(),
      fingerprint, now, &answer, [&](Transaction& txn) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(auto existing, txn.GetForUpdate(cf_[kCanned], canned_reply_id));
        if (!existing.has_value()) {
          return absl::NotFoundError(
              absl::StrCat("canned_reply_id: no canned reply \"", canned_reply_id, "\""));
        }
        return txn.Delete(cf_[kCanned], canned_reply_id);
      });
}

absl::StatusOr<v1::CannedReply> ComplaintTicketStore::GetCannedReply(
    absl::string_view canned_reply_id) const {
  return store::GetProtoOr<v1::CannedReply>(*store_, cf_[kCanned], canned_reply_id, [&] {
    return absl::NotFoundError(
        absl::StrCat("canned_reply_id: no canned reply \"", canned_reply_id, "\""));
  });
}

absl::StatusOr<std::vector<v1::CannedReply>> ComplaintTicketStore::CannedReplies() const {
  return store::ProtosUnder<v1::CannedReply>(*store_, cf_[kCanned], "");
}

absl::Status ComplaintTicketStore::IndexExistingTickets() {
  CRM_ASSIGN_OR_RETURN(auto marked, store_->Get(cf_[kIndex], IndexedMarker()));
  if (marked.has_value()) return absl::OkStatus();
  // In batches, so that a large store is neither read into memory nor written in one transaction.
  std::string begin;
  for (;;) {
    std::vector<v1::Ticket> batch;
    std::string last;
    CRM_RETURN_IF_ERROR(store::ScanProtos<v1::Ticket>(*store_, cf_[kTickets], begin, "",
                                                      [&](absl::string_view k, v1::Ticket&& t) {
                                                        batch.push_back(std::move(t));
                                                        last = std::string(k);
                                                        return batch.size() < 500;
                                                      }));
    if (batch.empty()) break;
    CRM_RETURN_IF_ERROR(store_->Transact(Durability::kSynced, [&](Transaction& txn) {
      for (const v1::Ticket& t : batch) {
        CRM_RETURN_IF_ERROR(WriteIndexRows(txn, v1::Ticket(), t, /*texts_changed=*/true));
      }
      return absl::OkStatus();
    }));
    begin = last + std::string(1, '\0');
  }
  return store_->Transact(Durability::kSynced, [&](Transaction& txn) {
    return txn.Put(cf_[kIndex], IndexedMarker(), "");
  });
}

}  // namespace crm::complaint_ticket
