#include "services/complaint_ticket/routing.h"

#include <algorithm>

namespace crm::complaint_ticket {

bool CanTake(const v1::Agent& a, v1::TicketCategory category) {
  if (!a.available() || a.open_tickets() >= a.capacity()) return false;
  if (a.categories().empty()) return true;
  return std::find(a.categories().begin(), a.categories().end(), category) != a.categories().end();
}

std::optional<std::string> ChooseAgent(const std::vector<v1::Agent>& agents, int level,
                                       v1::TicketCategory category,
                                       const std::string& preferred_agent_id) {
  if (!preferred_agent_id.empty()) {
    for (const auto& a : agents) {
      if (a.agent_id() == preferred_agent_id && a.level() >= level && CanTake(a, category))
        return a.agent_id();
    }
  }
  // Least loaded by share of capacity, then fewest open tickets, then id (a stable answer).
  auto better = [](const v1::Agent* x, const v1::Agent* y) {
    const double lx = static_cast<double>(x->open_tickets()) / x->capacity();
    const double ly = static_cast<double>(y->open_tickets()) / y->capacity();
    if (lx != ly) return lx < ly;
    if (x->open_tickets() != y->open_tickets()) return x->open_tickets() < y->open_tickets();
    return x->agent_id() < y->agent_id();
  };
  for (int l = level; l <= 3; ++l) {
    const v1::Agent* best = nullptr;
    for (const auto& a : agents) {
      if (a.level() != l || !CanTake(a, category)) continue;
      if (best == nullptr || better(&a, best)) best = &a;
    }
    if (best != nullptr) return best->agent_id();
  }
  return std::nullopt;
}

}  // namespace crm::complaint_ticket
