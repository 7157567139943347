// auth.mode terminate: the proxy checks the client's password proof against the role's stored
// secret, then logs into the server with what that proof revealed (the SCRAM ClientKey, or the md5
// hash), the way PgBouncer's SCRAM pass-through does. No password in clear ever reaches the proxy.
#include "net/session.h"

#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include "auth/auth_lookup.h"
#include "config/config.h"
#include "auth/md5_auth.h"

namespace occ {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

using pg::kAuthCleartext, pg::kAuthMd5, pg::kAuthOk, pg::kAuthSasl, pg::kAuthSaslContinue, pg::kAuthSaslFinal;

// PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: no login message is longer.
constexpr std::size_t kMaxAuthMessage = 65535;

void encode_auth(std::string& out, int32_t code, std::string_view payload = {}) {
  pg::MessageWriter w(out);
  w.begin(pg::be::kAuthentication);
  w.i32(code);
  w.bytes(payload);
  w.finish();
}

// SASLInitialResponse: the mechanism and the client's first message.
void encode_sasl_initial(std::string& out, std::string_view mechanism, std::string_view data) {
  pg::MessageWriter w(out);
  w.begin(pg::fe::kPassword);
  w.cstring(mechanism);
  w.i32(static_cast<int32_t>(data.size()));
  w.bytes(data);
  w.finish();
}

void encode_password(std::string& out, std::string_view data, bool nul_terminated) {
  pg::MessageWriter w(out);
  w.begin(pg::fe::kPassword);
  if (nul_terminated)
    w.cstring(data);
  else
    w.bytes(data);
  w.finish();
}

// The next whole message on a connection still in its login phase.
awaitable<Frame> next_message(Connection& connection, FrameReader& in) {
  for (;;) {
    Frame frame;
    switch (in.next(frame)) {
      case FrameReader::Status::frame:
        co_return frame;
      case FrameReader::Status::need_more: {
        auto area = in.write_area();
        in.commit(co_await connection.read_some(asio::buffer(area.data(), area.size())));
        break;
      }
      default:
        throw pg::MalformedMessage("invalid message length during authentication");
    }
  }
}

// A client that ended its login with Terminate (libpq hangs up to prompt for a password).
struct ClientGaveUp {};

// The client's next password message.
awaitable<std::string> password_message(Connection& client, FrameReader& in) {
  Frame frame = co_await next_message(client, in);
  if (frame.type == pg::fe::kTerminate) throw ClientGaveUp{};
  if (frame.type != pg::fe::kPassword)
    throw ScramError("08P01", "expected password response, got message type " + std::to_string(frame.type));
  co_return std::string(frame.body);
}

}  // namespace

awaitable<bool> Session::authenticate_client() {
  login_ = std::make_unique<Login>();
  const std::shared_ptr<AuthLookup> lookup = policy().auth;
  RoleSecret secret;
  std::string lookup_failure;
  try {
    secret = co_await lookup->find(relay_.user());
  } catch (const std::exception& e) {
    lookup_failure = e.what();
  }
  if (!lookup_failure.empty()) {
    spdlog::error("{}: cannot look up the password of role \"{}\": {}", peer_, relay_.user(), lookup_failure);
    co_await refuse(EndReason::auth_lookup_failed, std::move(lookup_failure));
    co_return false;
  }

  // A client that stalls mid-exchange is cut like one that stalls before its startup packet.
  asio::steady_timer deadline(client_.get_executor());
  deadline.expires_after(config_.startup_timeout);
  deadline.async_wait([this, self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) client_.close();
  });
  client_in_.set_max_body_length(kMaxAuthMessage);
  std::optional<ClientFatal> refused;
  try {
    bool proved;
    if (!secret.scram && !secret.md5.empty())
      proved = co_await check_md5_proof(secret);
    else
      proved = co_await check_scram_proof(secret);
    if (!proved) refused = ClientFatal{std::string(kPasswordFailedSqlstate), password_failed_message(relay_.user()), {}};
  } catch (const ClientGaveUp&) {
    co_return false;
  } catch (const ScramError& e) {
    refused = ClientFatal{e.sqlstate, e.what(), e.detail};
  } catch (const pg::MalformedMessage& e) {
    refused = ClientFatal{"08P01", std::string("invalid message: ") + e.what(), {}};
  } catch (const boost::system::system_error& e) {
    spdlog::debug("{}: closed during authentication: {}", peer_, e.code().message());
    co_return false;
  }
  deadline.cancel();
  client_in_.set_max_body_length(config_.max_message_length);
  if (!refused) co_return true;

  // The password may have changed since the secret was cached: the next attempt looks it up again.
  lookup->forget(relay_.user());
  std::string detail = "user \"" + relay_.user() + "\": " + refused->message;
  co_await refuse(EndReason::login_refused, std::move(detail), std::move(refused));
  co_return false;
}

awaitable<bool> Session::check_md5_proof(const RoleSecret& secret) {
  const std::string salt = md5_salt();
  std::string out;
  encode_auth(out, kAuthMd5, salt);
  co_await client_.write(out);
  std::string response = co_await password_message(client_, client_in_);
  if (response.empty() || response.back() != '\0') throw ScramError("08P01", "invalid password packet size");
  response.pop_back();
  if (!md5_response_matches(secret.md5, salt, response)) co_return false;
  login_->md5 = secret.md5;
  co_return true;
}

