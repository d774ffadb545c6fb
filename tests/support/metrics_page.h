// A service's /metrics page as Prometheus scrapes it, and promtool's verdict on it. Header-only,
// Catch2 tests only (a failed scrape fails the test there).
#pragma once

#include <string>

#include "catch2/catch.hpp"
#include "tests/support/http.h"

namespace crm::testing {

// The body of GET /metrics on `port` (the harness's metrics().port()).
inline std::string MetricsPage(int port) {
  auto page = HttpGet(port, "/metrics");
  REQUIRE(page.ok());
  return page->body;
}

// `page` is a valid Prometheus text exposition by `promtool check metrics` (its lint included).
inline void CheckPromtoolAccepts(const std::string& page) {
  const auto check = RunCommand("promtool check metrics", page);
  INFO(check.output);
  CHECK(check.exit_code == 0);
}

}  // namespace crm::testing
