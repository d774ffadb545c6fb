// The loyalty rules as data (a text-format LoyaltyRules file, or built-in defaults) and what they
// say: which tier a growth value earns, how much growth and how many points an amount earns in a
// category, when points expire, and the Taobao credit levels. Every computation can spell out the
// rule it applied, so ExplainMembership shows no hidden coefficient. Pure functions (but
// ReadRulesFile); no storage, no gRPC.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/loyalty.pb.h"

namespace crm::loyalty {

// The built-in rules: JD's five tiers (registered, bronze, silver, gold, diamond), 1 growth and 1
// point per yuan, Taobao's 15 credit thresholds, points expiring at the end of the year after they
// were earned.
v1::LoyaltyRules DefaultRules();

// Parses protobuf text format and checks the rules make sense. A top-level section the text leaves
// out (tiers, growth, points, credit, enterprise) keeps its built-in value. Errors name the line: a
// syntax error by the parser's line, a semantic one by the line of the offending field.
absl::StatusOr<v1::LoyaltyRules> ParseRules(absl::string_view text);

// ParseRules on a file's contents; errors name the file.
absl::StatusOr<v1::LoyaltyRules> ReadRulesFile(const std::string& path);

// Semantic checks alone (tiers in order from 0 with growing thresholds, rates >= 0, 15 growing
// credit thresholds, window 1-3660 days). INVALID_ARGUMENT naming the field.
absl::Status ValidateRules(const v1::LoyaltyRules& rules);

const v1::TierRule& TierRuleFor(const v1::LoyaltyRules& rules, int64_t growth);
const v1::TierRule* RuleOfTier(const v1::LoyaltyRules& rules, v1::Tier tier);
// The tier above `tier`, or null at the top.
const v1::TierRule* NextTierRule(const v1::LoyaltyRules& rules, v1::Tier tier);

// Growth for paying `amount_minor` in `category`: floor(amount / 100 × rate / 100). `rule` gets the
// computation in words, e.g. "phones: 1.50 growth per unit x 399.00 = 598".
int64_t GrowthForPurchase(const v1::LoyaltyRules& rules, const std::string& category,
                          int64_t amount_minor, std::string* rule);
// Points likewise, then times the tier's points multiplier.
int64_t PointsForPurchase(const v1::LoyaltyRules& rules, const std::string& category,
                          int64_t amount_minor, int32_t multiplier_percent, std::string* rule);

// Points earned at `earned` expire at the end (23:59:59 Beijing time) of the following calendar
// year.
absl::Time PointsExpiry(absl::Time earned);
// The calendar day (Beijing time) growth counts on, as days since 1970-01-01.
int64_t GrowthDay(absl::Time t);
absl::Time StartOfGrowthDay(int64_t day);

// Taobao credit: level 0-15 for a score, and its name ("4 hearts", "1 diamond", "5 crowns").
int32_t CreditLevel(const v1::LoyaltyRules& rules, int64_t score);
std::string CreditLevelName(int32_t level);

std::string TierName(v1::Tier tier);

}  // namespace crm::loyalty
