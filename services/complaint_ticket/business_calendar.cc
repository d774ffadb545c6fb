#include "services/complaint_ticket/business_calendar.h"

#include <algorithm>

namespace crm::complaint_ticket {
namespace {

// A local wall-clock minute of `day` as an instant; minute 1440 is the next midnight. A minute
// skipped by a daylight-saving jump maps past the jump, a repeated one to its first occurrence.
absl::Time LocalMinute(absl::CivilDay day, int minute, absl::TimeZone zone) {
  return absl::FromCivil(absl::CivilMinute(day) + minute, zone);
}

}  // namespace

const std::vector<WorkingSpan>& BusinessCalendar::SpansOn(absl::CivilDay day) const {
  static const std::vector<WorkingSpan> kClosed;
  if (holidays.count(day) > 0) return kClosed;
  if (make_up_days.count(day) > 0) return week[static_cast<int>(make_up_days_work_as)];
  return week[static_cast<int>(absl::GetWeekday(day))];
}

absl::Time AddBusinessTime(absl::Time start, absl::Duration duration,
                           const BusinessCalendar& calendar) {
  if (duration <= absl::ZeroDuration()) return start;
  absl::CivilDay day = absl::ToCivilDay(start, calendar.zone);
  for (int walked = 0; walked < kMaxDaysWalked; ++walked, ++day) {
    for (const WorkingSpan& span : calendar.SpansOn(day)) {
      const absl::Time close = LocalMinute(day, span.end, calendar.zone);
      if (close <= start) continue;
      const absl::Time from = std::max(start, LocalMinute(day, span.start, calendar.zone));
      if (close - from >= duration) return from + duration;
      duration -= close - from;
    }
  }
  return absl::InfiniteFuture();
}

absl::Time SubtractBusinessTime(absl::Time end, absl::Duration duration,
                                const BusinessCalendar& calendar) {
  if (duration <= absl::ZeroDuration()) return end;
  absl::CivilDay day = absl::ToCivilDay(end, calendar.zone);
  for (int walked = 0; walked < kMaxDaysWalked; ++walked, --day) {
    const std::vector<WorkingSpan>& spans = calendar.SpansOn(day);
    for (auto span = spans.rbegin(); span != spans.rend(); ++span) {
      const absl::Time open = LocalMinute(day, span->start, calendar.zone);
      if (open >= end) continue;
      const absl::Time to = std::min(end, LocalMinute(day, span->end, calendar.zone));
      if (to - open >= duration) return to - duration;
      duration -= to - open;
    }
  }
  return absl::InfinitePast();
}

}  // namespace crm::complaint_ticket
