// libFuzzer target: frame reader and message decoders, both directions; what decodes re-encodes to its bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "wire/frame_reader.h"
#include "wire/messages.h"

namespace {

using occ::Frame;
using occ::FrameReader;
namespace pg = occ::pg;

// Small limits, so short inputs reach the too_long and streaming paths the session takes for
// big frames (it streams CopyData and DataRow above 256 KiB).
constexpr std::size_t kMaxBody = 4096;
constexpr std::size_t kStreamAbove = 512;
constexpr int kMaxEncryptionRequests = 3;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_wire: %s\n", what);
  std::abort();
}

uint32_t length_word(const char* p) {
  return (uint32_t{static_cast<unsigned char>(p[0])} << 24) | (uint32_t{static_cast<unsigned char>(p[1])} << 16) |
         (uint32_t{static_cast<unsigned char>(p[2])} << 8) | uint32_t{static_cast<unsigned char>(p[3])};
}

// The re-encoding of a typed frame by its direction's encoder; nullopt when the proxy has no
// decoder for the type. Throws MalformedMessage as the decoder does.
std::optional<std::string> reencode_typed(pg::Direction direction, const Frame& f) {
  std::string out;
  if (direction == pg::Direction::frontend) {
    switch (f.type) {
      case pg::fe::kQuery: pg::encode_query(out, pg::decode_query(f.body).sql); break;
      case pg::fe::kParse: pg::encode_parse(out, pg::decode_parse(f.body)); break;
      case pg::fe::kBind: pg::encode_bind(out, pg::decode_bind(f.body)); break;
      case pg::fe::kDescribe:
      case pg::fe::kClose: pg::encode_describe(out, f.type, pg::decode_describe(f.body)); break;
      case pg::fe::kExecute: pg::encode_execute(out, pg::decode_execute(f.body)); break;
      default: return std::nullopt;
    }
    return out;
  }
  switch (f.type) {
    case pg::be::kReadyForQuery: pg::encode_ready_for_query(out, pg::decode_ready_for_query(f.body).status); break;
    case pg::be::kParameterStatus: pg::encode_parameter_status(out, pg::decode_parameter_status(f.body)); break;
    case pg::be::kBackendKeyData: pg::encode_backend_key_data(out, pg::decode_backend_key_data(f.body)); break;
    case pg::be::kCommandComplete: pg::encode_command_complete(out, pg::decode_command_complete(f.body).tag); break;
    case pg::be::kRowDescription: pg::encode_row_description(out, pg::decode_row_description(f.body)); break;
    case pg::be::kDataRow: pg::encode_data_row(out, pg::decode_data_row(f.body)); break;
    case pg::be::kParameterDescription:
      pg::encode_parameter_description(out, pg::decode_parameter_description(f.body));
      break;
    case pg::be::kErrorResponse:
    case pg::be::kNoticeResponse: pg::encode_error(out, f.type, pg::decode_error_fields(f.body)); break;
    case pg::be::kAuthentication: {
      // No encoder (the proxy never authenticates anyone): the payload must be the body's tail.
      auto a = pg::decode_authentication(f.body);
      check(a.payload.data() == f.body.data() + 4 && a.payload.size() == f.body.size() - 4,
            "Authentication payload is not the rest of the body");
      out.assign(f.raw);
      break;
    }
    case pg::be::kNotificationResponse: {
      auto n = pg::decode_notification(f.body);
      check(n.channel.size() + n.payload.size() + 6 == f.body.size(), "NotificationResponse fields leave bytes over");
      out.assign(f.raw);
      break;
    }
    default: return std::nullopt;
  }
  return out;
}

// Typed frames: the decoder's verdict must agree with validate(), and a good body round-trips.
void on_typed_frame(pg::Direction direction, const Frame& f) {
  std::optional<std::string> encoded;
  bool decoded = true;
  try {
    encoded = reencode_typed(direction, f);
  } catch (const pg::MalformedMessage&) {
    decoded = false;
  }
  bool valid = true;
  try {
    pg::validate(direction, f.type, f.body);
  } catch (const pg::MalformedMessage& e) {
    valid = false;
    check(std::strlen(e.what()) > 0, "MalformedMessage without a reason");
  }
  // validate() rejects only what the matching decoder rejects (it skips the types it does not cover).
  if (!valid) check(!decoded || !encoded, "validate() refuses a body its decoder accepts");
  if (decoded && encoded) check(*encoded == f.raw, "decoded message does not re-encode to the same bytes");
}

// Startup-phase packets, as the session reads them before the StartupMessage.
enum class Startup { again, done, close };

