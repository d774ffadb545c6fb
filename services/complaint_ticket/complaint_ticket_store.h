// Persistence of complaint-ticket: the only code that knows its column families and keys.
//
//   tickets      customer_id, ticket_id             -> Ticket (conversation, callbacks, SLA,
//                                                      resolution)
//   deadlines    at-risk-from time, customer_id, ticket_id, kind, callback_id -> due time (what
//                the SLA sweep and the at-risk list visit: exactly the rows whose time has come)
//   deadline_keys customer_id, ticket_id            -> the deadlines keys the ticket has now (what
//                its next save deletes: recomputing them from the SLA rules would miss them
//                after a restart with other rules)
//   unassigned   open time, customer_id, ticket_id  -> "" (tickets waiting for an agent)
//   awaiting     customer_id, ticket_id             -> "" (resolved, compensation not confirmed)
//   agents       agent_id                           -> Agent (with its open-ticket count)
//   last_agent   customer_id                        -> agent_id (who handled the customer last)
//   ticket_index dimension, create time, customer_id, ticket_id -> the ticket's summary (listings
//                by status, priority, channel, queue, agent, customer, tag: ticket_index.h)
//   ticket_terms term, create time, customer_id, ticket_id -> how often the term occurs in the
//                subject, the messages and the internal notes (full-text search: ticket_search.h)
//   canned_replies canned_reply_id                  -> CannedReply (templates agents answer with)
//   requests, consumed_events, outbox*             -> idempotency and events
//
// A ticket change is one transaction: the ticket, its deadline, queue, listing and term rows, the
// open-ticket counts of the agents it moves between (derived from the change of assignment and
// status, under the agents' row locks), and its events. Synced WAL. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "libs/events/outbox.h"
#include "libs/store/families.h"
#include "libs/store/store.h"

namespace crm::complaint_ticket {

class ComplaintTicketStore;

// One ticket inside a transaction.
class TicketSession {
 public:
  v1::Ticket& ticket() { return ticket_; }
  bool is_new() const { return is_new_; }
  store::Transaction& txn() { return txn_; }
  // All agents as this process last committed them (for routing: a hint, what routing picks is
  // read again under the agent's row lock with LockAgent).
  absl::StatusOr<std::vector<v1::Agent>> Agents();
  // The agent who last handled this customer, or "".
  absl::StatusOr<std::string> LastAgent();
  // Reads an agent under its row lock (to check capacity before assigning), NOT_FOUND if there is
  // none.
  absl::StatusOr<v1::Agent> LockAgent(const std::string& agent_id);
  void RememberAgent(const std::string& agent_id) { remember_agent_ = agent_id; }
  void Emit(v1::Event event) { events_.push_back(std::move(event)); }
  // Nothing to write (a repeated request).
  void MarkUnchanged() { unchanged_ = true; }
  const std::vector<v1::Event>& events() const { return events_; }

 private:
  friend class ComplaintTicketStore;
  TicketSession(ComplaintTicketStore* store, store::Transaction& txn) : store_(store), txn_(txn) {}
  ComplaintTicketStore* store_;
  store::Transaction& txn_;
  v1::Ticket ticket_;
  v1::Ticket before_;
  bool is_new_ = false;
  bool unchanged_ = false;
  std::string remember_agent_;
  std::vector<v1::Event> events_;
};

class ComplaintTicketStore {
 public:
  static std::vector<std::string> ColumnFamilies();
  ComplaintTicketStore(store::Store* store, events::Outbox* outbox);

