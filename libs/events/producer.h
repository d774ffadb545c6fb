// What a service that emits events owns: its outbox, a dispatcher to the consumers configured by
// --event_sinks, and the dead-letter admin service (crm.v1.EventAdminService).
//
// --event_sinks (env CRM_EVENT_SINKS): consumers separated by ';'. "default" means every other
// service in the registry (rpc::DataServices()), each of which tells the dispatcher which events it
// subscribes to; "none" none; a name ("loyalty") takes its address from --loyalty_address;
// "name=address" names any sink explicitly (tests, tools), e.g. "loyalty;audit=10.0.0.9:7000".
// --event_max_backoff_ms (default 10000) caps the wait between attempts to an unreachable consumer;
// --event_batch_size (default 500) is the number of events per delivery call.
// Webhooks (outside systems' subscriptions, webhooks.h) are made, listed and deleted through the
// same admin service and delivered by the same dispatcher; --webhook_allowed_hosts enables them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "crm/v1/events.grpc.pb.h"
#include "libs/events/dispatcher.h"
#include "libs/events/outbox.h"
#include "libs/events/webhooks.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/service_main.h"

ABSL_DECLARE_FLAG(std::string, event_sinks);
ABSL_DECLARE_FLAG(int, event_max_backoff_ms);

namespace crm::events {

class EventProducer {
 public:
  static absl::StatusOr<std::unique_ptr<EventProducer>> Create(const rpc::ServiceContext& context,
                                                               DispatcherOptions options = {});
  ~EventProducer();

  Outbox& outbox() { return *outbox_; }
  Dispatcher& dispatcher() { return *dispatcher_; }
  void Register(rpc::Server& server);
  void Start() { dispatcher_->Start(); }
  void Stop() { dispatcher_->Stop(); }

 private:
  class AdminService;
  EventProducer() = default;
  std::vector<std::unique_ptr<rpc::ChannelSet>> own_channels_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<Webhooks> webhooks_;
  std::unique_ptr<AdminService> admin_;
};

}  // namespace crm::events
