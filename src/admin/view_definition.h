// What a view's definition says about its rows: whether each is one row of a single relation, and
// which of the view's columns show that relation's columns. Pure: the catalog supplies the text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace occ {

struct ViewDefinition {
  // The relation of its FROM, as the definition qualifies it; empty when FROM is not one relation.
  std::string source_schema;
  std::string source_name;
  // Per view column (attnum - 1): the source column it shows under that same name, or nullopt (an
  // expression, or a renamed column, whose name the read set and the conflict diff would confuse).
  std::vector<std::optional<std::string>> columns;
  // Non-empty: why its rows are not rows of the source (a join, DISTINCT, GROUP BY...).
  std::string not_rows;
};

// `definition`: pg_get_viewdef() text, read under search_path pg_catalog so that every other
// relation is schema-qualified. A text that does not parse gives not_rows.
ViewDefinition read_view_definition(std::string_view definition);

}  // namespace occ
