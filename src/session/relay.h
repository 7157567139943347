// The session's protocol core: what the proxy does with each frame between one client and its
// server connection. No sockets, no Asio, no clock of its own: the network shell (net/session.*)
// reads frames, hands them here, and writes what the two outboxes hold; an end the core asks for
// is the shell's to carry out. Tests drive it frame by frame (tests/unit/relay_test.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "session/lifecycle.h"
#include "session/pending_replies.h"
#include "session/policy_store.h"
#include "session/sql_prepared.h"
#include "session/read_set.h"
#include "session/result_tracker.h"
#include "session/statement_cache.h"
#include "session/statements.h"
#include "sql/literal.h"
#include "sql/rewrite.h"
#include "wire/frame_reader.h"
#include "wire/messages.h"
#include "wire/outbox.h"

namespace occ {

// Why the core wants the session ended; the shell ends it (end_reason_row says what is told).
struct EndRequest {
  EndReason reason;
  std::string detail;
};

class Relay {
 public:
  Relay(PolicyStore& policy, std::size_t read_set_max_rows, std::string peer);
  ~Relay();

  // The startup packet's identity, before any frame is relayed. No search_path: the server's default.
  void begin(std::string user, std::string database, std::string application_name,
             std::optional<std::vector<std::string>> search_path);
  // Whether each hop is TLS (the passthrough login's channel-binding guard needs both).
  void set_tls(bool client_tls, bool server_tls) {
    client_tls_ = client_tls;
    server_tls_ = server_tls;
  }

  // One whole frame from the client, or from the server: what it becomes is appended to
  // to_server() or to_client().
  void on_client_frame(const Frame& frame);
  void on_server_frame(const Frame& frame);
  // A server DataRow too large to hold whole is arriving: false when the reader must hold it whole
  // anyway (its added columns are cut, which changes its length word). Else the shell streams it:
  // its first bytes (header included), then each further piece, `last` on the one that ends it.
  bool may_stream_large_row();
  void on_large_row_head(std::string_view head);
  void on_large_row_piece(std::string_view bytes, bool last);

  Outbox& to_server() { return to_server_; }
  Outbox& to_client() { return to_client_; }
  // Requests of the proxy's own, made on a server reply (a bound read sent again as a Query). The
  // shell writes them after the client's bytes being written, never into the middle of them.
  Outbox& to_server_own() { return to_server_own_; }
  // Set once the core wants the session ended; the shell stops feeding frames.
  const std::optional<EndRequest>& end_request() const { return end_request_; }

  Phase phase() const { return phase_; }
  void set_phase(Phase phase) { phase_ = phase; }
  // Nothing in flight and no transaction open: a graceful shutdown may end the session now.
  bool idle() const { return tx_status_ == 'I' && pending_.empty(); }
  bool awaiting_reply() const { return !pending_.empty(); }
  bool server_sent_fatal() const { return server_sent_fatal_; }
  int32_t backend_pid() const { return backend_pid_; }
  int32_t backend_key() const { return backend_key_; }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  const std::string& peer() const { return peer_; }
  // The rules in force, refreshed when a reload swapped them.
  const Policy& policy();
  // Between batches of an idle session: an empty queue holds no memory either.
  void release_queue_if_empty() { pending_.release_if_empty(); }

 private:
  void on_query(const Frame& frame);
  void on_parse(const Frame& frame);
  void on_bind(const Frame& frame);
  void on_execute(const Frame& frame);
  void on_describe(const Frame& frame);
  void on_close(const Frame& frame);
  // Sends a rewritten unnamed Parse as a cached statement; false when it must go as it is.
  bool parse_cached(const pg::Parse& rewritten, const StatementInfoPtr& info);
  // Sends a rewritten Query as a cached statement bound to its constants; false when it must go as it is.
  bool query_cached(std::string_view sql, InFlight& entry);
  // The cached statement for `key`: its name, whether it is prepared already; closes what it evicts.
  std::pair<std::string, bool> cached_name(std::string key);
  std::optional<Rewrite> analyse(std::string_view sql, bool extended, int declared_params = 0);
  void apply_search_path(const SearchPathChange& path);
  void note_search_path_change(const Rewrite& rw);
  void close_shadows_deallocated(const std::vector<StatementEffect>& effects);
  // The server's transaction ended (a tag, or ReadyForQuery back to idle).
  void transaction_ended(bool committed);
  // A statement that declares, fetches from, closes, prepares, executes or deallocates a named
  // result: the session's cursors and SQL-level prepared statements follow, and a FETCH or
  // EXECUTE takes the tracking its name was declared with.
  void resolve_named(StatementEffect& effect);
  // DISCARD ALL: cursors, prepared statements and the read set are gone on the server.
  void forget_session_state();

