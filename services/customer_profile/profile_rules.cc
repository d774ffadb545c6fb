#include "services/customer_profile/profile_rules.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/sensitive.h"

namespace crm::customer_profile {
namespace {

using api::Invalid;

bool IsDomainLabelChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
}

bool IsLocalPartChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  static constexpr absl::string_view kAllowed = "!#$%&'*+/=?^_`{|}~.-";
  return kAllowed.find(c) != absl::string_view::npos;
}

template <typename T>
int IndexById(const google::protobuf::RepeatedPtrField<T>& items, absl::string_view id,
              const std::string& (T::*get_id)() const) {
  for (int i = 0; i < items.size(); ++i) {
    if ((items.Get(i).*get_id)() == id) return i;
  }
  return -1;
}

}  // namespace

absl::StatusOr<std::string> NormalizeEmail(absl::string_view field, absl::string_view email) {
  std::string e = api::CanonicalEmail(email);
  if (e.empty()) return Invalid(field, "must not be empty");
  if (e.size() > 254) return Invalid(field, "is longer than 254 characters");
  const size_t at = e.find('@');
  if (at == std::string::npos || e.find('@', at + 1) != std::string::npos) {
    return Invalid(field, "must contain exactly one '@', like name@example.com");
  }
  absl::string_view local = absl::string_view(e).substr(0, at);
  absl::string_view domain = absl::string_view(e).substr(at + 1);
  if (local.empty() || local.size() > 64)
    return Invalid(field, "the part before '@' must be 1-64 characters");
  if (local.front() == '.' || local.back() == '.' || local.find("..") != absl::string_view::npos) {
    return Invalid(field, "the part before '@' cannot start or end with '.' or contain '..'");
  }
  for (char c : local) {
    if (!IsLocalPartChar(c))
      return Invalid(field, absl::StrCat("contains a character not allowed in an email: '",
                                         std::string(1, c), "'"));
  }
  if (domain.find('.') == absl::string_view::npos)
    return Invalid(field, "the domain needs a dot, like example.com");
  size_t start = 0;
  while (start <= domain.size()) {
    size_t end = domain.find('.', start);
    if (end == absl::string_view::npos) end = domain.size();
    absl::string_view label = domain.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return Invalid(field, "has an invalid domain");
    }
    for (char c : label) {
      if (!IsDomainLabelChar(c)) return Invalid(field, "has an invalid domain");
    }
    start = end + 1;
  }
  return e;
}

absl::Status ValidatePhone(absl::string_view field, absl::string_view phone) {
  if (phone.empty()) return absl::OkStatus();
  if (phone.size() < 9 || phone.size() > 16 || phone[0] != '+' || phone[1] == '0') {
    return Invalid(
        field,
        "must be in E.164 form: '+', country code and number, 8-15 digits (e.g. +8613800138000)");
  }
  for (char c : phone.substr(1)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return Invalid(field, "must be in E.164 form: '+' followed by digits only");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBirthday(absl::string_view field, const v1::Date& date, absl::Time now) {
  if (date.year() == 0 && date.month() == 0 && date.day() == 0) return absl::OkStatus();
  const absl::CivilDay day(date.year(), date.month(), date.day());
  if (day.year() != date.year() || day.month() != date.month() || day.day() != date.day()) {
    return Invalid(field, "is not a calendar date");
  }
  if (date.year() < 1900) return Invalid(field, "must be in 1900 or later");
  if (day > absl::ToCivilDay(now, absl::UTCTimeZone()) + 1)
    return Invalid(field, "is in the future");
  return absl::OkStatus();
}

absl::Status ValidateAddress(absl::string_view field, const v1::Address& a) {
  const std::string f(field);
  CRM_RETURN_IF_ERROR(api::RequiredText(f + ".recipient_name", a.recipient_name(), 100));
  CRM_RETURN_IF_ERROR(ValidatePhone(f + ".phone", a.phone()));
  if (!a.country_code().empty() &&
      (a.country_code().size() != 2 ||
       !absl::ascii_isupper(static_cast<unsigned char>(a.country_code()[0])) ||
       !absl::ascii_isupper(static_cast<unsigned char>(a.country_code()[1])))) {
    return Invalid(f + ".country_code", "must be an ISO 3166-1 alpha-2 code such as CN");
  }
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".province", a.province(), 100));
  CRM_RETURN_IF_ERROR(api::RequiredText(f + ".city", a.city(), 100));
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".district", a.district(), 100));
  CRM_RETURN_IF_ERROR(api::RequiredText(f + ".street", a.street(), 300));
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".postal_code", a.postal_code(), 20));
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".label", a.label(), 40));
  return absl::OkStatus();
}

