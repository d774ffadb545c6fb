#include "services/complaint_ticket/ticket_index.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/store/key.h"
#include "services/complaint_ticket/sla.h"

namespace crm::complaint_ticket {
namespace {

using api::Invalid;
using store::Key;
using store::KeyReader;

constexpr uint64_t kBreachRecorded = 1;
constexpr uint64_t kHasDeadline = 2;

std::string Item(absl::string_view field, const char* list, int i) {
  return absl::StrCat(field, ".", list, "[", i, "]");
}

// Each value of an enum list: a value of the enum other than UNSPECIFIED.
template <typename Values, typename IsValid>
absl::Status CheckEnums(absl::string_view field, const char* list, const Values& values,
                        IsValid is_valid, absl::string_view expected) {
  if (values.size() > kMaxFilterValues)
    return Invalid(absl::StrCat(field, ".", list), absl::StrCat("at most ", kMaxFilterValues));
  for (int i = 0; i < values.size(); ++i) {
    if (values[i] == 0 || !is_valid(values[i])) return Invalid(Item(field, list, i), expected);
  }
  return absl::OkStatus();
}

// [after, before) of a filter, each checked.
absl::Status CheckRange(absl::string_view field, const char* after_name, bool has_after,
                        const google::protobuf::Timestamp& after, const char* before_name,
                        bool has_before, const google::protobuf::Timestamp& before) {
  std::optional<absl::Time> from, to;
  if (has_after) {
    CRM_ASSIGN_OR_RETURN(from, api::ToTime(absl::StrCat(field, ".", after_name), after));
  }
  if (has_before) {
    CRM_ASSIGN_OR_RETURN(to, api::ToTime(absl::StrCat(field, ".", before_name), before));
  }
  if (from && to && *to <= *from)
    return Invalid(absl::StrCat(field, ".", before_name),
                   absl::StrCat("must be later than ", after_name));
  return absl::OkStatus();
}

template <typename Values, typename V>
bool AnyOf(const Values& values, V v) {
  return values.empty() || std::find(values.begin(), values.end(), v) != values.end();
}

bool InRange(absl::Time t, bool has_after, const google::protobuf::Timestamp& after,
             bool has_before, const google::protobuf::Timestamp& before) {
  if (has_after && t < api::FromTimestamp(after)) return false;
  if (has_before && t >= api::FromTimestamp(before)) return false;
  return true;
}

}  // namespace

TicketSummary SummaryOf(const v1::Ticket& t) {
  TicketSummary s;
  s.status = t.status();
  s.priority = t.priority();
  s.channel = t.channel();
  s.category = t.category();
  s.level = t.handling_level();
  s.agent_id = t.assigned_agent_id();
  s.created = api::FromTimestamp(t.create_time());
  s.updated = api::FromTimestamp(t.update_time());
  s.breach_recorded = t.sla().breaches_size() > 0;
  for (const Deadline& d : OpenDeadlines(t)) {
    const absl::Time risk = RiskFrom(t, d);
    if (!s.earliest_due || d.due < *s.earliest_due) s.earliest_due = d.due;
    if (!s.earliest_risk || risk < *s.earliest_risk) s.earliest_risk = risk;
  }
  s.tags.assign(t.tags().begin(), t.tags().end());
  return s;
}

std::string EncodeSummary(const TicketSummary& s) {
  Key k;
  k.U64(s.status).U64(s.priority).U64(s.channel).U64(s.category).U64(s.level).Str(s.agent_id);
  k.Time(s.created).Time(s.updated);
  k.U64((s.breach_recorded ? kBreachRecorded : 0) | (s.earliest_due ? kHasDeadline : 0));
  k.Time(s.earliest_due.value_or(absl::UnixEpoch()));
  k.Time(s.earliest_risk.value_or(absl::UnixEpoch()));
  for (const std::string& tag : s.tags) k.Str(tag);
  return k.Build();
}

std::optional<TicketSummary> DecodeSummary(absl::string_view bytes) {
  KeyReader r(bytes);
  TicketSummary s;
  auto status = r.U64(), priority = r.U64(), channel = r.U64(), category = r.U64(), level = r.U64();
  auto agent = r.Str();
  auto created = r.Time(), updated = r.Time();
  auto flags = r.U64();
  auto due = r.Time(), risk = r.Time();
  if (!status || !priority || !channel || !category || !level || !agent || !created || !updated ||
      !flags || !due || !risk) {
    return std::nullopt;
  }
  s.status = static_cast<v1::TicketStatus>(*status);
  s.priority = static_cast<v1::Priority>(*priority);
  s.channel = static_cast<v1::TicketChannel>(*channel);
  s.category = static_cast<v1::TicketCategory>(*category);
  s.level = static_cast<int>(*level);
  s.agent_id = std::move(*agent);
  s.created = *created;
  s.updated = *updated;
  s.breach_recorded = (*flags & kBreachRecorded) != 0;
  if (*flags & kHasDeadline) {
    s.earliest_due = *due;
    s.earliest_risk = *risk;
  }
  while (!r.done()) {
    auto tag = r.Str();
    if (!tag) return std::nullopt;
    s.tags.push_back(std::move(*tag));
  }
  return s;
}

v1::SlaCondition ConditionAt(const TicketSummary& s, absl::Time now) {
  if (s.breach_recorded || (s.earliest_due && *s.earliest_due < now))
    return v1::SLA_CONDITION_BREACHED;
  if (s.earliest_risk && *s.earliest_risk <= now) return v1::SLA_CONDITION_AT_RISK;
  return v1::SLA_CONDITION_ON_TRACK;
}

absl::StatusOr<std::string> NormalizeTag(absl::string_view field, absl::string_view tag) {
  if (tag.empty() || tag.size() > 40)
    return Invalid(field, "a tag is 1-40 characters of a-z, 0-9, '-', '_' and ':'");
  std::string out = absl::AsciiStrToLower(tag);
  for (char c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != ':')
      return Invalid(field, "a tag is 1-40 characters of a-z, 0-9, '-', '_' and ':'");
  }
  return out;
}

