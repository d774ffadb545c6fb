// Canned replies (issue 24, item 2): answers agents send again and again, stored as templates with
// {{variables}} filled in per ticket. Pure functions: checking a template, and rendering it with
// the values a reply gives and the ticket's own.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

// The variables the service fills from the ticket when the reply does not give them.
inline constexpr const char* kTicketVariables[] = {"customer_name", "order_id", "ticket_id",
                                                   "agent_name"};
inline constexpr int kMaxCannedReplies = 1000;

// A canned reply as PutCannedReply takes it (`field` is the request's, "canned_reply").
absl::Status ValidateCannedReply(absl::string_view field, const v1::CannedReply& reply);

// The reply's text with every variable replaced: from `given` (the request's, checked: each must be
// a variable of the template, INVALID_ARGUMENT on variables.<name> if not) or else from
// `from_ticket`. A variable with no value is INVALID_ARGUMENT on variables.<name>.
absl::StatusOr<std::string> RenderCannedReply(
    const v1::CannedReply& reply, const google::protobuf::Map<std::string, std::string>& given,
    const std::map<std::string, std::string>& from_ticket);

}  // namespace crm::complaint_ticket
