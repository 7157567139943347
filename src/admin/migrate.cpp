// Applies the numbered migrations and brings each protected table's version column and bump trigger
// in line with the rules, in one transaction; changes only what differs, so a rerun is a no-op.
#include "admin/migrate.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>

#include "config/config.h"
#include "admin/catalog.h"
#include "admin/pg_connection.h"
#include "config/yaml_errors.h"

namespace occ {

std::string migrations_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec || exe.parent_path() == fs::path(OCCPROXY_BUILD_DIR)) return OCCPROXY_MIGRATIONS_DIR;
  return (exe.parent_path() / OCCPROXY_DATADIR_FROM_BINDIR / "occproxy" / "migrations").lexically_normal().string();
}

bool version_type_fits(VersionKind kind, std::string_view type_name) {
  switch (kind) {
    case VersionKind::counter: return type_name == "int8" || type_name == "int4" || type_name == "int2";
    case VersionKind::uuid: return type_name == "uuid";
    case VersionKind::timestamp: return type_name == "timestamptz" || type_name == "timestamp";
  }
  return false;
}

const char* version_types_text(VersionKind kind) {
  switch (kind) {
    case VersionKind::counter: return "bigint, integer or smallint";
    case VersionKind::uuid: return "uuid";
    case VersionKind::timestamp: return "timestamptz or timestamp";
  }
  return "?";
}

namespace {

// The table name keeps a function recognisable; the hash of the qualified name keeps two tables
// apart when names are long or differ only in schema.
std::string table_function_name(std::string_view prefix, const TablePolicy& table) {
  uint32_t hash = 2166136261u;
  for (char c : table.schema + '\0' + table.name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 16777619u;
  }
  char hex[9];
  std::to_chars(hex, hex + 8, hash | 0x10000000u, 16);
  hex[8] = '\0';
  std::string stem = table.name.substr(0, 49);
  // Never cut a multi-byte UTF-8 character in half.
  while (stem.size() < table.name.size() && !stem.empty() && (static_cast<unsigned char>(table.name[stem.size()]) & 0xC0) == 0x80) {
    stem.pop_back();
  }
  return std::string(prefix) + stem + "_" + hex;
}

}  // namespace

std::string bump_function_name(const TablePolicy& table) { return table_function_name("bump_", table); }
std::string writer_function_name(const TablePolicy& table) { return table_function_name("writ_", table); }

