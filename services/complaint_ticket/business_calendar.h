// Business time: when a service desk is working, in its own time zone, with public holidays off and
// make-up working days (China's 调休: a Saturday or Sunday worked in exchange for a longer holiday)
// on. An SLA promise of "4 hours" counts only working time of the ticket's calendar. Pure
// functions; the calendar is data (crm.internal.BusinessCalendar, read by sla_rules.h).
#pragma once

#include <array>
#include <set>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace crm::complaint_ticket {

// Working time within one local day, in minutes after midnight: [start, end), 0 <= start < end <=
// 1440.
struct WorkingSpan {
  int start = 0;
  int end = 0;
};

struct BusinessCalendar {
  std::string name;
  absl::TimeZone zone;
  // Indexed by absl::Weekday (monday = 0); each day's spans in order, not overlapping.
  std::array<std::vector<WorkingSpan>, 7> week;
  std::set<absl::CivilDay> holidays;
  std::set<absl::CivilDay> make_up_days;
  // Whose hours a make-up day has.
  absl::Weekday make_up_days_work_as = absl::Weekday::monday;

  // The working spans of a local day: none on a holiday, `make_up_days_work_as`'s on a make-up day.
  const std::vector<WorkingSpan>& SpansOn(absl::CivilDay day) const;
};

// How many local days a walk through a calendar looks at (ten years) before it gives up; rules
// whose calendars cannot hold their durations within that are refused when read.
inline constexpr int kMaxDaysWalked = 3660;

// The instant `duration` of working time after `start` (a start outside working hours counts from
// the next working span). Walks the calendar's local days, so daylight saving changes and holidays
// fall where the calendar's people live. InfiniteFuture when it does not fit in kMaxDaysWalked
// days.
absl::Time AddBusinessTime(absl::Time start, absl::Duration duration,
                           const BusinessCalendar& calendar);

// The instant `duration` of working time before `end`: when a deadline at `end` has that much
// working time left. InfinitePast when it does not fit in kMaxDaysWalked days.
absl::Time SubtractBusinessTime(absl::Time end, absl::Duration duration,
                                const BusinessCalendar& calendar);

}  // namespace crm::complaint_ticket
