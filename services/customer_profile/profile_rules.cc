#include "services/customer_profile/profile_rules.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/field_mask_util.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/text/sensitive.h"

namespace crm::customer_profile {
namespace {

using api::Invalid;

// Replaces the fields `paths` names (top-level names the call has checked) with `update`'s: a
// named field that `update` leaves unset is cleared.
void ReplaceFields(const google::protobuf::Message& update,
                   const google::protobuf::RepeatedPtrField<std::string>& paths,
                   google::protobuf::Message* target) {
  google::protobuf::FieldMask mask;
  *mask.mutable_paths() = paths;
  google::protobuf::util::FieldMaskUtil::MergeOptions options;
  options.set_replace_message_fields(true);
  google::protobuf::util::FieldMaskUtil::MergeMessageTo(update, mask, options, target);
}

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

// How errors name a kind of item a customer keeps with one default, and how many they may keep.
struct ItemWords {
  int max_items;
  const char* field;     // the request field that carries one: "address"
  const char* id_field;  // "address_id"
  const char* noun;      // "address"
  const char* nouns;     // "addresses"
};
constexpr ItemWords kAddressWords{kMaxAddresses, "address", "address_id", "address", "addresses"};
constexpr ItemWords kPaymentMethodWords{kMaxPaymentMethods, "payment_method", "payment_method_id",
                                        "payment method", "payment methods"};

// A customer's items that keep one default (addresses, payment methods).
template <typename Item>
struct ItemsWithDefault {
  google::protobuf::RepeatedPtrField<Item>& items;
  std::string& default_id;
  const std::string& (Item::*id)() const;
  const ItemWords& words;
};

ItemsWithDefault<v1::Address> Addresses(v1::Customer& c) {
  return {*c.mutable_addresses(), *c.mutable_default_address_id(), &v1::Address::address_id,
          kAddressWords};
}

ItemsWithDefault<v1::PaymentMethod> PaymentMethods(v1::Customer& c) {
  return {*c.mutable_payment_methods(), *c.mutable_default_payment_method_id(),
          &v1::PaymentMethod::payment_method_id, kPaymentMethodWords};
}

template <typename Item>
absl::Status AddItem(ItemsWithDefault<Item> list, Item item, bool set_default) {
  const ItemWords& w = list.words;
  if (list.items.size() >= w.max_items) {
    return absl::FailedPreconditionError(absl::StrCat(w.field, ": a customer can keep at most ",
                                                      w.max_items, " ", w.nouns,
                                                      "; remove one first"));
  }
  if (set_default || list.default_id.empty()) list.default_id = (item.*list.id)();
  *list.items.Add() = std::move(item);
  return absl::OkStatus();
}

template <typename Item>
absl::Status NoSuchItem(const ItemsWithDefault<Item>& list, absl::string_view id) {
  return absl::NotFoundError(
      absl::StrCat(list.words.id_field, ": no ", list.words.noun, " \"", id, "\""));
}

// The default passes to the first item left when the default is removed.
template <typename Item>
absl::Status RemoveItem(ItemsWithDefault<Item> list, absl::string_view id) {
  const int i = IndexById(list.items, id, list.id);
  if (i < 0) return NoSuchItem(list, id);
  list.items.DeleteSubrange(i, 1);
  if (list.default_id == id) list.default_id = list.items.empty() ? "" : (list.items[0].*list.id)();
  return absl::OkStatus();
}

template <typename Item>
absl::Status SetDefaultItem(ItemsWithDefault<Item> list, absl::string_view id) {
  if (IndexById(list.items, id, list.id) < 0) return NoSuchItem(list, id);
  list.default_id = std::string(id);
  return absl::OkStatus();
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
  return AddItem(Addresses(customer), std::move(address), set_default);
}

absl::StatusOr<v1::Address> UpdateAddress(
    v1::Customer& customer, const v1::Address& update,
    const google::protobuf::RepeatedPtrField<std::string>& paths) {
  const int i = IndexById(customer.addresses(), update.address_id(), &v1::Address::address_id);
  if (i < 0)
    return absl::NotFoundError(
        absl::StrCat("address.address_id: no address \"", update.address_id(), "\""));
  v1::Address merged = customer.addresses(i);
  ReplaceFields(update, paths, &merged);
  CRM_RETURN_IF_ERROR(ValidateAddress("address", merged));
  *customer.mutable_addresses(i) = merged;
  return merged;
}

absl::Status RemoveAddress(v1::Customer& customer, absl::string_view address_id) {
  return RemoveItem(Addresses(customer), address_id);
}

absl::Status SetDefaultAddress(v1::Customer& customer, absl::string_view address_id) {
  return SetDefaultItem(Addresses(customer), address_id);
}

absl::Status AddPaymentMethod(v1::Customer& customer, v1::PaymentMethod method, bool set_default) {
  return AddItem(PaymentMethods(customer), std::move(method), set_default);
}

absl::Status RemovePaymentMethod(v1::Customer& customer, absl::string_view payment_method_id) {
  return RemoveItem(PaymentMethods(customer), payment_method_id);
}

absl::Status SetDefaultPaymentMethod(v1::Customer& customer, absl::string_view payment_method_id) {
  return SetDefaultItem(PaymentMethods(customer), payment_method_id);
}

void ApplyCustomerUpdate(v1::Customer& customer, const v1::Customer& update,
                         const google::protobuf::RepeatedPtrField<std::string>& paths) {
  ReplaceFields(update, paths, &customer);
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
