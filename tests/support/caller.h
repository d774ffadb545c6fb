// Calling a service's own port in tests as a given caller: the port admits only signed caller
// assertions (libs/rpc/caller_auth.h), so a test signs one as the gateway would for an end user, or
// as a service of the system. Assertions are signed with the process's internal key
// (auth::InternalKeys::Current()), the same the in-process services verify with; tests of real
// processes install the key file they give those processes.
#pragma once

#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "libs/auth/caller.h"

namespace crm::testing {

// An end user or integration admitted by the gateway.
auth::Caller ViaGateway(v1::Role role, const std::string& subject);
// A customer (their customer id is their subject).
auth::Caller CustomerCaller(const std::string& customer_id);
// A process of the system acting on its own (may call any method).
auth::Caller InternalCaller(const std::string& process = "test-client");

// A fresh assertion for `caller`.
std::string AssertionOf(const auth::Caller& caller);
// Adds `caller`'s assertion to one call.
void CallAs(grpc::ClientContext& ctx, const auth::Caller& caller);
// A channel to `address` whose calls carry `caller`'s assertion unless the call already carries
// one.
std::shared_ptr<grpc::Channel> ChannelAs(const std::string& address, const auth::Caller& caller);

}  // namespace crm::testing
