// PostgreSQL protocol 3.0 messages: typed views over frame bodies and encoders for the few
// messages the proxy builds itself. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace occ::pg {

// Special codes in the length-prefixed, untyped first packet of a connection.
inline constexpr int32_t kProtocolV3 = 196608;        // 3.0
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;
inline constexpr int32_t kCancelRequestCode = 80877102;
// The server's own bound on a startup packet (src/backend/postmaster: MAX_STARTUP_PACKET_LENGTH).
inline constexpr std::size_t kMaxStartupPacket = 10000;

// Typed message codes (first byte of every message after startup).
namespace fe {  // frontend -> backend
inline constexpr char kBind = 'B', kClose = 'C', kCopyData = 'd', kCopyDone = 'c', kCopyFail = 'f',
                      kDescribe = 'D', kExecute = 'E', kFlush = 'H', kFunctionCall = 'F', kParse = 'P',
                      kPassword = 'p', kQuery = 'Q', kSync = 'S', kTerminate = 'X';
}
namespace be {  // backend -> frontend
inline constexpr char kAuthentication = 'R', kBackendKeyData = 'K', kBindComplete = '2',
                      kCloseComplete = '3', kCommandComplete = 'C', kCopyData = 'd', kCopyDone = 'c',
                      kCopyInResponse = 'G', kCopyOutResponse = 'H', kCopyBothResponse = 'W',
                      kDataRow = 'D', kEmptyQueryResponse = 'I', kErrorResponse = 'E',
                      kFunctionCallResponse = 'V', kNegotiateProtocolVersion = 'v', kNoData = 'n',
                      kNoticeResponse = 'N', kNotificationResponse = 'A', kParameterDescription = 't',
                      kParameterStatus = 'S', kParseComplete = '1', kPortalSuspended = 's',
                      kReadyForQuery = 'Z', kRowDescription = 'T';
}

enum class Direction { frontend, backend };

// Name of a typed message for logs ("Parse", "DataRow"); nullptr when the code is not one.
const char* message_name(Direction direction, char type);

// A body that does not match its message type's layout.
struct MalformedMessage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bounds-checked reads from a message body; every overrun throws MalformedMessage.
class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : body_(body) {}
  uint8_t u8();
  int16_t i16();
  int32_t i32();
  std::string_view cstring();        // up to and without the NUL
  std::string_view bytes(std::size_t n);
  std::size_t remaining() const { return body_.size() - pos_; }
  std::size_t position() const { return pos_; }
  void expect_end() const;

 private:
  std::string_view body_;
  std::size_t pos_ = 0;
};

// Builds messages into a caller-owned buffer (appended, so a batch shares one allocation).
class MessageWriter {
 public:
  explicit MessageWriter(std::string& out) : out_(out) {}
  void begin(char type);  // typed message; type 0 starts an untyped (startup-phase) packet
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void i16(int16_t v);
  void i32(int32_t v);
  void cstring(std::string_view s);
  void bytes(std::string_view s) { out_.append(s); }
  void finish();  // patches the length of the message begun last

 private:
  std::string& out_;
  std::size_t start_ = 0;
  bool typed_ = true;
};

struct StartupMessage {
  int32_t protocol = kProtocolV3;
  std::vector<std::pair<std::string, std::string>> parameters;  // in the client's order
  std::string_view get(std::string_view key) const;
};
// `body` is the packet after its length word (starting with the protocol code).
StartupMessage decode_startup(std::string_view body);
void encode_startup(std::string& out, const StartupMessage& m);

struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
CancelRequest decode_cancel(std::string_view body);
void encode_cancel(std::string& out, const CancelRequest& m);
void encode_ssl_request(std::string& out);
void encode_gssenc_request(std::string& out);

// ErrorResponse and NoticeResponse: (field code, value) pairs.
struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;
  std::string_view get(char code) const;
  void set(char code, std::string value);
};
ErrorFields decode_error_fields(std::string_view body);
void encode_error(std::string& out, char type, const ErrorFields& fields);
// A proxy-made ErrorResponse: severity ERROR or FATAL, code, message, optional detail/hint.
void encode_error(std::string& out, std::string_view severity, std::string_view sqlstate,
                  std::string_view message, std::string_view detail = {}, std::string_view hint = {});

