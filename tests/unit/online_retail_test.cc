// crm-import's Online Retail adapter on a small export written for the purpose: what becomes an
// order, a return, a catalog item, and what is left out and counted.
#include "tools/online_retail.h"

#include <fstream>

#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "tests/support/temp_dir.h"

namespace crm::import {
namespace {

constexpr char kExport[] =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,UK\n"
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,UK\n"
    "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.00,17850.0,UK\n"
    "536366,71053,WHITE METAL LANTERN,2,2010-12-02 09:00:00,3.10,17850.0,UK\n"
    "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-03 10:00:00,1.69,13047.0,UK\n"
    "536368,84879,ASSORTED COLOUR BIRD ORNAMENT,4,2010-12-03 11:00:00,1.69,,UK\n"
    "536369,22752,\"SET 7 BABUSHKA NESTING BOXES, RED\",2,2010-12-04 10:00:00,0,13047.0,UK\n"
    "C536370,71053,WHITE METAL LANTERN,-7,2010-12-05 12:00:00,3.39,17850.0,UK\n"
    "C536371,22633,HAND WARMER UNION JACK,-3,2010-12-06 12:00:00,1.85,13047.0,UK\n";

TEST_CASE(
    "the Online Retail adapter turns invoices into orders, credit notes into returns of the "
    "latest earlier orders, and counts what it leaves out") {
  testing::TempDir dir;
  const std::string path = dir.Sub("export.csv");
  std::ofstream(path) << kExport;
  auto history = ReadOnlineRetail(path, "GBP");
  REQUIRE(history.ok());
  CHECK(history->lines_read == 9);
  CHECK(history->skipped.guest_lines == 1);     // no CustomerID
  CHECK(history->skipped.fee_lines == 1);       // POST
  CHECK(history->skipped.unusable_lines == 1);  // a zero price
  // 7 lantern units returned, 6 + 2 bought: all 7 come back, the latest order first; the hand
  // warmers were bought before the export.
  CHECK(history->skipped.unmatched_returned_units == 3);
  // Every product seen, credit notes included, in sku order.
  REQUIRE(history->catalog.size() == 4);
  CHECK(history->catalog[3].sku() == "85123A");
  CHECK(history->catalog[3].category() == "candles-and-lights");
  CHECK(history->catalog[3].price().amount_minor() == 255);
  REQUIRE(history->customers.size() == 2);
  const ShopCustomer& a = history->customers[1];
  CHECK(a.external_id == "17850");
  CHECK(api::FromTimestamp(a.orders[0].place_time()) ==
        absl::FromCivil(absl::CivilSecond(2010, 12, 1, 8, 26, 0), absl::UTCTimeZone()));
  REQUIRE(a.orders.size() == 2);
  CHECK(a.orders[0].items_size() == 2);
  // Each line at its own price, not the catalog's first price.
  CHECK(a.orders[1].items(0).unit_price().amount_minor() == 310);
  REQUIRE(a.returns.size() == 2);
  CHECK(a.returns[0].external_return_id() == "C536370:536365");
  CHECK(a.returns[0].lines(0).quantity() == 5);
  CHECK(a.returns[1].external_return_id() == "C536370:536366");
  CHECK(a.returns[1].lines(0).quantity() == 2);
  CHECK(history->customers[0].external_id == "13047");
  CHECK(history->customers[0].returns.empty());
}

TEST_CASE("a file that is not an Online Retail export is refused naming its first line") {
  testing::TempDir dir;
  const std::string path = dir.Sub("other.csv");
  std::ofstream(path) << "a,b,c\n1,2,3\n";
  auto history = ReadOnlineRetail(path, "GBP");
  REQUIRE_FALSE(history.ok());
  CHECK(history.status().message().find(":1: not an Online Retail export") != std::string::npos);
  CHECK(absl::IsNotFound(ReadOnlineRetail(dir.Sub("missing.csv"), "GBP").status()));
}

}  // namespace
}  // namespace crm::import
