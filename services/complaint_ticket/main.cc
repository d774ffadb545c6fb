// complaint-ticket: every complaint handled, every promise kept. Wiring only; see complaint_ticket_service.h.
#include "libs/rpc/service_main.h"
#include "services/complaint_ticket/complaint_ticket_service.h"

int main(int argc, char** argv) {
  crm::rpc::ServiceSpec spec;
  spec.name = "complaint-ticket";
  spec.usage = "complaint-ticket: complaints from every channel, severity, routing, SLAs, compensation, CSAT";
  spec.default_listen = "127.0.0.1:50054";
  spec.default_metrics_listen = "127.0.0.1:9154";
  spec.column_families = crm::complaint_ticket::ComplaintTicketStore::ColumnFamilies();
  spec.build = [](crm::rpc::ServiceContext& context) -> absl::StatusOr<std::unique_ptr<crm::rpc::Component>> {
    auto component = crm::complaint_ticket::ComplaintTicketComponent::Create(context);
    if (!component.ok()) return component.status();
    return std::unique_ptr<crm::rpc::Component>(std::move(*component));
  };
  return crm::rpc::RunService(argc, argv, spec);
}
