#include "services/complaint_ticket/sla_rules.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "libs/api/text_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"

namespace crm::complaint_ticket {

extern const char kBuiltInSlaRulesText[];

namespace {

using Tree = google::protobuf::TextFormat::ParseInfoTree;

constexpr v1::Priority kPriorities[] = {v1::PRIORITY_P1, v1::PRIORITY_P2, v1::PRIORITY_P3};
// A promise longer than a year of business time is a typo.
constexpr absl::Duration kLongestDuration = absl::Hours(24 * 365);

using Place = api::RulesPlace;

// "HH:MM" (00:00-24:00) as minutes after midnight.
std::optional<int> MinuteOfDay(absl::string_view hhmm) {
  int h = 0, m = 0;
  if (hhmm.size() != 5 || hhmm[2] != ':' || !absl::ascii_isdigit(hhmm[0]) ||
      !absl::ascii_isdigit(hhmm[1]) || !absl::ascii_isdigit(hhmm[3]) ||
      !absl::ascii_isdigit(hhmm[4]) || !absl::SimpleAtoi(hhmm.substr(0, 2), &h) ||
      !absl::SimpleAtoi(hhmm.substr(3, 2), &m) || m > 59 || h * 60 + m > 1440) {
    return std::nullopt;
  }
  return h * 60 + m;
}

absl::StatusOr<absl::Duration> PositiveDuration(const Place& at, const char* field,
                                                const std::string& value) {
  absl::Duration d;
  if (!absl::ParseDuration(value, &d))
    return at.Error(field, absl::StrCat("\"", value, "\" is not a duration (\"30m\", \"4h\")"));
  if (d <= absl::ZeroDuration())
    return at.Error(field, absl::StrCat("\"", value, "\" must be more than zero"));
  if (d > kLongestDuration)
    return at.Error(field, absl::StrCat("\"", value, "\" is longer than a year"));
  return d;
}

absl::Status AddDays(const Place& at, const char* field,
                     const google::protobuf::RepeatedPtrField<std::string>& dates,
                     std::set<absl::CivilDay>& out) {
  for (const std::string& date : dates) {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(date, &day))
      return at.ValueError(field, date, "is not a date (YYYY-MM-DD)");
    out.insert(day);
  }
  return absl::OkStatus();
}

absl::Weekday WeekdayOf(internal::Weekday day) {
  return static_cast<absl::Weekday>(static_cast<int>(day) - 1);  // MONDAY = 1, monday = 0
}

// Each weekday's spans with the `hours` entry they came from, to name it when two overlap.
using SpansByWeekday = std::array<std::vector<std::pair<WorkingSpan, int>>, 7>;

// Every `hours` entry checked and filed under each weekday it names.
absl::StatusOr<SpansByWeekday> ReadWorkingHours(const internal::BusinessCalendar& c,
                                                const Place& at) {
  SpansByWeekday week;
  for (int i = 0; i < c.hours_size(); ++i) {
    const internal::WorkingHours& h = c.hours(i);
    const Place hours = at.Nested("hours", i, h);
    const auto start = MinuteOfDay(h.start());
    const auto end = MinuteOfDay(h.end());
    if (!start || *start == 1440)
      return hours.Error("start", absl::StrCat("\"", h.start(), "\" is not a time (HH:MM)"));
    if (!end) return hours.Error("end", absl::StrCat("\"", h.end(), "\" is not a time (HH:MM)"));
    if (*end <= *start) {
      return hours.Error("end",
                         absl::StrCat("\"", h.end(), "\" is not after start \"", h.start(), "\""));
    }
    if (h.days().empty()) return hours.Error("days", "is required");
    for (int d : h.days()) {
      if (d == internal::WEEKDAY_UNSPECIFIED) return hours.Error("days", "names no weekday");
      week[static_cast<int>(WeekdayOf(static_cast<internal::Weekday>(d)))].push_back(
          {{*start, *end}, i});
    }
  }
  return week;
}

// Each weekday's spans in order into `out`; refuses spans that overlap (naming the later `hours`
// entry) and a week with no working time at all.
absl::Status ArrangeWeek(SpansByWeekday& week, const internal::BusinessCalendar& c, const Place& at,
                         std::array<std::vector<WorkingSpan>, 7>& out) {
  bool works = false;
  for (int day = 0; day < 7; ++day) {
    auto& spans = week[day];
    std::sort(spans.begin(), spans.end(),
              [](const auto& a, const auto& b) { return a.first.start < b.first.start; });
    for (size_t i = 0; i < spans.size(); ++i) {
      if (i > 0 && spans[i].first.start < spans[i - 1].first.end) {
        const int later = std::max(spans[i].second, spans[i - 1].second);
        return at.ErrorAt(
            "hours", later,
            absl::StrCat("overlaps another span on ", internal::Weekday_Name(day + 1), " (",
                         c.hours(later).start(), "-", c.hours(later).end(), ")"));
      }
      out[day].push_back(spans[i].first);
    }
    works = works || !spans.empty();
  }
  if (!works) return at.Error("hours", "has no working time in the week");
  return absl::OkStatus();
}

absl::StatusOr<BusinessCalendar> CompileCalendar(const internal::BusinessCalendar& c,
                                                 const Place& at) {
  BusinessCalendar cal;
  cal.name = c.name();
  if (cal.name.empty()) return at.Error("name", "is required");
  if (!absl::LoadTimeZone(c.time_zone(), &cal.zone)) {
    return at.Error("time_zone",
                    absl::StrCat("\"", c.time_zone(),
                                 "\" is not a known IANA time zone (is tzdata installed?)"));
  }
  CRM_ASSIGN_OR_RETURN(SpansByWeekday week, ReadWorkingHours(c, at));
  CRM_RETURN_IF_ERROR(ArrangeWeek(week, c, at, cal.week));
  CRM_RETURN_IF_ERROR(AddDays(at, "holidays", c.holidays(), cal.holidays));
  CRM_RETURN_IF_ERROR(
      AddDays(at, "make_up_working_days", c.make_up_working_days(), cal.make_up_days));
  for (const absl::CivilDay& day : cal.make_up_days) {
    if (cal.holidays.count(day) > 0) {
      return at.ValueError("make_up_working_days", absl::FormatCivilTime(day), "is also a holiday");
    }
  }
  if (c.make_up_days_work_as() != internal::WEEKDAY_UNSPECIFIED)
    cal.make_up_days_work_as = WeekdayOf(c.make_up_days_work_as());
  return cal;
}

// A priority P1-P3 given once; `seen` collects them.
absl::Status CheckPriority(const Place& at, v1::Priority p, std::set<v1::Priority>& seen) {
  if (p != v1::PRIORITY_P1 && p != v1::PRIORITY_P2 && p != v1::PRIORITY_P3)
    return at.Error("priority", "must be PRIORITY_P1, PRIORITY_P2 or PRIORITY_P3");
  if (!seen.insert(p).second)
    return at.Error("priority", absl::StrCat(v1::Priority_Name(p), " is given twice"));
  return absl::OkStatus();
}

// Each of P1-P3 has an entry in `field`.
absl::Status CheckAllPriorities(const Place& top, const char* field,
                                const std::set<v1::Priority>& seen) {
  for (v1::Priority p : kPriorities) {
    if (seen.count(p) == 0) {
      return top.Error(field,
                       absl::StrCat("has none for ", v1::Priority_Name(p),
                                    " (one for each of PRIORITY_P1, PRIORITY_P2, PRIORITY_P3)"));
    }
  }
  return absl::OkStatus();
}

// Agent levels, as v1.Agent.level.
constexpr int kLevels[] = {1, 2, 3};

absl::StatusOr<std::pair<std::map<int, CompensationLimit>, int>> CompileApproval(
    const internal::CompensationApproval& a, const Place& at) {
  std::map<int, CompensationLimit> limits;
  for (int i = 0; i < a.limits_size(); ++i) {
    const auto& l = a.limits(i);
    const Place limit = at.Nested("limits", i, l);
    if (l.level() < 1 || l.level() > 3) return limit.Error("level", "must be 1, 2 or 3");
    if (l.goodwill_refund_up_to_minor() < 0)
      return limit.Error("goodwill_refund_up_to_minor", "must be >= 0");
    if (!limits
             .emplace(l.level(), CompensationLimit{l.goodwill_refund_up_to_minor(), l.reshipment()})
             .second) {
      return limit.Error("level", absl::StrCat(l.level(), " is given twice"));
    }
  }
  for (int level : kLevels) {
    if (limits.count(level) == 0)
      return at.Error("limits",
                      absl::StrCat("has none for level ", level, " (one for each of 1-3)"));
  }
  if (a.supervisor_level() < 1 || a.supervisor_level() > 3)
    return at.Error("supervisor_level", "must be 1, 2 or 3");
  return std::make_pair(std::move(limits), a.supervisor_level());
}

// The file's calendars, compiled, and where each name is among them.
struct Calendars {
  std::vector<BusinessCalendar> list;
  std::map<std::string, size_t> index;