absl::Status ValidateFilter(absl::string_view field, const v1::TicketFilter& f, bool customer) {
  CRM_RETURN_IF_ERROR(CheckEnums(field, "statuses", f.statuses(), v1::TicketStatus_IsValid,
                                 "must be OPEN, IN_PROGRESS, AWAITING_COMPENSATION, RESOLVED or "
                                 "CLOSED"));
  CRM_RETURN_IF_ERROR(CheckEnums(field, "priorities", f.priorities(), v1::Priority_IsValid,
                                 "must be P1, P2 or P3"));
  CRM_RETURN_IF_ERROR(CheckEnums(field, "channels", f.channels(), v1::TicketChannel_IsValid,
                                 "must be a ticket channel"));
  CRM_RETURN_IF_ERROR(CheckEnums(field, "categories", f.categories(), v1::TicketCategory_IsValid,
                                 "must be a ticket category"));
  CRM_RETURN_IF_ERROR(CheckEnums(field, "sla_conditions", f.sla_conditions(),
                                 v1::SlaCondition_IsValid,
                                 "must be ON_TRACK, AT_RISK or BREACHED"));
  if (f.handling_levels_size() > kMaxFilterValues)
    return Invalid(absl::StrCat(field, ".handling_levels"), "at most 3");
  for (int i = 0; i < f.handling_levels_size(); ++i) {
    if (f.handling_levels(i) < 1 || f.handling_levels(i) > 3)
      return Invalid(Item(field, "handling_levels", i), "must be 1-3");
  }
  if (!f.assigned_agent_id().empty()) {
    CRM_RETURN_IF_ERROR(
        api::RequiredId(absl::StrCat(field, ".assigned_agent_id"), f.assigned_agent_id()));
    if (f.unassigned())
      return Invalid(absl::StrCat(field, ".unassigned"), "not with assigned_agent_id");
  }
  if (customer && !f.tags().empty())
    return Invalid(absl::StrCat(field, ".tags"), "tags are staff labels");
  if (f.tags_size() > kMaxTags)
    return Invalid(absl::StrCat(field, ".tags"), absl::StrCat("at most ", kMaxTags));
  for (int i = 0; i < f.tags_size(); ++i) {
    CRM_ASSIGN_OR_RETURN(std::string normal, NormalizeTag(Item(field, "tags", i), f.tags(i)));
    if (normal != f.tags(i))
      return Invalid(Item(field, "tags", i), "tags are kept in lower case; send it so");
  }
  CRM_RETURN_IF_ERROR(CheckRange(field, "created_after", f.has_created_after(), f.created_after(),
                                 "created_before", f.has_created_before(), f.created_before()));
  return CheckRange(field, "updated_after", f.has_updated_after(), f.updated_after(),
                    "updated_before", f.has_updated_before(), f.updated_before());
}

