// One client connection and its own server connection: startup, then two pumps (client to
// server, server to client) that share the queue of what is in flight. The only place that
// knows about both sockets.
#pragma once

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/container/deque.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "net/connection.h"
#include "wire/frame_reader.h"
#include "wire/messages.h"
#include "wire/outbox.h"
#include "session/policy_store.h"
#include "session/prepared_writes.h"
#include "session/read_set.h"
#include "session/lifecycle.h"
#include "session/result_tracker.h"
#include "session/bound_query.h"
#include "session/statement_cache.h"
#include "auth/scram.h"
#include "sql/literal.h"
#include "sql/rewrite.h"

namespace occ {

struct Config;
struct RoleSecret;
class SessionRegistry;

// What the proxy knows about a statement it analysed (a Query's text or a prepared statement).
struct StatementInfo {
  PolicyPtr policy;  // the rules it was analysed under: its TablePolicy pointers point into them
  std::vector<WriteInfo> writes;
  std::optional<Rejection> rejection;
  std::vector<StatementEffect> effects;
  std::vector<ExpectedParam> expected_params;
  int client_param_count = 0;
  std::vector<int32_t> param_types;  // as the server described them (ParameterDescription)
  ResultLayout layout;  // extended protocol: from this statement's last RowDescription
  std::vector<TextShift> shifts;  // the rewriting's edits: error positions count in the client's text
  bool tracks_results() const {
    for (const auto& e : effects)
      if (e.tracking.tracked()) return true;
    return false;
  }
};
using StatementInfoPtr = std::shared_ptr<StatementInfo>;

// Values bound to a portal whose statement writes a protected table (for the audit's "mine").
struct PortalInfo {
  StatementInfoPtr statement;
  std::vector<std::optional<std::string>> params;  // text form; binary values as \x hex
  // Bind's result format codes as the client sent them: none (all text), one for all, or one each.
  // A statement's RowDescription from Describe says text for every column whatever Bind picks later.
  std::vector<int16_t> result_formats;
  // StatementEffect::row_write: the row this Bind's check compares with, and the version read.
  std::vector<std::string> written_key;
  std::string written_version;
};
using PortalInfoPtr = std::shared_ptr<const PortalInfo>;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket client, const Config& config, PolicyStore& policy,
          SessionRegistry& registry);
  ~Session();

  boost::asio::awaitable<void> run();

  // The connection limit is reached: answer the startup with 53300 and close.
  void refuse_too_many_clients() { refused_ = true; }
  // Graceful shutdown: end now if idle, else once the current transaction ends.
  void begin_shutdown();
  // Immediate shutdown: close with 57P01.
  void terminate();

  const std::string& peer() const { return peer_; }
  // For a CancelRequest arriving on another connection (any thread): whether it names this
  // session's server backend, and whether that backend has a request of this session to work on.
  bool serves_backend(int32_t process_id, int32_t secret_key) const {
    return backend_pid_.load(std::memory_order_relaxed) == process_id &&
           backend_key_.load(std::memory_order_relaxed) == secret_key;
  }
  bool awaiting_reply() const { return awaiting_reply_.load(std::memory_order_relaxed); }
  boost::asio::any_io_executor executor() { return client_.get_executor(); }

 private:
  // prepare: the proxy's own Parse of a cached statement (its reply is not the client's);
  // unprepare: the proxy's Close of one it evicted; parse_cached: the client's Parse of a statement
  // already prepared, answered by the server's CloseComplete of the unnamed statement.
  enum class Pending : uint8_t {
    query, parse, bind, describe, execute, close, sync, function_call, prepare, unprepare, parse_cached
  };
  struct InFlight {
    InFlight(Pending k, StatementInfoPtr s = nullptr, PortalInfoPtr p = nullptr)
        : kind(k), statement(std::move(s)), portal(std::move(p)) {}
    Pending kind;
    StatementInfoPtr statement;  // query/parse/describe/execute of a statement the proxy analysed
    PortalInfoPtr portal;        // execute: bound values for the audit
    std::size_t statement_index = 0;  // query: the statement whose results are arriving
    ResultLayout layout;              // query: the current result's layout
    // StatementEffect::row_write: the version the row held when this session's own earlier write
    // in the transaction let the check pass (occ.written_here), instead of the version read.
    std::optional<std::string> written_over;
    std::string prepared_as;  // prepare/unprepare/bind/query: the cached statement it names
    // query: sent bound (query_cached), its constants lifted; its ParseComplete not yet arrived.
    std::shared_ptr<const LiftedConstants> lifted;
    bool parse_owed = false;
  };

  boost::asio::awaitable<bool> read_startup();
  boost::asio::awaitable<bool> connect_upstream();
  boost::asio::awaitable<void> start_upstream_tls();
  // auth.mode terminate (session_auth.cpp): false when the session must end (the client was told).
  boost::asio::awaitable<bool> authenticate_client();
  boost::asio::awaitable<bool> log_into_server();
  // Whether the client proved it knows the role's password; throws ScramError on a bad exchange.
  boost::asio::awaitable<bool> check_scram_proof(const RoleSecret& secret);
  boost::asio::awaitable<bool> check_md5_proof(const RoleSecret& secret);
  boost::asio::awaitable<void> pump_client_to_server();
  boost::asio::awaitable<void> pump_server_to_client();

  // Returns false when the client connection must end.
  bool on_client_frame(const Frame& frame);
  void on_query(const Frame& frame);
  void on_parse(const Frame& frame);
  void on_bind(const Frame& frame);
  // Sends a rewritten unnamed Parse as a cached statement; false when it must go as it is.
  bool parse_cached(const pg::Parse& rewritten, const StatementInfoPtr& info);
  // Sends a rewritten Query as a cached statement bound to its constants; false when it must go as it is.
  bool query_cached(std::string_view sql, InFlight& entry);
  // The cached statement for `key`: its name, whether it is prepared already; closes what it evicts.
  std::pair<std::string, bool> cached_name(std::string key);
  void on_server_frame(const Frame& frame);
  void on_error_response(const Frame& frame);
  void on_notice(const Frame& frame);
  // An error's or notice's position counted in the client's text; false when it needs no change.
  bool point_into_client_text(pg::ErrorFields& fields, const InFlight* current) const;
  void on_ready_for_query(const Frame& frame);
  void pop_until_sync();
  // An entry that got no reply of its own (the server skipped it after an error): what the
  // statement cache expected of it is undone.
  void skipped(const InFlight& entry);
  const StatementEffect* current_effect() const;
  void on_row_description(const Frame& frame);
  void on_data_row(const Frame& frame);
  void on_parameter_description(const Frame& frame);
  void on_command_complete(const Frame& frame);
  // StatementEffect::row_write: the command tag says whether the checked row was written.
  void note_checked_write(const CheckedRowWrite& write, std::string_view tag);
  // A DataRow too large to hold whole begins to arrive, or its next piece did.
  void on_large_row_head();
  void on_large_row_piece(std::string_view bytes);
  const ResultLayout& current_layout() const;
  // A statement that declares, fetches from, closes, prepares, executes or deallocates a named
  // result: the session's cursors and SQL-level prepared statements follow, and a FETCH or
  // EXECUTE takes the tracking its name was declared with.
  void resolve_named(StatementEffect& effect);
  // DISCARD ALL: cursors, prepared statements and the read set are gone on the server.
  void forget_session_state();
  // The result formats of the portal whose rows are arriving; null for a simple Query.
  const std::vector<int16_t>* current_result_formats() const;
  void pop_front_if(Pending kind);

  const Policy& policy();
  std::optional<Rewrite> analyse(std::string_view sql, bool extended, int declared_params = 0);
  void apply_search_path(const SearchPathChange& path);
  void audit_event(const nlohmann::json& event);
  // An unchecked write (a function's, a DO block's) of this session: its row's new version is read.
  void note_unchecked_write(const nlohmann::json& event);
  // Ends both sides once; the client gets the reason's FATAL where its row has one and
  // `tell_client` holds (not after the server's own FATAL).
  void end(EndReason reason, std::string detail = {}, bool tell_client = true);
  void close_client_after(std::chrono::milliseconds delay);
  bool idle() const { return tx_status_ == 'I' && in_flight_.empty(); }

  Connection client_;
  Connection server_;
  boost::asio::steady_timer linger_;  // bounds the last words to a client that does not read
  const Config& config_;
  PolicyStore& policy_store_;
  SessionRegistry& registry_;
  PolicyPtr policy_;
  uint64_t policy_generation_ = 0;

  std::string peer_;
  std::string user_;
  std::string database_;
  std::string application_name_;
  std::vector<std::string> search_path_;
  // How the server reads string constants, as its ParameterStatus messages report the settings.
  StringSyntax syntax_;
  bool client_utf8_ = true;
  bool server_utf8_ = true;
  std::atomic<int32_t> backend_pid_{0};
  std::atomic<int32_t> backend_key_{0};
  // Requests sent to the server whose replies have not all arrived (in_flight_ not empty), as the
  // other sessions' threads may read it.
  std::atomic<bool> awaiting_reply_{false};
  char tx_status_ = 'I';

  FrameReader client_in_;
  FrameReader server_in_;
  Outbox to_server_;
  Outbox to_client_;
  // Boost's deque allocates nothing until the first request, and nothing once swapped empty: an
  // idle session holds no queue (SPEC 5, memory per idle client); std::deque always holds a node.
  using InFlightQueue = boost::container::deque<InFlight>;
  InFlightQueue in_flight_;
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
  NamedResults cursors_;
  NamedResults sql_prepared_;
  SqlPreparedWrites prepared_writes_;
  // The DataRow being streamed through (FrameReader::stream_head), and what reads it on the way.
  RowPassage large_row_ = RowPassage::stream;
  std::unique_ptr<RowScanner> large_row_scan_;

  std::string startup_packet_;  // kept until forwarded to the server
  // auth.mode terminate: what the client's proof gave the proxy to log into the server with,
  // wiped and freed once the server has answered; and the client's last login messages, held
  // until then. On the heap for the login only: an idle session should cost little.
  struct Login {
    std::optional<ScramVerifier> scram;
    ScramKey client_key{};
    std::string md5;
    std::string to_client_after_login;
  };
  std::unique_ptr<Login> login_;
  bool refused_ = false;
  bool sasl_mechanism_next_ = false;
  Phase phase_ = Phase::startup;
  bool server_pump_running_ = false;
  bool server_sent_fatal_ = false;
  std::string fatal_for_client_sqlstate_;
  std::string fatal_for_client_message_;
};

}  // namespace occ
