// analyze_sql and PlanCache: what each write's parts are and where they sit in the text.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sql/plan_cache.h"
#include "sql/sql_analysis.h"

namespace {

occ::Rules protected_tables() {
  return occ::parse_rules(R"(tables:
  - table: public.subscriptions
    key: [id]
  - table: billing.subscriptions
    key: [id]
    version_column: rev
)",
                          "rules.yaml");
}

std::string text_of(const std::string& sql, occ::TextRange r) {
  return r.valid() ? sql.substr(static_cast<std::size_t>(r.begin), static_cast<std::size_t>(r.end - r.begin))
                   : "<none>";
}

const char* kind_name(occ::VersionUse::Kind k) {
  switch (k) {
    case occ::VersionUse::Kind::none:
      return "none";
    case occ::VersionUse::Kind::equality:
      return "equality";
    case occ::VersionUse::Kind::other:
      return "other";
  }
  return "?";
}

}  // namespace

TEST_CASE("a write's target, SET list and condition are located in the text", "[sql_analysis]") {
  struct Row {
    const char* sql;
    const char* refname;
    const char* set_items;  // "column=value|..." with flags r (row-wise), s (subscripted), d (DEFAULT)
    const char* condition;  // "<none>" without one
    const char* version;    // for column `version`: "kind conjunct => expected"
  };
  const Row rows[] = {
      {"UPDATE subscriptions SET status = 'a', notes = $1 WHERE id = 1 AND version = 3", "subscriptions",
       "status='a'|notes=$1", "id = 1 AND version = 3", "equality version = 3 => 3"},
      {"update public.subscriptions AS s set (a, b) = (1, (2)), c[1] = DEFAULT where 3 = s.version", "s",
       "a=1 r|b=(2) r|c=DEFAULT s d", "3 = s.version", "equality 3 = s.version => 3"},
      {"UPDATE subscriptions SET (a, b) = (SELECT x, y FROM t WHERE t.id = 1) WHERE (version) = $2::int8 RETURNING *",
       "subscriptions", "a=(SELECT x, y FROM t WHERE t.id = 1) r|b=(SELECT x, y FROM t WHERE t.id = 1) r",
       "(version) = $2::int8", "equality (version) = $2::int8 => $2::int8"},
      {"UPDATE subscriptions SET a = b IS DISTINCT FROM c, d = CASE WHEN e THEN 1 END FROM t WHERE x AND version = -2",
       "subscriptions", "a=b IS DISTINCT FROM c|d=CASE WHEN e THEN 1 END", "x AND version = -2",
       "equality version = -2 => -2"},
      {"UPDATE subscriptions SET note = U&'d\\0061ta' WHERE note <> 'h\xc3\xa9' OR version = 1", "subscriptions",
       "note=U&'d\\0061ta'", "note <> 'h\xc3\xa9' OR version = 1", "other  => "},
      {"UPDATE subscriptions SET a = 1 WHERE version = 1 AND version = 2", "subscriptions", "a=1",
       "version = 1 AND version = 2", "other  => "},
      {"UPDATE subscriptions SET a = 1 WHERE version = other.version", "subscriptions", "a=1",
       "version = other.version", "other  => "},
      {"UPDATE subscriptions SET a = 1 WHERE other.version = 1", "subscriptions", "a=1", "other.version = 1",
       "none  => "},
      {"DELETE FROM subscriptions x USING t WHERE (x.id = t.id) AND (x.version = 4) RETURNING 1", "x", "",
       "(x.id = t.id) AND (x.version = 4)", "equality x.version = 4 => 4"},
      {"DELETE FROM ONLY subscriptions", "subscriptions", "", "<none>", "none  => "},
      {"WITH u AS (UPDATE subscriptions SET a = 1 WHERE version = 7) SELECT 1", "subscriptions", "a=1", "version = 7",
       "equality version = 7 => 7"},
      {"INSERT INTO subscriptions AS s VALUES (1) ON CONFLICT (id) WHERE a > 0 DO UPDATE SET a = excluded.a WHERE "
       "s.version = excluded.version",
       "s", "a=excluded.a", "s.version = excluded.version", "other  => "},
  };
  const occ::Rules rules = protected_tables();
  for (const Row& row : rows) {
    const std::string sql = row.sql;
    INFO(sql);
    const occ::SqlAnalysis a = occ::analyze_sql(sql, rules);
    REQUIRE_FALSE(a.parse_failed);
    REQUIRE(a.statements.size() == 1);
    REQUIRE(a.statements[0].writes.size() == 1);
    const occ::WriteSite& w = a.statements[0].writes[0];
    CHECK(w.unlocatable.empty());
    CHECK(w.refname == row.refname);
    std::string items;
    for (const occ::SetItem& item : w.set_items) {
      if (!items.empty()) items += "|";
      items += item.column + "=" + item.value;
      if (item.row_wise) items += " r";
      if (item.subscripted) items += " s";
      if (item.is_default) items += " d";
    }
    CHECK(items == row.set_items);
    CHECK(text_of(sql, w.has_condition ? w.condition : occ::TextRange{}) == row.condition);
    const occ::VersionFacts* v = w.facts("version");
    REQUIRE(v != nullptr);
    const std::string conjunct =
        v->condition.kind == occ::VersionUse::Kind::equality ? text_of(sql, v->condition.conjunct) : std::string();
    CHECK(std::string(kind_name(v->condition.kind)) + " " + conjunct + " => " + v->condition.expected == row.version);
  }
}

