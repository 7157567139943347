// The proxy's own blocking libpq connection (admin_dsn) for catalog checks and migrations.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

namespace occ {

// libpq's or the server's message, without the trailing newline.
struct PgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class PgResult {
 public:
  explicit PgResult(PGresult* r) : result_(r, &PQclear) {}
  int rows() const { return PQntuples(result_.get()); }
  int columns() const { return PQnfields(result_.get()); }
  std::string column_name(int column) const { return PQfname(result_.get(), column); }
  std::string text(int row, int column) const { return PQgetvalue(result_.get(), row, column); }
  std::optional<std::string> nullable(int row, int column) const;
  bool flag(int row, int column) const { return text(row, column) == "t"; }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> result_;
};

class PgConnection {
 public:
  // Connects at once; an unreachable server gives up after 10 s unless the DSN sets connect_timeout.
  explicit PgConnection(const std::string& dsn);
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // One or more statements in the simple protocol (migration files); throws PgError.
  PgResult exec(const std::string& sql);
  // One statement with text parameters; throws PgError.
  PgResult query(const std::string& sql, const std::vector<std::string>& params);

  // Whether the connection survived the last error (a failed statement) or is gone (server restart).
  bool usable() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  // A handle another thread may use to cancel the statement running now (PQcancel).
  std::shared_ptr<PGcancel> cancel_handle();

  // "name" with quotes doubled, for splicing an identifier into DDL.
  std::string identifier(std::string_view name);
  // 'text' as a SQL string literal.
  std::string literal(std::string_view text);

 private:
  PgResult checked(PGresult* r);

  std::unique_ptr<PGconn, decltype(&PQfinish)> conn_;
};

}  // namespace occ
