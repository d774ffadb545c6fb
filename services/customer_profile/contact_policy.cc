#include "services/customer_profile/contact_policy.h"

#include <algorithm>

#include "libs/api/validate.h"

namespace crm::customer_profile {

v1::ContactFrequencyCap EffectiveCap(const v1::Preferences& preferences) {
  v1::ContactFrequencyCap cap = preferences.contact_cap();
  if (cap.max_contacts() <= 0 || cap.period_days() <= 0) {
    cap.set_max_contacts(kDefaultMaxContacts);
    cap.set_period_days(kDefaultCapPeriodDays);
  }
  return cap;
}

v1::ContactDecision DecideContact(const v1::Customer& customer, v1::Channel channel,
                                  const std::vector<absl::Time>& recent_contacts, absl::Time now) {
  v1::ContactDecision d;
  const v1::ContactFrequencyCap cap = EffectiveCap(customer.preferences());
  *d.mutable_cap() = cap;
  const absl::Time window_start = now - absl::Hours(24) * cap.period_days();
  std::vector<absl::Time> in_window;
  for (absl::Time t : recent_contacts) {
    if (t > window_start) in_window.push_back(t);
  }
  std::sort(in_window.begin(), in_window.end());
  d.set_contacts_in_period(static_cast<int32_t>(in_window.size()));

  bool consent = false;
  for (const auto& c : customer.marketing_consents()) {
    if (c.channel() == channel) consent = c.granted();
  }
  if (!consent) {
    d.set_allowed(false);
    d.set_reason(v1::ContactDecision::REASON_NO_CONSENT);
    return d;
  }
  if (static_cast<int>(in_window.size()) >= cap.max_contacts()) {
    d.set_allowed(false);
    d.set_reason(v1::ContactDecision::REASON_FREQUENCY_CAP);
    // A slot frees when the contact that is max_contacts back from the newest leaves the window.
    const absl::Time frees =
        in_window[in_window.size() - cap.max_contacts()] + absl::Hours(24) * cap.period_days();
    api::SetTimestamp(frees, d.mutable_next_allowed_time());
    return d;
  }
  d.set_allowed(true);
  d.set_reason(v1::ContactDecision::REASON_ALLOWED);
  return d;
}

}  // namespace crm::customer_profile
