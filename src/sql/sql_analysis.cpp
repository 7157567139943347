// analyze_sql: libpg_query's tree for what a text writes, its scanner tokens for where each part sits.
#include "sql/sql_analysis.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <climits>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <unordered_map>

#include "sql/literal.h"
#include "sql/sql_lexer.h"

namespace occ {
namespace {

struct Token {
  int start = 0;
  int end = 0;
  int kind = 0;  // PgQuery__Token; single characters are their ASCII code
};

constexpr int tok_open = '(';
constexpr int tok_close = ')';
constexpr int tok_open_bracket = '[';
constexpr int tok_close_bracket = ']';
constexpr int tok_comma = ',';
constexpr int tok_semicolon = ';';
constexpr int tok_equals = '=';

bool is_comment(int kind) { return kind == PG_QUERY__TOKEN__SQL_COMMENT || kind == PG_QUERY__TOKEN__C_COMMENT; }

// libpg_query reports no usable end for U&"..." and U&'...' tokens: find the closing quote.
int unicode_escape_token_end(std::string_view sql, int start) {
  std::size_t pos = static_cast<std::size_t>(start) + 2;  // past U&
  if (pos >= sql.size()) return static_cast<int>(sql.size());
  const char quote = sql[pos++];
  while (pos < sql.size()) {
    if (sql[pos] == quote) {
      if (pos + 1 < sql.size() && sql[pos + 1] == quote) {
        pos += 2;
        continue;
      }
      return static_cast<int>(pos + 1);
    }
    ++pos;
  }
  return static_cast<int>(sql.size());
}

struct ScanOutput {
  std::vector<Token> tokens;  // comments left out: they never delimit anything
  std::vector<TextRange> comments;
};

bool scan(const std::string& sql, ScanOutput& out) {
  PgQueryScanResult result = pg_query_scan(sql.c_str());
  bool ok = result.error == nullptr;
  if (ok) {
    PgQuery__ScanResult* scanned =
        pg_query__scan_result__unpack(nullptr, result.pbuf.len, reinterpret_cast<const uint8_t*>(result.pbuf.data));
    ok = scanned != nullptr;
    for (std::size_t i = 0; ok && i < scanned->n_tokens; ++i) {
      const PgQuery__ScanToken* t = scanned->tokens[i];
      Token token{t->start, t->end, static_cast<int>(t->token)};
      if (token.kind == PG_QUERY__TOKEN__UIDENT || token.kind == PG_QUERY__TOKEN__USCONST)
        token.end = unicode_escape_token_end(sql, token.start);
      if (is_comment(token.kind))
        out.comments.push_back({token.start, token.end});
      else
        out.tokens.push_back(token);
    }
    if (scanned) pg_query__scan_result__free_unpacked(scanned, nullptr);
  }
  pg_query_free_scan_result(result);
  return ok;
}

// Calls f on `m` and every message below it (oneof members only when set).
template <class F>
void walk(const ProtobufCMessage* m, F& f) {
  if (m == nullptr) return;
  f(m);
  const ProtobufCMessageDescriptor* d = m->descriptor;
  const char* base = reinterpret_cast<const char*>(m);
  for (unsigned i = 0; i < d->n_fields; ++i) {
    const ProtobufCFieldDescriptor& fd = d->fields[i];
    if (fd.type != PROTOBUF_C_TYPE_MESSAGE) continue;
    if ((fd.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *reinterpret_cast<const uint32_t*>(base + fd.quantifier_offset) != fd.id)
      continue;
    if (fd.label == PROTOBUF_C_LABEL_REPEATED) {
      const std::size_t n = *reinterpret_cast<const std::size_t*>(base + fd.quantifier_offset);
      ProtobufCMessage* const* items = *reinterpret_cast<ProtobufCMessage* const* const*>(base + fd.offset);
      for (std::size_t k = 0; k < n; ++k) walk(items[k], f);
    } else {
      walk(*reinterpret_cast<ProtobufCMessage* const*>(base + fd.offset), f);
    }
  }
}

const ProtobufCMessage* as_message(const PgQuery__Node* n) { return reinterpret_cast<const ProtobufCMessage*>(n); }

// Smallest and largest token location inside a subtree (-1 when it has none).
struct LocationBounds {
  int min = -1;
  int max = -1;
};

LocationBounds location_bounds(const PgQuery__Node* node) {
  LocationBounds b;
  auto note = [&b](const ProtobufCMessage* m) {
    const ProtobufCMessageDescriptor* d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; ++i) {
      const ProtobufCFieldDescriptor& fd = d->fields[i];
      if (fd.type != PROTOBUF_C_TYPE_INT32 || std::strcmp(fd.name, "location") != 0) continue;
      const int loc = *reinterpret_cast<const int32_t*>(reinterpret_cast<const char*>(m) + fd.offset);
      if (loc < 0) continue;
      if (b.min < 0 || loc < b.min) b.min = loc;
      if (loc > b.max) b.max = loc;
    }
  };
  walk(as_message(node), note);
  return b;
}

std::string_view string_value(const PgQuery__Node* n) {
  return n != nullptr && n->node_case == PG_QUERY__NODE__NODE_STRING ? std::string_view(n->string->sval)
                                                                     : std::string_view();
}

// The statement's tokens and text, and the navigation the analysis needs over them.
class Cursor {
 public:
  Cursor(std::string_view sql, const std::vector<Token>& tokens) : sql_(sql), tokens_(tokens) {}

  int size() const { return static_cast<int>(tokens_.size()); }
  const Token& operator[](int i) const { return tokens_[static_cast<std::size_t>(i)]; }
  bool is(int i, int kind) const { return i >= 0 && i < size() && tokens_[static_cast<std::size_t>(i)].kind == kind; }

  // Index of the token starting exactly at `offset`, or -1.
  int at(int offset) const {
    auto it =
        std::lower_bound(tokens_.begin(), tokens_.end(), offset, [](const Token& t, int off) { return t.start < off; });
    return it != tokens_.end() && it->start == offset ? static_cast<int>(it - tokens_.begin()) : -1;
  }
  // Index of the first token starting at or after `offset`.
  int first_from(int offset) const {
    auto it =
        std::lower_bound(tokens_.begin(), tokens_.end(), offset, [](const Token& t, int off) { return t.start < off; });
    return static_cast<int>(it - tokens_.begin());
  }

  // Scans from `from` up to `limit`, outside parentheses, brackets and CASE ... END, for the
  // first token where stop(index) holds. Also stops at an unmatched closing parenthesis or
  // bracket (the end of an enclosing construct, e.g. a CTE's body). Returns limit if none.
  // A keyword right after a dot is a name (`t.from`, `s.end`): never a stop, never CASE/END.
  template <class Stop>
  int find(int from, int limit, Stop stop) const {
    int depth = 0;
    int cases = 0;
    for (int i = from; i < limit; ++i) {
      if (i > 0 && (*this)[i - 1].kind == '.') continue;
      const int k = (*this)[i].kind;
      if (depth == 0 && cases == 0 && stop(i)) return i;
      if (k == tok_open || k == tok_open_bracket) {
        ++depth;
      } else if (k == tok_close || k == tok_close_bracket) {
        if (depth == 0) return i;
        --depth;
      } else if (k == PG_QUERY__TOKEN__CASE) {
        ++cases;
      } else if (k == PG_QUERY__TOKEN__END_P && cases > 0) {
        --cases;
      }
    }
    return limit;
  }

