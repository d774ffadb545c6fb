// The SLA rules as data (crm.internal.SlaRules, deploy/config/sla-rules.textproto): calendars of
// business time, the promises per priority with the enterprise override, which calendar a ticket
// runs on, and when a deadline is at risk and escalates. Read from a file, checked with line
// numbers, re-read when the file changes; the rules in force are process-wide (SlaRulesInForce), as
// one complaint-ticket service runs per process.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "crm/internal/complaint_lexicon.pb.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "libs/text/file.h"
#include "services/complaint_ticket/business_calendar.h"

namespace crm::complaint_ticket {

// What a ticket is promised, each in business time of its calendar.
struct SlaPolicy {
  absl::Duration first_response;
  absl::Duration next_update;
  absl::Duration resolution;
};

// When a deadline is at risk: at most max(fraction x its period, at_least) of business time left.
struct EscalationPolicy {
  double at_risk_fraction = 0.25;
  absl::Duration at_risk_at_least = absl::Minutes(15);
  internal::EscalateWhen escalate = internal::ESCALATE_WHEN_AT_RISK;
};

// What agents of one level may give on a ticket without approval.
struct CompensationLimit {
  int64_t goodwill_refund_up_to_minor = 0;
  bool reshipment = false;
};

// One priority's promises in a rules file, with the enterprise first-response override.
struct SlaPolicyRow {
  SlaPolicy policy;
  std::optional<absl::Duration> enterprise_first_response;
};
// Which calendar a ticket runs on, by its category and whether its account is an enterprise one.
struct CalendarChoice {
  std::vector<v1::TicketCategory> categories;
  bool enterprise_only = false;
  size_t calendar = 0;  // index into the file's calendars
};

// Checked rules, ready to use. Immutable; shared between the tickets they apply to.
class SlaRules {
 public:
  // The promises of a priority (P3's for a ticket without one), enterprise accounts' first response
  // shortened by the override.
  SlaPolicy PolicyFor(v1::Priority priority, bool enterprise) const;
  // The calendar of the first choice the ticket matches, else the default calendar.
  const BusinessCalendar& CalendarFor(const v1::Ticket& ticket) const;
  const EscalationPolicy& EscalationFor(v1::Priority priority) const;
  // What an agent of `level` may give without approval (nothing for a level the rules do not name).
  CompensationLimit LimitFor(int level) const;
  // Agents at this level or above approve compensation above another agent's limit.
  int supervisor_level() const { return supervisor_level_; }
  // A calendar by name; null when the rules have none of that name.
  const BusinessCalendar* Calendar(absl::string_view name) const;
  const internal::SlaRules& source() const { return source_; }

 private:
  friend absl::StatusOr<SlaRules> ParseSlaRules(absl::string_view text);
  using PolicyRow = SlaPolicyRow;
  using Choice = CalendarChoice;

  internal::SlaRules source_;
  std::vector<BusinessCalendar> calendars_;
  size_t default_calendar_ = 0;
  std::vector<Choice> choices_;
  std::map<v1::Priority, PolicyRow> policies_;
  std::map<v1::Priority, EscalationPolicy> escalation_;
  std::map<int, CompensationLimit> limits_;
  // Without a compensation_approval section every goodwill refund and reshipment waits for level 3.
  int supervisor_level_ = 3;
};

// Parses protobuf text format and checks it: known time zones; working hours "HH:MM" with start <
// end, not overlapping on a day; dates as YYYY-MM-DD, none both a holiday and a make-up day;
// durations > 0 that each calendar can hold; one policy and one escalation rule for each of P1-P3;
// calendar names unique and every reference known; compensation limits, when given, one for each
// agent level 1-3, >= 0, and a supervisor level 1-3. Errors name the line (INVALID_ARGUMENT "sla
// rules: line N: <field> ...").
absl::StatusOr<SlaRules> ParseSlaRules(absl::string_view text);

// The rules this binary was built with (deploy/config/sla-rules.textproto at build time), parsed
// once per process: or INTERNAL naming the line (the service refuses to start; a time zone unknown
// to this machine means tzdata is missing); BuiltInSlaRules is the same, null if they did not
// parse.
const absl::StatusOr<std::shared_ptr<const SlaRules>>& ParseBuiltInSlaRules();
std::shared_ptr<const SlaRules> BuiltInSlaRules();

// The rules tickets are held to. A ticket is held to the rules in force when it was opened, so
// reloading changes neither the deadlines of open tickets nor when they are at risk (the at-risk
// index of the store stays consistent); tickets opened afterwards get the new rules. The history
// lives in this process: after a restart every ticket is held to the rules read at start (the store
// records each ticket's index keys, so its next save still finds the rows written before).
class SlaRulesInForce {
 public:
  static SlaRulesInForce& Process();

  // From now on, every ticket whenever opened is held to `rules` (at start).
  void Reset(std::shared_ptr<const SlaRules> rules);
  // Tickets opened from `since` on are held to `rules` (a reload).
  void Adopt(std::shared_ptr<const SlaRules> rules, absl::Time since);
  std::shared_ptr<const SlaRules> ForTicketOpenedAt(absl::Time opened) const;
  std::shared_ptr<const SlaRules> Latest() const;
  // How many rule sets have been put in force (Reset counts as one).
  uint64_t generation() const;

 private:
  SlaRulesInForce();
  struct Era {
    absl::Time since;
    std::shared_ptr<const SlaRules> rules;
  };
  mutable absl::Mutex mu_;
  std::vector<Era> eras_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// The rules of a ticket: of when it was opened (the latest when it has no create_time yet).
std::shared_ptr<const SlaRules> RulesOf(const v1::Ticket& ticket);

// An SLA rules file, re-read when it changes (modification time or size), as the gateway's JWK Set.
class SlaRulesFile {
 public:
  explicit SlaRulesFile(std::string path) : path_(std::move(path)) {}
  // Reads and parses the file now. Errors name the file.
  absl::StatusOr<SlaRules> Read();
  // The new rules when the file changed since the last Read or ReadIfChanged; nullopt when it did
  // not. A changed file that does not parse is an error, reported once per change.
  absl::StatusOr<std::optional<SlaRules>> ReadIfChanged();
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  text::FileStamp stamp_;
};

}  // namespace crm::complaint_ticket
