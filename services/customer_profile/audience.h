// Audiences for marketing: which customers match a filter of segments, buyer levels, RFM cell,
// churn band, consent and last contact. Pure: the refresher builds one compact row per customer
// (AudienceRow, in customer id order) at every insights refresh, the handlers select from those
// rows in memory and check consent and the last contact again against the store for each customer
// they hand out.
//
//   AudienceSelector   a validated filter (INVALID_ARGUMENT naming the field), and the scope its
//                      page tokens are bound to
//   RowOf              one customer's row from their insights, consent and last contact
//   MemberOf / CSV     what leaves the service: contact data only for the channels consented to
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"

namespace crm::customer_profile {

// Churn score from which a customer is in the MEDIUM band (below the at-risk threshold).
inline constexpr double kMediumChurnScore = 0.25;
// At most this many rows of the in-memory audience are examined for one page: a very selective
// filter over a large shard answers a short (even empty) page with a token to go on, instead of
// holding the call for the whole shard.
inline constexpr int kAudienceRowsExaminedPerPage = 200'000;
// Page sizes: members per shard for ListAudience, CSV rows per shard for ExportAudienceCsv.
inline constexpr int kAudienceDefaultPage = 100, kAudienceMaxPage = 1000;
inline constexpr int kCsvDefaultPage = 1000, kCsvMaxPage = 5000;

// One customer as audiences see them, as of the last insights refresh (~50 bytes and the id).
struct AudienceRow {
  std::string customer_id;
  float churn_score = 0;
  // The newest marketing contact; InfinitePast when never contacted.
  absl::Time last_contact = absl::InfinitePast();
  int8_t recency = 0, frequency = 0, monetary = 0;
  v1::RfmSegment segment = v1::RFM_SEGMENT_UNSPECIFIED;
  v1::BuyerLevel level = v1::BUYER_LEVEL_UNSPECIFIED;
  v1::ChurnBand band = v1::CHURN_BAND_UNSPECIFIED;
  bool key_customer = false;
  // One bit per v1::Channel granted (ConsentBits).
  uint8_t consents = 0;
};

inline uint8_t ChannelBit(v1::Channel channel) {
  return static_cast<uint8_t>(1u << static_cast<unsigned>(channel));
}
// The channels the customer has granted marketing consent on, as bits.
uint8_t ConsentBits(const v1::Customer& customer);

v1::ChurnBand ChurnBandOf(const v1::CustomerInsights& insights);
AudienceRow RowOf(std::string customer_id, const v1::CustomerInsights& insights, uint8_t consents,
                  absl::Time last_contact);

// A filter, checked and made fast to test.
class AudienceSelector {
 public:
  // INVALID_ARGUMENT naming the field ("filter.rfm_cell.recency: ...") for values out of range;
  // `field` is the request's name for the filter.
  static absl::StatusOr<AudienceSelector> Of(const v1::AudienceFilter& filter,
                                             absl::string_view field = "filter");

  // The whole filter against a row as of the refresh.
  bool Matches(const AudienceRow& row) const;
  // The live checks for a customer about to be handed out: consent now, and the newest contact.
  bool ConsentsNow(uint8_t consents) const { return (consents & consents_) == consents_; }
  bool NotContactedSince(absl::Time last_contact) const { return last_contact < contacted_before_; }
  bool checks_contacts() const { return contacted_before_ != absl::InfiniteFuture(); }
  absl::Time contacted_before() const { return contacted_before_; }
  // Everything the filter selects by, in a canonical form: page tokens are valid only for it.
  const std::string& scope() const { return scope_; }

 private:
  // Bit sets over enum values; 0 means any.
  uint32_t segments_ = 0, levels_ = 0, bands_ = 0;
  int recency_ = 0, frequency_ = 0, monetary_ = 0;
  bool key_only_ = false;
  uint8_t consents_ = 0;
  absl::Time contacted_before_ = absl::InfiniteFuture();
  std::string scope_;
};

// A member as listed: the row's segments and scores, and from the live customer the consent, the
// contact data for consented channels only, and the language.
v1::AudienceMember MemberOf(const AudienceRow& row, const v1::Customer& customer,
                            absl::Time last_contact);

// The CSV for marketing tools (RFC 4180, CRLF line ends).
const std::string& AudienceCsvHeader();
void AppendCsvRow(const v1::AudienceMember& member, std::string& out);
// A field as CSV: quoted when it holds a comma, quote or line break, and defused when a spreadsheet
// would run it as a formula (starts with = + - @, tab or carriage return: prefixed with ').
std::string CsvField(absl::string_view value);

}  // namespace crm::customer_profile