  // Opens a ticket once per request id; `build` fills the new ticket (ids, severity, SLA, routing).
  absl::Status OpenTicket(absl::string_view customer_id, absl::string_view request_id,
                          uint64_t fingerprint, absl::Time now,
                          absl::FunctionRef<absl::Status(TicketSession&)> build, v1::Ticket* out);
  // The same inside a transaction that is already open (an event consumer); false when
  // `request_key` had already opened a ticket.
  absl::StatusOr<bool> OpenTicketIn(store::Transaction& txn, absl::string_view customer_id,
                                    absl::string_view request_key, absl::Time now,
                                    absl::FunctionRef<absl::Status(TicketSession&)> build);
  // Locks the ticket and applies `change`; with a request id, once per request.
  absl::Status UpdateTicket(absl::string_view customer_id, absl::string_view ticket_id,
                            absl::string_view request_id, uint64_t fingerprint, absl::Time now,
                            absl::FunctionRef<absl::Status(TicketSession&)> change,
                            v1::Ticket* out);
  // Locks two tickets of one customer (in id order) and applies `change(source, target)`, once per
  // request id; *out is the target as saved. NOT_FOUND names source_ticket_id or target_ticket_id.
  absl::Status MergeTickets(
      absl::string_view customer_id, absl::string_view source_id, absl::string_view target_id,
      absl::string_view request_id, uint64_t fingerprint, absl::Time now,
      absl::FunctionRef<absl::Status(TicketSession& source, TicketSession& target)> change,
      v1::Ticket* out);
  absl::Status UpdateTicketIn(store::Transaction& txn, absl::string_view customer_id,
                              absl::string_view ticket_id, absl::Time now,
                              absl::FunctionRef<absl::Status(TicketSession&)> change);

  absl::StatusOr<v1::Ticket> Get(absl::string_view customer_id, absl::string_view ticket_id) const;
  // The customer's tickets (id order, which is time order: ids start with the open time).
  absl::Status List(absl::string_view customer_id, absl::string_view after, int limit,
                    std::vector<v1::Ticket>* out, std::string* last_key, bool* more) const;
  absl::StatusOr<std::vector<v1::Ticket>> ListAll(absl::string_view customer_id) const;

  // A page of the tickets under the listing `prefixes` (ticket_index.h's PrefixesToRead) that pass
  // `filter` at `now`, in order-key order, after the order key `after` (from a page token; when
  // `customer_id` is set it must be that customer's, else INVALID_ARGUMENT on page_token).
  absl::Status FindTickets(const std::vector<std::string>& prefixes, const v1::TicketFilter& filter,
                           absl::string_view customer_id, absl::Time now, absl::string_view after,
                           int limit, std::vector<v1::Ticket>* out, std::string* last_key,
                           bool* more) const;
  // A page of the tickets holding every term (ticket_search.h), best first (the sum of TermScore
  // over the terms; newer first among equals), passing `filter`: one customer's when `customer_id`
  // is set, else every customer's. `staff`: internal notes are searched too. `after` is the last
  // rank key of the previous page.
  absl::Status SearchTickets(const std::vector<std::string>& terms, bool staff,
                             const v1::TicketFilter& filter, absl::string_view customer_id,
                             absl::Time now, absl::string_view after, int limit,
                             std::vector<v1::Ticket>* out, std::string* last_key, bool* more) const;
  // Canned replies: stored or replaced once per request id (key), deleted (NOT_FOUND naming
  // canned_reply_id when there is none), read.
  absl::Status PutCannedReply(const v1::CannedReply& reply, absl::string_view request_key,
                              uint64_t fingerprint, absl::Time now, v1::CannedReply* out);
  absl::Status DeleteCannedReply(absl::string_view canned_reply_id, absl::string_view request_key,
                                 uint64_t fingerprint, absl::Time now);
  absl::StatusOr<v1::CannedReply> GetCannedReply(absl::string_view canned_reply_id) const;
  absl::StatusOr<std::vector<v1::CannedReply>> CannedReplies() const;
  // Writes the listing and term rows of tickets saved before they existed (once, at start).
  absl::Status IndexExistingTickets();

  struct DueEntry {
    absl::Time risk_from;
    absl::Time due;
    std::string customer_id, ticket_id;
    v1::SlaKind kind;
    std::string callback_id;
    std::string key;
  };
  // Deadlines at risk (or passed) at `until`, in the order they became at risk, after `after`.
  absl::Status Due(absl::Time until, absl::string_view after, int limit, std::vector<DueEntry>* out,
                   bool* more) const;
  // Whether the ticket still has the deadline a Due entry names.
  static bool StillOpen(const DueEntry& due, const v1::Ticket& ticket);
  // Deletes a Due entry's row when its ticket no longer has that deadline (a row left by a version
  // that did not record its keys); true when it did.
  absl::StatusOr<bool> DropIfStale(const DueEntry& due);
  // Tickets waiting for an agent, and tickets waiting for their compensation: (customer_id,
  // ticket_id).
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Unassigned() const;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> AwaitingCompensation() const;
  // Tickets open (counted against an agent) per priority, for the gauge at start.
  absl::StatusOr<std::map<v1::Priority, int64_t>> OpenByPriority() const;

