// What a producer's outbox holds, for tests that check which events a change wrote. Header-only,
// Catch2 tests only (a row that is not an event fails the test there).
#pragma once

#include <vector>

#include "catch2/catch.hpp"
#include "crm/v1/events.pb.h"
#include "libs/events/outbox.h"
#include "libs/store/store.h"

namespace crm::testing {

// Every event in `store`'s outbox, delivered or not, in the order it was written.
inline std::vector<v1::Event> OutboxEvents(store::Store& store) {
  std::vector<v1::Event> events;
  REQUIRE(store
              .Scan(store.cf(events::Outbox::kEventsFamily), "", "",
                    [&](absl::string_view, absl::string_view value) {
                      v1::Event e;
                      REQUIRE(e.ParseFromArray(value.data(), static_cast<int>(value.size())));
                      events.push_back(std::move(e));
                      return true;
                    })
              .ok());
  return events;
}

}  // namespace crm::testing
