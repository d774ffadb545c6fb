// complaint-ticket's process: the data-service shape (libs/events/data_service.h) around
// ComplaintTicketService. Its wiring (complaint_ticket_component.cc) builds the severity lexicon,
// puts the SLA rules in force (--sla_rules_file, else the built-in ones; re-read every
// --sla_rules_check_interval_s when the file changes, a bad file refused and counted in
// crm_sla_rules_reloads_total), and builds the event producer, store, service, event consumer and
// the SLA sweep; its other flags: --lexicon_file, --severity_model_file, --severity_model (false:
// the lexicon alone, as the integration suites that pin a ticket's level run it),
// --sla_sweep_interval_s.
#pragma once

#include "absl/flags/declare.h"
#include "libs/events/data_service.h"
#include "services/complaint_ticket/complaint_ticket_service.h"

ABSL_DECLARE_FLAG(bool, severity_model);

namespace crm::complaint_ticket {

// What RunService and the tests' ServiceHarness run: name, default ports, column families and the
// wiring.
rpc::ServiceSpec ComplaintTicketSpec();
using ComplaintTicketComponent = events::DataService<ComplaintTicketService, ComplaintTicketSpec>;

}  // namespace crm::complaint_ticket
