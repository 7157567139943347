// may_go_bound and error_as_query: decisions on texts and error fields only.
#include "session/bound_query.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

namespace occ {

BoundForm may_go_bound(const std::vector<StatementEffect>& effects, std::string_view sql) {
  if (effects.size() != 1) return BoundForm::none;
  const StatementEffect& e = effects.front();
  if (e.named != NamedResult::none || e.command != SessionCommand::none) return BoundForm::none;
  if (e.key_pinned_read && !e.row_write && !e.tracking.drop_result) return BoundForm::pinned_read;
  if (!e.row_write || e.tracking.tracked()) return BoundForm::none;
  // RETURNING anywhere (a string included): it may return rows.
  constexpr std::string_view word = "returning";
  const bool returning = std::search(sql.begin(), sql.end(), word.begin(), word.end(), [](char a, char b) {
                           return std::tolower(static_cast<unsigned char>(a)) == b;
                         }) != sql.end();
  return returning ? BoundForm::none : BoundForm::checked_write;
}

bool error_as_query(pg::ErrorFields& error, const LiftedConstants& lifted, const std::vector<TextShift>& shifts) {
  auto& fields = error.fields;
  auto at = [&](char code) {
    return std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return f.first == code; });
  };
  if (auto p = at('P'); p != fields.end()) {
    int position = 0;
    if (std::from_chars(p->second.data(), p->second.data() + p->second.size(), position).ec != std::errc()) return false;
    p->second = std::to_string(original_position(shifts, original_position(lifted.shifts, position)));
    return true;
  }
  // exec_bind_message's context for a value its type's input function refused.
  constexpr std::string_view kContext = "unnamed portal parameter $";
  auto w = at('W');
  if (w == fields.end() || !w->second.starts_with(kContext)) return false;
  const std::string& context = w->second;
  std::size_t n = 0;
  const char* digits = context.data() + kContext.size();
  const auto [end, ec] = std::from_chars(digits, context.data() + context.size(), n);
  const std::string_view rest(end, context.data() + context.size() - end);
  if (ec != std::errc() || n == 0 || n > lifted.param_positions.size() || (!rest.empty() && !rest.starts_with(" = ")) ||
      rest.find('\n') != std::string_view::npos)
    return false;
  const int position = original_position(shifts, lifted.param_positions[n - 1]);
  fields.erase(w);
  // The server sends the position after the message, detail and hint.
  auto before = fields.begin();
  for (auto f = fields.begin(); f != fields.end(); ++f)
    if (f->first == 'S' || f->first == 'V' || f->first == 'C' || f->first == 'M' || f->first == 'D' || f->first == 'H')
      before = f + 1;
  fields.insert(before, {'P', std::to_string(position)});
  return true;
}

}  // namespace occ