bool ContainsCardNumber(absl::string_view s) { return text::ContainsCardNumber(s); }

absl::Status ValidatePaymentMethod(absl::string_view field, const v1::PaymentMethod& m) {
  const std::string f(field);
  if (m.type() == v1::PAYMENT_METHOD_TYPE_UNSPECIFIED || !v1::PaymentMethodType_IsValid(m.type())) {
    return Invalid(f + ".type", "must be CARD, CASH_ON_DELIVERY or ACCOUNT_BALANCE");
  }
  // Checked first and for every field: a card number must never reach storage or logs.
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"token", &m.token()},
                                    {"last4", &m.last4()},
                                    {"brand", &m.brand()}}) {
    if (ContainsCardNumber(*value)) {
      return Invalid(f + "." + name,
                     "looks like a card number; store the payment provider's token and the last 4 "
                     "digits, never the card number");
    }
  }
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".token", m.token(), 512));
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".brand", m.brand(), 40));
  if (m.type() == v1::PAYMENT_METHOD_TYPE_CARD) {
    if (absl::StripAsciiWhitespace(m.token()).empty()) {
      return Invalid(f + ".token",
                     "is required for cards: the payment provider's token for the card");
    }
    if (m.last4().size() != 4 || !std::all_of(m.last4().begin(), m.last4().end(), [](char c) {
          return absl::ascii_isdigit(static_cast<unsigned char>(c));
        })) {
      return Invalid(f + ".last4", "must be exactly the last 4 digits of the card");
    }
  } else if (!m.last4().empty()) {
    return Invalid(f + ".last4", "applies to cards only");
  }
  return absl::OkStatus();
}

absl::Status AddAddress(v1::Customer& customer, v1::Address address, bool set_default) {
  if (customer.addresses_size() >= kMaxAddresses) {
    return absl::FailedPreconditionError(absl::StrCat(
        "address: a customer can keep at most ", kMaxAddresses, " addresses; remove one first"));
  }
  if (set_default || customer.default_address_id().empty())
    customer.set_default_address_id(address.address_id());
  *customer.add_addresses() = std::move(address);
  return absl::OkStatus();
}

absl::StatusOr<v1::Address> UpdateAddress(
    v1::Customer& customer, const v1::Address& update,
    const google::protobuf::RepeatedPtrField<std::string>& paths) {
  const int i = IndexById(customer.addresses(), update.address_id(), &v1::Address::address_id);
  if (i < 0)
    return absl::NotFoundError(
        absl::StrCat("address.address_id: no address \"", update.address_id(), "\""));
  v1::Address merged = customer.addresses(i);
  for (const std::string& p : paths) {
    if (p == "recipient_name")
      merged.set_recipient_name(update.recipient_name());
    else if (p == "phone")
      merged.set_phone(update.phone());
    else if (p == "country_code")
      merged.set_country_code(update.country_code());
    else if (p == "province")
      merged.set_province(update.province());
    else if (p == "city")
      merged.set_city(update.city());
    else if (p == "district")
      merged.set_district(update.district());
    else if (p == "street")
      merged.set_street(update.street());
    else if (p == "postal_code")
      merged.set_postal_code(update.postal_code());
    else if (p == "label")
      merged.set_label(update.label());
  }
  CRM_RETURN_IF_ERROR(ValidateAddress("address", merged));
  *customer.mutable_addresses(i) = merged;
  return merged;
}

