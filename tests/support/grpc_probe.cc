#include "tests/support/grpc_probe.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/client_callback.h"
#include "libs/rpc/status.h"
#include "tests/support/byte_buffer.h"

namespace crm::testing {
namespace {

std::string LengthDelimited(int field, const std::string& bytes) {
  std::string out;
  out.push_back(static_cast<char>((field << 3) | 2));
  size_t n = bytes.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + bytes;
}

// Calls `visit(field, wire_type, coded)` for each top-level field; the visitor consumes the value.
template <typename F>
bool ForEachField(const std::string& bytes, F visit) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  while (uint32_t tag = in.ReadTag()) {
    if (!visit(static_cast<int>(tag >> 3), static_cast<int>(tag & 7), in)) return false;
  }
  return true;
}

bool ReadBytes(google::protobuf::io::CodedInputStream& in, std::string* out) {
  uint32_t len;
  return in.ReadVarint32(&len) && in.ReadString(out, static_cast<int>(len));
}

bool Skip(int wire, google::protobuf::io::CodedInputStream& in) {
  uint64_t v;
  uint32_t v32;
  std::string s;
  switch (wire) {
    case 0: return in.ReadVarint64(&v);
    case 1: return in.ReadLittleEndian64(&v);
    case 2: return ReadBytes(in, &s);
    case 5: return in.ReadLittleEndian32(&v32);
    default: return false;
  }
}

class ReflectionReactor : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit ReflectionReactor(std::string request) : request_(ToBuffer(request)) {}
  void Run() {
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void OnWriteDone(bool) override { StartWritesDone(); }
  void OnReadDone(bool ok) override { got_ = ok; }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }
  absl::StatusOr<std::string> Wait() {
    done_.WaitForNotification();
    if (!status_.ok()) return rpc::FromGrpc(status_);
    if (!got_) return absl::UnavailableError("reflection returned no response");
    return FromBuffer(response_);
  }
  grpc::ClientContext context;

 private:
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  bool got_ = false;
  grpc::Status status_;
  absl::Notification done_;
};

}  // namespace

RawReply RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::string& request,
                      const std::vector<std::pair<std::string, std::string>>& metadata,
                      absl::Duration deadline) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
  grpc::ByteBuffer req = ToBuffer(request), resp;
  RawReply reply;
  absl::Notification done;
  stub.UnaryCall(&ctx, path, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
    reply.status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  reply.body = FromBuffer(resp);
  for (const auto& [k, v] : ctx.GetServerInitialMetadata())
    reply.headers.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  for (const auto& [k, v] : ctx.GetServerTrailingMetadata())
    reply.trailers.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  return reply;
}

absl::StatusOr<int> HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service) {
  const RawReply reply = RawUnaryCall(channel, "/grpc.health.v1.Health/Check",
                                      service.empty() ? std::string() : LengthDelimited(1, service),
                                      {}, absl::Seconds(5));
  if (!reply.status.ok()) return rpc::FromGrpc(reply.status);
  int serving = 0;  // an absent field is the enum's zero, UNKNOWN
  const bool parsed = ForEachField(reply.body, [&](int field, int wire, auto& in) {
    if (field == 1 && wire == 0) {
      uint32_t v;
      if (!in.ReadVarint32(&v)) return false;
      serving = static_cast<int>(v);
      return true;
    }
    return Skip(wire, in);
  });
  if (!parsed) return absl::DataLossError("health response does not parse");
  return serving;
}

namespace {

// One ServerReflectionInfo exchange: one request, its one response.
absl::StatusOr<std::string> AskReflection(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& request) {
  grpc::GenericStub stub(channel);
  ReflectionReactor reactor(request);
  reactor.context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  stub.PrepareBidiStreamingCall(&reactor.context,
                                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                grpc::StubOptions(), &reactor);
  reactor.Run();
  return reactor.Wait();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReflectionFilesContaining(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& symbol) {
  // ServerReflectionRequest { file_containing_symbol = 4 }
  auto bytes = AskReflection(channel, LengthDelimited(4, symbol));
  if (!bytes.ok()) return bytes.status();
  // ServerReflectionResponse { file_descriptor_response = 4 { file_descriptor_proto = 1 (repeated
  // bytes) },
  //                            error_response = 7 { error_code = 1, error_message = 2 } }
  std::vector<std::string> files;
  std::string error;
  const bool parsed = ForEachField(*bytes, [&](int field, int wire, auto& in) {
    if ((field != 4 && field != 7) || wire != 2) return Skip(wire, in);
    std::string inner;
    if (!ReadBytes(in, &inner)) return false;
    if (field == 7) {
      error = inner;
      return true;
    }
    return ForEachField(inner, [&](int f2, int w2, auto& in2) {
      if (f2 != 1 || w2 != 2) return Skip(w2, in2);
      std::string file;
      if (!ReadBytes(in2, &file)) return false;
      files.push_back(std::move(file));
      return true;
    });
  });
  if (!parsed) return absl::DataLossError("reflection response does not parse");
  if (!error.empty()) return absl::NotFoundError(absl::StrCat("reflection does not know ", symbol));
  return files;
}

absl::StatusOr<std::vector<std::string>> ReflectionServices(
    const std::shared_ptr<grpc::Channel>& channel) {
  // ServerReflectionRequest { list_services = 7: "*" }
  auto bytes = AskReflection(channel, LengthDelimited(7, "*"));
  if (!bytes.ok()) return bytes.status();
  // ServerReflectionResponse { list_services_response = 6 { service = 1 { name = 1 } } }
  std::vector<std::string> names;
  const bool parsed = ForEachField(*bytes, [&](int field, int wire, auto& in) {
    if (field != 6 || wire != 2) return Skip(wire, in);
    std::string list;
    if (!ReadBytes(in, &list)) return false;
    return ForEachField(list, [&](int f2, int w2, auto& in2) {
      if (f2 != 1 || w2 != 2) return Skip(w2, in2);
      std::string service;
      if (!ReadBytes(in2, &service)) return false;
      return ForEachField(service, [&](int f3, int w3, auto& in3) {
        if (f3 != 1 || w3 != 2) return Skip(w3, in3);
        std::string name;
        if (!ReadBytes(in3, &name)) return false;
        names.push_back(name);
        return true;
      });
    });
  });
  if (!parsed) return absl::DataLossError("reflection response does not parse");
  return names;
}

}  // namespace crm::testing