  // The opening parenthesis/bracket matching the closer at `close`, searching back; -1 if none.
  int matching_open(int close) const {
    int depth = 0;
    for (int i = close - 1; i >= 0; --i) {
      const int k = (*this)[i].kind;
      if (k == tok_close || k == tok_close_bracket) {
        ++depth;
      } else if (k == tok_open || k == tok_open_bracket) {
        if (depth == 0) return i;
        --depth;
      }
    }
    return -1;
  }

  std::string_view text(TextRange r) const {
    return sql_.substr(static_cast<std::size_t>(r.begin), static_cast<std::size_t>(r.end - r.begin));
  }
  // Text of tokens [first, last] inclusive, with whatever lies between them.
  TextRange span(int first, int last) const { return {(*this)[first].start, (*this)[last].end}; }

 private:
  std::string_view sql_;
  const std::vector<Token>& tokens_;
};

bool is_closer(int kind) { return kind == tok_close || kind == tok_close_bracket; }

// Where a SET value ends: the next item, or the clause after the SET list.
auto set_value_end(const Cursor& c) {
  return [&c](int i) {
    switch (c[i].kind) {
      case tok_comma:
      case tok_semicolon:
      case PG_QUERY__TOKEN__WHERE:
      case PG_QUERY__TOKEN__RETURNING:
      case PG_QUERY__TOKEN__WHEN:
        return true;
      case PG_QUERY__TOKEN__FROM:
        return !c.is(i - 1, PG_QUERY__TOKEN__DISTINCT);  // IS [NOT] DISTINCT FROM
      default:
        return false;
    }
  };
}

// Where a condition ends: RETURNING, MERGE's THEN, or the end of the statement.
auto condition_end(const Cursor& c) {
  return [&c](int i) {
    const int k = c[i].kind;
    return k == tok_semicolon || k == PG_QUERY__TOKEN__RETURNING || k == PG_QUERY__TOKEN__THEN;
  };
}

// Where a top-level conjunct ends (`equals_too`: where an operand of its `=` ends).
auto conjunct_end(const Cursor& c, bool equals_too) {
  return [&c, equals_too](int i) {
    const int k = c[i].kind;
    return k == tok_semicolon || (equals_too && k == tok_equals) || k == PG_QUERY__TOKEN__AND ||
           k == PG_QUERY__TOKEN__OR || k == PG_QUERY__TOKEN__RETURNING || k == PG_QUERY__TOKEN__THEN;
  };
}

// The text range of an expression node, from its first located token through the token before
// `stop`; widened to enclosing parentheses that the node's own tokens sit inside.
template <class Stop>
TextRange expression_range(const Cursor& c, const PgQuery__Node* node, int limit, Stop stop) {
  const LocationBounds b = location_bounds(node);
  int first = b.min >= 0 ? c.at(b.min) : -1;
  if (first < 0) return {};
  for (;;) {
    const int end = c.find(first, limit, stop);
    if (end < limit && is_closer(c[end].kind) && c[end].start < b.max) {
      first = c.matching_open(end);
      if (first < 0) return {};
      continue;
    }
    if (end <= first) return {};
    return c.span(first, end - 1);
  }
}

struct TargetName {
  std::string schema;
  std::string name;
  std::string refname;
};

TargetName target_name(const PgQuery__RangeVar* rv) {
  TargetName t{rv->schemaname, rv->relname, rv->relname};
  if (rv->alias != nullptr && rv->alias->aliasname[0] != '\0') t.refname = rv->alias->aliasname;
  return t;
}

// A column reference that names `column` of the write's target (unqualified, or qualified by
// its reference name).
bool names_target_column(const PgQuery__ColumnRef* ref, std::string_view column, std::string_view refname) {
  if (ref->n_fields == 0 || string_value(ref->fields[ref->n_fields - 1]) != column) return false;
  return ref->n_fields == 1 || string_value(ref->fields[ref->n_fields - 2]) == refname;
}

// Whether a subtree mentions the target's `column` in any way. Conservative: an unqualified
// mention inside a subquery counts too.
bool mentions(const PgQuery__Node* node, std::string_view column, std::string_view refname) {
  bool found = false;
  auto check = [&](const ProtobufCMessage* m) {
    if (m->descriptor == &pg_query__column_ref__descriptor) {
      found = found || names_target_column(reinterpret_cast<const PgQuery__ColumnRef*>(m), column, refname);
    } else if (m->descriptor == &pg_query__a__indirection__descriptor) {
      const auto* ind = reinterpret_cast<const PgQuery__AIndirection*>(m);
      for (std::size_t i = 0; i < ind->n_indirection; ++i) found = found || string_value(ind->indirection[i]) == column;
    }
  };
  walk(as_message(node), check);
  return found;
}

bool is_operator(const PgQuery__AExpr* e, std::string_view op) {
  return e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP && e->n_name == 1 && string_value(e->name[0]) == op;
}

// A constant or a parameter, possibly cast or signed: a value fixed for the whole statement.
bool is_fixed_value(const PgQuery__Node* n) {
  if (n == nullptr) return false;
  switch (n->node_case) {
    case PG_QUERY__NODE__NODE_A_CONST:
    case PG_QUERY__NODE__NODE_PARAM_REF:
      return true;
    case PG_QUERY__NODE__NODE_TYPE_CAST:
      return is_fixed_value(n->type_cast->arg);
    case PG_QUERY__NODE__NODE_A_EXPR:
      return n->a_expr->lexpr == nullptr && (is_operator(n->a_expr, "-") || is_operator(n->a_expr, "+")) &&
             is_fixed_value(n->a_expr->rexpr);
    default:
      return false;
  }
}

bool is_column(const PgQuery__Node* n, std::string_view column, std::string_view refname) {
  return n != nullptr && n->node_case == PG_QUERY__NODE__NODE_COLUMN_REF &&
         names_target_column(n->column_ref, column, refname);
}

void collect_conjuncts(const PgQuery__Node* n, std::vector<const PgQuery__Node*>& out) {
  if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR && n->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
    for (std::size_t i = 0; i < n->bool_expr->n_args; ++i) collect_conjuncts(n->bool_expr->args[i], out);
  } else {
    out.push_back(n);
  }
}

VersionUse version_use(const Cursor& c, int limit, const PgQuery__Node* condition, std::string_view column,
                       std::string_view refname) {
  VersionUse use;
  if (condition == nullptr) return use;
  std::vector<const PgQuery__Node*> conjuncts;
  collect_conjuncts(condition, conjuncts);
  for (const PgQuery__Node* conj : conjuncts) {
    if (!mentions(conj, column, refname)) continue;
    const PgQuery__Node* operand = nullptr;
    if (use.kind == VersionUse::Kind::none && conj->node_case == PG_QUERY__NODE__NODE_A_EXPR &&
        is_operator(conj->a_expr, "=")) {
      const PgQuery__AExpr* e = conj->a_expr;
      if (is_column(e->lexpr, column, refname) && is_fixed_value(e->rexpr)) operand = e->rexpr;
      if (is_column(e->rexpr, column, refname) && is_fixed_value(e->lexpr)) operand = e->lexpr;
    }
    if (operand == nullptr) return VersionUse{VersionUse::Kind::other, {}, {}, {}};
    use.kind = VersionUse::Kind::equality;
    use.conjunct = expression_range(c, conj, limit, conjunct_end(c, false));
    const TextRange value = expression_range(c, operand, limit, conjunct_end(c, true));
    if (!use.conjunct.valid() || !value.valid()) return VersionUse{VersionUse::Kind::other, {}, {}, {}};
    use.expected = std::string(c.text(value));
    use.expected_at = value;
  }
  return use;
}

// Reads constants from the client's own text (which libpg_query may have parsed in a masked copy:
// see analyze_sql) under the session's string syntax.
struct ConstantReader {
  std::string_view sql;
  StringSyntax syntax;
  bool masked = false;  // some string's body was masked for the parse: its parsed value is not its value
  // Where the text's second statement starts: an earlier one may change standard_conforming_strings
  // (SET, RESET, ROLLBACK, set_config...) after the proxy read the text, so from here on a plain
  // string holding a backslash has no proven value.
  int doubtful_from = INT_MAX;

