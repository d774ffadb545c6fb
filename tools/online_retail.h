// The first adapter of crm-import: a shop's history in the format of the UCI "Online Retail" export
// (CSV, optionally gzip; columns InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
// UnitPrice, CustomerID, Country), turned into what the public API imports: catalog items,
// customers by their external id, and per customer their orders and returns in time order.
//
// What the export means, and what is left out (counted in `Skipped`):
// - an invoice of an identified customer is an order delivered when it was invoiced; guest
//   checkouts (no CustomerID) cannot be attributed and are skipped;
// - an invoice number starting with "C" is a credit note: its lines (negative quantities) refund
//   the customer's latest earlier orders holding the item, never more than those orders hold; what
//   no earlier order holds (bought before the export starts) is skipped;
// - only products count: a StockCode that does not start with five digits (POST, M, BANK CHARGES,
//   ...) is a fee or an adjustment; lines with a zero price or a quantity beyond what an order line
//   takes are skipped;
// - the export has no categories: one is guessed from the description's words
//   (CategoryOfDescription).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/order_tracking.pb.h"
#include "crm/v1/recommendation.pb.h"

namespace crm::import {

struct ShopCustomer {
  std::string external_id;  // "17850"
  absl::Time first_seen;    // first invoice
  // Orders and returns, each sorted by time.
  std::vector<v1::HistoricalOrder> orders;
  std::vector<v1::HistoricalReturn> returns;
};

struct Skipped {
  int64_t guest_lines = 0;               // no CustomerID
  int64_t fee_lines = 0;                 // not a product
  int64_t unusable_lines = 0;            // zero price, bad number or date, quantity out of range
  int64_t unmatched_returned_units = 0;  // returned, but bought before the export starts
  int64_t lines_beyond_order_limit = 0;  // an invoice longer than an imported order may be
};

struct ShopHistory {
  std::vector<v1::CatalogItem> catalog;  // by sku; launch_time is the first sale
  std::vector<ShopCustomer> customers;   // by external id
  int64_t lines_read = 0;
  Skipped skipped;
};

// Reads the whole export; `currency` is the prices' ISO code (Online Retail is in GBP). NOT_FOUND
// when the file cannot be opened; INVALID_ARGUMENT naming the line when the header is not the
// expected one.
absl::StatusOr<ShopHistory> ReadOnlineRetail(const std::string& path, const std::string& currency);

// The CSV fields of one record (quoted fields with "" for a quote; the line's end is dropped).
std::vector<std::string> CsvFields(const std::string& line);
// Whether an Online Retail StockCode is a product (five digits first) rather than a fee or
// adjustment.
bool IsProductCode(const std::string& stock_code);
// A product category from an Online Retail description ("WHITE HANGING HEART T-LIGHT HOLDER" →
// "candles-and-lights"); "other" when no keyword matches.
std::string CategoryOfDescription(const std::string& description);

}  // namespace crm::import
