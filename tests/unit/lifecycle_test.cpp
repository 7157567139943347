#include <catch2/catch.hpp>

#include <string>

#include "session/lifecycle.h"

using occ::EndReason;

TEST_CASE("every end reason has its row, and the client hears only where it can", "[lifecycle]") {
  struct Row {
    EndReason reason;
    std::string detail;
    std::string sqlstate;  // empty: no FATAL from the row
    std::string message;
    std::string detail_field = {};
  };
  const Row rows[] = {
      {EndReason::client_terminated, "", "", ""},
      {EndReason::client_closed, "", "", ""},
      {EndReason::client_error, "Connection reset by peer", "", ""},
      {EndReason::client_lost, "Broken pipe", "", ""},
      {EndReason::client_message_too_long, "", "08P01", "occproxy: message exceeds max_message_length"},
      {EndReason::client_bad_length, "", "08P01", "invalid message length"},
      {EndReason::client_malformed, "Bind: truncated", "08P01", "invalid message: Bind: truncated"},
      {EndReason::channel_binding_refused, "", "28000",
       "occproxy: SCRAM channel binding cannot pass through a proxy that terminates TLS; connect with "
       "channel_binding=disable, or set auth.mode: terminate on the proxy"},
      {EndReason::server_lost, "End of file", "08006", "occproxy: lost the connection to the database server"},
      {EndReason::server_malformed, "DataRow: truncated", "08P01", "occproxy: malformed message from the database server"},
      {EndReason::startup_lost, "End of file", "08006",
       "occproxy: the database server closed the connection during startup"},
      {EndReason::replies_out_of_sync, "an unexpected reply '1'", "08P01",
       "occproxy: lost track of the database server's replies, so the session ends: an unexpected reply '1'"},
      {EndReason::shutdown, "", "57P01", "terminating connection due to administrator command"},
      {EndReason::tls_required, "", "28000", "occproxy: TLS is required; connect with sslmode=require"},
      {EndReason::startup_malformed, "unexpected end of message", "08P01", "invalid startup packet layout"},
      {EndReason::too_many_clients, "occproxy's max_client_connections is 3.", "53300",
       "sorry, too many clients already", "occproxy's max_client_connections is 3."},
      {EndReason::upstream_unreachable, "cannot connect to the database server at 127.0.0.1:1: Connection refused",
       "08006", "occproxy: cannot connect to the database server at 127.0.0.1:1: Connection refused"},
      {EndReason::auth_lookup_failed, "connection refused", "08006",
       "occproxy: cannot check the password: the role lookup through admin_dsn failed"},
      {EndReason::login_refused, "user \"app\": password authentication failed", "", ""},
      {EndReason::server_login_failed, "user \"app\": the server asks for md5", "", ""},
  };
  for (const Row& row : rows) {
    const auto& described = occ::end_reason_row(row.reason);
    CAPTURE(described.log);
    CHECK(described.reason == row.reason);
    CHECK(!described.log.empty());
    CHECK(std::string(described.client_sqlstate) == row.sqlstate);
    const auto fatal = occ::client_fatal(row.reason, row.detail);
    REQUIRE(fatal.has_value() == !row.sqlstate.empty());
    if (!fatal) continue;
    CHECK(fatal->sqlstate == row.sqlstate);
    CHECK(fatal->message == row.message);
    CHECK(fatal->detail == row.detail_field);
  }
}

TEST_CASE("a FATAL's bytes carry severity, code, message and detail", "[lifecycle]") {
  std::string out;
  occ::encode_fatal(out, {"53300", "sorry, too many clients already", "occproxy's max_client_connections is 3."});
  using namespace std::string_literals;
  const std::string body = "SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0"s +
                           "Doccproxy's max_client_connections is 3.\0\0"s;
  std::string expected = "E";
  const uint32_t length = static_cast<uint32_t>(body.size() + 4);
  for (int shift = 24; shift >= 0; shift -= 8) expected += static_cast<char>((length >> shift) & 0xff);
  CHECK(out == expected + body);
}