  std::optional<std::string> at(int location) const {
    if (location < 0) return std::nullopt;
    const auto from = static_cast<std::size_t>(location);
    auto constant = read_constant(sql, from, syntax);
    if (!constant) return std::nullopt;
    if (location >= doubtful_from && (sql[from] == '\'' || sql[from] == 'n' || sql[from] == 'N') &&
        sql.substr(from, constant->end - from).find('\\') != std::string_view::npos)
      return std::nullopt;
    return std::move(constant->value);
  }
};

// A cast that keeps a key constant's value as the key column reads it: to a type without a
// modifier (which would truncate, pad or round) whose input takes the constant's text as it is.
bool key_keeping_cast(const PgQuery__TypeName* t) {
  if (t == nullptr || t->n_typmods != 0 || t->n_array_bounds != 0 || t->setof || t->pct_type || t->n_names == 0 ||
      t->n_names > 2)
    return false;
  if (t->n_names == 2 && string_value(t->names[0]) != "pg_catalog") return false;
  const std::string_view name = string_value(t->names[t->n_names - 1]);
  for (std::string_view kept : {"int2", "int4", "int8", "text", "varchar", "uuid", "numeric"})
    if (name == kept) return true;
  return false;
}

// A value fixed for the whole statement whose text the read set can be keyed by: a parameter, or a
// constant (at most once cast, see key_keeping_cast) read as the server reads it. Nullopt for
// anything else, and for a constant whose reading cannot be proven: then the row is not pinned,
// and the check looks it up by the key the server itself prints.
std::optional<KeyValue> key_value(const PgQuery__Node* n, const ConstantReader& reader, bool cast = false) {
  if (n == nullptr) return std::nullopt;
  switch (n->node_case) {
    case PG_QUERY__NODE__NODE_PARAM_REF:
      return KeyValue{n->param_ref->number, {}};
    case PG_QUERY__NODE__NODE_A_CONST: {
      const PgQuery__AConst* k = n->a_const;
      if (k->isnull) return std::nullopt;
      std::optional<std::string> value = reader.at(k->location);
      if (!value) return std::nullopt;
      // Where libpg_query read the same text, both readings must agree.
      if (k->val_case == PG_QUERY__A__CONST__VAL_IVAL && *value != std::to_string(k->ival->ival)) return std::nullopt;
      if (k->val_case == PG_QUERY__A__CONST__VAL_SVAL && !reader.masked && *value != k->sval->sval) return std::nullopt;
      if (k->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL) return std::nullopt;
      return KeyValue{0, std::move(*value), k->location};
    }
    case PG_QUERY__NODE__NODE_TYPE_CAST: {
      // A cast may change a numeric's text (`1.0::int` is 1); a string's or an integer's it keeps.
      const PgQuery__Node* arg = n->type_cast->arg;
      const bool numeric = arg != nullptr && arg->node_case == PG_QUERY__NODE__NODE_A_CONST &&
                           arg->a_const->val_case == PG_QUERY__A__CONST__VAL_FVAL;
      if (cast || numeric || !key_keeping_cast(n->type_cast->type_name)) return std::nullopt;
      return key_value(arg, reader, true);
    }
    default:
      return std::nullopt;
  }
}

// The column of the target that `n` names (unqualified, or qualified by `refname`), or "".
std::string_view target_column(const PgQuery__Node* n, std::string_view refname) {
  if (n == nullptr || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) return {};
  const PgQuery__ColumnRef* ref = n->column_ref;
  if (ref->n_fields == 0) return {};
  const std::string_view column = string_value(ref->fields[ref->n_fields - 1]);
  return names_target_column(ref, column, refname) ? column : std::string_view();
}

// Adds the pins of a condition's top-level conjuncts; a column pinned twice keeps its first pin
// (every row written satisfies both, so either is a superset of the rows written).
void collect_pins(const PgQuery__Node* condition, std::string_view refname, const ConstantReader& reader,
                  std::vector<KeyPin>& pins) {
  if (condition == nullptr) return;
  std::vector<const PgQuery__Node*> conjuncts;
  collect_conjuncts(condition, conjuncts);
  for (const PgQuery__Node* conj : conjuncts) {
    if (conj->node_case != PG_QUERY__NODE__NODE_A_EXPR) continue;
    const PgQuery__AExpr* e = conj->a_expr;
    KeyPin pin;
    if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_OP && is_operator(e, "=")) {
      std::optional<KeyValue> value;
      if (pin.column = target_column(e->lexpr, refname); !pin.column.empty()) value = key_value(e->rexpr, reader);
      if (!value) {
        pin.column = target_column(e->rexpr, refname);
        if (!pin.column.empty()) value = key_value(e->lexpr, reader);
      }
      if (!value) continue;
      pin.values.push_back(std::move(*value));
    } else if (e->kind == PG_QUERY__A__EXPR__KIND__AEXPR_IN && e->n_name == 1 && string_value(e->name[0]) == "=" &&
               e->rexpr != nullptr && e->rexpr->node_case == PG_QUERY__NODE__NODE_LIST) {
      pin.column = target_column(e->lexpr, refname);
      if (pin.column.empty()) continue;
      const PgQuery__List* list = e->rexpr->list;
      for (std::size_t i = 0; i < list->n_items; ++i) {
        std::optional<KeyValue> value = key_value(list->items[i], reader);
        if (!value) break;
        pin.values.push_back(std::move(*value));
      }
      if (pin.values.size() != list->n_items) continue;
    } else {
      continue;
    }
    const bool seen = std::any_of(pins.begin(), pins.end(), [&pin](const KeyPin& p) { return p.column == pin.column; });
    if (!seen) pins.push_back(std::move(pin));
  }
}

