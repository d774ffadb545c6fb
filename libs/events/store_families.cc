#include "libs/events/store_families.h"

#include <utility>

#include "libs/events/consumer.h"
#include "libs/events/outbox.h"

namespace crm::events {

std::vector<std::string> WithConsumerFamilies(std::vector<std::string> own) {
  own.push_back(EventConsumer::kConsumedFamily);
  return own;
}

std::vector<std::string> WithConsumerAndOutboxFamilies(std::vector<std::string> own) {
  std::vector<std::string> families = WithConsumerFamilies(std::move(own));
  for (const auto& f : Outbox::ColumnFamilies()) families.push_back(f);
  return families;
}

}  // namespace crm::events
