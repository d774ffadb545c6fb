#include "libs/events/subscription.h"

#include "google/protobuf/descriptor.h"

namespace crm::events {
namespace {

const google::protobuf::OneofDescriptor& Payload() {
  return *v1::Event::descriptor()->FindOneofByName("payload");
}

}  // namespace

Subscription::Subscription(std::initializer_list<EventType> types) {
  for (EventType type : types) {
    if (type > 0 && type < kMaxFieldNumber) types_.set(type);
  }
}

Subscription Subscription::All() {
  Subscription all;
  all.all_ = true;
  return all;
}

Subscription Subscription::FromProto(const v1::Subscription& proto) {
  Subscription s;
  for (const std::string& name : proto.event_types()) {
    const auto* field = v1::Event::descriptor()->FindFieldByName(name);
    if (field != nullptr && field->containing_oneof() == &Payload() &&
        field->number() < kMaxFieldNumber) {
      s.types_.set(field->number());
    }
  }
  return s;
}

Subscription Subscription::operator|(const Subscription& other) const {
  Subscription both;
  both.types_ = types_ | other.types_;
  both.all_ = all_ || other.all_;
  return both;
}

bool Subscription::Wants(const v1::Event& event) const {
  if (all_) return true;
  const int type = event.payload_case();
  return type > 0 && type < kMaxFieldNumber && types_.test(type);
}

v1::Subscription Subscription::ToProto() const {
  v1::Subscription proto;
  for (int i = 0; i < Payload().field_count(); ++i) {
    const auto* field = Payload().field(i);
    if (all_ || (field->number() < kMaxFieldNumber && types_.test(field->number())))
      proto.add_event_types(field->name());
  }
  return proto;
}

}  // namespace crm::events
