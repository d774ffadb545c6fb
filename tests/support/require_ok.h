#pragma once

// REQUIRE_OK(expression): a Catch2 REQUIRE that an absl::Status is OK, printing the status (its
// code and message: for a process that did not start, the reason and the process's own output) when
// it is not, instead of only "false".

#include "absl/status/status.h"
#include "catch2/catch.hpp"

#define REQUIRE_OK(expression)                             \
  do {                                                     \
    const ::absl::Status require_ok_status = (expression); \
    INFO(require_ok_status.ToString());                    \
    REQUIRE(require_ok_status.ok());                       \
  } while (false)