TEST_CASE("every schema's version column of a protected name is a candidate", "[sql_analysis]") {
  const occ::SqlAnalysis a =
      occ::analyze_sql("UPDATE subscriptions SET a = 1 WHERE rev = 2 AND version = 3", protected_tables());
  const occ::WriteSite& w = a.statements.at(0).writes.at(0);
  REQUIRE(w.versions.size() == 2);
  CHECK(w.facts("version")->condition.expected == "3");
  CHECK(w.facts("rev")->condition.expected == "2");
  CHECK(w.facts("other") == nullptr);
  CHECK(w.schema.empty());
  CHECK(w.name == "subscriptions");
}

TEST_CASE("statements of one text keep their extents, hints and fingerprints", "[sql_analysis]") {
  const std::string sql =
      "/* first */ SELECT 1;\n/*occ:force*/ UPDATE subscriptions SET a = 1 ;  MERGE INTO subscriptions t USING s "
      "ON t.id = s.id WHEN MATCHED AND t.version = 2 THEN DELETE WHEN MATCHED THEN UPDATE SET a = 2";
  const occ::SqlAnalysis a = occ::analyze_sql(sql, protected_tables());
  REQUIRE(a.statements.size() == 3);
  CHECK(text_of(sql, a.statements[0].range) == "/* first */ SELECT 1");
  CHECK(a.statements[0].first_token == 12);
  CHECK(a.statements[0].fingerprint.empty());
  CHECK_FALSE(a.statements[0].force_hint);
  CHECK(text_of(sql, a.statements[1].range) == "\n/*occ:force*/ UPDATE subscriptions SET a = 1 ");
  CHECK(a.statements[1].force_hint);
  CHECK(a.statements[1].fingerprint.size() == 16);
  const auto& merge = a.statements[2].writes;
  REQUIRE(merge.size() == 2);
  CHECK(merge[0].kind == occ::WriteKind::merge_delete);
  CHECK(text_of(sql, merge[0].condition) == "t.version = 2");
  CHECK(merge[1].kind == occ::WriteKind::merge_update);
  CHECK_FALSE(merge[1].has_condition);
  CHECK(sql.substr(0, static_cast<std::size_t>(merge[1].condition_insert_at)).ends_with("WHEN MATCHED"));
  CHECK(merge[1].set_items.at(0).value == "2");
}

