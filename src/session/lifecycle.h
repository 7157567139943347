// A session's phases, and why it ended with what the log and the client are told: one row per
// reason, so every way a session can end is listed in one place.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace occ {

enum class Phase : uint8_t {
  startup,         // the startup packet, SSLRequest, the server connection
  authenticating,  // until the server's AuthenticationOk reaches the client
  relaying,
  draining,        // shutting down: ends once the client's transaction does
  out_of_sync,     // a server reply matched no request in flight: ending (Relay::out_of_sync)
  ended,
};

enum class EndReason : uint8_t {
  client_terminated,        // Terminate message
  client_closed,            // end of file from the client
  client_error,             // a socket error reading from the client
  client_lost,              // a write to the client failed (it went away mid-result)
  client_message_too_long,  // a frame over max_message_length
  client_bad_length,        // a length word that cannot be valid
  client_malformed,         // a message that does not decode
  channel_binding_refused,  // SCRAM-SHA-256-PLUS through TLS on both hops (auth.mode: passthrough)
  server_lost,              // the server connection closed or failed
  server_malformed,         // a server message that does not decode
  startup_lost,             // the server closed the connection before the session began
  replies_out_of_sync,      // a server reply matched no request in flight
  shutdown,                 // the proxy is shutting down
  // Before relaying: the session is refused.
  tls_required,             // a plaintext client while tls.client_mode is require
  startup_malformed,        // a startup packet that does not decode
  too_many_clients,         // max_client_connections reached
  upstream_unreachable,     // no connection (or no TLS) to the database server
  auth_lookup_failed,       // auth.mode terminate: the role's secret could not be looked up
  login_refused,            // auth.mode terminate: the client's proof failed
  server_login_failed,      // auth.mode terminate: the proxy could not log into the server
};

// Where an end's detail goes in the client's FATAL besides the log line.
enum class DetailGoes : uint8_t { nowhere, after_message, detail_field };

struct EndReasonRow {
  EndReason reason;
  std::string_view log;             // for the log line "session ended: <log>[: <detail>]"
  // Empty: the client gets no FATAL (it left, or cannot be told), or one its caller builds.
  std::string_view client_sqlstate;
  std::string_view client_message;  // the FATAL's message
  DetailGoes detail = DetailGoes::nowhere;
};

const EndReasonRow& end_reason_row(EndReason reason);

// The FATAL ErrorResponse a client is sent before the close.
struct ClientFatal {
  std::string sqlstate;
  std::string message;
  std::string detail;  // the DETAIL field; empty: none
};

// The FATAL a client gets for `reason` and `detail`, or none.
std::optional<ClientFatal> client_fatal(EndReason reason, std::string_view detail);
// The ErrorResponse bytes of `fatal`, appended to `out`.
void encode_fatal(std::string& out, const ClientFatal& fatal);

}  // namespace occ
