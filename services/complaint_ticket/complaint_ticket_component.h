// complaint-ticket's wiring: what the process builds on its store (store, event producer and
// consumer, executors, background work), its flags, and its ServiceSpec for RunService and the
// tests' ServiceHarness. The RPC handlers are in complaint_ticket_service.h.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/rpc/service_runtime.h"
#include "services/complaint_ticket/complaint_ticket_service.h"

namespace crm::complaint_ticket {

class ComplaintTicketComponent final : public rpc::Component {
 public:
  // What RunService and the tests\' ServiceHarness run: name, default ports, column families.
  static rpc::ServiceSpec Spec();
  static absl::StatusOr<std::unique_ptr<ComplaintTicketComponent>> Create(
      const rpc::ServiceContext& context);
  ~ComplaintTicketComponent() override;
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  ComplaintTicketService& service() { return *service_; }

 private:
  ComplaintTicketComponent() = default;
  std::unique_ptr<events::EventProducer> events_;
  std::unique_ptr<ComplaintTicketStore> store_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<ComplaintTicketService> service_;
  std::unique_ptr<events::EventConsumer> consumer_;
  absl::Duration sweep_interval_;
  rpc::PeriodicTask sweeper_;
};

}  // namespace crm::complaint_ticket