namespace {

// "column=v1,$2|column=..." of a site's pins.
std::string pins_text(const std::vector<occ::KeyPin>& pins) {
  std::string out;
  for (const occ::KeyPin& pin : pins) {
    if (!out.empty()) out += "|";
    out += pin.column + "=";
    for (std::size_t i = 0; i < pin.values.size(); ++i) {
      if (i > 0) out += ",";
      out += pin.values[i].param_number ? "$" + std::to_string(pin.values[i].param_number) : pin.values[i].literal;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("a write's key pins and where its RETURNING list ends", "[sql_analysis]") {
  struct Row {
    const char* sql;
    const char* pins;
    bool top_level;
    const char* before_returning_end;  // the text up to returning_insert_at, "<none>" when not top level
  };
  const Row rows[] = {
      {"UPDATE subscriptions SET a = 1 WHERE id = 7 AND 'x' = s.id AND other.id = 3", "id=7", true,
       "UPDATE subscriptions SET a = 1 WHERE id = 7 AND 'x' = s.id AND other.id = 3"},
      {"UPDATE subscriptions s SET a = 1 WHERE s.id IN (1, -2, '3', $4::int) AND plan = 1.50 -- c",
       "id=1,-2,3,$4|plan=1.50", true,
       "UPDATE subscriptions s SET a = 1 WHERE s.id IN (1, -2, '3', $4::int) AND plan = 1.50"},
      {"UPDATE subscriptions SET a = 1 WHERE id = 1.0::int AND plan = true AND (id = 2 OR id = 3)", "", true,
       "UPDATE subscriptions SET a = 1 WHERE id = 1.0::int AND plan = true AND (id = 2 OR id = 3)"},
      {"DELETE FROM subscriptions WHERE id NOT IN (1) AND id IN (2, now()) AND id = NULL RETURNING *", "", true,
       "DELETE FROM subscriptions WHERE id NOT IN (1) AND id IN (2, now()) AND id = NULL RETURNING *"},
      {"WITH d AS (DELETE FROM subscriptions WHERE id = 1 RETURNING *) SELECT * FROM d", "id=1", false, "<none>"},
      {"EXPLAIN ANALYZE UPDATE subscriptions SET a = 1 WHERE id = 1", "id=1", false, "<none>"},
  };
  for (const Row& row : rows) {
    const std::string sql = row.sql;
    INFO(sql);
    const occ::SqlAnalysis a = occ::analyze_sql(sql, protected_tables());
    REQUIRE(a.statements.size() == 1);
    REQUIRE(a.statements[0].writes.size() == 1);
    const occ::WriteSite& w = a.statements[0].writes[0];
    CHECK(pins_text(w.pins) == row.pins);
    CHECK(w.top_level == row.top_level);
    CHECK((w.returning_insert_at < 0
               ? std::string("<none>")
               : sql.substr(0, static_cast<std::size_t>(w.returning_insert_at))) == row.before_returning_end);
  }

  const occ::SqlAnalysis upsert = occ::analyze_sql(
      "INSERT INTO subscriptions AS s (id, plan) VALUES (1, $1), (2, DEFAULT) ON CONFLICT (id, plan) DO UPDATE SET "
      "a = 1 WHERE s.id = 1",
      protected_tables());
  const occ::WriteSite& w = upsert.statements.at(0).writes.at(0);
  CHECK(w.conflict_columns == std::vector<std::string>{"id", "plan"});
  CHECK(pins_text(w.inserted_pins) == "id=1,2");
  CHECK(pins_text(w.pins) == "id=1");
  CHECK(upsert.max_param == 1);

  const occ::SqlAnalysis prepared =
      occ::analyze_sql("PREPARE p AS UPDATE subscriptions SET a = $2 WHERE id = $1", protected_tables());
  CHECK(prepared.statements.at(0).writes.at(0).deferred);
  CHECK(prepared.max_param == 2);
}

TEST_CASE("a top-level SELECT reports its protected tables and where its target list ends", "[sql_analysis]") {
  struct Row {
    const char* sql;
    const char* tables;       // "schema.name alias|..."
    const char* untraceable;  // "" when traceable
    const char* before_end;   // the text up to insert_at
  };
  const Row rows[] = {
      {"SELECT a, b AS from FROM subscriptions", ".subscriptions ", "", "SELECT a, b AS from"},
      {"SELECT x IS DISTINCT FROM y /* c */ FROM billing.subscriptions s, other o JOIN subscriptions ON true",
       "billing.subscriptions s|.subscriptions ", "", "SELECT x IS DISTINCT FROM y"},
      {"SELECT extract(year FROM d), CASE WHEN true THEN 1 END FROM subscriptions", ".subscriptions ", "",
       "SELECT extract(year FROM d), CASE WHEN true THEN 1 END"},
      {"SELECT count(*) FROM subscriptions", ".subscriptions ", "an aggregate", ""},
      {"SELECT id FROM subscriptions EXCEPT SELECT id FROM billing.subscriptions",
       ".subscriptions |billing.subscriptions ", "a set operation (UNION, INTERSECT, EXCEPT)", ""},
      {"SELECT sum(x) OVER () FROM subscriptions", ".subscriptions ", "a window function", ""},
  };
  for (const Row& row : rows) {
    const std::string sql = row.sql;
    INFO(sql);
    const occ::SqlAnalysis a = occ::analyze_sql(sql, protected_tables());
    REQUIRE(a.statements.size() == 1);
    REQUIRE(a.statements[0].read);
    const occ::ReadSite& r = *a.statements[0].read;
    std::string tables;
    for (const occ::ReadTable& t : r.tables)
      tables += (tables.empty() ? "" : "|") + t.schema + "." + t.name + " " + t.alias;
    CHECK(tables == row.tables);
    CHECK(r.untraceable == row.untraceable);
    CHECK((r.insert_at < 0 ? std::string() : sql.substr(0, static_cast<std::size_t>(r.insert_at))) == row.before_end);
  }
  for (const char* sql :
       {"SELECT 1", "SELECT * FROM other", "WITH subscriptions AS (SELECT 1) SELECT * FROM subscriptions",
        "COPY (SELECT * FROM subscriptions) TO STDOUT", "SELECT * FROM other WHERE id IN (SELECT id FROM subscriptions)",
        "SELECT * FROM (SELECT * FROM subscriptions) x JOIN (SELECT * FROM subscriptions) y USING (id)",
        "WITH s AS (SELECT * FROM subscriptions) SELECT a.id, b.version FROM s a JOIN s b USING (id)",
        "WITH RECURSIVE s AS (SELECT * FROM subscriptions) SELECT * FROM s",
        "SELECT * FROM (WITH s AS (SELECT * FROM subscriptions) SELECT * FROM s) x",
        "WITH u AS (UPDATE subscriptions SET status = 'x' RETURNING *) SELECT * FROM u"}) {
    INFO(sql);
    CHECK_FALSE(occ::analyze_sql(sql, protected_tables()).statements.at(0).read);
  }
  // Through CTEs and subqueries in FROM that read one protected table once: traced, nothing appended.
  for (const char* sql : {"SELECT * FROM (SELECT * FROM subscriptions) x",
                          "WITH s AS (SELECT id, notes, version FROM subscriptions WHERE id = 42) SELECT * FROM s",
                          "SELECT q.notes FROM (SELECT * FROM public.subscriptions WHERE id = 1) q JOIN other o USING (id)"}) {
    INFO(sql);
    const auto read = occ::analyze_sql(sql, protected_tables()).statements.at(0).read;
    REQUIRE(read);
    CHECK(read->traced);
    CHECK(read->tables.size() == 1);
    CHECK(read->tables.front().name == "subscriptions");
  }
}

TEST_CASE("savepoints, DISCARD ALL and RESET ALL are reported as session commands", "[sql_analysis]") {
  const occ::SqlAnalysis a = occ::analyze_sql(
      "SAVEPOINT Sp; RELEASE \"Sp\"; ROLLBACK TRANSACTION TO SAVEPOINT sp; DISCARD ALL; RESET ALL; ROLLBACK; RESET x",
      protected_tables());
  REQUIRE(a.statements.size() == 7);
  using C = occ::SessionCommand;
  const std::vector<std::pair<C, std::string>> expected = {
      {C::savepoint, "sp"}, {C::release, "Sp"}, {C::rollback_to, "sp"}, {C::discard_all, ""},
      {C::reset_all, ""},   {C::none, ""},      {C::none, ""}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO(i);
    CHECK(a.statements[i].command == expected[i].first);
    CHECK(a.statements[i].savepoint == expected[i].second);
  }
}

TEST_CASE("texts the parser rejects are flagged, not analysed", "[sql_analysis]") {
  const std::vector<std::string> texts = {"UPDATE subscriptions SET", "SELECT 'open",
                                          std::string("SELECT 1\0; SELECT 2", 20)};
  for (const std::string& sql : texts) {
    INFO(sql);
    CHECK(occ::analyze_sql(sql, protected_tables()).parse_failed);
  }
}

TEST_CASE("identifiers are quoted only when PostgreSQL needs it", "[sql_analysis]") {
  struct Row {
    const char* name;
    const char* quoted;
  };
  const Row rows[] = {
      {"version", "version"},
      {"lock_version", "lock_version"},
      {"t$1", "t$1"},
      {"Ver", "\"Ver\""},
      {"select", "\"select\""},
      {"user", "\"user\""},
      {"int", "\"int\""},
      {"1st", "\"1st\""},
      {"we\"ird", "\"we\"\"ird\""},
      {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
      {"", "\"\""},
  };
  for (const Row& row : rows) {
    INFO(row.name);
    CHECK(occ::quote_identifier(row.name) == row.quoted);
  }
}

TEST_CASE("the plan cache returns one analysis per text and evicts the least recently used", "[sql_analysis]") {
  const occ::Rules rules = protected_tables();
  occ::PlanCache cache(2);
  const auto first = cache.analysis("UPDATE subscriptions SET a = 1", rules);
  CHECK(cache.analysis("UPDATE subscriptions SET a = 1", rules) == first);
  cache.analysis("SELECT b", rules);
  cache.analysis("UPDATE subscriptions SET a = 1", rules);  // now most recent
  cache.analysis("SELECT c", rules);                        // evicts SELECT b
  CHECK(cache.size() == 2);
  CHECK(cache.hits() == 2);
  CHECK(cache.misses() == 3);
  CHECK(cache.analysis("UPDATE subscriptions SET a = 1", rules) == first);
  cache.analysis("SELECT b", rules);
  CHECK(cache.misses() == 4);

  // Other rules: the analyses are stale (which names are protected may differ).
  const occ::Rules reloaded = occ::parse_rules("tables: []\n", "rules.yaml");
  const auto again = cache.analysis("UPDATE subscriptions SET a = 1", reloaded);
  CHECK(again != first);
  CHECK(again->statements.at(0).writes.empty());
  CHECK(cache.size() == 1);
  CHECK_THROWS_AS(occ::PlanCache(0), std::invalid_argument);
}

TEST_CASE("the plan cache keeps its SQL text within its byte budget", "[sql_analysis]") {
  const occ::Rules rules = protected_tables();
  occ::PlanCache cache(100, 64 * 40);  // texts up to 40 bytes are kept, 2560 bytes in all
  const std::string big = "SELECT '" + std::string(40, 'x') + "'";
  cache.analysis(big, rules);
  cache.analysis(big, rules);
  CHECK(cache.size() == 0);
  CHECK(cache.misses() == 2);
  // Names, not constants: each text is an entry of its own.
  for (int i = 0; i < 100; ++i) cache.analysis("SELECT c" + std::to_string(100000 + i) + " + d", rules);  // 18 bytes
  CHECK(cache.size() == 100);
  for (int i = 0; i < 100; ++i)
    cache.analysis("SELECT c" + std::to_string(100000 + i) + " + d + e + f + g + h + i", rules);
  CHECK(cache.size() == 67);  // 38 bytes each: 67 * 38 = 2546
}

TEST_CASE("texts that differ only in constants share the shape key", "[sql_analysis]") {
  using occ::literal_shape;
  const std::string nul(1, '\0');
  CHECK(literal_shape("SELECT a FROM t") == "");
  CHECK(literal_shape("SELECT * FROM t WHERE id = 42") == nul + "SELECT * FROM t WHERE id = 00");
  CHECK(literal_shape("SELECT 1.5, .25, 3e-12, 'it''s', ''") == nul + "SELECT 0.0, .00, 0e-00, 'xxxxx', ''");
  CHECK(literal_shape("SELECT $q$a'b$q$, $$\"$$") == nul + "SELECT $q$xxx$q$, $$x$$");
  // Names, parameters and comments stay; a quote inside them opens no string.
  CHECK(literal_shape("SELECT t1.c2, $1, \"x'9\" /* '5' */ -- 7'\nFROM t1") == "");
  // Strings whose content may decide whether the text parses: no shape.
  for (const char* sql : {"SELECT E'a\\'b'", "SELECT U&'d\\0061t'", "SELECT B'01'", "SELECT 'caf\xc3\xa9'", "SELECT $$\xc3\xa9$$"})
    CHECK(literal_shape(sql) == "");
  CHECK(literal_shape("SELECT 'unterminated") == nul + "SELECT 'xxxxxxxxxxxx");

  const occ::Rules rules = protected_tables();
  occ::PlanCache cache;
  // A read of a protected table: its analysis is positions and structure only.
  const auto first = cache.analysis("SELECT * FROM subscriptions WHERE id = 41", rules);
  CHECK(cache.analysis("SELECT * FROM subscriptions WHERE id = 42", rules) == first);
  CHECK(cache.analysis("SELECT * FROM subscriptions WHERE id = 'x'", rules) != first);
  CHECK((cache.hits() == 1 && cache.misses() == 2));
  // A checked write takes key pins, its version condition and the values it sets from its
  // constants: a text of the same shape gets them read again from its own constants.
  auto pieces = [](const occ::SqlAnalysis& a) {
    const occ::WriteSite& w = a.statements.at(0).writes.at(0);
    std::vector<std::string> out;
    for (const occ::KeyValue& v : w.pins.at(0).values) out.push_back(v.literal);
    out.push_back(w.facts("version")->condition.expected);
    out.push_back(w.set_items.at(0).value);
    return out;
  };
  const std::string write_sql = "UPDATE subscriptions SET a = 'it''s' WHERE id IN (41, 'x') AND version = 3";
  const std::string other_sql = "UPDATE subscriptions SET a = '''s''' WHERE id IN (07, 'y') AND version = 5";
  const auto write = cache.analysis(write_sql, rules);
  const auto other = cache.analysis(other_sql, rules);
  CHECK(cache.hits() == 2);
  CHECK(pieces(*write) == std::vector<std::string>{"41", "x", "3", "'it''s'"});
  CHECK(pieces(*other) == std::vector<std::string>{"7", "y", "5", "'''s'''"});
  CHECK(pieces(*other) == pieces(occ::analyze_sql(other_sql, rules)));
  CHECK(cache.analysis(write_sql, rules) == write);  // the same constants: the same analysis
  // Constants that cannot be read again in place (a numeric, a signed or E'' one) keep their text's key.
  for (const char* sql : {"UPDATE subscriptions SET a = 1 WHERE id = 4.5", "UPDATE subscriptions SET a = 1 WHERE id = -4",
                          "UPDATE subscriptions SET a = 1 WHERE id = E'4'"}) {
    INFO(sql);
    const auto first_time = cache.analysis(sql, rules);
    std::string variant = sql;
    variant[variant.find('4')] = '5';
    CHECK(cache.analysis(variant, rules) != first_time);
    CHECK(cache.analysis(sql, rules) == first_time);
  }
  // Nor does SET search_path.
  CHECK(cache.analysis("SET search_path = 'a'", rules) != cache.analysis("SET search_path = 'b'", rules));
}
