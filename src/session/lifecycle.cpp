#include "session/lifecycle.h"

#include <array>
#include <stdexcept>

#include "wire/messages.h"

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
    EndReasonRow{EndReason::client_malformed, "malformed message", "08P01", "invalid message: ",
                 DetailGoes::after_message},
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
                 "occproxy: lost track of the database server's replies, so the session ends: ",
                 DetailGoes::after_message},
    EndReasonRow{EndReason::shutdown, "proxy shutting down", "57P01",
                 "terminating connection due to administrator command"},
    EndReasonRow{EndReason::tls_required, "refused: plaintext client while tls.client_mode is require", "28000",
                 "occproxy: TLS is required; connect with sslmode=require"},
    EndReasonRow{EndReason::startup_malformed, "malformed startup packet", "08P01",
                 "invalid startup packet layout"},
    EndReasonRow{EndReason::too_many_clients, "refused: too many clients", "53300",
                 "sorry, too many clients already", DetailGoes::detail_field},
    EndReasonRow{EndReason::upstream_unreachable, "database server unreachable", "08006", "occproxy: ",
                 DetailGoes::after_message},
    EndReasonRow{EndReason::auth_lookup_failed, "password lookup failed", "08006",
                 "occproxy: cannot check the password: the role lookup through admin_dsn failed"},
    // The login failures' FATAL says what failed, as the server would (Session::refuse's `fatal`).
    EndReasonRow{EndReason::login_refused, "login refused", "", ""},
    EndReasonRow{EndReason::server_login_failed, "cannot log into the database server", "", ""},
};

}  // namespace

const EndReasonRow& end_reason_row(EndReason reason) {
  for (const EndReasonRow& row : kRows)
    if (row.reason == reason) return row;
  throw std::logic_error("an end reason without a row");
}

std::optional<ClientFatal> client_fatal(EndReason reason, std::string_view detail) {
  const EndReasonRow& row = end_reason_row(reason);
  if (row.client_sqlstate.empty()) return std::nullopt;
  ClientFatal fatal{std::string(row.client_sqlstate), std::string(row.client_message), {}};
  if (row.detail == DetailGoes::after_message) fatal.message += detail;
  if (row.detail == DetailGoes::detail_field) fatal.detail = detail;
  return fatal;
}

void encode_fatal(std::string& out, const ClientFatal& fatal) {
  pg::encode_error(out, "FATAL", fatal.sqlstate, fatal.message, fatal.detail);
}

}  // namespace occ