namespace {

// The PL/pgSQL body of the track_writer function: who wrote the row (session user, and the
// application_name it gave) and when, whichever path the write took.
constexpr const char* kWriterBody =
    "\nBEGIN\n"
    "  NEW.occ_modified_by := session_user::text || coalesce(' (' || nullif(pg_catalog.current_setting("
    "'application_name', true), '') || ')', '');\n"
    "  NEW.occ_modified_at := pg_catalog.clock_timestamp();\n"
    "  RETURN NEW;\nEND\n";

std::string writer_function(PgConnection& db, const TablePolicy& table) {
  return "occ." + db.identifier(writer_function_name(table));
}

// The PL/pgSQL body of the bump function: the next version for a row whose UPDATE left it alone.
std::string bump_body(PgConnection& db, const TablePolicy& table) {
  const std::string v = db.identifier(table.version_column);
  std::string next;
  switch (table.version_kind) {
    case VersionKind::counter: next = "OLD." + v + " + 1"; break;
    case VersionKind::uuid: next = "pg_catalog.gen_random_uuid()"; break;
    case VersionKind::timestamp: next = "pg_catalog.clock_timestamp()"; break;
  }
  // In a session through the proxy, a write run from inside a function, procedure, DO block or
  // trigger (its context has more than this trigger's own line) is one the proxy did not check.
  // It names the row and its new version, which the session then takes as read (009).
  const std::string refuse = table.reject_unsupported ? "true" : "false";
  std::string key = "ARRAY[";
  for (std::size_t i = 0; i < table.key.size(); ++i)
    key += (i ? ", NEW." : "NEW.") + db.identifier(table.key[i]) + "::text";
  key += "]";
  return "\nDECLARE\n  context text;\nBEGIN\n"
         "  NEW." + v + " := " + next + ";\n"
         "  IF pg_catalog.current_setting('occ.proxied', true) = 'on' THEN\n"
         "    GET DIAGNOSTICS context = PG_CONTEXT;\n"
         "    IF pg_catalog.strpos(context, E'\\n') > 0 THEN\n"
         "      PERFORM occ.unchecked_write(TG_TABLE_SCHEMA, TG_TABLE_NAME, " + refuse + ", " + key + ", NEW." + v +
         "::text);\n"
         "    END IF;\n"
         "  END IF;\n"
         "  RETURN NEW;\nEND\n";
}

std::string qualified_function(PgConnection& db, const TablePolicy& table) {
  return "occ." + db.identifier(bump_function_name(table));
}

const char* column_definition(VersionKind kind) {
  switch (kind) {
    case VersionKind::counter: return "bigint NOT NULL DEFAULT 1";
    case VersionKind::uuid: return "uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid()";
    case VersionKind::timestamp: return "timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()";
  }
  return "?";
}

struct MigrationFile {
  int version = 0;
  std::string name;  // file name, e.g. 001_occ_schema.sql
  std::string path;
};

std::vector<MigrationFile> migration_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw std::runtime_error("cannot read migrations folder " + dir + ": " + ec.message());
  std::vector<MigrationFile> files;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!name.ends_with(".sql")) continue;
    MigrationFile f{0, name, entry.path().string()};
    auto [end, parse_ec] = std::from_chars(name.data(), name.data() + name.size(), f.version);
    if (parse_ec != std::errc() || end == name.data() || *end != '_' || name.front() < '0' || name.front() > '9') {
      throw std::runtime_error("migration file " + f.path + ": the name must be NNN_description.sql");
    }
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.version < b.version; });
  for (std::size_t i = 1; i < files.size(); ++i) {
    if (files[i].version == files[i - 1].version) {
      throw std::runtime_error("migration files " + files[i - 1].name + " and " + files[i].name + " have the same number");
    }
  }
  return files;
}

class Migrator {
 public:
  Migrator(const Rules& rules, PgConnection& db) : rules_(rules), db_(db) {}

  std::vector<std::string> run(const std::vector<MigrationFile>& files) {
    db_.exec("BEGIN");
    // Two migrates at once would both see a migration as pending and apply it twice.
    db_.exec("SELECT pg_advisory_xact_lock(hashtext('occproxy migrate'))");
    apply_files(files);
    for (const auto& table : rules_.tables) migrate_table(table);
    db_.exec("COMMIT");
    return std::move(changes_);
  }

