// What makes a customer profile valid, and how it changes: email normalisation, phone and birthday
// rules, addresses with one default, payment preferences that never hold a card number.
// Pure functions over crm.v1 messages; no storage, no gRPC.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"

namespace crm::customer_profile {

inline constexpr int kMaxAddresses = 20;
inline constexpr int kMaxPaymentMethods = 10;
inline constexpr size_t kMaxNameChars = 100;

// Trims, lower-cases and checks an email (RFC 5321 shape: one '@', local part <= 64, a dotted
// domain of letters, digits and hyphens, <= 254 in all). Lower-casing the local part is a
// deliberate choice: no large mail provider treats case as significant, and two accounts differing
// only in case are a support problem. INVALID_ARGUMENT names `field`.
absl::StatusOr<std::string> NormalizeEmail(absl::string_view field, absl::string_view email);

// E.164: '+' then 8-15 digits, first digit not 0. Empty is allowed (phone is optional).
absl::Status ValidatePhone(absl::string_view field, absl::string_view phone);

// A real calendar date, not in the future, not before 1900. An all-zero date means "not given".
absl::Status ValidateBirthday(absl::string_view field, const v1::Date& date, absl::Time now);

// Street, city and recipient are required; everything is checked text.
absl::Status ValidateAddress(absl::string_view field, const v1::Address& address);

// True when `s` contains something that could be a payment card number: 13-19 digits in a row
// (single spaces or dashes between them ignored) that pass the Luhn check, or a run of more than 19
// digits.
bool ContainsCardNumber(absl::string_view s);

// Type set; cards need a token and exactly four digits in last4; no field may carry a card number.
absl::Status ValidatePaymentMethod(absl::string_view field, const v1::PaymentMethod& method);

// Adds `address` (id already assigned). The first address, or set_default, becomes the default.
absl::Status AddAddress(v1::Customer& customer, v1::Address address, bool set_default);
// Replaces the fields named in `paths` of the address with `update.address_id`.
absl::StatusOr<v1::Address> UpdateAddress(
    v1::Customer& customer, const v1::Address& update,
    const google::protobuf::RepeatedPtrField<std::string>& paths);
// Removes an address; if it was the default, the oldest remaining one becomes the default.
absl::Status RemoveAddress(v1::Customer& customer, absl::string_view address_id);
absl::Status SetDefaultAddress(v1::Customer& customer, absl::string_view address_id);

absl::Status AddPaymentMethod(v1::Customer& customer, v1::PaymentMethod method, bool set_default);
absl::Status RemovePaymentMethod(v1::Customer& customer, absl::string_view payment_method_id);
absl::Status SetDefaultPaymentMethod(v1::Customer& customer, absl::string_view payment_method_id);

// Applies `update` to the customer's name, phone and birthday as named by `paths` (already
// validated).
void ApplyCustomerUpdate(v1::Customer& customer, const v1::Customer& update,
                         const google::protobuf::RepeatedPtrField<std::string>& paths);

// Sets or withdraws consent on one channel; unchanged consent keeps its original time (so a
// repeated call changes nothing). Returns the consent as it now stands.
v1::MarketingConsent SetConsent(v1::Customer& customer, v1::Channel channel, bool granted,
                                absl::string_view source, absl::Time now);

}  // namespace crm::customer_profile