awaitable<bool> Session::check_scram_proof(const RoleSecret& secret) {
  // The certificate this client was shown, which its channel binding names.
  std::string end_point;
  if (client_.is_tls()) end_point = tls_server_end_point(SSL_get_certificate(client_.ssl()));
  if (!secret.usable())
    spdlog::info("{}: role \"{}\" {}", peer_, relay_.user(), secret.role_exists ? "has no usable password" : "does not exist");
  ScramServer scram(relay_.user(), secret.scram, std::move(end_point));
  std::string mechanisms;
  for (const std::string& m : scram.mechanisms()) mechanisms.append(m).push_back('\0');
  mechanisms.push_back('\0');
  std::string out;
  encode_auth(out, kAuthSasl, mechanisms);
  co_await client_.write(out);

  const std::string initial = co_await password_message(client_, client_in_);
  pg::BodyReader r(initial);
  const std::string mechanism(r.cstring());
  const int32_t length = r.i32();
  const std::string_view first = length < 0 ? std::string_view() : r.bytes(static_cast<std::size_t>(length));
  out.clear();
  encode_auth(out, kAuthSaslContinue, scram.client_first(mechanism, first));
  co_await client_.write(out);

  const std::optional<std::string> server_final = scram.client_final(co_await password_message(client_, client_in_));
  if (!server_final) co_return false;
  login_->scram = secret.scram;
  login_->client_key = scram.client_key();
  encode_auth(login_->to_client_after_login, kAuthSaslFinal, *server_final);
  spdlog::debug("{}: client authenticated by the proxy with {}", peer_, mechanism);
  co_return true;
}

awaitable<bool> Session::log_into_server() {
  std::optional<ScramClient> scram;
  std::string failure;  // the proxy's own reason, for the log
  // What the client is told: what the server says of a wrong password, unless no password could do.
  std::string failure_sqlstate(kPasswordFailedSqlstate);
  std::string out;
  try {
    for (;;) {
      Frame frame = co_await next_message(server_, server_in_);
      if (frame.type == pg::be::kErrorResponse) {
        // The server's own refusal (no such database, NOLOGIN role, pg_hba.conf): as is.
        spdlog::info("{}: the database server refused the login of user \"{}\"", peer_, relay_.user());
        co_await client_.try_write(frame.raw);
        co_return false;
      }
      if (frame.type == pg::be::kNegotiateProtocolVersion) {
        login_->to_client_after_login.insert(0, frame.raw);
        continue;
      }
      if (frame.type != pg::be::kAuthentication) throw pg::MalformedMessage("unexpected message during authentication");
      const pg::Authentication auth = pg::decode_authentication(frame.body);
      out.clear();
      if (auth.code == kAuthOk) {
        login_->to_client_after_login.append(frame.raw);
        break;
      }
      if (auth.code == kAuthSasl) {
        if (!login_->scram) {
          failure = "the server asks for SCRAM, but the role's stored password is an md5 hash";
          break;
        }
        std::vector<std::string> offered;
        pg::BodyReader r(auth.payload);
        for (auto m = r.cstring(); !m.empty(); m = r.cstring()) offered.emplace_back(m);
        scram.emplace(*login_->scram, login_->client_key, server_.is_tls(),
                      server_.is_tls() ? peer_end_point(server_.ssl()) : std::string());
        const std::string mechanism = scram->select_mechanism(offered);
        spdlog::debug("{}: logging into the database server with {}", peer_, mechanism);
        encode_sasl_initial(out, mechanism, scram->client_first());
      } else if (auth.code == kAuthSaslContinue && scram) {
        encode_password(out, scram->client_final(auth.payload), false);
      } else if (auth.code == kAuthSaslFinal && scram) {
        scram->server_final(auth.payload);
        continue;
      } else if (auth.code == kAuthMd5 && !login_->md5.empty()) {
        encode_password(out, md5_response(login_->md5, auth.payload), true);
      } else if (auth.code == kAuthMd5) {
        failure = "the server asks for md5, but the role's stored password is a SCRAM verifier";
        break;
      } else {
        failure = auth.code == kAuthCleartext
                      ? "the server asks for a clear-text password, which auth.mode: terminate never has"
                      : "the server asks for an authentication method the proxy cannot answer (code " +
                            std::to_string(auth.code) + ")";
        failure_sqlstate = "28000";
        break;
      }
      co_await server_.write(out);
    }
  } catch (const ScramStaleVerifier& e) {
    // The role's password changed since the client's proof was checked against the old one.
    policy().auth->forget(relay_.user());
    failure = e.what();
  } catch (const ScramError& e) {
    failure = e.what();
  } catch (const pg::MalformedMessage& e) {
    failure = std::string("malformed message from the database server: ") + e.what();
  } catch (const boost::system::system_error& e) {
    failure = "the database server closed the connection during authentication: " + e.code().message();
  }
  login_->scram.reset();
  login_->client_key.fill(0);
  login_->md5.clear();
  const std::string to_client = std::move(login_->to_client_after_login);
  login_.reset();
  if (!failure.empty()) {
    ClientFatal fatal{failure_sqlstate, password_failed_message(relay_.user()), {}};
    if (failure_sqlstate != kPasswordFailedSqlstate)
      fatal.message = "occproxy: cannot log into the database server: " + failure +
                      "; use scram-sha-256 or md5 in its pg_hba.conf";
    co_await refuse(EndReason::server_login_failed, "user \"" + relay_.user() + "\": " + failure, std::move(fatal));
    co_return false;
  }
  relay_.set_phase(Phase::relaying);
  co_await client_.write(to_client);
  co_return true;
}

}  // namespace occ