 private:
  void apply_files(const std::vector<MigrationFile>& files) {
    std::set<int> done;
    const bool have_log = db_.exec("SELECT to_regclass('occ.schema_migrations') IS NOT NULL").flag(0, 0);
    if (have_log) {
      auto r = db_.exec("SELECT version FROM occ.schema_migrations");
      for (int i = 0; i < r.rows(); ++i) done.insert(std::stoi(r.text(i, 0)));
    }
    std::vector<const MigrationFile*> applied;
    for (const auto& f : files) {
      if (done.count(f.version)) continue;
      std::string sql;
      try {
        sql = read_text_file(f.path, "migration file");
      } catch (const YamlError& e) {
        throw std::runtime_error(e.what());
      }
      try {
        db_.exec(sql);
      } catch (const PgError& e) {
        throw std::runtime_error("migration " + f.name + " failed: " + e.what());
      }
      applied.push_back(&f);
      changes_.push_back("applied migration " + f.name);
    }
    // Created after the files run, so that the first one may create schema occ its own way.
    if (!db_.exec("SELECT to_regclass('occ.schema_migrations') IS NOT NULL").flag(0, 0)) {
      db_.exec(
          "CREATE SCHEMA IF NOT EXISTS occ;"
          "CREATE TABLE occ.schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      changes_.push_back("created table occ.schema_migrations");
    }
    for (const auto* f : applied) {
      db_.query("INSERT INTO occ.schema_migrations (version, name) VALUES ($1, $2)", {std::to_string(f->version), f->name});
    }
  }

  void migrate_table(const TablePolicy& table) {
    const std::string shown = table.qualified_name();
    const auto shape = read_table_shape(db_, table.schema, table.name);
    if (!shape) {
      throw std::runtime_error("table " + shown + " does not exist; create it or remove it from " + rules_.path);
    }
    if (!shape->is_table()) throw std::runtime_error(shown + " is not a table; only tables can be protected");
    const std::string target = db_.identifier(table.schema) + "." + db_.identifier(table.name);
    const std::string v = db_.identifier(table.version_column);

    if (const auto* column = shape->column(table.version_column)) {
      if (!version_type_fits(table.version_kind, column->base_type)) {
        throw std::runtime_error("table " + shown + ": column " + table.version_column + " is " + column->type +
                                 ", but version_kind " + to_string(table.version_kind) + " needs " +
                                 version_types_text(table.version_kind) + "; change the column or version_kind in " +
                                 rules_.path);
      }
    } else {
      db_.exec("ALTER TABLE " + target + " ADD COLUMN " + v + " " + column_definition(table.version_kind));
      changes_.push_back("added column " + table.version_column + " " + column_definition(table.version_kind) + " to " +
                         shown);
    }

    migrate_writer(table, *shape, target);
    const BumpTrigger state = bump_trigger_state(db_, shape->oid, table);
    const std::string function = qualified_function(db_, table);
    const std::string trigger = db_.identifier(bump_trigger_name);
    if (table.version_bump == VersionBump::proxy) {
      if (state != BumpTrigger::missing) {
        db_.exec("DROP TRIGGER " + trigger + " ON " + target);
        db_.exec("DROP FUNCTION IF EXISTS " + function + "()");
        changes_.push_back("dropped trigger " + std::string(bump_trigger_name) + " on " + shown +
                           " (version_bump: proxy)");
      }
      return;
    }
    if (state == BumpTrigger::current) return;
    db_.exec("CREATE SCHEMA IF NOT EXISTS occ");
    db_.exec("CREATE OR REPLACE FUNCTION " + function + "() RETURNS trigger LANGUAGE plpgsql AS " +
             db_.literal(bump_body(db_, table)));
    db_.exec("DROP TRIGGER IF EXISTS " + trigger + " ON " + target);
    db_.exec("CREATE TRIGGER " + trigger + " BEFORE UPDATE ON " + target + " FOR EACH ROW WHEN (NEW." + v +
             " IS NOT DISTINCT FROM OLD." + v + ") EXECUTE FUNCTION " + function + "()");
    const char* verb = state == BumpTrigger::missing ? "installed" : state == BumpTrigger::disabled ? "re-enabled" : "updated";
    changes_.push_back(std::string(verb) + " trigger " + std::string(bump_trigger_name) + " on " + shown + " (occ." +
                       bump_function_name(table) + ", " + to_string(table.version_kind) + " on " + table.version_column +
                       ")");
  }

  // track_writer: the bookkeeping columns (kept once added) and the trigger that sets them.
  void migrate_writer(const TablePolicy& table, const TableShape& shape, const std::string& target) {
    const std::string shown = table.qualified_name();
    const BumpTrigger state = writer_trigger_state(db_, shape.oid, table);
    const std::string function = writer_function(db_, table);
    const std::string trigger = db_.identifier(writer_trigger_name);
    if (!table.track_writer) {
      if (state != BumpTrigger::missing) {
        db_.exec("DROP TRIGGER " + trigger + " ON " + target);
        db_.exec("DROP FUNCTION IF EXISTS " + function + "()");
        changes_.push_back("dropped trigger " + std::string(writer_trigger_name) + " on " + shown +
                           " (track_writer: false; the columns stay)");
      }
      return;
    }
    const std::pair<std::string_view, const char*> columns[] = {{kModifiedByColumn, "text"},
                                                                {kModifiedAtColumn, "timestamptz"}};
    for (const auto& [column, type] : columns) {
      if (shape.column(column)) continue;
      db_.exec("ALTER TABLE " + target + " ADD COLUMN " + db_.identifier(std::string(column)) + " " + type);
      changes_.push_back("added column " + std::string(column) + " " + type + " to " + shown + " (track_writer)");
    }
    if (state == BumpTrigger::current) return;
    db_.exec("CREATE SCHEMA IF NOT EXISTS occ");
    db_.exec("CREATE OR REPLACE FUNCTION " + function + "() RETURNS trigger LANGUAGE plpgsql AS " +
             db_.literal(kWriterBody));
    db_.exec("DROP TRIGGER IF EXISTS " + trigger + " ON " + target);
    db_.exec("CREATE TRIGGER " + trigger + " BEFORE INSERT OR UPDATE ON " + target +
             " FOR EACH ROW EXECUTE FUNCTION " + function + "()");
    const char* verb = state == BumpTrigger::missing ? "installed" : state == BumpTrigger::disabled ? "re-enabled" : "updated";
    changes_.push_back(std::string(verb) + " trigger " + std::string(writer_trigger_name) + " on " + shown + " (occ." +
                       writer_function_name(table) + ", track_writer)");
  }

  const Rules& rules_;
  PgConnection& db_;
  std::vector<std::string> changes_;
};

}  // namespace

