// complaint-ticket: every complaint handled, every promise kept. Wiring only; see
// complaint_ticket_component.h.
#include "libs/rpc/service_main.h"
#include "services/complaint_ticket/complaint_ticket_component.h"

int main(int argc, char** argv) {
  return crm::rpc::RunService(argc, argv, crm::complaint_ticket::ComplaintTicketComponent::Spec());
}