  // Pops the front entry if `kind` answers it; else the conversation is out of sync.
  void answered(Pending kind, char reply);
  void out_of_sync(char reply);
  void pop_until_sync();
  // An entry that got no reply of its own (the server skipped it after an error): what the
  // statement cache expected of it is undone.
  void skipped(const InFlight& entry);
  // The server's Authentication request while the client logs in; true when the client gets an
  // edited one (sent already), false when it goes as it came.
  bool rewrote_authentication(const Frame& frame);
  void on_parameter_status(const Frame& frame);
  void on_error_response(const Frame& frame);
  void on_notice(const Frame& frame);
  // An error's or notice's position counted in the client's text; false when it needs no change.
  bool name_client_statement(pg::ErrorFields& fields) const;
  bool point_into_client_text(pg::ErrorFields& fields, const InFlight* current) const;
  // False when the ReadyForQuery is the proxy's own (a bound read sent again as a Query).
  bool on_ready_for_query(const Frame& frame);
  const StatementEffect* current_effect() const;
  const ResultLayout& current_layout() const;
  // The result formats of the portal whose rows are arriving; null for a simple Query.
  const std::vector<int16_t>* current_result_formats() const;
  void on_row_description(const Frame& frame);
  void on_data_row(const Frame& frame);
  void on_parameter_description(const Frame& frame);
  void on_command_complete(const Frame& frame);
  // StatementEffect::row_write: the command tag says whether the checked row was written.
  void note_checked_write(const CheckedRowWrite& write, std::string_view tag);
  void audit_event(const nlohmann::json& event);
  // An unchecked write (a function's, a DO block's) of this session: its row's new version is read.
  void note_unchecked_write(const nlohmann::json& event);
  void request_end(EndReason reason, std::string detail = {});

  PolicyStore& policy_store_;
  PolicyPtr policy_;
  uint64_t policy_generation_ = 0;

  std::string peer_;
  std::string user_;
  std::string database_;
  std::string application_name_;
  std::vector<std::string> search_path_;
  // search_path when the transaction the server runs now began, if a SET changed it since.
  std::optional<std::vector<std::string>> search_path_at_tx_start_;
  bool search_path_local_ = false;  // one of those SETs was SET LOCAL
  // How the server reads string constants, as its ParameterStatus messages report the settings.
  StringSyntax syntax_;
  bool client_utf8_ = true;
  bool server_utf8_ = true;
  bool client_tls_ = false;
  bool server_tls_ = false;
  int32_t backend_pid_ = 0;
  int32_t backend_key_ = 0;
  char tx_status_ = 'I';
  Phase phase_ = Phase::startup;
  std::optional<EndRequest> end_request_;

  Outbox to_server_;
  Outbox to_client_;
  Outbox to_server_own_;
  PendingReplies pending_;
  std::unordered_map<std::string, StatementInfoPtr> statements_;
  std::unordered_map<std::string, PortalInfoPtr> portals_;
  ReadSet reads_;
  // Merges the statement in flight reported: audited and counted once it completes, dropped when it
  // fails (a bulk write that merged some rows and refused one wrote nothing).
  std::vector<nlohmann::json> held_merges_;
  bool error_since_ready_ = false;
  // Rewritten statements prepared on the server connection, and which of them the client's unnamed
  // statement is while its Bind and Describe are sent to it by name.
  StatementCache prepared_;
  std::optional<std::string> unnamed_prepared_as_;
  // Sync, Query and FunctionCall sent whose ReadyForQuery has not arrived: until then the proxy
  // cannot know whether the server will run a Parse, nor what a DEALLOCATE in them left prepared.
  int readies_owed_ = 0;
  // A Parse since the last Sync may deallocate (DEALLOCATE, DISCARD): no caching until its Sync.
  bool cache_barrier_ = false;
  // The rows cursors and SQL-level prepared statements give (declared when sent), and what the
  // server confirmed of the prepared statements the proxy added to.
  NamedResults cursors_;
  NamedResults sql_prepared_;
  SqlPreparedStatements sql_confirmed_;
  uint32_t next_shadow_ = 0;  // names shadow statements: never reused in a session
  // The DataRow being streamed through, and what reads it on the way.
  RowPassage large_row_ = RowPassage::stream;
  std::unique_ptr<RowScanner> large_row_scan_;
  bool sasl_mechanism_next_ = false;
  bool server_sent_fatal_ = false;
  bool logged_in_ = false;  // the login's ReadyForQuery has arrived
};

}  // namespace occ