BumpTrigger bump_trigger_state(PgConnection& db, const std::string& table_oid, const TablePolicy& table) {
  // pg_get_triggerdef prints IS NOT DISTINCT FROM as NOT (... IS DISTINCT FROM ...).
  auto r = db.query(
      "SELECT t.tgenabled <> 'D',"
      "       t.tgtype = 19 AND t.tgnargs = 0 AND t.tgattr::text = ''"  // BEFORE UPDATE FOR EACH ROW, no args
      "       AND t.tgfoid = coalesce(to_regprocedure($2), 0) AND p.prosrc = $4"
      "       AND position(format('WHEN ((NOT (new.%1$I IS DISTINCT FROM old.%1$I)))', $3::text)"
      "                    IN pg_get_triggerdef(t.oid)) > 0"
      "  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
      " WHERE t.tgrelid = $1::oid AND t.tgname = 'occ_bump_version'",
      {table_oid, qualified_function(db, table) + "()", table.version_column, bump_body(db, table)});
  if (r.rows() == 0) return BumpTrigger::missing;
  if (!r.flag(0, 1)) return BumpTrigger::outdated;
  return r.flag(0, 0) ? BumpTrigger::current : BumpTrigger::disabled;
}

BumpTrigger writer_trigger_state(PgConnection& db, const std::string& table_oid, const TablePolicy& table) {
  auto r = db.query(
      "SELECT t.tgenabled <> 'D',"
      "       t.tgtype = 23 AND t.tgnargs = 0 AND t.tgattr::text = ''"  // BEFORE INSERT OR UPDATE FOR EACH ROW
      "       AND t.tgfoid = coalesce(to_regprocedure($2), 0) AND p.prosrc = $3 AND t.tgqual IS NULL"
      "  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
      " WHERE t.tgrelid = $1::oid AND t.tgname = 'occ_track_writer'",
      {table_oid, writer_function(db, table) + "()", kWriterBody});
  if (r.rows() == 0) return BumpTrigger::missing;
  if (!r.flag(0, 1)) return BumpTrigger::outdated;
  return r.flag(0, 0) ? BumpTrigger::current : BumpTrigger::disabled;
}

MigrateResult run_migrations(const Config& config, const Rules& rules, const std::string& migrations_dir) {
  MigrateResult result;
  if (config.admin_dsn.empty()) {
    result.error = "admin_dsn is not set in " + config.path + "; migrate needs it to reach the database";
    return result;
  }
  try {
    const auto files = migration_files(migrations_dir);
    std::unique_ptr<PgConnection> db;
    try {
      db = std::make_unique<PgConnection>(config.admin_dsn);
    } catch (const PgError& e) {
      throw std::runtime_error("cannot connect with admin_dsn: " + std::string(e.what()));
    }
    result.applied = Migrator(rules, *db).run(files);
    result.ok = true;
  } catch (const std::exception& e) {
    // Everything ran in one transaction; closing the connection on the way here rolled it back.
    result.applied.clear();
    result.error = std::string(e.what()) + "; nothing was changed";
  }
  return result;
}

}  // namespace occ