absl::Status RemoveAddress(v1::Customer& customer, absl::string_view address_id) {
  const int i = IndexById(customer.addresses(), address_id, &v1::Address::address_id);
  if (i < 0)
    return absl::NotFoundError(absl::StrCat("address_id: no address \"", address_id, "\""));
  customer.mutable_addresses()->DeleteSubrange(i, 1);
  if (customer.default_address_id() == address_id) {
    customer.set_default_address_id(
        customer.addresses().empty() ? "" : customer.addresses(0).address_id());
  }
  return absl::OkStatus();
}

absl::Status SetDefaultAddress(v1::Customer& customer, absl::string_view address_id) {
  if (IndexById(customer.addresses(), address_id, &v1::Address::address_id) < 0) {
    return absl::NotFoundError(absl::StrCat("address_id: no address \"", address_id, "\""));
  }
  customer.set_default_address_id(std::string(address_id));
  return absl::OkStatus();
}

absl::Status AddPaymentMethod(v1::Customer& customer, v1::PaymentMethod method, bool set_default) {
  if (customer.payment_methods_size() >= kMaxPaymentMethods) {
    return absl::FailedPreconditionError(
        absl::StrCat("payment_method: a customer can keep at most ", kMaxPaymentMethods,
                     " payment methods; remove one first"));
  }
  if (set_default || customer.default_payment_method_id().empty()) {
    customer.set_default_payment_method_id(method.payment_method_id());
  }
  *customer.add_payment_methods() = std::move(method);
  return absl::OkStatus();
}

absl::Status RemovePaymentMethod(v1::Customer& customer, absl::string_view payment_method_id) {
  const int i = IndexById(customer.payment_methods(), payment_method_id,
                          &v1::PaymentMethod::payment_method_id);
  if (i < 0) {
    return absl::NotFoundError(
        absl::StrCat("payment_method_id: no payment method \"", payment_method_id, "\""));
  }
  customer.mutable_payment_methods()->DeleteSubrange(i, 1);
  if (customer.default_payment_method_id() == payment_method_id) {
    customer.set_default_payment_method_id(
        customer.payment_methods().empty() ? "" : customer.payment_methods(0).payment_method_id());
  }
  return absl::OkStatus();
}

absl::Status SetDefaultPaymentMethod(v1::Customer& customer, absl::string_view payment_method_id) {
  if (IndexById(customer.payment_methods(), payment_method_id,
                &v1::PaymentMethod::payment_method_id) < 0) {
    return absl::NotFoundError(
        absl::StrCat("payment_method_id: no payment method \"", payment_method_id, "\""));
  }
  customer.set_default_payment_method_id(std::string(payment_method_id));
  return absl::OkStatus();
}

void ApplyCustomerUpdate(v1::Customer& customer, const v1::Customer& update,
                         const google::protobuf::RepeatedPtrField<std::string>& paths) {
  for (const std::string& p : paths) {
    if (p == "name")
      customer.set_name(update.name());
    else if (p == "phone")
      customer.set_phone(update.phone());
    else if (p == "birthday") {
      if (update.has_birthday())
        *customer.mutable_birthday() = update.birthday();
      else
        customer.clear_birthday();
    }
  }
}

v1::MarketingConsent SetConsent(v1::Customer& customer, v1::Channel channel, bool granted,
                                absl::string_view source, absl::Time now) {
  for (auto& c : *customer.mutable_marketing_consents()) {
    if (c.channel() != channel) continue;
    if (c.granted() != granted) {
      c.set_granted(granted);
      c.set_source(std::string(source));
      api::SetTimestamp(now, c.mutable_update_time());
    }
    return c;
  }
  auto* c = customer.add_marketing_consents();
  c->set_channel(channel);
  c->set_granted(granted);
  c->set_source(std::string(source));
  api::SetTimestamp(now, c->mutable_update_time());
  return *c;
}

}  // namespace crm::customer_profile
