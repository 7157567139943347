// A session's phases, and why it ended with what the log and the client are told: one row per
// reason, so every way a session can end is listed in one place.
#pragma once

#include <cstdint>
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
};

struct EndReasonRow {
  EndReason reason;
  std::string_view log;             // for the log line "session ended: <log>[: <detail>]"
  std::string_view client_sqlstate; // empty: the client gets no FATAL (it left, or cannot be told)
  std::string_view client_message;  // the FATAL's message; a detail follows "<message>: " when given
};

const EndReasonRow& end_reason_row(EndReason reason);

// The FATAL message a client gets for `reason` (empty when it gets none), with `detail` appended
// where the row's message takes one.
std::string client_fatal_message(EndReason reason, std::string_view detail);

}  // namespace occ
