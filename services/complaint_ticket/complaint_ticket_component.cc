#include "services/complaint_ticket/complaint_ticket_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "absl/strings/str_cat.h"
#include "libs/log/log.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, lexicon_file, "",
          "severity lexicon (crm.internal.SeverityLexicon, text format); empty: the one built into "
          "the binary");
ABSL_FLAG(int, sla_sweep_interval_s, 60, "how often deadlines and promised callbacks are checked");

namespace crm::complaint_ticket {

rpc::ServiceSpec ComplaintTicketComponent::Spec() {
  return rpc::ServiceSpec::Of<ComplaintTicketComponent>("complaint-ticket",
                                                        ComplaintTicketStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<ComplaintTicketComponent>> ComplaintTicketComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<ComplaintTicketComponent>(new ComplaintTicketComponent());
  internal::SeverityLexicon lexicon = BuiltInLexicon();
  if (const std::string path = absl::GetFlag(FLAGS_lexicon_file); !path.empty()) {
    auto contents = text::ReadFile(path);
    if (!contents.ok())
      return absl::NotFoundError(absl::StrCat("--lexicon_file: ", contents.status().message()));
    auto parsed = ParseLexicon(*contents);
    if (!parsed.ok())
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
    lexicon = *std::move(parsed);
  }
  if (lexicon.intensity().empty())
    return absl::InternalError("the built-in severity lexicon did not parse");
  // customer-profile weighs complaints, missed promises and satisfaction into churn risk and KPIs.
  auto events = events::EventProducer::Create(context, {"customer-profile"});
  if (!events.ok()) return events.status();
  c->events_ = std::move(*events);
  c->store_ = std::make_unique<ComplaintTicketStore>(context.store, &c->events_->outbox());
  c->writes_ = std::make_unique<rpc::Executor>("ticket-writes", 32);
  c->service_ = std::make_unique<ComplaintTicketService>(
      c->store_.get(), std::move(lexicon), context.clock, c->writes_.get(), context.backends,
      context.metrics->registry());
  c->consumer_ = std::make_unique<events::EventConsumer>(
      context.store, absl::bind_front(&ComplaintTicketService::HandleEvent, c->service_.get()),
      c->writes_.get(), context.metrics->registry());
  c->sweep_interval_ = absl::Seconds(absl::GetFlag(FLAGS_sla_sweep_interval_s));
  return c;
}

ComplaintTicketComponent::~ComplaintTicketComponent() { Stop(); }

void ComplaintTicketComponent::Register(rpc::Server& server) {
  server.AddService(service_.get(), v1::ComplaintTicketService::service_full_name());
  server.AddService(consumer_.get(), v1::EventSink::service_full_name());
  events_->Register(server);
}

void ComplaintTicketComponent::Start() {
  events_->Start();
  service_->CountOpen();
  sweeper_.Start(
      sweep_interval_,
      [this] {
        v1::RunSlaSweepResponse result;
        if (absl::Status s = service_->Sweep(&result); !s.ok())
          log::Warning("sla sweep failed", {{"error", s.ToString()}});
      },
      rpc::PeriodicTask::FirstRun::kAfterInterval);
}

void ComplaintTicketComponent::Stop() {
  sweeper_.Stop();
  if (events_) events_->Stop();
}

}  // namespace crm::complaint_ticket
