// read_view_definition: libpg_query's tree of a view's SELECT, reduced to its row source and columns.
#include "admin/view_definition.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

namespace occ {
namespace {

std::string_view string_value(const PgQuery__Node* n) {
  return n != nullptr && n->node_case == PG_QUERY__NODE__NODE_STRING ? std::string_view(n->string->sval)
                                                                     : std::string_view();
}

// Why the rows of `s` are not rows of its FROM relation; empty when they are.
std::string not_rows_of_source(const PgQuery__SelectStmt* s) {
  if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE) return "a set operation (UNION, INTERSECT, EXCEPT)";
  if (s->with_clause != nullptr) return "a WITH clause";
  if (s->n_distinct_clause > 0) return "DISTINCT";
  if (s->n_group_clause > 0) return "GROUP BY";
  if (s->having_clause != nullptr) return "HAVING";
  if (s->n_from_clause != 1 || s->from_clause[0]->node_case != PG_QUERY__NODE__NODE_RANGE_VAR)
    return "a FROM other than one table or view (a join, a subquery, a function)";
  return {};
}

// The source column a target list item shows under its own name: `t.c` or `c`, not renamed.
std::optional<std::string> same_named_column(const PgQuery__ResTarget* item) {
  const PgQuery__Node* value = item->val;
  if (value == nullptr || value->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) return std::nullopt;
  const PgQuery__ColumnRef* ref = value->column_ref;
  if (ref->n_fields == 0 || ref->n_fields > 2) return std::nullopt;
  const std::string_view column = string_value(ref->fields[ref->n_fields - 1]);
  if (column.empty()) return std::nullopt;
  if (item->name != nullptr && *item->name != '\0' && column != item->name) return std::nullopt;
  return std::string(column);
}

}  // namespace

ViewDefinition read_view_definition(std::string_view definition) {
  ViewDefinition out;
  const std::string text(definition);
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(text.c_str());
  PgQuery__ParseResult* tree = nullptr;
  if (parsed.error == nullptr)
    tree = pg_query__parse_result__unpack(nullptr, parsed.parse_tree.len,
                                          reinterpret_cast<const uint8_t*>(parsed.parse_tree.data));
  const PgQuery__SelectStmt* s = nullptr;
  if (tree != nullptr && tree->n_stmts == 1 && tree->stmts[0]->stmt != nullptr &&
      tree->stmts[0]->stmt->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
    s = tree->stmts[0]->stmt->select_stmt;
  if (s == nullptr) {
    out.not_rows = "a definition the proxy could not read";
  } else if (out.not_rows = not_rows_of_source(s); out.not_rows.empty()) {
    const PgQuery__RangeVar* source = s->from_clause[0]->range_var;
    out.source_schema = source->schemaname != nullptr ? source->schemaname : "";
    out.source_name = source->relname;
    // A column alias list (`FROM t AS x (a, b)`) renames every column of the source.
    const bool renamed = source->alias != nullptr && source->alias->n_colnames > 0;
    for (std::size_t i = 0; i < s->n_target_list; ++i) {
      const PgQuery__Node* item = s->target_list[i];
      out.columns.push_back(!renamed && item->node_case == PG_QUERY__NODE__NODE_RES_TARGET
                                ? same_named_column(item->res_target)
                                : std::nullopt);
    }
  }
  if (tree != nullptr) pg_query__parse_result__free_unpacked(tree, nullptr);
  pg_query_free_protobuf_parse_result(parsed);
  return out;
}

}  // namespace occ
