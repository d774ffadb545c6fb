#include "services/complaint_ticket/complaint_ticket_component.h"

#include <algorithm>
#include <optional>

#include "absl/flags/flag.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/text/file.h"
#include "services/complaint_ticket/knowledge_base.h"
#include "services/complaint_ticket/sla_rules.h"

ABSL_FLAG(std::string, lexicon_file, "",
          "severity lexicon (crm.internal.SeverityLexicon, text format); empty: the one built into "
          "the binary");
ABSL_FLAG(std::string, severity_model_file, "",
          "learned severity model (crm-severity-fit --write_model); empty: the one built into the "
          "binary");
ABSL_FLAG(bool, severity_model, true,
          "judge severity with the learned model as well as the lexicon; false: the lexicon alone");
ABSL_FLAG(int, sla_sweep_interval_s, 60, "how often deadlines and promised callbacks are checked");
ABSL_FLAG(
    std::string, sla_rules_file, "",
    "SLA rules (crm.internal.SlaRules, text format): business calendars, promises per priority, "
    "escalation; re-read when it changes. Empty: the rules built into the binary");
ABSL_FLAG(int, sla_rules_check_interval_s, 5, "how often --sla_rules_file is checked for changes");
ABSL_FLAG(int, kb_settle_interval_s, 300,
          "how often knowledge-base suggestions past their 24-hour window are settled as "
          "deflected");

