// Blocking libpq wrapper for admin work: RAII handles, errors as exceptions, safe quoting.
#include "admin/pg_connection.h"

namespace occ {

namespace {

std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::optional<std::string> PgResult::nullable(int row, int column) const {
  if (PQgetisnull(result_.get(), row, column)) return std::nullopt;
  return text(row, column);
}

PgConnection::PgConnection(const std::string& dsn) : conn_(nullptr, &PQfinish) {
  // Entries before the expanded dsn are defaults that the dsn's own settings override.
  const char* keywords[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* values[] = {"10", "occproxy", dsn.c_str(), nullptr};
  conn_.reset(PQconnectdbParams(keywords, values, 1));
  if (!conn_) throw PgError("out of memory allocating a libpq connection");
  if (PQstatus(conn_.get()) != CONNECTION_OK) throw PgError(trimmed(PQerrorMessage(conn_.get())));
  // Notices such as "schema already exists, skipping" would go to stderr; the callers report
  // what changed themselves.
  PQsetNoticeProcessor(conn_.get(), [](void*, const char*) {}, nullptr);
}

PgResult PgConnection::checked(PGresult* r) {
  PgResult result(r);
  const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw PgError(trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_.get())));
  }
  return result;
}

PgResult PgConnection::exec(const std::string& sql) { return checked(PQexec(conn_.get(), sql.c_str())); }

PgResult PgConnection::query(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  return checked(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                              nullptr, nullptr, 0));
}

std::shared_ptr<PGcancel> PgConnection::cancel_handle() {
  return std::shared_ptr<PGcancel>(PQgetCancel(conn_.get()), &PQfreeCancel);
}

std::string PgConnection::identifier(std::string_view name) {
  std::unique_ptr<char, decltype(&PQfreemem)> q(PQescapeIdentifier(conn_.get(), name.data(), name.size()), &PQfreemem);
  if (!q) throw PgError(trimmed(PQerrorMessage(conn_.get())));
  return q.get();
}

std::string PgConnection::literal(std::string_view text) {
  std::unique_ptr<char, decltype(&PQfreemem)> q(PQescapeLiteral(conn_.get(), text.data(), text.size()), &PQfreemem);
  if (!q) throw PgError(trimmed(PQerrorMessage(conn_.get())));
  return q.get();
}

}  // namespace occ