  // Every agent as this process committed it, in agent id order: the copy kept below (routing,
  // and every check of an agent's existence or level, read it for each call).
  absl::StatusOr<std::vector<v1::Agent>> Agents() const;
  // Every agent row as stored, in agent id order (ListAgents; what the copy is first read from).
  absl::StatusOr<std::vector<v1::Agent>> StoredAgents() const;
  // Creates or updates an agent, keeping its open-ticket count.
  absl::Status PutAgent(const v1::Agent& agent, v1::Agent* out);
  absl::Status SetAgentAvailability(absl::string_view agent_id, bool available, v1::Agent* out);

  // Clears what could identify the customer (texts, messages) from their tickets, in `txn`.
  absl::Status Anonymise(store::Transaction& txn, absl::string_view customer_id);

 private:
  friend class TicketSession;
  absl::Status Save(TicketSession& s, absl::Time now);
  // Replaces the ticket's listing rows and, when its texts changed (`texts_changed`), its term
  // rows.
  absl::Status WriteIndexRows(store::Transaction& txn, const v1::Ticket& before,
                              const v1::Ticket& after, bool texts_changed);
  // The summaries (ticket_index.h) of the tickets at `order_keys` (nullopt where none).
  absl::StatusOr<std::vector<std::optional<std::string>>> RowsAt(
      absl::string_view prefix, rocksdb::ColumnFamilyHandle* cf,
      const std::vector<std::string>& order_keys) const;
  // The tickets at `order_keys`, those still passing `filter` (a change may have moved one out).
  absl::Status FetchMatching(const std::vector<std::string>& order_keys,
                             const v1::TicketFilter& filter, absl::Time now,
                             std::vector<v1::Ticket>* out) const;
  absl::Status AdjustLoad(store::Transaction& txn, const std::string& agent_id, int delta);
  // Writes agent row `a` in `txn`, and into the agents kept below once `txn` commits.
  absl::Status PutAgentRow(store::Transaction& txn, const v1::Agent& a);
  // A search's candidates (order keys) and their scores so far, side by side.
  struct Scored {
    std::vector<std::string> candidates;
    std::vector<uint64_t> scores;
    // Keeps the candidates `keep(c)` says (with the score it returns, 0 = drop), in order.
    void KeepWhere(const std::function<uint64_t(size_t)>& keep);
  };
  // One customer's tickets passing `filter`, each at score 0 (every term is then looked up).
  absl::Status CustomerCandidates(absl::string_view customer_id, const v1::TicketFilter& filter,
                                  absl::Time now, Scored* out) const;
  // Every posting of the term with the fewest (counted up to a bound); which term led.
  absl::StatusOr<size_t> RarestTermCandidates(const std::vector<std::string>& terms, bool staff,
                                              const v1::TicketFilter& filter, Scored* out) const;
  // Keeps the candidates where `term` occurs where the searcher may see it, adding its score.
  absl::Status KeepWithTerm(const std::string& term, bool staff, Scored* scored) const;
  // Keeps the candidates whose listing summary passes `filter`.
  absl::Status KeepPassingFilter(const v1::TicketFilter& filter, absl::Time now,
                                 Scored* scored) const;

  store::Store* const store_;
  events::Outbox* const outbox_;
  // The handles of the column families, indexed by the .cc's Family.
  store::Families cf_;

  // The agents as this process committed them (Agents). Routing reads every agent for every ticket,
  // and most agent actions check the agent exists: a scan of the family, or a read of each row,
  // walks the versions of the rows that every assignment leaves (each rewrites its agent's load),
  // thousands per agent under load. Every agent row is written here (PutAgentRow), so the copy
  // follows each commit. `order` is taken while the row is locked, so of two commits to one agent
  // the later always wins, however their threads go on after committing. A copy read from the store
  // while a commit was applied is not kept
  // (`commits` moved); the next call reads again. Thread-safe.
  struct KnownAgent {
    v1::Agent agent;
    uint64_t order = 0;
  };
  mutable absl::Mutex agents_mu_;
  mutable std::optional<std::map<std::string, KnownAgent>> agents_ ABSL_GUARDED_BY(agents_mu_);
  uint64_t writes_ ABSL_GUARDED_BY(agents_mu_) = 0;
  uint64_t commits_ ABSL_GUARDED_BY(agents_mu_) = 0;
};

}  // namespace crm::complaint_ticket