// Aggregate functions of a standard installation: one of them in a target list makes the query
// an aggregate, and an appended plain column would be an error.
bool is_builtin_aggregate(std::string_view name) {
  static constexpr std::string_view names[] = {"any_value",
                                               "array_agg",
                                               "avg",
                                               "bit_and",
                                               "bit_or",
                                               "bit_xor",
                                               "bool_and",
                                               "bool_or",
                                               "corr",
                                               "count",
                                               "covar_pop",
                                               "covar_samp",
                                               "cume_dist",
                                               "dense_rank",
                                               "every",
                                               "json_agg",
                                               "json_object_agg",
                                               "jsonb_agg",
                                               "jsonb_object_agg",
                                               "max",
                                               "min",
                                               "mode",
                                               "percent_rank",
                                               "percentile_cont",
                                               "percentile_disc",
                                               "range_agg",
                                               "range_intersect_agg",
                                               "rank",
                                               "regr_avgx",
                                               "regr_avgy",
                                               "regr_count",
                                               "regr_intercept",
                                               "regr_r2",
                                               "regr_slope",
                                               "regr_sxx",
                                               "regr_sxy",
                                               "regr_syy",
                                               "stddev",
                                               "stddev_pop",
                                               "stddev_samp",
                                               "string_agg",
                                               "sum",
                                               "var_pop",
                                               "var_samp",
                                               "variance",
                                               "xmlagg"};
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

// Why rows of a query whose parts are `nodes` cannot be traced to table rows, or "".
std::string aggregation_in(const std::vector<const PgQuery__Node*>& nodes) {
  std::string why;
  auto check = [&why](const ProtobufCMessage* m) {
    if (!why.empty()) return;
    if (m->descriptor == &pg_query__grouping_func__descriptor) {
      why = "GROUPING";
    } else if (m->descriptor == &pg_query__func_call__descriptor) {
      const auto* f = reinterpret_cast<const PgQuery__FuncCall*>(m);
      if (f->over != nullptr)
        why = "a window function";
      else if (f->agg_star || f->agg_distinct || f->n_agg_order > 0 || f->agg_filter != nullptr ||
               f->agg_within_group ||
               (f->n_funcname > 0 && is_builtin_aggregate(string_value(f->funcname[f->n_funcname - 1]))))
        why = "an aggregate";
    }
  };
  // Conservative: an aggregate inside a sub-select counts too.
  for (const PgQuery__Node* n : nodes) walk(as_message(n), check);
  return why;
}

// The elements of a row constructor `(a, b)` / `ROW(a, b)` starting at token `first`.
std::vector<TextRange> row_elements(const Cursor& c, int first, int limit) {
  std::vector<TextRange> elements;
  int open = first;
  if (c.is(open, PG_QUERY__TOKEN__ROW)) ++open;
  if (!c.is(open, tok_open)) return elements;
  int from = open + 1;
  for (;;) {
    const int stop = c.find(from, limit, [&c](int i) { return c[i].kind == tok_comma; });
    if (stop >= limit || stop <= from) return {};
    elements.push_back(c.span(from, stop - 1));
    if (c[stop].kind != tok_comma) return elements;
    from = stop + 1;
  }
}

// Locates a SET list: the SET keyword and each item's extent and value. Returns the index of the
// SET keyword, -1 when the list could not be located.
int analyze_set_list(const Cursor& c, int limit, PgQuery__Node* const* items, std::size_t n, WriteSite& site) {
  if (n == 0) return -1;
  int first = c.at(items[0]->res_target->location);
  int set_keyword = first - 1;
  while (set_keyword >= 0 && c[set_keyword].kind == tok_open) --set_keyword;
  if (first < 0 || !c.is(set_keyword, PG_QUERY__TOKEN__SET)) {
    site.unlocatable = "the SET keyword";
    return -1;
  }
  site.set_keyword_end = c[set_keyword].end;

  TextRange group;                  // the current `(a, b) = source` group
  std::vector<TextRange> elements;  // its row constructor's elements, if it has one
  TextRange group_value_at;         // its source
  for (std::size_t i = 0; i < n; ++i) {
    const PgQuery__ResTarget* rt = items[i]->res_target;
    SetItem item;
    item.column = rt->name;
    item.subscripted = rt->n_indirection > 0;
    const int name = c.at(rt->location);
    if (name < 0) {
      site.unlocatable = "a SET item";
      return -1;
    }
    if (rt->val != nullptr && rt->val->node_case == PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF) {
      const PgQuery__MultiAssignRef* ref = rt->val->multi_assign_ref;
      item.row_wise = true;
      if (ref->colno == 1) {
        const int open = name - 1;
        const int eq = c.find(open, limit, [&c](int k) { return c[k].kind == tok_equals; });
        const int end = c.find(eq + 1, limit, set_value_end(c));
        if (!c.is(open, tok_open) || !c.is(eq, tok_equals) || end <= eq + 1) {
          site.unlocatable = "a row-wise SET item";
          return -1;
        }
        group = c.span(open, end - 1);
        group_value_at = c.span(eq + 1, end - 1);
        const bool row = ref->source != nullptr && ref->source->node_case == PG_QUERY__NODE__NODE_ROW_EXPR;
        elements = row ? row_elements(c, eq + 1, end) : std::vector<TextRange>{};
      }
      item.item = group;
      const auto element = static_cast<std::size_t>(ref->colno - 1);
      item.value_at = elements.size() == static_cast<std::size_t>(ref->ncolumns) ? elements[element] : group_value_at;
      item.value = std::string(c.text(item.value_at));
    } else {
      const int eq = c.find(name, limit, [&c](int k) { return c[k].kind == tok_equals; });
      const int end = c.find(eq + 1, limit, set_value_end(c));
      if (!c.is(eq, tok_equals) || end <= eq + 1) {
        site.unlocatable = "a SET item";
        return -1;
      }
      item.is_default = rt->val != nullptr && rt->val->node_case == PG_QUERY__NODE__NODE_SET_TO_DEFAULT;
      item.item = c.span(name, end - 1);
      item.value_at = c.span(eq + 1, end - 1);
      item.value = std::string(c.text(item.value_at));
    }
    site.set_items.push_back(std::move(item));
  }
  return set_keyword;
}

// Records a condition that starts after token `keyword` (WHERE, or AND after MATCHED).
void analyze_condition(const Cursor& c, int limit, int keyword, const PgQuery__Node* condition, WriteSite& site) {
  site.has_condition = true;
  site.current_of = condition->node_case == PG_QUERY__NODE__NODE_CURRENT_OF_EXPR;
  site.condition_is_or = condition->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
                         condition->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR;
  const int end = keyword < 0 ? limit : c.find(keyword + 1, limit, condition_end(c));
  if (keyword < 0 || end <= keyword + 1) {
    site.unlocatable = "the condition";
    return;
  }
  site.condition = c.span(keyword + 1, end - 1);
}

// Calls `fn` on `m` and every message under it (set oneof members and list items only), below a
// message only where `fn` returned true for it.
template <class Fn>
void each_message(const ProtobufCMessage* m, const Fn& fn) {
  if (!fn(m)) return;
  const ProtobufCMessageDescriptor* d = m->descriptor;
  const char* base = reinterpret_cast<const char*>(m);
  for (unsigned i = 0; i < d->n_fields; ++i) {
    const ProtobufCFieldDescriptor& f = d->fields[i];
    if (f.type != PROTOBUF_C_TYPE_MESSAGE) continue;
    if (f.label == PROTOBUF_C_LABEL_REPEATED) {
      const std::size_t n = *reinterpret_cast<const std::size_t*>(base + f.quantifier_offset);
      const auto* items = *reinterpret_cast<ProtobufCMessage* const* const*>(base + f.offset);
      for (std::size_t k = 0; k < n; ++k)
        if (items[k] != nullptr) each_message(items[k], fn);
      continue;
    }
    if ((f.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
        *reinterpret_cast<const uint32_t*>(base + f.quantifier_offset) != f.id)
      continue;
    if (const auto* sub = *reinterpret_cast<const ProtobufCMessage* const*>(base + f.offset)) each_message(sub, fn);
  }
}

class Analyzer {
 public:
  Analyzer(const Cursor& cursor, const Rules& rules, const ConstantReader& reader)
      : c_(cursor), rules_(rules), reader_(reader) {}

  void statement(const PgQuery__Node* node, int limit, StatementAnalysis& out) {
    limit_ = limit;
    out_ = &out;
    nested_ = false;
    deferred_ = false;
    depth_ = 0;
    visit(node);
  }

 private:
  void visit(const PgQuery__Node* node) {
    if (node == nullptr) return;
    switch (node->node_case) {
      case PG_QUERY__NODE__NODE_UPDATE_STMT:
        with(node->update_stmt->with_clause);
        update(node->update_stmt);
        break;
      case PG_QUERY__NODE__NODE_DELETE_STMT:
        with(node->delete_stmt->with_clause);
        delete_(node->delete_stmt);
        break;
      case PG_QUERY__NODE__NODE_INSERT_STMT:
        with(node->insert_stmt->with_clause);
        upsert(node->insert_stmt);
        break;
      case PG_QUERY__NODE__NODE_MERGE_STMT:
        with(node->merge_stmt->with_clause);
        merge(node->merge_stmt);
        break;
      case PG_QUERY__NODE__NODE_SELECT_STMT:
        if (!nested_) select(node->select_stmt);
        with(node->select_stmt->with_clause);
        break;
      case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
        nested(node->explain_stmt->query, false);
        break;
      case PG_QUERY__NODE__NODE_PREPARE_STMT: {
        // A prepared SELECT's rows are the client's, by EXECUTE: tracked like a top-level one.
        const PgQuery__Node* query = node->prepare_stmt->query;
        named(NamedResult::prepare, node->prepare_stmt->name);
        out_->declared_params = static_cast<int>(node->prepare_stmt->n_argtypes);
        if (query != nullptr && query->node_case == PG_QUERY__NODE__NODE_SELECT_STMT)
          visit(query);
        else
          nested(query, true);
        break;
      }
      case PG_QUERY__NODE__NODE_EXECUTE_STMT:
        named(NamedResult::execute, node->execute_stmt->name);
        if (!nested_) execute_args(node->execute_stmt);
        break;
      case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
        named(NamedResult::deallocate, node->deallocate_stmt->name);
        break;
      case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
        // The cursor's rows are the client's, by FETCH: its query is tracked like a top-level one.
        named(NamedResult::declare_cursor, node->declare_cursor_stmt->portalname);
        visit(node->declare_cursor_stmt->query);
        break;
      case PG_QUERY__NODE__NODE_FETCH_STMT:
        if (!node->fetch_stmt->ismove) named(NamedResult::fetch, node->fetch_stmt->portalname);
        break;
      case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
        named(NamedResult::close_cursor, node->close_portal_stmt->portalname);
        break;
      case PG_QUERY__NODE__NODE_COPY_STMT:
        nested(node->copy_stmt->query, false);
        break;
      case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
        variable_set(node->variable_set_stmt);
        break;
      case PG_QUERY__NODE__NODE_DISCARD_STMT:
        if (node->discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL) {
          out_->search_path_change = SearchPathChange{};
          out_->command = SessionCommand::discard_all;
        }
        break;
      case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
        transaction(node->transaction_stmt);
        break;
      default:
        break;
    }
  }

  void execute_args(const PgQuery__ExecuteStmt* e) {
    for (std::size_t i = 0; i < e->n_params; ++i) out_->execute_args.push_back(key_value(e->params[i], reader_));
    if (limit_ <= 0) return;
    const Token& last = c_[limit_ - 1];
    out_->execute_has_args = e->n_params > 0;
    if (e->n_params > 0 && last.kind == tok_close)
      out_->execute_args_at = last.start;
    else if (e->n_params == 0)
      out_->execute_args_at = last.end;
  }

  void named(NamedResult kind, const char* name) {
    out_->named = kind;
    out_->result_name = name != nullptr ? name : "";
  }

  // A statement inside another one: its result is not the client's rows, and (PREPARE) it may
  // run long after this text.
  void nested(const PgQuery__Node* node, bool deferred) {
    const bool was_nested = nested_;
    const bool was_deferred = deferred_;
    nested_ = true;
    deferred_ = deferred_ || deferred;
    ++depth_;
    visit(node);
    --depth_;
    nested_ = was_nested;
    deferred_ = was_deferred;
  }

  void with(const PgQuery__WithClause* w) {
    if (w == nullptr) return;
    for (std::size_t i = 0; i < w->n_ctes; ++i)
      if (w->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
        nested(w->ctes[i]->common_table_expr->ctequery, false);
  }

  void transaction(const PgQuery__TransactionStmt* t) {
    switch (t->kind) {
      case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
        out_->command = SessionCommand::savepoint;
        break;
      case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
        out_->command = SessionCommand::release;
        break;
      case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
        out_->command = SessionCommand::rollback_to;
        break;
      default:
        return;
    }
    out_->savepoint = t->savepoint_name;
  }

  // The plain relations with a protected name that a FROM list reads, in order. A join with an
  // alias hides its tables' names, so nothing under it can be named in the target list.
  void from_tables(PgQuery__Node* const* items, std::size_t n, const std::vector<std::string_view>& ctes,
                   std::vector<ReadTable>& out) const {
    for (std::size_t i = 0; i < n; ++i) {
      const PgQuery__Node* item = items[i];
      if (item->node_case == PG_QUERY__NODE__NODE_RANGE_VAR) {
        const PgQuery__RangeVar* rv = item->range_var;
        const bool cte = rv->schemaname[0] == '\0' && std::find(ctes.begin(), ctes.end(), rv->relname) != ctes.end();
        if (!cte && rules_.has_table_named(rv->relname))
          out.push_back({rv->schemaname, rv->relname, rv->alias != nullptr ? rv->alias->aliasname : "",
                         rv->alias != nullptr && rv->alias->n_colnames > 0});
      } else if (item->node_case == PG_QUERY__NODE__NODE_JOIN_EXPR && item->join_expr->alias == nullptr) {
        PgQuery__Node* const sides[] = {item->join_expr->larg, item->join_expr->rarg};
        from_tables(sides, 2, ctes, out);
      }
    }
  }

  void set_operation_tables(const PgQuery__SelectStmt* s, const std::vector<std::string_view>& ctes,
                            std::vector<ReadTable>& out) const {
    if (s == nullptr) return;
    from_tables(s->from_clause, s->n_from_clause, ctes, out);
    set_operation_tables(s->larg, ctes, out);
    set_operation_tables(s->rarg, ctes, out);
  }

  // A top-level SELECT: which protected names its rows come from, and whether each row can carry
  // their key and version. A table reached through a view or a function is not seen here.
  void select(const PgQuery__SelectStmt* s) {
    std::vector<std::string_view> ctes;
    if (s->with_clause != nullptr)
      for (std::size_t i = 0; i < s->with_clause->n_ctes; ++i)
        if (s->with_clause->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
          ctes.emplace_back(s->with_clause->ctes[i]->common_table_expr->ctename);
    ReadSite site;
    const bool set_operation = s->op != PG_QUERY__SET_OPERATION__SETOP_NONE;
    if (set_operation)
      set_operation_tables(s, ctes, site.tables);
    else
      from_tables(s->from_clause, s->n_from_clause, ctes, site.tables);
    if (site.tables.empty() && !set_operation) {
      if (auto table = traced_table(s, ctes)) {
        site.tables.push_back(std::move(*table));
        site.traced = true;
      }
    }
    if (site.tables.empty()) return;

    std::vector<const PgQuery__Node*> parts(s->target_list, s->target_list + s->n_target_list);
    parts.insert(parts.end(), s->sort_clause, s->sort_clause + s->n_sort_clause);
    if (s->having_clause != nullptr) parts.push_back(s->having_clause);
    if (set_operation)
      site.untraceable = "a set operation (UNION, INTERSECT, EXCEPT)";
    else if (s->into_clause != nullptr)
      site.untraceable = "SELECT ... INTO";
    else if (s->n_distinct_clause > 0)
      site.untraceable = "DISTINCT";
    else if (s->n_group_clause > 0)
      site.untraceable = "GROUP BY";
    else if (s->having_clause != nullptr)
      site.untraceable = "HAVING";
    else if (s->n_window_clause > 0)
      site.untraceable = "a WINDOW clause";
    else if (std::any_of(site.tables.begin(), site.tables.end(), [](const ReadTable& t) { return t.renamed_columns; }))
      site.untraceable = "column aliases on a protected table";
    else if (std::string why = aggregation_in(parts); !why.empty())
      site.untraceable = std::move(why);
    else if (!site.traced)
      site.insert_at = target_list_end(s);
    if (site.traced) {
      out_->read = std::move(site);
      return;
    }
    if (site.untraceable.empty() && site.insert_at < 0) site.untraceable = "a target list the proxy could not locate";
    site.whole_rows = site.untraceable.empty() && s->n_from_clause == 1 &&
                      s->from_clause[0]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR && site.tables.size() == 1 &&
                      std::any_of(s->target_list, s->target_list + s->n_target_list, [](const PgQuery__Node* item) {
                        const PgQuery__Node* value = item->res_target->val;
                        return value != nullptr && value->node_case == PG_QUERY__NODE__NODE_COLUMN_REF &&
                               value->column_ref->n_fields > 0 &&
                               value->column_ref->fields[value->column_ref->n_fields - 1]->node_case ==
                                   PG_QUERY__NODE__NODE_A_STAR;
                      });
    if (s->n_from_clause == 1 && s->from_clause[0]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR &&
        site.tables.size() == 1 && s->with_clause == nullptr) {
      const ReadTable& t = site.tables.front();
      collect_pins(s->where_clause, t.alias.empty() ? t.name : t.alias, reader_, site.pins);
    }
    out_->read = std::move(site);
  }

  // The one protected table that CTEs and subqueries of `s` read, when they read exactly one once
  // and no CTE is referenced twice (two references would pair one row's key with another's
  // version); a recursive WITH is never traced.
  std::optional<ReadTable> traced_table(const PgQuery__SelectStmt* s, const std::vector<std::string_view>& ctes) const {
    if (s->with_clause != nullptr && s->with_clause->recursive) return std::nullopt;
    std::vector<const PgQuery__RangeVar*> protected_reads;
    std::vector<int> cte_references(ctes.size(), 0);
    bool refused = false;  // a nested WITH (names scoped apart) or a write (rows that are not read)
    const ProtobufCMessage* own_with = s->with_clause != nullptr ? &s->with_clause->base : nullptr;
    each_message(&s->base, [&](const ProtobufCMessage* m) {
      const ProtobufCMessageDescriptor* d = m->descriptor;
      if ((d == &pg_query__with_clause__descriptor && m != own_with) || d == &pg_query__update_stmt__descriptor ||
          d == &pg_query__insert_stmt__descriptor || d == &pg_query__delete_stmt__descriptor ||
          d == &pg_query__merge_stmt__descriptor)
        refused = true;
      // A sublink's result is an expression: no column of the result comes from a table under it.
      if (d == &pg_query__sub_link__descriptor) return false;
      if (d != &pg_query__range_var__descriptor) return true;
      const auto* rv = reinterpret_cast<const PgQuery__RangeVar*>(m);
      if (rv->schemaname[0] == '\0') {
        auto cte = std::find(ctes.begin(), ctes.end(), rv->relname);
        if (cte != ctes.end()) {
          ++cte_references[static_cast<std::size_t>(cte - ctes.begin())];
          return true;
        }
      }
      if (rules_.has_table_named(rv->relname)) protected_reads.push_back(rv);
      return true;
    });
    if (refused || protected_reads.size() != 1) return std::nullopt;
    if (std::any_of(cte_references.begin(), cte_references.end(), [](int n) { return n > 1; })) return std::nullopt;
    const PgQuery__RangeVar* rv = protected_reads.front();
    return ReadTable{rv->schemaname, rv->relname, rv->alias != nullptr ? rv->alias->aliasname : "",
                     rv->alias != nullptr && rv->alias->n_colnames > 0};
  }

  // The end of the last target list item: the token before the FROM keyword that follows it, once
  // every location of the target list is known to lie before that keyword and the FROM items after.
  int target_list_end(const PgQuery__SelectStmt* s) const {
    if (s->n_target_list == 0 || s->n_from_clause == 0) return -1;
    const int first = c_.at(s->target_list[0]->res_target->location);
    if (first < 0) return -1;
    const int from = c_.find(first, limit_, [this](int i) {
      const int k = c_[i].kind;
      // `IS DISTINCT FROM` is an operator, `AS from` a column label.
      return k == tok_semicolon || (k == PG_QUERY__TOKEN__FROM && !c_.is(i - 1, PG_QUERY__TOKEN__DISTINCT) &&
                                    !c_.is(i - 1, PG_QUERY__TOKEN__AS));
    });
    if (!c_.is(from, PG_QUERY__TOKEN__FROM) || from <= first) return -1;
    for (std::size_t i = 0; i < s->n_target_list; ++i)
      if (location_bounds(s->target_list[i]).max >= c_[from].start) return -1;
    for (std::size_t i = 0; i < s->n_from_clause; ++i)
      if (location_bounds(s->from_clause[i]).min <= c_[from].start) return -1;
    return c_[from - 1].end;
  }

  // Where a top-level write's RETURNING list ends: the end of the statement's last token.
  void note_returning(WriteSite& site, std::size_t returning_items) const {
    site.has_returning = returning_items > 0;
    if (site.top_level && limit_ > 0) site.returning_insert_at = c_[limit_ - 1].end;
  }

  // A new site for a write on `rv` when its name is protected somewhere; nullptr otherwise.
  WriteSite* site_for(const PgQuery__RangeVar* rv, WriteKind kind, int& relation_token) {
    if (rv == nullptr || !rules_.has_table_named(rv->relname)) return nullptr;
    TargetName t = target_name(rv);
    WriteSite site;
    site.kind = kind;
    site.schema = std::move(t.schema);
    site.name = std::move(t.name);
    site.refname = std::move(t.refname);
    auto candidate = [&site](const TablePolicy& p) {
      const bool seen = std::any_of(site.versions.begin(), site.versions.end(),
                                    [&p](const VersionFacts& f) { return f.column == p.version_column; });
      if (!seen) site.versions.push_back(VersionFacts{p.version_column, {}, false});
    };
    for (const TablePolicy& p : rules_.tables)
      if (p.name == site.name) candidate(p);
    // A view shows its table's version column under the table's name.
    for (const ProtectedView& v : rules_.views)
      if (const TablePolicy* p = rules_.find(v.table_schema, v.table_name); p != nullptr && v.name == site.name)
        candidate(*p);
    site.top_level = !nested_;
    site.deferred = deferred_;
    site.prepared_body = deferred_ && depth_ == 1;
    relation_token = c_.at(rv->location);
    if (relation_token < 0) site.unlocatable = "the table name";
    out_->writes.push_back(std::move(site));
    return &out_->writes.back();
  }

  void note_condition_versions(WriteSite& site, const PgQuery__Node* condition) {
    for (VersionFacts& f : site.versions) f.condition = version_use(c_, limit_, condition, f.column, site.refname);
  }

  // The first `kind` keyword after token `after` at the same nesting level, or -1.
  int find_keyword(int after, int kind) const {
    if (after < 0) return -1;
    const int i =
        c_.find(after + 1, limit_, [this, kind](int k) { return c_[k].kind == kind || c_[k].kind == tok_semicolon; });
    return c_.is(i, kind) ? i : -1;
  }

  void update(const PgQuery__UpdateStmt* u) {
    int relation = -1;
    WriteSite* site = site_for(u->relation, WriteKind::update, relation);
    if (site == nullptr) return;
    const int set_keyword = analyze_set_list(c_, limit_, u->target_list, u->n_target_list, *site);
    note_returning(*site, u->n_returning_list);
    if (u->where_clause != nullptr) {
      analyze_condition(c_, limit_, find_keyword(set_keyword, PG_QUERY__TOKEN__WHERE), u->where_clause, *site);
      note_condition_versions(*site, u->where_clause);
      collect_pins(u->where_clause, site->refname, reader_, site->pins);
    }
  }

  void delete_(const PgQuery__DeleteStmt* d) {
    int relation = -1;
    WriteSite* site = site_for(d->relation, WriteKind::delete_, relation);
    if (site == nullptr || relation < 0) return;
    note_returning(*site, d->n_returning_list);
    if (d->where_clause != nullptr) {
      analyze_condition(c_, limit_, find_keyword(relation, PG_QUERY__TOKEN__WHERE), d->where_clause, *site);
      note_condition_versions(*site, d->where_clause);
      collect_pins(d->where_clause, site->refname, reader_, site->pins);
      return;
    }
    const int end = c_.find(relation + 1, limit_, [this](int k) {
      return c_[k].kind == PG_QUERY__TOKEN__RETURNING || c_[k].kind == tok_semicolon;
    });
    site->condition_insert_at = c_[end - 1].end;
  }

  void upsert(const PgQuery__InsertStmt* ins) {
    const PgQuery__OnConflictClause* oc = ins->on_conflict_clause;
    if (oc == nullptr || oc->action != PG_QUERY__ON_CONFLICT_ACTION__ONCONFLICT_UPDATE) {
      insert(ins);
      return;
    }
    int relation = -1;
    WriteSite* site = site_for(ins->relation, WriteKind::upsert, relation);
    if (site == nullptr) return;
    const int set_keyword = analyze_set_list(c_, limit_, oc->target_list, oc->n_target_list, *site);
    note_returning(*site, ins->n_returning_list);
    if (oc->where_clause != nullptr) {
      analyze_condition(c_, limit_, find_keyword(set_keyword, PG_QUERY__TOKEN__WHERE), oc->where_clause, *site);
      note_condition_versions(*site, oc->where_clause);
      collect_pins(oc->where_clause, site->refname, reader_, site->pins);
    }
    inserted_keys(ins, *site);
  }

  // A top-level INSERT that only adds rows: they can report their versions like any own write.
  void insert(const PgQuery__InsertStmt* ins) {
    const PgQuery__RangeVar* rv = ins->relation;
    if (nested_ || rv == nullptr || !rules_.has_table_named(rv->relname) || c_.at(rv->location) < 0 || limit_ <= 0)
      return;
    const TargetName t = target_name(rv);
    out_->insert = InsertSite{{t.schema, t.name, t.refname}, ins->n_returning_list > 0, c_[limit_ - 1].end};
  }

  // The columns ON CONFLICT names, and the values each VALUES row gives the inserted columns.
  void inserted_keys(const PgQuery__InsertStmt* ins, WriteSite& site) const {
    const PgQuery__InferClause* infer = ins->on_conflict_clause->infer;
    if (infer == nullptr) return;
    for (std::size_t i = 0; i < infer->n_index_elems; ++i) {
      const PgQuery__Node* elem = infer->index_elems[i];
      if (elem->node_case != PG_QUERY__NODE__NODE_INDEX_ELEM || elem->index_elem->name[0] == '\0') {
        site.conflict_columns.clear();  // an expression: not a plain key
        return;
      }
      site.conflict_columns.emplace_back(elem->index_elem->name);
    }
    const PgQuery__Node* source = ins->select_stmt;
    if (source == nullptr || source->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) return;
    const PgQuery__SelectStmt* values = source->select_stmt;
    if (values->n_values_lists == 0) return;
    for (std::size_t col = 0; col < ins->n_cols; ++col) {
      KeyPin pin{ins->cols[col]->res_target->name, {}};
      for (std::size_t row = 0; row < values->n_values_lists; ++row) {
        const PgQuery__Node* list = values->values_lists[row];
        if (list->node_case != PG_QUERY__NODE__NODE_LIST || list->list->n_items != ins->n_cols) return;
        std::optional<KeyValue> value = key_value(list->list->items[col], reader_);
        if (!value) break;
        pin.values.push_back(std::move(*value));
      }
      if (pin.values.size() == values->n_values_lists) site.inserted_pins.push_back(std::move(pin));
    }
  }

  void merge(const PgQuery__MergeStmt* m) {
    if (m->relation == nullptr || !rules_.has_table_named(m->relation->relname)) return;
    const int relation = c_.at(m->relation->location);
    // The k-th WHEN outside parentheses and CASE belongs to the k-th WHEN clause.
    std::vector<int> whens;
    for (int from = relation < 0 ? limit_ : relation + 1; from < limit_;) {
      const int i = c_.find(from, limit_, [this](int k) { return c_[k].kind == PG_QUERY__TOKEN__WHEN; });
      if (i >= limit_ || c_[i].kind != PG_QUERY__TOKEN__WHEN) break;
      whens.push_back(i);
      from = i + 1;
    }
    for (std::size_t k = 0; k < m->n_merge_when_clauses; ++k) {
      const PgQuery__MergeWhenClause* clause = m->merge_when_clauses[k]->merge_when_clause;
      if (!clause->matched) continue;
      WriteKind kind;
      if (clause->command_type == PG_QUERY__CMD_TYPE__CMD_UPDATE)
        kind = WriteKind::merge_update;
      else if (clause->command_type == PG_QUERY__CMD_TYPE__CMD_DELETE)
        kind = WriteKind::merge_delete;
      else
        continue;
      int relation_token = -1;
      WriteSite* site = site_for(m->relation, kind, relation_token);
      for (VersionFacts& f : site->versions)
        f.in_join_condition = m->join_condition != nullptr && mentions(m->join_condition, f.column, site->refname);
      collect_pins(clause->condition, site->refname, reader_, site->pins);
      collect_pins(m->join_condition, site->refname, reader_, site->pins);
      if (whens.size() != m->n_merge_when_clauses || !c_.is(whens[k] + 1, PG_QUERY__TOKEN__MATCHED)) {
        site->unlocatable = "the WHEN MATCHED clause";
        continue;
      }
      const int matched = whens[k] + 1;
      if (clause->condition != nullptr) {
        analyze_condition(c_, limit_, c_.is(matched + 1, PG_QUERY__TOKEN__AND) ? matched + 1 : -1, clause->condition,
                          *site);
        note_condition_versions(*site, clause->condition);
      } else {
        site->condition_insert_at = c_[matched].end;
      }
      if (kind == WriteKind::merge_update)
        analyze_set_list(c_, limit_, clause->target_list, clause->n_target_list, *site);
    }
  }

  void variable_set(const PgQuery__VariableSetStmt* v) {
    switch (v->kind) {
      case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL:
        out_->search_path_change = SearchPathChange{};
        out_->command = SessionCommand::reset_all;
        return;
      case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_DEFAULT:
      case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET:
        if (std::strcmp(v->name, "search_path") == 0) {
          out_->search_path_change = SearchPathChange{};
          out_->search_path_local = v->is_local;
        }
        return;
      case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE:
        break;
      default:
        return;
    }
    if (std::strcmp(v->name, "search_path") != 0) return;
    std::vector<std::string> path;
    for (std::size_t i = 0; i < v->n_args; ++i) {
      const PgQuery__Node* arg = v->args[i];
      if (arg->node_case != PG_QUERY__NODE__NODE_A_CONST) continue;
      const PgQuery__AConst* k = arg->a_const;
      if (k->val_case == PG_QUERY__A__CONST__VAL_SVAL)
        path.emplace_back(reader_.at(k->location).value_or(k->sval->sval));
      else if (k->val_case == PG_QUERY__A__CONST__VAL_IVAL)
        path.push_back(std::to_string(k->ival->ival));
      else if (k->val_case == PG_QUERY__A__CONST__VAL_FVAL)
        path.emplace_back(k->fval->fval);
    }
    out_->search_path_change = SearchPathChange{std::move(path)};
    out_->search_path_local = v->is_local;
  }

  const Cursor& c_;
  const Rules& rules_;
  const ConstantReader& reader_;
  int limit_ = 0;
  StatementAnalysis* out_ = nullptr;
  bool nested_ = false;
  bool deferred_ = false;
  int depth_ = 0;  // how many statements enclose the one visited
};

bool has_force_hint(std::string_view sql, const std::vector<TextRange>& comments, TextRange range) {
  for (const TextRange& r : comments) {
    if (r.begin < range.begin || r.end > range.end) continue;
    std::string text(sql.substr(static_cast<std::size_t>(r.begin), static_cast<std::size_t>(r.end - r.begin)));
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (text.find("occ:force") != std::string::npos) return true;
  }
  return false;
}

int max_param(const PgQuery__Node* node) {
  int max = 0;
  auto note = [&max](const ProtobufCMessage* m) {
    if (m->descriptor == &pg_query__param_ref__descriptor)
      max = std::max(max, reinterpret_cast<const PgQuery__ParamRef*>(m)->number);
  };
  walk(as_message(node), note);
  return max;
}

std::string fingerprint(std::string_view statement) {
  const std::string text(statement);
  PgQueryFingerprintResult result = pg_query_fingerprint(text.c_str());
  std::string out = result.error == nullptr && result.fingerprint_str != nullptr ? result.fingerprint_str : "";
  pg_query_free_fingerprint_result(result);
  return out;
}

// libpg_query always reads strings with standard_conforming_strings on. With it off, a plain
// '...' string holding a backslash may end elsewhere than libpg_query thinks ('\'' is one quote):
// it parses a copy where such a string's body is masked to letters of the same length, so the tree
// has the session's shape and every offset is the client's; values are read from the client's text.
std::string parse_text(std::string_view sql, StringSyntax syntax, bool& masked) {
  std::string text(sql);
  if (syntax.standard_conforming_strings || sql.find('\\') == std::string_view::npos) return text;
  lex_sql(
      sql,
      [&](const Lexeme& lx) {
        if (lx.kind != Lexeme::Kind::string || !lx.by_setting) return true;
        if (sql.substr(lx.body_begin, lx.body_end - lx.body_begin).find('\\') == std::string_view::npos) return true;
        masked = true;
        for (std::size_t k = lx.body_begin; k < lx.body_end; ++k) text[k] = 'x';
        return true;
      },
      false);
  return text;
}

}  // namespace

std::string statement_fingerprint(std::string_view statement) { return fingerprint(statement); }

const VersionFacts* WriteSite::facts(std::string_view version_column) const {
  for (const VersionFacts& f : versions)
    if (f.column == version_column) return &f;
  return nullptr;
}

const SetItem* WriteSite::assignment(std::string_view column) const {
  for (const SetItem& item : set_items)
    if (item.column == column) return &item;
  return nullptr;
}

SqlAnalysis analyze_sql(std::string_view sql, const Rules& rules, StringSyntax syntax) {
  SqlAnalysis analysis;
  // A protocol string cannot hold NUL; one that does is not ours to interpret.
  if (sql.find('\0') != std::string_view::npos) {
    analysis.parse_failed = true;
    return analysis;
  }
  ConstantReader reader{sql, syntax};
  const std::string text = parse_text(sql, syntax, reader.masked);
  PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(text.c_str());
  PgQuery__ParseResult* tree = nullptr;
  ScanOutput scanned;
  if (parsed.error == nullptr)
    tree = pg_query__parse_result__unpack(nullptr, parsed.parse_tree.len,
                                          reinterpret_cast<const uint8_t*>(parsed.parse_tree.data));
  if (tree == nullptr || !scan(text, scanned)) {
    analysis.parse_failed = true;
  } else {
    const Cursor cursor(sql, scanned.tokens);
    if (tree->n_stmts > 1) reader.doubtful_from = tree->stmts[1]->stmt_location;
    Analyzer analyzer(cursor, rules, reader);
    for (std::size_t i = 0; i < tree->n_stmts; ++i) {
      const PgQuery__RawStmt* raw = tree->stmts[i];
      StatementAnalysis info;
      info.range.begin = raw->stmt_location;
      info.range.end = raw->stmt_len == 0 ? static_cast<int>(sql.size()) : raw->stmt_location + raw->stmt_len;
      const int first = cursor.first_from(info.range.begin);
      const int limit = cursor.first_from(info.range.end);
      info.first_token = first < limit ? cursor[first].start : info.range.begin;
      info.last_token_end = first < limit ? cursor[limit - 1].end : info.range.end;
      analyzer.statement(raw->stmt, limit, info);
      const int keyword = info.named == NamedResult::prepare   ? PG_QUERY__TOKEN__PREPARE
                          : info.named == NamedResult::execute ? PG_QUERY__TOKEN__EXECUTE
                                                               : 0;
      if (keyword != 0 && cursor.is(first, keyword) && first + 1 < limit)
        info.name_at = {cursor[first + 1].start, cursor[first + 1].end};
      info.max_param = max_param(raw->stmt);
      analysis.max_param = std::max(analysis.max_param, info.max_param);
      if (!info.writes.empty()) {
        info.force_hint = has_force_hint(sql, scanned.comments, info.range);
        info.fingerprint = fingerprint(std::string_view(text).substr(static_cast<std::size_t>(info.range.begin),
                                                  static_cast<std::size_t>(info.range.end - info.range.begin)));
      }
      analysis.statements.push_back(std::move(info));
    }
  }
  if (tree != nullptr) pg_query__parse_result__free_unpacked(tree, nullptr);
  pg_query_free_protobuf_parse_result(parsed);
  return analysis;
}

std::string quote_identifier(std::string_view name) {
  // Memoised: the scanner call that classifies keywords is far dearer than the lookup.
  thread_local std::unordered_map<std::string, std::string> memo;
  const std::string key(name);
  if (auto it = memo.find(key); it != memo.end()) return it->second;

  bool plain = !name.empty() && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_');
  for (char ch : name)
    plain = plain && (std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) ||
                      ch == '_' || ch == '$');
  if (plain) {
    PgQueryScanResult result = pg_query_scan(key.c_str());
    plain = result.error == nullptr;
    if (plain) {
      PgQuery__ScanResult* scanned =
          pg_query__scan_result__unpack(nullptr, result.pbuf.len, reinterpret_cast<const uint8_t*>(result.pbuf.data));
      plain = scanned != nullptr && scanned->n_tokens == 1 &&
              (scanned->tokens[0]->keyword_kind == PG_QUERY__KEYWORD_KIND__NO_KEYWORD ||
               scanned->tokens[0]->keyword_kind == PG_QUERY__KEYWORD_KIND__UNRESERVED_KEYWORD);
      if (scanned) pg_query__scan_result__free_unpacked(scanned, nullptr);
    }
    pg_query_free_scan_result(result);
  }
  std::string quoted;
  if (plain) {
    quoted = key;
  } else {
    quoted = "\"";
    for (char ch : name) {
      if (ch == '"') quoted += '"';
      quoted += ch;
    }
    quoted += '"';
  }
  if (memo.size() > 4096) memo.clear();
  memo.emplace(key, quoted);
  return quoted;
}

}  // namespace occ
