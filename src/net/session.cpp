// A client session: startup relay, then the two pumps and what they inspect on the way.
#include "net/session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "config/config.h"
#include "net/session_registry.h"
#include "sql/helper_contract.h"
#include "stats/counters.h"

namespace occ {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using stats::Counter;

namespace {

// Frames longer than this that the proxy need not inspect are streamed through, not buffered.
constexpr std::size_t kStreamThreshold = 256 * 1024;
// How long a client that does not read may hold up its session's last message before it is cut.
constexpr std::chrono::milliseconds kLastWordsTimeout{2000};

std::string endpoint_text(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// "-c search_path=a,b" or "--search_path=a,b" inside the startup `options` parameter.
std::optional<std::string> search_path_from_options(std::string_view options) {
  for (std::string_view prefix : {"search_path=", "search-path="}) {
    auto pos = options.find(prefix);
    if (pos == std::string_view::npos) continue;
    auto start = pos + prefix.size();
    auto stop = options.find(' ', start);
    return std::string(options.substr(start, stop == std::string_view::npos ? stop : stop - start));
  }
  return std::nullopt;
}

// Splits a search_path setting ("\"$user\", public") into schema names as the catalog spells them.
std::vector<std::string> split_search_path(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  bool quoted = false;
  bool was_quoted = false;
  auto flush = [&] {
    if (!was_quoted) {
      auto b = current.find_first_not_of(" \t");
      auto e = current.find_last_not_of(" \t");
      current = b == std::string::npos ? "" : current.substr(b, e - b + 1);
      for (auto& c : current) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (!current.empty()) out.push_back(current);
    current.clear();
    was_quoted = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        current.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        current.push_back(c);
      }
    } else if (c == '"') {
      quoted = was_quoted = true;
      current.clear();
    } else if (c == ',') {
      flush();
    } else if (!was_quoted) {
      current.push_back(c);
    }
  }
  flush();
  return out;
}

}  // namespace

Session::Session(tcp::socket client, const Config& config, PolicyStore& policy, SessionRegistry& registry)
    : client_(std::move(client)),
      server_(boost::asio::ip::tcp::socket(client_.get_executor())),
      linger_(client_.get_executor()),
      config_(config),
      registry_(registry),
      peer_(endpoint_text(client_.socket())),
      client_in_(pg::kMaxStartupPacket),
      server_in_(std::max<std::size_t>(config.max_message_length, 1u << 30)),
      relay_(policy, config.read_set_max_rows, peer_) {
  stats::gauge_add(stats::Gauge::connections_current, 1);
  stats::add(Counter::connections_total);
}

Session::~Session() {
  stats::gauge_add(stats::Gauge::connections_current, -1);
  registry_.remove(this);
}

// ---- startup ----------------------------------------------------------------------------------

awaitable<bool> Session::read_startup() {
  auto self = shared_from_this();
  asio::steady_timer deadline(client_.get_executor());
  deadline.expires_after(config_.startup_timeout);
  bool timed_out = false;
  deadline.async_wait([this, self, &timed_out](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    client_.close();
  });

  client_in_.set_untyped(true);
  std::optional<std::string> malformed;
  try {
    // SSLRequest and GSSENCRequest are each answered once before the real startup packet.
    for (int attempt = 0; attempt < 3; ++attempt) {
      Frame frame;
      FrameReader::Status status;
      while ((status = client_in_.next(frame)) == FrameReader::Status::need_more) {
        auto area = client_in_.write_area(64);
        std::size_t n = co_await client_.read_some(asio::buffer(area.data(), area.size()));
        client_in_.commit(n);
      }
      if (status != FrameReader::Status::frame) {
        spdlog::warn("{}: invalid startup packet length; connection closed", peer_);
        stats::add(Counter::protocol_errors);
        co_return false;
      }
      pg::BodyReader r(frame.body);
      const int32_t code = r.i32();
      if (code == pg::kSslRequestCode || code == pg::kGssEncRequestCode) {
        if (frame.body.size() != 4) throw pg::MalformedMessage("SSLRequest/GSSENCRequest with a body");
        const auto& tls = policy().tls;
        const bool accept = code == pg::kSslRequestCode && tls && tls->for_clients && !client_.is_tls();
        if (accept && client_in_.buffered() > 0) {
          // Bytes sent before the handshake would be read as if they came over TLS (CVE-2021-23214).
          spdlog::warn("{}: unencrypted data after SSLRequest; connection closed", peer_);
          stats::add(Counter::protocol_errors);
          co_return false;
        }
        const char answer = accept ? 'S' : 'N';
        co_await client_.write(std::string_view(&answer, 1));
        if (accept) co_await client_.accept_tls(tls->for_clients);
        continue;
      }
      if (code == pg::kCancelRequestCode) {
        const auto cancel = pg::decode_cancel(frame.body);
        deadline.cancel();
        // A cancel reaches the server later through the proxy than directly. Sent as a statement
        // ended, it would cancel whatever that session runs next: the proxy knows it is stale.
        std::shared_ptr<Session> target;
        registry_.for_each([&](const std::shared_ptr<Session>& s) {
          if (s.get() != this && s->serves_backend(cancel.process_id, cancel.secret_key)) target = s;
        });
        if (target && !target->awaiting_reply()) {
          stats::add(Counter::cancels_stale);
          spdlog::debug("{}: cancel request for {} dropped: nothing in flight", peer_, target->peer());
          co_return false;
        }
        startup_packet_.assign(frame.raw);
        if (co_await connect_upstream()) {
          co_await server_.write(startup_packet_);
          spdlog::debug("{}: cancel request forwarded", peer_);
        }
        co_return false;
      }
      auto startup = pg::decode_startup(frame.body);
      if (config_.tls.client_mode == ClientTlsMode::require && !client_.is_tls()) {
        co_await refuse(EndReason::tls_required, {});
        co_return false;
      }
      if (policy().protects_anything() && startup.protocol >> 16 == 3) {
        // The version trigger tells this session's writes from inside functions, procedures and DO
        // blocks (migrations/007) only for sessions through the proxy: it reports them to the proxy.
        auto marked = startup;
        auto options = std::find_if(marked.parameters.begin(), marked.parameters.end(),
                                    [](const auto& p) { return p.first == "options"; });
        if (options == marked.parameters.end())
          marked.parameters.emplace_back("options", std::string(helpers::kProxiedOption));
        else
          options->second += std::string(" ") + std::string(helpers::kProxiedOption);
        startup_packet_.clear();
        pg::encode_startup(startup_packet_, marked);
      } else {
        startup_packet_.assign(frame.raw);
      }
      std::string user(startup.get("user"));
      std::string database(startup.get("database"));
      if (database.empty()) database = user;
      std::string path(startup.get("search_path"));
      if (auto from_options = search_path_from_options(startup.get("options"))) path = *from_options;
      SearchPathChange search_path;
      if (!path.empty()) search_path = split_search_path(path);
      relay_.begin(std::move(user), std::move(database), std::string(startup.get("application_name")),
                   std::move(search_path));
      deadline.cancel();
      client_in_.set_untyped(false);
      client_in_.set_max_body_length(config_.max_message_length);
      co_return true;
    }
    spdlog::warn("{}: too many encryption requests before startup; connection closed", peer_);
  } catch (const pg::MalformedMessage& e) {
    stats::add(Counter::protocol_errors);
    malformed = e.what();
  } catch (const boost::system::system_error& e) {
    if (timed_out)
      spdlog::warn("{}: no startup packet within {} ms; connection closed", peer_, config_.startup_timeout.count());
    else
      spdlog::debug("{}: closed during startup: {}", peer_, e.code().message());
  }
  if (malformed) co_await refuse(EndReason::startup_malformed, std::move(*malformed));
  co_return false;
}

awaitable<bool> Session::connect_upstream() {
  const auto& up = config_.upstream;
  std::string failure;
  try {
    boost::system::error_code not_numeric;
    const auto address = asio::ip::make_address(up.host, not_numeric);
    if (!not_numeric) {
      // No resolver for an IP address: Asio would start a resolver thread per io_context.
      co_await server_.socket().async_connect(tcp::endpoint(address, up.port), use_awaitable);
    } else {
      tcp::resolver resolver(server_.get_executor());
      auto endpoints = co_await resolver.async_resolve(up.host, std::to_string(up.port), use_awaitable);
      co_await asio::async_connect(server_.socket(), endpoints, use_awaitable);
    }
    server_.socket().set_option(tcp::no_delay(true));
  } catch (const boost::system::system_error& e) {
    failure = "cannot connect to the database server at " + up.host + ":" + std::to_string(up.port) + ": " +
              e.code().message();
  }
  if (failure.empty()) {
    try {
      co_await start_upstream_tls();
      co_return true;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  stats::add(Counter::upstream_errors);
  spdlog::error("{}: {}", peer_, failure);
  co_await refuse(EndReason::upstream_unreachable, std::move(failure));
  co_return false;
}

// SSLRequest towards the server, as libpq's sslmode does it: prefer falls back to plaintext on
// 'N', the stricter modes end the session.
awaitable<void> Session::start_upstream_tls() {
  const UpstreamTlsMode mode = config_.tls.upstream_mode;
  const auto& tls = policy().tls;
  if (!upstream_tls_wanted(mode) || !tls || !tls->for_upstream) co_return;
  std::string request;
  pg::encode_ssl_request(request);
  co_await server_.write(request);
  char answer = 0;
  co_await asio::async_read(server_.socket(), asio::buffer(&answer, 1), use_awaitable);
  if (answer == 'S') {
    co_await server_.connect_tls(tls->for_upstream, mode, config_.upstream.host);
  } else if (answer != 'N') {
    throw std::runtime_error("unexpected answer to SSLRequest from the database server");
  } else if (upstream_tls_required(mode)) {
    throw std::runtime_error(std::string("the database server does not support TLS, but tls.upstream_mode is ") +
                             to_string(mode));
  }
}

awaitable<void> Session::run() {
  boost::system::error_code ignored;
  client_.socket().set_option(tcp::no_delay(true), ignored);
  if (!co_await read_startup()) co_return;
  if (refused_) {
    co_await refuse(EndReason::too_many_clients,
                    "occproxy's max_client_connections is " + std::to_string(config_.max_client_connections) + ".");
    co_return;
  }
  relay_.set_phase(Phase::authenticating);
  const bool terminating_auth = config_.auth.mode == AuthMode::terminate;
  // The client proves its password before it costs a server backend.
  if (terminating_auth && !co_await authenticate_client()) co_return;
  if (!co_await connect_upstream()) co_return;
  relay_.set_tls(client_.is_tls(), server_.is_tls());
  spdlog::debug("{}: session for user \"{}\" database \"{}\"", peer_, relay_.user(), relay_.database());
  try {
    co_await server_.write(startup_packet_);
    std::string().swap(startup_packet_);
    if (terminating_auth && !co_await log_into_server()) co_return;
  } catch (const boost::system::system_error& e) {
    end(EndReason::startup_lost, e.code().message());
    co_return;
  }
  // Both pumps run on their own: this coroutine's frame (the whole startup's) is freed now, not
  // held for the life of the session (SPEC 5, memory per idle client).
  auto self = shared_from_this();
  asio::co_spawn(server_.get_executor(), [self]() { return self->pump_server_to_client(); }, asio::detached);
  asio::co_spawn(client_.get_executor(), [self]() { return self->pump_client_to_server(); }, asio::detached);
}

// ---- ending -----------------------------------------------------------------------------------

void Session::end(EndReason reason, std::string detail, bool tell_client) {
  if (relay_.phase() == Phase::ended) return;
  relay_.set_phase(Phase::ended);
  const EndReasonRow& row = end_reason_row(reason);
  spdlog::info("{}: session ended: {}{}{}", peer_, row.log, detail.empty() ? "" : ": ", detail);
  if (tell_client) fatal_for_client_ = client_fatal(reason, detail);
  // The server pump owns writes to the client: it sends the FATAL (if any), then closes it.
  server_.close();
  if (!fatal_for_client_ || !server_pump_running_) {
    if (fatal_for_client_) {
      std::string out;
      encode_fatal(out, *fatal_for_client_);
      client_.write_now(out);
    }
    client_.close();
  }
}

awaitable<void> Session::refuse(EndReason reason, std::string detail, std::optional<ClientFatal> fatal) {
  relay_.set_phase(Phase::ended);
  spdlog::info("{}: session ended: {}{}{}", peer_, end_reason_row(reason).log, detail.empty() ? "" : ": ", detail);
  if (!fatal) fatal = client_fatal(reason, detail);
  server_.close();
  if (fatal) {
    std::string out;
    encode_fatal(out, *fatal);
    close_client_after(kLastWordsTimeout);
    co_await client_.try_write(out);
    linger_.cancel();
  }
  client_.close();
}

void Session::begin_shutdown() {
  if (relay_.phase() == Phase::ended) return;
  if (relay_.idle())
    terminate();
  else
    relay_.set_phase(Phase::draining);
}

void Session::terminate() {
  end(EndReason::shutdown);
  // A client that does not read would keep the last words, and the session, forever.
  close_client_after(kLastWordsTimeout);
}

void Session::close_client_after(std::chrono::milliseconds delay) {
  linger_.expires_after(delay);
  linger_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->client_.close();
  });
}

void Session::publish_state() {
  awaiting_reply_.store(relay_.awaiting_reply(), std::memory_order_relaxed);
  backend_pid_.store(relay_.backend_pid(), std::memory_order_relaxed);
  backend_key_.store(relay_.backend_key(), std::memory_order_relaxed);
}

// ---- client -> server -------------------------------------------------------------------------

awaitable<void> Session::pump_client_to_server() {
  Outbox& to_server = relay_.to_server();
  try {
    // What the client sent along with its login comes first.
    for (;;) {
      bool keep_going = true;
      for (;;) {
        Frame frame;
        auto status = client_in_.next(frame);
        if (status == FrameReader::Status::frame) {
          relay_.on_client_frame(frame);
          if (relay_.end_request()) {
            keep_going = false;
            break;
          }
          continue;
        }
        if (status == FrameReader::Status::chunk) {
          to_server.forward(frame.raw);
          continue;
        }
        if (status == FrameReader::Status::need_more) {
          char type;
          std::size_t length;
          if (client_in_.head_incomplete(type, length) && type == pg::fe::kCopyData && length > kStreamThreshold)
            to_server.forward(client_in_.stream_head());
          break;
        }
        stats::add(Counter::protocol_errors);
        const bool too_long = status == FrameReader::Status::too_long;
        spdlog::warn("{}: {} from client; connection closed", peer_,
                     too_long ? "message longer than max_message_length" : "invalid message length");
        to_server.clear();
        end(too_long ? EndReason::client_message_too_long : EndReason::client_bad_length);
        co_return;
      }
      if (!to_server.empty()) {
        writing_to_server_ = true;
        co_await server_.write(to_server.pending());
        to_server.clear();
        co_await write_own_requests();
        writing_to_server_ = false;
      }
      publish_state();
      if (!keep_going) {
        end(relay_.end_request()->reason, relay_.end_request()->detail);
        co_return;
      }
      if (client_in_.buffered() == 0) {
        // Nothing half-read: wait for the client holding no buffer (memory per idle client).
        client_in_.release_if_empty();
        to_server.release();
        if (client_.can_wait_before_read())
          co_await client_.socket().async_wait(tcp::socket::wait_read, use_awaitable);
      }
      auto area = client_in_.write_area();
      std::size_t n = co_await client_.read_some(asio::buffer(area.data(), area.size()));
      client_in_.commit(n);
      stats::add(Counter::bytes_client_to_server, n);
    }
  } catch (const pg::MalformedMessage& e) {
    stats::add(Counter::protocol_errors);
    spdlog::warn("{}: malformed message from client ({}); connection closed", peer_, e.what());
    end(EndReason::client_malformed, e.what());
  } catch (const boost::system::system_error& e) {
    if (e.code() == asio::error::eof)
      end(EndReason::client_closed);
    else
      end(EndReason::client_error, e.code().message());
  }
}

// The relay's own requests, made on a server reply; the caller holds writing_to_server_.
awaitable<void> Session::write_own_requests() {
  Outbox& own = relay_.to_server_own();
  while (!own.empty()) {
    const std::string bytes(own.pending());
    own.clear();
    co_await server_.write(bytes);
  }
}

// ---- server -> client -------------------------------------------------------------------------

awaitable<void> Session::pump_server_to_client() {
  server_pump_running_ = true;
  Outbox& to_client = relay_.to_client();
  try {
    // What the login left in the reader comes first.
    for (;;) {
      for (;;) {
        Frame frame;
        auto status = server_in_.next(frame);
        if (status == FrameReader::Status::frame) {
          relay_.on_server_frame(frame);
          if (relay_.end_request()) break;
          continue;
        }
        if (status == FrameReader::Status::chunk) {
          relay_.on_large_row_piece(frame.raw, !server_in_.streaming());
          continue;
        }
        if (status == FrameReader::Status::need_more) {
          char type;
          std::size_t length;
          if (server_in_.head_incomplete(type, length) && length > kStreamThreshold) {
            if (type == pg::be::kCopyData)
              to_client.forward(server_in_.stream_head());
            else if (type == pg::be::kDataRow && relay_.may_stream_large_row())
              relay_.on_large_row_head(server_in_.stream_head());
          }
          break;
        }
        throw pg::MalformedMessage("invalid message length from the server");
      }
      if (!writing_to_server_) {
        writing_to_server_ = true;
        co_await write_own_requests();
        writing_to_server_ = false;
      }
      // Before the client can see the last reply and send a cancel for its next statement.
      publish_state();
      if (!to_client.empty()) {
        try {
          co_await client_.write(to_client.pending());
        } catch (const boost::system::system_error& e) {
          // The client went away mid-result: nothing is wrong with the server.
          end(EndReason::client_lost, e.code().message());
          break;
        }
        to_client.clear();
      }
      if (const auto& request = relay_.end_request()) {
        end(request->reason, request->detail);
        break;
      }
      if (relay_.phase() == Phase::draining && relay_.idle()) terminate();
      if (server_in_.buffered() == 0) {
        server_in_.release_if_empty();
        to_client.release();
        relay_.release_queue_if_empty();
        if (server_.can_wait_before_read())
          co_await server_.socket().async_wait(tcp::socket::wait_read, use_awaitable);
      }
      auto area = server_in_.write_area();
      std::size_t n = co_await server_.read_some(asio::buffer(area.data(), area.size()));
      server_in_.commit(n);
      stats::add(Counter::bytes_server_to_client, n);
    }
  } catch (const pg::MalformedMessage& e) {
    spdlog::error("{}: malformed message from the server ({}); session closed", peer_, e.what());
    stats::add(Counter::upstream_errors);
    end(EndReason::server_malformed, e.what());
  } catch (const boost::system::system_error& e) {
    if (relay_.phase() != Phase::ended) {
      stats::add(Counter::upstream_errors);
      spdlog::warn("{}: lost the database server connection: {}", peer_, e.code().message());
      end(EndReason::server_lost, e.code().message(), !relay_.server_sent_fatal());
    }
  }
  server_pump_running_ = false;
  close_client_after(kLastWordsTimeout);
  if (fatal_for_client_) {
    std::string out;
    encode_fatal(out, *fatal_for_client_);
    co_await client_.try_write(out);
  }
  client_.close();
  linger_.cancel();
}

}  // namespace occ
