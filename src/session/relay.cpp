// The session's protocol core: each client and server frame, what it becomes each way, and what
// the session learns from it (read set, statements and portals, the statement cache, the audit).
#include "session/relay.h"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "audit/audit_log.h"
#include "session/bind_values.h"
#include "sql/helper_contract.h"
#include "sql/json_text.h"
#include "sql/plan_cache.h"
#include "stats/counters.h"

namespace occ {

using stats::Counter;

namespace {

// Whether a statement's text may drop prepared statements (DEALLOCATE, DISCARD), wherever in it.
bool may_deallocate(std::string_view sql) {
  auto contains = [&](std::string_view word) {
    return std::search(sql.begin(), sql.end(), word.begin(), word.end(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == b;
           }) != sql.end();
  };
  return contains("deallocate") || contains("discard");
}

}  // namespace

Relay::Relay(PolicyStore& policy, std::size_t read_set_max_rows, std::string peer)
    : policy_store_(policy), peer_(std::move(peer)), reads_(read_set_max_rows) {}

Relay::~Relay() = default;

void Relay::begin(std::string user, std::string database, std::string application_name,
                  std::optional<std::vector<std::string>> search_path) {
  user_ = std::move(user);
  database_ = std::move(database);
  application_name_ = std::move(application_name);
  apply_search_path(std::move(search_path));
}

void Relay::request_end(EndReason reason, std::string detail) {
  if (!end_request_) end_request_ = EndRequest{reason, std::move(detail)};
}

const Policy& Relay::policy() {
  auto generation = policy_store_.generation();
  if (generation != policy_generation_) {
    policy_ = policy_store_.get();
    policy_generation_ = generation;
  }
  return *policy_;
}

// ---- client -> server -------------------------------------------------------------------------

void Relay::on_client_frame(const Frame& frame) {
  switch (frame.type) {
    case pg::fe::kQuery:
      on_query(frame);
      return;
    case pg::fe::kParse:
      on_parse(frame);
      return;
    case pg::fe::kBind:
      on_bind(frame);
      return;
    case pg::fe::kExecute:
      on_execute(frame);
      return;
    case pg::fe::kDescribe:
      on_describe(frame);
      return;
    case pg::fe::kClose:
      on_close(frame);
      return;
    case pg::fe::kSync:
      pending_.push({Pending::sync});
      ++readies_owed_;
      cache_barrier_ = false;
      break;
    case pg::fe::kFunctionCall:
      pending_.push({Pending::function_call});
      ++readies_owed_;
      break;
    case pg::fe::kTerminate:
      to_server_.forward(frame.raw);
      request_end(EndReason::client_terminated);
      return;
    case pg::fe::kPassword:
      // Only the SASLInitialResponse names a mechanism; later 'p' messages carry raw SASL data.
      if (std::exchange(sasl_mechanism_next_, false) && client_tls_ && server_tls_ &&
          frame.body.substr(0, frame.body.find('\0')) == "SCRAM-SHA-256-PLUS") {
        // The client binds to the proxy's certificate, the server checks its own: the login
        // would fail with a cryptic "channel binding check failed". Say what to change instead.
        stats::add(Counter::upstream_errors);
        spdlog::warn("{}: SCRAM channel binding cannot pass through TLS on both hops (auth.mode: passthrough)", peer_);
        request_end(EndReason::channel_binding_refused);
        return;
      }
      break;
    default:
      break;
  }
  to_server_.forward(frame.raw);
}

void Relay::on_execute(const Frame& frame) {
  stats::add(Counter::queries_extended);
  InFlight entry{Pending::execute};
  if (!portals_.empty()) {
    auto execute = pg::decode_execute(frame.body);
    auto it = portals_.find(std::string(execute.portal));
    if (it != portals_.end()) {
      entry.portal = it->second;
      entry.statement = it->second->statement;
      const auto& effects = entry.statement->effects;
      if (execute.max_rows != 0 && !effects.empty() && effects.front().tracking.drop_result) {
        // The client's statement returns no rows; a row limit on the RETURNING the proxy
        // added would suspend the portal (no CommandComplete, no row count). Run it through.
        execute.max_rows = 0;
        pg::encode_execute(to_server_.edit(), execute);
        pending_.push(std::move(entry));
        return;
      }
    }
  }
  pending_.push(std::move(entry));
  to_server_.forward(frame.raw);
}

void Relay::on_describe(const Frame& frame) {
  InFlight entry{Pending::describe};
  if (!statements_.empty()) {
    auto target = pg::decode_describe(frame.body);
    if (target.kind == 'S') {
      auto it = statements_.find(std::string(target.name));
      if (it != statements_.end()) entry.statement = it->second;
      const NamedResult named = entry.statement && !entry.statement->effects.empty()
                                    ? entry.statement->effects.front().named
                                    : NamedResult::none;
      if (named == NamedResult::fetch || named == NamedResult::execute) {
        auto resolved = std::make_shared<StatementInfo>(*entry.statement);
        resolve_named(resolved->effects.front());
        entry.statement = std::move(resolved);
      }
    } else {
      auto it = portals_.find(std::string(target.name));
      if (it != portals_.end()) entry.statement = it->second->statement;
    }
    if (target.kind == 'S' && target.name.empty() && unnamed_prepared_as_) {
      pg::encode_describe(to_server_.edit(), pg::fe::kDescribe, {'S', *unnamed_prepared_as_});
      pending_.push(std::move(entry));
      return;
    }
  }
  pending_.push(std::move(entry));
  to_server_.forward(frame.raw);
}

void Relay::on_close(const Frame& frame) {
  if (!statements_.empty() || !portals_.empty()) {
    auto target = pg::decode_describe(frame.body);
    if (target.kind == 'S' && target.name.empty()) unnamed_prepared_as_.reset();
    if (target.kind == 'S')
      statements_.erase(std::string(target.name));
    else
      portals_.erase(std::string(target.name));
  }
  pending_.push({Pending::close});
  to_server_.forward(frame.raw);
}

std::optional<Rewrite> Relay::analyse(std::string_view sql, bool extended, int declared_params) {
  const Policy& p = policy();
  if (!p.protects_anything() || !may_need_rewrite(sql, *p.rules, syntax_.standard_conforming_strings))
    return std::nullopt;
  const auto started = std::chrono::steady_clock::now();
  SessionView view{user_,          search_path_, *p.rules, p.relations, &reads_, declared_params,
                   &sql_confirmed_, syntax_,      next_shadow_};
  Rewrite rw = rewrite_sql(sql, extended, view, thread_plan_cache());
  next_shadow_ += rw.shadows_named;
  if (rw.untracked_reads) stats::add(Counter::reads_untracked, rw.untracked_reads);
  for (const auto& effect : rw.effects)
    if (effect.tracking.tracked() && !effect.tracking.drop_result) stats::add(Counter::reads_tracked);
  if (rw.parse_failed) stats::add(Counter::parse_failures_passed);
  if (rw.unsupported_passed) stats::add(Counter::unsupported_passed, rw.unsupported_passed);
  if (rw.action == Rewrite::Action::rewrite) stats::add(Counter::statements_rewritten);
  for (const auto& w : rw.writes)
    if (w.table) stats::table_add(w.table->qualified_name(), stats::TableCounter::rewritten);
  if (rw.rejection) {
    const auto& code = rw.rejection->sqlstate;
    stats::add(code == "42501" ? Counter::force_refused : Counter::unsupported_rejected);
    spdlog::info("{}: refused statement: {}", peer_, rw.rejection->message);
  }
  stats::observe_added_latency(std::chrono::steady_clock::now() - started);
  return rw;
}

// Applied when sent, so that a statement pipelined behind the SET resolves names on the new path;
// undone when the server reports that the transaction it ran in rolled back, or (SET LOCAL) ended.
void Relay::note_search_path_change(const Rewrite& rw) {
  if (!rw.search_path_change) return;
  if (!search_path_at_tx_start_) search_path_at_tx_start_ = search_path_;
  search_path_local_ = search_path_local_ || rw.search_path_local;
  apply_search_path(*rw.search_path_change);
}

void Relay::transaction_ended(bool committed) {
  if (search_path_at_tx_start_ && (!committed || search_path_local_)) search_path_ = std::move(*search_path_at_tx_start_);
  search_path_at_tx_start_.reset();
  search_path_local_ = false;
}

void Relay::on_query(const Frame& frame) {
  stats::add(Counter::queries_simple);
  auto query = pg::decode_query(frame.body);
  InFlight entry{Pending::query, nullptr, nullptr};
  auto rw = analyse(query.sql, false);
  if (rw) note_search_path_change(*rw);
  if (rw && (!rw->writes.empty() || !rw->effects.empty() || !rw->shifts.empty())) {
    auto info = std::make_shared<StatementInfo>();
    info->policy = policy_;
    info->writes = std::move(rw->writes);
    info->effects = std::move(rw->effects);
    info->shifts = std::move(rw->shifts);
    for (auto& effect : info->effects) resolve_named(effect);
    entry.statement = std::move(info);
  }
  const bool rewritten = rw && rw->action == Rewrite::Action::rewrite;
  if (!query_cached(rewritten ? std::string_view(rw->sql) : query.sql, entry)) {
    if (rewritten)
      pg::encode_query(to_server_.edit(), rw->sql);
    else
      to_server_.forward(frame.raw);
  }
  pending_.push(std::move(entry));
  ++readies_owed_;
  unnamed_prepared_as_.reset();  // a Query drops the unnamed statement
}

void Relay::forget_session_state() {
  cursors_.clear();
  sql_prepared_.clear();
  sql_confirmed_.forget("");
  reads_.clear();
}

void Relay::resolve_named(StatementEffect& effect) {
  // A name is taken as declared when the statement is sent: a FETCH pipelined behind its DECLARE
  // must find it. A DECLARE that fails leaves a name nothing can fetch from.
  switch (effect.named) {
    case NamedResult::none:
      return;
    case NamedResult::declare_cursor:
      cursors_.declare(effect.result_name, effect.tracking, policy_generation_);
      effect.tracking = {};
      return;
    case NamedResult::prepare:
      sql_prepared_.declare(effect.result_name, effect.tracking, policy_generation_);
      effect.tracking = {};
      return;
    case NamedResult::fetch:
      effect.tracking = cursors_.rows_of(effect.result_name, policy_generation_);
      return;
    case NamedResult::execute:
      effect.tracking = sql_prepared_.rows_of(effect.result_name, policy_generation_);
      return;
    case NamedResult::close_cursor:
      cursors_.forget(effect.result_name);
      return;
    case NamedResult::deallocate:
      sql_prepared_.forget(effect.result_name);
      return;
  }
}

void Relay::on_parse(const Frame& frame) {
  auto parse = pg::decode_parse(frame.body);
  auto rw = analyse(parse.sql, true, static_cast<int>(parse.param_types.size()));
  if (rw) note_search_path_change(*rw);
  StatementInfoPtr info;
  if (rw && (!rw->writes.empty() || rw->rejection || !rw->effects.empty() || !rw->expected_params.empty() ||
             !rw->shifts.empty())) {
    info = std::make_shared<StatementInfo>();
    info->policy = policy_;
    info->writes = std::move(rw->writes);
    info->rejection = std::move(rw->rejection);
    info->effects = std::move(rw->effects);
    info->expected_params = std::move(rw->expected_params);
    info->client_param_count = rw->client_param_count;
    info->shifts = std::move(rw->shifts);
  }
  if (info)
    statements_[std::string(parse.statement)] = info;
  else if (!statements_.empty())
    statements_.erase(std::string(parse.statement));
  if (parse.statement.empty()) unnamed_prepared_as_.reset();
  if (rw && rw->action == Rewrite::Action::reject) {
    // The server must fail this Parse (so it skips to Sync and aborts a transaction block as a
    // native error would); the server pump swaps the syntax error for the proxy's own.
    pg::Parse refused{parse.statement, ")", {}};
    pg::encode_parse(to_server_.edit(), refused);
  } else if (rw && rw->action == Rewrite::Action::rewrite) {
    pg::Parse rewritten{parse.statement, rw->sql, parse.param_types};
    if (info && !info->expected_params.empty()) {
      // The added parameters are typed (the server parses each once per Bind); the client's own
      // keep whatever it declared.
      rewritten.param_types.resize(static_cast<std::size_t>(info->client_param_count), 0);
      for (const auto& expected : info->expected_params) rewritten.param_types.push_back(expected.type_oid);
    }
    if (parse.statement.empty() && parse_cached(rewritten, info)) return;
    pg::encode_parse(to_server_.edit(), rewritten);
  } else {
    if (prepared_.size() && may_deallocate(parse.sql)) cache_barrier_ = true;
    to_server_.forward(frame.raw);
  }
  const StatementInfoPtr parsed = info;
  pending_.push({Pending::parse, std::move(info), nullptr});
  if (parsed) close_shadows_deallocated(parsed->effects);
}

// A DEALLOCATE in a Parse has no room for its shadow's own (a Parse holds one statement): the
// shadow is closed beside it, and from now on an EXECUTE of the name runs the client's statement.
void Relay::close_shadows_deallocated(const std::vector<StatementEffect>& effects) {
  for (const StatementEffect& effect : effects) {
    if (effect.named != NamedResult::deallocate || effect.result_name.empty()) continue;
    const std::string* shadow = sql_confirmed_.shadow_of(effect.result_name);
    if (shadow == nullptr) continue;
    pg::encode_describe(to_server_.edit(), pg::fe::kClose, {'S', *shadow});
    InFlight close{Pending::unprepare};
    close.prepared_as = *shadow;
    pending_.push(std::move(close));
    sql_confirmed_.unshadow(effect.result_name);
  }
}

// The first time a statement is parsed under both names: the client's replies come from its own
// unnamed Parse exactly as directly, and the named one is prepared for later. Then the unnamed
// statement is closed instead (one reply, standing for the ParseComplete) and Bind and Describe
// name the prepared one. Only where the proxy knows the server will run this Parse on the state it
// believes: no earlier Sync or Query unanswered (a DEALLOCATE or an error may be in it), not in a
// failed transaction block (the Parse would fail there), no error the server skips to Sync after,
// nothing since the last Sync that may deallocate. Statements that name a cursor or prepared statement keep their own path.
bool Relay::parse_cached(const pg::Parse& rewritten, const StatementInfoPtr& info) {
  if (readies_owed_ > 0 || tx_status_ == 'E' || error_since_ready_ || cache_barrier_ || !info) return false;
  for (const auto& effect : info->effects)
    if (effect.named != NamedResult::none || effect.command != SessionCommand::none) return false;
  const auto [name, hit] = cached_name(statement_cache_key(rewritten.sql, rewritten.param_types, search_path_));
  if (hit) {
    pg::encode_describe(to_server_.edit(), pg::fe::kClose, {'S', ""});
    pending_.push({Pending::parse_cached, info, nullptr});
    unnamed_prepared_as_ = name;
    return true;
  }
  pg::encode_parse(to_server_.edit(), rewritten);
  pending_.push({Pending::parse, info, nullptr});
  pg::encode_parse(to_server_.edit(), {name, rewritten.sql, rewritten.param_types});
  InFlight prepare{Pending::prepare, info};
  prepare.prepared_as = name;
  pending_.push(std::move(prepare));
  return true;
}

std::pair<std::string, bool> Relay::cached_name(std::string key) {
  const std::string* hit = prepared_.find(key);
  std::pair<std::string, bool> out{hit ? *hit : prepared_.insert(std::move(key)), hit != nullptr};
  for (auto& retired : prepared_.take_retired()) {
    pg::encode_describe(to_server_.edit(), pg::fe::kClose, {'S', retired});
    InFlight close{Pending::unprepare};
    close.prepared_as = std::move(retired);
    pending_.push(std::move(close));
  }
  return out;
}

// Under the conditions parse_cached keeps, for what may_go_bound allows: the Query's statement as
// the cached one, its constants bound, every reply but the Query's own dropped by the server pump.
// The Closes leave the unnamed statement and portal gone, as after a Query.
bool Relay::query_cached(std::string_view sql, InFlight& entry) {
  if (readies_owed_ > 0 || tx_status_ == 'E' || error_since_ready_ || cache_barrier_ || !entry.statement) return false;
  const BoundForm form = may_go_bound(entry.statement->effects, sql);
  if (form == BoundForm::none || (form == BoundForm::pinned_read && tx_status_ != 'I')) return false;
  auto lifted = lift_constants(sql, syntax_);
  if (!lifted) return false;
  if (form == BoundForm::pinned_read) entry.statement->bound_read = sql;
  const auto [name, hit] = cached_name(statement_cache_key(lifted->sql, lifted->param_types, search_path_));
  std::string& out = to_server_.edit();
  pg::encode_describe(out, pg::fe::kClose, {'S', ""});
  if (!hit) pg::encode_parse(out, {name, lifted->sql, lifted->param_types});
  pg::Bind bind{"", name, {}, {}, {}};
  for (const auto& value : lifted->values) bind.params.emplace_back(value);
  pg::encode_bind(out, bind);
  pg::encode_describe(out, pg::fe::kDescribe, {'P', ""});
  pg::encode_execute(out, {"", 0});
  pg::encode_describe(out, pg::fe::kClose, {'P', ""});
  out.append("S\0\0\0\4", 5);  // Sync
  entry.prepared_as = name;
  entry.parse_owed = !hit;
  entry.lifted = std::make_shared<const LiftedConstants>(std::move(*lifted));
  return true;
}

void Relay::on_bind(const Frame& frame) {
  if (statements_.empty() && portals_.empty()) {
    to_server_.forward(frame.raw);
    pending_.push({Pending::bind, nullptr, nullptr});
    return;
  }
  auto bind = pg::decode_bind(frame.body);
  auto it = statements_.find(std::string(bind.statement));
  if (it == statements_.end()) {
    portals_.erase(std::string(bind.portal));
    to_server_.forward(frame.raw);
    pending_.push({Pending::bind, nullptr, nullptr});
    return;
  }
  StatementInfoPtr info = it->second;
  if (!info->effects.empty() && info->effects.front().named != NamedResult::none) {
    // This execution's own copy: the statement may run again under other names' state.
    auto resolved = std::make_shared<StatementInfo>(*info);
    resolve_named(resolved->effects.front());
    info = std::move(resolved);
  }
  auto portal = std::make_shared<PortalInfo>();
  portal->statement = info;
  if (info->tracks_results()) portal->result_formats = bind.result_formats;
  if (!info->writes.empty()) {
    portal->params.reserve(bind.params.size());
    for (std::size_t i = 0; i < bind.params.size(); ++i) portal->params.push_back(audit_param_text(bind, i));
  }

  const std::size_t added_columns = info->effects.empty() ? 0 : info->effects.front().tracking.added_columns;
  const bool fill_params = !info->expected_params.empty() && bind.params.size() == static_cast<std::size_t>(info->client_param_count);
  const bool widen_formats = added_columns && bind.result_formats.size() > 1;
  InFlight entry{Pending::bind, nullptr, nullptr};
  if (bind.statement.empty() && unnamed_prepared_as_) {
    bind.statement = *unnamed_prepared_as_;
    entry.statement = info;  // a stale cached plan is re-analysed here: error positions shift
    entry.prepared_as = *unnamed_prepared_as_;
  }
  if (fill_params || widen_formats || !entry.prepared_as.empty()) {
    std::vector<std::optional<std::string>> added;
    if (fill_params) {
      const int row_write_param = !info->effects.empty() && info->effects.front().row_write
                                      ? info->effects.front().row_write->version_param
                                      : 0;
      AddedValues values = added_values(info->expected_params, row_write_param, reads_, [&](int n) {
        return key_text(bind, static_cast<std::size_t>(n - 1), info->param_types);
      });
      added = std::move(values.values);
      if (!values.written_key.empty()) {
        portal->written_key = std::move(values.written_key);
        portal->written_version = std::move(values.written_version);
      }
      // One format code means "all parameters": spell it out so the added ones can be text.
      if (bind.param_formats.size() == 1) bind.param_formats.assign(bind.params.size(), bind.param_formats[0]);
      if (!bind.param_formats.empty()) bind.param_formats.insert(bind.param_formats.end(), added.size(), 0);
      for (const auto& value : added) bind.params.emplace_back(value);
    }
    if (widen_formats) bind.result_formats.insert(bind.result_formats.end(), added_columns, 0);
    pg::encode_bind(to_server_.edit(), bind);
  } else {
    to_server_.forward(frame.raw);
  }
  portals_[std::string(bind.portal)] = std::move(portal);
  pending_.push(std::move(entry));
}

void Relay::apply_search_path(const SearchPathChange& path) {
  search_path_ = effective_search_path(path, user_);
}

void Relay::on_server_frame(const Frame& frame) {
  if (!pending_.empty() && pending_.front().lifted) {
    // A Query sent bound: the client gets only the replies its Query would have.
    switch (frame.type) {
      case pg::be::kParseComplete:
        pending_.front().parse_owed = false;
        [[fallthrough]];
      case pg::be::kBindComplete:
      case pg::be::kCloseComplete:
      case pg::be::kNoData:
        to_client_.drop();
        return;
      default:
        break;
    }
  }
  switch (frame.type) {
    case pg::be::kDataRow:
      on_data_row(frame);
      return;
    case pg::be::kRowDescription:
      on_row_description(frame);
      return;
    case pg::be::kCommandComplete:
      on_command_complete(frame);
      return;
    case pg::be::kReadyForQuery:
      if (!on_ready_for_query(frame)) return;
      break;
    case pg::be::kErrorResponse:
      on_error_response(frame);
      return;
    case pg::be::kNoticeResponse:
      on_notice(frame);
      return;
    case pg::be::kParameterDescription:
      on_parameter_description(frame);
      return;
    case pg::be::kParseComplete:
      if (pending_.front_is(Pending::prepare)) {
        pending_.pop();
        to_client_.drop();
        return;
      }
      answered(Pending::parse, frame.type);
      break;
    case pg::be::kBindComplete:
      answered(Pending::bind, frame.type);
      break;
    case pg::be::kCloseComplete:
      if (pending_.front_is(Pending::unprepare)) {
        pending_.pop();
        to_client_.drop();
        return;
      }
      if (pending_.front_is(Pending::parse_cached)) {
        pending_.pop();
        to_client_.edit().append("1\0\0\0\4", 5);  // ParseComplete
        return;
      }
      answered(Pending::close, frame.type);
      break;
    case pg::be::kNoData:
      answered(Pending::describe, frame.type);
      break;
    case pg::be::kEmptyQueryResponse:
      if (pending_.front_is(Pending::query)) {
        ++pending_.front().statement_index;
        break;
      }
      answered(Pending::execute, frame.type);
      break;
    case pg::be::kPortalSuspended:
      answered(Pending::execute, frame.type);
      break;
    case pg::be::kParameterStatus:
      on_parameter_status(frame);
      break;
    case pg::be::kAuthentication:
      if (phase_ == Phase::authenticating && rewrote_authentication(frame)) return;
      break;
    case pg::be::kBackendKeyData: {
      const auto key = pg::decode_backend_key_data(frame.body);
      backend_pid_ = key.process_id;
      backend_key_ = key.secret_key;
      spdlog::debug("{}: server backend pid {}", peer_, key.process_id);
      break;
    }
    default:
      break;
  }
  to_client_.forward(frame.raw);
}

void Relay::on_parameter_status(const Frame& frame) {
  auto status = pg::decode_parameter_status(frame.body);
  if (status.name == "application_name") {
    application_name_ = status.value;
  } else if (status.name == "standard_conforming_strings") {
    syntax_.standard_conforming_strings = status.value != "off";
  } else if (status.name == "client_encoding" || status.name == "server_encoding") {
    (status.name == "client_encoding" ? client_utf8_ : server_utf8_) = status.value == "UTF8";
    syntax_.utf8 = client_utf8_ && server_utf8_;
  }
}

// auth.mode passthrough: the server's login messages reach the client through here.
bool Relay::rewrote_authentication(const Frame& frame) {
  const auto code = pg::decode_authentication(frame.body).code;
  if (code == 0) phase_ = Phase::relaying;
  sasl_mechanism_next_ = code == pg::kAuthSasl;  // the client picks a mechanism next
  if (code != pg::kAuthSasl || !server_tls_ || client_tls_) return false;
  // The server offers -PLUS on the proxy's TLS hop; the client's hop is plaintext, where libpq
  // rightly refuses such an offer. Offer what the server would offer the client.
  pg::MessageWriter w(to_client_.edit());
  w.begin(pg::be::kAuthentication);
  w.i32(pg::kAuthSasl);
  pg::BodyReader r(frame.body);
  r.i32();
  for (auto mechanism = r.cstring(); !mechanism.empty(); mechanism = r.cstring())
    if (mechanism != "SCRAM-SHA-256-PLUS") w.cstring(mechanism);
  w.u8(0);
  w.finish();
  return true;
}

// The effect of the statement whose results are arriving now, if the proxy analysed it.
const StatementEffect* Relay::current_effect() const {
  if (pending_.empty()) return nullptr;
  const InFlight& e = pending_.front();
  if (!e.statement || e.statement->effects.empty()) return nullptr;
  if (e.kind == Pending::query)
    return e.statement_index < e.statement->effects.size() ? &e.statement->effects[e.statement_index] : nullptr;
  return &e.statement->effects.front();
}

void Relay::on_row_description(const Frame& frame) {
  const StatementEffect* effect = current_effect();
  const bool describing = pending_.front_is(Pending::describe);
  if (!effect || !effect->tracking.tracked()) {
    to_client_.forward(frame.raw);
    if (describing) pending_.pop();
    return;
  }
  const ResultTracking& tracking = effect->tracking;
  auto description = pg::decode_row_description(frame.body);
  ResultLayout layout = describe_layout(description, tracking, policy().relations);
  if (tracking.in_place || layout.added == 0) {
    to_client_.forward(frame.raw);
  } else if (!tracking.drop_result) {
    client_row_description(to_client_.edit(), std::move(description), layout);
  } else if (describing) {
    to_client_.edit().append("n\0\0\0\4", 5);  // the client's statement returns no rows
  } else {
    to_client_.drop();
  }
  InFlight& current = pending_.front();
  if (current.kind == Pending::query)
    current.layout = std::move(layout);
  else
    current.statement->layout = std::move(layout);
  if (describing) pending_.pop();
}

const ResultLayout& Relay::current_layout() const {
  const InFlight& current = pending_.front();
  return current.kind == Pending::query ? current.layout : current.statement->layout;
}

const std::vector<int16_t>* Relay::current_result_formats() const {
  const InFlight& current = pending_.front();
  return current.kind == Pending::query || !current.portal ? nullptr : &current.portal->result_formats;
}

void Relay::on_data_row(const Frame& frame) {
  const StatementEffect* effect = current_effect();
  if (!effect || !effect->tracking.tracked()) {
    to_client_.forward(frame.raw);
    return;
  }
  const ResultTracking& tracking = effect->tracking;
  const ResultLayout& layout = current_layout();
  auto row = pg::decode_data_row(frame.body);
  note_row(reads_, row, tracking, layout, current_result_formats());
  const unsigned added = added_columns(tracking, layout);
  if (tracking.drop_result)
    to_client_.drop();
  else if (tracking.in_place || added == 0)
    to_client_.forward(frame.raw);
  else
    client_data_row(to_client_.edit(), row, frame.body, added);
}

bool Relay::may_stream_large_row() {
  const StatementEffect* effect = current_effect();
  large_row_ = effect ? large_row_passage(&effect->tracking, current_layout()) : RowPassage::stream;
  // Its length word must change: the reader holds it until it is complete.
  return large_row_ != RowPassage::whole;
}

void Relay::on_large_row_head(std::string_view head) {
  if (large_row_ == RowPassage::scan) large_row_scan_ = std::make_unique<RowScanner>(RowScanner::for_layout(current_layout()));
  if (large_row_ != RowPassage::drop) to_client_.forward(head.substr(0, 5));
  on_large_row_piece(head.substr(5), false);
}

void Relay::on_large_row_piece(std::string_view bytes, bool last) {
  switch (large_row_) {
    case RowPassage::stream:
      break;
    case RowPassage::drop:
      to_client_.drop();
      break;
    case RowPassage::scan:
      large_row_scan_->feed(bytes);
      break;
    case RowPassage::whole:
      return;
  }
  if (large_row_ != RowPassage::drop) to_client_.forward(bytes);
  if (!last) return;
  if (large_row_ == RowPassage::scan) {
    if (!large_row_scan_->complete()) throw pg::MalformedMessage("a DataRow shorter than its columns");
    const ResultLayout& layout = current_layout();
    bool noted_by_whole_values = !large_row_scan_->truncated(static_cast<std::size_t>(layout.version_at));
    for (int at : layout.key_at) noted_by_whole_values &= !large_row_scan_->truncated(static_cast<std::size_t>(at));
    if (noted_by_whole_values)
      note_row(reads_, large_row_scan_->row(), current_effect()->tracking, layout, current_result_formats());
    large_row_scan_.reset();
  }
  large_row_ = RowPassage::stream;
}

void Relay::on_parameter_description(const Frame& frame) {
  const InFlight* current = pending_.current();
  if (!current || current->kind != Pending::describe || !current->statement) {
    to_client_.forward(frame.raw);
    return;
  }
  auto description = pg::decode_parameter_description(frame.body);
  const std::size_t added = current->statement->expected_params.size();
  if (description.types.size() >= added) description.types.resize(description.types.size() - added);
  current->statement->param_types = description.types;
  if (added == 0) {
    to_client_.forward(frame.raw);
    return;
  }
  pg::encode_parameter_description(to_client_.edit(), description);
}

void Relay::on_command_complete(const Frame& frame) {
  for (nlohmann::json& merged : held_merges_) {
    const std::string qualified = merged.value("table", "");
    const bool shadow = merged.value("kind", "") == "shadow_merged";
    stats::add(shadow ? Counter::shadow_merges : Counter::merges);
    stats::table_add(qualified, shadow ? stats::TableCounter::shadow_merges : stats::TableCounter::merges);
    spdlog::info("{}: occ {} on {} key {}", peer_, shadow ? "would merge" : "merged", qualified, merged["key"].dump());
    audit::record(std::move(merged));
  }
  held_merges_.clear();
  if (prepared_.size() && frame.body.size() <= 16) {
    // The server dropped every prepared statement (confirmed by the tag, not guessed from the text).
    const auto tag = pg::decode_command_complete(frame.body).tag;
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") prepared_.clear();
  }
  const StatementEffect* effect = current_effect();
  // A prepared write's EXECUTE must match the statement the server holds under that name: only
  // a PREPARE or DEALLOCATE the server confirmed changes what the session expects.
  if (effect && effect->named == NamedResult::prepare && pg::decode_command_complete(frame.body).tag == "PREPARE") {
    if (effect->hidden)
      sql_confirmed_.shadowed(effect->shadow_for, effect->result_name);
    else if (effect->prepared_write)
      sql_confirmed_.prepared(effect->result_name, *effect->prepared_write, pending_.front().statement->policy);
    else
      sql_confirmed_.forget(effect->result_name);
  } else if (effect && effect->named == NamedResult::deallocate) {
    sql_confirmed_.forget(effect->result_name);
  }
  if (effect && effect->row_write) {
    note_checked_write(*effect->row_write, pg::decode_command_complete(frame.body).tag);
  } else if (effect && effect->command != SessionCommand::none) {
    const auto tag = pg::decode_command_complete(frame.body).tag;
    switch (effect->command) {
      case SessionCommand::savepoint:
        if (tag == "SAVEPOINT") reads_.savepoint(effect->savepoint);
        break;
      case SessionCommand::release:
        if (tag == "RELEASE") reads_.release(effect->savepoint);
        break;
      case SessionCommand::rollback_to:
        if (tag == "ROLLBACK") reads_.rollback_to(effect->savepoint);
        break;
      case SessionCommand::discard_all:
        forget_session_state();
        break;
      case SessionCommand::reset_all:
        reads_.clear();
        break;
      case SessionCommand::none:
        break;
    }
  } else if (frame.body.size() <= 16) {
    // Transaction ends and DISCARD need no analysis: the command tag says what happened.
    const auto tag = pg::decode_command_complete(frame.body).tag;
    if (tag == "COMMIT" || tag == "PREPARE TRANSACTION") {
      reads_.commit();
      transaction_ended(true);
    } else if (tag == "ROLLBACK") {
      reads_.rollback();
      transaction_ended(false);
    } else if (tag == "DISCARD ALL") {
      forget_session_state();
    }
  }
  if (effect && effect->hidden)
    to_client_.drop();  // the statement was the proxy's
  else
    to_client_.forward(frame.raw);
  if (pending_.front_is(Pending::query)) {
    ++pending_.front().statement_index;
    pending_.front().layout = {};
    pending_.front().written_over.reset();
  } else {
    answered(Pending::execute, pg::be::kCommandComplete);
  }
}

void Relay::note_checked_write(const CheckedRowWrite& write, std::string_view tag) {
  if (tag != (write.deletes ? "DELETE 1" : "UPDATE 1")) return;
  const InFlight& current = pending_.front();
  const PortalInfo* portal = current.kind == Pending::execute ? current.portal.get() : nullptr;
  const std::vector<std::string>& key = portal ? portal->written_key : write.key;
  const std::string& read = current.written_over ? *current.written_over
                            : portal             ? portal->written_version
                                                 : write.version;
  if (key.empty()) return;  // a row the session never read: its version stays unknown
  if (write.deletes) {
    reads_.forget(*write.table, key);
    return;
  }
  int64_t version = 0;
  const auto [end, error] = std::from_chars(read.data(), read.data() + read.size(), version);
  if (error != std::errc{} || end != read.data() + read.size() || version == INT64_MAX) return;
  reads_.note(*write.table, key, {std::to_string(version + 1), "{}", ReadSet::Clock::now()});
}

void Relay::answered(Pending kind, char reply) {
  if (pending_.front_is(kind))
    pending_.pop();
  else
    out_of_sync(reply);
}

// A reply the request at the front does not expect: the proxy no longer knows which statement
// the replies that follow belong to, so it could cut columns from the wrong result or check a
// write against the wrong read. Fail closed: the reply reaches the client as it came, then the
// session ends with 08P01 (the server rolls back what the client had not committed).
void Relay::out_of_sync(char reply) {
  stats::add(Counter::replies_out_of_sync);
  spdlog::warn("{}: the server's reply '{}' matches no request in flight{}", peer_, reply,
               pending_.empty() ? "" : " (another was expected)");
  phase_ = Phase::out_of_sync;
  request_end(EndReason::replies_out_of_sync, std::string("an unexpected reply '") + reply + "'");
}

void Relay::pop_until_sync() {
  while (!pending_.empty() && pending_.front().kind != Pending::sync &&
         pending_.front().kind != Pending::query) {
    skipped(pending_.front());
    pending_.pop();
  }
}

void Relay::skipped(const InFlight& entry) {
  switch (entry.kind) {
    case Pending::prepare:
      prepared_.forget(entry.prepared_as);
      break;
    case Pending::unprepare:
      prepared_.close_later(entry.prepared_as);
      break;
    case Pending::parse_cached:
      unnamed_prepared_as_.reset();  // the client's Parse did not run either
      break;
    default:
      break;
  }
}

bool Relay::on_ready_for_query(const Frame& frame) {
  tx_status_ = pg::decode_ready_for_query(frame.body).status;
  if (!pending_.empty() && pending_.front().retry_as_query) {
    // The read's bound form failed at its Bind, before anything ran, in an implicit transaction
    // now over: the Query goes again as text, and the client gets only that answer.
    InFlight& entry = pending_.front();
    entry.retry_as_query = false;
    entry.lifted.reset();
    entry.prepared_as.clear();
    entry.parse_owed = false;
    entry.statement_index = 0;
    entry.layout = {};
    error_since_ready_ = false;
    pg::encode_query(to_server_own_.edit(), entry.statement->bound_read);
    to_client_.drop();
    return false;
  }
  if (readies_owed_ > 0) {
    --readies_owed_;
  } else if (std::exchange(logged_in_, true)) {
    // Only a status, and nothing it could be taken for: the client gets it as the server sent it.
    stats::add(Counter::replies_out_of_sync);
    spdlog::warn("{}: a ReadyForQuery from the server that no request asked for; forwarded", peer_);
  }
  // Back to idle: an implicit transaction ended, rolled back if anything in it failed.
  if (tx_status_ == 'I') {
    if (error_since_ready_)
      reads_.rollback();
    else
      reads_.commit();
    transaction_ended(!error_since_ready_);
  }
  error_since_ready_ = false;
  while (!pending_.empty()) {
    auto kind = pending_.front().kind;
    skipped(pending_.front());
    pending_.pop();
    if (kind == Pending::sync || kind == Pending::query || kind == Pending::function_call) break;
  }
  return true;
}

void Relay::on_error_response(const Frame& frame) {
  error_since_ready_ = true;
  held_merges_.clear();
  auto fields = pg::decode_error_fields(frame.body);
  auto severity = fields.get('V');
  if (severity.empty()) severity = fields.get('S');
  if (severity == "FATAL" || severity == "PANIC") server_sent_fatal_ = true;

  InFlight* current = pending_.current();
  const bool stale_plan = fields.get('C') == "0A000" && fields.get('M') == "cached plan must not change result type";
  if (current && !current->prepared_as.empty()) {
    // The client sees what the server said; the next execution prepares the statement afresh.
    if (current->kind == Pending::prepare || current->parse_owed || fields.get('C') == "26000")
      prepared_.forget(current->prepared_as);
    else if (stale_plan)
      prepared_.retire(current->prepared_as);
  }
  // Only when nothing else is in flight: the Query sent again must be answered before any request
  // the client sent after it.
  if (stale_plan && current && current->lifted && !current->statement->bound_read.empty() && pending_.size() == 1) {
    spdlog::debug("{}: a cached read's result type changed; sent again as a Query", peer_);
    current->retry_as_query = true;
    to_client_.drop();
    return;
  }
  if (current && current->kind == Pending::parse && current->statement && current->statement->rejection) {
    const auto& r = *current->statement->rejection;
    pg::ErrorFields swapped;
    swapped.set('S', "ERROR");
    swapped.set('V', "ERROR");
    swapped.set('C', r.sqlstate);
    swapped.set('M', r.message);
    if (!r.detail.empty()) swapped.set('D', r.detail);
    if (!r.hint.empty()) swapped.set('H', r.hint);
    if (!r.schema.empty()) swapped.set('s', r.schema);
    if (!r.table.empty()) swapped.set('t', r.table);
    pg::encode_error(to_client_.edit(), pg::be::kErrorResponse, swapped);
  } else {
    if (fields.get('n') == helpers::kConflictConstraint) {
      stats::add(Counter::conflicts);
      stats::table_add(std::string(fields.get('s')) + "." + std::string(fields.get('t')),
                       stats::TableCounter::conflicts);
    }
    const std::string_view context = fields.get('W');
    if (context.starts_with(helpers::kUnknownVersionContext)) stats::add(Counter::unknown_version_rejected);
    bool edited = false;
    // An error raised by an occ helper function is the proxy's own: its PL/pgSQL CONTEXT line
    // would only tell the client about the rewriting.
    if (context.starts_with(helpers::kContextPrefix)) {
      std::erase_if(fields.fields, [](const auto& field) { return field.first == 'W'; });
      edited = true;
    }
    edited |= point_into_client_text(fields, current);
    edited |= name_client_statement(fields);
    if (edited)
      pg::encode_error(to_client_.edit(), pg::be::kErrorResponse, fields);
    else
      to_client_.forward(frame.raw);
  }
  // After an error in the extended protocol the server skips everything up to Sync.
  if (current && current->kind != Pending::query && current->kind != Pending::function_call) {
    pending_.pop();
    pop_until_sync();
  }
}

// An error about a shadow statement (sql/rewrite.h, SqlPrepared) names the client's statement.
bool Relay::name_client_statement(pg::ErrorFields& fields) const {
  const StatementEffect* effect = current_effect();
  if (!effect || effect->shadow_for.empty()) return false;
  std::string message(fields.get('M'));
  const std::string shadow = '"' + effect->result_name + '"';
  const auto at = message.find(shadow);
  if (at == std::string::npos) return false;
  message.replace(at, shadow.size(), '"' + effect->shadow_for + '"');
  fields.set('M', message);
  return true;
}

// psql and drivers put the caret under the position: it must count in the client's text.
bool Relay::point_into_client_text(pg::ErrorFields& fields, const InFlight* current) const {
  if (!current || !current->statement) return false;
  if (current->lifted) return error_as_query(fields, *current->lifted, current->statement->shifts);
  const std::string_view position = fields.get('P');
  int rewritten_position = 0;
  if (position.empty() || current->statement->shifts.empty() ||
      std::from_chars(position.data(), position.data() + position.size(), rewritten_position).ec != std::errc())
    return false;
  fields.set('P', std::to_string(original_position(current->statement->shifts, rewritten_position)));
  return true;
}

void Relay::on_notice(const Frame& frame) {
  auto fields = pg::decode_error_fields(frame.body);
  if (fields.get('C') != helpers::kEventSqlstate) {
    if (point_into_client_text(fields, pending_.current()))
      pg::encode_error(to_client_.edit(), pg::be::kNoticeResponse, fields);
    else
      to_client_.forward(frame.raw);
    return;
  }
  to_client_.drop();
  auto event = nlohmann::json::parse(fields.get('M'), nullptr, false);
  if (event.is_discarded()) {
    spdlog::warn("{}: unreadable occ event: {}", peer_, fields.get('M'));
    return;
  }
  const std::string kind = event.value("event", "");
  if (kind == "own_write") {
    if (!pending_.empty()) pending_.front().written_over = event.value("current", "");
    return;
  }
  if (kind == "unchecked_write") {
    const std::string table = event.value("schema", "") + "." + event.value("table", "");
    stats::unchecked_write(table);
    spdlog::warn("{}: unchecked write of {} from inside a function, procedure, DO block or trigger (statement {})",
                 peer_, table, statement_fingerprint(event.value("statement", "")));
    note_unchecked_write(event);
    return;
  }
  audit_event(event);
}

void Relay::note_unchecked_write(const nlohmann::json& event) {
  const auto key = event.find("key");
  const auto version = event.find("version");
  if (key == event.end() || !key->is_array() || version == event.end() || !version->is_string()) return;
  const TablePolicy* table = policy().rules ? policy().rules->find(event.value("schema", ""), event.value("table", ""))
                                            : nullptr;
  if (table == nullptr || key->size() != table->key.size()) return;
  std::vector<std::string> values;
  for (const auto& value : *key) {
    if (!value.is_string()) return;  // a NULL key column: no row the session can name
    values.push_back(value.get<std::string>());
  }
  // The session's own change: the version it left counts as read, undone if its transaction is.
  reads_.note(*table, values, {version->get<std::string>(), "{}", ReadSet::Clock::now()});
}

void Relay::audit_event(const nlohmann::json& event) {
  const std::string kind = event.value("event", "");
  const std::string schema = event.value("schema", "");
  const std::string table = event.value("table", "");
  const std::string qualified = schema + "." + table;
  if (kind == "shadow_conflict") {
    stats::add(Counter::shadow_conflicts);
    stats::table_add(qualified, stats::TableCounter::shadow_conflicts);
  } else if (kind == "forced_write") {
    stats::add(Counter::forced_writes);
    stats::table_add(qualified, stats::TableCounter::forced_writes);
  }

  const Policy& p = policy();
  const TablePolicy* table_policy = p.rules ? p.rules->find(schema, table) : nullptr;
  const InFlight* current = pending_.current();
  const WriteInfo* write = nullptr;
  if (current && current->statement)
    for (const auto& w : current->statement->writes)
      if (w.table && w.table->schema == schema && w.table->name == table) {
        write = &w;
        break;
      }

  auto redacted = [&](const std::string& column, nlohmann::json value) {
    return table_policy && table_policy->is_redacted(column) ? nlohmann::json("<redacted>") : value;
  };
  const auto& theirs = event.contains("current_row") ? event["current_row"] : nlohmann::json::object();
  const auto& base = event.contains("base") && event["base"].is_object() ? event["base"] : nlohmann::json::object();

  const auto id = event.find("id");
  nlohmann::json record = {
      {"id", id != event.end() && id->is_string() ? id->get<std::string>() : audit::new_id()},
      {"kind", kind},
      {"table", qualified},
      {"key", event.value("key", nlohmann::json::object())},
      {"expected", event.value("expected", nlohmann::json(nullptr))},
      {"current", event.value("current", nlohmann::json(nullptr))},
      {"user", user_},
      {"database", database_},
      {"application_name", application_name_},
      {"client_addr", peer_},
      {"backend_pid", backend_pid_},
      {"fingerprint", write ? write->fingerprint : ""},
  };
  nlohmann::json diff = nlohmann::json::object();
  if (write) {
    for (const auto& [column, value_sql] : write->assigned) {
      nlohmann::json entry = {
          {"mine", redacted(column, mine_value(value_sql, current->portal ? &current->portal->params : nullptr, syntax_))},
          {"theirs", redacted(column, theirs.contains(column) ? theirs[column] : nlohmann::json(nullptr))},
      };
      if (base.contains(column)) entry["base"] = redacted(column, base[column]);
      diff[column] = std::move(entry);
    }
  }
  // Every column changed since the read, so whoever resolves it sees what the other writer did.
  const auto changed = event.find("changed");
  if (changed != event.end() && changed->is_array()) {
    for (const auto& name : *changed) {
      if (!name.is_string()) continue;
      const std::string column = name.get<std::string>();
      if (diff.contains(column)) continue;
      nlohmann::json entry = {{"theirs", redacted(column, theirs.contains(column) ? theirs[column] : nlohmann::json(nullptr))}};
      if (base.contains(column)) entry["base"] = redacted(column, base[column]);
      diff[column] = std::move(entry);
    }
  }
  record["diff"] = std::move(diff);
  if (const auto both = event.find("both_changed"); both != event.end() && both->is_array())
    record["both_changed"] = *both;
  if (const auto writer = event.find("writer"); writer != event.end() && writer->is_object())
    record["writer"] = *writer;
  if (kind == "forced_write") record["overwritten_version"] = record["current"];
  if (kind == "merged" || kind == "shadow_merged") {
    held_merges_.push_back(std::move(record));
    return;
  }
  spdlog::info("{}: occ {} on {} key {}", peer_, kind, qualified, record["key"].dump());
  audit::record(std::move(record));
}


}  // namespace occ
