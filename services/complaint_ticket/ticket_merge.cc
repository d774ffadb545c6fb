#include "services/complaint_ticket/ticket_merge.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "services/complaint_ticket/ticket_index.h"

namespace crm::complaint_ticket {
namespace {

std::string StatusWord(v1::TicketStatus s) {
  return absl::AsciiStrToLower(v1::TicketStatus_Name(s).substr(sizeof("TICKET_STATUS_") - 1));
}

v1::TicketMessage& Append(v1::Ticket& t, v1::TicketMessage m) {
  m.set_message_id(absl::StrCat("m", t.messages_size() + 1));
  *t.add_messages() = std::move(m);
  return *t.mutable_messages(t.messages_size() - 1);
}

v1::TicketMessage Notice(const std::string& text, const std::string& actor, absl::Time now) {
  v1::TicketMessage m;
  api::SetTimestamp(now, m.mutable_time());
  m.set_author(v1::MESSAGE_AUTHOR_SYSTEM);
  m.set_agent_id(actor);
  m.set_text(text);
  return m;
}

}  // namespace

absl::Status MergeInto(v1::Ticket& source, v1::Ticket& target, const std::string& actor,
                       bool actor_is_agent, absl::Time now) {
  if (source.status() != v1::TICKET_STATUS_OPEN &&
      source.status() != v1::TICKET_STATUS_IN_PROGRESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("source_ticket_id: only an open or in-progress ticket merges; it is ",
                     StatusWord(source.status()),
                     source.merged_into_ticket_id().empty()
                         ? ""
                         : absl::StrCat(" (merged into ", source.merged_into_ticket_id(), ")")));
  }
  for (const v1::Callback& c : source.callbacks()) {
    if (c.status() == v1::CALLBACK_STATUS_PROMISED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "source_ticket_id: make or complete its promised callback ", c.callback_id(), " first"));
    }
  }
  if (target.status() == v1::TICKET_STATUS_CLOSED) {
    return absl::FailedPreconditionError(
        "target_ticket_id: the ticket is closed; merge into an open one");
  }
  for (const v1::TicketMessage& m : source.messages()) {
    v1::TicketMessage copy = m;
    copy.set_merged_from_ticket_id(source.ticket_id());
    Append(target, std::move(copy));
  }
  std::set<std::string> tags(target.tags().begin(), target.tags().end());
  for (const std::string& tag : source.tags()) {
    if (static_cast<int>(tags.size()) < kMaxTags) tags.insert(tag);
  }
  target.clear_tags();
  for (const std::string& tag : tags) target.add_tags(tag);
  target.add_merged_ticket_ids(source.ticket_id());
  const std::string by = actor_is_agent ? actor : "";
  Append(target, Notice(absl::StrCat("Ticket ", source.ticket_id(),
                                     " about the same problem was merged into this one."),
                        by, now));
  source.set_status(v1::TICKET_STATUS_CLOSED);
  source.set_merged_into_ticket_id(target.ticket_id());
  Append(source, Notice(absl::StrCat("Merged into ticket ", target.ticket_id(),
                                     ": the conversation continues there."),
                        by, now));
  // Who merged, for the agents (an admin is not an agent id).
  v1::TicketMessage note = Notice(absl::StrCat("merged by ", actor), by, now);
  note.set_internal(true);
  Append(target, note);
  return absl::OkStatus();
}

}  // namespace crm::complaint_ticket
