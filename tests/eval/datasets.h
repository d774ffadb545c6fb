// Interaction histories to evaluate recommendations on: a synthetic shop with planted structure
// whose right answers are known, and the real Online Retail transactions (tests/data/online-retail,
// CC BY 4.0).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/recommendation.pb.h"
#include "tools/online_retail.h"

namespace crm::eval {

struct Line {
  std::string sku;
  int quantity = 1;
  int64_t unit_price_minor = 0;  // known for real data only
};

struct Order {
  std::string customer_id;
  std::string order_id;
  absl::Time time;
  std::vector<Line> lines;
};

// Items sent back; `order_id` is the order they came from.
struct Return {
  std::string customer_id;
  std::string order_id;
  absl::Time time;
  std::vector<Line> lines;
};

struct View {
  std::string customer_id;
  std::string sku;
  std::string category;
  absl::Time time;
  int dwell_seconds = 0;
};

struct Dataset {
  std::string name;
  std::vector<v1::CatalogItem> catalog;
  // Each sorted by time.
  std::vector<Order> orders;
  std::vector<Return> returns;
  std::vector<View> views;
  // Learn from everything before `split`; what customers buy in [split, end) is the held-out truth.
  absl::Time split;
  absl::Time end;

  // What the synthetic generator planted (empty for real data).
  std::vector<std::pair<std::string, std::string>> complementary_pairs;  // anchor, companion
  std::vector<std::pair<std::string, std::string>> upgrades;             // predecessor, successor
  std::vector<std::string> gift_buyers;
  std::string gift_category;
};

struct SyntheticOptions {
  int customers = 3000;
  int categories = 12;
  int items_per_category = 40;
  double baskets_per_customer = 8;
  uint64_t seed = 20261123;
};

// A shop over 2024-01-01 .. 2026-10-31, split at 2026-10-01. Customers are loyal to one or two
// favourite categories (80% of picks), popularity within a category is Zipfian, 10% of picks are
// noise; 24 anchor items pull a companion from another category (an unpopular one) into the same
// basket half the time and into one a few weeks later 30% of the time; 15% of customers buy a toy
// as a gift every October; 8 moderately popular items get a successor launched 20 days before the
// split, which 30% of their past buyers buy in the test month. Customers browse their favourite
// categories; 3% of lines are returned.
Dataset Synthetic(const SyntheticOptions& options);

// Transactions in Online Retail's format (the shipped file, or another shop's): the data ends at
// the midnight (UTC) after its last order and its last 30 days are held out (`split`; for the
// shipped file, September 2011). `sample_percent` keeps that share of customers (by a stable hash
// of their id), 100 for all. InvalidArgument when it holds no order.
absl::StatusOr<Dataset> OnlineRetail(const std::string& csv_gz_path, int sample_percent);

// Rolling-origin cut-offs for `data`: the last `count` firsts of a month (UTC) followed by
// `horizon` of data and preceded by some, oldest first; fewer when the data is too short. For the
// shipped Online Retail file and 30 days, the first of June, July, August and September 2011.
std::vector<absl::Time> MonthlyCutoffs(const Dataset& data, int count, absl::Duration horizon);

// The first first-of-a-month (UTC) at least `history` after the data's first order. Requires an
// order.
absl::Time FirstMonthAfter(const Dataset& data, absl::Duration history);

// A product category from an Online Retail description (tools/online_retail.h).
using import::CategoryOfDescription;

}  // namespace crm::eval