  absl::StatusOr<size_t> Find(const Place& at, const char* field, const std::string& name) const {
    auto it = index.find(name);
    if (it == index.end())
      return at.Error(field, absl::StrCat("\"", name, "\" is not a calendar of this file"));
    return it->second;
  }
};

absl::StatusOr<Calendars> CompileCalendars(const Place& top, const internal::SlaRules& r) {
  Calendars out;
  for (int i = 0; i < r.calendars_size(); ++i) {
    const Place at = top.Nested("calendars", i, r.calendars(i));
    CRM_ASSIGN_OR_RETURN(BusinessCalendar cal, CompileCalendar(r.calendars(i), at));
    if (!out.index.emplace(cal.name, out.list.size()).second)
      return at.Error("name", absl::StrCat("\"", cal.name, "\" is given twice"));
    out.list.push_back(std::move(cal));
  }
  if (out.list.empty()) return top.Error("calendars", "are required");
  return out;
}

absl::StatusOr<std::vector<CalendarChoice>> CompileChoices(const Place& top,
                                                           const internal::SlaRules& r,
                                                           const Calendars& calendars) {
  std::vector<CalendarChoice> out;
  for (int i = 0; i < r.calendar_choices_size(); ++i) {
    const auto& c = r.calendar_choices(i);
    const Place at = top.Nested("calendar_choices", i, c);
    CalendarChoice choice;
    CRM_ASSIGN_OR_RETURN(choice.calendar, calendars.Find(at, "calendar", c.calendar()));
    for (int category : c.categories())
      choice.categories.push_back(static_cast<v1::TicketCategory>(category));
    choice.enterprise_only = c.enterprise_only();
    out.push_back(std::move(choice));
  }
  return out;
}

// One policy per priority; `longest` becomes the longest promise of any.
absl::StatusOr<std::map<v1::Priority, SlaPolicyRow>> CompilePolicies(const Place& top,
                                                                     const internal::SlaRules& r,
                                                                     absl::Duration* longest) {
  std::map<v1::Priority, SlaPolicyRow> out;
  std::set<v1::Priority> seen;
  for (int i = 0; i < r.policies_size(); ++i) {
    const auto& p = r.policies(i);
    const Place at = top.Nested("policies", i, p);
    CRM_RETURN_IF_ERROR(CheckPriority(at, p.priority(), seen));
    SlaPolicyRow row;
    CRM_ASSIGN_OR_RETURN(row.policy.first_response,
                         PositiveDuration(at, "first_response", p.first_response()));
    CRM_ASSIGN_OR_RETURN(row.policy.next_update,
                         PositiveDuration(at, "next_update", p.next_update()));
    CRM_ASSIGN_OR_RETURN(row.policy.resolution, PositiveDuration(at, "resolution", p.resolution()));
    if (!p.enterprise_first_response().empty()) {
      CRM_ASSIGN_OR_RETURN(
          row.enterprise_first_response,
          PositiveDuration(at, "enterprise_first_response", p.enterprise_first_response()));
    }
    *longest = std::max(
        {*longest, row.policy.first_response, row.policy.next_update, row.policy.resolution});
    out[p.priority()] = row;
  }
  CRM_RETURN_IF_ERROR(CheckAllPriorities(top, "policies", seen));
  return out;
}

absl::StatusOr<std::map<v1::Priority, EscalationPolicy>> CompileEscalation(
    const Place& top, const internal::SlaRules& r) {
  std::map<v1::Priority, EscalationPolicy> out;
  std::set<v1::Priority> seen;
  for (int i = 0; i < r.escalation_size(); ++i) {
    const auto& e = r.escalation(i);
    const Place at = top.Nested("escalation", i, e);
    CRM_RETURN_IF_ERROR(CheckPriority(at, e.priority(), seen));
    EscalationPolicy policy;
    policy.at_risk_fraction = e.at_risk_fraction();
    if (!(policy.at_risk_fraction > 0 && policy.at_risk_fraction <= 1))
      return at.Error("at_risk_fraction", "must be more than 0 and at most 1");
    if (!absl::ParseDuration(e.at_risk_at_least(), &policy.at_risk_at_least) ||
        policy.at_risk_at_least < absl::ZeroDuration()) {
      return at.Error("at_risk_at_least",
                      absl::StrCat("\"", e.at_risk_at_least(), "\" is not a duration >= 0"));
    }
    if (e.escalate() == internal::ESCALATE_WHEN_UNSPECIFIED)
      return at.Error("escalate", "is required (ESCALATE_WHEN_AT_RISK, _BREACHED or _NEVER)");
    policy.escalate = e.escalate();
    out[e.priority()] = policy;
  }
  CRM_RETURN_IF_ERROR(CheckAllPriorities(top, "escalation", seen));
  return out;
}

// Every calendar must hold the longest promise within a walk's reach.
absl::Status CheckCalendarsHold(const Place& top, const internal::SlaRules& r,
                                const std::vector<BusinessCalendar>& calendars,
                                absl::Duration longest) {
  for (size_t i = 0; i < calendars.size(); ++i) {
    const BusinessCalendar& cal = calendars[i];
    const absl::Time from = absl::FromCivil(absl::CivilDay(2025, 1, 1), cal.zone);
    if (AddBusinessTime(from, longest, cal) == absl::InfiniteFuture()) {
      return top.Nested("calendars", static_cast<int>(i), r.calendars(static_cast<int>(i)))
          .Error("hours",
                 absl::StrCat("hold too little working time for ", absl::FormatDuration(longest),
                              " within ", kMaxDaysWalked, " days"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SlaRules> ParseSlaRules(absl::string_view text) {
  SlaRules rules;
  Tree tree;
  CRM_RETURN_IF_ERROR(api::ParseTextProto("sla rules", text, &rules.source_, &tree));
  const internal::SlaRules& r = rules.source_;
  const Place top("sla rules", text, r, &tree);
  CRM_ASSIGN_OR_RETURN(Calendars calendars, CompileCalendars(top, r));
  CRM_ASSIGN_OR_RETURN(rules.default_calendar_,
                       calendars.Find(top, "default_calendar", r.default_calendar()));
  CRM_ASSIGN_OR_RETURN(rules.choices_, CompileChoices(top, r, calendars));
  absl::Duration longest;
  CRM_ASSIGN_OR_RETURN(rules.policies_, CompilePolicies(top, r, &longest));
  CRM_ASSIGN_OR_RETURN(rules.escalation_, CompileEscalation(top, r));
  if (r.has_compensation_approval()) {
    CRM_ASSIGN_OR_RETURN(auto approval, CompileApproval(r.compensation_approval(),
                                                        top.Nested("compensation_approval", 0,
                                                                   r.compensation_approval())));
    rules.limits_ = std::move(approval.first);
    rules.supervisor_level_ = approval.second;
  }
  CRM_RETURN_IF_ERROR(CheckCalendarsHold(top, r, calendars.list, longest));
  rules.calendars_ = std::move(calendars.list);
  return rules;
}

CompensationLimit SlaRules::LimitFor(int level) const {
  auto it = limits_.find(level);
  return it == limits_.end() ? CompensationLimit{} : it->second;
}

SlaPolicy SlaRules::PolicyFor(v1::Priority priority, bool enterprise) const {
  auto it = policies_.find(priority);
  const PolicyRow& row = it != policies_.end() ? it->second : policies_.at(v1::PRIORITY_P3);
  SlaPolicy p = row.policy;
  if (enterprise && row.enterprise_first_response)
    p.first_response = std::min(p.first_response, *row.enterprise_first_response);
  return p;
}

const BusinessCalendar& SlaRules::CalendarFor(const v1::Ticket& t) const {
  for (const Choice& c : choices_) {
    if (c.enterprise_only && !t.enterprise()) continue;
    if (!c.categories.empty() &&
        std::find(c.categories.begin(), c.categories.end(), t.category()) == c.categories.end())
      continue;
    return calendars_[c.calendar];
  }
  return calendars_[default_calendar_];
}

const BusinessCalendar* SlaRules::Calendar(absl::string_view name) const {
  for (const BusinessCalendar& c : calendars_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const EscalationPolicy& SlaRules::EscalationFor(v1::Priority priority) const {
  auto it = escalation_.find(priority);
  return it != escalation_.end() ? it->second : escalation_.at(v1::PRIORITY_P3);
}

namespace {
// Shared, because the rules in force are swapped for a file's while tickets still hold these.
const text::BuiltIn<std::shared_ptr<const SlaRules>>& ShippedSlaRules() {
  static const auto* rules = new text::BuiltIn<std::shared_ptr<const SlaRules>>(
      "SLA rules", kBuiltInSlaRulesText,
      [](absl::string_view text) -> absl::StatusOr<std::shared_ptr<const SlaRules>> {
        CRM_ASSIGN_OR_RETURN(SlaRules parsed, ParseSlaRules(text));
        return std::make_shared<const SlaRules>(std::move(parsed));
      });
  return *rules;
}
}  // namespace

const absl::StatusOr<std::shared_ptr<const SlaRules>>& ParseBuiltInSlaRules() {
  return ShippedSlaRules().parsed();
}

std::shared_ptr<const SlaRules> BuiltInSlaRules() { return ShippedSlaRules().value(); }

SlaRulesInForce::SlaRulesInForce() {
  if (auto built_in = BuiltInSlaRules()) Reset(std::move(built_in));
}

SlaRulesInForce& SlaRulesInForce::Process() {
  static SlaRulesInForce* const in_force = new SlaRulesInForce();
  return *in_force;
}

void SlaRulesInForce::Reset(std::shared_ptr<const SlaRules> rules) {
  absl::MutexLock lock(&mu_);
  eras_.assign(1, {absl::InfinitePast(), std::move(rules)});
  ++generation_;
}

void SlaRulesInForce::Adopt(std::shared_ptr<const SlaRules> rules, absl::Time since) {
  absl::MutexLock lock(&mu_);
  // Reloads are rare (an operator edits a file); the oldest eras only matter to tickets opened
  // under them, which then use the next oldest.
  constexpr size_t kErasKept = 64;
  if (eras_.size() >= kErasKept) eras_.erase(eras_.begin() + 1);
  eras_.push_back({std::max(since, eras_.empty() ? since : eras_.back().since), std::move(rules)});
  ++generation_;
}

std::shared_ptr<const SlaRules> SlaRulesInForce::ForTicketOpenedAt(absl::Time opened) const {
  absl::MutexLock lock(&mu_);
  for (auto era = eras_.rbegin(); era != eras_.rend(); ++era) {
    if (era->since <= opened) return era->rules;
  }
  return eras_.empty() ? nullptr : eras_.front().rules;
}

std::shared_ptr<const SlaRules> SlaRulesInForce::Latest() const {
  absl::MutexLock lock(&mu_);
  return eras_.empty() ? nullptr : eras_.back().rules;
}

uint64_t SlaRulesInForce::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

std::shared_ptr<const SlaRules> RulesOf(const v1::Ticket& t) {
  const SlaRulesInForce& in_force = SlaRulesInForce::Process();
  if (!t.has_create_time()) return in_force.Latest();
  return in_force.ForTicketOpenedAt(api::FromTimestamp(t.create_time()));
}

absl::StatusOr<SlaRules> SlaRulesFile::Read() {
  if (auto stamp = text::StampOf(path_); stamp.ok()) stamp_ = *stamp;
  return text::ParseFile(path_, "--sla_rules_file", ParseSlaRules);
}

absl::StatusOr<std::optional<SlaRules>> SlaRulesFile::ReadIfChanged() {
  absl::StatusOr<text::FileStamp> stamp = text::StampOf(path_);
  if (!stamp.ok())
    return absl::NotFoundError(absl::StrCat("--sla_rules_file: ", stamp.status().message()));
  if (*stamp == stamp_) return std::nullopt;
  CRM_ASSIGN_OR_RETURN(SlaRules rules, Read());
  return rules;
}

}  // namespace crm::complaint_ticket
