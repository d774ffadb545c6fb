// The secondary indexes that listings and searches of tickets read (ComplaintTicketStore keeps them
// in the ticket's own transaction): one row per ticket under each of its dimensions, keyed
//
//   dimension prefix, create time, customer_id, ticket_id  ->  the ticket's summary
//
// Dimensions: every ticket ("all"), its customer, status, priority, channel, queue (category and
// handling level), assigned agent ("" when none) and each of its tags. The part after the prefix is
// the ticket's order key, the same under every dimension, so a listing reads its filter's most
// selective dimension in time order, resumes at an order key, and checks the rest of the filter on
// the summary without reading the ticket. Pure functions over store::Key encodings.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

// At most this many tags on a ticket, and values in each list of a filter.
inline constexpr int kMaxTags = 20;
inline constexpr int kMaxFilterValues = 20;

// What a filter is checked against: the ticket's fields that listings narrow by.
struct TicketSummary {
  v1::TicketStatus status = v1::TICKET_STATUS_UNSPECIFIED;
  v1::Priority priority = v1::PRIORITY_UNSPECIFIED;
  v1::TicketChannel channel = v1::TICKET_CHANNEL_UNSPECIFIED;
  v1::TicketCategory category = v1::TICKET_CATEGORY_UNSPECIFIED;
  int level = 0;
  std::string agent_id;
  absl::Time created, updated;
  bool breach_recorded = false;
  // The earliest open deadline, and when the first one becomes at risk (none: no open deadline).
  std::optional<absl::Time> earliest_due, earliest_risk;
  std::vector<std::string> tags;
};

TicketSummary SummaryOf(const v1::Ticket& ticket);
std::string EncodeSummary(const TicketSummary& summary);
std::optional<TicketSummary> DecodeSummary(absl::string_view bytes);

v1::SlaCondition ConditionAt(const TicketSummary& summary, absl::Time now);

// A tag as kept: lower case; INVALID_ARGUMENT naming `field` when it is not 1-40 characters of
// a-z, 0-9, '-', '_', ':'.
absl::StatusOr<std::string> NormalizeTag(absl::string_view field, absl::string_view tag);

// The filter's values checked, each error naming its field under `field` ("filter.statuses[1]").
// `customer`: a customer's own listing, which may not narrow by tags (staff labels).
absl::Status ValidateFilter(absl::string_view field, const v1::TicketFilter& filter, bool customer);
// Whether the ticket summarised passes every condition of the (validated) filter at `now`.
bool Matches(const v1::TicketFilter& filter, const TicketSummary& summary, absl::Time now);
bool IsEmpty(const v1::TicketFilter& filter);

// The order key of a ticket: its create time, customer and id.
std::string OrderKey(absl::Time created, absl::string_view customer_id,
                     absl::string_view ticket_id);
struct OrderPosition {
  absl::Time created;
  std::string customer_id, ticket_id;
};
// Nullopt unless `key` is exactly an order key.
std::optional<OrderPosition> ParseOrderKey(absl::string_view key);

// The prefixes of every index row the ticket has (none for a ticket without an id).
std::vector<std::string> IndexPrefixesOf(const v1::Ticket& ticket);
// The prefixes a listing reads for `filter` (one customer's when `customer_id` is set): those of
// the filter's most selective dimension, one per value it allows.
std::vector<std::string> PrefixesToRead(const v1::TicketFilter& filter,
                                        absl::string_view customer_id);
// The row under `prefix` of the ticket at order key `order_key`.
inline std::string IndexKey(absl::string_view prefix, absl::string_view order_key) {
  std::string k(prefix);
  k.append(order_key.data(), order_key.size());
  return k;
}
// The prefix of every ticket (for reading summaries by order key).
std::string AllPrefix();
// The prefix of one customer's tickets.
std::string CustomerPrefix(absl::string_view customer_id);

}  // namespace crm::complaint_ticket
