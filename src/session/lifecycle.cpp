#include "session/lifecycle.h"

#include <array>
#include <stdexcept>

namespace occ {

namespace {

// Where the protocol allows, the client learns why: a FATAL ErrorResponse before the close. A
// client that left, or whose connection failed, is told nothing.
constexpr std::array kRows = {
    EndReasonRow{EndReason::client_terminated, "client terminated the session", "", ""},
    EndReasonRow{EndReason::client_closed, "client closed the connection", "", ""},
    EndReasonRow{EndReason::client_error, "client connection error", "", ""},
    EndReasonRow{EndReason::client_lost, "client connection lost", "", ""},
    EndReasonRow{EndReason::client_message_too_long, "message too long", "08P01",
                 "occproxy: message exceeds max_message_length"},
    EndReasonRow{EndReason::client_bad_length, "invalid message length", "08P01", "invalid message length"},
    EndReasonRow{EndReason::client_malformed, "malformed message", "08P01", "invalid message: "},
    EndReasonRow{EndReason::channel_binding_refused, "channel binding refused", "28000",
                 "occproxy: SCRAM channel binding cannot pass through a proxy that terminates TLS; connect with "
                 "channel_binding=disable, or set auth.mode: terminate on the proxy"},
    EndReasonRow{EndReason::server_lost, "server connection lost", "08006",
                 "occproxy: lost the connection to the database server"},
    EndReasonRow{EndReason::server_malformed, "malformed server message", "08P01",
                 "occproxy: malformed message from the database server"},
    EndReasonRow{EndReason::startup_lost, "connection lost during startup", "08006",
                 "occproxy: the database server closed the connection during startup"},
    EndReasonRow{EndReason::replies_out_of_sync, "server reply out of sync", "08P01",
                 "occproxy: lost track of the database server's replies, so the session ends: "},
    EndReasonRow{EndReason::shutdown, "proxy shutting down", "57P01",
                 "terminating connection due to administrator command"},
};

}  // namespace

const EndReasonRow& end_reason_row(EndReason reason) {
  for (const EndReasonRow& row : kRows)
    if (row.reason == reason) return row;
  throw std::logic_error("an end reason without a row");
}

std::string client_fatal_message(EndReason reason, std::string_view detail) {
  const std::string_view message = end_reason_row(reason).client_message;
  if (!message.ends_with(": ")) return std::string(message);
  return std::string(message) + std::string(detail);
}

}  // namespace occ
