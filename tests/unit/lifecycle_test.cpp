#include <catch2/catch.hpp>

#include <string>

#include "session/lifecycle.h"

using occ::EndReason;

TEST_CASE("every end reason has its row, and the client hears only where it can", "[lifecycle]") {
  struct Row {
    EndReason reason;
    std::string detail;
    std::string sqlstate;
    std::string message;
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
  };
  for (const Row& row : rows) {
    const auto& described = occ::end_reason_row(row.reason);
    CAPTURE(described.log);
    CHECK(described.reason == row.reason);
    CHECK(!described.log.empty());
    CHECK(std::string(described.client_sqlstate) == row.sqlstate);
    CHECK(occ::client_fatal_message(row.reason, row.detail) == row.message);
  }
}
