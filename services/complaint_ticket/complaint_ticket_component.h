// complaint-ticket's wiring: what the process builds on its store (severity lexicon, event
// producer, store, service, event consumer, the SLA sweep), its flags, and its ServiceSpec for
// RunService and the tests' ServiceHarness. The RPC handlers are in complaint_ticket_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/events/data_service.h"
#include "services/complaint_ticket/complaint_ticket_service.h"

namespace crm::complaint_ticket {

class ComplaintTicketComponent final : public events::DataServiceComponent {
 public:
  // What RunService and the tests' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<ComplaintTicketComponent>> Create(
      const rpc::ServiceContext& context);
  // Stops the background work before the parts it uses go (the runtime has stopped it already).
  ~ComplaintTicketComponent() override { Stop(); }
  ComplaintTicketService& service() { return *service_; }

 private:
  using DataServiceComponent::DataServiceComponent;
  void OnStart() override { service_->CountOpen(); }

  std::unique_ptr<ComplaintTicketStore> store_;
  std::unique_ptr<ComplaintTicketService> service_;
};

}  // namespace crm::complaint_ticket
