// The events a consumer acts on. Each consuming service declares its Subscription beside its event
// handler and serves it through crm.v1.EventSink/GetSubscription; every producer's dispatcher asks
// for it and sends only those events. So a new consumer, or a consumer that starts caring about
// another event, changes no producer and no library: it declares what it wants and is reached
// through the service registry (rpc::DataServices()).
//
// Caveat an operator should know: a producer skips what a consumer did not subscribe to when it
// passes it, so events written before a consumer's subscription grew are not sent to it later.
//
// A value type; immutable after construction, so safe to share between threads.
#pragma once

#include <bitset>
#include <initializer_list>

#include "crm/v1/events.pb.h"

namespace crm::events {

class Subscription {
 public:
  using EventType = v1::Event::PayloadCase;

  // Every event, whatever its type (a sink that does not say what it wants gets this).
  static Subscription All();
  // The event types named in the proto; names this build does not know are ignored.
  static Subscription FromProto(const v1::Subscription& proto);

  Subscription(std::initializer_list<EventType> types);

  // The events either wants (a process whose parts each handle some: profile, surveys,
  // notifications).
  Subscription operator|(const Subscription& other) const;

  bool Wants(const v1::Event& event) const;
  v1::Subscription ToProto() const;

 private:
  Subscription() = default;
  // Indexed by the payload's field number in crm.v1.Event (its PayloadCase).
  static constexpr int kMaxFieldNumber = 64;
  std::bitset<kMaxFieldNumber> types_;
  bool all_ = false;
};

}  // namespace crm::events
