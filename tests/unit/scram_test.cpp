// SCRAM and md5 from stored verifiers: RFC and PostgreSQL vectors, both sides together, PostgreSQL's refusals.
#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "auth/auth_lookup.h"
#include "auth/md5_auth.h"
#include "auth/scram.h"

namespace {

// Made by PostgreSQL 15: SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user PASSWORD
// 'Tr0ub4dor&3'; then SET password_encryption = 'md5'; CREATE ROLE md5_user PASSWORD 'correct horse'.
const std::string pg_scram_verifier =
    "SCRAM-SHA-256$4096:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:"
    "8SmGNuUmy+PR/2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=";
const std::string pg_scram_password = "Tr0ub4dor&3";
const std::string pg_md5_hash = "md5be7c196ba46fc85c5c274253855bb5d1";

// RFC 7677 section 3.
const std::string rfc_salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
const std::string rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const std::string rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const std::string rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const std::string rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const std::string rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// A stand-in for a 32-byte SHA-256 certificate hash.
const std::string end_point(32, '\x5a');

occ::ScramVerifier pg_verifier() { return *occ::parse_scram_verifier(pg_scram_verifier); }

occ::ScramKey key_from_password(const occ::ScramVerifier& v, const std::string& password) {
  return occ::scram_client_key(password, v.salt, v.iterations);
}

struct Failure {
  std::string sqlstate;
  std::string message;
  std::string detail;
  bool operator==(const Failure&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Failure& f) {
  return os << f.sqlstate << " " << f.message << " / " << f.detail;
}

template <typename F>
Failure failure_of(F&& step) {
  try {
    step();
  } catch (const occ::ScramError& e) {
    return {e.sqlstate, e.what(), e.detail};
  }
  return {"", "no error", ""};
}

// Runs a client against a server to the end; returns the server-final-message the server sent, or
// nullopt when the server refused the proof.
std::optional<std::string> exchange(occ::ScramClient& client, occ::ScramServer& server) {
  const auto mechanism = client.select_mechanism(server.mechanisms());
  const auto server_first = server.client_first(mechanism, client.client_first());
  const auto server_final = server.client_final(client.client_final(server_first));
  if (server_final) client.server_final(*server_final);
  return server_final;
}

}  // namespace

TEST_CASE("base64 as RFC 4648 writes it", "[scram]") {
  const std::pair<std::string, std::string> rows[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {std::string("\xff\x00\xfe", 3), "/wD+"},
  };
  for (const auto& [bytes, text] : rows) {
    INFO(text);
    CHECK(occ::base64_encode(bytes) == text);
    CHECK(occ::base64_decode(text) == bytes);
  }
  for (const char* bad : {"Zg=", "Z===", "Zg", "Zm9v!A==", "=Zm9", "Zg==Zg==", "Zm 9", "Zm9v\n"}) {
    INFO(bad);
    CHECK(occ::base64_decode(bad) == std::nullopt);
  }
}

TEST_CASE("a verifier written by PostgreSQL parses and prints back the same", "[scram]") {
  const auto v = occ::parse_scram_verifier(pg_scram_verifier);
  REQUIRE(v);
  CHECK(v->iterations == 4096);
  CHECK(occ::base64_encode(v->salt) == "7qJbBxoJuxNUxeKcSYKxVA==");
  CHECK(occ::to_string(*v) == pg_scram_verifier);
  // The same keys from the password: our derivation is PostgreSQL's.
  CHECK(occ::to_string(occ::scram_verifier(pg_scram_password, v->salt, v->iterations)) == pg_scram_verifier);
}

TEST_CASE("what is not a SCRAM verifier is refused", "[scram]") {
  const char* rows[] = {
      "",
      "md5be7c196ba46fc85c5c274253855bb5d1",
      "SCRAM-SHA-1$4096:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
      "SCRAM-SHA-256$0:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
      "SCRAM-SHA-256$x:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
      "SCRAM-SHA-256$4096:$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
      "SCRAM-SHA-256$4096:7qJbBxoJuxNUxeKcSYKxVA=$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
      "SCRAM-SHA-256$4096:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=",
      "SCRAM-SHA-256$4096:7qJbBxoJuxNUxeKcSYKxVA==$3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJ",
      "SCRAM-SHA-256$4096$7qJbBxoJuxNUxeKcSYKxVA==:3mcnq817Z2YfuQQENtkCu+GTMozNLdfkPuLYVI/tB/8=:8SmGNuUmy+PR/"
      "2nUtQXiCuL89j9PmoVSHo/e5gEJvKI=",
  };
  for (const char* row : rows) {
    INFO(row);
    CHECK_FALSE(occ::parse_scram_verifier(row));
  }
}

TEST_CASE("the server side reproduces RFC 7677's exchange", "[scram]") {
  const auto salt = *occ::base64_decode(rfc_salt_b64);
  occ::ScramServer server("user", occ::scram_verifier("pencil", salt, 4096), "", rfc_server_nonce);
  CHECK(server.mechanisms() == std::vector<std::string>{"SCRAM-SHA-256"});
  CHECK(server.client_first("SCRAM-SHA-256", rfc_client_first) == rfc_server_first);
  CHECK(server.client_final(rfc_client_final) == rfc_server_final);
  CHECK(server.client_key() == occ::scram_client_key("pencil", salt, 4096));
}

TEST_CASE("a client key recovered from a proof logs in again, with channel binding", "[scram]") {
  const auto v = pg_verifier();
  // The application's login to the proxy, over TLS with the proxy's certificate hash.
  occ::ScramClient app(v, key_from_password(v, pg_scram_password), true, end_point);
  occ::ScramServer proxy_side("scram_user", v, end_point);
  CHECK(proxy_side.mechanisms() == std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  REQUIRE(exchange(app, proxy_side));
  CHECK(proxy_side.client_key() == key_from_password(v, pg_scram_password));

  // The proxy's login to the server with only the recovered key, bound to the server's certificate.
  const std::string server_end_point(48, '\x07');
  occ::ScramClient proxy_as_client(v, proxy_side.client_key(), true, server_end_point);
  occ::ScramServer server("scram_user", v, server_end_point);
  REQUIRE(exchange(proxy_as_client, server));
  CHECK(server.client_key() == proxy_side.client_key());
}

TEST_CASE("the messages on the wire are PostgreSQL's shapes", "[scram]") {
  const auto v = pg_verifier();
  const auto key = key_from_password(v, pg_scram_password);
  struct Row {
    bool client_tls;
    std::string server_end_point;
    std::string mechanism;
    std::string client_first;
  };
  const Row rows[] = {
      {false, "", "SCRAM-SHA-256", "n,,n=,r=clientnonce"},
      {true, "", "SCRAM-SHA-256", "y,,n=,r=clientnonce"},
      {true, end_point, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=clientnonce"},
  };
  for (const auto& row : rows) {
    INFO(row.client_first);
    occ::ScramClient client(v, key, row.client_tls, row.server_end_point, "clientnonce");
    occ::ScramServer server("scram_user", v, row.server_end_point, "servernonce");
    CHECK(client.select_mechanism(server.mechanisms()) == row.mechanism);
    CHECK(client.client_first() == row.client_first);
    const auto server_first = server.client_first(row.mechanism, row.client_first);
    CHECK(server_first == "r=clientnonceservernonce,s=7qJbBxoJuxNUxeKcSYKxVA==,i=4096");
    const auto client_final = client.client_final(server_first);
    const std::string cbind = row.mechanism == "SCRAM-SHA-256-PLUS"
                                  ? occ::base64_encode("p=tls-server-end-point,," + end_point)
                                  : occ::base64_encode(row.client_first.substr(0, 3));
    CHECK(client_final.starts_with("c=" + cbind + ",r=clientnonceservernonce,p="));
    CHECK(client_final.size() == cbind.size() + 2 + 25 + 47);
    const auto server_final = server.client_final(client_final);
    REQUIRE(server_final);
    CHECK(server_final->size() == 46);
    CHECK_NOTHROW(client.server_final(*server_final));
  }
}

TEST_CASE("a wrong password, a missing role and a changed verifier fail at the proof", "[scram]") {
  const auto v = pg_verifier();
  SECTION("wrong password") {
    occ::ScramClient client(v, key_from_password(v, "Tr0ub4dor&4"), false, "");
    occ::ScramServer server("scram_user", v, "");
    CHECK(exchange(client, server) == std::nullopt);
  }
  SECTION("no such role: no password passes, whatever the salt it answers") {
    occ::ScramServer server("ghost", std::nullopt, "");
    const auto server_first = server.client_first("SCRAM-SHA-256", "n,,n=,r=c");
    const auto salt = *occ::base64_decode(server_first.substr(server_first.find(",s=") + 3, 24));
    occ::ScramClient client(occ::scram_verifier("guess", salt, 4096), occ::scram_client_key("guess", salt, 4096), false,
                            "", "c");
    client.select_mechanism(server.mechanisms());
    client.client_first();
    CHECK(server.client_final(client.client_final(server_first)) == std::nullopt);
  }
  SECTION("the mock salt is stable per role name and differs between names, like a real one") {
    auto salt_of = [](const std::string& user) {
      occ::ScramServer server(user, std::nullopt, "", "n");
      return server.client_first("SCRAM-SHA-256", "n,,n=,r=c");
    };
    CHECK(salt_of("ghost") == salt_of("ghost"));
    CHECK(salt_of("ghost") != salt_of("phantom"));
    CHECK(salt_of("ghost").ends_with(",i=4096"));
    CHECK(salt_of("ghost").size() == std::string("r=cn,s=,i=4096").size() + 24);
  }
  CHECK(occ::password_failed_message("app") == "password authentication failed for user \"app\"");
}

TEST_CASE("a channel binding to another certificate is refused", "[scram]") {
  const auto v = pg_verifier();
  const std::string other_end_point(32, '\x5b');
  occ::ScramClient client(v, key_from_password(v, pg_scram_password), true, other_end_point);
  occ::ScramServer server("scram_user", v, end_point);
  const auto mechanism = client.select_mechanism(server.mechanisms());
  const auto server_first = server.client_first(mechanism, client.client_first());
  const auto client_final = client.client_final(server_first);
  CHECK(failure_of([&] { server.client_final(client_final); }) ==
        Failure{"28000", "SCRAM channel binding check failed", ""});
}

TEST_CASE("malformed client-first-messages fail as in PostgreSQL", "[scram]") {
  const std::string sha = "SCRAM-SHA-256", plus = "SCRAM-SHA-256-PLUS", violation = "08P01";
  const std::string malformed = "malformed SCRAM message";
  const Failure ok{"", "no error", ""};
  const Failure bad_mechanism{violation, "client selected an invalid SASL authentication mechanism", ""};
  const Failure plus_without_data{
      violation, malformed,
      "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data."};
  const Failure data_without_plus{violation, malformed,
                                  "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
                                  "includes channel binding data."};
  const Failure y_over_tls{"28000", "SCRAM channel binding negotiation error",
                           "The client supports SCRAM channel binding but thinks the server does not.  However, "
                           "this server does support channel binding."};
  const Failure authzid{"0A000", "client uses authorization identity, but it is not supported", ""};
  const Failure extension{"0A000", "client requires an unsupported SCRAM extension", ""};
  auto detail = [&](const std::string& text) { return Failure{violation, malformed, text}; };
  auto error = [&](const std::string& text) { return Failure{violation, text, ""}; };
  struct Row {
    bool tls;
    std::string mechanism;
    std::string message;
    Failure failure;
  };
  const Row rows[] = {
      {false, plus, "p=tls-server-end-point,,n=,r=x", bad_mechanism},
      {true, "SCRAM-SHA-1", "n,,n=,r=x", bad_mechanism},
      {false, sha, "", detail("The message is empty.")},
      {false, sha, std::string("n,,n=,r=x\0y", 11), detail("Message length does not match input length.")},
      {true, plus, "n,,n=,r=x", plus_without_data},
      {true, plus, "y,,n=,r=x", plus_without_data},
      {true, sha, "y,,n=,r=x", y_over_tls},
      {false, sha, "p=tls-server-end-point,,n=,r=x", data_without_plus},
      {true, plus, "p=tls-unique,,n=,r=x", error("unsupported SCRAM channel-binding type \"tls-unique\"")},
      {true, plus, "p=tls server\x01-end-point-and-then-more,,n=,r=x",
       error("unsupported SCRAM channel-binding type \"tls?server?-end-point-and-then\"")},
      {false, sha, "x,,n=,r=x", detail("Unexpected channel-binding flag \"'x'\".")},
      {false, sha, "\x01,,n=,r=x", detail("Unexpected channel-binding flag \"0x01\".")},
      {false, sha, "n;,n=,r=x", detail("Comma expected, but found character \"';'\".")},
      {false, sha, "n,a=bob,n=,r=x", authzid},
      {false, sha, "n,x,n=,r=x", detail("Unexpected attribute \"'x'\" in client-first-message.")},
      {false, sha, "n,,m=ext,n=,r=x", extension},
      {false, sha, "n,,r=x", detail("Expected attribute \"n\" but found \"'r'\".")},
      {false, sha, "n,,n", detail("Expected character \"=\" for attribute \"n\".")},
      {false, sha, "n,,n=", detail("Expected attribute \"r\" but found \"0x00\".")},
      {false, sha, "n,,n=,r=a b", error("non-printable characters in SCRAM nonce")},
      {false, sha, "n,,n=,r=x,1=2", detail("Attribute expected, but found invalid character \"'1'\".")},
      {false, sha, "n,,n=,r=x,", ok},
      {false, sha, "n,,n=someone,r=x,e=ext", ok},
      {true, plus, "p=tls-server-end-point,,n=,r=x", ok},
  };
  const auto v = pg_verifier();
  for (const auto& row : rows) {
    INFO(row.mechanism << " " << row.message);
    occ::ScramServer server("scram_user", v, row.tls ? end_point : "");
    CHECK(failure_of([&] { server.client_first(row.mechanism, row.message); }) == row.failure);
  }
}

TEST_CASE("malformed client-final-messages fail as in PostgreSQL", "[scram]") {
  const std::string violation = "08P01";
  const std::string proof = "p=" + occ::base64_encode(std::string(32, 'k'));
  const std::string short_proof = "p=" + occ::base64_encode(std::string(31, 'k'));
  const Failure ok{"", "no error", ""};
  const Failure flag_changed{violation, "unexpected SCRAM channel-binding attribute in client-final-message", ""};
  const Failure nonce{violation, "invalid SCRAM response", "Nonce does not match."};
  auto detail = [&](const std::string& text) { return Failure{violation, "malformed SCRAM message", text}; };
  struct Row {
    std::string client_first;
    std::string message;
    Failure failure;
  };
  const Row rows[] = {
      {"n,,n=,r=c", "c=eSws,r=cs," + proof, flag_changed},
      {"y,,n=,r=c", "c=biws,r=cs," + proof, flag_changed},
      {"n,,n=,r=c", "r=cs," + proof, detail("Expected attribute \"c\" but found \"'r'\".")},
      {"n,,n=,r=c", "c=biws,r=cs", detail("Attribute expected, but found end of string.")},
      {"n,,n=,r=c", "c=biws,r=cs,p=abc", detail("Malformed proof in client-final-message.")},
      {"n,,n=,r=c", "c=biws,r=cs," + short_proof, detail("Malformed proof in client-final-message.")},
      {"n,,n=,r=c", "c=biws,r=cs," + proof + ",x=1", detail("Garbage found at the end of client-final-message.")},
      {"n,,n=,r=c", "c=biws,r=cX," + proof, nonce},
      {"n,,n=,r=c", "c=biws,r=c," + proof, nonce},
      {"n,,n=,r=c", "c=biws,r=cs,x=ext," + proof, ok},
      {"y,,n=,r=c", "c=eSws,r=cs," + proof + ",", ok},
  };
  const auto v = pg_verifier();
  for (const auto& row : rows) {
    INFO(row.message);
    occ::ScramServer server("scram_user", v, "", "s");
    server.client_first("SCRAM-SHA-256", row.client_first);
    std::optional<std::string> result;
    CHECK(failure_of([&] { result = server.client_final(row.message); }) == row.failure);
    CHECK(result == std::nullopt);  // a made-up proof never passes
  }
}

TEST_CASE("the client side picks the mechanism libpq would", "[scram]") {
  const auto v = pg_verifier();
  const auto key = key_from_password(v, pg_scram_password);
  const std::vector<std::string> both{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  const std::vector<std::string> plain{"SCRAM-SHA-256"};
  struct Row {
    bool tls;
    std::string end_point;
    std::vector<std::string> offered;
    std::string chosen;  // or the error
  };
  const std::vector<std::string> neither{"OAUTHBEARER", "SCRAM-SHA-512"};
  const std::string no_hash =
      "the server offers SCRAM-SHA-256-PLUS, but the hash of its certificate for channel binding is unknown";
  const std::string none = "the server offers no SCRAM-SHA-256 authentication (offered: OAUTHBEARER, SCRAM-SHA-512)";
  const Row rows[] = {
      {true, end_point, both, "SCRAM-SHA-256-PLUS"},
      {true, end_point, plain, "SCRAM-SHA-256"},
      {false, "", both, "SCRAM-SHA-256"},
      {false, "", plain, "SCRAM-SHA-256"},
      {true, "", both, no_hash},
      {false, "", neither, none},
  };
  for (const auto& row : rows) {
    INFO(row.chosen);
    occ::ScramClient client(v, key, row.tls, row.end_point);
    std::string chosen;
    const auto failure = failure_of([&] { chosen = client.select_mechanism(row.offered); });
    CHECK((failure.message == "no error" ? chosen : failure.message) == row.chosen);
  }
}

TEST_CASE("the client side refuses a server it cannot trust", "[scram]") {
  const auto v = pg_verifier();
  const auto key = key_from_password(v, pg_scram_password);
  auto started = [&] {
    auto client = std::make_unique<occ::ScramClient>(v, key, false, "", "c");
    client->select_mechanism({"SCRAM-SHA-256"});
    client->client_first();
    return client;
  };
  const std::string salt = ",s=7qJbBxoJuxNUxeKcSYKxVA==";
  struct Row {
    std::string server_first;
    Failure failure;
  };
  const Failure ok{"", "no error", ""};
  const Failure nonce{"08P01", "invalid SCRAM response from the server", "Nonce does not match."};
  const Failure stale{
      "28000",
      "the server's SCRAM salt or iteration count differ from the verifier looked up: the role's password has changed",
      ""};
  auto detail = [](const std::string& text) { return Failure{"08P01", "malformed SCRAM message", text}; };
  const Row rows[] = {
      {"r=cs" + salt + ",i=4096", ok},
      {"r=cs" + salt + ",i=4096,x=ext", ok},
      {"r=c" + salt + ",i=4096", nonce},
      {"r=xs" + salt + ",i=4096", nonce},
      {"r=cs,s=!!!!,i=4096", detail("Invalid salt in server-first-message.")},
      {"r=cs" + salt + ",i=0", detail("Invalid iteration count in server-first-message.")},
      {"r=cs" + salt, detail("Expected attribute \"i\" but found \"0x00\".")},
      {"m=x,r=cs" + salt + ",i=4096", {"08P01", "the server requires an unsupported SCRAM extension", ""}},
      {"r=cs" + salt + ",i=8192", stale},
      {"r=cs,s=AAAAAAAAAAAAAAAAAAAAAA==,i=4096", stale},
  };
  for (const auto& row : rows) {
    INFO(row.server_first);
    auto client = started();
    CHECK(failure_of([&] { client->client_final(row.server_first); }) == row.failure);
  }
  SECTION("a changed verifier is told apart") {
    auto client = started();
    CHECK_THROWS_AS(client->client_final("r=cs" + salt + ",i=8192"), occ::ScramStaleVerifier);
  }
  SECTION("server-final-messages") {
    occ::ScramServer server("scram_user", v, "", "s");
    auto client = started();
    const auto server_first = server.client_first("SCRAM-SHA-256", "n,,n=,r=c");
    const auto server_final = server.client_final(client->client_final(server_first));
    REQUIRE(server_final);
    auto tampered = *server_final;
    tampered[2] = tampered[2] == 'A' ? 'B' : 'A';
    const std::pair<std::string, Failure> finals[] = {
        {"e=invalid-proof", {"28000", "the server refused the SCRAM exchange: invalid-proof", ""}},
        {"v=abc", {"08P01", "malformed SCRAM message", "Invalid server signature in server-final-message."}},
        {tampered, {"28000", "the server's SCRAM signature is wrong: it does not hold this role's ServerKey", ""}},
        {*server_final, {"", "no error", ""}},
    };
    for (const auto& [message, failure] : finals) {
      INFO(message);
      auto fresh = started();
      fresh->client_final(server_first);
      CHECK(failure_of([&] { fresh->server_final(message); }) == failure);
    }
  }
}

TEST_CASE("md5 from PostgreSQL's stored hash", "[scram][md5]") {
  CHECK(occ::md5_hash("md5_user", "correct horse") == pg_md5_hash);
  CHECK(occ::is_md5_hash(pg_md5_hash));
  for (const char* bad : {"", "md5", "md5BE7C196BA46FC85C5C274253855BB5D1", "md5be7c196ba46fc85c5c274253855bb5d",
                          "sha5be7c196ba46fc85c5c274253855bb5d1", "SCRAM-SHA-256$4096:7qJbBxoJuxNUxeKcSYKxVA==$a:b"}) {
    INFO(bad);
    CHECK_FALSE(occ::is_md5_hash(bad));
  }
  // Expected values computed independently with Python's hashlib.
  struct Row {
    std::string salt;
    std::string response;
  };
  const Row rows[] = {
      {std::string("\x01\x02\x03\x04", 4), "md52ae4067b7e05403bc1fd0bcc21415f8e"},
      {std::string("\xff\x00\x80\x7f", 4), "md52e3e7ba54b384739eefe9073e39379b3"},
  };
  for (const auto& row : rows) {
    CHECK(occ::md5_response(pg_md5_hash, row.salt) == row.response);
    CHECK(occ::md5_response_matches(pg_md5_hash, row.salt, row.response));
    CHECK_FALSE(occ::md5_response_matches(pg_md5_hash, row.salt, row.response.substr(0, 34)));
    CHECK_FALSE(occ::md5_response_matches(pg_md5_hash, row.salt, row.response + "0"));
    CHECK_FALSE(occ::md5_response_matches(occ::md5_hash("md5_user", "correct horse!"), row.salt, row.response));
  }
  CHECK(occ::md5_salt().size() == 4);
  CHECK_THROWS_WITH(occ::md5_response(pg_md5_hash, "abc"), "the md5 salt must be 4 bytes, got 3");
  CHECK_THROWS_WITH(occ::md5_response(pg_scram_verifier, "abcd"), "not an md5 password hash");
}

TEST_CASE("auth.query's row says which login the proxy runs", "[scram]") {
  const occ::RoleSecret scram = occ::role_secret(true, pg_scram_verifier);
  CHECK(scram.role_exists);
  REQUIRE(scram.scram);
  CHECK(occ::to_string(*scram.scram) == pg_scram_verifier);
  CHECK(scram.md5.empty());

  const std::string md5_hash = occ::md5_hash("md5_user", "correct horse");
  const occ::RoleSecret md5 = occ::role_secret(true, md5_hash);
  CHECK_FALSE(md5.scram);
  CHECK(md5.md5 == md5_hash);
  CHECK(md5.usable());

  // No password, an expired one (auth_lookup gives NULL), an unknown role, a secret of another kind.
  for (const occ::RoleSecret& unusable : {occ::role_secret(true, std::nullopt), occ::role_secret(false, std::nullopt),
                                          occ::role_secret(true, std::string("plaintext?"))}) {
    CHECK_FALSE(unusable.usable());
    CHECK_FALSE(unusable.scram);
    CHECK(unusable.md5.empty());
  }
  CHECK_FALSE(occ::role_secret(false, std::nullopt).role_exists);
}
