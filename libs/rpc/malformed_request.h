// Turns "the request did not parse" into INVALID_ARGUMENT naming the field.
//
// gRPC's callback server answers a request it cannot deserialize with UNIMPLEMENTED and no message,
// which tells a client nothing. protobuf refuses proto3 strings that are not valid UTF-8 and logs
// which field ("String field 'crm.v1.Customer.name' contains invalid UTF-8"); we capture that log
// line on the thread that parsed, and this interceptor rewrites the status as "customer.name: is
// not valid UTF-8" (the path from the method's request type). Other parse failures become "request:
// does not parse as <type>".
#pragma once

#include "grpcpp/support/server_interceptor.h"

namespace crm::rpc {

// Installs the protobuf log handler that records parse errors per thread (once per process; other
// protobuf log lines still go to stderr).
void CaptureProtobufParseErrors();

class MalformedRequestInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace crm::rpc
