// Encoding and decoding of protocol 3.0 message bodies.
#include "wire/messages.h"

#include <arpa/inet.h>

#include <cstring>

namespace occ::pg {

const char* message_name(Direction direction, char type) {
  if (direction == Direction::frontend) {
    switch (type) {
      case fe::kBind: return "Bind";
      case fe::kClose: return "Close";
      case fe::kCopyData: return "CopyData";
      case fe::kCopyDone: return "CopyDone";
      case fe::kCopyFail: return "CopyFail";
      case fe::kDescribe: return "Describe";
      case fe::kExecute: return "Execute";
      case fe::kFlush: return "Flush";
      case fe::kFunctionCall: return "FunctionCall";
      case fe::kParse: return "Parse";
      case fe::kPassword: return "PasswordMessage";
      case fe::kQuery: return "Query";
      case fe::kSync: return "Sync";
      case fe::kTerminate: return "Terminate";
      default: return nullptr;
    }
  }
  switch (type) {
    case be::kAuthentication: return "Authentication";
    case be::kBackendKeyData: return "BackendKeyData";
    case be::kBindComplete: return "BindComplete";
    case be::kCloseComplete: return "CloseComplete";
    case be::kCommandComplete: return "CommandComplete";
    case be::kCopyData: return "CopyData";
    case be::kCopyDone: return "CopyDone";
    case be::kCopyInResponse: return "CopyInResponse";
    case be::kCopyOutResponse: return "CopyOutResponse";
    case be::kCopyBothResponse: return "CopyBothResponse";
    case be::kDataRow: return "DataRow";
    case be::kEmptyQueryResponse: return "EmptyQueryResponse";
    case be::kErrorResponse: return "ErrorResponse";
    case be::kFunctionCallResponse: return "FunctionCallResponse";
    case be::kNegotiateProtocolVersion: return "NegotiateProtocolVersion";
    case be::kNoData: return "NoData";
    case be::kNoticeResponse: return "NoticeResponse";
    case be::kNotificationResponse: return "NotificationResponse";
    case be::kParameterDescription: return "ParameterDescription";
    case be::kParameterStatus: return "ParameterStatus";
    case be::kParseComplete: return "ParseComplete";
    case be::kPortalSuspended: return "PortalSuspended";
    case be::kReadyForQuery: return "ReadyForQuery";
    case be::kRowDescription: return "RowDescription";
    default: return nullptr;
  }
}

// ---- BodyReader -------------------------------------------------------------------------------

static void need(std::size_t have, std::size_t want) {
  if (have < want) throw MalformedMessage("message body ends early");
}

uint8_t BodyReader::u8() {
  need(remaining(), 1);
  return static_cast<uint8_t>(body_[pos_++]);
}

int16_t BodyReader::i16() {
  need(remaining(), 2);
  uint16_t v;
  std::memcpy(&v, body_.data() + pos_, 2);
  pos_ += 2;
  return static_cast<int16_t>(ntohs(v));
}

int32_t BodyReader::i32() {
  need(remaining(), 4);
  uint32_t v;
  std::memcpy(&v, body_.data() + pos_, 4);
  pos_ += 4;
  return static_cast<int32_t>(ntohl(v));
}

std::string_view BodyReader::cstring() {
  auto nul = body_.find('\0', pos_);
  if (nul == std::string_view::npos) throw MalformedMessage("string without terminator");
  auto s = body_.substr(pos_, nul - pos_);
  pos_ = nul + 1;
  return s;
}

std::string_view BodyReader::bytes(std::size_t n) {
  need(remaining(), n);
  auto s = body_.substr(pos_, n);
  pos_ += n;
  return s;
}

void BodyReader::expect_end() const {
  if (remaining() != 0) throw MalformedMessage("trailing bytes after message body");
}

// A count read from the wire that must be non-negative.
static std::size_t count16(BodyReader& r) {
  int16_t n = r.i16();
  if (n < 0) throw MalformedMessage("negative count");
  return static_cast<std::size_t>(n);
}

// ---- MessageWriter ----------------------------------------------------------------------------

void MessageWriter::begin(char type) {
  typed_ = type != 0;
  if (typed_) out_.push_back(type);
  start_ = out_.size();
  out_.append(4, '\0');
}

void MessageWriter::i16(int16_t v) {
  uint16_t n = htons(static_cast<uint16_t>(v));
  out_.append(reinterpret_cast<const char*>(&n), 2);
}

void MessageWriter::i32(int32_t v) {
  uint32_t n = htonl(static_cast<uint32_t>(v));
  out_.append(reinterpret_cast<const char*>(&n), 4);
}

void MessageWriter::cstring(std::string_view s) {
  out_.append(s);
  out_.push_back('\0');
}

void MessageWriter::finish() {
  uint32_t len = htonl(static_cast<uint32_t>(out_.size() - start_));
  std::memcpy(out_.data() + start_, &len, 4);
}

// ---- startup phase ----------------------------------------------------------------------------

std::string_view StartupMessage::get(std::string_view key) const {
  for (const auto& [k, v] : parameters)
    if (k == key) return v;
  return {};
}

StartupMessage decode_startup(std::string_view body) {
  BodyReader r(body);
  StartupMessage m;
  m.protocol = r.i32();
  if (m.protocol >> 16 != 3) return m;  // another version: the server answers it
  while (true) {
    auto key = r.cstring();
    if (key.empty()) break;
    auto value = r.cstring();
    m.parameters.emplace_back(std::string(key), std::string(value));
  }
  r.expect_end();
  return m;
}

void encode_startup(std::string& out, const StartupMessage& m) {
  MessageWriter w(out);
  w.begin(0);
  w.i32(m.protocol);
  for (const auto& [k, v] : m.parameters) {
    w.cstring(k);
    w.cstring(v);
  }
  w.u8(0);
  w.finish();
}

CancelRequest decode_cancel(std::string_view body) {
  BodyReader r(body);
  if (r.i32() != kCancelRequestCode) throw MalformedMessage("not a CancelRequest");
  CancelRequest m;
  m.process_id = r.i32();
  m.secret_key = r.i32();
  r.expect_end();
  return m;
}

void encode_cancel(std::string& out, const CancelRequest& m) {
  MessageWriter w(out);
  w.begin(0);
  w.i32(kCancelRequestCode);
  w.i32(m.process_id);
  w.i32(m.secret_key);
  w.finish();
}

static void encode_code_only(std::string& out, int32_t code) {
  MessageWriter w(out);
  w.begin(0);
  w.i32(code);
  w.finish();
}

void encode_ssl_request(std::string& out) { encode_code_only(out, kSslRequestCode); }
void encode_gssenc_request(std::string& out) { encode_code_only(out, kGssEncRequestCode); }

// ---- errors and notices -----------------------------------------------------------------------

std::string_view ErrorFields::get(char code) const {
  for (const auto& [c, v] : fields)
    if (c == code) return v;
  return {};
}

void ErrorFields::set(char code, std::string value) {
  for (auto& [c, v] : fields)
    if (c == code) {
      v = std::move(value);
      return;
    }
  fields.emplace_back(code, std::move(value));
}

ErrorFields decode_error_fields(std::string_view body) {
  BodyReader r(body);
  ErrorFields e;
  while (true) {
    char code = static_cast<char>(r.u8());
    if (code == 0) break;
    e.fields.emplace_back(code, std::string(r.cstring()));
  }
  r.expect_end();
  return e;
}

void encode_error(std::string& out, char type, const ErrorFields& fields) {
  MessageWriter w(out);
  w.begin(type);
  for (const auto& [c, v] : fields.fields) {
    w.u8(static_cast<uint8_t>(c));
    w.cstring(v);
  }
  w.u8(0);
  w.finish();
}

void encode_error(std::string& out, std::string_view severity, std::string_view sqlstate,
                  std::string_view message, std::string_view detail, std::string_view hint) {
  MessageWriter w(out);
  w.begin(be::kErrorResponse);
  auto field = [&](char code, std::string_view v) {
    w.u8(static_cast<uint8_t>(code));
    w.cstring(v);
  };
  field('S', severity);
  field('V', severity);
  field('C', sqlstate);
  field('M', message);
  if (!detail.empty()) field('D', detail);
  if (!hint.empty()) field('H', hint);
  w.u8(0);
  w.finish();
}

// ---- extended and simple query ----------------------------------------------------------------

Query decode_query(std::string_view body) {
  BodyReader r(body);
  Query q{r.cstring()};
  r.expect_end();
  return q;
}

void encode_query(std::string& out, std::string_view sql) {
  MessageWriter w(out);
  w.begin(fe::kQuery);
  w.cstring(sql);
  w.finish();
}

Parse decode_parse(std::string_view body) {
  BodyReader r(body);
  Parse p;
  p.statement = r.cstring();
  p.sql = r.cstring();
  auto n = count16(r);
  p.param_types.reserve(n);
  for (std::size_t i = 0; i < n; ++i) p.param_types.push_back(r.i32());
  r.expect_end();
  return p;
}

void encode_parse(std::string& out, const Parse& m) {
  MessageWriter w(out);
  w.begin(fe::kParse);
  w.cstring(m.statement);
  w.cstring(m.sql);
  w.i16(static_cast<int16_t>(m.param_types.size()));
  for (auto t : m.param_types) w.i32(t);
  w.finish();
}

Bind decode_bind(std::string_view body) {
  BodyReader r(body);
  Bind b;
  b.portal = r.cstring();
  b.statement = r.cstring();
  auto nf = count16(r);
  b.param_formats.reserve(nf);
  for (std::size_t i = 0; i < nf; ++i) b.param_formats.push_back(r.i16());
  auto np = count16(r);
  b.params.reserve(np);
  for (std::size_t i = 0; i < np; ++i) {
    int32_t len = r.i32();
    if (len == -1)
      b.params.emplace_back(std::nullopt);
    else if (len < 0)
      throw MalformedMessage("negative parameter length");
    else
      b.params.emplace_back(r.bytes(static_cast<std::size_t>(len)));
  }
  auto nr = count16(r);
  b.result_formats.reserve(nr);
  for (std::size_t i = 0; i < nr; ++i) b.result_formats.push_back(r.i16());
  r.expect_end();
  return b;
}

void encode_bind(std::string& out, const Bind& m) {
  MessageWriter w(out);
  w.begin(fe::kBind);
  w.cstring(m.portal);
  w.cstring(m.statement);
  w.i16(static_cast<int16_t>(m.param_formats.size()));
  for (auto f : m.param_formats) w.i16(f);
  w.i16(static_cast<int16_t>(m.params.size()));
  for (const auto& p : m.params) {
    if (!p) {
      w.i32(-1);
    } else {
      w.i32(static_cast<int32_t>(p->size()));
      w.bytes(*p);
    }
  }
  w.i16(static_cast<int16_t>(m.result_formats.size()));
  for (auto f : m.result_formats) w.i16(f);
  w.finish();
}

Describe decode_describe(std::string_view body) {
  BodyReader r(body);
  Describe d;
  d.kind = static_cast<char>(r.u8());
  if (d.kind != 'S' && d.kind != 'P') throw MalformedMessage("Describe/Close of neither statement nor portal");
  d.name = r.cstring();
  r.expect_end();
  return d;
}

void encode_describe(std::string& out, char type, const Describe& m) {
  MessageWriter w(out);
  w.begin(type);
  w.u8(static_cast<uint8_t>(m.kind));
  w.cstring(m.name);
  w.finish();
}

Execute decode_execute(std::string_view body) {
  BodyReader r(body);
  Execute e;
  e.portal = r.cstring();
  e.max_rows = r.i32();
  r.expect_end();
  return e;
}

void encode_execute(std::string& out, const Execute& m) {
  MessageWriter w(out);
  w.begin(fe::kExecute);
  w.cstring(m.portal);
  w.i32(m.max_rows);
  w.finish();
}

// ---- backend messages -------------------------------------------------------------------------

ReadyForQuery decode_ready_for_query(std::string_view body) {
  BodyReader r(body);
  ReadyForQuery z{static_cast<char>(r.u8())};
  r.expect_end();
  if (z.status != 'I' && z.status != 'T' && z.status != 'E')
    throw MalformedMessage("ReadyForQuery with an unknown transaction status");
  return z;
}

void encode_ready_for_query(std::string& out, char status) {
  MessageWriter w(out);
  w.begin(be::kReadyForQuery);
  w.u8(static_cast<uint8_t>(status));
  w.finish();
}

ParameterStatus decode_parameter_status(std::string_view body) {
  BodyReader r(body);
  ParameterStatus s;
  s.name = r.cstring();
  s.value = r.cstring();
  r.expect_end();
  return s;
}

void encode_parameter_status(std::string& out, const ParameterStatus& m) {
  MessageWriter w(out);
  w.begin(be::kParameterStatus);
  w.cstring(m.name);
  w.cstring(m.value);
  w.finish();
}

BackendKeyData decode_backend_key_data(std::string_view body) {
  BodyReader r(body);
  BackendKeyData k;
  k.process_id = r.i32();
  k.secret_key = r.i32();
  r.expect_end();
  return k;
}

void encode_backend_key_data(std::string& out, const BackendKeyData& m) {
  MessageWriter w(out);
  w.begin(be::kBackendKeyData);
  w.i32(m.process_id);
  w.i32(m.secret_key);
  w.finish();
}

CommandComplete decode_command_complete(std::string_view body) {
  BodyReader r(body);
  CommandComplete c{r.cstring()};
  r.expect_end();
  return c;
}

void encode_command_complete(std::string& out, std::string_view tag) {
  MessageWriter w(out);
  w.begin(be::kCommandComplete);
  w.cstring(tag);
  w.finish();
}

RowDescription decode_row_description(std::string_view body) {
  BodyReader r(body);
  RowDescription d;
  auto n = count16(r);
  d.fields.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    FieldDescription f;
    f.name = r.cstring();
    f.table_oid = r.i32();
    f.column = r.i16();
    f.type_oid = r.i32();
    f.type_size = r.i16();
    f.type_modifier = r.i32();
    f.format = r.i16();
    d.fields.push_back(f);
  }
  r.expect_end();
  return d;
}