bool Matches(const v1::TicketFilter& f, const TicketSummary& s, absl::Time now) {
  if (!AnyOf(f.statuses(), s.status) || !AnyOf(f.priorities(), s.priority) ||
      !AnyOf(f.channels(), s.channel) || !AnyOf(f.categories(), s.category) ||
      !AnyOf(f.handling_levels(), s.level)) {
    return false;
  }
  if (!f.assigned_agent_id().empty() && s.agent_id != f.assigned_agent_id()) return false;
  if (f.unassigned() && !s.agent_id.empty()) return false;
  for (const std::string& tag : f.tags()) {
    if (std::find(s.tags.begin(), s.tags.end(), tag) == s.tags.end()) return false;
  }
  if (!InRange(s.created, f.has_created_after(), f.created_after(), f.has_created_before(),
               f.created_before()) ||
      !InRange(s.updated, f.has_updated_after(), f.updated_after(), f.has_updated_before(),
               f.updated_before())) {
    return false;
  }
  return f.sla_conditions().empty() || AnyOf(f.sla_conditions(), ConditionAt(s, now));
}

bool IsEmpty(const v1::TicketFilter& f) { return f.ByteSizeLong() == 0; }

std::string OrderKey(absl::Time created, absl::string_view customer_id,
                     absl::string_view ticket_id) {
  return Key().Time(created).Str(customer_id).Str(ticket_id).Build();
}

std::optional<OrderPosition> ParseOrderKey(absl::string_view key) {
  KeyReader r(key);
  auto created = r.Time();
  auto cid = r.Str();
  auto tid = r.Str();
  if (!created || !cid || !tid || !r.done() || cid->empty() || tid->empty()) return std::nullopt;
  return OrderPosition{*created, std::move(*cid), std::move(*tid)};
}

std::string AllPrefix() { return Key().Str("all").Build(); }
std::string CustomerPrefix(absl::string_view customer_id) {
  return Key().Str("customer").Str(customer_id).Build();
}

std::vector<std::string> IndexPrefixesOf(const v1::Ticket& t) {
  if (t.ticket_id().empty()) return {};
  std::vector<std::string> p = {
      AllPrefix(),
      CustomerPrefix(t.customer_id()),
      Key().Str("status").U64(t.status()).Build(),
      Key().Str("priority").U64(t.priority()).Build(),
      Key().Str("channel").U64(t.channel()).Build(),
      Key().Str("queue").U64(t.category()).U64(static_cast<uint64_t>(t.handling_level())).Build(),
      Key().Str("agent").Str(t.assigned_agent_id()).Build(),
  };
  for (const std::string& tag : t.tags()) p.push_back(Key().Str("tag").Str(tag).Build());
  return p;
}

std::vector<std::string> PrefixesToRead(const v1::TicketFilter& f, absl::string_view customer_id) {
  if (!customer_id.empty()) return {CustomerPrefix(customer_id)};
  if (!f.tags().empty()) return {Key().Str("tag").Str(f.tags(0)).Build()};
  if (!f.assigned_agent_id().empty())
    return {Key().Str("agent").Str(f.assigned_agent_id()).Build()};
  if (f.unassigned()) return {Key().Str("agent").Str("").Build()};
  std::vector<std::string> p;
  if (!f.categories().empty() || !f.handling_levels().empty()) {
    std::vector<int> categories(f.categories().begin(), f.categories().end());
    std::vector<int> levels(f.handling_levels().begin(), f.handling_levels().end());
    if (categories.empty()) {
      for (int c = v1::TicketCategory_MIN + 1; c <= v1::TicketCategory_MAX; ++c)
        categories.push_back(c);
    }
    if (levels.empty()) levels = {1, 2, 3};
    for (int c : categories) {
      for (int l : levels)
        p.push_back(
            Key().Str("queue").U64(static_cast<uint64_t>(c)).U64(static_cast<uint64_t>(l)).Build());
    }
  } else if (!f.statuses().empty()) {
    for (int s : f.statuses())
      p.push_back(Key().Str("status").U64(static_cast<uint64_t>(s)).Build());
  } else if (!f.priorities().empty()) {
    for (int s : f.priorities())
      p.push_back(Key().Str("priority").U64(static_cast<uint64_t>(s)).Build());
  } else if (!f.channels().empty()) {
    for (int s : f.channels())
      p.push_back(Key().Str("channel").U64(static_cast<uint64_t>(s)).Build());
  } else {
    p.push_back(AllPrefix());
  }
  // A value named twice is read once.
  std::sort(p.begin(), p.end());
  p.erase(std::unique(p.begin(), p.end()), p.end());
  return p;
}

}  // namespace crm::complaint_ticket