struct Query {
  std::string_view sql;
};
Query decode_query(std::string_view body);
void encode_query(std::string& out, std::string_view sql);

struct Parse {
  std::string_view statement;
  std::string_view sql;
  std::vector<int32_t> param_types;
};
Parse decode_parse(std::string_view body);
void encode_parse(std::string& out, const Parse& m);

struct Bind {
  std::string_view portal;
  std::string_view statement;
  std::vector<int16_t> param_formats;
  std::vector<std::optional<std::string_view>> params;  // nullopt = SQL NULL
  std::vector<int16_t> result_formats;
};
Bind decode_bind(std::string_view body);
// The format (0 text, 1 binary) of value i under a Bind's list of format codes, which has none (all
// text), one (for all) or one per value.
inline int16_t format_code(const std::vector<int16_t>& codes, std::size_t i) {
  if (codes.empty()) return 0;
  if (codes.size() == 1) return codes[0];
  return i < codes.size() ? codes[i] : 0;
}
void encode_bind(std::string& out, const Bind& m);

struct Describe {
  char kind = 'S';  // 'S' statement or 'P' portal
  std::string_view name;
};
Describe decode_describe(std::string_view body);  // also Close, which has the same layout
void encode_describe(std::string& out, char type, const Describe& m);

struct Execute {
  std::string_view portal;
  int32_t max_rows = 0;
};
Execute decode_execute(std::string_view body);
void encode_execute(std::string& out, const Execute& m);

struct ReadyForQuery {
  char status = 'I';  // 'I' idle, 'T' in transaction, 'E' failed transaction
};
ReadyForQuery decode_ready_for_query(std::string_view body);
void encode_ready_for_query(std::string& out, char status);

struct ParameterStatus {
  std::string_view name;
  std::string_view value;
};
ParameterStatus decode_parameter_status(std::string_view body);
void encode_parameter_status(std::string& out, const ParameterStatus& m);

struct BackendKeyData {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
BackendKeyData decode_backend_key_data(std::string_view body);
void encode_backend_key_data(std::string& out, const BackendKeyData& m);

struct CommandComplete {
  std::string_view tag;
};
CommandComplete decode_command_complete(std::string_view body);
void encode_command_complete(std::string& out, std::string_view tag);

struct FieldDescription {
  std::string_view name;
  int32_t table_oid = 0;
  int16_t column = 0;
  int32_t type_oid = 0;
  int16_t type_size = 0;
  int32_t type_modifier = 0;
  int16_t format = 0;
};
struct RowDescription {
  std::vector<FieldDescription> fields;
};
RowDescription decode_row_description(std::string_view body);
void encode_row_description(std::string& out, const RowDescription& m);

struct DataRow {
  std::vector<std::optional<std::string_view>> values;  // nullopt = SQL NULL
};
DataRow decode_data_row(std::string_view body);
void encode_data_row(std::string& out, const DataRow& m);

struct ParameterDescription {
  std::vector<int32_t> types;
};
ParameterDescription decode_parameter_description(std::string_view body);
void encode_parameter_description(std::string& out, const ParameterDescription& m);

// Authentication request codes.
inline constexpr int32_t kAuthOk = 0, kAuthCleartext = 3, kAuthMd5 = 5, kAuthSasl = 10, kAuthSaslContinue = 11,
                         kAuthSaslFinal = 12;

struct Authentication {
  int32_t code = 0;          // one of the kAuth codes
  std::string_view payload;  // the rest of the body
};
Authentication decode_authentication(std::string_view body);

struct NotificationResponse {
  int32_t process_id = 0;
  std::string_view channel;
  std::string_view payload;
};
NotificationResponse decode_notification(std::string_view body);

// Checks that a complete typed message's body has its type's layout, for types whose layout is
// fixed by the protocol; throws MalformedMessage naming the message. Unknown types are accepted:
// the server is the judge of those.
void validate(Direction direction, char type, std::string_view body);

}  // namespace occ::pg