namespace crm::complaint_ticket {
namespace {

// --lexicon_file when given, else the lexicon built into the binary.
absl::StatusOr<internal::SeverityLexicon> LoadLexicon() {
  if (const std::string path = absl::GetFlag(FLAGS_lexicon_file); !path.empty()) {
    return text::ParseFile(path, "--lexicon_file", ParseLexicon);
  }
  return ParseBuiltInLexicon();
}

// --severity_model_file when given, else the model built into the binary; none with
// --severity_model=false.
absl::StatusOr<std::optional<SeverityModel>> LoadSeverityModel() {
  if (!absl::GetFlag(FLAGS_severity_model)) return std::nullopt;
  if (const std::string path = absl::GetFlag(FLAGS_severity_model_file); !path.empty()) {
    return text::ParseFile(path, "--severity_model_file", ParseSeverityModel);
  }
  return ParseBuiltInSeverityModel();
}

// Puts --sla_rules_file (or the built-in rules) in force for every ticket, and re-reads the file
// when it changes: new rules hold for tickets opened from then on; a file that does not parse or
// check is refused and the rules in force stay (logged, counted as refused).
absl::Status ServeSlaRules(ComplaintTicketComponent& c, const rpc::ServiceContext& context) {
  const std::string path = absl::GetFlag(FLAGS_sla_rules_file);
  if (path.empty()) {
    // Parsed once per process (SlaRulesInForce starts from it too).
    CRM_ASSIGN_OR_RETURN(std::shared_ptr<const SlaRules> built_in, ParseBuiltInSlaRules());
    SlaRulesInForce::Process().Reset(std::move(built_in));
    return absl::OkStatus();
  }
  auto* file = c.Make<SlaRulesFile>(path);
  CRM_ASSIGN_OR_RETURN(SlaRules read, file->Read());
  SlaRulesInForce::Process().Reset(std::make_shared<const SlaRules>(std::move(read)));
  auto& reloads = metrics::CounterFamily(
      context.metrics->registry(), "crm_sla_rules_reloads_total",
      "Changes of --sla_rules_file: applied, or refused (the rules in force stay).");
  c.RunEvery(absl::Seconds(std::max(1, absl::GetFlag(FLAGS_sla_rules_check_interval_s))),
             [file, clock = context.clock, applied = &reloads.Add({{"result", "applied"}}),
              refused = &reloads.Add({{"result", "refused"}})] {
               auto changed = file->ReadIfChanged();
               if (!changed.ok()) {
                 refused->Increment();
                 log::Warning("sla rules not reloaded; the rules in force stay",
                              {{"error", changed.status().ToString()}});
               } else if (changed->has_value()) {
                 SlaRulesInForce::Process().Adopt(
                     std::make_shared<const SlaRules>(**std::move(changed)), clock->Now());
                 applied->Increment();
                 log::Info("sla rules reloaded: tickets opened from now on get them",
                           {{"file", file->path()}});
               }
             });
  return absl::OkStatus();
}

// Articles are shown to every customer: admins and supervisors (agents of the SLA rules'
// supervisor level) publish and retire them, as they manage canned replies.
ArticleEditorCheck ArticleEditors(ComplaintTicketStore* store) {
  return [store](const auth::Caller& caller) -> absl::Status {
    if (!rpc::IsAgent(caller)) return absl::OkStatus();
    CRM_ASSIGN_OR_RETURN(const auto agents, store->Agents());
    const int supervisor = SlaRulesInForce::Process().Latest()->supervisor_level();
    for (const auto& a : agents) {
      if (a.agent_id() != caller.subject) continue;
      if (a.level() >= supervisor) return absl::OkStatus();
      return absl::PermissionDeniedError(
          absl::StrCat("agent_id: a level ", a.level(),
                       " agent cannot publish or retire articles; supervisors are level ",
                       supervisor, " and above"));
    }
    return absl::PermissionDeniedError(absl::StrCat("agent_id: no agent \"", caller.subject, "\""));
  };
}

absl::Status Wire(ComplaintTicketComponent& c, const rpc::ServiceContext& context) {
  CRM_ASSIGN_OR_RETURN(internal::SeverityLexicon lexicon, LoadLexicon());
  CRM_ASSIGN_OR_RETURN(std::optional<SeverityModel> severity_model, LoadSeverityModel());
  CRM_RETURN_IF_ERROR(ServeSlaRules(c, context));
  CRM_RETURN_IF_ERROR(c.ProduceEvents());
  auto* store = c.Make<ComplaintTicketStore>(context.store, c.outbox());
  // Tickets written before the listing and search indexes existed get their rows before serving.
  CRM_RETURN_IF_ERROR(store->IndexExistingTickets());
  ComplaintTicketService* service = c.Serve(std::make_unique<ComplaintTicketService>(
      store, std::move(lexicon), std::move(severity_model), context.clock,
      c.writes("ticket-writes", 32), context.backends, context.metrics->registry()));
  // The knowledge base: articles on every shard, a customer's suggestions on theirs, settled as
  // TICKET_OPENED inside OpenTicket's transaction or as deflected once the window has passed.
  auto* knowledge_base =
      c.Make<KnowledgeBaseService>(context.store, context.clock, c.writes("ticket-writes", 32),
                                   context.metrics->registry(), ArticleEditors(store));
  c.AlsoServe(knowledge_base, v1::KnowledgeBaseService::service_full_name());
  service->OnTicketOpened(std::bind_front(&KnowledgeBaseService::OnTicketOpened, knowledge_base));
  c.ConsumeEvents(ComplaintTicketService::EventsHandled(),
                  [service, knowledge_base](store::Transaction& txn, const v1::Event& event) {
                    CRM_RETURN_IF_ERROR(service->HandleEvent(txn, event));
                    if (!event.has_customer_erased()) return absl::OkStatus();
                    return knowledge_base->EraseCustomer(txn, event.customer_id());
                  });
  c.OnStart([service, knowledge_base] {
    service->CountOpen();
    knowledge_base->RefreshGauges();
  });
  c.RunEvery(absl::Seconds(std::max(1, absl::GetFlag(FLAGS_kb_settle_interval_s))),
             [knowledge_base, clock = context.clock] {
               if (auto settled = knowledge_base->Settle(clock->Now()); !settled.ok())
                 log::Warning("knowledge-base suggestions not settled",
                              {{"error", settled.status().ToString()}});
             });
  c.RunEvery(absl::Seconds(absl::GetFlag(FLAGS_sla_sweep_interval_s)), [service] {
    v1::RunSlaSweepResponse result;
    if (absl::Status s = service->Sweep(&result); !s.ok())
      log::Warning("sla sweep failed", {{"error", s.ToString()}});
  });
  return absl::OkStatus();
}

}  // namespace

rpc::ServiceSpec ComplaintTicketSpec() {
  std::vector<std::string> families = ComplaintTicketStore::ColumnFamilies();
  for (std::string& f : KnowledgeBaseService::ColumnFamilies()) families.push_back(std::move(f));
  return ComplaintTicketComponent::SpecOf("complaint-ticket", std::move(families), &Wire);
}

}  // namespace crm::complaint_ticket
