#include "services/complaint_ticket/complaint_ticket_component.h"

#include "absl/flags/flag.h"
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

absl::Status Wire(ComplaintTicketComponent& c, const rpc::ServiceContext& context) {
  CRM_ASSIGN_OR_RETURN(internal::SeverityLexicon lexicon, LoadLexicon());
  CRM_RETURN_IF_ERROR(c.ProduceEvents());
  auto* store = c.Make<ComplaintTicketStore>(context.store, c.outbox());
  ComplaintTicketService* service = c.Serve(std::make_unique<ComplaintTicketService>(
      store, std::move(lexicon), context.clock, c.writes("ticket-writes", 32), context.backends,
      context.metrics->registry()));
  c.ConsumeEvents();
  c.OnStart([service] { service->CountOpen(); });
  c.RunEvery(absl::Seconds(absl::GetFlag(FLAGS_sla_sweep_interval_s)), [service] {
    v1::RunSlaSweepResponse result;
    if (absl::Status s = service->Sweep(&result); !s.ok())
      log::Warning("sla sweep failed", {{"error", s.ToString()}});
  });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec ComplaintTicketSpec() {
  return ComplaintTicketComponent::SpecOf("complaint-ticket",
                                          ComplaintTicketStore::ColumnFamilies(), &Wire);
}

}  // namespace crm::complaint_ticket
