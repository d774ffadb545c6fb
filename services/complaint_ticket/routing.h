// Who handles a ticket (seed 001 §4(2), seed 002 §3.1): agents receive tickets at their level; a
// customer's new ticket goes to the agent who handled them last (or their enterprise's named agent)
// when that agent is available, has room, handles the category and is senior enough; otherwise to
// the least loaded available agent at the ticket's level who handles the category, then to a more
// senior one. Pure function.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crm/v1/complaint_ticket.pb.h"

namespace crm::complaint_ticket {

std::optional<std::string> ChooseAgent(const std::vector<v1::Agent>& agents, int level,
                                       v1::TicketCategory category,
                                       const std::string& preferred_agent_id);

// An agent can take a ticket: available, under capacity, handles the category (or all, when none
// listed).
bool CanTake(const v1::Agent& agent, v1::TicketCategory category);

}  // namespace crm::complaint_ticket
