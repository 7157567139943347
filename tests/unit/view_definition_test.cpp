// read_view_definition: one row per view definition, as pg_get_viewdef() prints it under
// search_path pg_catalog, and what the proxy reads from it.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "admin/view_definition.h"

namespace {

struct Row {
  const char* definition;
  const char* source;               // "schema.name", "" when FROM is not one relation
  std::vector<const char*> columns;  // per view column: the source column it shows, "-" for none
  const char* not_rows;             // "" when its rows are the source's
};

const Row rows[] = {
    {" SELECT subscriptions.id,\n    subscriptions.notes,\n    subscriptions.version\n   FROM public.subscriptions\n"
     "  WHERE (subscriptions.id < 100);",
     "public.subscriptions", {"id", "notes", "version"}, ""},
    {" SELECT v.id, v.version FROM public.v;", "public.v", {"id", "version"}, ""},
    {" SELECT s.id, s.notes AS n, upper(s.status) AS status, s.version AS version FROM public.subscriptions s;",
     "public.subscriptions", {"id", "-", "-", "version"}, ""},
    {" SELECT \"Odd\".\"Key\", \"Odd\".\"Ver\" FROM \"We ird\".\"Odd\" ORDER BY \"Odd\".\"Key\" LIMIT 5;",
     "We ird.Odd", {"Key", "Ver"}, ""},
    {" SELECT x.a, x.b FROM public.t x(a, b);", "public.t", {"-", "-"}, ""},
    {" SELECT s.id, s.version, row_number() OVER (ORDER BY s.id) AS n FROM public.s;", "public.s",
     {"id", "version", "-"}, ""},
    {" SELECT DISTINCT s.id, s.version FROM public.s;", "", {}, "DISTINCT"},
    {" SELECT s.plan_id, count(*) AS n FROM public.s GROUP BY s.plan_id;", "", {}, "GROUP BY"},
    {" SELECT count(*) AS n FROM public.s HAVING (count(*) > 1);", "", {}, "HAVING"},
    {" SELECT s.id FROM public.s UNION SELECT t.id FROM public.t;", "", {}, "a set operation (UNION, INTERSECT, EXCEPT)"},
    {" WITH w AS (SELECT s.id FROM public.s) SELECT w.id FROM w;", "", {}, "a WITH clause"},
    {" SELECT s.id, s.version FROM public.s JOIN public.o ON o.id = s.id;", "", {},
     "a FROM other than one table or view (a join, a subquery, a function)"},
    {" SELECT q.id FROM ( SELECT s.id FROM public.s) q;", "", {},
     "a FROM other than one table or view (a join, a subquery, a function)"},
    {" SELECT 1 AS one;", "", {}, "a FROM other than one table or view (a join, a subquery, a function)"},
    {"not sql at all", "", {}, "a definition the proxy could not read"},
};

}  // namespace

TEST_CASE("a view's definition gives the relation its rows come from and the columns it shows", "[views]") {
  for (const Row& row : rows) {
    INFO(row.definition);
    const occ::ViewDefinition d = occ::read_view_definition(row.definition);
    CHECK(d.not_rows == row.not_rows);
    CHECK((d.source_name.empty() ? std::string() : d.source_schema + "." + d.source_name) == row.source);
    std::vector<std::string> columns;
    for (const auto& c : d.columns) columns.push_back(c.value_or("-"));
    CHECK(columns == std::vector<std::string>(row.columns.begin(), row.columns.end()));
  }
}
