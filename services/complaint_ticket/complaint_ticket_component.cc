#include "services/complaint_ticket/complaint_ticket_component.h"

#include "absl/flags/flag.h"
#include "absl/functional/bind_front.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, lexicon_file, "",
          "severity lexicon (crm.internal.SeverityLexicon, text format); empty: the one built into "
          "the binary");
ABSL_FLAG(int, sla_sweep_interval_s, 60, "how often deadlines and promised callbacks are checked");

namespace crm::complaint_ticket {
namespace {

// --lexicon_file when given, else the lexicon built into the binary.
absl::StatusOr<internal::SeverityLexicon> LoadLexicon() {
  internal::SeverityLexicon lexicon = BuiltInLexicon();
  if (const std::string path = absl::GetFlag(FLAGS_lexicon_file); !path.empty()) {
    CRM_ASSIGN_OR_RETURN(lexicon, text::ParseFile(path, "--lexicon_file", ParseLexicon));
  }
  if (lexicon.intensity().empty())
    return absl::InternalError("the built-in severity lexicon did not parse");
  return lexicon;
}

}  // namespace

rpc::ServiceSpec ComplaintTicketComponent::Spec() {
  return rpc::ServiceSpec::Of<ComplaintTicketComponent>("complaint-ticket",
                                                        ComplaintTicketStore::ColumnFamilies());
}

absl::StatusOr<std::unique_ptr<ComplaintTicketComponent>> ComplaintTicketComponent::Create(
    const rpc::ServiceContext& context) {
  auto c = std::unique_ptr<ComplaintTicketComponent>(new ComplaintTicketComponent(context));
  CRM_ASSIGN_OR_RETURN(internal::SeverityLexicon lexicon, LoadLexicon());
  CRM_RETURN_IF_ERROR(c->ProduceEvents());
  c->store_ = std::make_unique<ComplaintTicketStore>(context.store, c->outbox());
  c->service_ = std::make_unique<ComplaintTicketService>(
      c->store_.get(), std::move(lexicon), context.clock, c->writes("ticket-writes", 32),
      context.backends, context.metrics->registry());
  ComplaintTicketService* service = c->service_.get();
  c->Serve(service);
  c->ConsumeEvents(ComplaintTicketService::EventsHandled(),
                   absl::bind_front(&ComplaintTicketService::HandleEvent, service));
  c->RunEvery(absl::Seconds(absl::GetFlag(FLAGS_sla_sweep_interval_s)), [service] {
    v1::RunSlaSweepResponse result;
    if (absl::Status s = service->Sweep(&result); !s.ok())
      log::Warning("sla sweep failed", {{"error", s.ToString()}});
  });
  return c;
}

}  // namespace crm::complaint_ticket
