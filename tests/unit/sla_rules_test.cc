// SLA rules as data: business time over weekends, China's holidays and make-up days, nights, long
// durations and a daylight-saving change; the parser's refusals, each naming its line; the shipped
// rules keeping today's promises; rules reloaded mid-flight holding only for tickets opened
// afterwards; and the compensation approval section (limits per agent level).
#include "services/complaint_ticket/sla_rules.h"

#include <initializer_list>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/text/file.h"
#include "services/complaint_ticket/business_calendar.h"
#include "services/complaint_ticket/sla.h"

namespace crm::complaint_ticket {
namespace {

// Line numbers matter: the refusals below name them.
constexpr char kRules[] = R"(default_calendar: "office"
calendars {
  name: "office"
  time_zone: "Asia/Shanghai"
  hours { days: [MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY] start: "09:00" end: "18:00" }
  holidays: ["2026-01-01", "2026-01-02"]
}
calendars {
  name: "new-york"
  time_zone: "America/New_York"
  hours { days: [MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY] start: "09:00" end: "17:00" }
}
calendars {
  name: "new-york-24x7"
  time_zone: "America/New_York"
  hours { days: [MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY] start: "00:00" end: "24:00" }
}
policies { priority: PRIORITY_P1 first_response: "1h" next_update: "4h" resolution: "24h" }
policies { priority: PRIORITY_P2 first_response: "4h" next_update: "12h" resolution: "72h" }
policies { priority: PRIORITY_P3 first_response: "24h" next_update: "48h" resolution: "168h" }
escalation { priority: PRIORITY_P1 at_risk_fraction: 0.25 at_risk_at_least: "15m" escalate: ESCALATE_WHEN_AT_RISK }
escalation { priority: PRIORITY_P2 at_risk_fraction: 0.25 at_risk_at_least: "15m" escalate: ESCALATE_WHEN_AT_RISK }
escalation { priority: PRIORITY_P3 at_risk_fraction: 0.25 at_risk_at_least: "15m" escalate: ESCALATE_WHEN_AT_RISK }
compensation_approval {
  limits { level: 1 goodwill_refund_up_to_minor: 5000 reshipment: false }
  limits { level: 2 goodwill_refund_up_to_minor: 50000 reshipment: true }
  limits { level: 3 goodwill_refund_up_to_minor: 200000 reshipment: true }
  supervisor_level: 3
}
)";

absl::TimeZone Zone(const char* name) {
  absl::TimeZone zone;
  REQUIRE(absl::LoadTimeZone(name, &zone));
  return zone;
}

absl::Time Beijing(int y, int m, int d, int hh, int mm = 0) {
  return absl::FromCivil(absl::CivilMinute(y, m, d, hh, mm), Zone("Asia/Shanghai"));
}
absl::Time NewYork(int y, int m, int d, int hh, int mm = 0) {
  return absl::FromCivil(absl::CivilMinute(y, m, d, hh, mm), Zone("America/New_York"));
}

// The shipped Beijing office calendar: Monday-Friday 09:00-18:00 with China's 2025-2026 holidays.
const BusinessCalendar& BeijingOffice() {
  const auto rules = BuiltInSlaRules();
  REQUIRE(rules != nullptr);
  const BusinessCalendar* office = rules->Calendar("beijing-office");
  REQUIRE(office != nullptr);
  return *office;
}

// A start, a duration of business time and the deadline it gives, with why.
struct Walk {
  const char* why;
  absl::Time start;
  absl::Duration duration;
  absl::Time due;
};

void CheckWalks(const BusinessCalendar& calendar, std::initializer_list<Walk> walks) {
  for (const Walk& w : walks) {
    INFO(w.why);
    CHECK(AddBusinessTime(w.start, w.duration, calendar) == w.due);
    // Counting back from a deadline in working time gives the first instant that reaches it.
    CHECK(AddBusinessTime(SubtractBusinessTime(w.due, w.duration, calendar), w.duration,
                          calendar) == w.due);
  }
}

TEST_CASE(
    "sla calendar: business time skips nights, weekends and China's holidays, works on make-up "
    "days, walks many days and counts back",
    "[sla][calendar]") {
  CheckWalks(BeijingOffice(),
             {{"Friday 17:00 + 2 h: one hour on Friday, one on Monday", Beijing(2026, 3, 13, 17),
               absl::Hours(2), Beijing(2026, 3, 16, 10)},
              {"opened at night (Tuesday 22:00): counts from 09:00", Beijing(2026, 3, 10, 22),
               absl::Minutes(30), Beijing(2026, 3, 11, 9, 30)},
              {"opened before opening (Wednesday 07:00)", Beijing(2026, 3, 11, 7),
               absl::Minutes(30), Beijing(2026, 3, 11, 9, 30)},
              {"72 h of 9-hour days: 8 working days, to the next Wednesday's close",
               Beijing(2026, 3, 9, 9), absl::Hours(72), Beijing(2026, 3, 18, 18)},
              {"New Year 2026: 1-3 January off, Sunday 4 January worked", Beijing(2025, 12, 31, 17),
               absl::Hours(2), Beijing(2026, 1, 4, 10)},
              {"Spring Festival 2026: Saturday 14 February worked", Beijing(2026, 2, 13, 17),
               absl::Hours(2), Beijing(2026, 2, 14, 10)},
              {"Spring Festival 2026: 15-23 February off", Beijing(2026, 2, 14, 17), absl::Hours(2),
               Beijing(2026, 2, 24, 10)},
              {"National Day 2025: 1-8 October off", Beijing(2025, 9, 30, 17), absl::Hours(2),
               Beijing(2025, 10, 9, 10)},
              {"National Day 2025: Saturday 11 October worked", Beijing(2025, 10, 10, 17),
               absl::Hours(2), Beijing(2025, 10, 11, 10)}});
  // Counting back lands on working time: Monday 10:00 less 2 h is Friday 17:00.
  CHECK(SubtractBusinessTime(Beijing(2026, 3, 16, 10), absl::Hours(2), BeijingOffice()) ==
        Beijing(2026, 3, 13, 17));
}

TEST_CASE("sla calendar: in a daylight-saving zone working hours count, not wall-clock hours",
          "[sla][calendar]") {
  auto rules = ParseSlaRules(kRules);
  REQUIRE(rules.ok());
  // New York moves its clocks forward on Sunday 8 March 2026. Friday 16:00 EST + 2 h of office
  // hours: Monday 10:00 EDT.
  const BusinessCalendar& office = *rules->Calendar("new-york");
  CHECK(AddBusinessTime(NewYork(2026, 3, 6, 16), absl::Hours(2), office) ==
        NewYork(2026, 3, 9, 10));
  CHECK(NewYork(2026, 3, 9, 10) - NewYork(2026, 3, 6, 16) == absl::Hours(65));  // 66 on the wall
  // Around the clock, 24 h of business time is 24 real hours: Saturday noon EST to Sunday 13:00
  // EDT.
  const BusinessCalendar& always = *rules->Calendar("new-york-24x7");
  CHECK(AddBusinessTime(NewYork(2026, 3, 7, 12), absl::Hours(24), always) ==
        NewYork(2026, 3, 8, 13));
  // And back in November (1 November 2026): 24 h from Saturday noon EDT is Sunday 11:00 EST.
  CHECK(AddBusinessTime(NewYork(2026, 10, 31, 12), absl::Hours(24), always) ==
        NewYork(2026, 11, 1, 11));
}

// An edit of `kRules` (`from` replaced by `to`) and what the refusal must say.
struct BadEdit {
  std::string from, to, refusal;
};

// Each edit of `kRules` is refused as INVALID_ARGUMENT saying what it must.
void CheckRefused(std::initializer_list<BadEdit> edits) {
  for (const BadEdit& edit : edits) {
    INFO(edit.refusal);
    const std::string text = absl::StrReplaceAll(kRules, {{edit.from, edit.to}});
    REQUIRE(text != kRules);
    auto rules = ParseSlaRules(text);
    REQUIRE_FALSE(rules.ok());
    CHECK(rules.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(rules.status().message()), Catch::Contains(edit.refusal));
  }
}

TEST_CASE("sla rules: a bad file is refused naming the line and the field", "[sla][rules]") {
  REQUIRE(ParseSlaRules(kRules).ok());
  // What complaint-ticket starts from (built-in rules that did not parse stop it).
  CHECK(ParseBuiltInSlaRules().ok());
  // The parser's own "sla rules: " is not said twice.
  const absl::Status built_in_broken =
      text::ParseBuiltIn("SLA rules", "policies {", ParseSlaRules).status();
  CHECK(built_in_broken.code() == absl::StatusCode::kInternal);
  CHECK(
      absl::StartsWith(built_in_broken.message(), "the built-in SLA rules did not parse: line 1"));
  const std::string p2 =
      "policies { priority: PRIORITY_P2 first_response: \"4h\" next_update: \"12h\" resolution: "
      "\"72h\" }\n";
  const std::string p2_escalates_at_end =
      "at_risk_at_least: \"15m\" escalate: ESCALATE_WHEN_AT_RISK }\nescalation { priority: ";
  CheckRefused({
      {"Asia/Shanghai", "Asia/Atlantis",
       "line 4: calendars[0].time_zone \"Asia/Atlantis\" is not a known IANA time zone"},
      {"start: \"09:00\" end: \"18:00\"", "start: \"18:00\" end: \"09:00\"",
       "line 5: calendars[0].hours[0].end \"09:00\" is not after start"},
      {"end: \"17:00\" }",
       "end: \"17:00\" }\n  hours { days: [FRIDAY] start: \"12:00\" end: \"13:00\" }",
       "line 12: calendars[1].hours[1] overlaps another span on FRIDAY"},
      {"\"2026-01-02\"", "\"2026-01-32\"",
       "line 6: calendars[0].holidays \"2026-01-32\" is not a date"},
      {"end: \"18:00\"", "end: \"6pm\"", "line 5: calendars[0].hours[0].end \"6pm\" is not a time"},
      {p2, "", "line 18: policies has none for PRIORITY_P2"},
      {"first_response: \"1h\"", "first_response: \"0s\"",
       "line 18: policies[0].first_response \"0s\" must be more than zero"},
      {"resolution: \"72h\"", "resolution: \"-72h\"",
       "line 19: policies[1].resolution \"-72h\" must be more than zero"},
      {"default_calendar: \"office\"", "default_calendar: \"shop\"",
       "line 1: default_calendar \"shop\" is not a calendar"},
      {p2_escalates_at_end + "PRIORITY_P3", p2_escalates_at_end + "PRIORITY_P2",
       "line 23: escalation[2].priority PRIORITY_P2 is given twice"},
      // A syntax error is the parser's, with line and column.
      {"priority: PRIORITY_P3 first", "priority: PRIORITY_P9 first", "sla rules: line 20, column"},
  });
}

TEST_CASE("sla rules: the shipped rules keep today's promises, around the clock by default",
          "[sla][rules]") {
  const auto rules = BuiltInSlaRules();
  REQUIRE(rules != nullptr);
  const SlaPolicy p1 = rules->PolicyFor(v1::PRIORITY_P1, false);
  CHECK(p1.first_response == absl::Hours(1));
  CHECK(p1.next_update == absl::Hours(4));
  CHECK(p1.resolution == absl::Hours(24));
  const SlaPolicy p2 = rules->PolicyFor(v1::PRIORITY_P2, false);
  CHECK(p2.first_response == absl::Hours(4));
  CHECK(p2.resolution == absl::Hours(72));
  const SlaPolicy p3 = rules->PolicyFor(v1::PRIORITY_UNSPECIFIED, true);
  CHECK(p3.first_response == absl::Minutes(30));
  CHECK(p3.next_update == absl::Hours(48));
  CHECK(p3.resolution == absl::Hours(24 * 7));
  v1::Ticket t;
  t.set_category(v1::TICKET_CATEGORY_REFUND);
  t.set_enterprise(true);
  const BusinessCalendar& calendar = rules->CalendarFor(t);
  CHECK(calendar.name == "24x7");
  // On the first of January, a holiday, the clock runs.
  CHECK(AddBusinessTime(Beijing(2026, 1, 1, 8), absl::Hours(3), calendar) ==
        Beijing(2026, 1, 1, 11));
}

// Puts the built-in rules back in force when a test that changed them ends.
struct BuiltInRulesAfter {
  ~BuiltInRulesAfter() { SlaRulesInForce::Process().Reset(BuiltInSlaRules()); }
};

TEST_CASE("sla rules: reloaded rules hold for tickets opened afterwards, open tickets keep theirs",
          "[sla][rules]") {
  BuiltInRulesAfter restore;
  auto office = ParseSlaRules(kRules);
  REQUIRE(office.ok());
  SlaRulesInForce::Process().Reset(std::make_shared<const SlaRules>(*office));
  const absl::Time friday_evening = Beijing(2026, 3, 13, 19);
  v1::Ticket before;
  before.set_priority(v1::PRIORITY_P1);
  before.set_status(v1::TICKET_STATUS_OPEN);
  api::SetTimestamp(friday_evening, before.mutable_create_time());
  StartSla(before, friday_evening);
  CHECK(api::FromTimestamp(before.sla().first_response_due()) == Beijing(2026, 3, 16, 10));
  const Deadline first{v1::SLA_KIND_FIRST_RESPONSE,
                       api::FromTimestamp(before.sla().first_response_due()), ""};
  // At risk in its last 15 minutes of office time.
  CHECK(RiskFrom(before, first) == Beijing(2026, 3, 16, 9, 45));

  // P1 now answers in 2 h, and the at-risk window is half the period.
  auto slower = ParseSlaRules(absl::StrReplaceAll(
      kRules, {{"first_response: \"1h\"", "first_response: \"2h\""},
               {"PRIORITY_P1 at_risk_fraction: 0.25", "PRIORITY_P1 at_risk_fraction: 0.5"}}));
  REQUIRE(slower.ok());
  SlaRulesInForce::Process().Adopt(std::make_shared<const SlaRules>(*slower),
                                   friday_evening + absl::Minutes(5));
  CHECK(RiskFrom(before, first) == Beijing(2026, 3, 16, 9, 45));
  CHECK_FALSE(EvaluateSla(before, Beijing(2026, 3, 16, 9, 30)).escalate);

  v1::Ticket after = before;
  after.clear_sla();
  api::SetTimestamp(friday_evening + absl::Minutes(10), after.mutable_create_time());
  StartSla(after, friday_evening + absl::Minutes(10));
  CHECK(api::FromTimestamp(after.sla().first_response_due()) == Beijing(2026, 3, 16, 11));
  const Deadline later{v1::SLA_KIND_FIRST_RESPONSE,
                       api::FromTimestamp(after.sla().first_response_due()), ""};
  CHECK(RiskFrom(after, later) == Beijing(2026, 3, 16, 10));
  CHECK(EvaluateSla(after, Beijing(2026, 3, 16, 10)).escalate);
}

TEST_CASE("compensation approval: the shipped limits per agent level", "[sla][goodwill]") {
  const auto rules = BuiltInSlaRules();
  REQUIRE(rules != nullptr);
  CHECK(rules->LimitFor(1).goodwill_refund_up_to_minor == 5000);
  CHECK_FALSE(rules->LimitFor(1).reshipment);
  CHECK(rules->LimitFor(2).goodwill_refund_up_to_minor == 50000);
  CHECK(rules->LimitFor(2).reshipment);
  CHECK(rules->supervisor_level() == 3);
  // A level the rules do not name may give nothing by itself.
  CHECK(rules->LimitFor(7).goodwill_refund_up_to_minor == 0);
  CHECK_FALSE(rules->LimitFor(7).reshipment);
}

TEST_CASE("compensation approval: without the section everything waits for level 3",
          "[sla][goodwill]") {
  const std::string text = kRules;
  auto rules = ParseSlaRules(text.substr(0, text.find("compensation_approval")));
  REQUIRE(rules.ok());
  CHECK(rules->LimitFor(2).goodwill_refund_up_to_minor == 0);
  CHECK_FALSE(rules->LimitFor(3).reshipment);
  CHECK(rules->supervisor_level() == 3);
}

TEST_CASE("compensation approval: a bad section is refused naming the line and the field",
          "[sla][goodwill]") {
  CheckRefused({
      {"level: 2 goodwill", "level: 4 goodwill",
       "line 26: compensation_approval.limits[1].level must be 1, 2 or 3"},
      {"level: 2 goodwill", "level: 1 goodwill",
       "line 26: compensation_approval.limits[1].level 1 is given twice"},
      {"up_to_minor: 50000", "up_to_minor: -1",
       "line 26: compensation_approval.limits[1].goodwill_refund_up_to_minor must be >= 0"},
      {"  limits { level: 3 goodwill_refund_up_to_minor: 200000 reshipment: true }\n", "",
       "line 25: compensation_approval.limits has none for level 3"},
      {"supervisor_level: 3", "supervisor_level: 0",
       "line 28: compensation_approval.supervisor_level must be 1, 2 or 3"},
  });
}

}  // namespace
}  // namespace crm::complaint_ticket