void encode_row_description(std::string& out, const RowDescription& m) {
  MessageWriter w(out);
  w.begin(be::kRowDescription);
  w.i16(static_cast<int16_t>(m.fields.size()));
  for (const auto& f : m.fields) {
    w.cstring(f.name);
    w.i32(f.table_oid);
    w.i16(f.column);
    w.i32(f.type_oid);
    w.i16(f.type_size);
    w.i32(f.type_modifier);
    w.i16(f.format);
  }
  w.finish();
}

DataRow decode_data_row(std::string_view body) {
  BodyReader r(body);
  DataRow d;
  auto n = count16(r);
  d.values.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    int32_t len = r.i32();
    if (len == -1)
      d.values.emplace_back(std::nullopt);
    else if (len < 0)
      throw MalformedMessage("negative column length");
    else
      d.values.emplace_back(r.bytes(static_cast<std::size_t>(len)));
  }
  r.expect_end();
  return d;
}

void encode_data_row(std::string& out, const DataRow& m) {
  MessageWriter w(out);
  w.begin(be::kDataRow);
  w.i16(static_cast<int16_t>(m.values.size()));
  for (const auto& v : m.values) {
    if (!v) {
      w.i32(-1);
    } else {
      w.i32(static_cast<int32_t>(v->size()));
      w.bytes(*v);
    }
  }
  w.finish();
}

