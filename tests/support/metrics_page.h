// A service's /metrics page as Prometheus scrapes it, what it shows, and promtool's verdict on it.
// Header-only, Catch2 tests only (a failed scrape fails the test there).
#pragma once

#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "tests/support/http.h"

namespace crm::testing {

// The body of GET /metrics on `port` (the harness's metrics().port()).
inline std::string MetricsPage(int port) {
  auto page = HttpGet(port, "/metrics");
  REQUIRE(page.ok());
  return page->body;
}

// `page` shows each of `samples` (a sample as exposed, e.g. `crm_orders_total{kind="x"} 2`, or a
// part of one), each checked on its own.
inline void CheckPageShows(const std::string& page, const std::vector<std::string>& samples) {
  for (const std::string& sample : samples) {
    INFO("on the page: " << sample);
    CHECK(page.find(sample) != std::string::npos);
  }
}

// `page` is a valid Prometheus text exposition by `promtool check metrics` (its lint included).
inline void CheckPromtoolAccepts(const std::string& page) {
  const auto check = RunCommand("promtool check metrics", page);
  INFO(check.output);
  CHECK(check.exit_code == 0);
}

}  // namespace crm::testing
