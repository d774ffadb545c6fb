#include "services/customer_profile/audience.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"

namespace crm::customer_profile {
namespace {

// The bit set of a repeated enum filter field, each value checked with `valid`.
template <typename Values, typename Valid>
absl::StatusOr<uint32_t> EnumBits(absl::string_view field, const Values& values, Valid valid,
                                  absl::string_view allowed) {
  uint32_t bits = 0;
  for (int i = 0; i < values.size(); ++i) {
    const int v = values.Get(i);
    if (!valid(v) || v < 0 || v > 31) {
      return api::Invalid(absl::StrCat(field, "[", i, "]"), absl::StrCat("must be ", allowed));
    }
    bits |= 1u << static_cast<unsigned>(v);
  }
  return bits;
}

absl::StatusOr<int> Score(absl::string_view field, int32_t value) {
  if (value < 0 || value > 5) return api::Invalid(field, "must be 0 (any) or a score 1-5");
  return value;
}

bool InSet(uint32_t bits, int value) {
  return bits == 0 || (bits & (1u << static_cast<unsigned>(value))) != 0;
}

const char* SegmentName(v1::RfmSegment s) {
  switch (s) {
    case v1::RFM_SEGMENT_CHAMPIONS: return "champions";
    case v1::RFM_SEGMENT_LOYAL: return "loyal";
    case v1::RFM_SEGMENT_NEW: return "new";
    case v1::RFM_SEGMENT_NEEDS_ATTENTION: return "needs_attention";
    case v1::RFM_SEGMENT_AT_RISK: return "at_risk";
    case v1::RFM_SEGMENT_HIBERNATING: return "hibernating";
    default: return "no_orders";
  }
}

const char* LevelName(v1::BuyerLevel l) {
  switch (l) {
    case v1::BUYER_LEVEL_NEWBIE: return "newbie";
    case v1::BUYER_LEVEL_JUNIOR: return "junior";
    case v1::BUYER_LEVEL_INTERMEDIATE: return "intermediate";
    case v1::BUYER_LEVEL_SENIOR: return "senior";
    case v1::BUYER_LEVEL_VETERAN: return "veteran";
    default: return "";
  }
}

const char* BandName(v1::ChurnBand b) {
  switch (b) {
    case v1::CHURN_BAND_LOW: return "low";
    case v1::CHURN_BAND_MEDIUM: return "medium";
    case v1::CHURN_BAND_HIGH: return "high";
    case v1::CHURN_BAND_NO_ORDERS: return "no_orders";
    default: return "";
  }
}

bool Consented(const v1::AudienceMember& m, v1::Channel channel) {
  for (int c : m.consented_channels()) {
    if (c == channel) return true;
  }
  return false;
}

}  // namespace

uint8_t ConsentBits(const v1::Customer& customer) {
  uint8_t bits = 0;
  for (const auto& c : customer.marketing_consents()) {
    if (c.channel() <= v1::CHANNEL_UNSPECIFIED || c.channel() > v1::CHANNEL_PUSH) continue;
    // The latest record of a channel decides, as in DecideContact.
    if (c.granted()) {
      bits |= ChannelBit(c.channel());
    } else {
      bits &= static_cast<uint8_t>(~ChannelBit(c.channel()));
    }
  }
  return bits;
}

v1::ChurnBand ChurnBandOf(const v1::CustomerInsights& insights) {
  if (insights.facts().orders() == 0) return v1::CHURN_BAND_NO_ORDERS;
  if (insights.churn().at_risk()) return v1::CHURN_BAND_HIGH;
  return insights.churn().score() >= kMediumChurnScore ? v1::CHURN_BAND_MEDIUM : v1::CHURN_BAND_LOW;
}

AudienceRow RowOf(std::string customer_id, const v1::CustomerInsights& insights, uint8_t consents,
                  absl::Time last_contact) {
  AudienceRow row;
  row.customer_id = std::move(customer_id);
  row.churn_score = static_cast<float>(insights.churn().score());
  row.last_contact = last_contact;
  row.recency = static_cast<int8_t>(insights.rfm().recency());
  row.frequency = static_cast<int8_t>(insights.rfm().frequency());
  row.monetary = static_cast<int8_t>(insights.rfm().monetary());
  row.segment = insights.rfm().segment();
  row.level = insights.buyer_level();
  row.band = ChurnBandOf(insights);
  row.key_customer = insights.key_customer();
  row.consents = consents;
  return row;
}

absl::StatusOr<AudienceSelector> AudienceSelector::Of(const v1::AudienceFilter& f,
                                                      absl::string_view field) {
  AudienceSelector s;
  auto at = [field](absl::string_view sub) { return absl::StrCat(field, ".", sub); };
  CRM_ASSIGN_OR_RETURN(
      s.segments_, EnumBits(at("segments"), f.segments(), v1::RfmSegment_IsValid, "an RfmSegment"));
  CRM_ASSIGN_OR_RETURN(
      s.levels_,
      EnumBits(
          at("buyer_levels"), f.buyer_levels(),
          [](int v) { return v1::BuyerLevel_IsValid(v) && v != v1::BUYER_LEVEL_UNSPECIFIED; },
          "NEWBIE, JUNIOR, INTERMEDIATE, SENIOR or VETERAN"));
  CRM_ASSIGN_OR_RETURN(
      s.bands_,
      EnumBits(
          at("churn_bands"), f.churn_bands(),
          [](int v) { return v1::ChurnBand_IsValid(v) && v != v1::CHURN_BAND_UNSPECIFIED; },
          "LOW, MEDIUM, HIGH or NO_ORDERS"));
  CRM_ASSIGN_OR_RETURN(
      const uint32_t channels,
      EnumBits(
          at("consented_channels"), f.consented_channels(),
          [](int v) { return v1::Channel_IsValid(v) && v != v1::CHANNEL_UNSPECIFIED; },
          "EMAIL, SMS or PUSH"));
  s.consents_ = static_cast<uint8_t>(channels);
  CRM_ASSIGN_OR_RETURN(s.recency_, Score(at("rfm_cell.recency"), f.rfm_cell().recency()));
  CRM_ASSIGN_OR_RETURN(s.frequency_, Score(at("rfm_cell.frequency"), f.rfm_cell().frequency()));
  CRM_ASSIGN_OR_RETURN(s.monetary_, Score(at("rfm_cell.monetary"), f.rfm_cell().monetary()));
  s.key_only_ = f.key_customers_only();
  if (f.has_last_contacted_before()) {
    CRM_ASSIGN_OR_RETURN(s.contacted_before_,
                         api::ToTime(at("last_contacted_before"), f.last_contacted_before()));
  }
  s.scope_ = absl::StrFormat(
      "audience/%x/%x/%x/%d%d%d/%d/%x/%d", s.segments_, s.levels_, s.bands_, s.recency_,
      s.frequency_, s.monetary_, s.key_only_, s.consents_,
      f.has_last_contacted_before() ? absl::ToUnixMicros(s.contacted_before_) : int64_t{-1});
  return s;
}

bool AudienceSelector::Matches(const AudienceRow& r) const {
  return InSet(segments_, r.segment) && InSet(levels_, r.level) && InSet(bands_, r.band) &&
         (recency_ == 0 || r.recency == recency_) &&
         (frequency_ == 0 || r.frequency == frequency_) &&
         (monetary_ == 0 || r.monetary == monetary_) && (!key_only_ || r.key_customer) &&
         ConsentsNow(r.consents) && NotContactedSince(r.last_contact);
}

v1::AudienceMember MemberOf(const AudienceRow& row, const v1::Customer& customer,
                            absl::Time last_contact) {
  v1::AudienceMember m;
  m.set_customer_id(row.customer_id);
  const uint8_t consents = ConsentBits(customer);
  for (v1::Channel c : {v1::CHANNEL_EMAIL, v1::CHANNEL_SMS, v1::CHANNEL_PUSH}) {
    if ((consents & ChannelBit(c)) != 0) m.add_consented_channels(c);
  }
  // Contact data leaves only for a channel the customer agreed to be marketed on.
  if ((consents & ChannelBit(v1::CHANNEL_EMAIL)) != 0) m.set_email(customer.email());
  if ((consents & ChannelBit(v1::CHANNEL_SMS)) != 0) m.set_phone(customer.phone());
  m.mutable_rfm()->set_recency(row.recency);
  m.mutable_rfm()->set_frequency(row.frequency);
  m.mutable_rfm()->set_monetary(row.monetary);
  m.mutable_rfm()->set_segment(row.segment);
  m.set_buyer_level(row.level);
  m.set_churn_band(row.band);
  m.set_churn_score(row.churn_score);
  m.set_key_customer(row.key_customer);
  if (last_contact != absl::InfinitePast())
    api::SetTimestamp(last_contact, m.mutable_last_contact_time());
  m.set_language(customer.preferences().language());
  return m;
}

const std::string& AudienceCsvHeader() {
  static const std::string header =
      "customer_id,email,phone,language,segment,buyer_level,recency,frequency,monetary,churn_band,"
      "churn_score,key_customer,email_consent,sms_consent,push_consent,last_contact_time\r\n";
  return header;
}

std::string CsvField(absl::string_view value) {
  std::string v(value);
  if (!v.empty() &&
      (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' || v[0] == '\r')) {
    v.insert(v.begin(), '\'');
  }
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string quoted = "\"";
  for (char c : v) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

void AppendCsvRow(const v1::AudienceMember& m, std::string& out) {
  const auto yes = [](bool b) { return b ? "true" : "false"; };
  std::vector<std::string> fields = {
      CsvField(m.customer_id()),
      CsvField(m.email()),
      CsvField(m.phone()),
      CsvField(m.language()),
      SegmentName(m.rfm().segment()),
      LevelName(m.buyer_level()),
      absl::StrCat(m.rfm().recency()),
      absl::StrCat(m.rfm().frequency()),
      absl::StrCat(m.rfm().monetary()),
      BandName(m.churn_band()),
      absl::StrFormat("%.3f", m.churn_score()),
      yes(m.key_customer()),
      yes(Consented(m, v1::CHANNEL_EMAIL)),
      yes(Consented(m, v1::CHANNEL_SMS)),
      yes(Consented(m, v1::CHANNEL_PUSH)),
      m.has_last_contact_time()
          ? absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", api::FromTimestamp(m.last_contact_time()),
                             absl::UTCTimeZone())
          : std::string(),
  };
  absl::StrAppend(&out, absl::StrJoin(fields, ","), "\r\n");
}

}  // namespace crm::customer_profile