ParameterDescription decode_parameter_description(std::string_view body) {
  BodyReader r(body);
  ParameterDescription d;
  auto n = count16(r);
  d.types.reserve(n);
  for (std::size_t i = 0; i < n; ++i) d.types.push_back(r.i32());
  r.expect_end();
  return d;
}

void encode_parameter_description(std::string& out, const ParameterDescription& m) {
  MessageWriter w(out);
  w.begin(be::kParameterDescription);
  w.i16(static_cast<int16_t>(m.types.size()));
  for (auto t : m.types) w.i32(t);
  w.finish();
}

Authentication decode_authentication(std::string_view body) {
  BodyReader r(body);
  Authentication a;
  a.code = r.i32();
  a.payload = r.bytes(r.remaining());
  return a;
}

NotificationResponse decode_notification(std::string_view body) {
  BodyReader r(body);
  NotificationResponse n;
  n.process_id = r.i32();
  n.channel = r.cstring();
  n.payload = r.cstring();
  r.expect_end();
  return n;
}

void validate(Direction direction, char type, std::string_view body) {
  const char* name = message_name(direction, type);
  try {
    if (direction == Direction::frontend) {
      switch (type) {
        case fe::kQuery: decode_query(body); break;
        case fe::kParse: decode_parse(body); break;
        case fe::kBind: decode_bind(body); break;
        case fe::kDescribe:
        case fe::kClose: decode_describe(body); break;
        case fe::kExecute: decode_execute(body); break;
        case fe::kSync:
        case fe::kFlush:
        case fe::kTerminate:
        case fe::kCopyDone:
          if (!body.empty()) throw MalformedMessage("unexpected body");
          break;
        default: break;
      }
    } else {
      switch (type) {
        case be::kReadyForQuery: decode_ready_for_query(body); break;
        case be::kRowDescription: decode_row_description(body); break;
        case be::kDataRow: decode_data_row(body); break;
        case be::kErrorResponse:
        case be::kNoticeResponse: decode_error_fields(body); break;
        case be::kParameterStatus: decode_parameter_status(body); break;
        case be::kBackendKeyData: decode_backend_key_data(body); break;
        case be::kCommandComplete: decode_command_complete(body); break;
        case be::kParameterDescription: decode_parameter_description(body); break;
        default: break;
      }
    }
  } catch (const MalformedMessage& e) {
    throw MalformedMessage(std::string(name ? name : "message") + ": " + e.what());
  }
}

}  // namespace occ::pg
