// May we contact this customer for marketing now? Consent per channel (opt-in: no record means no)
// and one frequency cap across channels, so the customer never feels spammed (seed 002). Pure
// function.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "crm/v1/customer_profile.pb.h"

namespace crm::customer_profile {

// Used when the customer has not set their own cap.
inline constexpr int kDefaultMaxContacts = 3;
inline constexpr int kDefaultCapPeriodDays = 7;

v1::ContactFrequencyCap EffectiveCap(const v1::Preferences& preferences);

// `recent_contacts` are the times of marketing contacts in any channel, newest or oldest first.
v1::ContactDecision DecideContact(const v1::Customer& customer, v1::Channel channel,
                                  const std::vector<absl::Time>& recent_contacts, absl::Time now);

}  // namespace crm::customer_profile