Startup on_untyped_frame(const Frame& f) {
  std::string out;
  try {
    pg::BodyReader r(f.body);
    const int32_t code = r.i32();
    if (code == pg::kSslRequestCode || code == pg::kGssEncRequestCode) {
      if (f.body.size() != 4) return Startup::close;
      code == pg::kSslRequestCode ? pg::encode_ssl_request(out) : pg::encode_gssenc_request(out);
      check(out == f.raw, "SSLRequest/GSSENCRequest does not re-encode to the same bytes");
      return Startup::again;
    }
    if (code == pg::kCancelRequestCode) {
      pg::encode_cancel(out, pg::decode_cancel(f.body));
      check(out == f.raw, "CancelRequest does not re-encode to the same bytes");
      return Startup::close;
    }
    auto startup = pg::decode_startup(f.body);
    check(startup.protocol == code, "StartupMessage protocol is not the packet's code");
    // Other versions are not parsed (the server answers them), so only 3.x re-encodes exactly.
    if (code >> 16 == 3) {
      pg::encode_startup(out, startup);
      check(out == f.raw, "StartupMessage does not re-encode to the same bytes");
    }
    return Startup::done;
  } catch (const pg::MalformedMessage&) {
    return Startup::close;
  }
}

// Input: one flags byte, then the byte stream of one direction.
//   bit 0: server-to-client stream (else client-to-server)
//   bit 1: client-to-server stream that starts in the startup phase (untyped packets)
//   bits 2-7: the stream arrives in reads of (n + 1) bytes, so frames split at every offset
void run(const uint8_t* data, std::size_t size) {
  if (size < 1) return;
  const uint8_t flags = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto direction = (flags & 1) ? pg::Direction::backend : pg::Direction::frontend;
  bool untyped = direction == pg::Direction::frontend && (flags & 2);
  const std::size_t piece = (flags >> 2) + 1u;

  FrameReader reader(untyped ? pg::kMaxStartupPacket : kMaxBody, 8);
  reader.set_untyped(untyped);
  int encryption_requests = 0;
  std::size_t fed = 0;
  std::size_t consumed = 0;  // bytes handed back as frames or streamed chunks, in stream order
  std::size_t streaming = 0;  // bytes still due of a frame being streamed

  auto take = [&](std::string_view raw) {
    check(raw.size() <= stream.size() - consumed && raw == stream.substr(consumed, raw.size()),
          "reader returned bytes that are not the next ones of the stream");
    consumed += raw.size();
  };

  while (fed < stream.size()) {
    auto area = reader.write_area(1);
    check(!area.empty(), "write_area() returned no room");
    const std::size_t n = std::min({piece, area.size(), stream.size() - fed});
    std::memcpy(area.data(), stream.data() + fed, n);
    reader.commit(n);
    fed += n;
    for (;;) {
      Frame f;
      const auto status = reader.next(f);
      if (status == FrameReader::Status::chunk) {
        check(streaming >= f.raw.size() && !f.raw.empty(), "chunk beyond the streamed frame's length");
        streaming -= f.raw.size();
        take(f.raw);
        continue;
      }
      if (status == FrameReader::Status::bad_length || status == FrameReader::Status::too_long) return;
      if (status == FrameReader::Status::need_more) {
        check(reader.buffered() == fed - consumed, "reader lost or invented bytes");
        char type = 0;
        std::size_t body = 0;
        if (!untyped && reader.head_incomplete(type, body) && body > kStreamAbove &&
            (type == pg::fe::kCopyData || (direction == pg::Direction::backend && type == pg::be::kDataRow))) {
          check(streaming == 0, "a frame is streamed while another one still is");
          const std::string_view head = reader.stream_head();
          check(head.size() < 5 + body, "stream_head() returned a whole frame");
          streaming = 5 + body - head.size();
          take(head);
        }
        break;
      }
      check(streaming == 0, "a frame arrived before the streamed one ended");
      const std::size_t header = untyped ? 4 : 5;
      check(f.raw.size() == header + f.body.size() && f.body.data() == f.raw.data() + header,
            "frame body is not the raw bytes after the header");
      check(length_word(f.raw.data() + header - 4) == f.body.size() + 4, "frame length word disagrees with its body");
      check(f.body.size() <= (untyped ? pg::kMaxStartupPacket : kMaxBody), "frame longer than the limit");
      check(untyped ? f.type == 0 : f.type == f.raw[0], "frame type is not its first byte");
      take(f.raw);
      if (!untyped) {
        on_typed_frame(direction, f);
        continue;
      }
      const Startup next = on_untyped_frame(f);
      if (next == Startup::close) return;
      if (next == Startup::again) {
        if (++encryption_requests == kMaxEncryptionRequests) return;
        continue;
      }
      untyped = false;
      reader.set_untyped(false);
      reader.set_max_body_length(kMaxBody);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  run(data, size);
  return 0;
}
