#include "libs/rpc/malformed_request.h"

#include <cstdio>
#include <deque>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "libs/rpc/status.h"

namespace crm::rpc {
namespace {

// The last invalid-UTF-8 field protobuf reported on this thread, e.g. "crm.v1.Customer.name".
thread_local std::string t_invalid_utf8_field;

void OnProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                   const std::string& message) {
  static const std::string kPrefix = "String field '";
  const size_t start = message.find(kPrefix);
  if (start != std::string::npos && message.find("invalid UTF-8") != std::string::npos) {
    const size_t name_start = start + kPrefix.size();
    const size_t name_end = message.find('\'', name_start);
    if (name_end != std::string::npos) {
      t_invalid_utf8_field = message.substr(name_start, name_end - name_start);
      return;  // reported to the client instead of the log
    }
  }
  std::fprintf(stderr, "[libprotobuf %s:%d] %s\n", filename, line, message.c_str());
}

// The path from `type` to the field `full_field_name` ("crm.v1.Address.city" -> "address.city"), or
// "".
std::string FieldPath(const google::protobuf::Descriptor* type, absl::string_view full_field_name,
                      int depth = 0) {
  if (type == nullptr || depth > 6) return "";
  for (int i = 0; i < type->field_count(); ++i) {
    const auto* f = type->field(i);
    if (f->full_name() == full_field_name) return f->name();
  }
  for (int i = 0; i < type->field_count(); ++i) {
    const auto* f = type->field(i);
    if (f->message_type() == nullptr) continue;
    std::string sub = FieldPath(f->message_type(), full_field_name, depth + 1);
    if (!sub.empty()) return absl::StrCat(f->name(), ".", sub);
  }
  return "";
}

class MalformedRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestInterceptor(const char* method) : method_(method) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
          status.error_message().empty()) {
        Rewrite(methods);
      }
    }
    methods->Proceed();
  }

 private:
  void Rewrite(grpc::experimental::InterceptorBatchMethods* methods) {
    // "/crm.v1.CustomerProfileService/UpdateCustomer" ->
    // "crm.v1.CustomerProfileService.UpdateCustomer"
    std::string name = method_;
    if (!name.empty() && name.front() == '/') name.erase(0, 1);
    absl::StrReplaceAll({{"/", "."}}, &name);
    const auto* method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
    if (method == nullptr) return;  // really not implemented here
    std::string field = std::move(t_invalid_utf8_field);
    t_invalid_utf8_field.clear();
    std::string message;
    if (!field.empty()) {
      std::string path = FieldPath(method->input_type(), field);
      message = absl::StrCat(path.empty() ? field : path, ": is not valid UTF-8");
    } else {
      message = absl::StrCat("request: does not parse as ", method->input_type()->full_name());
    }
    methods->ModifySendStatus(ToGrpc(absl::InvalidArgumentError(message)));
  }

  const char* method_;
};

}  // namespace

void CaptureProtobufParseErrors() {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&OnProtobufLog); });
}

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MalformedRequestInterceptor(info->method());
}

}  // namespace crm::rpc
