// The column families a service's store holds for libs/events besides its own: the consumer's
// record of the events it applied and, in a service that also writes events, the outbox's.
#pragma once

#include <string>
#include <vector>

namespace crm::events {

// `own`, then the consumer's family.
std::vector<std::string> WithConsumerFamilies(std::vector<std::string> own);

// `own`, then the consumer's family, then the outbox's.
std::vector<std::string> WithConsumerAndOutboxFamilies(std::vector<std::string> own);

}  // namespace crm::events
